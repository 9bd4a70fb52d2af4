"""Training: point-in-time training sets from a source, and the calibrated model fitted and
evaluated on them, with the baseline, the shift check and the rules on the same test cohort.

Plain functions over loaded data: no MLflow and no Prefect here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from leadscore.config import ModelConfig, ProjectConfig
from leadscore.data.accounts import (
    AccountSpec,
    account_context,
    account_spec,
    with_account_features,
)
from leadscore.data.features import (
    BehaviourSpec,
    FeatureBuilder,
    behaviour_spec,
    index_activities,
    snapshot_rows,
)
from leadscore.data.leakage import Finding, excluded, guard
from leadscore.data.rules import RuleSet, rule_results
from leadscore.data.snapshots import (
    SPLITS,
    SplitPlan,
    build_snapshots,
    plan_splits,
    snapshot_dates,
)
from leadscore.errors import ConfigError, DataError, ModelError, TooLittleHistoryError
from leadscore.io.sources import CRMData, load_crm
from leadscore.modeling.diagnostics import Baseline, Shift, shift_check
from leadscore.modeling.drift import drift_reference
from leadscore.modeling.estimator import LeadScoringModel, hash_leads
from leadscore.progress import reporter
from leadscore.scoring.backtest import (
    Backtest,
    Examples,
    Fold,
    candidate_configs,
    fit_recipe,
    flat_folds,
    flat_refit,
    rule_mapping,
    run_backtest,
    time_folds,
    time_refit,
)
from leadscore.scoring.inputs import activity_types, attribute_columns, check_inputs
from leadscore.scoring.scorer import model_rows

#: Fewest conversions per split that give a usable fit and evaluation.
MIN_CONVERSIONS = {"train": 50, "validation": 10, "calibration": 20, "test": 10}


class _Parts(Mapping):
    """A split's part of the examples' frame, selected on access (no copy is kept)."""

    def __init__(self, frame: pd.DataFrame, masks: dict[str, np.ndarray]) -> None:
        self._frame, self._masks = frame, masks

    def __getitem__(self, split: str) -> pd.DataFrame:
        return self._frame[self._masks[split]].reset_index(drop=True)

    def __iter__(self):
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)


@dataclass
class TrainingSet:
    """Every labelled example once, and the split of the newest backtest fold over them.

    `examples` holds one row per lead and labelled snapshot date (for a flat export, one
    per labelled lead, in arrival or seeded order); `splits` are boolean masks over it:
    train, validation, calibration and test as the newest fold uses them (the snapshot
    dates between calibration and test, the gap, are in no split). `snapshots`, `rows` and
    `rules` give a split's part of each frame.
    """

    plan: SplitPlan
    spec: BehaviourSpec
    examples: Examples
    splits: dict[str, np.ndarray]
    #: Every activity type in the training history (what the rules were checked against).
    activity_types: tuple[str, ...] = ()
    #: Flat exports split by order: each example's value of the order column.
    order: np.ndarray | None = None
    #: The account features of the rows (none for flat exports).
    accounts: AccountSpec = field(default_factory=AccountSpec.none)

    @property
    def snapshots(self) -> Mapping[str, pd.DataFrame]:
        return _Parts(self.examples.snapshots, self.splits)

    @property
    def rows(self) -> Mapping[str, pd.DataFrame]:
        return _Parts(self.examples.rows, self.splits)

    @property
    def rules(self) -> Mapping[str, pd.DataFrame]:
        return _Parts(self.examples.rules, self.splits)

    def labels(self, split: str) -> np.ndarray:
        return self.examples.labels[self.splits[split]]

    def counts(self) -> dict[str, int]:
        out = {}
        snaps = self.examples.snapshots
        for name in SPLITS:
            part = snaps[self.splits[name]]
            out[f"{name}_rows"] = len(part)
            out[f"{name}_conversions"] = int(part["converted"].sum())
            out[f"{name}_leads"] = int(part["lead_id"].nunique())
        return out

    def newest_fold(self) -> Fold:
        """The newest backtest fold, exactly the split: it learns from train, validation
        and calibration, stops on validation, calibrates on calibration, is judged on test."""
        s = self.splits
        fit = s["train"] | s["validation"] | s["calibration"]
        period = self.plan.describe()["test"]
        fit_end = None
        if self.plan.method == "time":
            fit_end = max(self.plan.dates["calibration"])
            period = f"{self.plan.dates['test'][0].date()}..{self.plan.dates['test'][-1].date()}"
        return Fold(1, fit, s["validation"], s["calibration"], s["test"], fit_end, period)


@dataclass
class TrainingResult:
    """The refit model, and the recipe's evaluation: newest fold and every backtest fold.

    `metrics`, `test_scores` and `baseline` are the newest backtest fold's: the same recipe
    fitted one step earlier, judged on the newest labelled cohort it never saw.
    """

    model: LeadScoringModel
    data: TrainingSet
    metrics: dict[str, dict[str, float]]
    test_scores: pd.DataFrame
    rule_probability: IsotonicRegression
    #: Columns the leakage guard flagged (excluded unless kept by config).
    leakage: list[Finding]
    baseline: Baseline
    shift: Shift
    backtest: Backtest | None = None
    #: Newest snapshot date the registered model learned from (None: a flat export).
    trained_through: pd.Timestamp | None = None
    #: Whether the registered model is the refit (else the newest fold's model).
    refit: bool = True
    #: The backtest's fold models by fold number (1 = newest).
    fold_models: dict[int, LeadScoringModel] = field(default_factory=dict)
    #: Until when the outcomes of the newest learned snapshot were counted (its horizon's
    #: end, at most the end of the data).
    outcomes_through: pd.Timestamp | None = None
    #: The chosen recipe's learner (lightgbm or logistic), and the candidates' figures.
    learner: str = "lightgbm"
    leaderboard: pd.DataFrame | None = None
    #: The backtest predictions' column of the chosen recipe ("model": the project's).
    chosen_column: str = "model"
    #: The pooled backtest metric that chose it, and the difference that was a tie.
    metric: str = "log_loss"
    tie_tolerance: float = 0.0005


def _require_both_outcomes(split: str, snap: pd.DataFrame, where: str) -> None:
    need = MIN_CONVERSIONS[split]
    have = int(snap["converted"].sum())
    others = len(snap) - have
    if have >= need and others < need:
        raise ModelError(
            f"nothing to tell apart: the {split} cohort ({where}) has {len(snap):,} examples "
            f"and {others} that did not convert; it needs at least {need} of each (a model "
            "learns what separates leads that convert from leads that do not)",
            "export the leads that did not convert too (a label of 0/no, or no conversion "
            "time), not only the won ones",
        )
    if have < need:
        total = sum(MIN_CONVERSIONS.values())
        raise TooLittleHistoryError(
            f"too few conversions to train: the {split} cohort ({where}) has {len(snap):,} "
            f"examples and {have} conversion(s); it needs at least {need} (about {total} over "
            "train, validation, calibration and test)",
            "provide more history or leads (or widen the split); until then a model cannot "
            "be trained honestly: `leadscore score` publishes your MQL rules' scores alone",
        )


def flat_split(crm: CRMData, config: ProjectConfig) -> dict[str, pd.DataFrame]:
    """Labelled leads of a flat export per split: by arrival order, or seeded at random.

    Order: the oldest leads train, the newest `test_share` are the test cohort, with
    validation and calibration in between (so evaluation is out of time, as far as the export
    allows). Random: a seeded permutation; the run says so, as it cannot show drift.
    """
    labelled = crm.leads[crm.leads["converted"].notna()]
    if config.split_method == "order":
        order = np.lexsort((labelled["lead_id"].astype("str").to_numpy(), labelled["_order"]))
    else:
        order = np.random.default_rng(config.split.seed).permutation(len(labelled))
    ranked = labelled.iloc[order]
    n = len(ranked)
    sp = config.split
    train_share = 1 - sp.validation_share - sp.calibration_share - sp.test_share
    bounds = np.cumsum([0, train_share, sp.validation_share, sp.calibration_share, sp.test_share])
    cuts = np.round(bounds * n).astype(int)
    return {name: ranked.iloc[cuts[i] : cuts[i + 1]] for i, name in enumerate(SPLITS)}


def _describe_flat(part: pd.DataFrame, config: ProjectConfig) -> str:
    if config.split_method == "order" and len(part):
        col = config.split.order_column
        lo, hi = part["_order"].min(), part["_order"].max()
        return f"{col} {lo:,.0f}..{hi:,.0f} ({len(part):,} leads)"
    return f"random, seed {config.split.seed} ({len(part):,} leads)"


def build_flat_training_set(crm: CRMData, config: ProjectConfig, rules: RuleSet) -> TrainingSet:
    """A flat export: one example per labelled lead, as of the export, split by order/random."""
    progress = reporter()
    if crm.leads["converted"].notna().sum() == 0:
        raise DataError(
            f"table '{config.source.tables.leads}', column '{config.source.label.column}': "
            "no row has a label: nothing to learn from",
            "export leads whose outcome is known, with 1/0 (or yes/no) in the label column",
        )
    as_of = crm.data_end.normalize()
    parts = flat_split(crm, config)
    plan = SplitPlan(
        {name: [as_of] for name in SPLITS},
        as_of,
        as_of,
        method=config.split_method,
        descriptions={name: _describe_flat(part, config) for name, part in parts.items()},
    )
    spec = BehaviourSpec.none()
    check_inputs(rules, config, True, ())
    activities = index_activities(crm.activities, {}, "")
    attrs = config.source.attributes
    for split in SPLITS:
        part = parts[split]
        _require_both_outcomes(
            split, pd.DataFrame({"converted": part["converted"].to_numpy()}), plan.describe()[split]
        )
    progress("features", 0, 1)
    ranked = pd.concat([parts[name] for name in SPLITS])
    snap = pd.DataFrame(
        {
            "lead_id": ranked["lead_id"].to_numpy(),
            "as_of": pd.Series(as_of, index=range(len(ranked))).astype("datetime64[us]"),
            "converted": ranked["converted"].to_numpy(dtype=np.int8),
        }
    )
    rows = snapshot_rows(snap, crm.leads, activities, spec, attribute_columns(config), attrs.email)
    examples = Examples(snap, rows, rule_results(rules, rows, snap, activities, config))
    progress("features", 1, 1)
    bounds = np.cumsum([0, *(len(parts[name]) for name in SPLITS)])
    position = np.arange(len(snap))
    splits = {
        name: (position >= bounds[i]) & (position < bounds[i + 1]) for i, name in enumerate(SPLITS)
    }
    order = ranked["_order"].to_numpy() if config.split_method == "order" else None
    return TrainingSet(plan, spec, examples, splits, order=order)


def build_training_set(crm: CRMData, config: ProjectConfig, rules: RuleSet) -> TrainingSet:
    """Plan the split and build snapshot rows and rule results for each split."""
    if crm.flat:
        return build_flat_training_set(crm, config, rules)
    data_start = crm.leads["created_at"].min()
    plan = plan_splits(
        data_start,
        crm.data_end,
        config.horizon_days,
        config.snapshots.every_days,
        config.snapshots.min_history_days,
        config.split.test_days,
        config.split.calibration_days,
        config.split.validation_days,
        config.gap_days,
    )
    spec = _known_spec(crm, plan, config)
    accounts = account_spec(config, spec)
    types = activity_types(crm.activities)
    check_inputs(rules, config, False, types)
    activities = index_activities(crm.activities, spec.page_categories, spec.page_activity_type)
    # Every labelled snapshot date once (the gap between calibration and test included: the
    # older backtest folds learn from it), in chunks for the progress line.
    labelled = snapshot_dates(
        data_start,
        plan.label_end,
        config.snapshots.every_days,
        config.snapshots.min_history_days,
    )
    snaps = build_snapshots(
        crm.leads,
        crm.outcomes,
        labelled,
        config.snapshots.max_lead_age_days,
        config.horizon_days,
    )
    as_of = snaps["as_of"]
    splits = {name: as_of.isin(plan.dates[name]).to_numpy() for name in SPLITS}
    for name in SPLITS:
        _require_both_outcomes(name, snaps[splits[name]], plan.describe()[name])
    rows, rule_out = _rows_in_chunks(
        snaps, crm, activities, spec, config, "features", rules, accounts
    )
    examples = Examples(snaps, rows, rule_out)
    return TrainingSet(plan, spec, examples, splits, types, accounts=accounts)


def rules_history(crm: CRMData, config: ProjectConfig, rules: RuleSet) -> pd.DataFrame:
    """Every labelled example of the history with the rules' results on it (lead_id, as_of,
    converted, rule_score, is_mql, rules_fired, points_* and hits_*): what a rules-only run
    judges the rules on. Nothing is fitted, so nothing is split off; point in time as ever
    (each example's rules see only what happened before its snapshot date).
    """
    columns = ["lead_id", "as_of", "converted"]
    if crm.flat:
        check_inputs(rules, config, True, ())
        labelled = crm.leads[crm.leads["converted"].notna()]
        snaps = pd.DataFrame(
            {
                "lead_id": labelled["lead_id"].to_numpy(),
                "as_of": pd.Series(crm.data_end.normalize(), index=range(len(labelled))).astype(
                    "datetime64[us]"
                ),
                "converted": labelled["converted"].to_numpy(dtype=np.int8),
            }
        )
    else:
        check_inputs(rules, config, False, activity_types(crm.activities))
        data_start = crm.leads["created_at"].min()
        label_end = (crm.data_end - pd.Timedelta(days=config.horizon_days)).normalize()
        dates = snapshot_dates(
            data_start, label_end, config.snapshots.every_days, config.snapshots.min_history_days
        )
        snaps = build_snapshots(
            crm.leads,
            crm.outcomes,
            dates,
            config.snapshots.max_lead_age_days,
            config.horizon_days,
        )
    if snaps.empty:
        return pd.DataFrame(columns=[*columns, "rule_score", "is_mql", "rules_fired"])
    features = config.features
    activities = index_activities(
        crm.activities, features.page_categories, features.page_activity_type
    )
    _, out = _rows_in_chunks(snaps, crm, activities, BehaviourSpec.none(), config, "rules", rules)
    return pd.concat([snaps[columns].reset_index(drop=True), out], axis=1)


def _known_spec(crm: CRMData, plan: SplitPlan, config: ProjectConfig) -> BehaviourSpec:
    """The behaviour features: which activity types become features is decided on what was
    known when the training cohort ended, not on the later cohorts."""
    known = crm.activities[crm.activities["occurred_at"] < max(plan.dates["train"])]
    return behaviour_spec(known, config.features)


def _rows_in_chunks(
    snaps: pd.DataFrame,
    crm: CRMData,
    activities,
    spec: BehaviourSpec,
    config: ProjectConfig,
    stage: str,
    rules: RuleSet | None = None,
    accounts: AccountSpec | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The snapshot rows `config` reads for `snaps` (with the account columns of
    `accounts`; and the rules' results on them), in chunks for the progress line."""
    progress = reporter()
    attrs = config.source.attributes
    columns, email = attribute_columns(config), attrs.email
    context = (
        account_context(crm.leads, crm.outcomes, accounts, config.features, attrs.job_title, email)
        if accounts is not None and accounts.enabled
        else None
    )
    chunks = [c for c in np.array_split(np.arange(len(snaps)), 8) if len(c)]
    rows, rule_out = [], []
    for i, chunk in enumerate(chunks):
        progress(stage, i, len(chunks))
        snap = snaps.iloc[chunk]
        part = snapshot_rows(snap, crm.leads, activities, spec, columns, email)
        part = with_account_features(part, snap, context, activities, accounts)
        rows.append(part)
        if rules is not None:
            rule_out.append(rule_results(rules, part, snap, activities, config))
    progress(stage, len(chunks), len(chunks))
    together = pd.concat(rows, ignore_index=True)
    return together, (pd.concat(rule_out, ignore_index=True) if rules is not None else None)


def leakage_findings(
    data: TrainingSet, config: ProjectConfig, crm: CRMData | None = None
) -> list[Finding]:
    """Run the leakage guard on the attribute columns, on train and validation only."""
    attrs = config.source.attributes
    columns = {c: False for c in attrs.categorical} | {c: True for c in attrs.numeric}
    return guard(
        columns,
        data.rows["train"],
        data.labels("train"),
        data.rows["validation"],
        data.labels("validation"),
        config.leakage,
        flat=config.flat,
        leads=None if crm is None else crm.leads,
        outcomes=None if crm is None else crm.outcomes,
    )


#: The parts of a project file that make the recipe: how examples are drawn and split, what
#: the model reads and how it is fitted and calibrated. Two runs with the same recipe differ
#: only in the data they learned from.
RECIPE_SECTIONS = ("horizon_days", "snapshots", "split", "features", "model", "backtest")


def recipe(config: ProjectConfig) -> dict[str, Any]:
    """The recipe of a project file, as plain data (stored with every model)."""
    dumped = config.model_dump(mode="json")
    out = {key: dumped[key] for key in RECIPE_SECTIONS}
    out["snapshots"].pop("sample_leads", None)
    out["backtest"] = {"groups": out["backtest"]["groups"]}
    out["model"].pop("num_threads", None)  # how fast, not what
    out["model"].pop("params_file", None)  # where the params came from: they are in params
    out["attributes"] = dumped["source"]["attributes"]
    out["leakage"] = dumped["leakage"]
    return out


def _builder(config: ProjectConfig, data: TrainingSet, dropped: set[str]) -> FeatureBuilder:
    attrs = config.source.attributes
    return FeatureBuilder(
        categorical=[c for c in attrs.categorical if c not in dropped],
        numeric=[c for c in attrs.numeric if c not in dropped],
        title_column=attrs.job_title,
        feature_config=config.features,
        behaviour=data.spec,
        accounts=data.accounts if data.accounts.enabled else None,
        derive_title=attrs.job_title is not None,
        derive_email=attrs.email is not None,
    )


def _fold_guard(
    data: TrainingSet, fold: Fold, config: ProjectConfig, crm: CRMData | None
) -> list[Finding]:
    """The leakage guard as a training run on the fold's day would have run it: on the
    fold's own fitting rows before its stopping window, and that window."""
    attrs = config.source.attributes
    columns = {c: False for c in attrs.categorical} | {c: True for c in attrs.numeric}
    rows, y = data.examples.rows, data.examples.labels
    older = fold.fit & ~fold.stopping & ~fold.recent
    return guard(
        columns,
        rows[older],
        y[older],
        rows[fold.stopping],
        y[fold.stopping],
        config.leakage,
        flat=config.flat,
        leads=None if crm is None else crm.leads,
        outcomes=None if crm is None else crm.outcomes,
    )


def fold_builders(
    data: TrainingSet, config: ProjectConfig, crm: CRMData | None = None
) -> tuple[list[Finding], Callable[[Fold], FeatureBuilder]]:
    """The leakage guard's findings on the newest fold, and each fold's unfitted feature
    builder: the newest fold and the refit leave out what those findings exclude; an older
    fold also what the guard finds on its own rows (run once per fold)."""
    findings = leakage_findings(data, config, crm)
    dropped = excluded(findings)
    own: dict[int, set[str]] = {}

    def make_builder(fold: Fold) -> FeatureBuilder:
        if fold.number <= 1:
            return _builder(config, data, dropped)
        if fold.number not in own:
            own[fold.number] = excluded(_fold_guard(data, fold, config, crm))
        return _builder(config, data, dropped | own[fold.number])

    return findings, make_builder


def backtest_folds(data: TrainingSet, config: ProjectConfig) -> tuple[list[Fold], list[str], Fold]:
    """The backtest's folds (newest first: the split itself), the folds left out (in
    words), and the refit's windows."""
    examples = data.examples
    y = examples.labels
    newest = data.newest_fold()
    if data.plan.method == "time":
        folds, notes = time_folds(examples.snapshots["as_of"], y, config, data.plan.label_end)
        refit = time_refit(examples.snapshots["as_of"], config, data.plan.label_end)
    else:
        sizes = {name: int(data.splits[name].sum()) for name in SPLITS}
        folds, notes = flat_folds(len(y), y, config, sizes, data.order)
        refit = flat_refit(len(y), config, sizes)
    return [newest, *folds], notes, refit


def train(
    data: TrainingSet,
    config: ProjectConfig,
    crm: CRMData | None = None,
) -> TrainingResult:
    """Backtest the recipe, refit it on every labelled example, and evaluate the newest fold.

    The leakage guard runs first (on the newest fold's fitting cohorts; each older fold
    runs its own on its own rows); the columns it excludes never reach the model or the
    baseline. The registered model is the refit (`backtest.refit`), whose newest learned
    snapshot is the newest labelled date; every figure of the run is the newest fold's, the
    same recipe fitted one step earlier. `crm` lets the guard compare timestamp columns with
    conversions.
    """
    progress = reporter()
    findings, make_builder = fold_builders(data, config, crm)
    folds, notes, refit = backtest_folds(data, config)
    check_monotone(config, make_builder(folds[0]))
    backtest, models = run_backtest(data.examples, folds, make_builder, config, notes)
    newest = backtest.newest
    column = choose_candidate(backtest, config)
    chosen = candidate_configs(config)[column]
    learner = chosen.learner
    fold_models = models[column]
    if config.backtest.refit:
        progress("refit", 0, 1)
        model = fit_recipe(data.examples, refit, make_builder(refit), config, chosen)
        progress("refit", 1, 1)
        trained_through = refit.fit_end
    else:
        model, trained_through = fold_models[1], newest.fold.fit_end
        fitted = data.examples.rows[newest.fold.fit]
        model.drift_reference_ = drift_reference(fitted, model.features, config.monitoring.psi_bins)
    predictions = newest.predictions
    model_p = predictions[column].to_numpy(dtype=float)
    # The newest fold's probabilities: what a scoring run's scores are compared with.
    model.reference_probabilities_ = np.sort(model_p)
    # The rules are checked against these at scoring too (a rule on a type that is only
    # absent from tonight's window is fine; one the data never had is a typo).
    model.activity_types_ = data.activity_types
    model.trained_through_ = trained_through
    model.recipe_ = recipe(config.model_copy(update={"model": chosen}))
    if data.plan.method != "time":
        # A flat export has no dates: the leads it learned from say which it never saw.
        model.fitted_leads_ = lead_hashes(data.examples.snapshots["lead_id"].to_numpy())
    metrics = {who: dict(m) for who, m in newest.metrics.items()}
    metrics["model"] = dict(newest.metrics[column])
    mql = predictions["is_mql"].to_numpy(dtype=bool)
    y_test = predictions["converted"].to_numpy(dtype=float)
    metrics["rules"]["mql_rate"] = float(mql.mean())
    metrics["rules"]["mql_conversion_rate"] = (
        float(y_test[mql].mean()) if mql.any() else float("nan")
    )
    test_scores = data.snapshots["test"].assign(
        conversion_probability=model_p,
        rule_score=predictions["rule_score"].to_numpy(),
        rule_probability=predictions["rule_probability"].to_numpy(),
        is_mql=mql,
    )
    progress("shift check", 0, 1)
    shift = shift_check(
        fold_models[1].features,
        data.rows["train"],
        data.rows["test"],
        seed=config.model.seed,
        num_threads=config.model.num_threads,
    )
    progress("shift check", 1, 1)
    return TrainingResult(
        model,
        data,
        metrics,
        test_scores,
        rule_mapping(data.examples, newest.fold),
        findings,
        newest.baseline,
        shift,
        backtest,
        trained_through,
        config.backtest.refit,
        fold_models,
        None
        if trained_through is None
        else min(trained_through + pd.Timedelta(days=config.horizon_days), data.plan.data_end),
        learner,
        backtest.leaderboard(column) if len(backtest.candidates) > 1 else None,
        column,
        config.backtest.metric,
        config.backtest.tie_tolerance,
    )


def choose_candidate(backtest: Backtest, config: ProjectConfig) -> str:
    """The competing candidate (its column) with the best pooled backtest metric; one
    within `tie_tolerance` of the best that is simpler wins instead (the candidates are
    in order of simplicity)."""
    metric, sign = config.backtest.metric, (1 if config.backtest.metric == "log_loss" else -1)
    loss = {who: sign * backtest.pooled[who][metric] for who in backtest.candidates}
    best = min(loss.values())
    return next(w for w in backtest.candidates if loss[w] <= best + config.backtest.tie_tolerance)


def check_monotone(config: ProjectConfig, builder: FeatureBuilder) -> None:
    """Every feature `backtest.monotone` (or `model.monotone`) names is a numeric feature of
    the model; else a clear error naming the ones there are."""
    wanted = {**config.backtest.monotone, **config.model.monotone}
    if not wanted:
        return
    numeric = [*builder.numeric, *builder.measured]
    unknown = sorted(set(wanted) - set(numeric))
    if unknown:
        shown = ", ".join(numeric[:12]) + (", ..." if len(numeric) > 12 else "")
        raise ConfigError(
            f"monotone constraints name {', '.join(unknown)}, which the model does not have "
            f"as a numeric feature",
            f"use numeric feature names, e.g. {shown}",
        )


def lead_hashes(lead_ids: np.ndarray) -> np.ndarray:
    """Sorted hashes of lead ids (what a flat model records it learned from)."""
    return np.sort(hash_leads(lead_ids))


def recipe_backtest(
    result: TrainingResult, model_config: ModelConfig, config: ProjectConfig
) -> Backtest:
    """Another model configuration's recipe on exactly this run's folds and features.

    What the promotion gate compares a champion of other parameters with: both recipes fit
    on the same fitting rows of every fold and are judged on the same test rows.
    """
    other = config.model_copy(update={"model": model_config})

    def make_builder(fold: Fold) -> FeatureBuilder:
        fitted = result.fold_models[fold.number].features
        return replace(fitted, categories_={}, feature_names_=[])

    folds = [r.fold for r in result.backtest.folds]
    backtest, _ = run_backtest(
        result.data.examples, folds, make_builder, other, candidates=("project",)
    )
    return backtest


#: The recipe sections that decide which examples there are and how the folds cut them: a
#: recipe that agrees with this run's on these can be fitted on this run's folds.
FOLD_SECTIONS = ("horizon_days", "snapshots", "split")


def same_folds(theirs: dict[str, Any], ours: dict[str, Any] | None) -> bool:
    """Whether another recipe draws the same examples and folds as this run's."""
    return ours is not None and all(theirs.get(k) == ours.get(k) for k in FOLD_SECTIONS)


def recipe_config(config: ProjectConfig, other: dict[str, Any]) -> ProjectConfig:
    """This project file with another recipe's model, features, attribute mapping, leakage
    settings and cross-fit groups (what a stored recipe says about how a model was made)."""
    source = config.source.model_copy(
        update={"attributes": type(config.source.attributes)(**other["attributes"])}
    )
    backtest = config.backtest.model_copy(update={"groups": other["backtest"]["groups"]})
    return config.model_copy(
        update={
            "source": source,
            "features": type(config.features)(**other["features"]),
            "model": ModelConfig(**other["model"]),
            "leakage": type(config.leakage)(**other["leakage"]),
            "backtest": backtest,
        }
    )


def recipe_examples(data: TrainingSet, crm: CRMData, config: ProjectConfig) -> TrainingSet:
    """This run's examples (the same leads, snapshot dates, labels, rule results and splits)
    with the rows another recipe reads: its attribute columns and its behaviour features,
    chosen on what was known when the training cohort ended, as `build_training_set` does.
    `crm` holds the columns the recipe maps (see `other_recipe_backtest`)."""
    spec = (
        _known_spec(crm, data.plan, config) if data.plan.method == "time" else BehaviourSpec.none()
    )
    accounts = account_spec(config, spec) if data.plan.method == "time" else AccountSpec.none()
    activities = index_activities(crm.activities, spec.page_categories, spec.page_activity_type)
    snaps = data.examples.snapshots
    rows, _ = _rows_in_chunks(
        snaps, crm, activities, spec, config, "champion features", accounts=accounts
    )
    examples = Examples(snaps, rows, data.examples.rules)
    return replace(data, spec=spec, accounts=accounts, examples=examples)


def other_recipe_backtest(
    result: TrainingResult, other: dict[str, Any], config: ProjectConfig, crm: CRMData
) -> Backtest:
    """A recipe of other features (a champion's) fitted on exactly this run's folds: its
    rows rebuilt for the same examples, its own leakage guard per fold, its own model
    settings; judged on the same test rows."""
    theirs = recipe_config(config, other)
    if any(c not in crm.leads.columns for c in attribute_columns(theirs)):
        # The champion reads lead columns this run's project file does not map: read them
        # from the source (the same leads; a source that lost them says so).
        crm = load_crm(theirs, sample=config.snapshots.sample_leads, as_of=crm.extract_date)
    data = recipe_examples(result.data, crm, theirs)
    _, make_builder = fold_builders(data, theirs, crm)
    folds = [r.fold for r in result.backtest.folds]
    backtest, _ = run_backtest(data.examples, folds, make_builder, theirs, candidates=("project",))
    return backtest


def cohort_probabilities(
    model: LeadScoringModel, data: TrainingSet, crm: CRMData, config: ProjectConfig, split: str
) -> np.ndarray:
    """Calibrated probabilities of `model` (e.g. the champion) for a split of `data`.

    The split's rows are reused when they hold what the model reads; otherwise they are
    rebuilt from the source with the model's own behaviour spec, so a model trained with
    other settings is judged on exactly the same leads and snapshot dates.
    """
    rows = data.rows[split]
    spec = model.features.behaviour
    needed = [*model.features.categorical, *model.features.numeric]
    needed += [model.features.title_column] if model.features.title_column else []
    needed += model.features.measured
    accounts = model.features.accounts or AccountSpec.none()
    same = spec == data.spec and accounts == data.accounts
    if not same or any(c not in rows.columns for c in needed):
        rows, _ = model_rows(crm, model, data.snapshots[split][["lead_id", "as_of"]], config)
    return np.asarray(model.predict_proba(rows), dtype=float)
