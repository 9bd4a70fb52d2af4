"""Deployments for real: a Prefect server, prefect.yaml on a process work pool with a worker
scoring into PostgreSQL, the cron schedule it creates, and flows/serve.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
import yaml
from conftest import REPO, fresh_pg_database, mlflow_client, run_cli

from leadscore.io import uris
from leadscore.lifecycle.monitoring import STATUSES

#: A Prefect server, a work pool, a worker and deployments: CI's long step.
pytestmark = pytest.mark.long


PREFECT = Path(sys.executable).with_name("prefect")
TIMEZONE = "Europe/Berlin"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def _cron_half_a_day_away() -> str:
    """A daily cron 12 h from now in TIMEZONE: no scheduled run comes due during the test."""
    later = dt.datetime.now(ZoneInfo(TIMEZONE)) + dt.timedelta(hours=12)
    return f"{later.minute} {later.hour} * * *"


SCORE_CRON = _cron_half_a_day_away()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen, sig: int, timeout: float = 30) -> None:
    """Send `sig` to the process group we started; kill it if it does not exit in time."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _prefect(args: list[str], env: dict[str, str], timeout: float = 180) -> str:
    """Run the `prefect` CLI as a user would; fail the test with its output if it fails."""
    result = subprocess.run(
        [str(PREFECT), "--no-prompt", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass
class Server:
    """A `prefect server start` process and how to reach it."""

    process: subprocess.Popen
    api: str
    home: Path
    log: Path

    def wait_healthy(self, timeout: float = 120) -> None:
        """Poll /api/health until the server answers (4-30 s here)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"prefect server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"prefect server unhealthy after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def get(self, path: str) -> dict | list:
        response = httpx.get(f"{self.api}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict) -> dict | list:
        response = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def client_env(self) -> dict[str, str]:
        """The environment of every Prefect client: CLI, worker, flow runs."""
        return {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api,
            "OMP_NUM_THREADS": "1",
        }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A real Prefect server on a free port with its own PREFECT_HOME (booting in background)."""
    home = tmp_path_factory.mktemp("prefect_server")
    port = _free_port()
    log = home / "server.log"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    if not PREFECT.exists():
        pytest.fail(f"the prefect CLI is missing at {PREFECT}: run `python3 run.py setup`")
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Server(process, f"http://127.0.0.1:{port}/api", home, log)
    finally:
        _stop(process, signal.SIGTERM)


@dataclass
class Project:
    """A generated CRM in PostgreSQL, a project file without URLs and a trained champion."""

    config: Path
    pg_uri: str
    tracking_uri: str
    champion_version: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, server: Server):
    """Generate 2,000 leads into a fresh database and train a champion with the CLI."""
    workdir = tmp_path_factory.mktemp("deployed_project")
    with fresh_pg_database() as pg_uri:
        # The database URLs live only in the environment, as the docs tell users to do.
        env = {
            **server.client_env(),
            "LEADSCORE_SOURCE_URI": pg_uri,
            "LEADSCORE_PUBLISH_URI": pg_uri,
        }
        generated = run_cli(
            ["generate", "--out", pg_uri, "--leads", "2000", "--seed", "5", "--json"], env, workdir
        )
        assert generated.returncode == 0, generated.stderr[-3000:]
        shutil.copy(REPO / "models" / "mql_rules.yaml", workdir / "mql_rules.yaml")
        config = workdir / "leadscore.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "rules": "mql_rules.yaml",
                    "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "artifact_location": "mla"},
                    "report": {"bootstrap_samples": 100},
                }
            )
        )
        server.wait_healthy()  # booted while the CRM was generated
        trained = run_cli(["train", "--config", str(config), "--json"], env, workdir)
        assert trained.returncode == 0, trained.stderr[-3000:]
        summary = json.loads(trained.stdout)

        tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
        client = mlflow_client(tracking_uri)
        champion = client.get_model_version_by_alias(summary["model_name"], "champion")
        yield Project(config, pg_uri, tracking_uri, str(champion.version), env)


@pytest.fixture(scope="module")
def nightly_score(server: Server, project: Project) -> dict:
    """`nightly-score` deployed from the repo's prefect.yaml with the documented commands."""
    env = {
        **project.env,
        "LEADSCORE_CONFIG": str(project.config),
        "LEADSCORE_SCORE_CRON": SCORE_CRON,
        "LEADSCORE_TIMEZONE": TIMEZONE,
    }
    _prefect(["work-pool", "create", "leadscore", "--type", "process"], env)
    _prefect(["deploy", "--name", "nightly-score"], env)
    return server.get("/deployments/name/score/nightly-score")


