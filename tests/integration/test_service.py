"""The on-demand service in-process (FastAPI's test client) on a `leadscore demo` project:
every answer is the nightly demo_batch's own for the same lead at the same as-of, bad requests
get what is wrong, and the champion is loaded once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import assert_same_as_batch, payload_of, run_cli, sample_leads, without_keys

from leadscore.apps import service
from leadscore.config import load_config
from leadscore.errors import ModelError
from leadscore.io import tables
from leadscore.lifecycle import registry
from leadscore.scoring.tiers import assign_tiers


@pytest.fixture(scope="module")
def client(demo):
    from fastapi.testclient import TestClient

    workdir, _ = demo
    app = service.create_app(
        without_keys(load_config(workdir / "leadscore.yaml")), reference_refresh_seconds=0
    )
    with TestClient(app) as test_client:
        yield test_client


def test_service_scores_a_lead_exactly_as_the_batch(client, demo_batch) -> None:
    as_of = demo_batch.as_of.isoformat() + "Z"
    leads = sample_leads(demo_batch)
    assert len(leads) >= 20 and demo_batch.scores.loc[leads, "is_mql"].any()
    for lead in leads:
        response = client.get(f"/leads/{lead}/score", params={"as_of": as_of})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["lead_id"] == lead and answer["as_of"] == as_of
        assert_same_as_batch(answer, demo_batch.scores.loc[lead], demo_batch.published.loc[lead])
        assert answer["reference"]["source"] == "published"
        assert answer["reference"]["leads"] == len(demo_batch.published)
        # Scored as of the published run's moment: nothing differs from the published score.
        assert answer["since_published"] == {
            "as_of": str(demo_batch.as_of.date()), "changes": ["no change"]
        }  # fmt: skip


def test_why_a_published_score_changed(demo, tmp_path) -> None:
    """/leads/{id}/changes compares a lead's two newest published scores in words."""
    from fastapi.testclient import TestClient

    from leadscore.io.publish import publish_scores

    workdir, _ = demo
    config = load_config(workdir / "leadscore.yaml")
    uri = f"sqlite:///{tmp_path / 'scores.db'}"
    config = config.model_copy(update={"publish": config.publish.model_copy(update={"uri": uri})})

    def run(day: str, tier: str, p: float, mql: bool, up: str, down: str) -> pd.DataFrame:
        return pd.DataFrame({
            "lead_id": [4711, 4712], "as_of_date": pd.Timestamp(day),
            "conversion_probability": [p, 0.01], "percentile": [90.0, 10.0],
            "tier": [tier, "D"], "rule_score": [55.0 if mql else 20.0, 0.0],
            "is_mql": [mql, False], "rules_fired": ["pricing_page", ""],
            "reasons_up": [up, ""], "reasons_down": [down, ""], "model_name": "m",
            "model_version": "1", "mlflow_run_id": "r",
            "scored_at": pd.Timestamp(day) + pd.Timedelta(hours=2),
        })  # fmt: skip

    publish_scores(run("2026-03-01", "C", 0.12, False, "2 pricing-page views in the last 30 days",
                       "free e-mail domain"), uri)  # fmt: skip
    publish_scores(run("2026-03-02", "A", 0.41, True, "5 pricing-page views in the last 30 days; "
                       "job title says director", ""), uri)  # fmt: skip
    app = service.create_app(without_keys(config), reference_refresh_seconds=0)
    with TestClient(app) as test_client:
        answer = test_client.get("/leads/4711/changes")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["latest"]["as_of"] == "2026-03-02" and body["previous"]["tier"] == "C"
        assert body["changes"] == [
            "tier C → A",
            "probability 12% → 41%",
            "became an MQL by the rules (rule score 20 → 55)",
            "5 pricing-page views in the last 30 days "
            "(was: 2 pricing-page views in the last 30 days)",
            "now raises it: job title says director",
            "no longer lowers it: free e-mail domain",
        ]
        unchanged = test_client.get("/leads/4712/changes").json()
        assert unchanged["changes"] == ["no change"]
        missing = test_client.get("/leads/99/changes")
        assert missing.status_code == 404 and "no published score" in missing.json()["error"]
        assert test_client.get("/leads/not-a-number/changes").status_code == 404


