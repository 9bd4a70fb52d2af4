"""Training: point-in-time training sets from a source, and the calibrated model fitted and
evaluated on them, with the baseline, the shift check and the rules on the same test cohort.

Plain functions over loaded data: no MLflow and no Prefect here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from leadscore.config import ProjectConfig
from leadscore.data.features import (
    BehaviourSpec,
    FeatureBuilder,
    behaviour_spec,
    index_activities,
    snapshot_rows,
)
from leadscore.data.leakage import Finding, excluded, guard
from leadscore.data.rules import RuleSet, rule_results
from leadscore.data.snapshots import SPLITS, SplitPlan, build_snapshots, plan_splits
from leadscore.errors import DataError, ModelError
from leadscore.io.sources import CRMData
from leadscore.modeling.diagnostics import Baseline, Shift, fit_baseline, shift_check
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.modeling.metrics import classification_metrics
from leadscore.progress import reporter
from leadscore.scoring.inputs import activity_types, check_inputs
from leadscore.scoring.scorer import model_rows

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
        raise ModelError(
            f"too few conversions to train: the {split} cohort ({where}) has {len(snap):,} "
            f"examples and {have} conversion(s); it needs at least {need} (about {total} over "
            "train, validation, calibration and test)",
            "provide more history or leads (or widen the split); until then a model cannot "
            "be trained honestly, so keep working leads by your MQL rules",
        )


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
        _require_both_outcomes(split, snap, plan.describe()[split])
        snapshots[split] = snap
        rows[split] = snapshot_rows(
            snap, crm.leads, activities, spec, _attribute_columns(config), attrs.email
        )
        rule_out[split] = rule_results(rules, rows[split], snap, activities, config)
    progress("features", len(SPLITS), len(SPLITS))
    return TrainingSet(plan, spec, snapshots, rows, rule_out)


def build_training_set(crm: CRMData, config: ProjectConfig, rules: RuleSet) -> TrainingSet:
    """Plan the split and build snapshot rows and rule results for each split."""
    progress = reporter()
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
        _require_both_outcomes(split, snap, plan.describe()[split])
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
    crm: CRMData | None = None,
) -> TrainingResult:
    """Fit the calibrated model and evaluate it, the baseline and the rules on the test cohort.

    The leakage guard runs first; the columns it excludes never reach the model or the
    baseline. `crm` lets the guard compare timestamp columns with conversions.
    """
    progress = reporter()
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
