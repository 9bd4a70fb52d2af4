"""`leadscore init`'s library: profiling real and generated exports into a project file."""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import X_EDUCATION
from pydantic import BaseModel, Field

from leadscore.apps import profiling
from leadscore.apps.profiling import (
    SAMPLE_ROWS,
    init_project,
    profile_frame,
    profile_source,
    render_config,
    summary_lines,
)
from leadscore.config import ProjectConfig, load_config
from leadscore.errors import ConfigError, DataError
from leadscore.io.sources import load_crm
from leadscore.io.tables import write_tables


@pytest.fixture(scope="module")
def leads_csv() -> Path:
    """The real X Education export; absent in a fresh clone (skip), never absent in CI."""
    path = X_EDUCATION / "Leads.csv"
    if not path.is_file():
        reason = f"{path} is absent: the real-data tests need ../shared/data (see its README)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _commented_out(text: str) -> set[str]:
    """Names of attribute lines written as comments (`# - name  # reason`)."""
    names = set()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# - "):
            entry = stripped[len("# - ") :].split("  #")[0].split(" # ")[0].strip()
            names.add(yaml.safe_load(entry))
    return names


# --------------------------------------------------------------------------------------
# The real export


def test_x_education_guesses_and_writes_a_loadable_flat_config(
    leads_csv: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(leads_csv)
    out, profiles = init_project(str(leads_csv.parent), tmp_path / "leadscore.yaml")

    leads = profiles["Leads"]
    assert leads.rows == len(frame) and len(leads.columns) == len(frame.columns)
    assert leads.lead_id == "Prospect ID"
    assert leads.label == "Converted"
    assert leads.order_column == "Lead Number"
    assert leads.undecided == []
    assert "Select" in leads.placeholders
    selects = int(frame.apply(lambda c: (c == "Select").sum()).sum())
    assert leads.placeholders["Select"] == selects

    config = load_config(out)
    assert config.flat is True
    assert config.split_method == "order"
    assert config.split.order_column == "Lead Number"
    assert config.source.label is not None and config.source.label.column == "Converted"
    assert config.source.columns.lead_id == "Prospect ID"
    assert config.source.tables.activities is None and config.source.tables.outcomes is None
    assert "Select" in config.source.missing_values

    # Constant columns (one value in every row) are commented out, never attributes.
    constant = {c for c in frame.columns if frame[c].nunique(dropna=True) == 1}
    assert {"Magazine", "I agree to pay the amount through cheque"} <= constant
    text = out.read_text(encoding="utf-8")
    attributes = set(config.source.attributes.numeric) | set(config.source.attributes.categorical)
    assert not constant & attributes
    assert constant <= _commented_out(text)
    # Every other column is mapped somewhere: an attribute or a key.
    mapped = {"Prospect ID", "Converted", "Lead Number"}
    assert set(frame.columns) == attributes | constant | mapped
    assert "What is your current occupation" in config.source.attributes.categorical
    assert "TotalVisits" in config.source.attributes.numeric

    # Ids are not written: not one Prospect ID or Lead Number value appears.
    for value in frame["Prospect ID"].head(50):
        assert value not in text
    assert str(frame["Lead Number"].iloc[0]) not in text


def test_x_education_summary_lines_say_what_was_guessed(leads_csv: Path) -> None:
    profiles = profile_source(str(leads_csv))  # a single file stands for its folder
    lines = summary_lines(profiles)
    joined = "\n".join(lines)
    assert "Prospect ID" in joined and "Converted" in joined and "Lead Number" in joined
    assert '"Select"' in joined
    assert "could not decide" not in joined
    assert "constant" in joined


# --------------------------------------------------------------------------------------
# A generated timestamped export


def _timestamped_tables(n: int = 80, seed: int = 3) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(1, n + 1),
            "created_at": created.strftime("%Y-%m-%d %H:%M:%S"),
            "email": [f"person{i}@firm{i % 7}.example" for i in range(n)],
            "job_title": rng.choice(["VP Marketing", "Engineer", "Student", "unknown"], n),
            "industry": rng.choice(["software", "retail", "education", "Select"], n),
            "employees": rng.integers(1, 5000, n),
        }
    )
    m = 6 * n
    who = rng.integers(1, n + 1, m)
    activities = pd.DataFrame(
        {
            "lead_id": who,
            "occurred_at": (
                created[who - 1] + pd.to_timedelta(rng.integers(0, 40 * 24, m), unit="h")
            ).strftime("%Y-%m-%d %H:%M:%S"),
            "activity_type": rng.choice(["page_view", "email_open", "content_download"], m),
            "detail": rng.choice(["/pricing", "/blog/a", "/docs", "newsletter"], m),
        }
    )
    won = np.arange(1, n + 1, 4)
    outcomes = pd.DataFrame(
        {
            "lead_id": won,
            "converted_at": (created[won - 1] + pd.Timedelta(days=20)).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
        }
    )
    return {"leads": leads, "activities": activities, "outcomes": outcomes}


