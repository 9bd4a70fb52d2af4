"""Exports as people write them: `;` with decimal commas in Windows-1252 (Excel in much of
Europe), tabs, Shift_JIS (Japanese Excel), Excel workbooks and JSON Lines.

`init` sniffs each file and writes what it found into the project file; every shape then
loads exactly the values of the same export written as plain UTF-8 CSV (so a model learns
the same thing from either). test_export_corpus.py takes every shape on through `train`
and `score`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import invoke_cli, write_flat_export

from leadscore.config import load_config
from leadscore.data.rules import load_rules
from leadscore.io.sources import load_crm
from leadscore.scoring.training import build_training_set
from leadscore.scoring.training import leakage_findings as training_findings
from leadscore.synthetic import generate_crm


@pytest.fixture(scope="module", autouse=True)
def _prefect_home(prefect_home: str) -> None:
    os.environ["PREFECT_HOME"] = prefect_home


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """A flat export with decimals, large amounts and text beyond ASCII."""
    folder = tmp_path_factory.mktemp("base")
    frame = pd.read_csv(write_flat_export(folder, leads=1500), dtype={"Lead Id": "str"})
    rng = np.random.default_rng(0)
    frame["Score"] = np.round(rng.gamma(2.0, 3.0, len(frame)), 2)
    frame["Revenue"] = np.round(frame["Employees"].fillna(0) * 1234.5 + 0.25, 2)
    return frame


def _latin(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["Country"] = out["Country"].replace({"DE": "Österreich", "FR": "Français"})
    out["Job Title"] = out["Job Title"].where(out["Job Title"].str.isascii(), "Général")
    return out


def _japanese(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["Country"] = out["Country"].replace({"JP": "日本", "DE": "ドイツ"})
    out["Industry"] = out["Industry"].replace({"software": "ソフトウェア"})
    return out


#: name -> (file, how the values change, writer, the marks init must find)
SHAPES = {
    "semicolon_decimal_comma_cp1252": (
        "export.csv",
        _latin,
        lambda f, p: f.to_csv(p, sep=";", decimal=",", index=False, encoding="cp1252"),
        {"delimiter": ";", "decimal": ",", "thousands": ""},
    ),
    "tab": (
        "export.tsv",
        lambda f: f,
        lambda f, p: f.to_csv(p, sep="\t", index=False),
        {"delimiter": "\t", "decimal": ".", "thousands": ""},
    ),
    "shift_jis": (
        "export.csv",
        _japanese,
        lambda f, p: f.to_csv(p, index=False, encoding="cp932"),
        {"delimiter": ",", "decimal": ".", "thousands": ""},
    ),
    "thousands_and_decimal_comma": (
        "export.csv",
        lambda f: f,
        lambda f, p: _grouped(f).to_csv(p, sep=";", index=False),
        {"delimiter": ";", "decimal": ",", "thousands": "."},
    ),
    "excel": ("export.xlsx", lambda f: f, lambda f, p: f.to_excel(p, index=False), None),
    "json_lines": (
        "export.jsonl",
        lambda f: f,
        lambda f, p: f.to_json(p, orient="records", lines=True, force_ascii=False),
        None,
    ),
}


def _grouped(frame: pd.DataFrame) -> pd.DataFrame:
    """Amounts as German Excel shows them: 1.234.567,25."""
    out = frame.copy()
    for column in ("Revenue", "Score"):
        out[column] = [
            "" if pd.isna(v) else f"{v:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
            for v in out[column]
        ]
    out["Employees"] = out["Employees"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    out["Employees"] = out["Employees"].str.replace(".", ",", regex=False)
    return out


def _init(folder: Path) -> Path:
    result = invoke_cli(["init", str(folder), "--out", str(folder / "leadscore.yaml")], folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "leadscore.yaml"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_reads_the_values_of_a_plain_csv(shape, export, tmp_path) -> None:
    file, change, write, marks = SHAPES[shape]
    frame = change(export)
    (tmp_path / "shape").mkdir()
    (tmp_path / "plain").mkdir()
    write(frame, tmp_path / "shape" / file)
    frame.to_csv(tmp_path / "plain" / "export.csv", index=False)
    project = _init(tmp_path / "shape")
    written = yaml.safe_load(project.read_text(encoding="utf-8"))
    if marks is not None:
        assert written["source"]["files"]["export"] == marks
    reference = yaml.safe_load(_init(tmp_path / "plain").read_text(encoding="utf-8"))
    # init decided the same mapping from either file (only how the file is written differs).
    for key in ("columns", "label", "attributes", "missing_values"):
        assert written["source"][key] == reference["source"][key], key
    got = load_crm(load_config(project)).leads
    want = load_crm(load_config(tmp_path / "plain" / "leadscore.yaml")).leads
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False
    )
    assert got["Revenue"].dtype.kind == "f" and got["Revenue"].max() > 1000


def test_a_european_timestamped_export_reads_as_its_iso_twin(tmp_path) -> None:
    """Leads, activities and outcomes from German Excel: `;`, decimal commas, Windows-1252
    and dates as 01.02.2026 14:05:00 (day first, which a month-first reading would refuse
    from the 13th on). Every table loads to the values of the same export in ISO 8601."""
    crm = generate_crm(1500, seed=8, end="2026-06-30")
    tables = {
        "leads": crm.leads.assign(employees=crm.leads["employees"] + 0.5),
        "activities": crm.activities,
        "outcomes": crm.outcomes.dropna(subset=["converted_at"]),
    }
    iso, eu = tmp_path / "iso", tmp_path / "eu"
    iso.mkdir()
    eu.mkdir()
    for name, frame in tables.items():
        # Text Windows-1252 can hold (the generator writes some Japanese job titles).
        frame = frame.copy()
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]) and not (
                pd.api.types.is_datetime64_any_dtype(frame[column])
            ):
                frame[column] = frame[column].map(
                    lambda v: (
                        v
                        if not isinstance(v, str)
                        else v.encode("cp1252", "replace").decode("cp1252")
                    )
                )
        frame.to_csv(iso / f"{name}.csv", index=False)
        german = frame.copy()
        for column in german.columns:
            if pd.api.types.is_datetime64_any_dtype(german[column]):
                german[column] = german[column].dt.strftime("%d.%m.%Y %H:%M:%S")
        german.to_csv(eu / f"{name}.csv", sep=";", decimal=",", index=False, encoding="cp1252")
    written = yaml.safe_load(_init(eu).read_text(encoding="utf-8"))["source"]
    assert written["files"]["leads"]["delimiter"] == ";"
    assert written["files"]["leads"]["decimal"] == ","
    reference = yaml.safe_load(_init(iso).read_text(encoding="utf-8"))["source"]
    for key in ("tables", "columns", "attributes"):
        assert written[key] == reference[key], key
    got = load_crm(load_config(eu / "leadscore.yaml"))
    want = load_crm(load_config(iso / "leadscore.yaml"))
    for name in ("leads", "activities", "outcomes"):
        pd.testing.assert_frame_equal(
            getattr(got, name), getattr(want, name), check_dtype=False, obj=name
        )
    assert got.leads["employees"].dropna().sub(0.5).mod(1).eq(0).all()  # 12,5 read as 12.5


def test_leads_and_a_smaller_deals_table_are_read_the_right_way_round(tmp_path) -> None:
    """Leads with a date no name calls a creation date, plus a deals table ten times
    smaller (the lead id, a won date without time, columns filled only for won deals):
    init takes the deals as outcomes, the earliest date of each lead as its creation, and
    none of the deals' columns as attributes; the source then loads and builds its
    training set as init wrote it (a won date on the creation day is not "before")."""
    crm = generate_crm(3000, seed=4, end="2026-06-30")
    leads = crm.leads.drop(columns=["email", "job_title"]).rename(
        columns={"lead_id": "Lead ID", "created_at": "Date", "industry": "Industry"}
    )
    won = crm.outcomes.dropna(subset=["converted_at"])
    rng = np.random.default_rng(0)
    deals = pd.DataFrame(
        {
            "Deal ID": [f"D{i}" for i in range(len(won))],
            "Lead ID": won["lead_id"].to_numpy(),
            "Won Date": won["converted_at"].dt.strftime("%Y-%m-%d"),
            "Amount": rng.integers(1_000, 50_000, len(won)),
            "Stage": "Closed Won",
            "Owner": rng.choice(["east", "west"], len(won)),
        }
    )
    folder = tmp_path / "export"
    folder.mkdir()
    leads.to_csv(folder / "leads_export.csv", index=False)
    deals.to_csv(folder / "deals.csv", index=False)
    source = yaml.safe_load(_init(folder).read_text(encoding="utf-8"))["source"]
    assert source["tables"] == {"leads": "leads_export", "activities": None, "outcomes": "deals"}
    assert source["columns"]["created_at"] == "Date"
    assert source["columns"]["converted_at"] == "Won Date"
    mapped = {*source["attributes"]["categorical"], *source["attributes"]["numeric"]}
    assert mapped and not mapped & {"Amount", "Stage", "Owner", "Deal ID", "Won Date"}
    config = load_config(folder / "leadscore.yaml")
    loaded = load_crm(config)
    assert len(loaded.outcomes) == len(won)
    same_day = (
        won["converted_at"].dt.normalize()
        == won["lead_id"].map(crm.leads.set_index("lead_id")["created_at"]).dt.normalize()
    )
    assert same_day.any()  # the case the date-only rule is for is in the data
    data = build_training_set(loaded, config, load_rules(config.rules_path))
    assert data.examples.labels.sum() > 50


def test_opportunities_in_stages_count_only_the_won_ones(tmp_path) -> None:
    """Leads plus an opportunities table with a stage per row (won, lost, still open, as a
    pipeline export holds them): init maps the stage and its winning value (with one TODO
    for the real choice: won deal or any opportunity), and only won deals convert leads."""
    crm = generate_crm(2000, seed=6, end="2026-06-30")
    leads = crm.leads.rename(columns={"lead_id": "Lead ID", "created_at": "Created Date"})
    rng = np.random.default_rng(1)
    won = crm.outcomes.dropna(subset=["converted_at"])
    others = crm.leads.loc[~crm.leads["lead_id"].isin(won["lead_id"])].sample(600, random_state=1)
    lost_at = others["created_at"] + pd.to_timedelta(rng.integers(5, 80, len(others)), "D")
    stage = np.where(rng.random(len(others)) < 0.7, "Closed Lost", "Prospecting")
    opportunities = pd.DataFrame(
        {
            "Opportunity ID": [f"O{i}" for i in range(len(won) + len(others))],
            "Lead ID": np.r_[won["lead_id"].to_numpy(), others["lead_id"].to_numpy()],
            "Stage": np.r_[np.full(len(won), "Closed Won"), stage],
            "Close Date": np.r_[
                won["converted_at"].dt.strftime("%Y-%m-%d"),
                np.where(stage == "Closed Lost", lost_at.dt.strftime("%Y-%m-%d"), ""),
            ],
            "Amount": rng.integers(1_000, 50_000, len(won) + len(others)),
        }
    )
    folder = tmp_path / "export"
    folder.mkdir()
    leads.to_csv(folder / "leads.csv", index=False)
    opportunities.to_csv(folder / "opportunities.csv", index=False)
    text = _init(folder).read_text(encoding="utf-8")
    source = yaml.safe_load(text)["source"]
    assert source["tables"]["outcomes"] == "opportunities"
    assert source["columns"]["converted_at"] == "Close Date"
    assert source["outcome_stage"] == {"column": "Stage", "converted": ["Closed Won"]}
    assert sum(line.strip().startswith("# TODO:") for line in text.splitlines()) == 1
    config = load_config(folder / "leadscore.yaml")
    loaded = load_crm(config)
    assert set(loaded.outcomes["lead_id"].astype(int)) == set(won["lead_id"])  # none lost or open
    data = build_training_set(loaded, config, load_rules(config.rules_path))
    assert data.examples.labels.sum() > 50


def test_timestamps_with_mixed_zones_and_formats_train_as_init_wrote_them(tmp_path) -> None:
    """Creation times merged from two systems (some with an offset, some local, some in a
    local format): init writes the file's timezone with one TODO, and the export loads and
    builds its training set with no edit."""
    crm = generate_crm(2000, seed=8, end="2026-06-30")
    leads = crm.leads.copy()
    created = leads["created_at"]
    text = created.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
    local = np.arange(len(leads)) % 3
    text[local == 1] = created[local == 1].dt.strftime("%Y-%m-%d %H:%M:%S")
    text[local == 2] = created[local == 2].dt.strftime("%d.%m.%Y %H:%M")
    leads["created_at"] = text
    folder = tmp_path / "export"
    folder.mkdir()
    leads.to_csv(folder / "leads.csv", index=False)
    crm.activities.to_csv(folder / "activities.csv", index=False)
    crm.outcomes.dropna().to_csv(folder / "outcomes.csv", index=False)
    written = _init(folder).read_text(encoding="utf-8")
    assert sum(line.strip().startswith("# TODO:") for line in written.splitlines()) == 1
    config = load_config(folder / "leadscore.yaml")
    assert config.source.files["leads"].timezone == "UTC"
    loaded = load_crm(config)
    back = loaded.leads.set_index(loaded.leads["lead_id"].astype(int))["created_at"]
    expected = crm.leads.set_index("lead_id")["created_at"].dt.floor("min")
    assert (back.loc[expected.index].dt.floor("min") == expected).all()
    data = build_training_set(loaded, config, load_rules(config.rules_path))
    assert data.examples.labels.sum() > 50


def _vendor_exports(folder: Path) -> dict[str, Path]:
    """One lead table as Salesforce and as HubSpot export it."""
    crm = generate_crm(2500, seed=6, end="2026-06-30")
    won = crm.outcomes.dropna(subset=["converted_at"]).set_index("lead_id")["converted_at"]
    leads = crm.leads
    converted = leads["lead_id"].map(won)
    rng = np.random.default_rng(1)
    open_status = ["Open - Not Contacted", "Working - Contacted", "Closed - Not Converted"]
    salesforce = pd.DataFrame(
        {
            "Id": [f"00Q{i:012d}" for i in leads["lead_id"]],
            "LastName": rng.choice(["Smith", "Sato", "Novak"], len(leads)),
            "Title": leads["job_title"],
            "Email": leads["email"],
            "LeadSource": leads["lead_source"],
            "Industry": leads["industry"],
            "NumberOfEmployees": leads["employees"],
            "Status": np.where(converted.notna(), "Converted", rng.choice(open_status, len(leads))),
            "CreatedDate": leads["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "IsConverted": np.where(converted.notna(), "true", "false"),
            "ConvertedDate": converted.dt.strftime("%Y-%m-%d"),
        }
    )
    stage = rng.choice(["Lead", "Marketing Qualified Lead", "Subscriber"], len(leads))
    hubspot = pd.DataFrame(
        {
            "Record ID": leads["lead_id"].to_numpy(),
            "Email": leads["email"],
            "Job Title": leads["job_title"],
            "Industry": leads["industry"],
            "Number of Employees": leads["employees"],
            "Original Source": leads["lead_source"],
            "Create Date": leads["created_at"].dt.strftime("%Y-%m-%d %H:%M"),
            "Lifecycle Stage": np.where(converted.notna(), "Customer", stage),
            "Became a Marketing Qualified Lead Date": leads["created_at"].dt.strftime(
                "%Y-%m-%d %H:%M"
            ),
            "Became a Customer Date": converted.dt.strftime("%Y-%m-%d %H:%M"),
        }
    )
    out = {}
    for name, frame, file in (("salesforce", salesforce, "Lead.csv"),
                              ("hubspot", hubspot, "contacts.csv")):  # fmt: skip
        (folder / name).mkdir()
        frame.to_csv(folder / name / file, index=False)
        out[name] = folder / name
    return out


@pytest.mark.parametrize(
    ("vendor", "created", "converted", "status"),
    [
        ("salesforce", "CreatedDate", "ConvertedDate", "Status"),
        ("hubspot", "Create Date", "Became a Customer Date", "Lifecycle Stage"),
    ],
)
def test_vendor_shaped_exports_map_without_edits(
    tmp_path, vendor, created, converted, status
) -> None:
    folder = _vendor_exports(tmp_path)[vendor]
    project = _init(folder)
    text = project.read_text(encoding="utf-8")
    source = yaml.safe_load(text)["source"]
    assert "# TODO:" not in text and ": TODO" not in text
    assert (source["columns"]["created_at"], source["columns"]["converted_at"]) == (
        created,
        converted,
    )
    # The status after the outcome is flagged for the leakage guard, not trusted.
    line = next(line for line in text.splitlines() if line.strip().startswith(f"- {status}"))
    assert "the leakage guard drops it" in line
    config = load_config(project)
    loaded = load_crm(config)
    data = build_training_set(loaded, config, load_rules(config.rules_path))
    findings = {f.column for f in training_findings(data, config, loaded) if f.excluded}
    assert status in findings
    assert data.examples.labels.sum() > 50
