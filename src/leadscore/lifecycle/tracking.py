"""What a training run records in the tracking store: parameters, metrics, plots, tables,
the evaluation files a report is rebuilt from, and the packaged model.

The layout of the evaluation files is written and read here only (`evaluation_files`,
`read_evaluation`).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore.config import ProjectConfig
from leadscore.data.rules import RuleSet, load_rules
from leadscore.evaluation import plots
from leadscore.evaluation.evidence import Evidence, evidence_metrics
from leadscore.evaluation.report import ReportInputs
from leadscore.io.sources import load_ground_truth
from leadscore.io.uris import redact_uri
from leadscore.lifecycle.registry import RegisteredModel, Registry
from leadscore.lifecycle.summaries import number
from leadscore.scoring.backtest import candidate_configs
from leadscore.scoring.training import TrainingResult
from leadscore.synthetic import true_conversion_probability


def oracle_auc(config: ProjectConfig, result: TrainingResult) -> float | None:
    """AUC of the generator's true probabilities on the test cohort (generated data only)."""
    truth = load_ground_truth(config)
    if truth is None or "lost_to_slow_response" in truth[0]:
        return None  # not generated, or generated with sales touches: no exact oracle
    snapshots = result.data.snapshots["test"]
    p = true_conversion_probability(truth[0], truth[1], snapshots, config.horizon_days, truth[2])
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
        "trees": ",".join(map(str, model.iterations)),
        "learner": result.learner,
        "candidate": _chosen(result),
        "candidates": ",".join(config.backtest.candidates),
        "backtest_metric": config.backtest.metric,
        "refit": result.refit,
        "trained_through": None
        if result.trained_through is None
        else str(result.trained_through.date()),
        "backtest_folds": 0 if result.backtest is None else len(result.backtest.folds),
        "backtest_step_days": config.backtest.step_days or config.split.test_days,
        "backtest_groups": config.backtest.groups,
        "backtest_left_out": "; ".join(result.backtest.notes)[:500] if result.backtest else "",
        "calibration_method": model.calibration_method_,
        "calibration_choice": config.model.calibration,
        "seed": config.model.seed,
        "num_threads": config.model.num_threads,
        "source": redact_uri(config.source_uri),
        "rules_file": config.rules_path.name,
        "rules_sha256": hashlib.sha256(config.rules_path.read_bytes()).hexdigest(),
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
    if result.backtest is not None:
        for who, metrics in result.backtest.pooled.items():
            for name, value in metrics.items():
                out[f"backtest_{who}_{name}"] = float(value)
    out["leakage_excluded_columns"] = float(sum(f.excluded for f in result.leakage))
    return out


def _chosen(result: TrainingResult) -> str:
    """The chosen candidate's name (e.g. lightgbm_shallow)."""
    if result.backtest is None:
        return result.learner
    return result.backtest.names[result.chosen_column]


def candidate_runs(
    result: TrainingResult, config: ProjectConfig
) -> list[tuple[str, dict[str, Any], dict[str, float]]]:
    """One child run per candidate recipe: its settings, its trees on each fold, and its
    figures pooled and per fold (`fold_<k>_<metric>`)."""
    backtest = result.backtest
    if backtest is None:
        return []
    settings = candidate_configs(config)
    runs = []
    for who in backtest.candidates:
        model = settings[who]
        params: dict[str, Any] = {
            "candidate": backtest.names[who],
            "learner": model.learner,
            "chosen": who == result.chosen_column,
            "monotone": ",".join(f"{k}:{v}" for k, v in model.monotone.items())[:500],
            **{f"lgbm_{k}": v for k, v in model.params.items()},
        }
        for fold in backtest.folds:
            params[f"fold_{fold.fold.number}_trees"] = ",".join(map(str, fold.trees.get(who, [])))
        metrics = {f"pooled_{k}": float(v) for k, v in backtest.pooled[who].items()}
        for fold in backtest.folds:
            metrics.update(
                {f"fold_{fold.fold.number}_{k}": float(v) for k, v in fold.metrics[who].items()}
            )
        runs.append((f"candidate {backtest.names[who]}", params, metrics))
    return runs


def fold_runs(result: TrainingResult) -> list[tuple[str, dict[str, Any], dict[str, float]]]:
    """One child run per backtest fold: its windows, trees and metrics per scorer."""
    runs = []
    for fold in result.backtest.folds if result.backtest else []:
        params = {
            "fold": fold.fold.number,
            "test_period": fold.fold.test_period,
            "fit_end": None if fold.fold.fit_end is None else str(fold.fold.fit_end.date()),
            "fit_rows": int(fold.fold.fit.sum()),
            "trees": ",".join(map(str, fold.iterations)),
            **{
                f"trees_{result.backtest.names[who]}": ",".join(map(str, trees))
                for who, trees in fold.trees.items()
            },
            "calibration_method": fold.calibration,
            "baseline_c": fold.baseline.c,
        }
        metrics = {
            f"{result.backtest.names[who]}_{name}": float(value)
            for who, m in fold.metrics.items()
            for name, value in m.items()
        }
        runs.append((f"backtest {fold.fold.name}", params, metrics))
    return runs


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
            "metrics": {k: number(v) for k, v in result.baseline.metrics.items()},
            "validation_auc": {
                str(k): number(v) for k, v in result.baseline.validation_auc.items()
            },
        },
        "shift": {
            "auc": number(result.shift.auc),
            "shifted": bool(result.shift.shifted),
            "rows": int(result.shift.rows),
            "top": [{"feature": f, "share": number(v)} for f, v in result.shift.top()],
        },
        "backtest": backtest_payload(result),
        "warnings": list(warnings or []),
    }


