"""The conversion model: feature builder + LightGBM booster + calibrator, as one object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from leadscore.config import ModelConfig
from leadscore.features import FeatureBuilder


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """Maps raw booster probabilities to calibrated ones: isotonic or sigmoid (Platt)."""

    method: str

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        if self.method == "isotonic":
            self.mapping_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                raw, y
            )
        elif self.method == "sigmoid":
            self.mapping_ = LogisticRegression(C=1e6).fit(_logit(raw).reshape(-1, 1), y)
        else:
            raise ValueError(f"unknown calibration method {self.method!r}")
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.asarray(self.mapping_.predict(raw), dtype=float)
        return self.mapping_.predict_proba(_logit(raw).reshape(-1, 1))[:, 1]


def choose_calibration(
    raw: np.ndarray, y: np.ndarray, groups: np.ndarray, method: str, seed: int = 0
) -> tuple[str, dict[str, float]]:
    """Pick isotonic or sigmoid by the lower cross-validated Brier on the calibration cohort.

    Folds are grouped by lead, so a lead's snapshots never sit on both sides. With a fixed
    `method` this only reports its Brier.
    """
    candidates = ["isotonic", "sigmoid"] if method == "auto" else [method]
    n_folds = int(min(5, len(np.unique(groups))))
    briers: dict[str, float] = {}
    for name in candidates:
        pred = np.empty(len(y))
        for fit_idx, eval_idx in GroupKFold(n_splits=n_folds).split(raw, y, groups):
            pred[eval_idx] = Calibrator(name).fit(raw[fit_idx], y[fit_idx]).predict(raw[eval_idx])
        briers[name] = float(np.mean((pred - y) ** 2))
    return min(briers, key=briers.get), briers


@dataclass
class LeadScoringModel:
    """Raw snapshot rows in, calibrated conversion probabilities out."""

    features: FeatureBuilder
    config: ModelConfig

    def fit(
        self,
        train_rows: pd.DataFrame,
        y_train: np.ndarray,
        valid_rows: pd.DataFrame,
        y_valid: np.ndarray,
        calib_rows: pd.DataFrame,
        y_calib: np.ndarray,
        calib_groups: np.ndarray,
        progress: Callable[[int, int], None] | None = None,
    ) -> LeadScoringModel:
        """Fit features on train, stop boosting on validation, calibrate on calibration."""
        self.features.fit(train_rows)
        x_train = self.features.transform(train_rows)
        x_valid = self.features.transform(valid_rows)
        params = {
            "objective": "binary",
            "n_estimators": self.config.max_trees,
            "random_state": self.config.seed,
            "n_jobs": self.config.num_threads,
            "verbose": -1,
            **self.config.params,
        }
        self.booster_ = lgb.LGBMClassifier(**params)
        callbacks = [lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)]
        if progress is not None:
            total = self.config.max_trees

            def _report(env: lgb.callback.CallbackEnv) -> None:
                if env.iteration % 25 == 0:
                    progress(env.iteration + 1, total)

            callbacks.append(_report)
        self.booster_.fit(
            x_train,
            y_train,
            eval_X=(x_valid,),
            eval_y=(y_valid,),
            eval_metric="binary_logloss",
            callbacks=callbacks,
        )
        self.best_iteration_ = int(self.booster_.best_iteration_ or self.config.max_trees)
        if progress is not None:
            progress(self.config.max_trees, self.config.max_trees)
        raw = self.raw_probability(calib_rows)
        method, briers = choose_calibration(
            raw, np.asarray(y_calib, float), calib_groups, self.config.calibration
        )
        self.calibration_method_ = method
        self.calibration_briers_ = briers
        self.calibrator_ = Calibrator(method).fit(raw, np.asarray(y_calib, float))
        return self

    def raw_probability(self, rows: pd.DataFrame) -> np.ndarray:
        """The booster's uncalibrated probability."""
        x = self.features.transform(rows)
        return self.booster_.predict_proba(x, num_iteration=self.best_iteration_)[:, 1]

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of converting within the horizon."""
        return self.calibrator_.predict(self.raw_probability(rows))

    def contributions(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contributions to the booster's log-odds (exact TreeSHAP), one column each.

        They add up, with the expected value, to the raw score; the calibrator is monotone, so
        a positive contribution raises the calibrated probability too.
        """
        x = self.features.transform(rows)
        values = self.booster_.booster_.predict(
            x, pred_contrib=True, num_iteration=self.best_iteration_
        )
        return pd.DataFrame(values[:, :-1], columns=self.features.feature_names_, index=rows.index)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, largest first."""
        booster = self.booster_.booster_
        gain = booster.feature_importance(importance_type="gain", iteration=self.best_iteration_)
        return pd.Series(gain, index=booster.feature_name()).sort_values(ascending=False)
