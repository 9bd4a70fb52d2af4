"""What a training or scoring run records: MLflow params/metrics/plots and the JSON summary."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore import interrupts
from leadscore.config import ProjectConfig
from leadscore.errors import ConfigError, LeadscoreError, ModelError
from leadscore.evaluation import plots
from leadscore.evaluation.evidence import Evidence, evidence_metrics
from leadscore.io import publish
from leadscore.io.sources import CRMData
from leadscore.io.uris import redact_uri
from leadscore.lifecycle import monitoring, promotion, registry
from leadscore.modeling.metrics import METRIC_KEYS
from leadscore.scoring import pipeline
from leadscore.scoring.pipeline import TrainingResult
from leadscore.synthetic import true_conversion_probability

#: Metrics in the JSON summary, under `model` and `rules`.
SUMMARY_METRICS = METRIC_KEYS


def oracle_auc(
    truth: tuple[pd.DataFrame, pd.DataFrame] | None, result: TrainingResult, horizon_days: int
) -> float | None:
    """AUC of the generator's true probabilities on the test cohort (generated data only)."""
    if truth is None:
        return None
    snapshots = result.data.snapshots["test"]
    p = true_conversion_probability(truth[0], truth[1], snapshots, horizon_days)
    return float(roc_auc_score(snapshots["converted"], p))


def training_params(config: ProjectConfig, result: TrainingResult) -> dict[str, Any]:
    """Parameters of a training run: data window, split, features, model settings."""
    plan = result.data.plan
    model = result.model
    params: dict[str, Any] = {
        "horizon_days": config.horizon_days,
        "snapshot_every_days": config.snapshots.every_days,
        "max_lead_age_days": config.snapshots.max_lead_age_days,
        "sample_leads": config.snapshots.sample_leads,
        "gap_days": config.gap_days,
        "data_start": str(min(d for dates in plan.dates.values() for d in dates).date()),
        "data_end": str(plan.data_end),
        "label_end": str(plan.label_end.date()),
        **{f"split_{k}": v for k, v in plan.describe().items()},
        "n_features": len(model.features.feature_names_),
        "categorical_features": ",".join(model.features.categorical_features),
        "activity_types": ",".join(model.features.behaviour.activity_types),
        "page_categories": ",".join(model.features.behaviour.page_categories),
        "windows_days": ",".join(map(str, model.features.behaviour.windows_days)),
        "max_trees": config.model.max_trees,
        "early_stopping_rounds": config.model.early_stopping_rounds,
        "best_iteration": model.best_iteration_,
        "calibration_method": model.calibration_method_,
        "calibration_choice": config.model.calibration,
        "seed": config.model.seed,
        "num_threads": config.model.num_threads,
        "source": redact_uri(config.source_uri),
        "rules_file": config.rules_path.name,
        "split_method": plan.method,
        "leakage_excluded": ",".join(f.column for f in result.leakage if f.excluded)[:500],
        "leakage_kept": ",".join(f.column for f in result.leakage if not f.excluded)[:500],
        "baseline_c": result.baseline.c,
    }
    params.update({f"lgbm_{k}": v for k, v in config.model.params.items()})
    return params


def training_metrics(result: TrainingResult, oracle: float | None) -> dict[str, float]:
    """Flat metric names for MLflow: test_<model|rules>_<metric>, row counts, oracle."""
    out: dict[str, float] = {}
    for who, metrics in result.metrics.items():
        for name, value in metrics.items():
            out[f"test_{who}_{name}"] = float(value)
    out.update({k: float(v) for k, v in result.data.counts().items()})
    for name, brier in result.model.calibration_briers_.items():
        out[f"calibration_cv_brier_{name}"] = brier
    if oracle is not None:
        out["test_oracle_roc_auc"] = oracle
    out["shift_auc"] = result.shift.auc
    out["leakage_excluded_columns"] = float(sum(f.excluded for f in result.leakage))
    return out


