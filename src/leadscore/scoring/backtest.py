"""Rolling-origin backtest: the training recipe as if it had run on earlier days.

Every labelled example is built once (`Examples`: snapshot rows, labels, rule results), and
a fold is a selection of those rows, never a recomputation. Fold 1 is the newest: its test
window is the newest labelled `split.test_days` (the test cohort of the run), and each
further fold steps `backtest.step_days` back. A fold's recipe learns only from snapshots
whose outcomes were known `gap_days` before its test window starts, exactly as a training
run on that day would have:

- `fit`: every labelled snapshot up to the fold's fit end (the model learns from all of
  them, through the cross-fit: see `LeadScoringModel.fit_crossfit`);
- `recent`: the newest `split.calibration_days` of those, where the calibrator and the rule
  mapping are fitted (on out-of-fold scores);
- `stopping`: the `split.validation_days` before that, where the members stop boosting;
- `test`: the fold's test window.

The refit is the same recipe with the fit end at the newest labelled date and no test
window. Flat exports step back by `split.test_share` of the leads in arrival order (or take
seeded blocks of a random order), with the same windows as shares of the leads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from leadscore.config import ModelConfig, ProjectConfig
from leadscore.data.features import FeatureBuilder
from leadscore.modeling.diagnostics import Baseline
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.modeling.metrics import captured_in_top, classification_metrics
from leadscore.progress import reporter

#: Fewest conversions a fold needs in each part to be fitted and judged honestly.
MIN_FOLD_CONVERSIONS = {"fit": 50, "stopping": 10, "recent": 20, "test": 10}
#: Who is scored on every fold: the project's recipe, the logistic candidate, the rules.
SCORERS = ("model", "baseline", "rules")
#: Their names in tables: the candidates by learner.
SCORER_NAMES = {"model": "lightgbm", "baseline": "logistic", "rules": "rules"}


@dataclass
class Examples:
    """Every labelled example once: who and when, the rows the model reads, the rules' view."""

    snapshots: pd.DataFrame  # lead_id, as_of, converted
    rows: pd.DataFrame
    rules: pd.DataFrame  # rule_score, is_mql, hits_*

    @property
    def labels(self) -> np.ndarray:
        return self.snapshots["converted"].to_numpy(dtype=float)

    def select(self, mask: np.ndarray) -> Examples:
        return Examples(
            self.snapshots[mask].reset_index(drop=True),
            self.rows[mask].reset_index(drop=True),
            self.rules[mask].reset_index(drop=True),
        )


@dataclass(frozen=True)
class Fold:
    """Boolean masks over the examples: what a fold's recipe fits on and is judged on."""

    number: int  # 1 = the newest
    fit: np.ndarray
    stopping: np.ndarray
    recent: np.ndarray
    test: np.ndarray | None  # None: the refit
    #: Newest snapshot date the fold learns from (time folds; None for flat exports).
    fit_end: pd.Timestamp | None
    test_period: str

    @property
    def name(self) -> str:
        return "refit" if self.test is None else f"fold {self.number}"


@dataclass
class FoldResult:
    """One fold's test predictions and metrics of the model, the baseline and the rules."""

    fold: Fold
    predictions: pd.DataFrame  # lead_id, as_of, converted, model, baseline, rule_score, ...
    metrics: dict[str, dict[str, float]]
    iterations: list[int]
    calibration: str
    baseline: Baseline


