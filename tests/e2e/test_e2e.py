"""End to end through the real `leadscore` CLI, the Prefect engine, MLflow and SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import demo_variant, mlflow_client, run_cli, sqlite_table


def test_demo_publishes_scores_and_registers_a_champion(demo) -> None:
    workdir, summary = demo
    for who in ("model", "rules"):
        assert set(summary[who]) >= {"roc_auc", "pr_auc", "brier", "ece"}
    assert summary["oracle_auc"] is not None
    assert summary["model"]["roc_auc"] > summary["rules"]["roc_auc"]
    scores = sqlite_table(workdir / "crm.db")
    assert len(scores) == summary["rows"]["published"] > 100
    assert scores["lead_id"].is_unique
    assert scores["conversion_probability"].between(0, 1).all()
    assert scores["model_version"].eq(summary["model_version"]).all()
    assert not scores.astype(str).apply(lambda c: c.str.contains("@")).any().any()

    client = mlflow_client(summary["uris"]["tracking"])
    champion = client.get_model_version_by_alias(summary["model_name"], "champion")
    assert str(champion.version) == summary["model_version"]
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "plots")}
    assert {"plots/calibration.png", "plots/feature_importance.png"} <= artifacts
    params = client.get_run(summary["run_id"]).data.params
    assert not any("@" in v for v in params.values())
    saved = {a.path for a in client.list_artifacts(summary["run_id"], "evaluation")}
    assert "evaluation/test_cohort.parquet" in saved
    assert "evaluation/suggested_mql_rules.yaml" in saved
    logged = {a.path for a in client.list_artifacts(summary["run_id"], "report")}
    assert logged == {"report/report.html"}


def test_demo_publishes_tiers_and_reasons(demo) -> None:
    workdir, summary = demo
    scores = sqlite_table(workdir / "crm.db")
    assert set(scores["tier"]) == {"A", "B", "C", "D"}
    assert scores.groupby("tier")["conversion_probability"].mean().is_monotonic_decreasing
    assert summary["tiers"] == scores["tier"].value_counts().to_dict()
    # Nearly every lead has a reason each way.
    assert (scores["reasons_up"] != "").mean() > 0.9
    assert (scores["reasons_down"] != "").mean() > 0.5
    assert scores["reasons_up"].str.count("; ").max() == 2


def test_demo_writes_a_report_that_opens_offline(demo, browser, tmp_path) -> None:
    workdir, summary = demo
    report = Path(summary["report"])
    assert report == workdir / "report.html"
    html = report.read_text(encoding="utf-8")
    assert summary["comparison"]["headline"] in html
    for external in ("http://", "https://"):
        for attribute in ("src=", "href="):
            assert f'{attribute}"{external}' not in html
    shot = tmp_path / "demo_report.png"
    dom, console = browser.open(report, shot)
    assert console == [], console
    assert 'data-report-ready="yes"' in dom
    colours, ink = browser.ink(shot)
    assert colours > 200 and ink > 0.05, (colours, ink)


def test_report_command_uses_the_published_scores(demo, cli_env, tmp_path) -> None:
    workdir, summary = demo
    out = tmp_path / "again.html"
    result = run_cli(
        ["report", "-c", "leadscore.yaml", "--out", str(out), "--json"], cli_env, workdir
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["path"] == str(out) and out.stat().st_size > 50_000
    assert report["open_leads"]["from"] == f"published scores as of {summary['as_of']}"
    assert report["open_leads"]["rows"] == summary["rows"]["published"]
    # Same cohort, same seed: the same intervals as the training run computed.
    assert report["comparison"]["roc_auc"] == summary["comparison"]["roc_auc"]
    # The stable keys the README lists, with the champion's own test metrics.
    assert {"model", "rules", "oracle_auc", "rows", "uris", "model_name", "model_version"} <= set(
        report
    )
    for who in ("model", "rules"):
        assert report[who]["roc_auc"] is not None
        for key, value in report[who].items():
            assert value == pytest.approx(summary[who][key], abs=1e-9, nan_ok=True), key
    assert report["oracle_auc"] == pytest.approx(summary["oracle_auc"], abs=1e-9)
    assert report["uris"]["report"] == str(out)
    assert report["rows"]["open_leads"] == summary["rows"]["published"]


def test_rescoring_the_same_as_of_replaces_rows(demo, cli_env) -> None:
    workdir, summary = demo
    before = sqlite_table(workdir / "crm.db")
    result = run_cli(
        ["score", "-c", "leadscore.yaml", "--as-of", summary["as_of"], "--json"], cli_env, workdir
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["model"]["roc_auc"] == pytest.approx(summary["model"]["roc_auc"])
    after = sqlite_table(workdir / "crm.db")
    assert len(after) == len(before)
    # Every row was rewritten by this run (scored_at has second resolution; a run takes more).
    assert pd.to_datetime(after["scored_at"]).min() > pd.to_datetime(before["scored_at"]).max()
    assert set(after["lead_id"]) == set(before["lead_id"])
    # The terminal got the progress and the summary; the run's page on the Prefect server
    # got the step-by-step INFO lines with numbers, as a worker's run does.
    lines = _run_log_lines(cli_env["PREFECT_API_URL"], workdir / "leadscore.yaml", summary["as_of"])
    published = f"{out['rows']['published']:,} open leads published by"
    assert any(published in line for line in lines), lines
    assert any(line.startswith("read ") and " leads, " in line for line in lines), lines
    assert published not in result.stderr and "INFO" not in result.stderr


def _run_log_lines(api: str, config: Path, as_of: str) -> list[str]:
    """The INFO lines of the newest `score` run of this project file and as-of date."""
    import httpx

    body = {"flows": {"name": {"any_": ["score"]}}, "sort": "START_TIME_DESC", "limit": 50}
    runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30).json()
    mine = [
        r
        for r in runs
        if Path(r["parameters"].get("config_path") or "").name == config.name
        and Path(r["parameters"]["config_path"]).parent.resolve() == config.parent.resolve()
        and r["parameters"].get("as_of") == as_of
    ]
    assert mine, f"no score run of {config} as of {as_of} on {api}"
    body = {"logs": {"flow_run_id": {"any_": [mine[0]["id"]]}}, "sort": "TIMESTAMP_ASC"}
    logs = httpx.post(f"{api}/logs/filter", json=body, timeout=30).json()
    return [log["message"] for log in logs if log["level"] == 20]


def test_no_personal_data_in_mlflow_scores_or_logs(demo, cli_env) -> None:
    """No e-mail address of any lead in params, tags, artifacts (model included) or scores."""
    workdir, _ = demo
    engine = sa.create_engine(f"sqlite:///{workdir / 'crm.db'}")
    with engine.connect() as conn:
        emails = set(pd.read_sql(sa.text("SELECT email FROM leads"), conn)["email"].dropna())
    engine.dispose()
    mailboxes = {e.split("@")[0] for e in emails if len(e.split("@")[0]) >= 6}
    assert len(emails) > 1000

    def leaks(text: str) -> bool:
        return "@" in text and any(e in text for e in emails)

    found: list[str] = []
    for path in (workdir / "mlartifacts").rglob("*"):
        if not path.is_file() or path.suffix == ".png":
            continue
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            text = frame.astype(str).to_csv()
        else:
            text = path.read_bytes().decode("utf-8", errors="ignore")
        if leaks(text) or any(f"'{m}'" in text or f'"{m}"' in text for m in mailboxes):
            found.append(str(path.relative_to(workdir)))
    engine = sa.create_engine(f"sqlite:///{workdir / 'mlflow.db'}")
    with engine.connect() as conn:
        for table in ("params", "tags", "model_version_tags", "registered_model_tags"):
            values = pd.read_sql(sa.text(f"SELECT * FROM {table}"), conn).astype(str).to_csv()
            if leaks(values):
                found.append(f"mlflow.db:{table}")
    engine.dispose()
    scores = sqlite_table(workdir / "crm.db", "lead_score_history").astype(str).to_csv()
    if leaks(scores):
        found.append("lead_score_history")
    verbose = run_cli(
        ["score", "--config", str(workdir / "leadscore.yaml"), "-v"], cli_env, workdir
    )
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    if leaks(verbose.stdout + verbose.stderr):
        found.append("score -v output")
    assert not found, found


def test_a_refused_input_exits_2_with_the_message_on_stderr_only(demo, cli_env) -> None:
    """The real process: exit code 2, the message and the fix on stderr, stdout clean.

    The other refused inputs are checked in-process (tests/integration/test_cli_errors.py).
    """
    workdir, summary = demo
    project = demo_variant(workdir, "unknown", extra={"horizon": 30})
    before = sqlite_table(workdir / "crm.db")
    args = ["score", "-c", str(project), "--as-of", summary["as_of"], "--json"]
    result = run_cli(args, cli_env, workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "unknown key 'horizon'" in result.stderr and "fix:" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    pd.testing.assert_frame_equal(sqlite_table(workdir / "crm.db"), before)
