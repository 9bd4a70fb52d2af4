"""`POST /events`: activities of known leads stored once under their idempotency key, the
lead rescored at once; the batch's own read (`load_crm`) counts them like the source's."""

from __future__ import annotations

import json
import shutil
import time

import pandas as pd
import pytest
import yaml
from conftest import (
    FLAT_CONFIG,
    FLAT_RULES,
    Receiver,
    without_keys,
    write_flat_export,
    write_project,
)

from leadscore.apps import service
from leadscore.config import load_config
from leadscore.io.events import Event, read_events
from leadscore.io.publish import read_scores
from leadscore.scoring import ondemand
from leadscore.scoring.inputs import now


@pytest.fixture
def project(demo, tmp_path):
    """A copy of the demo project (its own CRM, publish database and registry)."""
    workdir, _ = demo
    copy = tmp_path / "project"
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("*.log", "prefect*"))
    return without_keys(load_config(copy / "leadscore.yaml"))


def _client(config):
    from fastapi.testclient import TestClient

    return TestClient(service.create_app(config, reference_refresh_seconds=0))


def _open_lead(client, config) -> str:
    """A lead of the published run still open now."""
    published = read_scores(config.publish_uri, config.publish.table, latest=True)
    for lead in published.sort_values("conversion_probability")["lead_id"].astype(str):
        if client.get(f"/leads/{lead}/score").status_code == 200:
            return lead
    raise AssertionError("no open lead in the demo")


def _events(lead: str, with_ids: bool = True) -> list[dict]:
    hour = (now() - pd.Timedelta(hours=1)).isoformat() + "Z"
    minute = (now() - pd.Timedelta(minutes=1)).isoformat() + "Z"
    pricing = {"activity_type": "page_view", "detail": "/pricing"}
    events = [
        {"lead_id": lead, "occurred_at": hour, **pricing},
        {"lead_id": lead, "occurred_at": minute, "activity_type": "demo_request"},
        {"lead_id": lead, "occurred_at": minute, **pricing},
    ]
    if with_ids:
        for i, event in enumerate(events):
            event["event_id"] = f"web-{lead}-{i}"
    return events


def test_events_are_stored_once_and_rescore_their_lead(project) -> None:
    with _client(project) as client:
        lead = _open_lead(client, project)
        before = client.get(f"/leads/{lead}/score").json()
        first = client.post("/events", json={"events": _events(lead)})
        assert first.status_code == 200, first.text
        body = first.json()
        assert (body["received"], body["stored"], body["duplicates"]) == (3, 3, 0)
        (rescored,) = body["rescored"]
        assert rescored["lead_id"] == before["lead_id"] and body["not_scored"] == []
        # A demo request and two pricing views: the rules and the model see them.
        assert rescored["rule_score"] > before["rule_score"]
        assert rescored["conversion_probability"] > before["conversion_probability"]
        # GET reflects them, as of the same moment: the same answer.
        again = client.get(f"/leads/{lead}/score", params={"as_of": rescored["as_of"]}).json()
        for field in ("conversion_probability", "rule_score", "rules_fired", "reasons_up", "tier"):
            assert again[field] == rescored[field], field
        # A retried post (same event ids) stores nothing and rescores nobody.
        retry = client.post("/events", json={"events": _events(lead)}).json()
        assert (retry["stored"], retry["duplicates"], retry["rescored"]) == (0, 3, [])
        # Without ids, an event's content is its key: the same event twice is one.
        plain = _events(lead, with_ids=False)[:1]
        assert client.post("/events", json={"events": plain * 2}).json()["stored"] == 1
        assert client.post("/events", json={"events": plain}).json()["stored"] == 0
        final = client.get(f"/leads/{lead}/score", params={"as_of": rescored["as_of"]}).json()

    # The batch's own read counts them, like the source's activities: the same score.
    moment = pd.Timestamp(rescored["as_of"].rstrip("Z"))
    scorer = service.load_state(project).scorer
    crm = ondemand.read_leads(scorer, [lead], moment)
    batch = ondemand.as_records(ondemand.score_leads(crm, [lead], scorer, moment, None))[0]
    assert batch["conversion_probability"] == pytest.approx(
        final["conversion_probability"], abs=1e-9
    )
    assert batch["rule_score"] == final["rule_score"] > rescored["rule_score"]
    stored = read_events(project.publish_uri, project.service.events_table)
    assert len(stored) == 4 and set(stored["lead_id"]) == {lead}


