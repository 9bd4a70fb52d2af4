from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.config import config_from_dict
from leadscore.errors import ConfigError, DataError
from leadscore.io.sources import load_crm
from leadscore.io.tables import write_tables
from leadscore.io.uris import redact_uri
from leadscore.synthetic import generate_crm


@pytest.fixture(scope="module")
def crm():
    return generate_crm(800, seed=2, end="2026-03-31")


def _config(uri: str, **source):
    return config_from_dict({"source": {"uri": uri, **source}}, environ={})


def test_sqlite_round_trip_and_window_pushdown(tmp_path: Path, crm) -> None:
    uri = f"sqlite:///{tmp_path / 'crm.db'}"
    write_tables(crm.tables(), uri)
    full = load_crm(_config(uri))
    pd.testing.assert_frame_equal(full.leads, crm.leads[full.leads.columns], check_dtype=False)
    expected = crm.activities[["lead_id", "occurred_at", "activity_type", "detail"]]
    pd.testing.assert_frame_equal(full.activities, expected, check_dtype=False)
    since, until = pd.Timestamp("2026-01-15 12:00"), pd.Timestamp("2026-03-01")
    window = load_crm(_config(uri), activities_since=since, activities_until=until)
    inside = expected[(expected["occurred_at"] >= since) & (expected["occurred_at"] < until)]
    pd.testing.assert_frame_equal(
        window.activities, inside.reset_index(drop=True), check_dtype=False
    )


def test_parquet_and_csv_folders(tmp_path: Path, crm) -> None:
    for fmt in ("parquet", "csv"):
        folder = tmp_path / fmt
        write_tables(crm.tables(), str(folder), fmt)
        data = load_crm(_config(str(folder)))
        assert len(data.leads) == len(crm.leads)
        assert len(data.activities) == len(crm.activities)
        assert data.outcomes["converted_at"].notna().all()


def test_outcome_column_on_leads(tmp_path: Path, crm) -> None:
    leads = crm.leads.merge(crm.outcomes, on="lead_id")
    write_tables({"leads": leads}, str(tmp_path), "csv")
    data = load_crm(_config(str(tmp_path), tables={"activities": None, "outcomes": None}))
    assert len(data.outcomes) == crm.outcomes["converted_at"].notna().sum()
    assert data.activities.empty


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: pd.concat([f, f.head(2)]), "duplicate lead id"),
        (
            lambda f: f.assign(employees=f["employees"].astype(object).where(f.index > 3, "many")),
            "non-numeric",
        ),
        (
            lambda f: f.assign(
                created_at=f["created_at"].astype(str).where(f.index > 1, "yesterday")
            ),
            "not timestamps",
        ),
        (
            lambda f: f.assign(lead_id=f["lead_id"].astype(object).where(f.index > 0, None)),
            "empty lead id",
        ),
        (lambda f: f.drop(columns=["industry"]), "missing column.*'industry'"),
        (lambda f: f.head(0), "is empty"),
    ],
)
def test_bad_leads_table_is_named(tmp_path: Path, crm, mutate, message) -> None:
    write_tables(
        {"leads": mutate(crm.leads.copy()), "outcomes": crm.outcomes}, str(tmp_path), "csv"
    )
    with pytest.raises(DataError, match=message) as info:
        load_crm(_config(str(tmp_path), tables={"activities": None, "outcomes": "outcomes"}))
    assert "leads" in str(info.value)


def test_missing_table_and_injection(tmp_path: Path, crm) -> None:
    uri = f"sqlite:///{tmp_path / 'crm.db'}"
    write_tables({"leads": crm.leads}, uri)
    with pytest.raises(DataError, match="table 'outcomes' not found"):
        load_crm(_config(uri, tables={"activities": None, "outcomes": "outcomes"}))
    with pytest.raises(DataError, match="not a plain identifier"):
        load_crm(
            _config(
                uri,
                tables={
                    "leads": "leads; DROP TABLE leads",
                    "activities": None,
                    "outcomes": "outcomes",
                },
            )
        )


