"""Production: PostgreSQL source and scores, a killed run, concurrent runs, faults, MLflow server.

Everything here runs against the real PostgreSQL on 127.0.0.1:5432 (CI fails, never skips,
when it is missing): through the real `leadscore` process where the process is the point
(killed mid-publish, two at once, retries in its log), else through the command in-process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import CLI, DEFAULT_RULES, fresh_pg_database, invoke_cli, mlflow_client, run_cli

from leadscore.io import locking, uris
from leadscore.io.tables import write_tables
from leadscore.synthetic import generate_crm

#: PostgreSQL runs killed, raced and faulted (minutes): CI's long step.
pytestmark = pytest.mark.long

END = "2026-06-30"
D1, D2 = "2026-06-29", "2026-06-30"


def _read(uri: str, sql: str) -> pd.DataFrame:
    engine = uris.create_engine(uri)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(sql), conn)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg_project(tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str]):
    """Leads, activities and outcomes in PostgreSQL; a champion trained from there."""
    folder = tmp_path_factory.mktemp("pg_project")
    with fresh_pg_database() as uri:
        tables = generate_crm(2500, seed=5, end=END).tables()
        write_tables({k: tables[k] for k in ("leads", "activities", "outcomes")}, uri)
        (folder / "rules.yaml").write_text(DEFAULT_RULES.read_text(encoding="utf-8"))
        config = {
            "source": {"uri": uri},
            "publish": {"uri": uri},
            "rules": "rules.yaml",
            "report": {"bootstrap_samples": 200},
        }
        path = folder / "leadscore.yaml"
        path.write_text(yaml.safe_dump(config))
        os.environ["PREFECT_HOME"] = cli_env["PREFECT_HOME"]
        result = invoke_cli(["train", "--config", str(path)], folder)
        assert result.returncode == 0, result.stderr[-3000:]
        yield folder, path, uri


def test_scores_from_and_to_postgres_with_history(pg_project, cli_env) -> None:
    folder, path, uri = pg_project
    for day in (D1, D2):
        result = invoke_cli(["score", "--config", str(path), "--as-of", day], folder)
        assert result.returncode == 0, result.stderr[-3000:]
    latest = _read(uri, "SELECT * FROM lead_scores")
    history = _read(uri, "SELECT * FROM lead_score_history")
    runs = _read(uri, "SELECT * FROM lead_score_runs ORDER BY as_of_date")
    assert latest["lead_id"].is_unique and len(latest) > 100
    assert set(history["as_of_date"].astype(str)) == {D1, D2}
    assert runs["leads"].tolist() == history.groupby("as_of_date").size().tolist()
    # Every lead's latest row is its newest history row.
    newest = history.sort_values("as_of_date").groupby("lead_id").tail(1)
    merged = latest.merge(newest, on=["lead_id", "as_of_date"], suffixes=("", "_h"))
    assert len(merged) == len(latest)
    assert (merged["conversion_probability"] == merged["conversion_probability_h"]).all()
    # A rerun of the same as-of replaces its rows: no duplicates, same count.
    before = len(history)
    result = invoke_cli(["score", "--config", str(path), "--as-of", D2], folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(_read(uri, "SELECT lead_id FROM lead_score_history")) == before


def _snapshot(uri: str) -> dict[str, pd.DataFrame]:
    return {
        t: _read(uri, f"SELECT * FROM {t} ORDER BY 1, 2")
        for t in ("lead_scores", "lead_score_history", "lead_score_runs")
    }


def test_a_run_killed_mid_publish_leaves_the_previous_scores(pg_project, cli_env) -> None:
    """SIGKILL the CLI while its publish transaction is open: nothing of it survives."""
    folder, path, uri = pg_project
    result = invoke_cli(["score", "--config", str(path), "--as-of", D1], folder)
    assert result.returncode == 0, result.stderr[-3000:]
    holder = uris.create_engine(uri)
    conn = holder.connect()
    # Park the publisher mid-transaction: when it reaches the runs table (its last step),
    # which this lock holds, it has written history and latest scores. No hook in the code.
    trans = conn.begin()
    conn.execute(sa.text("LOCK TABLE lead_score_runs IN ACCESS EXCLUSIVE MODE"))
    # Baseline after the lock, read through the holder's own connection.
    before = {
        t: pd.read_sql(sa.text(f"SELECT * FROM {t} ORDER BY 1, 2"), conn)
        for t in ("lead_scores", "lead_score_history", "lead_score_runs")
    }
    proc = subprocess.Popen(
        [*CLI, "score", "--config", str(path), "--as-of", "2026-06-28"],
        env=cli_env,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        waiting = pd.DataFrame()
        deadline = time.monotonic() + 240
        while waiting.empty and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            # A fresh connection each time: pg_stat_activity is a snapshot per transaction.
            waiting = _read(
                uri,
                "SELECT pid, query FROM pg_stat_activity WHERE application_name = "
                "'leadscore' AND wait_event_type = 'Lock' AND state = 'active'",
            )
        assert not waiting.empty, f"publisher never blocked: {proc.communicate()[1][-3000:]}"
        assert "lead_score_runs" in waiting["query"].iloc[0], waiting["query"].iloc[0]
        # Mid-transaction indeed: it has already written to the history table.
        pid = int(waiting["pid"].iloc[0])
        wrote = _read(
            uri,
            "SELECT count(*) AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            f"WHERE l.pid = {pid} AND c.relname = 'lead_score_history' "
            "AND l.mode = 'RowExclusiveLock'",
        )
        assert wrote["n"].iloc[0] == 1
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        trans.rollback()
        conn.close()
        holder.dispose()
    assert proc.returncode == -signal.SIGKILL
    # The server rolls back the dead client's transaction: every table as before.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = _read(uri, "SELECT count(*) AS n FROM pg_stat_activity WHERE state LIKE 'idle in%'")
        if alive["n"].iloc[0] == 0:
            break
        time.sleep(0.2)
    after = _snapshot(uri)
    for table, frame in before.items():
        pd.testing.assert_frame_equal(after[table], frame, check_dtype=False)
    # And a rerun completes.
    result = invoke_cli(["score", "--config", str(path), "--as-of", "2026-06-28"], folder)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _read(uri, "SELECT as_of_date FROM lead_score_runs")
    assert "2026-06-28" in set(runs["as_of_date"].astype(str))


def test_a_second_run_exits_cleanly_while_one_holds_the_lock(pg_project, cli_env) -> None:
    folder, path, uri = pg_project
    before = _snapshot(uri)
    with locking.run_lock(uri, "score-lead_scores", 0, folder):
        result = invoke_cli(["score", "--config", str(path), "--as-of", "2026-06-27"], folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped" in result.stderr and "another 'score-lead_scores' run" in result.stderr
    after = _snapshot(uri)
    for table, frame in before.items():
        pd.testing.assert_frame_equal(after[table], frame, check_dtype=False)


def test_two_runs_started_together_never_duplicate(pg_project, cli_env) -> None:
    """Both start at once; one publishes, the other waits its turn (lock_wait_seconds)."""
    folder, path, uri = pg_project
    config = yaml.safe_load(path.read_text())
    config["publish"]["lock_wait_seconds"] = 600
    queued = folder / "queued.yaml"
    queued.write_text(yaml.safe_dump(config))
    args = ["score", "--config", str(queued), "--as-of", "2026-06-26", "--json"]
    procs = [
        subprocess.Popen(
            [*CLI, *args], env=cli_env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    # Neither was skipped: the second waited for the first, then published too.
    summaries = [json.loads(out) for out, _ in outputs]
    assert [s.get("skipped") for s in summaries] == [None, None]
    history = _read(uri, "SELECT lead_id FROM lead_score_history WHERE as_of_date = '2026-06-26'")
    assert len(history) > 100 and history["lead_id"].is_unique


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_database_is_retried_then_reported(pg_project, cli_env, tmp_path) -> None:
    folder, path, _ = pg_project
    config = yaml.safe_load(path.read_text())
    dead = f"postgresql://postgres@127.0.0.1:{_free_port()}/test"
    config["source"]["uri"] = dead
    config["publish"]["uri"] = f"sqlite:///{tmp_path / 'scores.db'}"
    broken = folder / "dead_source.yaml"
    broken.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    # The retries are logged at INFO; an earlier in-process CLI test may have set WARNING.
    # Their delays as an operator sets them (the default 2, 5, 15 s would idle a worker).
    env = {**cli_env, "PREFECT_LOGGING_LEVEL": "INFO", "LEADSCORE_IO_RETRY_DELAYS": "1,1,2"}
    result = run_cli(["score", "--config", str(broken), "-v"], env, folder)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-3000:]
    assert "cannot read table 'leads'" in result.stderr
    assert "check that the database is reachable" in result.stderr
    # Three retries with those delays before giving up, visible in the log.
    assert result.stderr.count("Retry") == 3 and elapsed > 4, result.stderr[-3000:]
    assert "Traceback" not in result.stderr.split("error:")[-1]
    assert (
        not (tmp_path / "scores.db").exists()
        or _read(
            f"sqlite:///{tmp_path / 'scores.db'}",
            "SELECT count(*) AS n FROM sqlite_master WHERE name = 'lead_scores'",
        )["n"].iloc[0]
        == 0
    )


def test_unreachable_tracking_server_is_reported(pg_project, cli_env) -> None:
    folder, path, _ = pg_project
    env = {**cli_env, "LEADSCORE_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}"}
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    env["LEADSCORE_IO_RETRY_DELAYS"] = "0.5,0.5,0.5"
    result = run_cli(["score", "--config", str(path)], env, folder)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "cannot reach the MLflow tracking store http://127.0.0.1" in result.stderr
    assert "LEADSCORE_MLFLOW_TRACKING_URI" in result.stderr


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """`mlflow server` with a PostgreSQL backend store and a local artifact root."""
    artifacts = tmp_path_factory.mktemp("mlflow_artifacts")
    port = _free_port()
    with fresh_pg_database("leadscore_mlflow") as backend:
        log = (artifacts / "server.log").open("w")
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--backend-store-uri",
                uris.normalise_uri(backend),
                "--artifacts-destination",
                artifacts.as_uri(),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, (artifacts / "server.log").read_text()[-3000:]
                time.sleep(0.5)
            else:
                pytest.fail("mlflow server did not become healthy in 120 s")
            yield url, backend, artifacts
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()


@pytest.mark.long  # an MLflow server on PostgreSQL: CI's long step
def test_train_and_score_against_an_mlflow_server_on_postgres(
    pg_project, mlflow_server, cli_env
) -> None:
    folder, path, uri = pg_project
    url, backend, artifacts = mlflow_server
    env = {"LEADSCORE_MLFLOW_TRACKING_URI": url}
    # Two backtest folds: the point is where runs, models and artifacts go, not the model.
    config = yaml.safe_load(path.read_text())
    config["backtest"] = {"folds": 2}
    path = folder / "served.yaml"
    path.write_text(yaml.safe_dump(config))
    trained = invoke_cli(["train", "--config", str(path), "--json"], folder, env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = invoke_cli(["score", "--config", str(path), "--as-of", "2026-06-25"], folder, env)
    assert result.returncode == 0, result.stderr[-3000:]
    # Runs and the registry live in PostgreSQL; artifacts under the server's root.
    versions = _read(backend, "SELECT name, version FROM model_versions")
    assert len(versions) == 1
    aliases = _read(backend, "SELECT alias, version FROM registered_model_aliases")
    assert set(aliases["alias"]) == {"champion", "challenger"}
    assert any(artifacts.rglob("lead_scoring_model.joblib"))
    published = _read(
        uri, "SELECT DISTINCT mlflow_run_id FROM lead_score_history WHERE as_of_date = '2026-06-25'"
    )
    assert published["mlflow_run_id"].tolist() == [json.loads(trained.stdout)["run_id"]]


def test_realised_performance_of_scores_published_a_horizon_ago(pg_project, cli_env) -> None:
    """Scores published 120 days back have closed outcome windows: they are judged."""
    folder, path, uri = pg_project
    config = yaml.safe_load(path.read_text())
    config["monitoring"] = {"min_realised_leads": 200, "min_realised_conversions": 10}
    judged = folder / "judged.yaml"
    judged.write_text(yaml.safe_dump(config))
    old, now = "2026-03-01", "2026-06-30"
    for day in (old, now):
        result = invoke_cli(["score", "--config", str(judged), "--as-of", day, "--json"], folder)
        assert result.returncode in (0, 3), result.stderr[-3000:]
    summary = json.loads(result.stdout)
    realised = summary["monitoring"]["realised"]
    assert realised is not None, summary["monitoring"]
    assert str(realised["as_of_date"])[:10] == old
    assert 0.55 < realised["roc_auc"] <= 1 and realised["leads"] >= 200
    checks = _read(uri, f"SELECT * FROM score_monitoring WHERE as_of_date = '{now}'")
    assert {"realised_auc", "realised_ece", "row_count", "score_psi"} <= set(checks["check_name"])
    assert (checks["model_version"] == summary["model_version"]).all()

    client = mlflow_client(f"sqlite:///{folder / 'mlflow.db'}")
    run = client.get_run(summary["monitoring"]["run_id"])
    assert run.data.tags["leadscore.kind"] == "scoring"
    assert abs(run.data.metrics["realised_auc"] - realised["roc_auc"]) < 1e-9


def test_drifted_inputs_fail_the_run_but_keep_the_scores(pg_project, cli_env) -> None:
    """Company sizes 50x larger than in training: exit code 3, scores still published."""
    folder, path, uri = pg_project
    engine = uris.create_engine(uri)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE leads SET employees = employees * 50"))
    try:
        day = "2026-06-24"
        result = invoke_cli(["score", "--config", str(path), "--as-of", day, "--json"], folder)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE leads SET employees = employees / 50"))
        engine.dispose()
    assert result.returncode == 3, result.stderr[-3000:]
    assert "monitoring failed" in result.stderr and "employees" in result.stderr
    assert "scores were published" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["monitoring"]["failed"] and summary["rows"]["published"] > 100
    published = _read(
        uri, f"SELECT count(*) AS n FROM lead_score_history WHERE as_of_date = '{day}'"
    )
    assert published["n"].iloc[0] == summary["rows"]["published"]
    failed = _read(
        uri, f"SELECT feature FROM score_monitoring WHERE as_of_date = '{day}' AND status = 'fail'"
    )
    assert "employees" in set(failed["feature"])