def test_a_posted_lead_scores_as_the_batch_and_its_email_is_not_echoed(client, demo_batch) -> None:
    for lead in sample_leads(demo_batch, 8)[:8]:
        email = demo_batch.crm.leads.set_index("lead_id").loc[lead, "email"]
        body = payload_of(demo_batch, lead, email)
        response = client.post("/score", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["lead_id"] is None
        assert_same_as_batch(answer, demo_batch.scores.loc[lead], None)
        # Without an id the lead joins the published run as one more lead (after its ties).
        everyone = np.append(
            demo_batch.published["conversion_probability"], answer["conversion_probability"]
        )
        expected = pd.Series(everyone).rank(pct=True, method="average").iloc[-1] * 100
        assert answer["percentile"] == pytest.approx(expected, abs=1e-9)
        day = np.full(len(everyone), np.datetime64("2026-01-01"))
        ids = np.append(demo_batch.published.index, demo_batch.published.index.max() + 1)
        assert answer["tier"] == assign_tiers(everyone, day, demo_batch.config.tiers, ids)[-1]
        assert "@" not in response.text and email.split("@")[0] not in response.text


MALFORMED = {
    "empty body": (None, 422, "request body is missing"),
    "not an object": ([1, 2], 422, "must be a JSON object"),
    "unknown field": ({"created_at": "2026-03-01T00:00:00Z", "colour": "red"}, 422,
                      "unknown field 'colour'; allowed here: created_at, attributes"),
    "unknown attribute": ({"created_at": "2026-03-01T00:00:00Z", "attributes": {"emial": "x"}},
                          422, "unknown attribute(s) 'emial'"),
    "number as text": ({"created_at": "2026-03-01T00:00:00Z", "attributes": {"employees": "many"}},
                       422, "'employees' must be a number"),
    "text as number": ({"created_at": "2026-03-01T00:00:00Z", "attributes": {"industry": 7}},
                       422, "'industry' must be text"),
    "list as value": ({"created_at": "2026-03-01T00:00:00Z", "attributes": {"industry": ["a"]}},
                      422, "attributes.industry: must be text, a number or null"),
    "naive timestamp": ({"created_at": "2026-03-01T10:00:00"}, 422,
                        "created_at: Input should have timezone info"),
    "epoch timestamp": ({"created_at": 1767225600}, 422, "epoch numbers are refused"),
    "bad timestamp": ({"created_at": "2026-02-30T10:00:00Z"}, 422, "created_at:"),
    "future timestamp": ({"created_at": "2099-01-01T00:00:00Z"}, 422, "in the future"),
    "missing created_at": ({"attributes": {}}, 422, "created_at is missing"),
    "created after as_of": ({"created_at": "2026-03-02T00:00:00Z",
                             "as_of": "2026-03-01T00:00:00Z"}, 422,
                            "the posted lead was created at 2026-03-02 00:00 UTC, not before"),
    "negative employees": ({"created_at": "2026-03-01T00:00:00Z",
                            "attributes": {"employees": -40}}, 422,
                           "negative value of 'employees'"),
    "too many activities": ({"created_at": "2026-03-01T00:00:00Z", "activities": [
        {"occurred_at": "2026-03-01T00:00:00Z", "activity_type": "page_view"}] * 1001}, 422,
        "at most 1,000 per request"),
    "blank activity type": ({"created_at": "2026-03-01T00:00:00Z", "activities": [
        {"occurred_at": "2026-03-01T00:00:00Z", "activity_type": "  "}]}, 422,
        "activities.0.activity_type: must not be blank"),
    "unknown activity field": ({"created_at": "2026-03-01T00:00:00Z", "activities": [
        {"occurred_at": "2026-03-01T00:00:00Z", "activity_type": "x", "when": 1}]}, 422,
        "allowed here: occurred_at, activity_type, detail"),
    "long text": ({"created_at": "2026-03-01T00:00:00Z", "attributes": {"job_title": "x" * 501}},
                  422, "longer than 500 characters"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_payloads_are_refused_with_what_is_wrong(client, case) -> None:
    body, status, message = MALFORMED[case]
    if body is None:
        response = client.post("/score", content=b"", headers={"content-type": "application/json"})
    else:
        response = client.post("/score", json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert message in answer["error"], answer
    assert answer["fix"]


def test_bad_json_an_oversized_body_and_bad_queries_are_refused(client) -> None:
    bad = client.post("/score", content=b"{oops", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["error"]
    latin = '{"created_at": "2026-03-01T00:00:00Z", "attributes": {"industry": "Café"}}'
    encoded = client.post(
        "/score", content=latin.encode("latin-1"), headers={"content-type": "application/json"}
    )
    assert encoded.status_code == 422, encoded.text
    assert "not UTF-8" in encoded.json()["error"] and encoded.json()["fix"]
    huge = client.post(
        "/score", content=b" " * (service.MAX_BODY_BYTES + 1), headers={"content-type": "x"}
    )
    assert huge.status_code == 413 and "larger than" in huge.json()["error"]
    query = client.get("/leads/1/score", params={"as_of": "soon"})
    assert query.status_code == 422 and "as_of (query)" in query.json()["error"]
    long_id = client.get("/leads/" + "9" * 201 + "/score")
    assert long_id.status_code == 422 and "lead_id (path)" in long_id.json()["error"]


def test_unknown_and_converted_leads(client, demo_batch) -> None:
    missing = client.get("/leads/987654321/score")
    assert missing.status_code == 404
    assert "'987654321' not found in table 'leads'" in missing.json()["error"]
    # Callers learn nothing of where the server keeps its data.
    source = str(demo_batch.config.source_uri)
    assert source.split("///")[-1] not in missing.text and "crm.db" not in missing.text
    assert client.get("/leads/not-a-number/score").status_code == 404
    converted = demo_batch.crm.outcomes.sort_values("converted_at")["lead_id"].iloc[-1]
    answer = client.get(f"/leads/{converted}/score")
    assert answer.status_code == 409 and "converted on" in answer.json()["error"]


def test_health_names_the_model_and_the_reference(client, demo, demo_batch) -> None:
    health = client.get("/health").json()
    _, summary = demo
    assert health["model_version"] == summary["model_version"]
    assert health["reference"]["as_of_date"] == str(demo_batch.as_of.date())
    assert set(health["fields"]) == {
        "industry", "country", "lead_source", "employees", "job_title", "email"
    }  # fmt: skip


def test_the_champion_is_loaded_once(demo, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    workdir, _ = demo
    loads = []
    real = registry.Registry.load_champion
    monkeypatch.setattr(
        registry.Registry, "load_champion", lambda self: loads.append(self.model_name) or real(self)
    )
    app = service.create_app(
        without_keys(load_config(workdir / "leadscore.yaml")), reference_refresh_seconds=0
    )
    with TestClient(app) as test_client:
        for _ in range(3):
            assert test_client.get("/leads/1/score").status_code in (200, 409)
            assert test_client.get("/health").status_code == 200
    assert loads == ["leadscore-conversion"]


def _variant(workdir: Path, name: str, **sections) -> Path:
    data = yaml.safe_load((workdir / "leadscore.yaml").read_text())
    for section, values in sections.items():
        data[section] = {**(data.get(section) or {}), **values}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_without_published_scores_the_test_cohort_is_the_reference(demo, demo_batch) -> None:
    from fastapi.testclient import TestClient

    workdir, _ = demo
    path = _variant(workdir, "unpublished", publish={"uri": "sqlite:///nothing-published.db"})
    app = service.create_app(without_keys(load_config(path)), reference_refresh_seconds=0)
    with TestClient(app) as test_client:
        lead = sample_leads(demo_batch, 1)[-1]
        answer = test_client.get(f"/leads/{lead}/score").json()
    assert answer["reference"]["source"] == "test_cohort"
    assert answer["reference"]["leads"] > 100
    assert 0 < answer["percentile"] < 100 and answer["tier"] in "ABCD"


def test_a_champion_gone_missing_stops_the_service_from_starting(demo, cli_env) -> None:
    """A model's scores were published but the registry has no champion (a wrong tracking
    URI here): serving the rules alone would contradict them, so the service does not start."""
    from fastapi.testclient import TestClient

    workdir, _ = demo
    path = _variant(workdir, "untrained", mlflow={"tracking_uri": "sqlite:///empty-mlflow.db"})
    with (
        pytest.raises(ModelError, match="rule scores would replace them"),
        TestClient(service.create_app(load_config(path))),
    ):
        pass
    result = run_cli(["serve", "-c", str(path), "--port", "1"], cli_env, workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "fix:" in result.stderr and "--rules-only" in result.stderr
    assert "Traceback" not in result.stderr


def test_postgres_source_scores_as_the_batch(demo, demo_batch, pg_uri) -> None:
    from fastapi.testclient import TestClient

    workdir, _ = demo
    leads = sample_leads(demo_batch, 5)[:6]
    crm = demo_batch.crm
    tables.write_tables(
        {
            "leads": crm.leads,
            "activities": crm.activities[crm.activities["lead_id"].isin(leads)],
            "outcomes": crm.outcomes,
        },
        pg_uri,
    )
    path = _variant(workdir, "postgres", source={"uri": pg_uri, "ground_truth": None})
    app = service.create_app(without_keys(load_config(path)), reference_refresh_seconds=0)
    with TestClient(app) as test_client:
        for lead in leads:
            response = test_client.get(
                f"/leads/{lead}/score", params={"as_of": demo_batch.as_of.isoformat() + "Z"}
            )
            assert response.status_code == 200, response.text
            row, published = demo_batch.scores.loc[lead], demo_batch.published.loc[lead]
            assert_same_as_batch(response.json(), row, published)