def test_redact_uri_hides_passwords() -> None:
    assert "s3cret" not in redact_uri("postgresql://user:s3cret@db:5432/crm")
    assert redact_uri("/data/folder") == "/data/folder"


def test_pushdown_transfers_only_the_padded_window(tmp_path: Path, crm) -> None:
    from leadscore.io.tables import read_table

    uri = f"sqlite:///{tmp_path / 'crm.db'}"
    write_tables(crm.tables(), uri)
    since, until = pd.Timestamp("2026-02-01"), pd.Timestamp("2026-03-01")
    rows = read_table(uri, "activities", ["lead_id", "occurred_at"], ("occurred_at", since, until))
    stamps = pd.to_datetime(rows["occurred_at"])
    times = crm.activities["occurred_at"]
    assert len(rows) < len(crm.activities)
    assert stamps.min() >= since - pd.Timedelta(days=1) and stamps.max() < until + pd.Timedelta(
        days=1
    )
    assert len(rows) >= int(((times >= since) & (times < until)).sum())


def test_epoch_numbers_and_future_timestamps_are_refused(tmp_path: Path, crm) -> None:
    leads = crm.leads.assign(created_at=1_700_000_000 + crm.leads.index)
    write_tables({"leads": leads, "outcomes": crm.outcomes}, str(tmp_path / "a"), "csv")
    with pytest.raises(DataError, match="holds numbers"):
        load_crm(_config(str(tmp_path / "a"), tables={"activities": None, "outcomes": "outcomes"}))
    future = crm.leads.copy()
    future.loc[3, "created_at"] = pd.Timestamp("2100-01-01")
    write_tables({"leads": future, "outcomes": crm.outcomes}, str(tmp_path / "b"), "csv")
    with pytest.raises(DataError, match="future"):
        load_crm(_config(str(tmp_path / "b"), tables={"activities": None, "outcomes": "outcomes"}))


def test_ids_of_other_types_are_aligned_or_refused(tmp_path: Path, crm) -> None:
    acts = crm.activities.assign(lead_id=crm.activities["lead_id"].astype(str))
    write_tables(
        {"leads": crm.leads, "activities": acts, "outcomes": crm.outcomes}, str(tmp_path / "a")
    )
    data = load_crm(_config(str(tmp_path / "a")))
    assert data.activities["lead_id"].dtype == data.leads["lead_id"].dtype
    assert data.activities["lead_id"].isin(data.leads["lead_id"]).all()
    acts = crm.activities.assign(lead_id="x" + crm.activities["lead_id"].astype(str))
    write_tables(
        {"leads": crm.leads, "activities": acts, "outcomes": crm.outcomes}, str(tmp_path / "b")
    )
    with pytest.raises(DataError, match="none of its"):
        load_crm(_config(str(tmp_path / "b")))