@dataclass
class Backtest:
    """Per-fold results (newest first), the pooled metrics and the folds left out."""

    folds: list[FoldResult]
    pooled: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)

    @property
    def newest(self) -> FoldResult:
        return self.folds[0]

    def table(self) -> pd.DataFrame:
        """One row per fold and scorer (then the pooled rows): the figures of the report."""
        records = []
        for result in [*self.folds, None]:
            metrics = self.pooled if result is None else result.metrics
            for who in SCORERS:
                m = metrics[who]
                records.append(
                    {
                        "fold": "pooled" if result is None else result.fold.name,
                        "test_period": "all folds" if result is None else result.fold.test_period,
                        "fit_end": None
                        if result is None or result.fold.fit_end is None
                        else str(result.fold.fit_end.date()),
                        "scorer": SCORER_NAMES[who],
                        **{k: m.get(k) for k in FOLD_METRICS},
                    }
                )
        return pd.DataFrame.from_records(records)

    def leaderboard(self, chosen: str) -> pd.DataFrame:
        """The candidates' pooled figures over the folds, the fold-to-fold spread of their
        ROC-AUC, and which one was chosen."""
        records = []
        for who in ("model", "baseline"):
            aucs = [r.metrics[who]["roc_auc"] for r in self.folds]
            pooled = self.pooled[who]
            records.append(
                {
                    "candidate": SCORER_NAMES[who],
                    **{k: pooled[k] for k in ("log_loss", "roc_auc", "pr_auc", "brier", "ece")},
                    "newest_fold_roc_auc": aucs[0],
                    "fold_auc_spread": float(np.max(aucs) - np.min(aucs)),
                    "chosen": SCORER_NAMES[who] == chosen,
                }
            )
        return pd.DataFrame.from_records(records)

    def predictions(self) -> pd.DataFrame:
        """Every fold's test predictions, with the fold's number."""
        return pd.concat(
            [r.predictions.assign(fold=r.fold.number) for r in self.folds], ignore_index=True
        )


#: The metrics per fold and scorer kept in the table (and logged to MLflow).
FOLD_METRICS = (
    "n",
    "conversions",
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "ece",
    "captured_at_mql_volume",
)


def _conversions(y: np.ndarray, mask: np.ndarray) -> int:
    return int(y[mask].sum())


def _left_out(fold: Fold, y: np.ndarray, min_share: float, noun: str) -> str | None:
    """Why a fold cannot be fitted and judged honestly, in words (None when it can): a part
    with too few conversions (or only conversions), or too little to learn from."""
    for part, need in MIN_FOLD_CONVERSIONS.items():
        mask = getattr(fold, part)
        have = _conversions(y, mask)
        if have < need or (part != "fit" and have == mask.sum()):
            return f"{part} has {have} conversion(s) of {int(mask.sum())} examples"
    if fold.fit.sum() < min_share * len(y):
        return f"it would learn from {fold.fit.sum() / len(y):.0%} of the {noun}"
    return None


def time_folds(
    as_of: pd.Series, y: np.ndarray, config: ProjectConfig, label_end: pd.Timestamp
) -> tuple[list[Fold], list[str]]:
    """The older folds over snapshot dates (fold 2 on; fold 1 is the split itself), newest
    first; the first one too thin to fit and every older one are left out, said."""
    sp, bt = config.split, config.backtest
    step = pd.Timedelta(days=bt.step_days or sp.test_days)
    dates = as_of.to_numpy(dtype="datetime64[us]")
    folds, notes = [], []
    for k in range(1, bt.folds):
        end = label_end - k * step
        test = (dates > np.datetime64(end - pd.Timedelta(days=sp.test_days))) & (
            dates <= np.datetime64(end)
        )
        if not test.any():
            notes.append(f"fold {k + 1}: no snapshot date in its test window (ends {end.date()})")
            break
        first_test = pd.Timestamp(dates[test].min())
        fit_end = first_test - pd.Timedelta(days=config.gap_days)
        fold = _windows(dates, fit_end, config, k + 1, test)
        problem = _left_out(fold, y, bt.min_fit_share, "examples")
        if problem:
            notes.append(f"fold {k + 1} ({fold.test_period}) left out: {problem}")
            break
        folds.append(fold)
    return folds, notes


def _windows(
    dates: np.ndarray, fit_end: pd.Timestamp, config: ProjectConfig, number: int, test=None
) -> Fold:
    sp = config.split
    recent_start = fit_end - pd.Timedelta(days=sp.calibration_days)
    stopping_start = recent_start - pd.Timedelta(days=sp.validation_days)
    fit = dates <= np.datetime64(fit_end)
    recent = fit & (dates > np.datetime64(recent_start))
    stopping = (dates > np.datetime64(stopping_start)) & (dates <= np.datetime64(recent_start))
    period = "" if test is None else _period(dates[test])
    return Fold(number, fit, stopping, recent, test, fit_end, period)


def _period(dates: np.ndarray) -> str:
    lo, hi = pd.Timestamp(dates.min()), pd.Timestamp(dates.max())
    return f"{lo.date()}..{hi.date()}"


