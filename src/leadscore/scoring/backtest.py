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

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from leadscore.config import ModelConfig, ProjectConfig
from leadscore.data.features import FeatureBuilder
from leadscore.modeling.diagnostics import Baseline
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.modeling.metrics import bootstrap_ranking, captured_in_top, classification_metrics
from leadscore.progress import reporter

#: Fewest conversions a fold needs in each part to be fitted and judged honestly.
MIN_FOLD_CONVERSIONS = {"fit": 50, "stopping": 10, "recent": 20, "test": 10}
#: The candidate recipes, simplest first: a tie in the backtest goes to the simpler.
CANDIDATES = ("logistic", "shallow", "monotone", "project")
#: The column of each candidate's probabilities in a fold's predictions ("model": the
#: project's recipe, "baseline": the logistic regression, as the report calls them).
COLUMNS = {"project": "model", "logistic": "baseline", "shallow": "shallow", "monotone": "monotone"}
#: The scorers' names in tables (the project's recipe is named by its learner).
SCORER_NAMES = {
    "model": "lightgbm",
    "baseline": "logistic",
    "shallow": "lightgbm_shallow",
    "monotone": "lightgbm_monotone",
    "rules": "rules",
}


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
    """One fold's test predictions and metrics of every candidate and the rules."""

    fold: Fold
    predictions: pd.DataFrame  # lead_id, as_of, converted, model, baseline, ..., rule_score
    metrics: dict[str, dict[str, float]]
    iterations: list[int]
    calibration: str
    baseline: Baseline
    #: Trees per member of each candidate (by column; 0 for a logistic member).
    trees: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Backtest:
    """Per-fold results (newest first), the pooled metrics and the folds left out.

    `scorers` are the prediction columns (the candidates, then "rules"), `names` their
    names in tables, and `candidates` the columns that compete to be the champion.
    """

    folds: list[FoldResult]
    pooled: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)
    scorers: tuple[str, ...] = ("model", "baseline", "rules")
    names: dict[str, str] = field(default_factory=lambda: dict(SCORER_NAMES))
    candidates: tuple[str, ...] = ("model", "baseline")

    @property
    def newest(self) -> FoldResult:
        return self.folds[0]

    def table(self) -> pd.DataFrame:
        """One row per fold and scorer (then the pooled rows): the figures of the report."""
        records = []
        for result in [*self.folds, None]:
            metrics = self.pooled if result is None else result.metrics
            for who in self.scorers:
                m = metrics[who]
                records.append(
                    {
                        "fold": "pooled" if result is None else result.fold.name,
                        "test_period": "all folds" if result is None else result.fold.test_period,
                        "fit_end": None
                        if result is None or result.fold.fit_end is None
                        else str(result.fold.fit_end.date()),
                        "scorer": self.names[who],
                        **{k: m.get(k) for k in FOLD_METRICS},
                    }
                )
        return pd.DataFrame.from_records(records)

    def leaderboard(self, chosen: str) -> pd.DataFrame:
        """The candidates' pooled figures over the folds, the fold-to-fold spread of their
        ROC-AUC, and which one was chosen (`chosen`: its column)."""
        records = []
        for who in self.candidates:
            aucs = [r.metrics[who]["roc_auc"] for r in self.folds]
            pooled = self.pooled[who]
            records.append(
                {
                    "candidate": self.names[who],
                    **{k: pooled[k] for k in ("log_loss", "roc_auc", "pr_auc", "brier", "ece")},
                    "newest_fold_roc_auc": aucs[0],
                    "fold_auc_spread": float(np.max(aucs) - np.min(aucs)),
                    "chosen": who == chosen,
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
    "roc_auc_low",
    "roc_auc_high",
    "pr_auc",
    "pr_auc_low",
    "pr_auc_high",
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
    # Dates a newer fold tests (fold 1: the newest test_days): a step shorter than the test
    # window would test them twice and count them twice in the pooled figures.
    tested = dates > np.datetime64(label_end - pd.Timedelta(days=sp.test_days))
    for k in range(1, bt.folds):
        end = label_end - k * step
        test = (dates > np.datetime64(end - pd.Timedelta(days=sp.test_days))) & (
            dates <= np.datetime64(end)
        )
        test &= ~tested
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
        tested |= test
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
    x: pd.DataFrame | None = None,
) -> LeadScoringModel:
    """The model of the recipe, fitted on a fold's fitting rows (or every row: the refit);
    `model_config` replaces the project's model settings (another candidate). `x`: the
    fitting rows already transformed by `builder`, fitted on them (shared by candidates).
    Only the refit keeps a drift reference: a fold's model is never registered."""
    fit = fold.fit
    rows = examples.rows[fit]
    return LeadScoringModel(builder, model_config or config.model).fit_crossfit(
        rows,
        examples.labels[fit],
        examples.snapshots["lead_id"].to_numpy()[fit],
        fold.stopping[fit],
        fold.recent[fit],
        groups=config.backtest.groups,
        drift_bins=config.monitoring.psi_bins if fold.test is None else None,
        x=x,
    )


def rule_mapping(examples: Examples, fold: Fold) -> IsotonicRegression:
    """The rule score as a probability: a monotone fit on the fold's recent window."""
    return IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
        examples.rules["rule_score"].to_numpy()[fold.recent], examples.labels[fold.recent]
    )