def test_timestamped_folder_maps_three_tables_and_hides_emails(tmp_path: Path) -> None:
    tables = _timestamped_tables()
    data = tmp_path / "export"
    write_tables(tables, str(data), "csv")
    out, profiles = init_project(str(data), tmp_path / "project" / "leadscore.yaml")

    assert profiles["activities"].role == "activities"
    assert profiles["outcomes"].role == "outcomes"
    config = load_config(out)
    assert config.flat is False and config.split_method == "time"
    src = config.source
    assert (src.tables.leads, src.tables.activities, src.tables.outcomes) == (
        "leads",
        "activities",
        "outcomes",
    )
    cols = src.columns
    assert (cols.lead_id, cols.created_at, cols.converted_at) == (
        "lead_id",
        "created_at",
        "converted_at",
    )
    assert (cols.activity_lead_id, cols.occurred_at, cols.activity_type, cols.detail) == (
        "lead_id",
        "occurred_at",
        "activity_type",
        "detail",
    )
    assert cols.outcome_lead_id == "lead_id"
    assert src.attributes.email == "email" and src.attributes.job_title == "job_title"
    assert src.attributes.categorical == ["industry"]
    assert src.attributes.numeric == ["employees"]
    assert sorted(src.missing_values) == ["Select", "unknown"]  # "unknown": a job title
    assert config.source_uri == str(data.resolve())

    text = out.read_text(encoding="utf-8")
    summary = "\n".join(summary_lines(profiles))
    for address in tables["leads"]["email"]:
        assert address not in text and address not in summary
        assert address.split("@")[0] not in text
    for title in ("VP Marketing", "Engineer", "Student"):
        assert title not in text

    loaded = load_crm(config)  # the guesses are right enough for the real loader
    assert len(loaded.leads) == len(tables["leads"])
    assert len(loaded.activities) == len(tables["activities"])
    assert len(loaded.outcomes) == len(tables["outcomes"])


def test_sqlite_url_with_several_tables(tmp_path: Path) -> None:
    tables = _timestamped_tables(n=60, seed=5)
    tables["campaign_costs"] = pd.DataFrame({"month": ["2025-01", "2025-02"], "cost": [10, 12]})
    db = tmp_path / "crm.db"
    uri = f"sqlite:///{db}"
    write_tables(tables, uri)

    profiles = profile_source(uri)
    assert set(profiles) == set(tables)
    out, _ = init_project(uri, tmp_path / "leadscore.yaml")
    text = out.read_text(encoding="utf-8")
    assert "campaign_costs" in text and "not used" in text
    config = load_config(out)
    assert config.source.uri == "sqlite:///crm.db"  # relative to the project file
    assert config.source_uri == f"sqlite:///{db.resolve()}"
    assert config.source.tables.outcomes == "outcomes"
    assert config.source.columns.converted_at == "converted_at"
    assert len(load_crm(config).leads) == 60

    # Only some tables: the leads alone, a flat export without a label.
    only, _ = init_project(uri, tmp_path / "only.yaml", tables=["leads"])
    config = load_config(only)
    assert config.flat and config.source.label.column == "TODO"
    assert config.split.order_column == "created_at"


