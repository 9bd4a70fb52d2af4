"""On-demand scoring: ranking, lead-id reads, the HTTP service and `leadscore score --lead-id`.

Fast tests use tiny hand-built tables; the slow ones share one `leadscore demo` project
(generated CRM, trained champion, one published run) and compare every on-demand answer
with the nightly batch's for the same lead at the same as-of.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import CLI, run_cli

from leadscore.apps import service
from leadscore.config import TierConfig, config_from_dict, load_config
from leadscore.data.rules import load_rules
from leadscore.errors import DataError, ModelError
from leadscore.io import publish, sources, tables
from leadscore.lifecycle import registry
from leadscore.lifecycle.registry import load_champion
from leadscore.scoring import ondemand
from leadscore.scoring.inputs import parse_as_of
from leadscore.scoring.tiers import assign_tiers

# FastAPI's TestClient still runs on httpx; Starlette 1.10 says so on import.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

# -- ranking a lead in a population: the batch's rule, checked against the batch ------------

TIER_CONFIGS = [
    TierConfig(by="share", cutoffs=[0.1, 0.3, 0.6]),
    TierConfig(by="count", cutoffs=[3, 10, 25]),
    TierConfig(by="probability", cutoffs=[0.7, 0.4, 0.2]),
]


def _run(n: int, seed: int, text_ids: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probability = np.round(rng.random(n), 1)  # coarse: many ties, as isotonic calibration gives
    ids = rng.permutation(10 * n)[:n]
    return probability, (np.array([f"L{i:05d}" for i in ids], dtype=object) if text_ids else ids)


def _published(probability: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": ids,
            "as_of_date": pd.Timestamp("2026-03-01"),
            "conversion_probability": probability,
            "model_version": "3",
        }
    )


@pytest.mark.parametrize("tiers", TIER_CONFIGS, ids=lambda t: t.by)
@pytest.mark.parametrize("text_ids", [False, True], ids=["int_ids", "text_ids"])
def test_a_published_lead_gets_its_published_percentile_and_tier(tiers, text_ids) -> None:
    probability, ids = _run(60, 1, text_ids)
    batch_percentile = pd.Series(probability).rank(pct=True, method="average").to_numpy() * 100
    day = np.full(len(ids), np.datetime64("2026-03-01"))
    batch_tier = assign_tiers(probability, day, tiers, ids)
    population = ondemand.population_from_published(_published(probability, ids))
    percentile, tier = ondemand.rank_in_population(probability, list(ids), population, tiers)
    np.testing.assert_allclose(percentile, batch_percentile, atol=1e-9)
    assert list(tier) == list(batch_tier)
    assert population.describe() == {
        "source": "published",
        "leads": 60,
        "as_of_date": "2026-03-01",
        "model_version": "3",
    }


@pytest.mark.parametrize("tiers", TIER_CONFIGS, ids=lambda t: t.by)
def test_a_new_lead_ranks_as_if_added_to_the_run(tiers) -> None:
    probability, ids = _run(40, 2, False)
    population = ondemand.population_from_published(_published(probability, ids))
    for p_new in (0.0, 0.3, 0.55, 1.0):  # ties, a value between, both ends
        everyone = np.append(probability, p_new)
        # Without an id a lead ranks after its ties: as if its id were the largest.
        with_ids = np.append(ids, ids.max() + 1)
        day = np.full(len(everyone), np.datetime64("2026-03-01"))
        expected_tier = assign_tiers(everyone, day, tiers, with_ids)[-1]
        expected_pct = pd.Series(everyone).rank(pct=True, method="average").iloc[-1] * 100
        percentile, tier = ondemand.rank_in_population(np.array([p_new]), None, population, tiers)
        assert percentile[0] == pytest.approx(expected_pct, abs=1e-9)
        assert tier[0] == expected_tier


def test_the_test_cohort_is_the_fallback_and_nothing_means_no_percentile() -> None:
    shares = TIER_CONFIGS[0]
    model = SimpleNamespace(reference_probabilities_=np.array([0.4, 0.1, 0.2, 0.3]))
    cohort = ondemand.population_from_model(model)
    assert cohort.source == "test_cohort" and list(cohort.probability) == [0.1, 0.2, 0.3, 0.4]
    percentile, tier = ondemand.rank_in_population(np.array([0.35, 0.05]), None, cohort, shares)
    np.testing.assert_allclose(percentile, [80.0, 20.0])
    assert list(tier) == ["C", "D"]  # ranks 2 and 5 of 5: the top 40 % and 100 %
    assert ondemand.population_from_model(SimpleNamespace()) is None
    percentile, tier = ondemand.rank_in_population(np.array([0.35]), None, None, shares)
    assert np.isnan(percentile[0]) and tier[0] is None
    _, tier = ondemand.rank_in_population(np.array([0.35]), None, None, TIER_CONFIGS[2])
    assert tier[0] == "C"  # tiers by probability need no population


def test_moments_and_lead_ids_are_checked() -> None:
    assert parse_as_of("2026-03-01", moment=True) == pd.Timestamp("2026-03-01")
    assert parse_as_of("2026-03-01T10:00:00+09:00", moment=True) == pd.Timestamp("2026-03-01 01:00")
    with pytest.raises(Exception, match="not a date or a time"):
        parse_as_of("yesterday-ish", moment=True)
    assert ondemand.check_lead_ids(["7", "7", "8"]) == ["7", "8"]
    with pytest.raises(Exception, match="at most 100"):
        ondemand.check_lead_ids([str(i) for i in range(101)])
    with pytest.raises(Exception, match="blank"):
        ondemand.check_lead_ids([" "])


# -- reading only the requested leads ---------------------------------------------------------


def _tiny_source(uri: str, leads, activities, text_ids: bool = False) -> None:
    """The tiny tables (lead 3 converted) with integer ids, or text ids "L1", "L2", ..."""
    outcomes = pd.DataFrame(
        {"lead_id": [3], "converted_at": pd.to_datetime(["2026-02-25"]).astype("datetime64[us]")}
    )
    frames = {"leads": leads, "activities": activities, "outcomes": outcomes}
    if text_ids:
        frames = {k: v.assign(lead_id="L" + v["lead_id"].astype(str)) for k, v in frames.items()}
    tables.write_tables(frames, uri, "csv")


def _lead_reads(uri: str, monkeypatch, text_ids: bool = False) -> list[int]:
    """Check the lead-id filter on a source; returns the row counts transferred per table."""
    config = config_from_dict({"source": {"uri": uri}}, environ={})
    # Lead 99's activity names no lead: reading everything is refused ...
    with pytest.raises(DataError, match="matches no lead"):
        sources.load_crm(config)
    transferred: list[int] = []
    fetch = tables.fetch_frame

    def counting(conn, stmt):
        frame = fetch(conn, stmt)
        transferred.append(len(frame))
        return frame

    monkeypatch.setattr(tables, "fetch_frame", counting)
    one, three = ("L1", "L3") if text_ids else ("1", "3")
    # ... but another lead's bad row does not stop reading leads 1 and 3.
    crm = sources.load_crm(
        config, lead_ids=[one, three], activities_until=pd.Timestamp("2026-03-01")
    )
    assert sorted(tables.lead_id_text(crm.leads["lead_id"])) == [one, three]
    assert set(tables.lead_id_text(crm.activities["lead_id"])) == {one}
    assert len(crm.activities) == 4  # lead 1's four activities before 2026-03-01
    assert list(tables.lead_id_text(crm.outcomes["lead_id"])) == [three]
    for odd in (["999"], ["abc"], ["1 OR 1=1"], ["1); DROP TABLE leads; --"]):
        assert sources.load_crm(config, lead_ids=odd).leads.empty
    return transferred


@pytest.mark.parametrize("text_ids", [False, True], ids=["int_ids", "text_ids"])
def test_sqlite_reads_only_the_requested_leads(
    tmp_path, tiny_leads, tiny_activities, monkeypatch, text_ids
) -> None:
    uri = f"sqlite:///{tmp_path / 'crm.db'}"
    _tiny_source(uri, tiny_leads, tiny_activities, text_ids)
    transferred = _lead_reads(uri, monkeypatch, text_ids)
    # The database filtered: 2 leads, lead 1's activities before the window end (+1 day
    # padding), 1 outcome - never the whole tables.
    assert transferred[:3] == [2, 5, 1]


def test_postgres_reads_only_the_requested_leads(
    pg_uri, tiny_leads, tiny_activities, monkeypatch
) -> None:
    _tiny_source(pg_uri, tiny_leads, tiny_activities)
    assert _lead_reads(pg_uri, monkeypatch)[:3] == [2, 5, 1]


@pytest.mark.parametrize("text_ids", [False, True], ids=["int_ids", "text_ids"])
def test_a_folder_is_filtered_after_reading(
    tmp_path, tiny_leads, tiny_activities, monkeypatch, text_ids
) -> None:
    _tiny_source(str(tmp_path / "export"), tiny_leads, tiny_activities, text_ids)
    assert _lead_reads(str(tmp_path / "export"), monkeypatch, text_ids) == []


# -- the real thing: a demo project with a champion and a published run ----------------------

demo_marks = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, cli_env) -> tuple[Path, dict]:
    workdir = tmp_path_factory.mktemp("ondemand")
    result = run_cli(
        ["demo", "--leads", "4000", "--workdir", str(workdir), "--json"], cli_env, workdir
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, json.loads(result.stdout)


@pytest.fixture(scope="module")
def batch(demo):
    """The batch's own scores of every open lead at the published as-of, with its inputs."""
    workdir, summary = demo
    config = load_config(workdir / "leadscore.yaml")
    champion = load_champion(config)
    rules = load_rules(config.rules_path)
    crm = sources.load_crm(config)
    as_of = pd.Timestamp(summary["as_of"])
    scores = champion.scorer(rules, config).score(crm, as_of)
    published = publish.read_scores(config.publish_uri, config.publish.table, latest=True)
    return SimpleNamespace(
        config=config, crm=crm, as_of=as_of, scores=scores.set_index("lead_id"),
        published=published.set_index("lead_id"), rules=rules,
    )  # fmt: skip


