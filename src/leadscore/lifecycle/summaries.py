"""The JSON summaries of `train`, `score` and `report` (`--json`, and what the flows
return): stable keys, rounded numbers, masked URIs, never a lead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.evaluation.evidence import Evidence
from leadscore.evaluation.rules_only import RulesEvidence
from leadscore.i18n import Words
from leadscore.io.publish import RULES_ONLY_MODEL
from leadscore.io.uris import redact_uri
from leadscore.lifecycle.monitoring import MonitoringResult
from leadscore.lifecycle.promotion import Verdict
from leadscore.lifecycle.registry import CHAMPION, RegisteredModel
from leadscore.modeling.metrics import METRIC_KEYS
from leadscore.scoring.training import TrainingResult

#: Metrics in the JSON summary, under `model` and `rules`.
SUMMARY_METRICS = METRIC_KEYS


def number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None


def _summary_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: number(metrics.get(k)) for k in SUMMARY_METRICS}


def comparison_summary(evidence: Evidence, language: str = "en") -> dict[str, Any]:
    """The comparison block of the JSON summaries (intervals, captured conversions)."""
    c = evidence.comparison
    effect = evidence.suggestion.effect.set_index("rules")

    def interval(key: str) -> dict[str, float | None]:
        return {k: number(v) for k, v in c.intervals[key].as_dict().items()}

    return {
        "roc_auc": {who: interval(f"roc_auc_{who}") for who in ("model", "rules", "difference")},
        "pr_auc": {who: interval(f"pr_auc_{who}") for who in ("model", "rules", "difference")},
        "mql_volume": c.mql_volume,
        "mql_per_date": number(c.mql_per_date),
        "converting_leads": c.converting_leads,
        "captured_at_mql_volume": {k: number(v) for k, v in c.captured_at_mql_volume.items()},
        "capacity_per_week": c.capacity_per_week,
        "captured_at_capacity": (
            {k: number(v) for k, v in c.captured_at_capacity.items()}
            if c.captured_at_capacity is not None
            else None
        ),
        "suggested_rules": {
            "mql_threshold": number(evidence.suggestion.threshold),
            "mql_conversion_rate": {
                "current": number(effect.loc["current rules", "mql_conversion_rate"]),
                "suggested": number(effect.loc["suggested rules", "mql_conversion_rate"]),
            },
        },
        "headline": c.headline(Words(language)),
    }


def training_summary(
    result: TrainingResult,
    registered: RegisteredModel,
    config: ProjectConfig,
    oracle: float | None,
    evidence: Evidence,
    checks: dict[str, Any],
    verdict: Verdict,
    champion: RegisteredModel | None,
) -> dict[str, Any]:
    """The JSON summary of a training run (stable keys), with the gate's decision."""
    return {
        "comparison": comparison_summary(evidence, config.report.language),
        "command": "train",
        "model": _summary_metrics(result.metrics["model"]),
        "rules": {
            **_summary_metrics(result.metrics["rules"]),
            "mql_rate": number(result.metrics["rules"]["mql_rate"]),
        },
        "baseline": {**_summary_metrics(result.metrics["baseline"]), "c": result.baseline.c},
        "leakage": {
            "excluded": [f.column for f in result.leakage if f.excluded],
            "kept": [f.column for f in result.leakage if not f.excluded],
            "findings": [f.as_dict() for f in result.leakage],
        },
        "shift": {
            "auc": number(result.shift.auc),
            "top": [{"feature": f, "share": number(v)} for f, v in result.shift.top()],
        },
        "split_method": result.data.plan.method,
        # The end of the history it learned from (the extract date or --as-of when given).
        "data_end": str(result.data.plan.data_end),
        "trained_through": None
        if result.trained_through is None
        else str(result.trained_through.date()),
        "oracle_auc": number(oracle),
        "rows": result.data.counts(),
        "splits": result.data.plan.describe(),
        "calibration": result.model.calibration_method_,
        "trees": ",".join(map(str, result.model.iterations)),
        "evaluated_on": "newest backtest fold: the same recipe fitted one step earlier, "
        "judged on the newest labelled cohort",
        "backtest": checks.get("backtest"),
        "model_name": registered.name,
        "model_version": registered.version,
        "aliases": ["champion", "challenger"] if verdict.promote else ["challenger"],
        "run_id": registered.run_id,
        "uris": {
            "source": redact_uri(config.source_uri),
            "tracking": redact_uri(config.tracking_uri),
            "model": f"models:/{registered.name}/{registered.version}",
        },
        "warnings": checks["warnings"],
        "promotion": verdict_summary(verdict, registered, champion),
    }