def test_sqlite_flat_table_with_a_label(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "account_key": [f"A-{i:05d}" for i in range(300)],
            "Won?": rng.choice(["Yes", "No"], 300),
            "Lead Source": rng.choice(["web", "event", "unknown", "N/A"], 300),
            "Score Points": rng.normal(50, 10, 300),
        }
    )
    uri = f"sqlite:///{tmp_path / 'flat.db'}"
    write_tables({"export_2025": frame}, uri)
    out, profiles = init_project(uri, tmp_path / "leadscore.yaml")
    table = profiles["export_2025"]
    assert table.lead_id == "account_key" and table.label == "Won?"
    assert table.column("Lead Source").placeholders == {
        "unknown": int((frame["Lead Source"] == "unknown").sum()),
        "N/A": int((frame["Lead Source"] == "N/A").sum()),
    }
    config = load_config(out)
    assert config.flat and config.split_method == "random"
    assert sorted(config.source.missing_values) == ["N/A", "unknown"]
    assert config.source.attributes.numeric == ["Score Points"]
    text = out.read_text(encoding="utf-8")
    assert "A-00001" not in text
    assert "# TODO:" in text and "split.order_column" in text  # nothing orders the leads


def test_missing_sqlite_file_is_an_error_and_not_created(tmp_path: Path) -> None:
    db = tmp_path / "typo.db"
    with pytest.raises(DataError, match="does not exist"):
        profile_source(f"sqlite:///{db}")
    assert not db.exists()


# --------------------------------------------------------------------------------------
# What it cannot decide


def test_ambiguous_label_is_undecided_and_a_todo(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(100)],
            "flag_a": rng.choice(["yes", "no"], 100),
            "flag_b": rng.integers(0, 2, 100),
            "segment": rng.choice(["smb", "mid", "enterprise"], 100),
        }
    )
    profile = profile_frame(frame, "leads")
    assert profile.label is None
    assert profile.label_candidates == ["flag_a", "flag_b"]
    assert any("flag_a" in s and "flag_b" in s for s in profile.undecided)

    frame.to_csv(tmp_path / "leads.csv", index=False)
    out, _ = init_project(str(tmp_path), tmp_path / "leadscore.yaml")
    lines = out.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("column:"))
    assert lines[at - 1].strip().startswith("# TODO:") and "flag_a" in lines[at - 1]
    assert any(line.startswith("# Could not decide:") for line in lines)
    config = load_config(out)
    assert config.source.label.column == "TODO"
    assert {"flag_a", "segment"} <= set(config.source.attributes.categorical)


def test_a_named_label_wins_over_other_yes_no_columns() -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "id": range(50),
            "opted_out": rng.choice(["Yes", "No"], 50),
            "is_customer": rng.choice([True, False], 50),
        }
    )
    profile = profile_frame(frame, "contacts")
    assert profile.label == "is_customer"
    assert profile.column("is_customer").kind == "label"


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    write_tables(_timestamped_tables(n=30), str(tmp_path / "data"), "csv")
    out = tmp_path / "leadscore.yaml"
    out.write_text("# my edited project\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        init_project(str(tmp_path / "data"), out)
    assert "already exists" in info.value.problem and "--force" in (info.value.fix or "")
    assert out.read_text(encoding="utf-8") == "# my edited project\n"
    init_project(str(tmp_path / "data"), out, force=True)
    assert load_config(out).source.tables.leads == "leads"


# --------------------------------------------------------------------------------------
# Awkward inputs


def test_awkward_column_names_are_quoted_correctly(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    names = ["yes", "null", "Amount: USD", "# of visits", "- dash", "Ünïcödé ñame", 'Say "hi"']
    frame = pd.DataFrame({"Lead ID": range(200), "Converted": rng.integers(0, 2, 200)})
    for i, name in enumerate(names):
        frame[name] = rng.choice(["a", "b", "c"], 200) if i % 2 else rng.normal(size=200)
    frame.to_csv(tmp_path / "leads.csv", index=False)
    out, _ = init_project(str(tmp_path), tmp_path / "leadscore.yaml")
    attrs = load_config(out).source.attributes
    assert set(attrs.numeric) | set(attrs.categorical) == set(names)


def test_windows_encoded_csv_is_read_like_the_loader_does(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "Kunden-Nr": range(1000, 1040),
            "Stadt": ["München", "Köln", "Düsseldorf", "Zürich"] * 10,
            "converted": ["yes", "no"] * 20,
        }
    )
    frame.to_csv(tmp_path / "kunden.csv", index=False, encoding="latin-1")
    profiles = profile_source(str(tmp_path))
    table = profiles["kunden"]
    assert table.column("Stadt").n_distinct == 4
    assert table.lead_id == "Kunden-Nr" and table.label == "converted"
    # The loader reads the same file the same way, so there is nothing to fix.
    config = tmp_path / "leadscore.yaml"
    init_project(str(tmp_path), config)
    crm = load_crm(load_config(config))
    assert set(crm.leads["Stadt"]) == {"München", "Köln", "Düsseldorf", "Zürich"}


def test_empty_tables_still_give_a_loadable_config(tmp_path: Path) -> None:
    (tmp_path / "headers").mkdir()
    pd.DataFrame({"lead_id": [], "converted": []}).to_csv(
        tmp_path / "headers" / "leads.csv", index=False
    )
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "leads.csv").write_text("", encoding="utf-8")
    for folder in ("headers", "nothing"):
        out, profiles = init_project(str(tmp_path / folder), tmp_path / f"{folder}.yaml")
        assert profiles["leads"].rows == 0
        assert any("empty" in s for s in profiles["leads"].undecided)
        config = load_config(out)
        assert config.flat and config.source.columns.lead_id == "TODO"
        assert "# TODO: table 'leads' is empty" in out.read_text(encoding="utf-8")