def test_parquet_window_is_skipped_while_reading_and_types_stay_coded(tmp_path: Path, crm) -> None:
    """A Parquet activities file: rows outside the window are not read (row groups pruned,
    then filtered), type and detail arrive as categoricals, and the features built from it
    equal those built from the same rows read from SQLite as text."""
    from leadscore.data.features import index_activities
    from leadscore.io.tables import read_table

    folder = tmp_path / "pq"
    folder.mkdir()
    crm.activities.to_parquet(folder / "activities.parquet", row_group_size=2_000)
    for name in ("leads", "outcomes"):
        getattr(crm, name).to_parquet(folder / f"{name}.parquet")
    since, until = pd.Timestamp("2026-02-01"), pd.Timestamp("2026-03-01")
    raw = read_table(
        str(folder),
        "activities",
        ["lead_id", "occurred_at", "activity_type"],
        ("occurred_at", since, until),
        dictionary=["activity_type"],
    )
    times = crm.activities["occurred_at"]
    assert len(raw) < 0.5 * len(crm.activities)
    assert raw["occurred_at"].min() >= since - pd.Timedelta(days=1)
    assert len(raw) >= int(((times >= since) & (times < until)).sum())
    assert isinstance(raw["activity_type"].dtype, pd.CategoricalDtype)

    uri = f"sqlite:///{tmp_path / 'crm.db'}"
    write_tables(crm.tables(), uri)
    from_parquet = load_crm(_config(str(folder)), activities_since=since, activities_until=until)
    from_sqlite = load_crm(_config(uri), activities_since=since, activities_until=until)
    assert isinstance(from_parquet.activities["activity_type"].dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(
        from_parquet.activities.astype({"activity_type": "str", "detail": "str"}),
        from_sqlite.activities,
        check_dtype=False,
    )
    categories = {"pricing": "/pricing", "blog": "/blog"}
    a = index_activities(from_parquet.activities, categories, "page_view")
    b = index_activities(from_sqlite.activities, categories, "page_view")
    assert a.type_names == b.type_names
    for field in ("times", "lead_id", "type_code", "category_code"):
        assert (getattr(a, field) == getattr(b, field)).all(), field


def test_blank_activity_types_in_parquet_are_refused_as_empty(tmp_path: Path, crm) -> None:
    """Blank types arrive as a category of a dictionary column; they are still empty types."""
    folder = tmp_path / "pq"
    folder.mkdir()
    acts = crm.activities.copy()
    acts.loc[[3, 10], "activity_type"] = "  "
    acts.to_parquet(folder / "activities.parquet")
    for name in ("leads", "outcomes"):
        getattr(crm, name).to_parquet(folder / f"{name}.parquet")
    with pytest.raises(DataError, match=r"2 row\(s\): empty activity type \(rows 4, 11\)"):
        load_crm(_config(str(folder)))


@pytest.mark.parametrize("kind", ["sqlite", "parquet", "text-ids"])
def test_a_training_sample_reads_only_its_leads_with_all_their_rows(
    tmp_path: Path, crm, kind
) -> None:
    """`sample`: n leads by a hash of their id; every activity and outcome of those leads
    and none of the others; the same leads whatever the storage or the row order."""
    import leadscore.io.sources as sources
    import leadscore.io.tables as reader

    tables = {k: crm.tables()[k] for k in ("leads", "activities", "outcomes")}
    if kind == "text-ids":
        tables = {k: t.assign(lead_id="L-" + t["lead_id"].astype(str)) for k, t in tables.items()}
    if kind == "sqlite":
        uri = f"sqlite:///{tmp_path / 'crm.db'}"
        write_tables(tables, uri)
    else:
        uri = str(tmp_path / "pq")
        tables["leads"] = tables["leads"].sample(frac=1.0, random_state=3)  # another order
        write_tables(tables, uri, "parquet")
    whole = load_crm(_config(uri))
    part = load_crm(_config(uri), sample=300)
    assert len(part.leads) == 300 and part.sampled_from == len(whole.leads)
    chosen = set(part.leads["lead_id"])
    acts = whole.activities[whole.activities["lead_id"].isin(chosen)]
    assert len(part.activities) == len(acts) > 0
    assert set(part.activities["lead_id"]) == set(acts["lead_id"])
    outcomes = whole.outcomes[whole.outcomes["lead_id"].isin(chosen)]
    assert len(part.outcomes) == len(outcomes) > 0
    # The same leads as a sample of the ids alone: storage and row order do not matter.
    ids = whole.leads["lead_id"]
    assert chosen == set(ids[sources.sample_rows(ids, 300)])
    assert load_crm(_config(uri), sample=10_000).sampled_from is None  # fewer leads: all
    if kind != "sqlite":  # Parquet filters while reading: other leads' rows never load
        wanted = np.array(sorted(chosen)[:5])  # the leads' own id type
        raw = reader.read_table(uri, "activities", sample=("lead_id", wanted))
        assert set(raw["lead_id"]) == set(wanted)


def test_a_sample_keeps_activities_whose_ids_are_written_differently(tmp_path: Path, crm) -> None:
    """Integer lead ids, activity ids as text (" 42", "42.0"): a whole read matches them,
    so the sample keeps them too (no exact pushdown is possible on text)."""
    tables = {k: crm.tables()[k] for k in ("leads", "activities", "outcomes")}
    acts = tables["activities"]
    text = acts["lead_id"].astype(str)
    text = text.where(acts.index % 2 == 0, " " + text).where(acts.index % 3 != 0, text + ".0")
    tables["activities"] = acts.assign(lead_id=text)
    uri = str(tmp_path / "pq")
    write_tables(tables, uri, "parquet")
    whole = load_crm(_config(uri))
    part = load_crm(_config(uri), sample=300)
    chosen = set(part.leads["lead_id"])
    assert len(part.activities) == whole.activities["lead_id"].isin(chosen).sum() > 0


def test_a_long_id_list_is_read_from_a_database_in_batches(
    tmp_path: Path, crm, monkeypatch
) -> None:
    """More ids than one statement may bind: read in batches, each row once."""
    import leadscore.io.tables as tables

    monkeypatch.setattr(tables, "LEAD_BATCH", 97)
    uri = f"sqlite:///{tmp_path / 'crm.db'}"
    write_tables({"activities": crm.activities}, uri)
    ids = [str(i) for i in crm.activities["lead_id"].drop_duplicates().head(250)]
    got = tables.read_table(uri, "activities", lead_filter=("lead_id", ids))
    wanted = crm.activities[crm.activities["lead_id"].astype(str).isin(ids)]
    assert len(got) == len(wanted) > 0
    assert set(got["lead_id"].astype(str)) == set(ids)


def test_ids_of_a_csv_export_are_text_leading_zeros_and_all(tmp_path: Path, crm) -> None:
    """ "00000003" is not the lead 3, and "0012" and "12" are two leads."""
    ids = {i: f"{i:08d}" for i in crm.leads["lead_id"]}
    leads = crm.leads.assign(lead_id=crm.leads["lead_id"].map(ids))
    leads.loc[1, "lead_id"] = "12"
    leads.loc[2, "lead_id"] = "0012"
    acts = crm.activities.assign(lead_id=crm.activities["lead_id"].map(ids))
    acts = acts[~acts["lead_id"].isin([ids[leads.index[1] + 1], ids[leads.index[2] + 1]])]
    outcomes = crm.outcomes.assign(lead_id=crm.outcomes["lead_id"].map(ids))
    outcomes = outcomes[outcomes["lead_id"].isin(leads["lead_id"])]
    write_tables({"leads": leads, "activities": acts, "outcomes": outcomes}, str(tmp_path), "csv")
    data = load_crm(_config(str(tmp_path)))
    assert data.leads["lead_id"].tolist() == leads["lead_id"].tolist()
    assert {"00000001", "12", "0012"} <= set(data.leads["lead_id"])
    assert data.activities["lead_id"].isin(data.leads["lead_id"]).all()
    assert data.outcomes["lead_id"].str.len().eq(8).all()


def test_a_shift_jis_export_reads_as_its_utf8_twin(tmp_path: Path, crm) -> None:
    """Japanese titles decide seniority: read garbled, the director rule fires for no one."""
    leads = crm.leads[["lead_id", "created_at", "industry", "country", "lead_source",
                       "employees", "job_title", "email"]]  # fmt: skip
    assert leads["job_title"].str.contains("部長").any()
    tables = {"outcomes": crm.outcomes}
    (tmp_path / "utf8").mkdir()
    (tmp_path / "sjis").mkdir()
    write_tables(tables, str(tmp_path / "utf8"), "csv")
    write_tables(tables, str(tmp_path / "sjis"), "csv")
    leads.to_csv(tmp_path / "utf8" / "leads.csv", index=False)
    leads.to_csv(tmp_path / "sjis" / "leads.csv", index=False, encoding="shift_jis")
    config = {"tables": {"activities": None, "outcomes": "outcomes"}}
    utf8 = load_crm(_config(str(tmp_path / "utf8"), **config))
    sjis = load_crm(_config(str(tmp_path / "sjis"), **config))
    pd.testing.assert_frame_equal(sjis.leads, utf8.leads)
    assert any("read as cp932" in line for line in sjis.checks.summary())
    # Told the encoding, leadscore reads exactly that and says where it cannot.
    (tmp_path / "sjis" / "leads.csv").write_bytes("名前\n\udcff".encode("utf-8", "surrogateescape"))
    with pytest.raises(DataError, match=r"leads.csv cannot be read as shift_jis"):
        load_crm(_config(str(tmp_path / "sjis"), encoding="shift_jis", **config))


@pytest.mark.parametrize("kind", ["sqlite", "parquet"])
def test_rows_named_in_a_windowed_read_are_the_tables_own(tmp_path: Path, crm, kind) -> None:
    """Scoring reads only the lookback window: a bad row is named by its row in the table
    (and its column by its name), not by its place among the rows read."""
    acts = crm.activities.sort_values("occurred_at").reset_index(drop=True)
    acts["activity_type"] = acts["activity_type"].astype(object)
    late = acts.index[-40:-38]
    acts.loc[late, "activity_type"] = None
    acts = acts.rename(columns={"lead_id": "contact_ref"})
    tables = {"leads": crm.leads, "activities": acts, "outcomes": crm.outcomes}
    uri = f"sqlite:///{tmp_path / 'crm.db'}" if kind == "sqlite" else str(tmp_path)
    write_tables(tables, uri, "sqlite" if kind == "sqlite" else "parquet")
    config = _config(uri, columns={"activity_lead_id": "contact_ref"})
    since = acts["occurred_at"].iloc[-200]
    with pytest.raises(DataError, match="empty activity type") as raised:
        load_crm(config, activities_since=since, activities_until=pd.Timestamp("2026-04-01"))
    rows = ", ".join(str(i + 1) for i in late)
    assert f"rows {rows}" in raised.value.problem
    # An activity of an unknown lead names the mapped column, not "lead id".
    acts.loc[late, "activity_type"] = "page_view"
    acts.loc[acts.index[-5], "contact_ref"] = 99_999_999
    write_tables({"activities": acts}, uri, "sqlite" if kind == "sqlite" else "parquet")
    with pytest.raises(DataError, match="column 'contact_ref'") as raised:
        load_crm(config, activities_since=since, activities_until=pd.Timestamp("2026-04-01"))
    assert f"row {len(acts) - 4}" in raised.value.problem


def _dated_leads(folder: Path, created: list[str]) -> None:
    n = len(created)
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(n)],
            "created_at": created,
            "converted": ["yes" if i % 3 == 0 else "no" for i in range(n)],
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "leads.csv", sep=";", index=False)


