"""Training flow: source → point-in-time examples → calibrated model → evidence → MLflow."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow

from leadscore import interrupts
from leadscore.config import ProjectConfig
from leadscore.data.rules import RuleSet
from leadscore.errors import TooLittleHistoryError
from leadscore.evaluation.evidence import cohort_frames
from leadscore.io import locking
from leadscore.io.sources import CRMData
from leadscore.lifecycle import run_page, summaries, tracking
from leadscore.scoring.inputs import parse_as_of

try:  # imported as the `leadscore_flows` package
    from leadscore_flows import tasks
except ImportError:  # loaded by path as a Prefect entrypoint (flows/train.py:train_flow)
    import tasks  # type: ignore[no-redef]


@flow(name="train", log_prints=True)
def train_flow(config_path: str | None = None, as_of: str | None = None) -> dict[str, Any]:
    """Train, compare with the rules, register, judge against the champion, attach the report.

    `as_of` (a date): train as if it were that day; nothing dated from it on is read.
    """
    config = tasks.read_config(config_path)
    moment = None if as_of is None else parse_as_of(as_of)
    try:
        with tasks.job_lock(config, "train"):
            return _train(config, moment)
    except locking.RunLockedError as exc:
        return tasks.skipped("train", exc)


def _train(config: ProjectConfig, as_of: pd.Timestamp | None = None) -> dict[str, Any]:
    rules = tasks.read_rules(config)
    crm = tasks.load_source(config, sample=config.snapshots.sample_leads, as_of=as_of)
    data = tasks.build_training_set(crm, config, rules)
    if isinstance(data, TooLittleHistoryError):
        return _rules_only(config, crm, rules, data)
    result = tasks.fit_model(data, config, crm)
    test, fit = cohort_frames(result)
    evidence = tasks.build_evidence(test, fit, rules, config)
    open_leads = tasks.preview_open_leads(crm, result, rules, config)
    oracle = tasks.oracle_auc(config, result)
    registry = tasks.prepare_tracking(config)
    checks = tracking.checks_payload(result, crm.checks.summary())
    files = tracking.evaluation_files(test, fit, evidence, open_leads, config.rules_path, checks)
    # A model in the registry always carries its gate decision: a signal waits for both.
    with interrupts.critical("registering the model and its promotion decision"):
        registered = tasks.register_model(result, evidence, files, config, oracle, registry)
        verdict, champion = tasks.judge_challenger(result, crm, config, registry)
        tasks.apply_verdict(verdict, registered, champion, config, registry)
    inputs = tracking.report_inputs(
        evidence, open_leads, registered, config, config.rules_path.name, oracle, checks
    )
    tasks.log_report(registry, registered.run_id, tasks.render_report(inputs, config))
    summary = summaries.training_summary(
        result, registered, config, oracle, evidence, checks, verdict, champion
    )
    tasks.describe_run(run_page.training_page, summary, config, registered.run_id)
    return summary


def _rules_only(
    config: ProjectConfig, crm: CRMData, rules: RuleSet, exc: TooLittleHistoryError
) -> dict[str, Any]:
    """Too little history for a model: the rules judged on the whole labelled history,
    tracked in MLflow with their report; nothing is registered, the champion (if any) stays,
    and `leadscore score` publishes the rules' scores while there is no champion. A history
    with no conversion (or no labelled example) at all is refused as before: it tells
    nothing of the rules either, and is more often a wrong outcomes table than a young CRM."""
    evidence = tasks.rules_evidence(crm, config, rules, exc.problem, exc)
    registry = tasks.prepare_tracking(config)
    run_id = tasks.log_rules_only_run(registry, evidence, config)
    tasks.log_report(registry, run_id, tasks.render_rules_report(evidence, config, run_id))
    summary = summaries.rules_only_training_summary(evidence, config, run_id, crm.checks.summary())
    tasks.describe_run(run_page.training_page, summary, config, run_id)
    return summary


if __name__ == "__main__":
    train_flow()