def test_one_column_table(tmp_path: Path) -> None:
    pd.DataFrame({"customer_id": [f"c{i}" for i in range(25)]}).to_parquet(
        tmp_path / "customers.parquet"
    )
    out, profiles = init_project(str(tmp_path), tmp_path / "leadscore.yaml")
    assert profiles["customers"].lead_id == "customer_id"
    config = load_config(out)
    assert config.source.attributes.numeric == [] and config.source.attributes.categorical == []


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    pd.DataFrame(
        {
            "uuid": [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(120)],
            "signup_date": pd.date_range("2025-01-01", periods=120, freq="D"),
            "won": rng.choice([True, False], 120),
            "seats": rng.integers(1, 50, 120),
            "Phone": [f"+1 555 01{i:02d}" for i in range(120)],
            "First Name": [f"Name{i}" for i in range(120)],
            "Notes": [f"free text number {i}" for i in range(120)],
        }
    ).to_parquet(tmp_path / "leads.parquet")
    out, profiles = init_project(str(tmp_path), tmp_path / "leadscore.yaml")
    table = profiles["leads"]
    assert (table.lead_id, table.created_at, table.label) == ("uuid", "signup_date", "won")
    assert set(table.personal) == {"Phone", "First Name"}
    config = load_config(out)
    assert config.split.order_column == "signup_date" and config.split_method == "order"
    assert config.source.attributes.numeric == ["seats"]
    text = out.read_text(encoding="utf-8")
    assert "personal data, left out" in text
    assert "Name1" not in text and "555" not in text
    assert "Notes" in _commented_out(text) and "high cardinality" in text


def test_big_tables_are_sampled_and_say_so(tmp_path: Path) -> None:
    n = SAMPLE_ROWS + 5_000
    rng = np.random.default_rng(8)
    pd.DataFrame(
        {"lead_id": np.arange(n), "converted": rng.integers(0, 2, n), "size": rng.random(n)}
    ).to_csv(tmp_path / "leads.csv", index=False)
    profiles = profile_source(str(tmp_path))
    table = profiles["leads"]
    assert table.rows == n and table.sampled == SAMPLE_ROWS
    assert table.label == "converted" and table.order_column == "lead_id"
    text = render_config(profiles, str(tmp_path))
    assert f"sampled: types guessed from the first {SAMPLE_ROWS:,} rows" in text
    assert f"{n:,} rows" in text


def test_flat_export_cannot_use_an_activities_table(tmp_path: Path) -> None:
    tables = _timestamped_tables(n=40)
    leads = tables["leads"].assign(converted=np.arange(40) % 2)
    write_tables({"leads": leads, "activities": tables["activities"]}, str(tmp_path), "csv")
    out, _ = init_project(str(tmp_path), tmp_path / "leadscore.yaml")
    config = load_config(out)
    assert config.flat and config.source.tables.activities is None
    assert "looks like activities but is not used" in out.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------
