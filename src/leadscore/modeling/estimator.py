"""The conversion model: feature builder + LightGBM boosters + calibrator, as one object.

Two ways to fit it:

- `fit_crossfit` (the recipe training uses): the leads are split into groups by a hash of
  their id; each member booster learns from every labelled row of the other groups, stops
  boosting on its own group's rows of the stopping window, and scores its own group's rows
  of the recent window, which it never saw. The calibrator is fitted on those out-of-fold
  scores of the most recent period, so the model can be fitted on all labelled rows up to
  the newest and still be calibrated on the newest period's base rate. A prediction is the
  mean of the members' calibrated probabilities (as scikit-learn's
  ``CalibratedClassifierCV(ensemble=True)`` does).
- `fit` (the recipe before, kept for comparison and for models that were fitted with it):
  one booster on a train cohort, stopped on a validation cohort, calibrated on a third.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from leadscore.config import ModelConfig
from leadscore.data.features import FeatureBuilder
from leadscore.modeling.attributions import PathAttributions
from leadscore.modeling.diagnostics import C_GRID, design, design_features
from leadscore.modeling.drift import drift_reference
from leadscore.progress import reporter


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


#: Training rows a logistic member fits on at most (a seeded sample): a linear model's
#: estimate is stable long before a million snapshot rows.
LINEAR_ROWS = 100_000


def hash_leads(lead_ids: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash of each lead id as text, the same in every run and process."""
    text = pd.Series(np.asarray(lead_ids)).astype("str").to_numpy(dtype=object)
    return pd.util.hash_array(text)


def lead_groups(lead_ids: np.ndarray, groups: int) -> np.ndarray:
    """A stable group per lead (a hash of its id), the same in every run and fold."""
    return (hash_leads(lead_ids) % np.uint64(groups)).astype(np.int64)


@dataclass
class Member:
    """One booster of the model and the number of trees it uses."""

    booster: lgb.LGBMClassifier
    iteration: int

    def raw(self, x: pd.DataFrame) -> np.ndarray:
        return self.booster.predict_proba(x, num_iteration=self.iteration)[:, 1]