def backtest_payload(result: TrainingResult) -> dict[str, Any] | None:
    """Per-fold and pooled figures, the folds left out, and what the model learned from."""
    if result.backtest is None:
        return None
    table = result.backtest.table()
    records = [
        {k: (number(v) if isinstance(v, int | float) else v) for k, v in row.items()}
        for row in table.to_dict("records")
    ]
    through = result.trained_through
    return {
        "folds": records,
        "left_out": list(result.backtest.notes),
        "refit": bool(result.refit),
        "trained_through": None if through is None else str(through.date()),
        "outcomes_through": None
        if result.outcomes_through is None
        else str(result.outcomes_through.date()),
        "trees": ",".join(map(str, result.model.iterations)),
        "learner": result.learner,
        "chosen": _chosen(result),
        "scorers": [result.backtest.names[w] for w in result.backtest.scorers],
        "metric": result.metric,
        "tie_tolerance": result.tie_tolerance,
        "leaderboard": None
        if result.leaderboard is None
        else [
            {k: (number(v) if isinstance(v, float) else v) for k, v in row.items()}
            for row in result.leaderboard.to_dict("records")
        ],
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


@dataclass(frozen=True)
class SavedEvaluation:
    """What a training run saved for later reports: its cohorts, open leads, rules, checks."""

    test: pd.DataFrame
    fit: pd.DataFrame
    open_leads: pd.DataFrame
    rules: RuleSet
    checks: dict[str, Any]


def read_evaluation(
    registry: Registry, entry: RegisteredModel, destination: str
) -> SavedEvaluation:
    """The evaluation files of a model's training run (as `evaluation_files` wrote them)."""
    folder = registry.download_run_artifacts(entry.run_id, "evaluation", destination)
    return SavedEvaluation(
        test=pd.read_parquet(folder / "test_cohort.parquet"),
        fit=pd.read_parquet(folder / "fit_cohorts.parquet"),
        open_leads=pd.read_parquet(folder / "open_leads.parquet"),
        rules=load_rules(folder / "mql_rules.yaml"),
        checks=json.loads((folder / "checks.json").read_text(encoding="utf-8")),
    )


def log_and_register(
    result: TrainingResult,
    evidence: Evidence,
    files: dict[str, bytes],
    config: ProjectConfig,
    oracle: float | None,
    registry: Registry,
) -> RegisteredModel:
    """Log the run (params, metrics, plots, tables, evaluation) and register the model."""
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
        "over_time": plots.over_time_figure(result.backtest.table()),
        **(
            {
                "leaderboard": plots.leaderboard_figure(
                    result.backtest.table(),
                    result.leaderboard,
                    result.metric,
                    config.backtest.tie_tolerance,
                )
            }
            if result.leaderboard is not None
            else {}
        ),
        "gains": plots.gains_figure(c.curves),
        "lift": plots.lift_figure(c.gains),
    }
    importance = result.model.feature_importance()
    tables = {
        "feature_importance": pd.DataFrame(
            {"feature": importance.index, "gain": importance.to_numpy()}
        ),
        "metrics": pd.DataFrame(result.metrics).reset_index(names="metric"),
        "backtest": result.backtest.table(),
        **({"leaderboard": result.leaderboard} if result.leaderboard is not None else {}),
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
            result.model,
            training_params(config, result),
            metrics,
            figures,
            tables,
            tags={"leadscore.kind": "training", "leadscore.horizon_days": str(config.horizon_days)},
            files=files,
            children=[*candidate_runs(result, config), *fold_runs(result)],
        )
    finally:
        for fig in figures.values():
            plots.close(fig)


def report_inputs(
    evidence: Evidence,
    open_leads: pd.DataFrame,
    entry: RegisteredModel,
    config: ProjectConfig,
    rules_file: str,
    oracle: float | None,
    checks: dict[str, Any] | None,
    previous: pd.DataFrame | None = None,
) -> ReportInputs:
    """What the report shows of a registered model besides its evidence (`previous`: the
    published run before the open leads', for "what changed" in the lead lists)."""
    return ReportInputs(
        evidence=evidence,
        open_leads=open_leads,
        model_name=entry.name,
        model_version=entry.version,
        run_id=entry.run_id,
        source=redact_uri(config.source_uri),
        rules_file=rules_file,
        oracle_auc=oracle,
        checks=checks,
        previous=previous,
    )
