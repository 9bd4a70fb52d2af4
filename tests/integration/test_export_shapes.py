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

import export_corpus
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
    smaller (the lead id, a won date without time, columns filled only for won deals): the
    corpus checks what init decides; here, none of the deals' columns is an attribute, and
    the source loads and builds its training set as init wrote it (a won date on the
    creation day is not "before")."""
    shape = export_corpus.leads_and_deals(tmp_path / "export")
    source = yaml.safe_load(_init(shape.folder).read_text(encoding="utf-8"))["source"]
    mapped = {*source["attributes"]["categorical"], *source["attributes"]["numeric"]}
    assert mapped and not mapped & {"Amount", "Stage", "Owner", "Deal ID", "Won Date"}
    config = load_config(shape.folder / "leadscore.yaml")
    loaded = load_crm(config)
    crm = shape.crm
    won = crm.outcomes.dropna(subset=["converted_at"])
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
    pipeline export holds them): only won deals convert leads."""
    shape = export_corpus.opportunities_in_stages(tmp_path / "export")
    _init(shape.folder)
    config = load_config(shape.folder / "leadscore.yaml")
    loaded = load_crm(config)
    won = shape.crm.outcomes.dropna(subset=["converted_at"])
    assert set(loaded.outcomes["lead_id"].astype(int)) == set(won["lead_id"])  # none lost or open
    data = build_training_set(loaded, config, load_rules(config.rules_path))
    assert data.examples.labels.sum() > 50


def test_timestamps_with_mixed_zones_and_formats_read_as_init_wrote_them(tmp_path) -> None:
    """Creation times merged from two systems (some with an offset, some local, some in a
    local format) load to the generator's times with the timezone init wrote."""
    shape = export_corpus.mixed_zones(tmp_path / "export")
    _init(shape.folder)
    config = load_config(shape.folder / "leadscore.yaml")
    assert config.source.files["leads"].timezone == "UTC"
    loaded = load_crm(config)
    back = loaded.leads.set_index(loaded.leads["lead_id"].astype(int))["created_at"]
    expected = shape.crm.leads.set_index("lead_id")["created_at"].dt.floor("min")
    assert (back.loc[expected.index].dt.floor("min") == expected).all()


@pytest.mark.parametrize(
    ("vendor", "status"), [("salesforce", "Status"), ("hubspot", "Lifecycle Stage")]
)
def test_vendor_status_columns_are_left_to_the_leakage_guard(tmp_path, vendor, status) -> None:
    """A Salesforce lead export and a HubSpot contacts export map with no edit (the corpus
    runs them end to end); their status, filled in after the outcome, is flagged for the
    leakage guard in the project file, and the guard drops it."""
    shape = getattr(export_corpus, vendor)(tmp_path / vendor)
    text = _init(shape.folder).read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.strip().startswith(f"- {status}"))
    assert "the leakage guard drops it" in line
    config = load_config(shape.folder / "leadscore.yaml")
    loaded = load_crm(config)
    data = build_training_set(loaded, config, load_rules(config.rules_path))
    findings = {f.column for f in training_findings(data, config, loaded) if f.excluded}
    assert status in findings
