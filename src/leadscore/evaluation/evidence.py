"""The evidence marketing sees: comparison, rule diagnostics and suggested rules, as one object.

Built from two frames a training run keeps (and logs to MLflow, so a report can be made
again later without retraining): the newest labelled cohort scored by both, and the fitting
cohorts' rule hits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.data.rules import RuleSet
from leadscore.data.snapshots import SPLITS
from leadscore.evaluation.comparison import Comparison, compare
from leadscore.evaluation.tuning import (
    RuleSuggestion,
    rule_diagnostics,
    suggest_rules,
    suggested_rules_yaml,
)
from leadscore.scoring.training import TrainingResult

#: Cohorts the suggested points are fitted on (everything before the test cohort).
FIT_SPLITS = tuple(s for s in SPLITS if s != "test")
TEST_COLUMNS = (
    "lead_id",
    "as_of",
    "converted",
    "conversion_probability",
    "rule_score",
    "rule_probability",
    "is_mql",
)


@dataclass
class Evidence:
    """Comparison, per-rule diagnostics with suggested points, and the suggested rule file."""

    comparison: Comparison
    rules: pd.DataFrame
    suggestion: RuleSuggestion
    suggested_rules_yaml: str
    test_period: str


def cohort_frames(result: TrainingResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The test cohort (both scores, rule hits) and the fitting cohorts (rule hits, labels)."""
    data = result.data
    hits = [c for c in data.rules["test"].columns if c.startswith("hits_")]
    test = pd.concat(
        [result.test_scores[list(TEST_COLUMNS)], data.rules["test"][hits]], axis=1
    ).reset_index(drop=True)
    fit = pd.concat(
        [
            pd.concat(
                [
                    data.snapshots[s][["lead_id", "as_of", "converted"]],
                    data.rules[s][["rule_score", "is_mql", *hits]],
                ],
                axis=1,
            )
            for s in FIT_SPLITS
        ],
        ignore_index=True,
    )
    return test, fit


def build_evidence(
    test: pd.DataFrame,
    fit: pd.DataFrame,
    rules: RuleSet,
    config: ProjectConfig,
    seed: int = 0,
) -> Evidence:
    """Compare on the test cohort; fit suggested points on the fitting cohorts."""
    missing = [n for n in rules.names if f"hits_{n}" not in test or f"hits_{n}" not in fit]
    if missing:
        raise ValueError(f"cohort frames lack hits for rule(s) {', '.join(missing)}")
    comparison = compare(test, config.report, config.tiers, config.snapshots.every_days, seed=seed)
    y_test = test["converted"].to_numpy(dtype=float)
    suggestion = suggest_rules(
        rules,
        fit,
        fit["converted"].to_numpy(dtype=float),
        test,
        y_test,
        target_rate=config.report.target_mql_rate,
    )
    table = rule_diagnostics(rules, test, y_test).merge(
        suggestion.points[["rule", "coefficient", "suggested_points"]], on="rule"
    )
    dates = pd.to_datetime(test["as_of"])
    period = f"{dates.min().date()} to {dates.max().date()}" if len(dates) else "empty"
    text = suggested_rules_yaml(suggestion, rules, f"the snapshots of {period}")
    return Evidence(comparison, table, suggestion, text, period)


def evidence_metrics(evidence: Evidence) -> dict[str, float]:
    """Flat metrics for MLflow: intervals, captured conversions, suggested-rules effect."""
    out: dict[str, float] = {}
    for key, interval in evidence.comparison.intervals.items():
        out[f"test_{key}"] = interval.estimate
        out[f"test_{key}_low"] = interval.low
        out[f"test_{key}_high"] = interval.high
    c = evidence.comparison
    out["test_mql_volume"] = float(c.mql_volume)
    out["test_converting_leads"] = float(c.converting_leads)
    for who, value in c.captured_at_mql_volume.items():
        out[f"test_{who}_captured_at_mql_volume"] = value
    if c.captured_at_capacity is not None:
        for who, value in c.captured_at_capacity.items():
            out[f"test_{who}_captured_at_capacity"] = value
    effect = evidence.suggestion.effect.set_index("rules")
    for name, key in (("current rules", "current"), ("suggested rules", "suggested")):
        out[f"test_{key}_rules_mql_conversion_rate"] = float(
            effect.loc[name, "mql_conversion_rate"]
        )
        out[f"test_{key}_rules_mql_conversions"] = float(effect.loc[name, "mql_conversions"])
    return {k: v for k, v in out.items() if np.isfinite(v)}