def test_prefect_yaml_deploys_the_configured_schedule_and_limit(nightly_score, project) -> None:
    deployment = nightly_score
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == [SCORE_CRON]
    assert deployment["schedules"][0]["schedule"]["timezone"] == TIMEZONE
    assert deployment["schedules"][0]["active"] and not deployment["paused"]
    assert deployment["work_pool_name"] == "leadscore"
    assert deployment["entrypoint"] == "flows/score.py:score_flow"
    assert deployment["parameters"] == {"config_path": str(project.config)}
    assert deployment["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
    ]
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert "postgresql" not in json.dumps(deployment)


def test_the_schedule_creates_upcoming_runs(server: Server, nightly_score) -> None:
    """The server's scheduler turns the cron into Scheduled runs at the right local time."""
    deadline = time.monotonic() + 60
    upcoming: list[dict] = []
    while not upcoming and time.monotonic() < deadline:
        time.sleep(2)
        runs = server.post(
            "/flow_runs/filter",
            {
                "flow_runs": {
                    "deployment_id": {"any_": [nightly_score["id"]]},
                    "state": {"type": {"any_": ["SCHEDULED"]}},
                }
            },
        )
        upcoming = [r for r in runs if r["auto_scheduled"]]
    errors = re.findall(r"^[\w.]+(?:Error|Exception): .*$", server.log.read_text(), flags=re.M)
    assert upcoming, f"no scheduled runs after 60 s; server errors: {sorted(set(errors))}"
    minute, hour = (int(v) for v in SCORE_CRON.split()[:2])
    for run in upcoming:
        start = dt.datetime.fromisoformat(run["expected_start_time"]).astimezone(ZoneInfo(TIMEZONE))
        assert (start.hour, start.minute) == (hour, minute), run["expected_start_time"]


def _run_report(server: Server, run_id: str, worker_log: Path) -> str:
    """A flow run's state and logs and the worker's output, for a failure message."""
    run = server.get(f"/flow_runs/{run_id}")
    logs = server.post(
        "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"}
    )
    lines = "\n".join(f"{log['timestamp']} {log['message']}" for log in logs)
    return (
        f"flow run {run_id}: {run['state_type']} {run['state']['message']}\n"
        f"--- flow run logs ---\n{lines[-6000:]}\n"
        f"--- worker output ---\n{worker_log.read_text()[-6000:]}"
    )


def _wait_for_runs(
    server: Server, run_ids: list[str], worker_log: Path, timeout: float = 240
) -> dict[str, str]:
    """Poll until every run is in a terminal state; the state type of each run."""
    deadline = time.monotonic() + timeout
    while True:
        states = {i: server.get(f"/flow_runs/{i}")["state_type"] for i in run_ids}
        if set(states.values()) <= TERMINAL or time.monotonic() > deadline:
            break
        time.sleep(2)
    if not set(states.values()) <= {"COMPLETED", "CANCELLED"}:
        pytest.fail("\n\n".join(_run_report(server, i, worker_log) for i in run_ids))
    return states