BAD = {
    "an unknown lead": (lambda lead: [{**_events(lead)[0], "lead_id": "no-such-lead"}], 422,
                        "lead(s) 'no-such-lead' not found in table 'leads'; nothing was stored"),
    "a time in the future": (
        lambda lead: [{**_events(lead)[0], "occurred_at": "2099-01-01T00:00:00Z"}], 422,
        "events.0.occurred_at: timestamps in the future"),
    "a blank type": (lambda lead: [{**_events(lead)[0], "activity_type": " "}], 422,
                     "events.0.activity_type: must not be blank"),
    "a naive time": (lambda lead: [{**_events(lead)[0], "occurred_at": "2026-01-01T00:00:00"}],
                     422, "events.0.occurred_at: Input should have timezone info"),
    "an unknown field": (lambda lead: [{**_events(lead)[0], "colour": "red"}], 422,
                         "unknown field 'events.0.colour'; allowed here: occurred_at"),
    "no events": (lambda lead: [], 422, "events: List should have at least 1 item"),
}  # fmt: skip


def test_bad_events_are_refused_and_nothing_is_stored(project) -> None:
    with _client(project) as client:
        lead = _open_lead(client, project)
        for case, (events, status, words) in BAD.items():
            response = client.post("/events", json={"events": events(lead)})
            assert response.status_code == status, (case, response.text)
            assert words in response.json()["error"], (case, response.json()["error"])
        # A good event and a bad one: all or nothing.
        mixed = [_events(lead)[0], {**_events(lead)[1], "lead_id": "no-such-lead"}]
        assert client.post("/events", json={"events": mixed}).status_code == 422
    stored = read_events(project.publish_uri, project.service.events_table)
    assert stored is None or stored.empty


def test_a_flat_export_takes_no_events(tmp_path) -> None:
    write_flat_export(tmp_path / "data", leads=300)
    config = yaml.safe_load(yaml.safe_dump(FLAT_CONFIG))
    config["publish"] = {"uri": "sqlite:///scores.db"}
    path = write_project(tmp_path, config, FLAT_RULES)
    with _client(without_keys(load_config(path))) as client:
        event = {"lead_id": "1", "occurred_at": "2026-01-01T00:00:00Z", "activity_type": "x"}
        response = client.post("/events", json={"events": [event]})
    assert response.status_code == 409
    assert response.json()["error"] == "a flat export has no activities to add events to"


