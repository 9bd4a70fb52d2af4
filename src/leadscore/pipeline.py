"""Training and scoring as plain functions over loaded data; no MLflow, no Prefect here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from leadscore.comparison import assign_tiers
from leadscore.config import ProjectConfig
from leadscore.errors import ConfigError, DataError, ModelError, NoOpenLeadsError
from leadscore.evaluation import classification_metrics
from leadscore.features import (
    ActivityIndex,
    BehaviourSpec,
    FeatureBuilder,
    behaviour_spec,
    derive_attributes,
    index_activities,
    snapshot_rows,
)
from leadscore.model import LeadScoringModel
from leadscore.reasons import explain
from leadscore.rules import RuleSet, check_activities, evaluate_rules
from leadscore.snapshots import SPLITS, SplitPlan, build_snapshots, plan_splits
from leadscore.sources import CRMData

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


def build_training_set(
    crm: CRMData, config: ProjectConfig, rules: RuleSet, progress: Progress = _noop
) -> TrainingSet:
    """Plan the time split and build snapshot rows and rule results for each split."""
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
    check_activities(rules, sorted(set(crm.activities["activity_type"].astype("str"))))
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
        need = MIN_CONVERSIONS[split]
        if int(snap["converted"].sum()) < need:
            raise ModelError(
                f"the {split} cohort ({plan.describe()[split]}) has {len(snap)} examples and "
                f"{int(snap['converted'].sum())} conversions; at least {need} are needed",
                "provide more history or leads, or widen split.*_days / snapshots.every_days",
            )
        snapshots[split] = snap
        columns = [
            *attrs.categorical,
            *attrs.numeric,
            *([attrs.job_title] if attrs.job_title else []),
        ]
        rows[split] = snapshot_rows(snap, crm.leads, activities, spec, columns, attrs.email)
        rule_out[split] = rule_results(rules, rows[split], snap, activities, config)
    progress("features", len(SPLITS), len(SPLITS))
    return TrainingSet(plan, spec, snapshots, rows, rule_out)


def train(data: TrainingSet, config: ProjectConfig, progress: Progress = _noop) -> TrainingResult:
    """Fit the calibrated model and evaluate it and the rules on the test cohort."""
    attrs = config.source.attributes
    builder = FeatureBuilder(
        categorical=list(attrs.categorical),
        numeric=list(attrs.numeric),
        title_column=attrs.job_title,
        feature_config=config.features,
        behaviour=data.spec,
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
    )
    # The rule score as a probability: a monotone fit on the calibration cohort, so both
    # scores read as probabilities on the test cohort.
    rule_probability = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
        data.rules["calibration"]["rule_score"].to_numpy(), data.labels("calibration")
    )
    y_test = data.labels("test")
    model_p = model.predict_proba(data.rows["test"])
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
    return TrainingResult(model, data, metrics, test_scores, rule_probability)


def parse_as_of(value: str | None) -> pd.Timestamp:
    """The scoring date at midnight UTC; today when `value` is None."""
    if value is None:
        return pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise ConfigError(f"--as-of {value!r} is not a date", "use YYYY-MM-DD, e.g. 2026-03-01")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.normalize()


def lookback_days(model: LeadScoringModel, rules: RuleSet) -> int:
    """How far back scoring must read activities: the model's and the rules' longest window."""
    windows = [r.within_days for r in rules.behaviour_rules]
    return max([model.features.behaviour.lookback_days, *windows]) + 1


def open_leads(crm: CRMData, as_of: pd.Timestamp, config: ProjectConfig) -> pd.DataFrame:
    """Snapshots of every open lead as of `as_of` (no label)."""
    return build_snapshots(crm.leads, crm.outcomes, [as_of], config.snapshots.max_lead_age_days)


def score(
    crm: CRMData,
    model: LeadScoringModel,
    predict: Callable[[pd.DataFrame], np.ndarray],
    rules: RuleSet,
    config: ProjectConfig,
    as_of: pd.Timestamp,
    progress: Progress = _noop,
) -> pd.DataFrame:
    """Probability, percentile, tier, reasons and rule score of every open lead as of `as_of`.

    `predict` is the packaged model's predict (raw snapshot rows → probability), so scoring
    goes through exactly what the registry serves; `model` supplies its behaviour spec.
    """
    snap = open_leads(crm, as_of, config)
    if snap.empty:
        raise NoOpenLeadsError(
            f"no open leads as of {as_of.date()}: none created in the "
            f"{config.snapshots.max_lead_age_days} days before it that had not converted",
            "pass --as-of with a date inside the data, or check the leads table",
        )
    attrs = config.source.attributes
    spec = model.features.behaviour
    # The model's own inputs, not today's config: a column it was trained on must be there.
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
        snap, crm.leads, activities, spec, list(dict.fromkeys(columns)), attrs.email
    )
    probability = np.asarray(predict(rows), dtype=float)
    if not np.all(np.isfinite(probability)) or probability.min() < 0 or probability.max() > 1:
        raise ModelError("the model returned probabilities outside [0, 1]; nothing was published")
    rules_out = rule_results(rules, rows, snap, activities, config)
    percentile = pd.Series(probability).rank(pct=True, method="average").to_numpy() * 100
    progress("reasons", 0, 1)
    reasons = explain(rows, model.contributions(rows), model.features, config.report.labels)
    progress("reasons", 1, 1)
    return pd.DataFrame(
        {
            "lead_id": snap["lead_id"].to_numpy(),
            "as_of": snap["as_of"].to_numpy(),
            "conversion_probability": probability,
            "percentile": percentile,
            "tier": assign_tiers(
                probability, snap["as_of"].to_numpy(), config.tiers, snap["lead_id"].to_numpy()
            ),
            "rule_score": rules_out["rule_score"].to_numpy(),
            "is_mql": rules_out["is_mql"].to_numpy(),
            "rules_fired": rules_out["rules_fired"].to_numpy(),
            "reasons_up": reasons["reasons_up"].to_numpy(),
            "reasons_down": reasons["reasons_down"].to_numpy(),
        }
    )
