"""One lead at a time, compiled (`leadscore.scoring.single`, `leadscore.io.lead_reader`):
hundreds of leads read and scored alone give the nightly batch's published rows to 1e-9;
the reader reads what `load_crm` reads, or steps aside so the batch's code answers; the
service follows a newly promoted champion without a restart."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import DEFAULT_RULES, assert_same_as_batch, payload_of, without_keys

from leadscore.apps import service
from leadscore.config import load_config
from leadscore.data.rules import load_rules
from leadscore.errors import DataError
from leadscore.io.lead_reader import LeadReader
from leadscore.io.publish import read_scores
from leadscore.io.sources import load_crm
from leadscore.io.tables import write_tables
from leadscore.lifecycle.registry import Registry, load_champion
from leadscore.scoring import ondemand
from leadscore.scoring.ondemand import LeadNotFoundError, population_from_published
from leadscore.scoring.scorer import Scorer
from leadscore.scoring.single import OnDemand, lead_from_crm
from leadscore.synthetic import generate_crm


def _draw(index: pd.Index, k: int, seed: int = 7) -> list:
    rng = np.random.default_rng(seed)
    return list(rng.choice(index.to_numpy(), size=min(k, len(index)), replace=False))


@pytest.fixture(scope="module")
def one(demo_batch) -> OnDemand:
    # The lead-id columns indexed, as a CRM database has them (a read is then ~1 ms, not a
    # scan of the activities); the demo's data and every answer stay the same.
    engine = sa.create_engine(demo_batch.config.source_uri)
    with engine.begin() as conn:
        for table in ("leads", "activities", "outcomes"):
            conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS ix_{table}_lead ON {table}(lead_id)"))
    engine.dispose()
    scorer = load_champion(demo_batch.config).scorer(demo_batch.rules, demo_batch.config)
    compiled = OnDemand(scorer)
    yield compiled
    compiled.close()


def test_hundreds_of_leads_read_and_scored_alone_are_the_published_rows(one, demo_batch) -> None:
    assert one.mode == "compiled"
    population = ondemand.load_population(demo_batch.config, one.scorer.model)
    assert population is not None and population.source == "published"
    leads = _draw(demo_batch.published.index, 300)
    assert len(leads) == 300
    since = demo_batch.as_of - pd.Timedelta(days=one.scorer.lookback_days)
    for lead in leads:
        # Read by the one-lead reader itself, not the batch's read it falls back to.
        assert one.reader.read(str(lead), since, demo_batch.as_of) is not None
        answer = one.by_id(str(lead), demo_batch.as_of, population)
        assert answer["lead_id"] == lead
        assert answer["as_of"] == demo_batch.as_of.isoformat() + "Z"
        assert_same_as_batch(answer, demo_batch.scores.loc[lead], demo_batch.published.loc[lead])


def test_posted_leads_score_as_the_batch(one, demo_batch) -> None:
    population = ondemand.load_population(demo_batch.config, one.scorer.model)
    emails = demo_batch.crm.leads.set_index("lead_id")["email"]
    for lead in _draw(demo_batch.published.index, 100, seed=8):
        body = service.LeadIn.model_validate(payload_of(demo_batch, lead, emails.loc[lead]))
        activities = [
            (service._utc(a.occurred_at), a.activity_type, a.detail) for a in body.activities
        ]
        created = service._utc(body.created_at)
        answer = one.posted(body.attributes, activities, created, demo_batch.as_of, population)
        assert answer["lead_id"] is None
        assert_same_as_batch(answer, demo_batch.scores.loc[lead], None)


def test_the_rules_alone_score_one_lead_as_their_batch(demo_batch) -> None:
    config, as_of = demo_batch.config, demo_batch.as_of
    scorer = Scorer.rules_only(load_rules(config.rules_path), config)
    batch = scorer.score(demo_batch.crm, as_of).set_index("lead_id")
    published = batch.reset_index().rename(columns={"as_of": "as_of_date"})
    population = population_from_published(published.assign(model_version=None), by_rules=True)
    one = OnDemand(scorer)
    try:
        assert one.mode == "compiled"
        for lead in _draw(batch.index, 200, seed=9):
            answer = one.by_id(str(lead), as_of, population)
            row = batch.loc[lead]
            assert answer["conversion_probability"] is None
            assert answer["rule_score"] == row["rule_score"] and answer["tier"] == row["tier"]
            assert answer["is_mql"] == bool(row["is_mql"])
            assert ",".join(answer["rules_fired"]) == row["rules_fired"]
            assert "; ".join(answer["reasons_up"]) == row["reasons_up"]
            assert "; ".join(answer["reasons_down"]) == row["reasons_down"]
            assert answer["percentile"] == pytest.approx(row["percentile"], abs=1e-9)
    finally:
        one.close()


def test_reasons_in_japanese_are_the_batchs_one_lead_at_a_time(demo_batch) -> None:
    """`report.language: ja`: the compiled path says what the batch says, word for word."""
    base = demo_batch.config
    config = base.model_copy(update={"report": base.report.model_copy(update={"language": "ja"})})
    scorer = load_champion(config).scorer(demo_batch.rules, config)
    # A lead's reasons are its own: the batch of a sample of leads says what the whole would.
    crm, drawn = demo_batch.crm, set(_draw(demo_batch.published.index, 400, seed=11))
    sample = dataclasses.replace(
        crm, **{name: getattr(crm, name)[getattr(crm, name)["lead_id"].isin(drawn)]
                for name in ("leads", "activities", "outcomes")},
    )  # fmt: skip
    batch = scorer.score(sample, demo_batch.as_of).set_index("lead_id")
    said = pd.concat([batch["reasons_up"], batch["reasons_down"]]).str.split("; ").explode()
    said = said[said.fillna("").ne("")]
    assert len(said) > 100
    # Every phrase holds Japanese (a value from the data may stay as it was written).
    assert said.str.contains(r"[\u3040-\u30ff\u4e00-\u9fff]").all(), said.head()
    one = OnDemand(scorer)
    try:
        assert one.mode == "compiled"
        for lead in _draw(batch.index, 150, seed=12):
            answer = one.by_id(str(lead), demo_batch.as_of, None)
            assert answer["reasons_up"] == [
                r for r in batch.loc[lead, "reasons_up"].split("; ") if r
            ]
            assert answer["reasons_down"] == [
                r for r in batch.loc[lead, "reasons_down"].split("; ") if r
            ]
    finally:
        one.close()


# -- the reader: what load_crm reads, or nothing ------------------------------------------


@pytest.fixture(scope="module")
def small_source(tmp_path_factory):
    """A generated SQLite CRM with a project file; each test spoils its own copy."""
    folder = tmp_path_factory.mktemp("single")
    end = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    tables = generate_crm(400, seed=5, end=str(end.date())).tables()
    tables = {k: tables[k] for k in ("leads", "activities", "outcomes")}
    tables["outcomes"] = tables["outcomes"].dropna()
    write_tables(tables, f"sqlite:///{folder / 'crm.db'}")
    (folder / "mql_rules.yaml").write_text(DEFAULT_RULES.read_text(encoding="utf-8"))
    (folder / "leadscore.yaml").write_text(
        yaml.safe_dump(
            {
                "source": {"uri": "sqlite:///crm.db", "missing_values": ["Select", "N/A"]},
                "publish": {"uri": "sqlite:///scores.db"},
            }
        )
    )
    return folder, tables, end


def _copy(small_source, tmp_path: Path):
    folder, tables, end = small_source
    shutil.copy(folder / "crm.db", tmp_path / "crm.db")
    for name in ("leadscore.yaml", "mql_rules.yaml"):
        shutil.copy(folder / name, tmp_path / name)
    return load_config(tmp_path / "leadscore.yaml"), tables, end


def _sql(config, statement: str, **params) -> None:
    engine = sa.create_engine(config.source_uri)
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    engine.dispose()


def _same(read, batch) -> None:
    assert read.lead_id == batch.lead_id and read.created_at == batch.created_at
    assert read.converted_at == batch.converted_at
    for name, value in batch.fields.items():
        got = read.fields[name]
        assert (pd.isna(got) and pd.isna(value)) or got == value, name
    order, expected = np.argsort(read.times, kind="stable"), np.argsort(batch.times, kind="stable")
    assert np.array_equal(np.asarray(read.times)[order], np.asarray(batch.times)[expected])
    assert list(np.asarray(read.types)[order]) == list(np.asarray(batch.types)[expected])
    details = [None if pd.isna(d) else d for d in np.asarray(batch.details)[expected]]
    assert list(np.asarray(read.details, dtype=object)[order]) == details


def test_the_reader_reads_what_load_crm_reads(small_source, tmp_path) -> None:
    config, tables, end = _copy(small_source, tmp_path)
    # Placeholders and blanks are missing values, as the batch's read makes them.
    first, second = tables["leads"]["lead_id"].iloc[:2]
    _sql(config, "UPDATE leads SET industry = 'N/A', country = '  ' WHERE lead_id = :i", i=first)
    reader = LeadReader.of(config)
    since = end - pd.Timedelta(days=400)
    try:
        for lead in [first, second, *tables["leads"]["lead_id"].iloc[2:60]]:
            crm = load_crm(
                config, activities_since=since, activities_until=end, lead_ids=[str(lead)]
            )
            read = reader.read(str(lead), since, end)
            assert read is not None, lead
            _same(read, lead_from_crm(crm, str(lead)))
        assert reader.read(str(first), since, end).fields["industry"] is None
        # An id asked in another form ("042" for 42) is the batch's read's to match.
        assert reader.read(f"0{first}", since, end) is None
    finally:
        reader.close()


#: case: (the statement that spoils the lead's rows, the error both paths give, and
#: whether the reader steps aside); {month} is a month inside the lookback.
SPOILED = {
    "text in a numeric column": (
        "UPDATE leads SET employees = 'many' WHERE lead_id = :i", DataError, True
    ),
    "a negative number": ("UPDATE leads SET employees = -3 WHERE lead_id = :i", DataError, True),
    "a blank activity type": ("UPDATE activities SET activity_type = ' ' WHERE lead_id = :i",
                              DataError, True),
    "an impossible date": ("UPDATE activities SET occurred_at = '{month}-32 10:00:00' "
                           "WHERE lead_id = :i", DataError, True),
    "a duplicated lead": ("INSERT INTO leads SELECT * FROM leads WHERE lead_id = :i", DataError,
                          True),
    "an unknown lead": (None, LeadNotFoundError, True),
    # Not errors: times with an offset, which the batch converts to UTC; an activity in the
    # future, which both reads leave out with the window.
    "times with an offset": (
        "UPDATE activities SET occurred_at = occurred_at || '+00:00' WHERE lead_id = :i", None,
        True,
    ),
    "an activity in the future": (
        "UPDATE activities SET occurred_at = '2099-01-01 00:00:00' WHERE lead_id = :i", None,
        False,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(SPOILED))
def test_the_reader_steps_aside_and_the_batch_answers(small_source, tmp_path, case) -> None:
    config, _, end = _copy(small_source, tmp_path)
    statement, error, aside = SPOILED[case]
    champion_free = Scorer.rules_only(load_rules(config.rules_path), config)
    opened = ondemand.open_leads(load_crm(config), end, config)["lead_id"]
    lead = str(opened.iloc[0])
    if statement is None:
        lead = "987654321"
    else:
        month = (end - pd.Timedelta(days=20)).strftime("%Y-%m")
        _sql(config, statement.format(month=month), i=int(lead))
    one = OnDemand(champion_free)
    try:
        since = end - pd.Timedelta(days=champion_free.lookback_days)
        assert (one.reader.read(lead, since, end) is None) == aside
        if error is None:
            crm = ondemand.read_leads(champion_free, [lead], end)
            expected = ondemand.as_records(
                ondemand.score_leads(crm, [lead], champion_free, end, None)
            )
            assert one.by_id(lead, end, None) == expected[0]
            return
        with pytest.raises(error) as ours:
            one.by_id(lead, end, None)
        with pytest.raises(error) as batch:
            crm = ondemand.read_leads(champion_free, [lead], end)
            ondemand.score_leads(crm, [lead], champion_free, end, None)
        assert str(ours.value) == str(batch.value)
    finally:
        one.close()


# -- a promoted champion is served without a restart ---------------------------------------


def test_a_promoted_champion_is_served_without_a_restart(demo, tmp_path) -> None:
    from fastapi.testclient import TestClient

    workdir, _ = demo
    project = tmp_path / "project"
    shutil.copytree(workdir, project, ignore=shutil.ignore_patterns("*.log", "prefect*"))
    config = without_keys(load_config(project / "leadscore.yaml"))
    registry = Registry.of(config)
    entry = registry.champion()
    app = service.create_app(config, reference_refresh_seconds=0, champion_poll_seconds=0.2)
    with TestClient(app) as client:
        before = client.get("/health").json()
        assert before["model_version"] == entry.version
        source = registry.client.get_model_version(entry.name, entry.version).source
        newer = registry.client.create_model_version(entry.name, source, run_id=entry.run_id)
        registry.client.set_registered_model_alias(entry.name, "champion", newer.version)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            health = client.get("/health").json()
            if health["model_version"] == str(newer.version):
                break
            time.sleep(0.2)
        assert health["model_version"] == str(newer.version), health
        assert health["loaded_at"] > before["loaded_at"] and health["single_lead"] == "compiled"
        scores = read_scores(config.publish_uri, config.publish.table, latest=True)
        lead, day = scores["lead_id"].iloc[0], pd.Timestamp(scores["as_of_date"].iloc[0])
        answer = client.get(f"/leads/{lead}/score", params={"as_of": day.isoformat() + "Z"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == str(newer.version)