@pytest.fixture(scope="module")
def client(demo):
    from fastapi.testclient import TestClient

    workdir, _ = demo
    app = service.create_app(load_config(workdir / "leadscore.yaml"), reference_refresh_seconds=0)
    with TestClient(app) as test_client:
        yield test_client


def _sample(batch, k: int = 25) -> list[int]:
    """Leads across the range: the top, MQLs, and a seeded random draw."""
    s = batch.scores
    top = s["conversion_probability"].nlargest(5).index
    mql = s.index[s["is_mql"]][:5]
    rest = s.sample(k, random_state=0).index
    return list(dict.fromkeys([*top, *mql, *rest]))


def _assert_same_as_batch(answer: dict, row: pd.Series, published: pd.Series | None) -> None:
    assert answer["conversion_probability"] == pytest.approx(
        row["conversion_probability"], abs=1e-9
    )
    assert answer["reasons_up"] == [r for r in row["reasons_up"].split("; ") if r]
    assert answer["reasons_down"] == [r for r in row["reasons_down"].split("; ") if r]
    assert answer["rule_score"] == row["rule_score"]
    assert answer["is_mql"] == bool(row["is_mql"])
    assert ",".join(answer["rules_fired"]) == row["rules_fired"]
    if published is not None:
        # Ranked in the published run, at its own as-of, it gets its published standing.
        assert answer["percentile"] == pytest.approx(published["percentile"], abs=1e-9)
        assert answer["tier"] == published["tier"]


