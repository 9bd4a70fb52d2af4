"""On-demand scoring: ranking, lead-id reads, the HTTP service and `leadscore score --lead-id`.

Fast tests use tiny hand-built tables; the slow ones share one `leadscore demo` project
(generated CRM, trained champion, one published run) and compare every on-demand answer
with the nightly batch's for the same lead at the same as-of.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from leadscore.config import TierConfig, config_from_dict
from leadscore.errors import DataError
from leadscore.io import sources, tables
from leadscore.scoring import ondemand
from leadscore.scoring.inputs import parse_as_of
from leadscore.scoring.tiers import assign_tiers

# FastAPI's TestClient still runs on httpx; Starlette 1.10 says so on import.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


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
