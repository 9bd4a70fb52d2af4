"""The production example, run as docs/production-deployments.md tells it.

The doc's runnable blocks run as written, from the checkout's root, in one bash: the stack
comes up (databases, an MLflow server and a Prefect server on PostgreSQL, a work pool, the
deployments, a worker), 5,000 generated leads go into PostgreSQL, and the worker trains and
scores them. The test then reads back what each piece holds, runs the teardown block and
checks that nothing is left running. The database role may create databases and nothing else.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import PG_ADMIN_URI, mlflow_client, require_postgres
from doc_commands import REPO, shell_blocks

from leadscore.io import uris

#: Two servers, a worker, a training and a scoring run: CI's long step.
pytestmark = pytest.mark.long

DOC = REPO / "docs" / "production-deployments.md"
STACK_SH = REPO / "examples" / "production" / "stack.sh"
MODEL = "leadscore-conversion"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _role_that_may_create_databases():
    """A PostgreSQL role with CREATEDB and no other privilege; it and its databases go after."""
    require_postgres()
    suffix = uuid.uuid4().hex[:8]
    role = f"leadscore_stack_{suffix}"
    names = {
        "LEADSCORE_DB_NAME": f"stack_crm_{suffix}",
        "LEADSCORE_MLFLOW_DB": f"stack_mlflow_{suffix}",
        "LEADSCORE_PREFECT_DB": f"stack_prefect_{suffix}",
    }
    admin = uris.create_engine(PG_ADMIN_URI, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN CREATEDB'))
    try:
        yield role, names
    finally:
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def _environment(home: Path, role: str, names: dict[str, str]) -> dict[str, str]:
    """A user's shell: none of the test session's Prefect, MLflow or leadscore settings."""
    server = sa.engine.make_url(uris.normalise_uri(PG_ADMIN_URI))
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "LEADSCORE_", "MLFLOW_", "PG"))
    }
    in_twelve_hours = dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)
    cron = f"{in_twelve_hours.minute} {in_twelve_hours.hour} * * *"  # nothing comes due
    return {
        **keep,
        "HOME": str(home),
        "LEADSCORE_STACK_DIR": str(home / "stack"),
        "LEADSCORE_DB_HOST": server.host or "127.0.0.1",
        "LEADSCORE_DB_PORT": str(server.port or 5432),
        "LEADSCORE_DB_USER": role,
        **names,
        "LEADSCORE_MLFLOW_PORT": str(_free_port()),
        "LEADSCORE_PREFECT_PORT": str(_free_port()),
        "LEADSCORE_SCORE_CRON": cron,
        "LEADSCORE_TRAIN_CRON": cron.replace("* * *", "* * 1"),
        "OMP_NUM_THREADS": "1",
    }


def _bash(code: str, env: dict[str, str], log: Path, timeout: float) -> subprocess.CompletedProcess:
    with log.open("w") as out:
        return subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + code],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )


def _pids(stack: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (stack / "run").glob("*.pid")}


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True, text=True
    ).stdout


def _read(uri: str, sql: str) -> list[tuple]:
    engine = uris.create_engine(uri)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def _flow_runs(api: str, deployment: str) -> list[dict]:
    """The runs of a deployment that started (not the schedule's upcoming ones)."""
    found = httpx.get(f"{api}/deployments/name/{deployment}", timeout=30).json()
    body = {"deployments": {"id": {"any_": [found["id"]]}}}
    runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30).json()
    return [run for run in runs if run["state_type"] != "SCHEDULED"]


def _artifacts(api: str, flow_run: str) -> dict[str, dict]:
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run]}}}
    found = httpx.post(f"{api}/artifacts/filter", json=body, timeout=30).json()
    return {a["key"]: a for a in found}