def time_refit(as_of: pd.Series, config: ProjectConfig, label_end: pd.Timestamp) -> Fold:
    """The refit's windows: every labelled snapshot, calibrated on the newest period."""
    dates = as_of.to_numpy(dtype="datetime64[us]")
    return _windows(dates, pd.Timestamp(dates.max()), config, 0)


def flat_folds(
    n: int,
    y: np.ndarray,
    config: ProjectConfig,
    sizes: dict[str, int],
    order: np.ndarray | None = None,
) -> tuple[list[Fold], list[str]]:
    """The older folds over leads ranked by arrival (order) or a seeded permutation (random).

    The examples are in that rank, and fold 1 (the split) tests the last `sizes["test"]`.
    Order: fold k's test block is the k-th newest block of that size, and it learns from
    the leads before it. Random: the blocks are seeded random sets of leads, and a fold
    learns from every lead outside its block. Stopping and recent windows have the split's
    validation and calibration sizes, just before the test block in rank. `order`: each
    lead's value of the order column (to name the blocks by it).
    """
    bt = config.backtest
    size = sizes["test"]
    position = np.arange(n)
    folds, notes = [], []
    for k in range(1, bt.folds):
        hi, lo = n - k * size, n - (k + 1) * size
        if lo <= 0:
            notes.append(f"fold {k + 1}: no leads left for its test block")
            break
        test = (position >= lo) & (position < hi)
        if config.split_method == "order":
            fit = position < lo
            ranked_fit = position[fit]
        else:
            fit = ~test
            ranked_fit = np.r_[position[position >= hi], position[position < lo]]
        fold = _flat_windows(fit, ranked_fit, config, sizes, k + 1, test, order)
        problem = _left_out(fold, y, bt.min_fit_share, "leads")
        if problem:
            notes.append(f"fold {k + 1} ({fold.test_period}) left out: {problem}")
            break
        folds.append(fold)
    return folds, notes


def _flat_windows(
    fit: np.ndarray,
    ranked_fit: np.ndarray,
    config: ProjectConfig,
    sizes: dict[str, int],
    number: int,
    test=None,
    order: np.ndarray | None = None,
) -> Fold:
    n = len(fit)
    n_recent, n_stopping = sizes["calibration"], sizes["validation"]
    recent, stopping = np.zeros(n, bool), np.zeros(n, bool)
    end = len(ranked_fit)
    recent[ranked_fit[end - n_recent :]] = True
    stopping[ranked_fit[end - n_recent - n_stopping : end - n_recent]] = True
    if test is None:
        period = ""
    elif config.split_method == "order" and order is not None:
        lo, hi = order[test].min(), order[test].max()
        period = f"{config.split.order_column} {lo:,.0f}..{hi:,.0f} ({int(test.sum()):,} leads)"
    elif config.split_method == "order":
        idx = np.flatnonzero(test)
        period = f"leads {idx.min() + 1:,}..{idx.max() + 1:,} in arrival order"
    else:
        period = f"random block {number} of {int(test.sum()):,} leads"
    return Fold(number, fit, stopping, recent, test, None, period)


def flat_refit(n: int, config: ProjectConfig, sizes: dict[str, int]) -> Fold:
    """The refit of a flat export: every labelled lead, calibrated on the newest ones (in
    rank), with the split's calibration and validation sizes."""
    return _flat_windows(np.ones(n, bool), np.arange(n), config, sizes, 0)


def fit_recipe(
    examples: Examples,
    fold: Fold,
    builder: FeatureBuilder,
    config: ProjectConfig,
    model_config: ModelConfig | None = None,
) -> LeadScoringModel:
    """The model of the recipe, fitted on a fold's fitting rows (or every row: the refit);
    `model_config` replaces the project's model settings (another candidate)."""
    fit = fold.fit
    rows = examples.rows[fit]
    return LeadScoringModel(builder, model_config or config.model).fit_crossfit(
        rows,
        examples.labels[fit],
        examples.snapshots["lead_id"].to_numpy()[fit],
        fold.stopping[fit],
        fold.recent[fit],
        groups=config.backtest.groups,
        drift_bins=config.monitoring.psi_bins,
    )


def rule_mapping(examples: Examples, fold: Fold) -> IsotonicRegression:
    """The rule score as a probability: a monotone fit on the fold's recent window."""
    return IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
        examples.rules["rule_score"].to_numpy()[fold.recent], examples.labels[fold.recent]
    )