def report_summary(
    path: str,
    html: str,
    entry: RegisteredModel,
    config: ProjectConfig,
    metrics: dict[str, float],
    evidence: Evidence,
    saved: Any,
    open_leads: pd.DataFrame,
    open_source: str,
) -> dict[str, Any]:
    """The JSON summary of a report run: the champion's test metrics and where it is."""
    return {
        "command": "report",
        "path": path,
        **champion_test_metrics(metrics),
        "rows": {"test": len(saved.test), "open_leads": len(open_leads)},
        "uris": {**champion_uris(config, entry), "report": path},
        "model_name": entry.name,
        "model_version": entry.version,
        "run_id": entry.run_id,
        "open_leads": {"rows": len(open_leads), "from": open_source},
        "comparison": comparison_summary(evidence, config.report.language),
        "test_period": evidence.test_period,
        "bytes": len(html.encode("utf-8")),
    }


def _published_counts(scores: pd.DataFrame, published: int) -> dict[str, Any]:
    """Rows scored, published and flagged MQL, and leads per tier, of a scoring run."""
    return {
        "rows": {
            "scored": len(scores),
            "published": int(published),
            "mql": int(scores["is_mql"].sum()),
        },
        "tiers": {t: int((scores["tier"] == t).sum()) for t in ("A", "B", "C", "D")},
    }


def scoring_summary(
    scores: pd.DataFrame,
    entry: RegisteredModel,
    config: ProjectConfig,
    as_of: pd.Timestamp,
    published: int,
    champion_metrics: dict[str, float],
) -> dict[str, Any]:
    """The JSON summary of a scoring run; `model`/`rules` are the champion's test metrics."""
    return {
        "command": "score",
        "as_of": str(as_of.date()),
        **champion_test_metrics(champion_metrics),
        **_published_counts(scores, published),
        "mean_probability": number(scores["conversion_probability"].mean()),
        "model_name": entry.name,
        "model_version": entry.version,
        "run_id": entry.run_id,
        "monitoring_table": config.monitoring.table,
        "uris": champion_uris(config, entry),
    }


def rules_scoring_summary(
    scores: pd.DataFrame, config: ProjectConfig, as_of: pd.Timestamp, published: int
) -> dict[str, Any]:
    """The JSON summary of a rules-only scoring run (no model: no probability, no
    monitoring of a model's inputs)."""
    return {
        "command": "score",
        "mode": "rules-only",
        "as_of": str(as_of.date()),
        **_published_counts(scores, published),
        "mean_rule_score": number(scores["rule_score"].mean()),
        "model_name": RULES_ONLY_MODEL,
        "model_version": None,
        "run_id": None,
        "rules": config.rules_path.name,
        "monitoring": {
            "status": "skipped",
            "failed": [],
            "messages": ["rules-only: no model whose inputs could drift"],
            "realised": None,
            "run_id": None,
        },
        "uris": {
            "source": redact_uri(config.source_uri),
            "publish": redact_uri(config.publish_uri),
            "table": config.publish.table,
            "history_table": config.publish.history_table,
        },
    }