def _dated_config(folder: Path, **file_format):
    return _config(
        str(folder),
        tables={"leads": "leads"},
        label={"column": "converted"},
        attributes={},
        files={"leads": file_format} if file_format else {},
    )


def test_dates_read_day_first_when_only_that_order_reads_them(tmp_path: Path) -> None:
    """German Excel writes 01.02.2026 for 1 February: a column whose first dates have days
    of 12 or less must not be read month first (and its 31.03. refused)."""
    _dated_leads(tmp_path / "eu", ["01.02.2026 10:00", "05.03.2026 09:30", "31.03.2026 17:00"])
    created = load_crm(_dated_config(tmp_path / "eu")).leads["created_at"].tolist()
    assert created == [
        pd.Timestamp("2026-02-01 10:00"),
        pd.Timestamp("2026-03-05 09:30"),
        pd.Timestamp("2026-03-31 17:00"),
    ]
    _dated_leads(tmp_path / "us", ["02/01/2026", "03/05/2026", "03/31/2026"])
    us = load_crm(_dated_config(tmp_path / "us")).leads["created_at"].tolist()
    assert us == [pd.Timestamp(d) for d in ("2026-02-01", "2026-03-05", "2026-03-31")]


def test_dates_that_read_either_way_are_month_first_with_a_warning_or_as_told(
    tmp_path: Path,
) -> None:
    _dated_leads(tmp_path, ["01/02/2026", "05/03/2026", "11/04/2026"])
    crm = load_crm(_dated_config(tmp_path))
    assert crm.leads["created_at"].iloc[0] == pd.Timestamp("2026-01-02")
    warning = " ".join(crm.checks.summary())
    assert "day first or month first alike" in warning
    assert "source.files.leads.day_first: true" in warning
    told = load_crm(_dated_config(tmp_path, day_first=True))
    assert told.leads["created_at"].tolist() == [
        pd.Timestamp(d) for d in ("2026-02-01", "2026-03-05", "2026-04-11")
    ]
    assert "alike" not in " ".join(told.checks.summary())


