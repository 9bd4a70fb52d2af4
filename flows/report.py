"""Report flow: the champion's evidence and the latest published scores → one HTML file."""

from __future__ import annotations

import tempfile
from typing import Any

from prefect import flow

from leadscore.evaluation import report
from leadscore.io.uris import redact_uri
from leadscore.lifecycle import registry, runs

try:  # imported as the `leadscore_flows` package
    from leadscore_flows import tasks
except ImportError:  # loaded by path as a Prefect entrypoint (flows/report.py:report_flow)
    import tasks  # type: ignore[no-redef]


@flow(name="report", log_prints=True)
def report_flow(config_path: str | None = None, out: str | None = None) -> dict[str, Any]:
    """Write the marketing report for the champion model (no retraining, no scoring)."""
    config = tasks.read_config(config_path)
    entry = tasks.champion_entry(config)
    with tempfile.TemporaryDirectory() as tmp:
        saved = tasks.download_evaluation(entry, tmp)
    published = tasks.read_published(config)
    open_leads, open_source = report.choose_open_leads(
        published, saved["open_leads"], entry.version
    )
    proof = tasks.build_evidence(saved["test"], saved["fit"], saved["rules"], config)
    metrics = registry.run_metrics(entry.run_id)
    inputs = report.ReportInputs(
        evidence=proof,
        open_leads=open_leads,
        model_name=entry.name,
        model_version=entry.version,
        run_id=entry.run_id,
        source=redact_uri(config.source_uri),
        rules_file="mql_rules.yaml (as trained)",
        oracle_auc=metrics.get("test_oracle_roc_auc"),
        checks=saved["checks"],
    )
    html = tasks.render_report(inputs, config)
    path = tasks.write_report(html, out or str(config.report_path))
    return {
        "command": "report",
        "path": path,
        **runs.champion_test_metrics(metrics),
        "rows": {"test": len(saved["test"]), "open_leads": len(open_leads)},
        "uris": {**runs.champion_uris(config, entry), "report": path},
        "model_name": entry.name,
        "model_version": entry.version,
        "run_id": entry.run_id,
        "open_leads": {"rows": len(open_leads), "from": open_source},
        "comparison": runs.comparison_summary(proof),
        "test_period": proof.test_period,
        "bytes": len(html.encode("utf-8")),
    }


if __name__ == "__main__":
    report_flow()