@dataclass
class LinearMember:
    """A logistic regression on the model's feature matrix (the `logistic` learner).

    `features[j]` is the model feature design column j comes from (a one-hot level, a
    missing indicator); `center` the columns' means over the training rows. Its
    contributions, `coef * (column - center)` summed per feature, add up with the bias to
    its log-odds exactly, and are its exact SHAP values (a linear model).
    """

    design: Any
    regression: LogisticRegression
    features: np.ndarray
    center: np.ndarray
    c: float
    validation_auc: dict[float, float]
    iteration: int = 0  # no trees

    def _z(self, x: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.design.transform(x), dtype=np.float64)

    def raw(self, x: pd.DataFrame) -> np.ndarray:
        with threadpool_limits(limits=1, user_api="blas"):
            return self.regression.predict_proba(self._z(x))[:, 1]

    @property
    def bias(self) -> float:
        coef = self.regression.coef_[0]
        return float(self.regression.intercept_[0] + coef @ self.center)

    def contributions(self, x: pd.DataFrame, n_features: int) -> np.ndarray:
        terms = (self._z(x) - self.center) * self.regression.coef_[0]
        out = np.zeros((len(x), n_features))
        np.add.at(out.T, self.features, terms.T)
        return out

    def log_odds(self, x: pd.DataFrame) -> np.ndarray:
        return self.regression.decision_function(self._z(x))

    def importance(self, names: list[str]) -> pd.Series:
        """Mean absolute contribution per feature on the training rows' scale."""
        weight = np.abs(self.regression.coef_[0])
        return pd.Series(np.bincount(self.features, weight, len(names)), index=names)


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
        drift_bins: int = 10,
    ) -> LeadScoringModel:
        """Fit features on train, stop boosting on validation, calibrate on calibration.

        The model also records the distribution of its inputs on every row it was fitted,
        stopped and calibrated on (`drift_reference_`), what monitoring compares each
        scoring run with. The train cohort alone starts soon after the data does, so its
        leads are young (lead_age_days PSI ~0.25 against every scoring run on generated
        data); the later cohorts are not.
        """
        self.features.fit(train_rows)
        x_train = self.features.transform(train_rows)
        x_valid = self.features.transform(valid_rows)
        self.members_ = [self._boost(x_train, y_train, x_valid, y_valid, "training")]
        self._calibrate(self.raw_probability(calib_rows), y_calib, calib_groups)
        fitting = pd.concat([train_rows, valid_rows, calib_rows])
        self.drift_reference_ = drift_reference(fitting, self.features, drift_bins)
        return self

    def fit_crossfit(
        self,
        rows: pd.DataFrame,
        y: np.ndarray,
        lead_ids: np.ndarray,
        stopping: np.ndarray,
        recent: np.ndarray,
        groups: int = 2,
        drift_bins: int | None = 10,
        x: pd.DataFrame | None = None,
    ) -> LeadScoringModel:
        """Fit on every row of `rows`: cross-fitted members, calibrated on the recent period.

        `stopping` and `recent` are boolean masks over `rows`: the window each member stops
        boosting on (its own group's rows there) and the newest period the calibrator is
        fitted on (each row scored by the member that did not learn from it). The drift
        reference is the distribution of the inputs over all the rows (`drift_bins` None: no
        reference, for a backtest fold's model that is never registered). `x`: `rows` already
        transformed by `features`, fitted on exactly these rows (the candidates of one
        backtest fold share one feature fit and transform).
        """
        y = np.asarray(y, dtype=float)
        stopping, recent = np.asarray(stopping, bool), np.asarray(recent, bool)
        group = lead_groups(lead_ids, groups)
        if x is None:
            self.features.fit(rows)
            x = self.features.transform(rows)
        out_of_fold = np.full(len(rows), np.nan)

        fit = self._linear if self.config.learner == "logistic" else self._boost

        def member(g: int) -> Member | LinearMember:
            own = group == g
            stop = stopping & own
            return fit(x[~own], y[~own], x[stop], y[stop], f"training {g + 1}/{groups}")

        # LightGBM releases the GIL while it trains: the members train side by side, one
        # thread each (`model.num_threads`), on as many cores as there are members.
        workers = max(1, min(groups, (os.cpu_count() or 1) // self.config.num_threads))
        with ThreadPoolExecutor(workers) as pool:
            self.members_ = list(pool.map(member, range(groups)))
            held = [recent & (group == g) for g in range(groups)]
            # LightGBM members predict side by side; logistic ones in turn (their BLAS
            # thread limit is process-wide).
            score = map if self.config.learner == "logistic" else pool.map
            raw = list(score(lambda g: self.members_[g].raw(x[held[g]]), range(groups)))
        for g in range(groups):
            out_of_fold[held[g]] = raw[g]
        self._calibrate(out_of_fold[recent], y[recent], np.asarray(lead_ids)[recent])
        if drift_bins is not None:
            self.drift_reference_ = drift_reference(rows, self.features, drift_bins)
        return self

    def _calibrate(self, raw: np.ndarray, y: np.ndarray, groups: np.ndarray) -> None:
        """Choose (isotonic or sigmoid, by grouped cross-validated Brier) and fit the
        calibrator on raw scores the members did not learn from."""
        y = np.asarray(y, dtype=float)
        method, briers = choose_calibration(raw, y, groups, self.config.calibration)
        self.calibration_method_ = method
        self.calibration_briers_ = briers
        self.calibrator_ = Calibrator(method).fit(raw, y)

    def _boost(
        self,
        x_train: pd.DataFrame,
        y_train: np.ndarray,
        x_valid: pd.DataFrame,
        y_valid: np.ndarray,
        stage: str,
    ) -> Member:
        """One booster, stopped early on the validation rows."""
        params = {
            "objective": "binary",
            "n_estimators": self.config.max_trees,
            "random_state": self.config.seed,
            "n_jobs": self.config.num_threads,
            "verbose": -1,
            **self.config.params,
        }
        if self.config.monotone:
            # Constraints on numeric columns only (LightGBM ignores them on categoricals); a
            # feature this fold's model does not have is simply unconstrained.
            params["monotone_constraints"] = [
                self.config.monotone.get(c, 0) if c not in self.features.categories_ else 0
                for c in x_train.columns
            ]
        booster = lgb.LGBMClassifier(**params)
        report, total = reporter(), self.config.max_trees

        def _report(env: lgb.callback.CallbackEnv) -> None:
            if env.iteration % 25 == 0:
                report(stage, env.iteration + 1, total)

        callbacks = [lgb.early_stopping(self.config.early_stopping_rounds, verbose=False), _report]
        booster.fit(
            x_train,
            y_train,
            eval_X=(x_valid,),
            eval_y=(y_valid,),
            eval_metric="binary_logloss",
            callbacks=callbacks,
        )
        report(stage, total, total)
        return Member(booster, int(booster.best_iteration_ or self.config.max_trees))

    def _linear(
        self,
        x_train: pd.DataFrame,
        y_train: np.ndarray,
        x_valid: pd.DataFrame,
        y_valid: np.ndarray,
        stage: str,
    ) -> LinearMember:
        """A logistic regression; its strength C chosen on the validation rows (AUC), as
        boosting stops on them. One BLAS thread (two ran 4-15x slower on two cores)."""
        report = reporter()
        report(stage, 0, 1)
        if len(x_train) > LINEAR_ROWS:
            keep = np.sort(np.random.default_rng(self.config.seed).choice(
                len(x_train), LINEAR_ROWS, replace=False))  # fmt: skip
            x_train, y_train = x_train.iloc[keep], y_train[keep]
        transformer = design(self.features).fit(x_train)
        z = np.asarray(transformer.transform(x_train), dtype=np.float64)
        z_valid = np.asarray(transformer.transform(x_valid), dtype=np.float64)
        aucs, best = {}, None
        regression = LogisticRegression(max_iter=300, warm_start=True)
        with threadpool_limits(limits=1, user_api="blas"):
            for c in C_GRID:
                regression.set_params(C=c).fit(z, y_train)
                aucs[c] = float(roc_auc_score(y_valid, regression.decision_function(z_valid)))
                if best is None or aucs[c] > aucs[best[0]]:
                    best = (c, copy.deepcopy(regression))
        report(stage, 1, 1)
        columns = design_features(transformer, self.features)
        return LinearMember(transformer, best[1], columns, z.mean(axis=0), best[0], aucs)

    @property
    def learner(self) -> str:
        """lightgbm or logistic (models before the choice are lightgbm)."""
        return "logistic" if isinstance(self.members_[0], LinearMember) else "lightgbm"

    @property
    def iterations(self) -> list[int]:
        """Trees per member booster (0 for a logistic member)."""
        return [m.iteration for m in self.members_]

    def scores(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probability and the members' mean raw probability, in one transform."""
        x = self.features.transform(rows)
        raw = np.column_stack([m.raw(x) for m in self.members_])
        calibrated = np.column_stack(
            [self.calibrator_.predict(raw[:, i]) for i in range(raw.shape[1])]
        )
        return calibrated.mean(axis=1), raw.mean(axis=1)

    def raw_probability(self, rows: pd.DataFrame) -> np.ndarray:
        """The boosters' uncalibrated probability (the mean over the members)."""
        x = self.features.transform(rows)
        return np.mean([m.raw(x) for m in self.members_], axis=0)

    def log_odds(self, rows: pd.DataFrame) -> np.ndarray:
        """The members' mean raw log-odds: what `contributions` and the bias add up to."""
        x = self.features.transform(rows)
        if self.learner == "logistic":
            return np.mean([m.log_odds(x) for m in self.members_], axis=0)
        return np.mean(
            [m.booster.booster_.predict(x, raw_score=True, num_iteration=m.iteration)
             for m in self.members_],
            axis=0,
        )  # fmt: skip

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of converting within the horizon."""
        return self.scores(rows)[0]

    def contributions(
        self, rows: pd.DataFrame, method: Literal["path", "shap"] = "path"
    ) -> pd.DataFrame:
        """Per-feature contributions to the booster's log-odds, one column per feature.

        `method="path"` (the default): path (Saabas) attributions, from LightGBM's leaf
        indices and a per-leaf table built once per model (`path_attributions`; see
        `leadscore.attributions`), in about 1.3-1.7 times the time of a raw predict.
        `method="shap"`: exact TreeSHAP (`pred_contrib`), about ten times slower still.
        Either way the contributions add up, with the bias (the expected value, the same
        for both), to the booster's raw log-odds exactly, up to rounding; the calibrator is
        monotone, so a positive contribution raises the calibrated probability too. With
        several member boosters, the contributions and the bias are the members' means: they
        add up to the mean of the members' log-odds.
        """
        x = self.features.transform(rows)
        if method not in ("path", "shap"):
            raise ValueError(f"unknown contributions method {method!r}; use 'path' or 'shap'")
        if self.learner == "logistic":  # exact for a linear model, whichever method
            n = len(self.features.feature_names_)
            values = np.mean([m.contributions(x, n) for m in self.members_], axis=0)
        elif method == "path":
            values = np.mean([table.contributions(x) for table in self.path_attributions()], 0)
        elif method == "shap":
            values = np.mean(
                [
                    m.booster.booster_.predict(x, pred_contrib=True, num_iteration=m.iteration)[
                        :, :-1
                    ]
                    for m in self.members_
                ],
                axis=0,
            )
        else:
            raise ValueError(f"unknown contributions method {method!r}; use 'path' or 'shap'")
        return pd.DataFrame(
            values, columns=self.features.feature_names_, index=rows.index, copy=False
        )

    def path_attributions(self) -> list[PathAttributions]:
        """The per-leaf path-attribution table of each member, built on first use and cached.

        The cache is not pickled (`__getstate__`), and a model pickled before it existed
        simply builds it on first use.
        """
        cached = getattr(self, "_path_attributions", None) or []
        if len(cached) != len(self.members_) or any(
            table.booster is not m.booster.booster_ or table.num_iteration != m.iteration
            for table, m in zip(cached, self.members_, strict=True)
        ):
            cached = [
                PathAttributions.from_booster(m.booster.booster_, m.iteration)
                for m in self.members_
            ]
            self._path_attributions = cached
        return cached

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_path_attributions", None)  # a cache, rebuilt in well under a second
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Models pickled before the members (one booster, `booster_` and `best_iteration_`)
        # load as a model of one member and score exactly as before.
        if "members_" not in state and "booster_" in state:
            state = dict(state)
            booster, iteration = state.pop("booster_"), state.pop("best_iteration_")
            state["members_"] = [Member(booster, int(iteration or booster.n_estimators))]
        state.pop("_path_attributions", None)
        self.__dict__.update(state)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature over the members, largest first (a logistic model: the
        absolute standardised coefficients per feature)."""
        if self.learner == "logistic":
            names = list(self.features.feature_names_)
            parts = [m.importance(names) for m in self.members_]
            return sum(parts[1:], parts[0]).sort_values(ascending=False)
        gains = []
        for m in self.members_:
            booster = m.booster.booster_
            gain = booster.feature_importance(importance_type="gain", iteration=m.iteration)
            gains.append(pd.Series(gain, index=booster.feature_name()))
        return sum(gains[1:], gains[0]).sort_values(ascending=False)