def rules_report_summary(
    path: str, html: str, evidence: RulesEvidence, config: ProjectConfig
) -> dict[str, Any]:
    """The JSON summary of a report on the rules alone (no champion yet)."""
    return {
        **rules_only_training_summary(evidence, config, None, []),
        "command": "report",
        "path": path,
        "bytes": len(html.encode("utf-8")),
    }


def rules_only_training_summary(
    evidence: RulesEvidence, config: ProjectConfig, run_id: str | None, warnings: list[str]
) -> dict[str, Any]:
    """The JSON summary of a training run that found too little history for a model."""
    iv = evidence.roc_auc
    return {
        "command": "train",
        "mode": "rules-only",
        "why": evidence.why,
        "warnings": warnings,
        "history": {
            "examples": evidence.examples,
            "leads": evidence.leads,
            "conversions": evidence.conversions,
            "converting_leads": evidence.converting_leads,
            "period": evidence.period,
        },
        "rules": {
            "roc_auc": None if iv is None else number(iv.estimate),
            "roc_auc_interval": None if iv is None else [number(iv.low), number(iv.high)],
            "mqls": evidence.mqls,
            "mql_conversion_rate": number(evidence.mql_conversion_rate),
            "other_conversion_rate": number(evidence.other_conversion_rate),
            "captured_share": number(evidence.captured_share),
        },
        "headline": evidence.headline(Words(config.report.language)),
        "run_id": run_id,
        "model_name": None,
        "model_version": None,
        "uris": {
            "source": redact_uri(config.source_uri),
            "tracking": redact_uri(config.tracking_uri),
            "publish": redact_uri(config.publish_uri),
        },
    }


def champion_test_metrics(metrics: dict[str, float]) -> dict[str, Any]:
    """`model`, `rules` and `oracle_auc` blocks from the champion's training run metrics."""

    def block(who: str) -> dict[str, float | None]:
        return {k: number(metrics.get(f"test_{who}_{k}")) for k in SUMMARY_METRICS}

    return {
        "model": block("model"),
        "rules": block("rules"),
        "oracle_auc": number(metrics.get("test_oracle_roc_auc")),
    }


def champion_uris(config: ProjectConfig, entry: RegisteredModel) -> dict[str, str]:
    """Where the source, tracking store, scores and the champion model are (masked)."""
    return {
        "source": redact_uri(config.source_uri),
        "tracking": redact_uri(config.tracking_uri),
        "publish": redact_uri(config.publish_uri),
        "table": config.publish.table,
        "history_table": config.publish.history_table,
        "model": f"models:/{entry.name}@{CHAMPION}",
    }


def verdict_summary(
    verdict: Verdict,
    challenger: RegisteredModel,
    champion: RegisteredModel | None,
) -> dict[str, Any]:
    """The gate's decision in the training summary."""
    return {
        "decision": verdict.action,
        "promoted": verdict.promote,
        "reason": verdict.reason,
        "challenger_version": challenger.version,
        "champion_version": challenger.version
        if verdict.promote
        else (champion.version if champion else None),
        "previous_champion": champion.version if champion else None,
        "challenger": {
            "roc_auc": number(verdict.challenger_auc),
            "ece": number(verdict.challenger_ece),
        },
        "champion": {"roc_auc": number(verdict.champion_auc), "ece": number(verdict.champion_ece)},
    }


def monitoring_summary(result: MonitoringResult, run_id: str | None) -> dict[str, Any]:
    """The checks in the scoring summary."""
    return {
        "status": result.status,
        "failed": result.failed,
        "messages": result.messages(),
        "realised": result.realised,
        "run_id": run_id,
    }


#: The monthly figures of the review's summary: counts, then shares and metrics.
REVIEW_MONTH_COUNTS = (
    "runs", "leads", "new_leads", "rule_mqls", "rule_mql_conversions", "tier_as",
    "tier_a_conversions", "conversions", "volume",
)  # fmt: skip
REVIEW_MONTH_KEYS = (
    "rule_mql_rate", "rule_mql_low", "rule_mql_high", "tier_a_rate", "tier_a_low",
    "tier_a_high", "rules_captured", "model_captured", "rule_roc_auc", "model_roc_auc",
    "model_ece",
)  # fmt: skip