@pytest.mark.slow
@pytest.mark.e2e
def test_service_scores_a_lead_exactly_as_the_batch(client, batch) -> None:
    as_of = batch.as_of.isoformat() + "Z"
    leads = _sample(batch)
    assert len(leads) >= 20 and batch.scores.loc[leads, "is_mql"].any()
    for lead in leads:
        response = client.get(f"/leads/{lead}/score", params={"as_of": as_of})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["lead_id"] == lead and answer["as_of"] == as_of
        _assert_same_as_batch(answer, batch.scores.loc[lead], batch.published.loc[lead])
        assert answer["reference"]["source"] == "published"
        assert answer["reference"]["leads"] == len(batch.published)


def _payload(batch, lead: int, email: str) -> dict:
    """A lead as a form handler would post it: its fields and recent activities."""
    row = batch.crm.leads.set_index("lead_id").loc[lead]
    acts = batch.crm.activities
    # The lookback and what came after the as-of, which must not count, as in the batch.
    acts = acts[
        (acts["lead_id"] == lead) & (acts["occurred_at"] >= batch.as_of - pd.Timedelta(days=200))
    ]
    attributes = {
        name: None if pd.isna(row[name]) else float(row[name]) if name == "employees" else row[name]
        for name in ("industry", "country", "lead_source", "employees", "job_title")
    }  # fmt: skip
    return {
        "created_at": row["created_at"].isoformat() + "Z",
        "attributes": {**attributes, "email": email},
        "activities": [
            {
                "occurred_at": a.occurred_at.isoformat() + "+00:00",
                "activity_type": a.activity_type,
                "detail": None if pd.isna(a.detail) else a.detail,
            }
            for a in acts.itertuples()
        ],
        "as_of": batch.as_of.isoformat() + "Z",
    }


