"""Only the right callers: API keys with scopes, revocation, a rate limit, an audit log.

On the demo project's service (in-process), with keys made by `leadscore keys` in a table of
the test's own; a lead id the CRM lacks (404) shows that a call got past the gate.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from leadscore.apps import service
from leadscore.apps.cli import app as cli
from leadscore.config import load_config

PAST_THE_GATE = "/leads/987654321/score"  # not in the CRM: 404 once the key is accepted


@pytest.fixture
def project(demo, tmp_path):
    """The demo's project with a keys table and an audit log of this test's own (the file
    sits beside the demo's, so its relative paths point to the same data)."""
    workdir, _ = demo
    suffix = uuid.uuid4().hex[:8]
    audit = tmp_path / "audit.log"
    path = workdir / f"leadscore-keys-{suffix}.yaml"
    path.write_text(
        (workdir / "leadscore.yaml").read_text(encoding="utf-8")
        + f"\nservice:\n  keys_table: api_keys_{suffix}\n  audit_log: {audit}\n",
        encoding="utf-8",
    )
    return load_config(path), path, audit


def _keys(path: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["keys", *args, "-c", str(path)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_no_key_unknown_key_wrong_scope_and_revoked_key_are_refused(project) -> None:
    config, path, audit = project
    scorer = _keys(path, "create", "--name", "crm", "--scope", "score")
    poster = _keys(path, "create", "--name", "events-feed", "--scope", "events")
    admin = _keys(path, "create", "--name", "ops", "--scope", "admin")
    with TestClient(service.create_app(config, reference_refresh_seconds=0)) as client:
        none = client.get(PAST_THE_GATE)
        assert none.status_code == 401 and none.headers["WWW-Authenticate"] == "Bearer"
        assert none.json()["error"] == "no API key"
        assert "leadscore keys create --name NAME --scope score" in none.json()["fix"]
        assert client.get(PAST_THE_GATE, headers=_bearer("lsk_nonsense")).status_code == 401
        forged = scorer[:-4] + "AAAA"
        assert client.get(PAST_THE_GATE, headers=_bearer(forged)).json()["error"] == (
            "unknown API key"
        )
        assert client.get(PAST_THE_GATE, headers=_bearer(scorer)).status_code == 404
        assert client.get(PAST_THE_GATE, headers={"X-API-Key": scorer}).status_code == 404
        assert client.get(PAST_THE_GATE, headers=_bearer(admin)).status_code == 404
        wrong = client.get(PAST_THE_GATE, headers=_bearer(poster))
        assert wrong.status_code == 403
        assert "'events-feed'" in wrong.json()["error"] and "scope 'score'" in wrong.json()["error"]
        # Events take the events scope: past the gate, the unknown lead is refused (422).
        event = {"lead_id": "987654321", "occurred_at": "2026-01-01T00:00:00Z",
                 "activity_type": "page_view"}  # fmt: skip
        posted = client.post("/events", json={"events": [event]}, headers=_bearer(poster))
        assert posted.status_code == 422 and "not found" in posted.json()["error"]
        refused = client.post("/events", json={"events": [event]}, headers=_bearer(scorer))
        assert refused.status_code == 403 and "scope 'events'" in refused.json()["error"]
        # The health probe is open, and says more to a caller with a key.
        assert set(client.get("/health").json()) == {
            "status", "mode", "model_name", "model_version", "run_id", "loaded_at"
        }  # fmt: skip
        assert "fields" in client.get("/health", headers=_bearer(scorer)).json()
        # Revoked: refused from the next call on, without a restart.
        key_id = scorer.split("_")[1]
        result = CliRunner().invoke(cli, ["keys", "revoke", key_id, "-c", str(path)])
        assert result.exit_code == 0, result.output
        revoked = client.get(PAST_THE_GATE, headers=_bearer(scorer))
        assert revoked.status_code == 401 and f"lsk_{key_id} was revoked" in revoked.json()["error"]
        assert client.get(PAST_THE_GATE, headers=_bearer(admin)).status_code == 404
    listed = json.loads(
        CliRunner().invoke(cli, ["keys", "list", "-c", str(path), "--json"]).stdout
    )["keys"]
    by_name = {k["name"]: k for k in listed}
    assert by_name["crm"]["revoked_at"] is not None and by_name["ops"]["revoked_at"] is None
    assert by_name["crm"]["last_used_at"] is not None  # it was used before it was revoked
    assert all("secret" not in k and "sha256" not in json.dumps(k) for k in listed)
    # The audit log: who called which route with what outcome; no key, lead id or payload.
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [line["status"] for line in lines[:3]] == [401, 401, 401]
    assert {line["route"] for line in lines} == {"/leads/{lead_id}/score", "/health", "/events"}
    assert {line["key_name"] for line in lines} >= {"crm", "ops", "events-feed", None}
    text = audit.read_text()
    assert "987654321" not in text and scorer not in text and scorer.split("_")[2] not in text


def test_a_key_over_its_rate_limit_is_told_when_to_retry(project) -> None:
    config, path, _ = project
    key = _keys(path, "create", "--name", "burst", "--scope", "score", "--rate", "3")
    with TestClient(service.create_app(config, reference_refresh_seconds=0)) as client:
        statuses = [client.get(PAST_THE_GATE, headers=_bearer(key)).status_code for _ in range(3)]
        assert statuses == [404, 404, 404]
        over = client.get(PAST_THE_GATE, headers=_bearer(key))
        assert over.status_code == 429
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        assert "made 3 calls in the last minute" in over.json()["error"]
        # Another key is not held back by this one's limit.
        other = _keys(path, "create", "--name", "other", "--scope", "score")
        assert client.get(PAST_THE_GATE, headers=_bearer(other)).status_code == 404


def test_keys_need_a_known_scope_and_a_revoke_needs_a_key(project) -> None:
    _, path, _ = project
    bad = CliRunner().invoke(cli, ["keys", "create", "--name", "x", "--scope", "everything",
                                   "-c", str(path)])  # fmt: skip
    assert bad.exit_code == 2 and "unknown or missing scope(s): everything" in bad.output
    missing = CliRunner().invoke(cli, ["keys", "revoke", "0123456789ab", "-c", str(path)])
    assert missing.exit_code == 2 and "no active key" in missing.output