def logistic(config: ProjectConfig) -> ModelConfig:
    """The logistic candidate: the project's model settings with the logistic learner."""
    return config.model.model_copy(update={"learner": "logistic", "monotone": {}})


def shallow(config: ProjectConfig) -> ModelConfig:
    """The shallow candidate: the project's trees cut to 3 leaves, with twice the rows per
    leaf, ten times the L2 penalty and half the features per tree (a fixed rule on the
    project's own parameters, the same for every data set). Its learning rate is three
    times the project's (at most 0.3): early stopping still picks the number of trees, and
    3-leaf trees at the project's rate took 2.5x the project's time for the same fit
    (demo data: 0.7639 vs 0.7630 AUC, 15.4 vs 7.0 s)."""
    params = dict(config.model.params)
    params.update(
        learning_rate=min(0.3, 3 * float(params.get("learning_rate", 0.1))),
        num_leaves=3,
        min_child_samples=2 * int(params.get("min_child_samples", 20)),
        reg_lambda=10 * max(1.0, float(params.get("reg_lambda", 0.0))),
        colsample_bytree=0.5 * float(params.get("colsample_bytree", 1.0)),
    )
    return config.model.model_copy(update={"learner": "lightgbm", "params": params, "monotone": {}})


def candidate_configs(config: ProjectConfig, names=None) -> dict[str, ModelConfig]:
    """The model settings of each candidate to fit, by column, the project's first.

    The project's recipe is always fitted (it is the run's reference). The logistic
    candidate is the project's own recipe when its learner is logistic; the monotone one
    is skipped without `backtest.monotone`.
    """
    names = config.backtest.candidates if names is None else names
    out = {"model": config.model}
    if "logistic" in names and config.model.learner != "logistic":
        out["baseline"] = logistic(config)
    if "shallow" in names:
        out["shallow"] = shallow(config)
    if "monotone" in names and config.backtest.monotone:
        out["monotone"] = config.model.model_copy(
            update={"learner": "lightgbm", "monotone": dict(config.backtest.monotone)}
        )
    return out


def make_baseline(
    linear: LeadScoringModel, examples: Examples, fold: Fold, p: np.ndarray
) -> Baseline:
    """The run's baseline (the logistic candidate) on a fold: its strength C, metrics on
    the test rows and validation AUC per C."""
    y = examples.labels[fold.test]
    members = [m for m in linear.members_ if hasattr(m, "c")]
    return Baseline(
        float(np.median([m.c for m in members])) if members else float("nan"),
        classification_metrics(y, p, p),
        members[0].validation_auc if members else {},
        p,
    )