@pytest.mark.slow
@pytest.mark.e2e
def test_a_posted_lead_scores_as_the_batch_and_its_email_is_not_echoed(client, batch) -> None:
    for lead in _sample(batch, 8)[:8]:
        email = batch.crm.leads.set_index("lead_id").loc[lead, "email"]
        body = _payload(batch, lead, email)
        response = client.post("/score", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["lead_id"] is None
        _assert_same_as_batch(answer, batch.scores.loc[lead], None)
        # Without an id the lead joins the published run as one more lead (after its ties).
        everyone = np.append(
            batch.published["conversion_probability"], answer["conversion_probability"]
        )
        expected = pd.Series(everyone).rank(pct=True, method="average").iloc[-1] * 100
        assert answer["percentile"] == pytest.approx(expected, abs=1e-9)
        day = np.full(len(everyone), np.datetime64("2026-01-01"))
        ids = np.append(batch.published.index, batch.published.index.max() + 1)
        assert answer["tier"] == assign_tiers(everyone, day, batch.config.tiers, ids)[-1]
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


@pytest.mark.slow
@pytest.mark.e2e
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


@pytest.mark.slow
@pytest.mark.e2e
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


@pytest.mark.slow
@pytest.mark.e2e
def test_unknown_and_converted_leads(client, batch) -> None:
    missing = client.get("/leads/987654321/score")
    assert missing.status_code == 404
    assert "'987654321' not found in table 'leads'" in missing.json()["error"]
    # Callers learn nothing of where the server keeps its data.
    source = str(batch.config.source_uri)
    assert source.split("///")[-1] not in missing.text and "crm.db" not in missing.text
    assert client.get("/leads/not-a-number/score").status_code == 404
    converted = batch.crm.outcomes.sort_values("converted_at")["lead_id"].iloc[-1]
    answer = client.get(f"/leads/{converted}/score")
    assert answer.status_code == 409 and "converted on" in answer.json()["error"]


@pytest.mark.slow
@pytest.mark.e2e
def test_health_names_the_model_and_the_reference(client, demo, batch) -> None:
    health = client.get("/health").json()
    _, summary = demo
    assert health["model_version"] == summary["model_version"]
    assert health["reference"]["as_of_date"] == str(batch.as_of.date())
    assert set(health["fields"]) == {
        "industry", "country", "lead_source", "employees", "job_title", "email"
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.e2e
def test_the_champion_is_loaded_once(demo, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    workdir, _ = demo
    loads = []
    real = registry.Registry.load_champion
    monkeypatch.setattr(
        registry.Registry, "load_champion", lambda self: loads.append(self.model_name) or real(self)
    )
    app = service.create_app(load_config(workdir / "leadscore.yaml"), reference_refresh_seconds=0)
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


@pytest.mark.slow
@pytest.mark.e2e
def test_without_published_scores_the_test_cohort_is_the_reference(demo, batch) -> None:
    from fastapi.testclient import TestClient

    workdir, _ = demo
    path = _variant(workdir, "unpublished", publish={"uri": "sqlite:///nothing-published.db"})
    app = service.create_app(load_config(path), reference_refresh_seconds=0)
    with TestClient(app) as test_client:
        lead = _sample(batch, 1)[-1]
        answer = test_client.get(f"/leads/{lead}/score").json()
    assert answer["reference"]["source"] == "test_cohort"
    assert answer["reference"]["leads"] > 100
    assert 0 < answer["percentile"] < 100 and answer["tier"] in "ABCD"


@pytest.mark.slow
@pytest.mark.e2e
def test_without_a_champion_the_service_does_not_start(demo, cli_env) -> None:
    from fastapi.testclient import TestClient

    workdir, _ = demo
    path = _variant(workdir, "untrained", mlflow={"tracking_uri": "sqlite:///empty-mlflow.db"})
    with (
        pytest.raises(ModelError, match="leadscore train"),
        TestClient(service.create_app(load_config(path))),
    ):
        pass
    result = run_cli(["serve", "-c", str(path), "--port", "1"], cli_env, workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "fix:" in result.stderr and "leadscore train" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.e2e
def test_postgres_source_scores_as_the_batch(demo, batch, pg_uri) -> None:
    from fastapi.testclient import TestClient

    workdir, _ = demo
    leads = _sample(batch, 5)[:6]
    crm = batch.crm
    tables.write_tables(
        {
            "leads": crm.leads,
            "activities": crm.activities[crm.activities["lead_id"].isin(leads)],
            "outcomes": crm.outcomes,
        },
        pg_uri,
    )
    path = _variant(workdir, "postgres", source={"uri": pg_uri, "ground_truth": None})
    app = service.create_app(load_config(path), reference_refresh_seconds=0)
    with TestClient(app) as test_client:
        for lead in leads:
            response = test_client.get(
                f"/leads/{lead}/score", params={"as_of": batch.as_of.isoformat() + "Z"}
            )
            assert response.status_code == 200, response.text
            row, published = batch.scores.loc[lead], batch.published.loc[lead]
            _assert_same_as_batch(response.json(), row, published)


@pytest.mark.slow
@pytest.mark.e2e
def test_cli_scores_leads_on_demand_without_publishing(demo, batch, cli_env) -> None:
    workdir, _ = demo
    before = publish.read_scores(batch.config.publish_uri, batch.config.publish.table)
    lead, other = _sample(batch, 2)[:2]
    args = ["score", "-c", "leadscore.yaml", "--lead-id", str(lead), "--lead-id", str(other)]
    as_of = ["--as-of", str(batch.as_of.date())]
    result = run_cli([*args, *as_of, "--json"], cli_env, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert [a["lead_id"] for a in summary["leads"]] == [lead, other]
    for answer in summary["leads"]:
        lead_id = answer["lead_id"]
        _assert_same_as_batch(answer, batch.scores.loc[lead_id], batch.published.loc[lead_id])
    text = run_cli([*args, *as_of], cli_env, workdir)
    assert text.returncode == 0, text.stderr[-3000:]
    p = batch.scores.loc[lead, "conversion_probability"]
    assert f"lead {lead}: probability {p:.3f}, percentile" in text.stdout
    reasons = batch.scores.loc[lead, "reasons_up"]
    assert f"  up:   {reasons}" in text.stdout
    assert "nothing published" in text.stderr
    after = publish.read_scores(batch.config.publish_uri, batch.config.publish.table)
    pd.testing.assert_frame_equal(after, before)
    missing = run_cli(["score", "-c", "leadscore.yaml", "--lead-id", "987654321"], cli_env, workdir)
    assert missing.returncode == 2
    assert "not found" in missing.stderr and "fix:" in missing.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.e2e
def test_leadscore_serve_answers_over_http(demo, batch, cli_env, tmp_path) -> None:
    workdir, summary = demo
    port = _free_port()
    log_out, log_err = (tmp_path / "serve.out").open("w"), (tmp_path / "serve.err").open("w")
    command = [*CLI, "serve", "-c", "leadscore.yaml", "--port", str(port)]
    server = subprocess.Popen(command, cwd=workdir, env=cli_env, stdout=log_out, stderr=log_err)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (tmp_path / "serve.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "the service did not come up in 300 s"
            try:
                health = httpx.get(f"{base}/health", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert health.json()["model_version"] == summary["model_version"]
        lead = _sample(batch, 1)[0]
        as_of = batch.as_of.isoformat() + "Z"
        answer = httpx.get(f"{base}/leads/{lead}/score", params={"as_of": as_of}, timeout=60)
        assert answer.status_code == 200, answer.text
        _assert_same_as_batch(answer.json(), batch.scores.loc[lead], batch.published.loc[lead])
        email = "jane.doe.secret@acme-corp.example"
        posted = httpx.post(f"{base}/score", json=_payload(batch, lead, email), timeout=60)
        assert posted.status_code == 200, posted.text
        _assert_same_as_batch(posted.json(), batch.scores.loc[lead], None)
        assert httpx.get(f"{base}/leads/987654321/score", timeout=60).status_code == 404
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
        log_out.close()
        log_err.close()
    logs = (tmp_path / "serve.out").read_text() + (tmp_path / "serve.err").read_text()
    assert f"GET /leads/{lead}/score" in logs  # the access log is on ...
    assert "jane.doe" not in logs and "acme-corp" not in logs  # ... but never shows bodies
    assert "Traceback" not in logs