def checks_payload(result: TrainingResult, warnings: list[str] | None = None) -> dict[str, Any]:
    """The run's guard findings, baseline, shift check, split and data warnings (JSON-able).

    Stored with the run (evaluation/checks.json) so a later report shows them without
    retraining. Column names and numbers only: no values from the data.
    """
    plan = result.data.plan
    return {
        "split": {"method": plan.method, "cohorts": plan.describe()},
        "leakage": [f.as_dict() for f in result.leakage],
        "baseline": {
            "c": result.baseline.c,
            "metrics": {k: _num(v) for k, v in result.baseline.metrics.items()},
            "validation_auc": {str(k): _num(v) for k, v in result.baseline.validation_auc.items()},
        },
        "shift": {
            "auc": _num(result.shift.auc),
            "shifted": bool(result.shift.shifted),
            "rows": int(result.shift.rows),
            "top": [{"feature": f, "share": _num(v)} for f, v in result.shift.top()],
        },
        "warnings": list(warnings or []),
    }


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def evaluation_files(
    test: pd.DataFrame,
    fit: pd.DataFrame,
    evidence: Evidence,
    open_leads: pd.DataFrame,
    rules_path: Path,
    checks: dict[str, Any] | None = None,
) -> dict[str, bytes]:
    """What a report needs later without retraining: cohorts, rules and the open leads.

    `test` and `fit` are the frames of `evidence.cohort_frames`. Only ids, dates, labels,
    scores, rule hits and reasons: no names or e-mail addresses.
    """
    return {
        "evaluation/test_cohort.parquet": _parquet(test),
        "evaluation/fit_cohorts.parquet": _parquet(fit),
        "evaluation/open_leads.parquet": _parquet(open_leads),
        "evaluation/mql_rules.yaml": rules_path.read_bytes(),
        "evaluation/suggested_mql_rules.yaml": evidence.suggested_rules_yaml.encode("utf-8"),
        "evaluation/checks.json": json.dumps(checks or {}, indent=2).encode("utf-8"),
    }


def log_and_register(
    result: TrainingResult,
    evidence: Evidence,
    files: dict[str, bytes],
    config: ProjectConfig,
    oracle: float | None,
) -> registry.RegisteredModel:
    """Log the run (params, metrics, plots, tables, evaluation) and register the model."""
    experiment_id = registry.configure(
        config.tracking_uri, config.mlflow.experiment, config.artifact_location
    )
    test = result.test_scores
    y = test["converted"].to_numpy(dtype=float)
    c = evidence.comparison
    figures = {
        "calibration": plots.calibration_figure(
            y,
            {
                "model (calibrated)": test["conversion_probability"].to_numpy(),
                "rule score (mapped)": test["rule_probability"].to_numpy(),
            },
            "Calibration on the newest labelled cohort",
        ),
        "feature_importance": plots.importance_figure(result.model.feature_importance()),
        "gains": plots.gains_figure(c.curves),
        "lift": plots.lift_figure(c.gains),
    }
    importance = result.model.feature_importance()
    tables = {
        "feature_importance": pd.DataFrame(
            {"feature": importance.index, "gain": importance.to_numpy()}
        ),
        "metrics": pd.DataFrame(result.metrics).reset_index(names="metric"),
        "rule_diagnostics": evidence.rules,
        "suggested_rule_effect": evidence.suggestion.effect,
        "gains_model": c.gains["model"],
        "gains_rules": c.gains["rules"],
        "rule_mql_x_model_hot": c.quadrants,
        "tiers": c.tiers,
        "leakage_guard": pd.DataFrame(
            [f.as_dict() for f in result.leakage],
            columns=["column", "check", "evidence", "excluded"],
        ),
        "shift_importance": pd.DataFrame(
            {"feature": result.shift.importance.index, "share": result.shift.importance.to_numpy()}
        ),
    }
    metrics = training_metrics(result, oracle)
    metrics.update(evidence_metrics(evidence))
    try:
        return registry.log_training_run(
            experiment_id,
            config.mlflow.registered_model,
            result.model,
            training_params(config, result),
            metrics,
            figures,
            tables,
            tags={"leadscore.kind": "training", "leadscore.horizon_days": str(config.horizon_days)},
            files=files,
        )
    finally:
        for fig in figures.values():
            plots.close(fig)


