"""What a training or scoring run records: MLflow params/metrics/plots and the JSON summary."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore import plots, registry
from leadscore.config import ProjectConfig
from leadscore.evaluation import METRIC_KEYS
from leadscore.evidence import Evidence, evidence_metrics
from leadscore.pipeline import TrainingResult
from leadscore.sources import redact_uri
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
            signature_rows=result.data.rows["test"],
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

    def block(who: str) -> dict[str, float | None]:
        return {k: _num(champion_metrics.get(f"test_{who}_{k}")) for k in SUMMARY_METRICS}

    return {
        "command": "score",
        "as_of": str(as_of.date()),
        "model": block("model"),
        "rules": block("rules"),
        "oracle_auc": _num(champion_metrics.get("test_oracle_roc_auc")),
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
        "uris": {
            "source": redact_uri(config.source_uri),
            "tracking": redact_uri(config.tracking_uri),
            "publish": redact_uri(config.publish_uri),
            "table": config.publish.table,
            "model": f"models:/{entry.name}@{registry.CHAMPION}",
        },
    }