def test_the_documented_production_stack_comes_up_scores_and_goes_down(tmp_path: Path) -> None:
    blocks = [b for b in shell_blocks(DOC) if b.role]
    setup = "".join(b.code for b in blocks if b.role == "setup")
    teardown = "".join(b.code for b in blocks if b.role == "teardown")
    home = tmp_path / "home"
    home.mkdir()
    stack = home / "stack"
    before = _git_status()
    with _role_that_may_create_databases() as (role, names):
        env = _environment(home, role, names)
        try:
            ran = _bash(setup, env, tmp_path / "setup.log", timeout=1500)
            log = (tmp_path / "setup.log").read_text()
            assert ran.returncode == 0, f"the doc's commands failed:\n{log[-6000:]}"
            pids = _pids(stack)
            assert set(pids) == {"mlflow", "prefect-server", "worker"}, pids
            assert all(_group_alive(pid) for pid in pids.values())
            _check_what_the_stack_holds(env, stack, log)
        finally:
            down = _bash(teardown, env, tmp_path / "teardown.log", timeout=180)
            for pid in _pids(stack).values():  # only if down failed: leave nothing behind
                if _group_alive(pid):
                    os.killpg(pid, signal.SIGKILL)
        # Down, cleanly: exit 0, every process group gone, ports closed, pid files removed.
        assert down.returncode == 0, (tmp_path / "teardown.log").read_text()[-3000:]
        assert not any(_group_alive(pid) for pid in pids.values())
        assert _pids(stack) == {}
        for port in (env["LEADSCORE_MLFLOW_PORT"], env["LEADSCORE_PREFECT_PORT"]):
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", int(port))) != 0, f"port {port} still open"
        status = subprocess.run(
            [str(STACK_SH), "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.stdout.count("stopped") == 3, status.stdout
    # Nothing was written into the checkout: the state lives in the stack folder.
    assert _git_status() == before


def _check_what_the_stack_holds(env: dict[str, str], stack: Path, log: str) -> None:
    """PostgreSQL, the Prefect server and the MLflow server hold one training and one scoring."""
    user, host, port = env["LEADSCORE_DB_USER"], env["LEADSCORE_DB_HOST"], env["LEADSCORE_DB_PORT"]

    def db(name: str) -> str:
        return f"postgresql://{user}@{host}:{port}/{name}"

    crm = db(env["LEADSCORE_DB_NAME"])
    # The CRM and the published scores, in PostgreSQL.
    assert _read(crm, "SELECT count(*) FROM leads") == [(5000,)]
    [(version, published)] = _read(crm, "SELECT model_version, leads FROM lead_score_runs")
    assert version == "1" and published > 500
    tiers = dict(_read(crm, "SELECT tier, count(*) FROM lead_scores GROUP BY tier"))
    assert set(tiers) == set("ABCD") and sum(tiers.values()) == published
    assert _read(crm, "SELECT action, version FROM model_promotions") == [("first", "1")]

    # Both runs went through the worker on the pool and completed.
    api = f"http://127.0.0.1:{env['LEADSCORE_PREFECT_PORT']}/api"
    for deployment in ("train/weekly-train", "score/nightly-score", "review/monthly-review"):
        [run] = _flow_runs(api, deployment)
        assert run["state_type"] == "COMPLETED", run["state"]
        assert run["work_pool_name"] == "leadscore"
    [score_run] = _flow_runs(api, "score/nightly-score")
    artifacts = _artifacts(api, score_run["id"])
    assert {"leadscore-score", "leadscore-score-tiers", "leadscore-score-mlflow"} <= set(artifacts)
    assert f"{published:,}" in artifacts["leadscore-score"]["data"]
    assert env["LEADSCORE_MLFLOW_PORT"] in artifacts["leadscore-score-mlflow"]["data"]

    # The servers keep their state in PostgreSQL and the stack folder.
    assert _read(db(env["LEADSCORE_MLFLOW_DB"]), "SELECT name FROM registered_models") == [(MODEL,)]
    assert _read(db(env["LEADSCORE_PREFECT_DB"]), "SELECT count(*) FROM flow_run")[0][0] >= 3
    client = mlflow_client(f"http://127.0.0.1:{env['LEADSCORE_MLFLOW_PORT']}")
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    assert any(p.is_file() for p in (stack / "mlflow-artifacts").rglob("*"))
    assert (stack / "report.html").stat().st_size > 10_000
    assert (stack / "leadscore.yaml").read_text() == (
        REPO / "examples" / "production" / "leadscore.yaml"
    ).read_text()
    # The monthly review, run by the worker for this month: its file and its page.
    [review_run] = _flow_runs(api, "review/monthly-review")
    assert review_run["state_type"] == "COMPLETED", review_run["state"]
    # Its month is the generated history's (the doc pins every run to the history's last
    # day, so a run that crosses midnight UTC scores and reviews the same day).
    [(as_of,)] = _read(crm, "SELECT as_of_date FROM lead_score_runs")
    month = str(as_of)[:7]
    assert (stack / f"leadscore-review-{month}.html").stat().st_size > 10_000
    assert "leadscore-review-months" in _artifacts(api, review_run["id"])
    # What the doc's commands printed: three watched runs that completed, then the status.
    assert log.count("Flow run finished successfully in 'Completed'") == 3, log[-3000:]
    assert log.count("running (pid") == 3, log[-2000:]