# Every key of the project file, at its default


def _two_exports(tmp_path: Path) -> dict[str, Path]:
    """A timestamped export (three tables) and a flat one (a label column)."""
    tables = _timestamped_tables(n=60)
    write_tables(tables, str(tmp_path / "timestamped"), "csv")
    flat = tables["leads"].assign(converted=np.arange(60) % 2)
    write_tables({"leads": flat}, str(tmp_path / "flat"), "csv")
    return {"timestamped": tmp_path / "timestamped", "flat": tmp_path / "flat"}


def _section_type(annotation: object) -> type[BaseModel] | None:
    """A section (`Section` or `Section | None`); a mapping of sections by the user's names
    (`source.files`) and a list of sections (`alerts.sinks`) are one key."""
    if typing.get_origin(annotation) in (dict, list):
        return None
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _leaf_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key a project file can hold, walked from the model (so new keys are included)."""
    paths = []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        section = _section_type(info.annotation)
        if section is None:
            paths.append((*prefix, name))
        else:
            paths.extend(_leaf_paths(section, (*prefix, name)))
    return paths


def _commented_section(text: str, path: tuple[str, ...]) -> dict:
    """A section that is off (`name: null`) is shown commented out below: read it back."""
    indent = " " * (2 * (len(path) - 1))
    lines = text.splitlines()
    start = lines.index(f"{indent}# {path[-1]}:")
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(f"{indent}#   "):
            break
        block.append(line)
    return yaml.safe_load("\n".join(line[len(indent) + 2 :] for line in block))[path[-1]]


@pytest.mark.parametrize("kind", ["timestamped", "flat"])
def test_init_writes_every_section_and_key(tmp_path: Path, kind: str) -> None:
    source = _two_exports(tmp_path)[kind]
    out, _ = init_project(str(source), tmp_path / "project" / "leadscore.yaml")
    text = out.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    sections = [n for n, f in ProjectConfig.model_fields.items() if not f.exclude]
    assert set(data) == set(sections)
    for path in _leaf_paths(ProjectConfig):
        node = data
        for depth, key in enumerate(path, 1):
            dotted = ".".join(path[:depth])
            assert isinstance(node, dict) and key in node, f"{dotted} is not in the file"
            node = node[key]
            if node is None and depth < len(path):  # a section that is off: commented out
                example = _commented_section(text, path[:depth])
                rest = path[depth:]
                assert rest[0] in example, f"{'.'.join(path)} is not shown under {dotted}"
                break
    assert "publish:" in text and "lock_wait_seconds: 0" in text and "monitoring:" in text
    # Field descriptions and the `#:` documentation in config.py come along as comments.
    assert "# days between snapshot dates" in text
    assert "# Another run of the same project holding the lock" in text


@pytest.mark.parametrize("kind", ["timestamped", "flat"])
def test_every_key_written_loads_as_the_same_config(tmp_path: Path, kind: str) -> None:
    source = _two_exports(tmp_path)[kind]
    profiles = profile_source(str(source))
    full = tmp_path / "full.yaml"
    full.write_text(render_config(profiles, str(source)), encoding="utf-8")
    decided = tmp_path / "decided.yaml"  # only what init decides, as before every key was written
    decided.write_text(render_config(profiles, str(source), every_key=False), encoding="utf-8")

    with_defaults, without = load_config(full), load_config(decided)
    assert with_defaults == without
    assert with_defaults.model_dump(mode="json") == without.model_dump(mode="json")
    assert with_defaults.flat is (kind == "flat")

    # Each key written beyond init's decisions holds exactly the default that applies without it.
    defaults = without.model_dump(mode="json")
    chosen = yaml.safe_load(decided.read_text(encoding="utf-8"))
    extra = 0

    def check(written: dict, decided_part: dict | None, default: dict, where: str) -> None:
        nonlocal extra
        for key, value in written.items():
            if decided_part is not None and isinstance(decided_part.get(key), dict):
                check(value, decided_part[key], default[key], f"{where}{key}.")
            elif decided_part is None or key not in decided_part:
                extra += 1
                assert value == default[key], f"{where}{key}: {value!r} != {default[key]!r}"
            else:
                assert value == decided_part[key], f"{where}{key} changed"

    check(yaml.safe_load(full.read_text(encoding="utf-8")), chosen, defaults, "")
    assert extra > 20


def test_a_section_added_to_the_config_is_written_without_touching_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Alerts(BaseModel):
        """Where alerts go."""

        channel: str | None = Field(None, description="a chat channel")
        retries: int = 3

    class Extended(ProjectConfig):
        alerts: Alerts = Alerts()

    monkeypatch.setattr(profiling, "ProjectConfig", Extended)
    source = _two_exports(tmp_path)["flat"]
    text = render_config(profile_source(str(source)), str(source))
    data = yaml.safe_load(text)
    assert data["alerts"] == {"channel": None, "retries": 3}
    assert "# Where alerts go." in text and "# a chat channel" in text


@pytest.mark.parametrize("kind", ["timestamped", "ambiguous label"])
def test_init_prints_exactly_the_todos_the_file_holds(tmp_path: Path, kind: str) -> None:
    """Tables init does not use as leads have TODOs of their own as leads: not the user's."""
    from typer.testing import CliRunner

    from leadscore.apps.cli import app

    data = tmp_path / "export"
    if kind == "timestamped":
        write_tables(_timestamped_tables(), str(data), "csv")
    else:
        data.mkdir()
        pd.DataFrame(
            {"lead_id": [f"L{i}" for i in range(60)], "flag_a": ["yes", "no"] * 30,
             "flag_b": [0, 1, 1] * 20}
        ).to_csv(data / "leads.csv", index=False)  # fmt: skip
    out = tmp_path / "leadscore.yaml"
    result = CliRunner().invoke(app, ["init", str(data), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)["undecided"]
    written = [
        line.strip().removeprefix("# TODO: ")
        for line in out.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("# TODO: ")
    ]
    assert printed == written
    assert bool(printed) == (kind != "timestamped")


def test_a_marketo_like_activity_log_maps_with_its_type_names(tmp_path: Path) -> None:
    """Leads keyed `id`, an activity log keyed `leadId` with types as ids (activityTypeId)
    and the page in `primaryAttributeValue`, a table naming the types, and won deals keyed
    `leadId` beside their own id: init finds which column refers to the leads by the values
    (not only the name), which table names the types, and the page-view type by its name."""
    tables = _timestamped_tables(n=300, seed=3)
    leads = tables["leads"].assign(id=tables["leads"]["lead_id"] + 5000).drop(columns="lead_id")
    acts = tables["activities"]
    codes = {"page_view": 1, "content_download": 3, "email_open": 10}
    log = pd.DataFrame(
        {
            "marketoGUID": [f"a1b2c3d4-0000-4000-8000-{i:012d}" for i in range(len(acts))],
            "leadId": acts["lead_id"] + 5000,
            "activityDate": acts["occurred_at"],
            "activityTypeId": acts["activity_type"].map(codes),
            # ids 1..n: numbers the leads' ids do not hold, like any other asset id
            "primaryAttributeValueId": np.arange(len(acts)) % 40 + 1,
            "primaryAttributeValue": np.where(
                acts["activity_type"] == "page_view",
                "www.example.com" + acts["detail"].fillna("/").astype(str),
                "form:demo",
            ),
        }
    )
    outcomes = tables["outcomes"]
    deals = pd.DataFrame(
        {
            "Opportunity Id": np.arange(len(outcomes)) + 9_000_000,
            "leadId": outcomes["lead_id"] + 5000,
            "Close Date": outcomes["converted_at"],
        }
    )
    names = pd.DataFrame(
        {"id": [1, 3, 10, 12], "name": ["Visit Webpage", "Click Link", "Open Email", "New Lead"]}
    )
    data = tmp_path / "marketo"
    write_tables(
        {"leads": leads, "activities": log, "opportunities": deals, "activity_types": names},
        str(data),
        "csv",
    )
    out, _ = init_project(str(data), tmp_path / "leadscore.yaml")
    config = load_config(out)
    cols = config.source.columns
    assert (cols.lead_id, cols.activity_lead_id, cols.outcome_lead_id) == ("id", "leadId", "leadId")
    assert (cols.activity_type, cols.detail) == ("activityTypeId", "primaryAttributeValue")
    assert config.source.activity_types.model_dump() == {
        "table": "activity_types", "id": "id", "name": "name"
    }  # fmt: skip
    assert config.features.page_activity_type == "Visit Webpage"
    assert "# TODO:" not in out.read_text(encoding="utf-8")
    loaded = load_crm(config)
    assert set(loaded.activities["activity_type"].astype(str)) <= set(names["name"])
    assert len(loaded.outcomes) == len(outcomes)


@pytest.mark.parametrize("column", ["Lead Owner", "OwnerId", "Sales Rep", "Created By"])
def test_the_crms_own_people_are_never_attributes_or_rules(tmp_path: Path, column: str) -> None:
    """A lead's owner (or who created the record) is a person's name, and is assigned as
    the lead is worked: init leaves it out, so neither the project file nor the starter
    rules can hold the names."""
    tables = _timestamped_tables(n=300, seed=4)
    leads = tables["leads"]
    rng = np.random.default_rng(0)
    owners = ["Akiko Tanaka", "Jonas Weber", "Maria Rossi"]
    tables["leads"] = leads.assign(**{column: rng.choice(owners, len(leads))})
    data = tmp_path / "export"
    write_tables(tables, str(data), "csv")
    out, _ = init_project(str(data), tmp_path / "leadscore.yaml")
    config = load_config(out)
    attributes = config.source.attributes
    assert column not in {*attributes.categorical, *attributes.numeric}
    from leadscore.apps.starter_rules import starter_rules_text

    written = out.read_text(encoding="utf-8") + starter_rules_text(config)
    assert not any(name in written for name in owners)


def test_init_keeps_page_view_and_never_takes_a_tables_own_key_or_a_staff_list() -> None:
    """Review cases: e-mail clicks whose details are URLs outnumber page views (page_view
    stays the page type); small lead ids 1..N and a deals table keyed 1..K beside its
    `lead_id` (the reference wins, not the deals' own key); a small table of staff with ids
    1..30 and names (never a table of activity type names)."""
    from leadscore.apps.profiling import _plan, profile_frame

    rng = np.random.default_rng(0)
    n = 500
    leads = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "created_at": pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(n), "h"),
            "industry": rng.choice(["software", "retail"], n),
        }
    )
    m = 4000
    kinds = rng.choice(["page_view", "email_click", "email_click", "email_open"], m)
    acts = pd.DataFrame(
        {
            "id": np.arange(1, m + 1),
            "lead_id": rng.integers(1, n + 1, m),
            "occurred_at": pd.Timestamp("2025-02-01") + pd.to_timedelta(np.arange(m), "min"),
            "activity_type": kinds,
            "detail": np.where(kinds == "email_open", "newsletter",
                               np.where(kinds == "page_view", "/pricing",
                                        "https://example.com/webinar?utm_source=mail")),
        }
    )  # fmt: skip
    won = rng.choice(np.arange(1, n + 1), 60, replace=False)
    deals = pd.DataFrame(
        {"id": np.arange(1, 61), "lead_id": won,
         "converted_at": pd.Timestamp("2025-06-01") + pd.to_timedelta(np.arange(60), "D")}
    )  # fmt: skip
    staff = pd.DataFrame({"id": np.arange(1, 31), "name": [f"Person {i} Smith" for i in range(30)]})
    tables = {"leads": leads, "activities": acts, "deals": deals, "users": staff}
    profiles = {name: profile_frame(frame, name) for name, frame in tables.items()}
    plan = _plan(profiles)
    assert plan.activities is profiles["activities"] and plan.outcomes is profiles["deals"]
    assert (plan.activity_lead_id, plan.outcome_lead_id) == ("lead_id", "lead_id")
    assert plan.page_activity_type is None  # page_view qualifies: the default stays
    assert plan.activity_types is None  # the staff list names no activity type

    # Types given as ids with only a staff list beside them: still no lookup from people.
    ids = {"page_view": 1, "email_click": 2, "email_open": 3}
    coded = acts.assign(activity_type_id=acts["activity_type"].map(ids))
    coded = coded.drop(columns="activity_type")
    profiles["activities"] = profile_frame(coded, "activities")
    assert _plan(profiles).activity_types is None