def test_row_ids_only_for_files(tmp_path: Path) -> None:
    """A database table has no fixed row order to name leads by."""
    from leadscore.errors import ConfigError

    uri = f"sqlite:///{tmp_path / 'flat.db'}"
    write_tables({"export": pd.DataFrame({"x": [1, 2], "converted": ["yes", "no"]})}, uri)
    config = _config(
        uri,
        tables={"leads": "export"},
        columns={"lead_id": None},
        label={"column": "converted"},
        attributes={"numeric": ["x"]},
    )
    with pytest.raises(ConfigError, match="no fixed order"):
        load_crm(config)


def test_outcomes_in_stages_convert_only_in_the_listed_stages(tmp_path: Path, crm) -> None:
    """Open and lost opportunities convert no lead; a stage list that matches no row says
    which stages the table has."""
    tables = {k: crm.tables()[k].copy() for k in ("leads", "activities", "outcomes")}
    won = tables["outcomes"].dropna(subset=["converted_at"])
    lost = won.assign(lead_id=tables["leads"]["lead_id"].iloc[: len(won)].to_numpy())
    lost = lost[~lost["lead_id"].isin(won["lead_id"])]
    tables["outcomes"] = pd.concat(
        [won.assign(stage="Closed Won"), lost.assign(stage="Closed Lost")], ignore_index=True
    )
    uri = str(tmp_path / "pipeline")
    write_tables(tables, uri, "parquet")
    stage = {"column": "stage", "converted": ["closed won"]}
    loaded = load_crm(_config(uri, outcome_stage=stage))
    assert set(loaded.outcomes["lead_id"]) == set(won["lead_id"]) and len(lost) > 0
    # A list matching no row is said (a warning: a lead partition may hold no won deal) ...
    wrong = load_crm(_config(uri, outcome_stage={"column": "stage", "converted": ["won"]}))
    assert wrong.outcomes.empty
    assert any("stages there: Closed" in line for line in wrong.checks.summary())
    # ... and a few leads read on demand are never refused for it.
    one = load_crm(_config(uri, outcome_stage=stage), lead_ids=[str(lost["lead_id"].iloc[0])])
    assert one.outcomes.empty