def comparison_summary(evidence: Evidence) -> dict[str, Any]:
    """The comparison block of the JSON summaries (intervals, captured conversions)."""
    c = evidence.comparison
    effect = evidence.suggestion.effect.set_index("rules")

    def interval(key: str) -> dict[str, float | None]:
        return {k: _num(v) for k, v in c.intervals[key].as_dict().items()}

    return {
        "roc_auc": {who: interval(f"roc_auc_{who}") for who in ("model", "rules", "difference")},
        "pr_auc": {who: interval(f"pr_auc_{who}") for who in ("model", "rules", "difference")},
        "mql_volume": c.mql_volume,
        "mql_per_date": _num(c.mql_per_date),
        "converting_leads": c.converting_leads,
        "captured_at_mql_volume": {k: _num(v) for k, v in c.captured_at_mql_volume.items()},
        "capacity_per_week": c.capacity_per_week,
        "captured_at_capacity": (
            {k: _num(v) for k, v in c.captured_at_capacity.items()}
            if c.captured_at_capacity is not None
            else None
        ),
        "suggested_rules": {
            "mql_threshold": _num(evidence.suggestion.threshold),
            "mql_conversion_rate": {
                "current": _num(effect.loc["current rules", "mql_conversion_rate"]),
                "suggested": _num(effect.loc["suggested rules", "mql_conversion_rate"]),
            },
        },
        "headline": c.headline(),
    }


def _pick(metrics: dict[str, float]) -> dict[str, float]:
    return {k: _num(metrics.get(k)) for k in SUMMARY_METRICS}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None


def training_summary(
    result: TrainingResult,
    registered: registry.RegisteredModel,
    config: ProjectConfig,
    oracle: float | None,
    evidence: Evidence,
) -> dict[str, Any]:
    """The JSON summary of a training run (stable keys)."""
    return {
        "comparison": comparison_summary(evidence),
        "command": "train",
        "model": _pick(result.metrics["model"]),
        "rules": {
            **_pick(result.metrics["rules"]),
            "mql_rate": _num(result.metrics["rules"]["mql_rate"]),
        },
        "baseline": {**_pick(result.metrics["baseline"]), "c": result.baseline.c},
        "leakage": {
            "excluded": [f.column for f in result.leakage if f.excluded],
            "kept": [f.column for f in result.leakage if not f.excluded],
            "findings": [f.as_dict() for f in result.leakage],
        },
        "shift": {
            "auc": _num(result.shift.auc),
            "top": [{"feature": f, "share": _num(v)} for f, v in result.shift.top()],
        },
        "split_method": result.data.plan.method,
        "oracle_auc": _num(oracle),
        "rows": result.data.counts(),
        "splits": result.data.plan.describe(),
        "calibration": result.model.calibration_method_,
        "best_iteration": result.model.best_iteration_,
        "model_name": registered.name,
        "model_version": registered.version,
        "aliases": list(registered.aliases),
        "run_id": registered.run_id,
        "uris": {
            "source": redact_uri(config.source_uri),
            "tracking": redact_uri(config.tracking_uri),
            "model": f"models:/{registered.name}/{registered.version}",
        },
    }


def published_frame(
    scores: pd.DataFrame, entry: registry.RegisteredModel, scored_at: pd.Timestamp
) -> pd.DataFrame:
    """Scores with the model's identity and the scoring time, ready to publish."""
    out = scores.rename(columns={"as_of": "as_of_date"}).copy()
    out["model_name"] = entry.name
    out["model_version"] = entry.version
    out["mlflow_run_id"] = entry.run_id
    out["scored_at"] = scored_at
    return out


def scoring_summary(
    scores: pd.DataFrame,
    entry: registry.RegisteredModel,
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
        "rows": {
            "scored": len(scores),
            "published": int(published),
            "mql": int(scores["is_mql"].sum()),
        },
        "tiers": {t: int((scores["tier"] == t).sum()) for t in ("A", "B", "C", "D")},
        "mean_probability": _num(scores["conversion_probability"].mean()),
        "model_name": entry.name,
        "model_version": entry.version,
        "run_id": entry.run_id,
        "monitoring_table": config.monitoring.table,
        "uris": champion_uris(config, entry),
    }


def champion_test_metrics(metrics: dict[str, float]) -> dict[str, Any]:
    """`model`, `rules` and `oracle_auc` blocks from the champion's training run metrics."""

    def block(who: str) -> dict[str, float | None]:
        return {k: _num(metrics.get(f"test_{who}_{k}")) for k in SUMMARY_METRICS}

    return {
        "model": block("model"),
        "rules": block("rules"),
        "oracle_auc": _num(metrics.get("test_oracle_roc_auc")),
    }