def test_a_lead_turned_hot_by_events_reaches_sales_once(project, monkeypatch) -> None:
    """Events make a lead an MQL: one alert, sent right after the answer; a retried post
    sends none, and the next nightly run does not announce the same lead again."""
    from leadscore.config.schema import AlertConfig, AlertSink
    from leadscore.io.alerts import read_outbox
    from leadscore.io.publish import ScoreTables, publish_with_alerts
    from leadscore.io.sources import load_crm

    receiver = Receiver()
    monkeypatch.setenv("LEADSCORE_TEST_SECRET", "s3cret")
    sink = AlertSink(name="sales", url=receiver.url, secret="s3cret")
    config = project.model_copy(update={"alerts": AlertConfig(sinks=[sink], triggers=["mql"])})
    published = read_scores(config.publish_uri, config.publish.table, latest=True)
    quiet = published[~published["is_mql"].astype(bool) & (published["rule_score"] >= 0)]
    try:
        with _client(config) as client:
            lead = next(
                str(k) for k in quiet["lead_id"]
                if client.get(f"/leads/{k}/score").status_code == 200
            )  # fmt: skip
            minute = (now() - pd.Timedelta(minutes=1)).isoformat() + "Z"
            hot = [{"lead_id": lead, "occurred_at": minute, "activity_type": "content_download",
                    "event_id": f"dl-{i}"} for i in range(2)]  # fmt: skip
            body = client.post("/events", json={"events": hot}).json()
            assert body["rescored"][0]["is_mql"] and body["alerts_queued"] == 1, body
            deadline = time.monotonic() + 30
            while not receiver.requests and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.post("/events", json={"events": hot}).json()["alerts_queued"] == 0
        (sent,) = receiver.requests
        payload = json.loads(sent["body"])
        first = Event(lead, now(), "content_download", None, "dl-0")
        assert sent["headers"]["Idempotency-Key"] == f"{lead}:event:{first.key}"
        assert payload["changes"][0].startswith("became an MQL by the rules")
        counts, _ = read_outbox(config.publish_uri, config.alerts.table)
        assert counts.get("sent") == 1

        # The next nightly run: the lead is still an MQL, and was announced already.
        tomorrow = pd.Timestamp(published["as_of_date"].max()) + pd.Timedelta(days=1)
        scorer = service.load_state(config).scorer
        scores = scorer.score(load_crm(config), tomorrow)
        assert bool(scores.set_index(scores["lead_id"].astype(str)).loc[lead, "is_mql"])
        run = {"model_name": "m", "model_version": "1", "mlflow_run_id": "r", "scored_at": now()}
        nightly = scores.rename(columns={"as_of": "as_of_date"}).assign(**run)
        publish_with_alerts(nightly, config.publish_uri, ScoreTables.of(config), config.alerts)
        _, rows = read_outbox(config.publish_uri, config.alerts.table, limit=10_000)
        assert (rows["lead_id"].astype(str) == lead).sum() == 1
    finally:
        receiver.close()


def test_events_on_postgresql_are_stored_once_and_read_by_the_batch(tmp_path) -> None:
    """The events table on PostgreSQL (its own INSERT ... ON CONFLICT), read by load_crm."""
    from conftest import fresh_pg_database

    from leadscore.io.events import Event, EventStore
    from leadscore.io.sources import load_crm
    from leadscore.io.tables import write_tables
    from leadscore.synthetic import generate_crm

    end = now().normalize()
    tables = generate_crm(200, seed=3, end=str(end.date())).tables()
    tables = {k: tables[k] for k in ("leads", "activities", "outcomes")}
    with fresh_pg_database() as pg:
        write_tables(tables, pg)
        path = tmp_path / "leadscore.yaml"
        path.write_text(yaml.safe_dump({"source": {"uri": pg}, "publish": {"uri": pg}}))
        config = load_config(path)
        lead = str(tables["leads"]["lead_id"].iloc[0])
        at = end - pd.Timedelta(hours=3)
        events = [Event(lead, at, "demo_request", None, "e1"), Event(lead, at, "page_view", "/x")]
        store = EventStore(config.publish_uri, config.service.events_table)
        try:
            assert [e.key for e in store.store(events)] == [e.key for e in events]
            assert store.store(events) == []  # retried: stored once
        finally:
            store.close()
        crm = load_crm(config, activities_since=end - pd.Timedelta(days=1), lead_ids=[lead])
        mine = crm.activities[crm.activities["occurred_at"] == at]
        assert sorted(mine["activity_type"]) == ["demo_request", "page_view"]


def test_events_of_a_lead_deleted_later_are_left_out_with_a_warning(project) -> None:
    """The CRM deletes (or merges) a lead that had posted events: every read goes on."""
    import sqlalchemy as sa

    from leadscore.io.sources import load_crm

    with _client(project) as client:
        lead = _open_lead(client, project)
        assert client.post("/events", json={"events": _events(lead)}).json()["stored"] == 3
    engine = sa.create_engine(project.source_uri)
    with engine.begin() as conn:
        for table in ("activities", "outcomes", "leads"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE lead_id = :i"), {"i": int(lead)})
    engine.dispose()
    crm = load_crm(project)
    assert int(lead) not in set(crm.activities["lead_id"])
    (warning,) = [w for w in crm.checks.warnings if "posted event(s)" in w.describe()]
    assert "3 posted event(s) of leads no longer in table 'leads' were left out" in (
        warning.describe()
    )
