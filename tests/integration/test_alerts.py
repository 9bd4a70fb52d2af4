"""Hot-lead alerts against a real local receiver: the outbox, retries, failures, a killed run.

Alerts are written with the scores (one transaction) and delivered from the outbox table,
on SQLite and PostgreSQL. The receiver is a real HTTP server in this process: down for a
while, failing forever, or holding a request while the scoring process is killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import CLI, DEFAULT_RULES, Receiver, fresh_pg_database, invoke_cli

from leadscore.config.schema import AlertConfig, AlertSink
from leadscore.io import alerts, publish, uris
from leadscore.io.tables import write_tables
from leadscore.synthetic import generate_crm

SECRET = "test-shared-secret"


@pytest.fixture
def receiver():
    started = Receiver()
    yield started
    started.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scores(day: str, tiers: str, mql: str = "", p: list[float] | None = None) -> pd.DataFrame:
    """One run's scores: lead i+1 gets tiers[i]; the leads in `mql` (digits) are MQLs."""
    n = len(tiers)
    return pd.DataFrame(
        {
            "lead_id": range(1, n + 1),
            "as_of_date": pd.Timestamp(day),
            "conversion_probability": p
            or [{"A": 0.4, "B": 0.2, "C": 0.1, "D": 0.02}[t] for t in tiers],
            "percentile": 50.0,
            "tier": list(tiers),
            "rule_score": [60.0 if str(i + 1) in mql else 10.0 for i in range(n)],
            "is_mql": [str(i + 1) in mql for i in range(n)],
            "rules_fired": "pricing_page",
            "reasons_up": "4 pricing-page views in the last 30 days; job title says director",
            "reasons_down": "free e-mail domain",
            "model_name": "leadscore-conversion",
            "model_version": "3",
            "mlflow_run_id": "r",
            "scored_at": pd.Timestamp(day) + pd.Timedelta(hours=2),
        }
    )


def _config(*sinks: AlertSink, **settings) -> AlertConfig:
    return AlertConfig(sinks=list(sinks), **settings)


def _outbox(uri: str) -> pd.DataFrame:
    engine = uris.create_engine(uri)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text("SELECT * FROM score_alerts ORDER BY alert_key, sink"), conn)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def score_db(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scores.db'}"
    else:
        with fresh_pg_database() as uri:
            yield uri


def test_a_lead_turning_hot_is_alerted_once_per_sink_signed(score_db, receiver) -> None:
    config = _config(
        AlertSink(name="crm", url=receiver.url, secret=SECRET),
        AlertSink(name="slack", url=receiver.url, format="slack"),
    )
    publish_run = publish.publish_with_alerts
    # The first run is the baseline: nothing to compare with, no alerts.
    assert publish_run(_scores("2026-03-01", "BBCD"), score_db, alert_config=config) == (4, 0)
    # Lead 1 enters tier A, lead 2 becomes an MQL, lead 5 is new and in A.
    assert publish_run(_scores("2026-03-02", "ABCDA", mql="2"), score_db, alert_config=config) == (
        5,
        6,
    )
    outbox = _outbox(score_db)
    assert sorted(set(outbox["alert_key"])) == ["1:2026-03-02", "2:2026-03-02", "5:2026-03-02"]
    assert set(outbox["status"]) == {"pending"}
    done = alerts.deliver(score_db, config)
    assert (done.sent, done.failed, done.pending) == (6, 0, 0)
    assert sorted(receiver.keys()) == sorted(outbox["alert_key"].tolist())
    by_sink = {}
    for request in receiver.requests:
        body = json.loads(request["body"])
        by_sink.setdefault("crm" if "alert_key" in body else "slack", []).append((request, body))
    for request, body in by_sink["crm"]:
        headers = request["headers"]
        assert alerts.verify(
            SECRET, headers["X-Leadscore-Timestamp"], request["body"],
            headers["X-Leadscore-Signature"],
        )  # fmt: skip
        assert not alerts.verify("another-secret", headers["X-Leadscore-Timestamp"],
                                 request["body"], headers["X-Leadscore-Signature"])  # fmt: skip
        assert body["model"] == "leadscore-conversion v3" and body["reasons_up"]
        assert not {"email", "name", "first_name", "last_name", "phone"} & set(body)
    lead1 = next(body for _, body in by_sink["crm"] if body["lead_id"] == 1)
    assert lead1["changes"] == ["entered tier A (was B)", "probability rose from 20% to 40%"]
    assert lead1["what_changed"] == ["tier B → A", "probability 20% → 40%"]
    assert lead1["previous"] == {
        "as_of": "2026-03-01", "tier": "B", "is_mql": False, "conversion_probability": 0.2
    }  # fmt: skip
    assert all("X-Leadscore-Signature" not in r["headers"] for r, _ in by_sink["slack"])
    assert all(body["text"].startswith("Hot lead ") for _, body in by_sink["slack"])
    # A rerun of the same day finds its alerts there already; a backfill alerts nobody.
    assert (
        publish_run(_scores("2026-03-02", "ABCDA", mql="2"), score_db, alert_config=config)[1] == 0
    )
    assert (
        publish_run(_scores("2026-02-20", "AAAA", mql="1234"), score_db, alert_config=config)[1]
        == 0
    )
    assert alerts.deliver(score_db, config).sent == 0
    assert len(receiver.requests) == 6


def test_a_receiver_that_is_down_gets_the_alert_later_once(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'scores.db'}"
    port = _closed_port()
    config = _config(
        AlertSink(name="crm", url=f"http://127.0.0.1:{port}/hook"), backoff_seconds=[10, 60]
    )
    publish.publish_with_alerts(_scores("2026-03-01", "BB"), uri, alert_config=config)
    publish.publish_with_alerts(_scores("2026-03-02", "AB"), uri, alert_config=config)
    t0 = pd.Timestamp.now(tz="UTC").tz_localize(None)

    def at(seconds: float):
        return lambda: t0 + pd.Timedelta(seconds=seconds)

    first = alerts.deliver(uri, config, clock=at(0))
    assert (first.sent, first.pending) == (0, 1) and "ConnectError" in first.errors["crm"]
    assert alerts.deliver(uri, config, clock=at(5)).errors == {}  # not due: no attempt
    assert alerts.deliver(uri, config, clock=at(11)).pending == 1  # second attempt, down
    [row] = _outbox(uri).to_dict("records")
    assert row["attempts"] == 2 and row["status"] == "pending"
    up = Receiver(port=port)
    try:
        assert alerts.deliver(uri, config, clock=at(30)).sent == 0  # backs off 60 s
        assert alerts.deliver(uri, config, clock=at(72)).sent == 1
        assert alerts.deliver(uri, config, clock=at(500)).sent == 0
        assert up.keys() == ["1:2026-03-02"]
    finally:
        up.close()
    [row] = _outbox(uri).to_dict("records")
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, None)


