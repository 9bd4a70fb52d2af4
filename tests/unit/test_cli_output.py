"""What the command prints for a person to copy stays on one line, whatever the width."""

from __future__ import annotations

from pathlib import Path

from leadscore.apps import cli


def test_printed_commands_are_never_wrapped(tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "leadscore-demo"
    metrics = {"roc_auc": 0.8, "pr_auc": 0.3, "top_decile_captured": 120}
    summary = {
        "model": metrics, "rules": metrics, "rows": {"test_conversions": 400, "published": 900},
        "uris": {"table": "lead_scores", "tracking": f"sqlite:///{deep / 'mlflow.db'}"},
        "as_of": "2026-12-05", "comparison": {"headline": "The model finds more."},
        "report": str(deep / "report.html"), "config": str(deep / "leadscore.yaml"),
    }  # fmt: skip
    width = cli.out.width
    cli.out.width = 80  # a pipe or a CI log, not a wide terminal
    try:
        with cli.out.capture() as printed:
            cli._print_demo(summary, deep)
    finally:
        cli.out.width = width
    lines = printed.get().splitlines()
    command = next(line for line in lines if "ui --backend-store-uri" in line)
    assert command.endswith(f"sqlite:///{deep / 'mlflow.db'}")
    report = str(deep / "report.html") + " (open it in a browser)"
    assert any(line.endswith(report) for line in lines)