def logistic(config: ProjectConfig) -> ModelConfig:
    """The logistic candidate: the project's model settings with the logistic learner."""
    return config.model.model_copy(update={"learner": "logistic"})


def fold_baseline(
    examples: Examples, fold: Fold, model: LeadScoringModel, builder: FeatureBuilder,
    config: ProjectConfig, fit: bool = True,
) -> tuple[Baseline, LeadScoringModel]:  # fmt: skip
    """The logistic candidate of a fold (also the run's baseline): the same recipe, cross-fit
    and calibration, with a logistic regression for the boosters. A project whose learner
    is already logistic is its own baseline."""
    linear = model
    if fit and model.learner != "logistic":
        linear = fit_recipe(examples, fold, builder, config, logistic(config))
    p = np.asarray(linear.predict_proba(examples.rows[fold.test]), dtype=float)
    y = examples.labels[fold.test]
    members = [m for m in linear.members_ if hasattr(m, "c")]
    baseline = Baseline(
        float(np.median([m.c for m in members])) if members else float("nan"),
        classification_metrics(y, p, p),
        members[0].validation_auc if members else {},
        p,
    )
    return baseline, linear


def score_fold(
    examples: Examples, fold: Fold, model: LeadScoringModel, baseline: Baseline
) -> FoldResult:
    """Predictions and metrics of the model, baseline and rules on the fold's test rows."""
    test = fold.test
    model_p = np.asarray(model.predict_proba(examples.rows[test]), dtype=float)
    rules = examples.rules[test]
    rule_p = rule_mapping(examples, fold).predict(rules["rule_score"].to_numpy())
    predictions = (
        examples.snapshots[test]
        .reset_index(drop=True)
        .assign(
            model=model_p,
            baseline=baseline.test_probability,
            rule_score=rules["rule_score"].to_numpy(),
            rule_probability=rule_p,
            is_mql=rules["is_mql"].to_numpy(),
        )
    )
    return FoldResult(
        fold,
        predictions,
        fold_metrics(predictions),
        model.iterations,
        model.calibration_method_,
        baseline,
    )


def fold_metrics(predictions: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Metrics of each scorer, and conversions captured at the rules' MQL volume."""
    y = predictions["converted"].to_numpy(dtype=float)
    mql = predictions["is_mql"].to_numpy(dtype=bool)
    volume = int(mql.sum())
    scores = {
        "model": (predictions["model"], predictions["model"]),
        "baseline": (predictions["baseline"], predictions["baseline"]),
        "rules": (predictions["rule_score"], predictions["rule_probability"]),
    }
    out = {}
    for who, (score, probability) in scores.items():
        m = classification_metrics(y, score.to_numpy(float), probability.to_numpy(float))
        m["captured_at_mql_volume"] = (
            float(y[mql].sum()) if who == "rules" else captured_in_top(y, score.to_numpy(), volume)
        )
        m["mql_volume"] = float(volume)
        out[who] = m
    return out


def run_backtest(
    examples: Examples,
    folds: list[Fold],
    make_builder,
    config: ProjectConfig,
    notes: list[str] | None = None,
    candidates: bool = True,
) -> tuple[Backtest, dict[int, LeadScoringModel], dict[int, LeadScoringModel]]:
    """Fit and judge the recipe and the logistic candidate on every fold (newest first);
    also return both's fold models by fold number.

    `make_builder(fold)` gives the fold's unfitted feature builder (its columns follow the
    leakage guard as run on that fold's own fitting rows). Without `candidates`, only the
    recipe is fitted (it then stands in for the logistic candidate too).
    """
    progress = reporter()
    results, models, linears = [], {}, {}
    for i, fold in enumerate(folds):
        progress("backtest", i, len(folds))
        builder = make_builder(fold)
        model = fit_recipe(examples, fold, replace(builder), config)
        baseline, linear = fold_baseline(
            examples, fold, model, replace(builder), config, candidates
        )
        results.append(score_fold(examples, fold, model, baseline))
        models[fold.number], linears[fold.number] = model, linear
    progress("backtest", len(folds), len(folds))
    pooled = fold_metrics(pd.concat([r.predictions for r in results], ignore_index=True))
    return Backtest(results, pooled, list(notes or [])), models, linears