def test_worker_runs_nightly_score_once_and_publishes(
    server: Server, project: Project, nightly_score, tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    out = _prefect(["deployment", "run", "score/nightly-score"], project.env)
    first = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
    # A second run while the first is running: the deployment's limit must cancel it.
    second = server.post(f"/deployments/{nightly_score['id']}/create_flow_run", {})["id"]
    worker_log = tmp_path / "worker.log"
    with worker_log.open("w") as log:
        worker = subprocess.Popen(
            [str(PREFECT), "worker", "start", "--pool", "leadscore"],
            env=project.env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        states = _wait_for_runs(server, [first, second], worker_log)
        assert sorted(states.values()) == ["CANCELLED", "COMPLETED"], states
    finally:
        _stop(worker, signal.SIGINT)  # as Ctrl-C does; STACK-NOTES: SIGTERM is slow
    cancelled = next(i for i, s in states.items() if s == "CANCELLED")
    assert "concurrency limit" in server.get(f"/flow_runs/{cancelled}")["state"]["message"]

    engine = uris.create_engine(project.pg_uri)
    try:
        with engine.connect() as conn:
            published = conn.execute(
                sa.text("SELECT lead_id, as_of_date, model_version FROM lead_scores")
            ).all()
            as_of = {row.as_of_date for row in published}
            assert len(as_of) == 1 and as_of <= {today, today + dt.timedelta(days=1)}, as_of
            # Open as of the as-of date: created in the year before it, not converted before it.
            expected = conn.execute(
                sa.text(
                    "SELECT lead_id FROM leads l WHERE created_at < :t "
                    "AND created_at >= :t - interval '365 days' AND NOT EXISTS "
                    "(SELECT 1 FROM outcomes o WHERE o.lead_id = l.lead_id AND converted_at < :t)"
                ),
                {"t": next(iter(as_of))},
            ).scalars()
            expected_ids = set(expected)
    finally:
        engine.dispose()
    assert len(expected_ids) > 100
    assert sorted(row.lead_id for row in published) == sorted(expected_ids)
    assert {row.model_version for row in published} == {project.champion_version}

    # The run's page in the UI tells its story: a summary and the tier and monitoring
    # tables, with this run's numbers (read back through the Prefect client).
    completed = next(i for i, s in states.items() if s == "COMPLETED")
    artifacts = _artifacts(server, completed)
    summary = artifacts["leadscore-score"]
    day = next(iter(as_of)).isoformat()
    assert summary.type == "markdown"
    assert f"as of {day}: {len(published):,} open leads published by" in summary.data
    assert f"v{project.champion_version}" in summary.data and "Monitoring" in summary.data
    tiers = json.loads(artifacts["leadscore-score-tiers"].data)
    assert sum(row["leads"] for row in tiers) == len(published)
    assert [row["tier"] for row in tiers] == ["A", "B", "C", "D"]
    checks = json.loads(artifacts["leadscore-score-monitoring"].data)
    assert {"row_count", "score_psi"} <= {row["check"] for row in checks}
    assert {row["status"] for row in checks} <= set(STATUSES)


def _artifacts(server: Server, flow_run: str) -> dict:
    """The artifacts of one flow run by key, through the Prefect client."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    only = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run]))
    with SyncPrefectClient(server.api) as client:
        return {a.key: a for a in client.read_artifacts(artifact_filter=only)}


def test_serve_registers_the_deployments_with_schedules(
    server: Server, project: Project, tmp_path: Path
) -> None:
    """`python flows/serve.py` registers nightly-score, weekly-train and monthly-review from
    one process."""
    names = ("review/monthly-review", "score/nightly-score", "train/weekly-train")
    # One way per server (docs): the deployments prefect.yaml made go first.
    for name in names:
        response = httpx.get(f"{server.api}/deployments/name/{name}", timeout=30)
        if response.status_code == 200:
            httpx.delete(f"{server.api}/deployments/{response.json()['id']}").raise_for_status()
    # Started as a background job of a non-interactive shell is (nohup, `&`, many CI
    # runners): with SIGINT ignored. Ctrl-C must still stop serving and pause the schedules.
    serve_args = ["sh", "-c", 'trap "" INT; exec "$@"', "serve"]
    serve_args += [sys.executable, "flows/serve.py", "--config", str(project.config)]
    serve_args += ["--score-cron", "30 1 * * *", "--train-cron", "0 5 * * 0"]
    serve_args += ["--timezone", "America/New_York"]
    serve_log = tmp_path / "serve.log"
    with serve_log.open("w") as log:
        serving = subprocess.Popen(
            serve_args,
            env=project.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        found: dict[str, dict] = {}
        while len(found) < len(names) and time.monotonic() < deadline:
            assert serving.poll() is None, serve_log.read_text()[-3000:]
            for name in names:
                response = httpx.get(f"{server.api}/deployments/name/{name}", timeout=30)
                # READY: the serving process polls for their runs (so Ctrl-C now pauses them).
                if response.status_code == 200 and response.json()["status"] == "READY":
                    found[name] = response.json()
            time.sleep(1)
        assert sorted(found) == list(names), serve_log.read_text()[-3000:]
    finally:
        _stop(serving, signal.SIGINT)
    crons = {name: [s["schedule"] for s in found[name]["schedules"]] for name in names}
    assert crons == {
        "score/nightly-score": [
            {"cron": "30 1 * * *", "timezone": "America/New_York", "day_or": True}
        ],
        "train/weekly-train": [
            {"cron": "0 5 * * 0", "timezone": "America/New_York", "day_or": True}
        ],
        "review/monthly-review": [
            {"cron": "0 6 1 * *", "timezone": "America/New_York", "day_or": True}
        ],
    }
    for name, deployment in found.items():
        month = {"month": "previous"} if name.startswith("review/") else {}
        assert deployment["parameters"] == {"config_path": str(project.config), **month}
        assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
        # Ctrl-C pauses the schedules of what it served.
        paused = server.get(f"/deployments/{deployment['id']}")["paused"]
        assert paused, serve_log.read_text()[-3000:]
    assert found["train/weekly-train"]["entrypoint"] == "flows/train.py:train_flow"
