"""Training and scoring as plain functions over loaded data; no MLflow, no Prefect here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from leadscore.config import ProjectConfig
from leadscore.data.features import (
    ActivityIndex,
    BehaviourSpec,
    FeatureBuilder,
    behaviour_spec,
    derive_attributes,
    index_activities,
    snapshot_rows,
)
from leadscore.data.leakage import Finding, excluded, guard
from leadscore.data.rules import RuleSet, check_activities, evaluate_rules
from leadscore.data.snapshots import SPLITS, SplitPlan, build_snapshots, plan_splits
from leadscore.errors import ConfigError, DataError, ModelError, NoOpenLeadsError
from leadscore.evaluation.comparison import assign_tiers
from leadscore.io.sources import CRMData
from leadscore.modeling.diagnostics import Baseline, Shift, fit_baseline, shift_check
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.modeling.metrics import classification_metrics
from leadscore.modeling.reasons import explain

Progress = Callable[[str, int, int], None]

#: Fewest conversions per split that give a usable fit and evaluation.
MIN_CONVERSIONS = {"train": 50, "validation": 10, "calibration": 20, "test": 10}


@dataclass
class TrainingSet:
    """Snapshot rows, labels and rule results for each split."""

    plan: SplitPlan
    spec: BehaviourSpec
    snapshots: dict[str, pd.DataFrame]
    rows: dict[str, pd.DataFrame]
    rules: dict[str, pd.DataFrame]
    #: Every activity type in the training history (what the rules were checked against).
    activity_types: tuple[str, ...] = ()

    def labels(self, split: str) -> np.ndarray:
        return self.snapshots[split]["converted"].to_numpy(dtype=float)

    def counts(self) -> dict[str, int]:
        out = {}
        for name in SPLITS:
            out[f"{name}_rows"] = len(self.snapshots[name])
            out[f"{name}_conversions"] = int(self.snapshots[name]["converted"].sum())
            out[f"{name}_leads"] = int(self.snapshots[name]["lead_id"].nunique())
        return out


@dataclass
class TrainingResult:
    """A fitted model and its evaluation on the newest labelled cohort."""

    model: LeadScoringModel
    data: TrainingSet
    metrics: dict[str, dict[str, float]]
    test_scores: pd.DataFrame
    rule_probability: IsotonicRegression
    #: Columns the leakage guard flagged (excluded unless kept by config).
    leakage: list[Finding]
    baseline: Baseline
    shift: Shift


def _noop(stage: str, done: int, total: int) -> None:
    return None


def attribute_fields(rows: pd.DataFrame, config: ProjectConfig) -> pd.DataFrame:
    """Fields attribute rules may test: raw attributes plus derived ones."""
    derived = derive_attributes(rows, config.source.attributes.job_title, config.features)
    return pd.concat([rows.drop(columns=derived.columns, errors="ignore"), derived], axis=1)


def rule_results(
    rules: RuleSet,
    rows: pd.DataFrame,
    snapshots: pd.DataFrame,
    activities: ActivityIndex,
    config: ProjectConfig,
) -> pd.DataFrame:
    """Rule score, MQL flag and fired rules for the snapshot rows."""
    return evaluate_rules(rules, attribute_fields(rows, config), snapshots, activities)


def _enough(split: str, snap: pd.DataFrame, where: str) -> None:
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
        raise ModelError(
            f"too few conversions to train: the {split} cohort ({where}) has {len(snap):,} "
            f"examples and {have} conversion(s); it needs at least {need} (about {total} over "
            "train, validation, calibration and test)",
            "provide more history or leads (or widen the split); until then a model cannot "
            "be trained honestly, so keep working leads by your MQL rules",
        )


def activity_types(activities: pd.DataFrame) -> tuple[str, ...]:
    """The activity types that occur in `activities`, sorted."""
    types = activities["activity_type"]
    if isinstance(types.dtype, pd.CategoricalDtype):
        types = types.cat.remove_unused_categories().cat.categories.to_series()
    return tuple(sorted({str(t) for t in types.dropna().unique()}))


def check_inputs(
    rules: RuleSet,
    config: ProjectConfig,
    flat: bool,
    types: tuple[str, ...],
    known: tuple[str, ...] = (),
    whole_source: bool = True,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> None:
    """The checks of the source and the rule file that training and scoring share.

    `types`: the activity types in the data read; `known`: those the model's training data
    had (scoring only: a rule may count a type that happens to be absent from tonight's
    window). `whole_source` is False for on-demand scoring, which reads a few leads only,
    so an empty activities table says nothing there. `window`: the activities read for
    scoring (the model's lookback before the as-of date).
    """
    if flat and rules.behaviour_rules:
        names = ", ".join(r.name for r in rules.behaviour_rules)
        raise ConfigError(
            f"rule(s) {names} count activities, but a flat export has none",
            "use attribute rules (equals, in, contains, range) on the export's columns",
        )
    table = config.source.tables.activities
    if table is not None and not flat and whole_source and not types:
        where = (
            f"between {window[0].date()} and {window[1].date()} (the lookback of the model "
            "and the rules before the as-of date)"
            if window is not None
            else "(the table is empty)"
        )
        raise DataError(
            f"table '{table}': no activities {where}; scores without any behaviour would be "
            "published as if no lead had done anything",
            "export the activities again (is the export or its sync stale? is --as-of right?); "
            "if your data has no activities, set source.tables.activities: null and retrain",
        )
    check_activities(rules, tuple(sorted({*types, *known})))


def _attribute_columns(config: ProjectConfig) -> list[str]:
    attrs = config.source.attributes
    return [*attrs.categorical, *attrs.numeric, *([attrs.job_title] if attrs.job_title else [])]


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


def build_flat_training_set(
    crm: CRMData, config: ProjectConfig, rules: RuleSet, progress: Progress = _noop
) -> TrainingSet:
    """A flat export: one example per labelled lead, as of the export, split by order/random."""
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
    snapshots, rows, rule_out = {}, {}, {}
    for i, split in enumerate(SPLITS):
        progress("features", i, len(SPLITS))
        part = parts[split]
        snap = pd.DataFrame(
            {
                "lead_id": part["lead_id"].to_numpy(),
                "as_of": pd.Series(as_of, index=range(len(part))).astype("datetime64[us]"),
                "converted": part["converted"].to_numpy(dtype=np.int8),
            }
        )
        _enough(split, snap, plan.describe()[split])
        snapshots[split] = snap
        rows[split] = snapshot_rows(
            snap, crm.leads, activities, spec, _attribute_columns(config), attrs.email
        )
        rule_out[split] = rule_results(rules, rows[split], snap, activities, config)
    progress("features", len(SPLITS), len(SPLITS))
    return TrainingSet(plan, spec, snapshots, rows, rule_out)


def build_training_set(
    crm: CRMData, config: ProjectConfig, rules: RuleSet, progress: Progress = _noop
) -> TrainingSet:
    """Plan the split and build snapshot rows and rule results for each split."""
    if crm.flat:
        return build_flat_training_set(crm, config, rules, progress)
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
    # Which activity types become features is decided on what was known when the training
    # cohort ended, not on the later cohorts.
    known = crm.activities[crm.activities["occurred_at"] < max(plan.dates["train"])]
    spec = behaviour_spec(known, config.features)
    types = activity_types(crm.activities)
    check_inputs(rules, config, False, types)
    activities = index_activities(crm.activities, spec.page_categories, spec.page_activity_type)
    attrs = config.source.attributes
    snapshots, rows, rule_out = {}, {}, {}
    for i, split in enumerate(SPLITS):
        progress("features", i, len(SPLITS))
        snap = build_snapshots(
            crm.leads,
            crm.outcomes,
            plan.dates[split],
            config.snapshots.max_lead_age_days,
            config.horizon_days,
        )
        _enough(split, snap, plan.describe()[split])
        snapshots[split] = snap
        columns = _attribute_columns(config)
        rows[split] = snapshot_rows(snap, crm.leads, activities, spec, columns, attrs.email)
        rule_out[split] = rule_results(rules, rows[split], snap, activities, config)
    progress("features", len(SPLITS), len(SPLITS))
    return TrainingSet(plan, spec, snapshots, rows, rule_out, types)


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


def train(
    data: TrainingSet,
    config: ProjectConfig,
    progress: Progress = _noop,
    crm: CRMData | None = None,
) -> TrainingResult:
    """Fit the calibrated model and evaluate it, the baseline and the rules on the test cohort.

    The leakage guard runs first; the columns it excludes never reach the model or the
    baseline. `crm` lets the guard compare timestamp columns with conversions.
    """
    attrs = config.source.attributes
    findings = leakage_findings(data, config, crm)
    dropped = excluded(findings)
    builder = FeatureBuilder(
        categorical=[c for c in attrs.categorical if c not in dropped],
        numeric=[c for c in attrs.numeric if c not in dropped],
        title_column=attrs.job_title,
        feature_config=config.features,
        behaviour=data.spec,
        derive_title=attrs.job_title is not None,
        derive_email=attrs.email is not None,
    )
    model = LeadScoringModel(builder, config.model).fit(
        data.rows["train"],
        data.labels("train"),
        data.rows["validation"],
        data.labels("validation"),
        data.rows["calibration"],
        data.labels("calibration"),
        data.snapshots["calibration"]["lead_id"].to_numpy(),
        progress=lambda done, total: progress("training", done, total),
        drift_bins=config.monitoring.psi_bins,
    )
    # The rule score as a probability: a monotone fit on the calibration cohort, so both
    # scores read as probabilities on the test cohort.
    rule_probability = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
        data.rules["calibration"]["rule_score"].to_numpy(), data.labels("calibration")
    )
    y_test = data.labels("test")
    model_p = model.predict_proba(data.rows["test"])
    # The test cohort's probabilities: what a scoring run's scores are compared with.
    model.reference_probabilities_ = np.sort(np.asarray(model_p, dtype=np.float64))
    # The rules are checked against these at scoring too (a rule on a type that is only
    # absent from tonight's window is fine; one the data never had is a typo).
    model.activity_types_ = data.activity_types
    rules_test = data.rules["test"]
    rule_p = rule_probability.predict(rules_test["rule_score"].to_numpy())
    metrics = {
        "model": classification_metrics(y_test, model_p, model_p),
        "rules": classification_metrics(y_test, rules_test["rule_score"].to_numpy(), rule_p),
    }
    mql = rules_test["is_mql"].to_numpy()
    metrics["rules"]["mql_rate"] = float(mql.mean())
    metrics["rules"]["mql_conversion_rate"] = (
        float(y_test[mql].mean()) if mql.any() else float("nan")
    )
    test_scores = data.snapshots["test"].assign(
        conversion_probability=model_p,
        rule_score=rules_test["rule_score"].to_numpy(),
        rule_probability=rule_p,
        is_mql=mql,
    )
    progress("baseline", 0, 1)
    baseline = fit_baseline(
        model.features,
        data.rows["train"],
        data.labels("train"),
        data.rows["validation"],
        data.labels("validation"),
        data.rows["test"],
        y_test,
    )
    metrics["baseline"] = baseline.metrics
    shift = shift_check(
        model.features,
        data.rows["train"],
        data.rows["test"],
        seed=config.model.seed,
        num_threads=config.model.num_threads,
    )
    progress("baseline", 1, 1)
    return TrainingResult(
        model, data, metrics, test_scores, rule_probability, findings, baseline, shift
    )


def parse_as_of(value: str | None) -> pd.Timestamp:
    """The scoring date at midnight UTC; today when `value` is None; never in the future."""
    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    if value is None:
        return today
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise ConfigError(f"--as-of {value!r} is not a date", "use YYYY-MM-DD, e.g. 2026-03-01")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if stamp.normalize() > today:
        raise ConfigError(
            f"--as-of {stamp.date()} lies in the future (today is {today.date()}, UTC): its "
            "scores would describe leads on a day that has not happened",
            "leave --as-of out to score as of today, or give a past date to backfill",
        )
    return stamp.normalize()


def check_as_of(as_of: pd.Timestamp, data_end: pd.Timestamp, max_days_after: int) -> None:
    """Refuse an as-of date too long after the newest data (stale export or a wrong date)."""
    newest = pd.Timestamp(data_end).normalize()
    # Scoring as of the day after the newest data sees all of it: that is no gap yet.
    gap = (as_of.normalize() - newest).days - 1
    if gap > max_days_after:
        raise DataError(
            f"as-of {as_of.date()} follows {gap} days without any data in the source (its "
            f"newest is from {newest.date()}); at most {max_days_after} are allowed: every "
            "recent-behaviour feature would be empty and the scores would describe a CRM that "
            "stopped",
            "refresh the export (is its sync stale?), or score as of a date inside the data "
            "with --as-of; if the quiet spell is real, raise scoring.max_days_after_data",
        )


def model_activity_types(model: LeadScoringModel) -> tuple[str, ...]:
    """The activity types of the model's training history (older models: its features')."""
    return tuple(getattr(model, "activity_types_", model.features.behaviour.activity_types))


def check_scoring_inputs(
    crm: CRMData,
    model: LeadScoringModel,
    rules: RuleSet,
    config: ProjectConfig,
    as_of: pd.Timestamp,
    whole_source: bool = True,
) -> None:
    """What training checks of the source and the rules, checked before anything is scored.

    The whole source read for a batch run also bounds the as-of date: after the newest
    data by more than `scoring.max_days_after_data`, every behaviour feature would be empty.
    """
    if whole_source and not crm.flat:
        check_as_of(as_of, crm.data_end, config.scoring.max_days_after_data)
    window = (as_of - pd.Timedelta(days=lookback_days(model, rules)), as_of)
    types = activity_types(crm.activities)
    check_inputs(rules, config, crm.flat, types, model_activity_types(model), whole_source, window)


def lookback_days(model: LeadScoringModel, rules: RuleSet) -> int:
    """How far back scoring must read activities: the model's and the rules' longest window."""
    windows = [r.within_days for r in rules.behaviour_rules]
    return max([model.features.behaviour.lookback_days, *windows]) + 1


def open_leads(crm: CRMData, as_of: pd.Timestamp, config: ProjectConfig) -> pd.DataFrame:
    """Snapshots of every open lead as of `as_of` (no label).

    In a flat export the open leads are the rows with an empty label.
    """
    if crm.flat:
        open_ = crm.leads[crm.leads["converted"].isna()]
        return pd.DataFrame(
            {
                "lead_id": open_["lead_id"].to_numpy(),
                "as_of": pd.Series(as_of, index=range(len(open_))).astype("datetime64[us]"),
            }
        )
    return build_snapshots(crm.leads, crm.outcomes, [as_of], config.snapshots.max_lead_age_days)


def model_rows(
    crm: CRMData, model: LeadScoringModel, snap: pd.DataFrame, config: ProjectConfig
) -> tuple[pd.DataFrame, ActivityIndex]:
    """The raw rows `model` scores for snapshots `snap`, built with the model's own spec.

    A model is scored on its own inputs, not today's config: a column it was trained on
    must be in the source. Returns the rows and the indexed activities (for the rules).
    """
    spec = model.features.behaviour
    columns = [*model.features.categorical, *model.features.numeric]
    columns += [model.features.title_column] if model.features.title_column else []
    missing = [c for c in columns if c not in crm.leads.columns]
    if missing:
        raise DataError(
            f"the model was trained with lead column(s) {', '.join(missing)}, which the source "
            "no longer provides",
            "map them again under source.attributes, or retrain with `leadscore train`",
        )
    activities = index_activities(crm.activities, spec.page_categories, spec.page_activity_type)
    rows = snapshot_rows(
        snap,
        crm.leads,
        activities,
        spec,
        list(dict.fromkeys(columns)),
        config.source.attributes.email,
    )
    return rows, activities


def score(
    crm: CRMData,
    model: LeadScoringModel,
    predict: Callable[[pd.DataFrame], np.ndarray],
    rules: RuleSet,
    config: ProjectConfig,
    as_of: pd.Timestamp,
    progress: Progress = _noop,
    whole_source: bool = True,
) -> pd.DataFrame:
    """Probability, percentile, tier, reasons and rule score of every open lead as of `as_of`."""
    return score_with_rows(crm, model, predict, rules, config, as_of, progress, whole_source)[0]


def score_with_rows(
    crm: CRMData,
    model: LeadScoringModel,
    predict: Callable[[pd.DataFrame], np.ndarray],
    rules: RuleSet,
    config: ProjectConfig,
    as_of: pd.Timestamp,
    progress: Progress = _noop,
    whole_source: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`score`, plus the raw rows that were scored (what monitoring compares with training).

    `predict` is the packaged model's predict (raw snapshot rows → probability), so scoring
    goes through exactly what the registry serves; `model` supplies its behaviour spec.
    The source and the rules are checked as training checks them first (`whole_source`
    False: a few leads read on demand, whose lack of activities says nothing).
    """
    check_scoring_inputs(crm, model, rules, config, as_of, whole_source)
    snap = open_leads(crm, as_of, config)
    if snap.empty:
        raise no_open_leads(crm.flat, config, as_of)
    partial, rows = score_partial(crm, model, predict, rules, config, snap, progress)
    return finish_scores(partial, config), rows