def test_times_with_and_without_offsets_read_in_the_files_zone(tmp_path: Path) -> None:
    """A column merged from two systems: ISO times with offsets, local times without one,
    and a local format. With the file's timezone set each lands on its UTC instant; without
    it the column is refused and the fix names the setting."""
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4],
            "created_at": [
                "2026-01-10T09:00:00+01:00",  # 08:00 UTC
                "2026-01-10 09:00:00",  # Berlin in winter: 08:00 UTC
                "2026-07-10 09:00:00",  # Berlin in summer: 07:00 UTC
                "10.07.2026 09:00",  # the same, as German Excel writes it
            ],
            "converted": ["1", "0", "1", "0"],
        }
    )
    folder = tmp_path / "zones"
    folder.mkdir()
    leads.to_csv(folder / "leads.csv", index=False)
    source = {
        "tables": {"leads": "leads"},
        "columns": {"lead_id": "lead_id", "created_at": "created_at", "converted_at": None},
        "label": {"column": "converted"},
        "attributes": {"categorical": [], "numeric": []},
    }
    with pytest.raises(DataError, match="timezone"):
        load_crm(_config(str(folder), **source))
    zoned = {**source, "files": {"leads": {"timezone": "Europe/Berlin", "day_first": True}}}
    got = load_crm(_config(str(folder), **zoned)).leads.set_index("lead_id")["created_at"]
    assert got.tolist() == [
        pd.Timestamp("2026-01-10 08:00"),
        pd.Timestamp("2026-01-10 08:00"),
        pd.Timestamp("2026-07-10 07:00"),
        pd.Timestamp("2026-07-10 07:00"),
    ]
    # Times a file stores as timestamps without a zone (Parquet, Excel) are in it too.
    typed = leads.assign(created_at=pd.to_datetime(["2026-01-10 09:00"] * 4))
    typed.to_parquet(folder / "leads.parquet", index=False)
    (folder / "leads.csv").unlink()
    got = load_crm(_config(str(folder), **zoned)).leads["created_at"]
    assert (got == pd.Timestamp("2026-01-10 08:00")).all()
    with pytest.raises(ConfigError, match="not a time zone"):
        _config(str(folder), **{**source, "files": {"leads": {"timezone": "Mars/Olympus"}}})