def score_fold(examples: Examples, fold: Fold, models: dict[str, LeadScoringModel]) -> FoldResult:
    """Predictions and metrics of each candidate and the rules on the fold's test rows.

    `models` by column; without a logistic candidate ("baseline"), the project's recipe
    stands in for the baseline."""
    test = fold.test
    rows = examples.rows[test]
    # LightGBM and BLAS release the GIL: the candidates predict side by side.
    with ThreadPoolExecutor(max(1, min(len(models), os.cpu_count() or 1))) as pool:
        predicted = pool.map(lambda m: np.asarray(m.predict_proba(rows), dtype=float),
                             models.values())  # fmt: skip
        probabilities = dict(zip(models, predicted, strict=True))
    probabilities.setdefault("baseline", probabilities["model"])
    rules = examples.rules[test]
    rule_p = rule_mapping(examples, fold).predict(rules["rule_score"].to_numpy())
    predictions = (
        examples.snapshots[test]
        .reset_index(drop=True)
        .assign(
            **probabilities,
            rule_score=rules["rule_score"].to_numpy(),
            rule_probability=rule_p,
            is_mql=rules["is_mql"].to_numpy(),
        )
    )
    linear = models.get("baseline", models["model"])
    model = models["model"]
    return FoldResult(
        fold,
        predictions,
        fold_metrics(predictions, tuple(probabilities)),
        model.iterations,
        model.calibration_method_,
        make_baseline(linear, examples, fold, probabilities["baseline"]),
        {who: m.iterations for who, m in models.items()},
    )


def fold_metrics(
    predictions: pd.DataFrame, candidates: tuple[str, ...] = ("model", "baseline")
) -> dict[str, dict[str, float]]:
    """Metrics of each candidate and the rules, and conversions captured at the rules' MQL
    volume."""
    y = predictions["converted"].to_numpy(dtype=float)
    mql = predictions["is_mql"].to_numpy(dtype=bool)
    volume = int(mql.sum())
    scores = {who: (predictions[who], predictions[who]) for who in candidates}
    scores["rules"] = (predictions["rule_score"], predictions["rule_probability"])
    out = {}
    for who, (score, probability) in scores.items():
        m = classification_metrics(y, score.to_numpy(float), probability.to_numpy(float))
        m["captured_at_mql_volume"] = (
            float(y[mql].sum()) if who == "rules" else captured_in_top(y, score.to_numpy(), volume)
        )
        m["mql_volume"] = float(volume)
        out[who] = m
    return out


def add_intervals(
    metrics: dict[str, dict[str, float]], predictions: pd.DataFrame, samples: int, seed: int
) -> None:
    """95 % intervals of each scorer's ROC-AUC and PR-AUC (`roc_auc_low`, `..._high`): a
    bootstrap over leads (a lead's snapshots move together), every scorer on the same
    resamples."""
    y = predictions["converted"].to_numpy(dtype=float)
    if samples <= 0 or not 0 < y.sum() < len(y):
        return
    columns = {who: ("rule_score" if who == "rules" else who) for who in metrics}
    scores = {who: predictions[col].to_numpy(dtype=float) for who, col in columns.items()}
    intervals = bootstrap_ranking(y, scores, predictions["lead_id"].to_numpy(), samples, seed=seed)
    for who, m in metrics.items():
        for key in ("roc_auc", "pr_auc"):
            m[f"{key}_low"] = intervals[f"{key}_{who}"].low
            m[f"{key}_high"] = intervals[f"{key}_{who}"].high