def no_open_leads(flat: bool, config: ProjectConfig, as_of: pd.Timestamp) -> NoOpenLeadsError:
    """The error of a scoring run that found no lead to score."""
    if flat:
        return NoOpenLeadsError(
            f"no open leads: every row of '{config.source.tables.leads}' has a label",
            f"leave {config.source.label.column} empty for the leads to score",
        )
    return NoOpenLeadsError(
        f"no open leads as of {as_of.date()}: none created in the "
        f"{config.snapshots.max_lead_age_days} days before it that had not converted",
        "pass --as-of with a date inside the data, or check the leads table",
    )


def score_partial(
    crm: CRMData,
    model: LeadScoringModel,
    predict: Callable[[pd.DataFrame], np.ndarray],
    rules: RuleSet,
    config: ProjectConfig,
    snap: pd.DataFrame,
    progress: Progress = _noop,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Probability, rule score and reasons of the snapshots `snap` (one lead each).

    Everything here is per lead, so a lead partition gets the same values alone as in the
    whole population; percentile and tier, which rank leads against each other, are added
    by `finish_scores` once all partitions are in.
    """
    rows, activities = model_rows(crm, model, snap, config)
    probability = np.asarray(predict(rows), dtype=float)
    if not np.all(np.isfinite(probability)) or probability.min() < 0 or probability.max() > 1:
        raise ModelError("the model returned probabilities outside [0, 1]; nothing was published")
    rules_out = rule_results(rules, rows, snap, activities, config)
    progress("reasons", 0, 1)
    reasons = explain(rows, model.contributions(rows), model.features, config.report.labels)
    progress("reasons", 1, 1)
    partial = pd.DataFrame(
        {
            "lead_id": snap["lead_id"].to_numpy(),
            "as_of": snap["as_of"].to_numpy(),
            "conversion_probability": probability,
            "rule_score": rules_out["rule_score"].to_numpy(),
            "is_mql": rules_out["is_mql"].to_numpy(),
            "rules_fired": rules_out["rules_fired"].to_numpy(),
            "reasons_up": reasons["reasons_up"].to_numpy(),
            "reasons_down": reasons["reasons_down"].to_numpy(),
        }
    )
    return partial, rows


def finish_scores(partial: pd.DataFrame, config: ProjectConfig) -> pd.DataFrame:
    """Percentile and tier of every lead, ranked against all the leads in `partial`."""
    probability = partial["conversion_probability"].to_numpy(dtype=float)
    percentile = pd.Series(probability).rank(pct=True, method="average").to_numpy() * 100
    tier = assign_tiers(
        probability, partial["as_of"].to_numpy(), config.tiers, partial["lead_id"].to_numpy()
    )
    out = partial.reset_index(drop=True)
    out.insert(3, "percentile", percentile)
    out.insert(4, "tier", tier)
    return out


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
    needed += spec.columns()
    if spec != data.spec or any(c not in rows.columns for c in needed):
        rows, _ = model_rows(crm, model, data.snapshots[split][["lead_id", "as_of"]], config)
    return np.asarray(model.predict_proba(rows), dtype=float)