def champion_uris(config: ProjectConfig, entry: registry.RegisteredModel) -> dict[str, str]:
    """Where the source, tracking store, scores and the champion model are (masked)."""
    return {
        "source": redact_uri(config.source_uri),
        "tracking": redact_uri(config.tracking_uri),
        "publish": redact_uri(config.publish_uri),
        "table": config.publish.table,
        "history_table": config.publish.history_table,
        "model": f"models:/{entry.name}@{registry.CHAMPION}",
    }


def judge_challenger(
    result: TrainingResult,
    crm: CRMData,
    config: ProjectConfig,
    champion: registry.RegisteredModel | None,
) -> promotion.Verdict:
    """The gate's verdict on a freshly trained model against the current champion."""
    y = result.data.labels("test")
    challenger_p = result.test_scores["conversion_probability"].to_numpy(dtype=float)
    if champion is None:
        return promotion.judge(y, challenger_p, None, config.promotion)
    try:
        loaded = registry.load_version(champion)
        champion_p = pipeline.cohort_probabilities(loaded.model, result.data, crm, config, "test")
    except Exception as exc:  # the champion cannot read this data: never promote blindly
        problem = exc.problem if isinstance(exc, LeadscoreError) else type(exc).__name__
        return promotion.Verdict(
            False,
            "kept",
            f"champion v{champion.version} cannot score this cohort ({problem}); compare "
            "by hand and promote with `leadscore promote VERSION --reason ...` if intended",
        )
    return promotion.judge(y, challenger_p, champion_p, config.promotion, champion.version)


def apply_verdict(
    verdict: promotion.Verdict,
    challenger: registry.RegisteredModel,
    champion: registry.RegisteredModel | None,
    config: ProjectConfig,
    decided_at: pd.Timestamp,
) -> None:
    """Move the alias (if promoted), tag the version and the run, record the decision."""
    tags = verdict.tags()
    if verdict.promote:
        registry.set_alias(challenger, registry.CHAMPION, tags)
    else:
        registry.tag_version(challenger, tags)
    registry.tag_run(challenger.run_id, tags)
    previous = champion.version if champion else None
    after = challenger.version if verdict.promote else previous
    row = promotion.history_row(
        verdict, challenger.name, challenger.version, previous, after, decided_at
    )
    promotion.record(config.publish_uri, config.promotion.table, row)


def verdict_summary(
    verdict: promotion.Verdict,
    challenger: registry.RegisteredModel,
    champion: registry.RegisteredModel | None,
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
            "roc_auc": _num(verdict.challenger_auc),
            "ece": _num(verdict.challenger_ece),
        },
        "champion": {"roc_auc": _num(verdict.champion_auc), "ece": _num(verdict.champion_ece)},
    }


def move_champion(
    config: ProjectConfig, version: str, reason: str, action: str = "manual"
) -> dict[str, Any]:
    """`leadscore promote` / `rollback`: point champion at `version`, with a recorded reason."""
    if not reason.strip():
        raise ConfigError("a promotion needs a reason", 'pass --reason "why"')
    registry.configure(config.tracking_uri, config.mlflow.experiment, config.artifact_location)
    name = config.mlflow.registered_model
    target = registry.model_version(name, version)
    current = registry.champion_version(name)
    if current is not None and current.version == target.version:
        raise ConfigError(
            f"version {target.version} of '{name}' is already the champion", "nothing to do"
        )
    decided_at = pd.Timestamp.now(tz="UTC").tz_localize(None)
    previous = current.version if current else None
    row = promotion.history_row(
        None, name, target.version, previous, target.version, decided_at, action, reason
    )
    with interrupts.critical("moving the champion alias and recording it"):
        registry.set_alias(
            target,
            registry.CHAMPION,
            {
                "promotion.action": action,
                "promotion.reason": reason,
                "promotion.at": str(decided_at),
            },
        )
        promotion.record(config.publish_uri, config.promotion.table, row)
    return {
        "command": action if action == "rollback" else "promote",
        "model_name": name,
        "champion_version": target.version,
        "previous_champion": previous,
        "reason": reason,
    }