def fit_fold(
    examples: Examples,
    fold: Fold,
    builder: FeatureBuilder,
    config: ProjectConfig,
    candidates,
) -> tuple[FoldResult, dict[str, LeadScoringModel]]:
    """One fold: the builder fitted once on its fitting rows, every candidate fitted on the
    same transformed rows, all judged on its test rows (with intervals). A plain function
    of its arguments, so it runs the same here or as a task on a Dask worker."""
    configs = candidate_configs(config, candidates)
    builder = builder.fit(examples.rows[fold.fit])
    x = builder.transform(examples.rows[fold.fit])
    fitted = {
        who: fit_recipe(examples, fold, replace(builder), config, model_config, x)
        for who, model_config in configs.items()
    }
    del x
    result = score_fold(examples, fold, fitted)
    add_intervals(result.metrics, result.predictions, config.backtest.interval_samples,
                  config.split.seed)  # fmt: skip
    return result, fitted


def _on_dask(examples: Examples, jobs, config: ProjectConfig, candidates, progress) -> list:
    """The folds as tasks on the Dask cluster of `scale.dask` ("local": a LocalCluster of
    one single-threaded worker process per fold, up to the cores): the examples are sent
    to every worker once, each fold is one task, and the results come back in fold order."""
    from dask.distributed import Client, LocalCluster, as_completed

    address = config.scale.dask
    cluster = None
    if address == "local":
        workers = max(1, min(len(jobs), os.cpu_count() or 1))
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        address = cluster
    try:
        with Client(address) as client:
            shared = client.scatter(examples, broadcast=True)
            futures = [
                client.submit(fit_fold, shared, fold, builder, config, candidates, pure=False)
                for fold, builder in jobs
            ]
            for done, _ in enumerate(as_completed(futures), start=1):
                progress("backtest", done, len(jobs))
            return client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()


def run_backtest(
    examples: Examples,
    folds: list[Fold],
    make_builder,
    config: ProjectConfig,
    notes: list[str] | None = None,
    candidates=None,
) -> tuple[Backtest, dict[str, dict[int, LeadScoringModel]]]:
    """Fit and judge every candidate recipe on every fold (newest first); also return the
    fold models by column and fold number.

    `make_builder(fold)` gives the fold's unfitted feature builder (its columns follow the
    leakage guard as run on that fold's own fitting rows); it is fitted once per fold, and
    every candidate learns from the same transformed rows. `candidates`: the candidate
    names (default `backtest.candidates`); the project's recipe is always fitted. With
    `scale.dask`, the folds run as tasks on that cluster, with the same results.
    """
    progress = reporter()
    candidates = config.backtest.candidates if candidates is None else candidates
    configs = candidate_configs(config, candidates)
    samples, seed = config.backtest.interval_samples, config.split.seed
    jobs = [(fold, make_builder(fold)) for fold in folds]
    progress("backtest", 0, len(folds))
    if config.scale.dask and len(jobs) > 1:
        outcomes = _on_dask(examples, jobs, config, candidates, progress)
    else:
        outcomes = []
        for i, (fold, builder) in enumerate(jobs):
            progress("backtest", i, len(folds))
            outcomes.append(fit_fold(examples, fold, builder, config, candidates))
    results, models = [], {who: {} for who in configs}
    for result, fitted in outcomes:
        results.append(result)
        for who, model in fitted.items():
            models[who][result.fold.number] = model
    progress("backtest", len(folds), len(folds))
    columns = tuple(configs) if "baseline" in configs else (*configs, "baseline")
    every = pd.concat([r.predictions for r in results], ignore_index=True)
    pooled = fold_metrics(every, columns)
    add_intervals(pooled, every, samples, seed)
    names = {**SCORER_NAMES, "model": SCORER_NAMES["model"] if config.model.learner == "lightgbm"
             else "logistic"}  # fmt: skip
    scorers = (*configs, "rules") if "baseline" in configs else ("model", "rules")
    competing = tuple(
        COLUMNS[name] for name in CANDIDATES if name in candidates and COLUMNS[name] in configs
    )  # fmt: skip
    backtest = Backtest(results, pooled, list(notes or []), scorers, names, competing or ("model",))
    return backtest, models
