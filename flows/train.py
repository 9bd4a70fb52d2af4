"""Training flow: source → point-in-time examples → calibrated model → evidence → MLflow."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow

from leadscore import interrupts
from leadscore.config import ProjectConfig
from leadscore.evaluation import report
from leadscore.evaluation.evidence import cohort_frames
from leadscore.io import locking
from leadscore.io.uris import redact_uri
from leadscore.lifecycle import runs

try:  # imported as the `leadscore_flows` package
    from leadscore_flows import tasks
except ImportError:  # loaded by path as a Prefect entrypoint (flows/train.py:train_flow)
    import tasks  # type: ignore[no-redef]


@flow(name="train", log_prints=True)
def train_flow(config_path: str | None = None) -> dict[str, Any]:
    """Train, compare with the rules, register, judge against the champion, attach the report."""
    config = tasks.read_config(config_path)
    try:
        with tasks.job_lock(config, "train"):
            return _train(config)
    except locking.RunLockedError as exc:
        return tasks.skipped("train", exc)


def _train(config: ProjectConfig) -> dict[str, Any]:
    rules = tasks.read_rules(config)
    crm = tasks.load_source(config, sample=config.snapshots.sample_leads)
    data = tasks.build_training_set(crm, config, rules)
    result = tasks.fit_model(data, config, crm)
    test, fit = cohort_frames(result)
    evidence = tasks.build_evidence(test, fit, rules, config)
    open_leads = tasks.preview_open_leads(crm, result, rules, config)
    truth = tasks.load_truth(config)
    oracle = runs.oracle_auc(truth, result, config.horizon_days)
    tasks.prepare_tracking(config)
    checks = runs.checks_payload(result, crm.checks.summary())
    files = runs.evaluation_files(test, fit, evidence, open_leads, config.rules_path, checks)
    # A model in the registry always carries its gate decision: a signal waits for both.
    with interrupts.critical("registering the model and its promotion decision"):
        registered = tasks.register_model(result, evidence, files, config, oracle)
        verdict, champion = tasks.judge_challenger(result, crm, config, registered)
        decided_at = pd.Timestamp.now(tz="UTC").tz_localize(None)
        tasks.apply_verdict(verdict, registered, champion, config, decided_at)
    inputs = report.ReportInputs(
        evidence=evidence,
        open_leads=open_leads,
        model_name=registered.name,
        model_version=registered.version,
        run_id=registered.run_id,
        source=redact_uri(config.source_uri),
        rules_file=config.rules_path.name,
        oracle_auc=oracle,
        checks=checks,
    )
    tasks.log_report(registered.run_id, tasks.render_report(inputs, config))
    summary = runs.training_summary(result, registered, config, oracle, evidence)
    summary["warnings"] = checks["warnings"]
    summary["promotion"] = runs.verdict_summary(verdict, registered, champion)
    summary["aliases"] = ["champion", "challenger"] if verdict.promote else ["challenger"]
    return summary


if __name__ == "__main__":
    train_flow()