def test_a_receiver_failing_forever_is_marked_failed_and_blocks_nothing(tmp_path, receiver):
    uri = f"sqlite:///{tmp_path / 'scores.db'}"
    broken = Receiver("fail")
    try:
        config = _config(
            AlertSink(name="broken", url=broken.url),
            AlertSink(name="crm", url=receiver.url),
            max_attempts=3,
            backoff_seconds=[1],
        )
        publish.publish_with_alerts(_scores("2026-03-01", "BBB"), uri, alert_config=config)
        publish.publish_with_alerts(_scores("2026-03-02", "AAB"), uri, alert_config=config)
        t0 = pd.Timestamp.now(tz="UTC").tz_localize(None)
        first = alerts.deliver(uri, config, clock=lambda: t0)
        assert first.sent == 2 and first.errors["broken"].startswith("HTTP 500 from http://")
        for step in (2, 4):
            alerts.deliver(uri, config, clock=lambda s=step: t0 + pd.Timedelta(seconds=s))
        outbox = _outbox(uri)
        assert outbox.groupby("sink")["status"].agg(set).to_dict() == {
            "broken": {"failed"}, "crm": {"sent"}
        }  # fmt: skip
        assert set(outbox.loc[outbox["sink"] == "broken", "attempts"]) == {3}
        # Each failing alert was tried three times, each time after its back-off.
        assert len(broken.requests) == 3 * 2 and sorted(receiver.keys()) == [
            "1:2026-03-02", "2:2026-03-02"
        ]  # fmt: skip

        project = tmp_path / "leadscore.yaml"
        sinks = [{"name": "broken", "url": broken.url}, {"name": "crm", "url": receiver.url}]
        project.write_text(yaml.safe_dump({"publish": {"uri": uri}, "alerts": {"sinks": sinks}}))
        listed = invoke_cli(["alerts", "-c", str(project), "--json"], tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["counts"] == {
            "pending": 0,
            "sending": 0,
            "sent": 2,
            "failed": 2,
        }
        failed = [a for a in json.loads(listed.stdout)["alerts"] if a["status"] == "failed"]
        assert {a["last_error"] for a in failed} == {f"HTTP 500 from {alerts.where(broken.url)}"}
        table = invoke_cli(["alerts", "-c", str(project)], tmp_path)
        assert "2 failed" in table.stdout and "HTTP 500" in table.stdout
        # --retry queues them again; still failing, they are back to pending with a back-off.
        retried = invoke_cli(["alerts", "-c", str(project), "--retry", "--json"], tmp_path)
        assert retried.returncode == 0, retried.stderr
        assert (
            json.loads(retried.stdout)["requeued"] == 2
            and json.loads(retried.stdout)["delivery"]["sent"] == 0
        )
        assert json.loads(retried.stdout)["counts"]["failed"] == 0
        assert json.loads(retried.stdout)["counts"]["pending"] == 2
    finally:
        broken.close()


@pytest.fixture(scope="module")
def rules_project(tmp_path_factory):
    """A generated CRM in SQLite scored by the rules alone (no model to train)."""
    folder = tmp_path_factory.mktemp("alerts_project")
    end = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() - pd.Timedelta(days=1)
    tables = generate_crm(1500, seed=11, end=str(end.date())).tables()
    write_tables({k: tables[k] for k in ("leads", "activities", "outcomes")},
                 f"sqlite:///{folder / 'crm.db'}")  # fmt: skip
    (folder / "rules.yaml").write_text(DEFAULT_RULES.read_text(encoding="utf-8"))
    return folder, end


def _write_project(folder: Path, receiver: Receiver, **alert_settings) -> Path:
    path = folder / "leadscore.yaml"
    alerts_section = {
        "sinks": [{"name": "crm", "url": receiver.url, "secret": "${ALERT_SECRET}"}],
        **alert_settings,
    }
    path.write_text(
        yaml.safe_dump(
            {
                "source": {"uri": "sqlite:///crm.db"},
                "publish": {"uri": "sqlite:///crm.db"},
                "rules": "rules.yaml",
                "scoring": {"rules_only": True},
                "alerts": alerts_section,
            }
        )
    )
    return path


@pytest.mark.long  # a real scoring process killed mid-send: ~40 s, in CI's long step
def test_a_scoring_run_killed_mid_delivery_loses_no_alert(rules_project, cli_env) -> None:
    """`leadscore score` publishes, starts sending, and is killed with a request in flight:
    every alert arrives after the restart, the one in flight twice with the same key
    (at least once), every other exactly once."""
    folder, end = rules_project
    holding = Receiver("hold")
    env = {**cli_env, "ALERT_SECRET": SECRET}
    try:
        project = _write_project(folder, holding, claim_timeout_seconds=1)
        before = str((end - pd.Timedelta(days=14)).date())
        baseline = subprocess.run(
            [*CLI, "score", "-c", str(project), "--as-of", before, "--json"],
            env=env, cwd=folder, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert baseline.returncode == 0, baseline.stderr[-3000:]
        assert json.loads(baseline.stdout)["alerts"]["queued"] == 0  # the first run: baseline
        run = subprocess.Popen(
            [*CLI, "score", "-c", str(project), "--as-of", str(end.date())],
            env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        try:
            assert holding.arrived.wait(300), run.communicate(timeout=60)[1][-3000:]
            os.killpg(run.pid, signal.SIGKILL)  # a request in flight, the rest not sent
            run.wait(30)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
        outbox = _outbox(f"sqlite:///{folder / 'crm.db'}")
        assert len(outbox) >= 3, "too few hot leads in 14 days to test this"
        assert outbox["status"].value_counts().to_dict() == {
            "pending": len(outbox) - 1,
            "sending": 1,
        }
        in_flight = holding.keys()
        assert in_flight == outbox.loc[outbox["status"] == "sending", "alert_key"].tolist()
    finally:
        holding.close()

    after = Receiver()
    try:
        restarted = _write_project(folder, after, claim_timeout_seconds=1)
        time.sleep(1.2)  # the dead process's claim times out
        result = invoke_cli(["alerts", "-c", str(restarted), "--deliver", "--json"], folder,
                            env={"ALERT_SECRET": SECRET})  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout)["delivery"]["sent"] == len(outbox)
        assert sorted(after.keys()) == sorted(outbox["alert_key"])  # each once after restart
        assert set(in_flight) <= set(after.keys())  # the one in flight: again, same key
        for request in after.requests:
            headers = request["headers"]
            assert alerts.verify(SECRET, headers["X-Leadscore-Timestamp"], request["body"],
                                 headers["X-Leadscore-Signature"])  # fmt: skip
        final = _outbox(f"sqlite:///{folder / 'crm.db'}")
        assert set(final["status"]) == {"sent"}
    finally:
        after.close()