def _plain(value: Any) -> Any:
    """A JSON value: dates as ISO text, numbers finite or null, text as it is."""
    if isinstance(value, pd.Timestamp):
        return str(value.date())
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    return number(value)


def _sla_summary(sla) -> dict[str, Any] | None:
    """The SLA section's figures: per group, the counts, targets, buckets and the effect."""
    if sla is None:
        return None
    groups = {}
    for name, g in sla.groups.items():
        groups[name] = {
            "leads": g.leads,
            "already_in_touch": g.already,
            "answered": g.touched,
            "median_minutes": number(g.median_minutes),
            "replayed": g.replayed,
            "within": [{k: _plain(v) for k, v in r.items()} for r in g.within.to_dict("records")],
            "buckets": [
                {"bucket": label, **{k: _plain(v) for k, v in r.items()}}
                for label, r in zip(SLA_BUCKETS, g.buckets.to_dict("records"), strict=True)
            ],
            "answered_within_hour_minus_later": [number(v) for v in g.difference],
        }
    return {"touch_types": sla.touch_types, "months": sla.months, "groups": groups}


#: The SLA buckets' names in the JSON summary (the page says them in words).
SLA_BUCKETS = ("le_5m", "5m_60m", "1h_24h", "over_24h", "in_touch_before", "not_touched")


def review_summary(path: str, review, config: ProjectConfig) -> dict[str, Any]:
    """The review's JSON summary: the monthly table, the rule versions, the last change."""
    months = []
    for row in review.months.to_dict("records"):
        entry = {"month": row["month"], "provisional": bool(row["provisional"]),
                 "outcomes_complete_on": row["outcomes_complete_on"],
                 "rule_versions": row["rule_versions"]}  # fmt: skip
        entry |= {k: int(row[k]) for k in REVIEW_MONTH_COUNTS}
        entry |= {k: number(row[k]) for k in REVIEW_MONTH_KEYS}
        months.append(entry)
    effect = None
    if review.effect is not None:
        effect = {
            "changed_on": str(review.effect.change.when.date()),
            "days": review.effect.days,
            "sides": [
                {
                    k: (
                        str(v.date())
                        if isinstance(v, pd.Timestamp)
                        else v
                        if isinstance(v, str)
                        else number(v)
                    )
                    for k, v in side.items()
                }
                for side in review.effect.table.to_dict("records")
            ],
            "difference": [number(v) for v in review.effect.difference],
        }
    return {
        "command": "review",
        "month": str(review.month),
        "path": path,
        "language": config.report.language,
        "horizon_days": review.horizon_days,
        "outcomes_until": str(pd.Timestamp(review.outcomes_until).date()),
        "months": months,
        "rule_versions": [
            {
                "sha256": v["rules_sha256"],
                "file": v["file_name"],
                "first_run": str(pd.Timestamp(v["first_run"]).date()),
                "last_run": str(pd.Timestamp(v["last_run"]).date()),
                "runs": int(v["runs"]),
            }
            for v in review.versions.to_dict("records")
        ],
        "changes": [
            {
                "on": str(c.when.date()),
                "before": c.before,
                "after": c.after,
                "rules": [{k: _plain(v) for k, v in r.items()} for r in c.table.to_dict("records")],
                "threshold": [c.threshold_before, c.threshold_after],
            }
            for c in review.changes
        ],
        "effect": effect,
        "sla": _sla_summary(review.sla),
        "effect_state": review.effect_state,
        "diagnostics_state": review.diagnostics_state,
        "uris": {
            "source": redact_uri(config.source_uri),
            "publish": redact_uri(config.publish_uri),
        },
    }
