"""What a training or scoring run records: MLflow params/metrics/plots and the JSON summary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore import plots, registry
from leadscore.config import ProjectConfig
from leadscore.evaluation import METRIC_KEYS
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
    return out


def log_and_register(
    result: TrainingResult, config: ProjectConfig, oracle: float | None
) -> registry.RegisteredModel:
    """Log the run (params, metrics, plots, tables) and register the packaged model."""
    experiment_id = registry.configure(
        config.tracking_uri, config.mlflow.experiment, config.artifact_location
    )
    test = result.test_scores
    y = test["converted"].to_numpy(dtype=float)
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
    }
    importance = result.model.feature_importance()
    tables = {
        "feature_importance": pd.DataFrame(
            {"feature": importance.index, "gain": importance.to_numpy()}
        ),
        "metrics": pd.DataFrame(result.metrics).reset_index(names="metric"),
    }
    try:
        return registry.log_training_run(
            experiment_id,
            config.mlflow.registered_model,
            result.model,
            training_params(config, result),
            training_metrics(result, oracle),
            figures,
            tables,
            signature_rows=result.data.rows["test"],
            tags={"leadscore.kind": "training", "leadscore.horizon_days": str(config.horizon_days)},
        )
    finally:
        for fig in figures.values():
            plots.close(fig)


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
) -> dict[str, Any]:
    """The JSON summary of a training run (stable keys)."""
    return {
        "command": "train",
        "model": _pick(result.metrics["model"]),
        "rules": {
            **_pick(result.metrics["rules"]),
            "mql_rate": _num(result.metrics["rules"]["mql_rate"]),
        },
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
