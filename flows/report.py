"""Report flow: the champion's evidence and the latest published scores → one HTML file."""

from __future__ import annotations

from typing import Any

from prefect import flow

from leadscore.config import ProjectConfig
from leadscore.errors import ModelError
from leadscore.evaluation import report
from leadscore.lifecycle import run_page, summaries, tracking

try:  # imported as the `leadscore_flows` package
    from leadscore_flows import tasks
except ImportError:  # loaded by path as a Prefect entrypoint (flows/report.py:report_flow)
    import tasks  # type: ignore[no-redef]


@flow(name="report", log_prints=True)
def report_flow(config_path: str | None = None, out: str | None = None) -> dict[str, Any]:
    """Write the marketing report for the champion model (no retraining, no scoring).

    Without a champion (no model yet, as in rules-only scoring) it reports on the rules alone,
    judged on the source's whole labelled history.
    """
    config = tasks.read_config(config_path)
    entry = tasks.champion_entry(config, allow_none=True)
    if entry is None:
        return _rules_report(config, out)
    saved = tasks.read_evaluation(config, entry)
    published = tasks.read_published(config)
    open_leads, open_source = report.choose_open_leads(published, saved.open_leads, entry.version)
    previous = None
    if open_source.startswith("published") and len(open_leads):
        previous = tasks.read_previous_published(config, open_leads["as_of_date"].max())
        previous = previous if len(previous) else None  # the first run: nothing to compare
    evidence = tasks.build_evidence(saved.test, saved.fit, saved.rules, config)
    metrics = tasks.champion_metrics(config, entry)
    oracle = metrics.get("test_oracle_roc_auc")
    inputs = tracking.report_inputs(
        evidence, open_leads, entry, config, "mql_rules.yaml (as trained)", oracle, saved.checks,
        previous,
    )  # fmt: skip
    html = tasks.render_report(inputs, config)
    path = tasks.write_report(html, out or str(config.report_path))
    summary = summaries.report_summary(
        path, html, entry, config, metrics, evidence, saved, open_leads, open_source
    )
    tasks.describe_run(run_page.report_page, summary, config, None)
    return summary


def _rules_report(config: ProjectConfig, out: str | None) -> dict[str, Any]:
    rules = tasks.read_rules(config)
    crm = tasks.load_source(config)
    why = "no champion model in the registry yet"
    refusal = ModelError(
        f"{why}, and the source's history has no labelled example of each outcome to judge "
        "the rules on",
        "train a model with `leadscore train` once the history has conversions",
    )
    evidence = tasks.rules_evidence(crm, config, rules, why, refusal)
    html = tasks.render_rules_report(evidence, config, None)
    path = tasks.write_report(html, out or str(config.report_path))
    summary = summaries.rules_report_summary(path, html, evidence, config)
    tasks.describe_run(run_page.report_page, summary, config, None)
    return summary


if __name__ == "__main__":
    report_flow()