def test_activity_type_ids_are_named_by_their_lookup_table(tmp_path: Path, crm) -> None:
    """A Marketo-like log gives each activity's type as an id; the table of type names
    turns them into names (from CSV text or Parquet numbers alike). An id the table does
    not name is kept as "type <id>" with a warning; an id with two names is refused."""
    tables = {k: crm.tables()[k].copy() for k in ("leads", "activities", "outcomes")}
    types = sorted(tables["activities"]["activity_type"].unique())
    ids = {name: 100 + i for i, name in enumerate(types)}
    tables["activities"]["activity_type"] = tables["activities"]["activity_type"].map(ids)
    names = pd.DataFrame({"id": list(ids.values()), "name": list(ids)})
    lookup = {"table": "activity_types", "id": "id", "name": "name"}
    for kind in ("csv", "parquet"):
        uri = str(tmp_path / kind)
        write_tables({**tables, "activity_types": names}, uri, kind)
        loaded = load_crm(_config(uri, activity_types=lookup))
        expected = crm.activities["activity_type"].astype(str).to_numpy()
        assert (loaded.activities["activity_type"].astype(str).to_numpy() == expected).all()
        assert not loaded.checks.warnings

    first = types[0]
    for kind in ("csv", "parquet"):  # text, and categories (a Parquet dictionary column)
        uri = str(tmp_path / f"unnamed-{kind}")
        write_tables({**tables, "activity_types": names.iloc[1:]}, uri, kind)
        loaded = load_crm(_config(uri, activity_types=lookup))
        assert (loaded.activities["activity_type"].astype(str) == f"type {ids[first]}").sum() == (
            crm.activities["activity_type"] == first
        ).sum()
        assert any("does not name" in line for line in loaded.checks.summary())

    uri = str(tmp_path / "clash")
    twice = pd.concat([names, names.iloc[:1].assign(name="other")], ignore_index=True)
    write_tables({**tables, "activity_types": twice}, uri, "csv")
    with pytest.raises(DataError, match="more than one name"):
        load_crm(_config(uri, activity_types=lookup))