def rollback(config: ProjectConfig, reason: str) -> dict[str, Any]:
    """Make the champion before the current one champion again."""
    registry.configure(config.tracking_uri, config.mlflow.experiment, config.artifact_location)
    name = config.mlflow.registered_model
    current = registry.champion_version(name)
    if current is None:
        raise ModelError(
            f"model '{name}' has no champion to roll back", "train one: `leadscore train`"
        )
    history = promotion.read_history(config.publish_uri, config.promotion.table, name)
    target = promotion.rollback_target(history, current.version)
    return move_champion(config, target, reason, action="rollback")


class MonitoringFailed(LeadscoreError):
    """A scoring run published its scores, but a monitoring check failed."""

    def __init__(self, problem: str, fix: str, summary: dict[str, Any]) -> None:
        super().__init__(problem, fix)
        self.summary = summary


def monitor_scoring(
    scores: pd.DataFrame,
    rows: pd.DataFrame,
    model: Any,
    crm: CRMData,
    config: ProjectConfig,
    as_of: pd.Timestamp,
) -> monitoring.MonitoringResult:
    """The monitoring checks of a scoring run, against training and the published history."""
    uri, p = config.publish_uri, config.publish
    previous = publish.read_scores(
        uri, p.runs_table, latest=True, until=as_of - pd.Timedelta(1, "D")
    )
    judged = None
    if not crm.flat:  # realised quality needs conversion times
        cutoff = as_of - pd.Timedelta(days=config.horizon_days)
        judged = publish.read_scores(uri, p.history_table, latest=True, until=cutoff)
    return monitoring.run_checks(
        scores["conversion_probability"].to_numpy(dtype=float),
        scores["tier"].to_numpy(),
        config.monitoring,
        rows=rows,
        reference=getattr(model, "drift_reference_", None),
        reference_probabilities=getattr(model, "reference_probabilities_", None),
        previous_count=int(previous["leads"].iloc[0]) if len(previous) else None,
        history=judged,
        outcomes=None if crm.flat else crm.outcomes,
        as_of=as_of,
        horizon_days=config.horizon_days,
    )


def record_monitoring(
    result: monitoring.MonitoringResult,
    entry: registry.RegisteredModel,
    config: ProjectConfig,
    as_of: pd.Timestamp,
) -> str:
    """Checks to the monitoring table and a tracking run; returns the run id."""
    checked_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    table = result.checks.assign(
        as_of_date=as_of, model_version=entry.version, checked_at=checked_at
    )
    publish.publish_checks(table, config.publish_uri, config.monitoring.table)
    experiment_id = registry.configure(
        config.tracking_uri, config.mlflow.experiment, config.artifact_location
    )
    tables = {"checks": result.checks}
    if len(result.drift):
        tables["input_psi"] = result.drift
    return registry.log_scoring_run(
        experiment_id,
        {"as_of": str(as_of.date()), "model_version": entry.version, "status": result.status},
        {**result.metrics(), "leads_scored": float(result.distribution.get("count", 0))},
        tables,
        {
            "leadscore.kind": "scoring",
            "leadscore.status": result.status,
            "leadscore.model_version": entry.version,
        },
    )


def monitoring_summary(result: monitoring.MonitoringResult, run_id: str | None) -> dict[str, Any]:
    """The checks in the scoring summary."""
    return {
        "status": result.status,
        "failed": result.failed,
        "messages": result.messages(),
        "realised": result.realised,
        "run_id": run_id,
    }


#: Failed checks listed in the message; the rest are counted (all are in the table).
MAX_FAILURES_SHOWN = 8


def raise_if_monitoring_failed(result: monitoring.MonitoringResult, summary: dict) -> None:
    """After publishing: a failed check fails the run (Prefect state, exit code)."""
    if result.failed:
        failures = result.messages(("fail",))
        shown = failures[:MAX_FAILURES_SHOWN]
        more = len(failures) - len(shown)
        raise MonitoringFailed(
            f"monitoring failed for the run as of {summary['as_of']} (its "
            f"{summary['rows']['published']:,} scores were published):\n"
            + "\n".join(f"  - {line}" for line in shown)
            + (f"\n  - and {more} more failed check(s)" if more else ""),
            "look at the checks (table "
            f"'{summary['monitoring_table']}', MLflow run {summary['monitoring']['run_id']}); "
            "retrain if the inputs moved, or adjust the monitoring thresholds in the project file",
            summary,
        )
