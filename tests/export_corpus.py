"""A corpus of CRM export shapes, each as a real export would be written, built from the
generator and from X Education's `Leads.csv` (../shared/data; nothing here is committed as
data).

Every shape must go `leadscore init` -> `train` -> `score` with no edit to what init wrote,
or with exactly the TODOs a shape allows (one, where the choice is genuinely ambiguous).
`tests/integration/test_export_corpus.py` runs them all; this script writes them for a
person to try, and with `--run` goes through the commands itself and prints, per shape,
what init decided and the model's test ROC-AUC:

    .venv/bin/python tests/export_corpus.py OUT [--run] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: conftest's builders are beside it
    sys.path.insert(0, str(HERE))

from conftest import X_EDUCATION, open_lead_ids, write_flat_export  # noqa: E402

from leadscore.synthetic import generate_crm  # noqa: E402

#: Leads of each generated shape: enough for the default recipe (4 backtest folds).
LEADS = 2500


@dataclass
class Shape:
    """One export written to `folder`, and what running it must give."""

    name: str
    what: str
    folder: Path
    #: Ids `score` must publish (as the export writes them; "row-N" without an id column).
    open_ids: set[str]
    #: Score as of this day (the day after the extract's newest lead or activity); None:
    #: today (a flat export, or a history that runs up to today).
    as_of: str | None = None
    #: TODO lines init may write: 0, or 1 where the export leaves a real choice open.
    todos: int = 0
    #: Keys of the written project file (dotted) and the value init must decide.
    expect: dict[str, object] = field(default_factory=dict)
    #: The model's test ROC-AUC must reach this: a floor with a margin for other seeds
    #: (a flat export's test cohort is ~500 leads: its AUC moves by a few hundredths).
    auc_floor: float = 0.6
    #: The generated CRM behind the export (None for X Education), for tests that compare.
    crm: Any = None


def _today() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()


def _crm(seed: int, leads: int = LEADS, end: pd.Timestamp | None = None):
    return generate_crm(leads, seed=seed, end=str((end or _today()).date()))


def _open_ids(
    crm, as_of: pd.Timestamp, name: Callable = str, leads: pd.DataFrame | None = None
) -> set[str]:
    """The leads a timestamped export holds open as of `as_of`, by the generator's own
    tables (`leads`: those of them the export holds), as the export names them."""
    tables = {"leads": crm.leads if leads is None else leads, "outcomes": crm.outcomes}
    return {name(int(i)) for i in open_lead_ids(tables, as_of)}


def _won(crm) -> pd.DataFrame:
    return crm.outcomes.dropna(subset=["converted_at"])


def _write_csv(frame: pd.DataFrame, path: Path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, **kwargs)


# --------------------------------------------------------------------------------------
# Flat exports: one row per lead, a yes/no label, open leads with the label empty


def _flat(folder: Path, seed: int) -> pd.DataFrame:
    """A generated flat export (see conftest.write_flat_export) with decimal amounts."""
    frame = pd.read_csv(write_flat_export(folder, leads=LEADS, seed=seed), dtype={"Lead Id": str})
    (folder / "export.csv").unlink()
    rng = np.random.default_rng(seed)
    frame["Score"] = np.round(rng.gamma(2.0, 3.0, len(frame)), 2)
    frame["Revenue"] = np.round(frame["Employees"].fillna(0) * 1234.5 + 0.25, 2)
    return frame


def _flat_open(frame: pd.DataFrame, column: str = "Lead Id") -> set[str]:
    return set(frame.loc[frame["Converted"].isna(), column].astype(str))


def semicolon_cp1252(folder: Path) -> Shape:
    frame = _flat(folder, seed=11)
    frame["Country"] = frame["Country"].replace({"DE": "Österreich", "FR": "Français"})
    frame["Job Title"] = frame["Job Title"].where(frame["Job Title"].str.isascii(), "Général")
    _write_csv(frame, folder / "export.csv", sep=";", decimal=",", encoding="cp1252")
    return Shape(
        "semicolon_cp1252",
        "flat export, `;` with decimal commas in Windows-1252 (Excel in much of Europe)",
        folder,
        _flat_open(frame),
        expect={
            "source.files.export.delimiter": ";",
            "source.files.export.decimal": ",",
            "source.columns.lead_id": "Lead Id",
            "source.label.column": "Converted",
            # 12,5 read as numbers (as text they would be categories, or fail)
            "source.attributes.numeric": ["Employees", "Score", "Revenue"],
        },
    )


def tab_separated(folder: Path) -> Shape:
    crm = _crm(seed=12)
    leads = crm.leads.rename(
        columns={"lead_id": "Lead ID", "created_at": "Created At", "industry": "Industry",
                 "country": "Country", "lead_source": "Lead Source", "employees": "Employees",
                 "job_title": "Job Title", "email": "Email"}
    )  # fmt: skip
    activities = crm.activities.rename(
        columns={"lead_id": "Lead ID", "occurred_at": "Occurred At",
                 "activity_type": "Activity Type", "detail": "Detail"}
    )  # fmt: skip
    outcomes = _won(crm).rename(columns={"lead_id": "Lead ID", "converted_at": "Converted At"})
    for name, frame in (("leads", leads), ("activities", activities), ("outcomes", outcomes)):
        _write_csv(frame, folder / f"{name}.tsv", sep="\t")
    return Shape(
        "tab_separated",
        "leads, activities and outcomes as tab-separated files with spoken column names",
        folder,
        _open_ids(crm, _today()),
        expect={
            "source.files.leads.delimiter": "\t",
            "source.tables.activities": "activities",
            "source.columns.created_at": "Created At",
            "source.columns.converted_at": "Converted At",
            "source.columns.activity_type": "Activity Type",
        },
        auc_floor=0.68,
    )


def shift_jis(folder: Path) -> Shape:
    frame = _flat(folder, seed=13)
    frame["Country"] = frame["Country"].replace({"JP": "日本", "DE": "ドイツ", "US": "米国"})
    frame["Industry"] = frame["Industry"].replace({"software": "ソフトウェア", "retail": "小売"})
    _write_csv(frame, folder / "export.csv", encoding="cp932")
    return Shape(
        "shift_jis",
        "flat export in Shift_JIS (Japanese Excel), Japanese values",
        folder,
        _flat_open(frame),
        expect={"source.files.export.delimiter": ",", "source.label.column": "Converted"},
    )


def no_id(folder: Path) -> Shape:
    frame = _flat(folder, seed=14).drop(columns=["Lead Id", "Lead Number"])
    _write_csv(frame, folder / "export.csv")
    rows = np.flatnonzero(frame["Converted"].isna().to_numpy()) + 1  # data rows, from 1
    return Shape(
        "no_id",
        "flat export without any id column (leads named by their row)",
        folder,
        {f"row-{r}" for r in rows},
        todos=1,  # nothing says the arrival order: a random split unless the user knows one
        expect={"source.columns.lead_id": None, "split.method": "random"},
    )


def json_lines(folder: Path) -> Shape:
    frame = _flat(folder, seed=15)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_json(folder / "export.jsonl", orient="records", lines=True, force_ascii=False)
    return Shape(
        "json_lines",
        "flat export as JSON Lines",
        folder,
        _flat_open(frame),
        expect={"source.columns.lead_id": "Lead Id", "source.label.column": "Converted"},
    )


# --------------------------------------------------------------------------------------
# Leads with their outcomes in another table


def leads_and_deals(folder: Path) -> Shape:
    crm = _crm(seed=16)
    leads = crm.leads.drop(columns=["email", "job_title"]).rename(
        columns={"lead_id": "Lead ID", "created_at": "Date", "industry": "Industry"}
    )
    won = _won(crm)
    rng = np.random.default_rng(16)
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
    _write_csv(leads, folder / "leads_export.csv")
    _write_csv(deals, folder / "deals.csv")
    return Shape(
        "leads_and_deals",
        "leads (first-contact date named 'Date') + a ten times smaller table of won deals "
        "whose columns exist only for won deals",
        folder,
        _open_ids(crm, _today()),
        expect={
            "source.tables.leads": "leads_export",
            "source.tables.outcomes": "deals",
            "source.columns.created_at": "Date",
            "source.columns.converted_at": "Won Date",
        },
        auc_floor=0.56,  # attributes only (no titles, e-mails or activities): ~0.62
        crm=crm,
    )


def opportunities_in_stages(folder: Path) -> Shape:
    crm = _crm(seed=17)
    leads = crm.leads.rename(columns={"lead_id": "Lead ID", "created_at": "Created Date"})
    rng = np.random.default_rng(17)
    won = _won(crm)
    others = crm.leads.loc[~crm.leads["lead_id"].isin(won["lead_id"])].sample(700, random_state=1)
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
    _write_csv(leads, folder / "leads.csv")
    _write_csv(crm.activities, folder / "activities.csv")
    _write_csv(opportunities, folder / "opportunities.csv")
    return Shape(
        "opportunities_in_stages",
        "leads + activities + opportunities won, lost and open (a pipeline export)",
        folder,
        _open_ids(crm, _today()),
        todos=1,  # won deal, or any opportunity: the team's own definition of conversion
        expect={
            "source.tables.outcomes": "opportunities",
            "source.outcome_stage.column": "Stage",
            "source.outcome_stage.converted": ["Closed Won"],
            "source.columns.converted_at": "Close Date",
        },
        crm=crm,
    )


def _vendor_frames(seed: int):
    crm = _crm(seed=seed)
    won = _won(crm).set_index("lead_id")["converted_at"]
    return crm, crm.leads["lead_id"].map(won), np.random.default_rng(seed)


def salesforce(folder: Path) -> Shape:
    crm, converted, rng = _vendor_frames(18)
    leads = crm.leads
    open_status = ["Open - Not Contacted", "Working - Contacted", "Closed - Not Converted"]
    frame = pd.DataFrame(
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
    _write_csv(frame, folder / "Lead.csv")
    return Shape(
        "salesforce",
        "Salesforce Lead export (Id, CreatedDate, IsConverted, ConvertedDate, Status)",
        folder,
        _open_ids(crm, _today(), lambda i: f"00Q{i:012d}"),
        expect={
            "source.columns.lead_id": "Id",
            "source.columns.created_at": "CreatedDate",
            "source.columns.converted_at": "ConvertedDate",
        },
        crm=crm,
    )


def hubspot(folder: Path) -> Shape:
    crm, converted, rng = _vendor_frames(19)
    leads = crm.leads
    stage = rng.choice(["Lead", "Marketing Qualified Lead", "Subscriber"], len(leads))
    frame = pd.DataFrame(
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
    _write_csv(frame, folder / "contacts.csv")
    return Shape(
        "hubspot",
        "HubSpot contacts export (Record ID, Create Date, Lifecycle Stage, stage dates)",
        folder,
        _open_ids(crm, _today()),
        expect={
            "source.columns.lead_id": "Record ID",
            "source.columns.created_at": "Create Date",
            "source.columns.converted_at": "Became a Customer Date",
        },
        crm=crm,
    )


#: The generator's activity types as Marketo logs them: its standard types (id, name), and
#: custom activity types (ids from 100000) for what it has no standard type for.
MARKETO_TYPES = {
    "page_view": (1, "Visit Webpage"),
    "demo_request": (2, "Fill Out Form"),  # the form's name tells them apart
    "contact_request": (2, "Fill Out Form"),
    "email_unsubscribe": (9, "Unsubscribe Email"),
    "email_open": (10, "Open Email"),
    "email_click": (11, "Click Email"),
    "content_download": (100001, "Download Content"),
    "webinar_registration": (100002, "Register for Webinar"),
    "webinar_attendance": (100003, "Attend Webinar"),
}


def marketo(folder: Path) -> Shape:
    crm = _crm(seed=20)
    leads = crm.leads
    frame = pd.DataFrame(
        {
            "id": leads["lead_id"].to_numpy() + 1_000_000,
            "email": leads["email"],
            "title": leads["job_title"],
            "industry": leads["industry"],
            "numberOfEmployees": leads["employees"],
            "leadSource": leads["lead_source"],
            "country": leads["country"],
            "createdAt": leads["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    acts = crm.activities
    known = acts["activity_type"].map(lambda t: MARKETO_TYPES[t][0])
    # A page's URL as Marketo logs it, a form or an e-mail by its asset name.
    value = np.where(
        acts["activity_type"] == "page_view",
        "www.example.com" + acts["detail"].fillna("/").astype(str),
        acts["detail"].fillna("").astype(str),
    )
    log = pd.DataFrame(
        {
            "marketoGUID": [f"{i:08d}-a1b2-4c3d-9e8f-{i:012d}" for i in range(len(acts))],
            "leadId": acts["lead_id"].to_numpy() + 1_000_000,
            "activityDate": acts["occurred_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "activityTypeId": known.to_numpy(),
            "campaignId": np.random.default_rng(20).integers(1000, 1010, len(acts)),
            "primaryAttributeValueId": np.arange(len(acts)) % 500 + 1,
            "primaryAttributeValue": value,
            "attributes": json.dumps({"Client IP Address": "203.0.113.9"}),
        }
    )
    names = sorted(set(MARKETO_TYPES.values()) | {(12, "New Lead"), (13, "Change Data Value")})
    types = pd.DataFrame(
        {
            "id": [i for i, _ in names],
            "name": [n for _, n in names],
            "description": [f"Marketo activity: {n}" for _, n in names],
        }
    ).drop_duplicates("id")
    won = _won(crm)
    opportunities = pd.DataFrame(
        {
            "Opportunity Id": [f"006{i:012d}" for i in range(len(won))],
            "leadId": won["lead_id"].to_numpy() + 1_000_000,
            "Stage": "Closed Won",
            "Close Date": won["converted_at"].dt.strftime("%Y-%m-%d"),
        }
    )
    _write_csv(frame, folder / "leads.csv")
    _write_csv(log, folder / "activities.csv")
    _write_csv(types, folder / "activity_types.csv")
    _write_csv(opportunities, folder / "opportunities.csv")
    return Shape(
        "marketo",
        "Marketo-like: a lead export, the bulk activity log (activityTypeId, "
        "primaryAttributeValue) with its table of type names, and won opportunities",
        folder,
        _open_ids(crm, _today(), lambda i: str(i + 1_000_000)),
        expect={
            "source.tables.activities": "activities",
            "source.columns.activity_type": "activityTypeId",
            "source.columns.detail": "primaryAttributeValue",
            "source.activity_types.table": "activity_types",
            "features.page_activity_type": "Visit Webpage",
        },
        # Demo and contact requests are one type here ("Fill Out Form"), as in Marketo.
        auc_floor=0.65,
    )


def outcomes_after_last_lead(folder: Path) -> Shape:
    """Lead capture stopped half a year before the export was taken (a CRM migration);
    deals kept being won until the export."""
    end = _today()
    stop = end - pd.Timedelta(days=182)
    crm = _crm(seed=21, leads=3200, end=end)
    leads = crm.leads[crm.leads["created_at"] < stop]
    acts = crm.activities[
        (crm.activities["occurred_at"] < stop) & crm.activities["lead_id"].isin(leads["lead_id"])
    ]
    won = _won(crm)
    won = won[won["lead_id"].isin(leads["lead_id"])]
    _write_csv(leads, folder / "leads.csv")
    _write_csv(acts, folder / "activities.csv")
    _write_csv(won, folder / "outcomes.csv")
    newest = max(leads["created_at"].max(), acts["occurred_at"].max())
    as_of = newest.normalize() + pd.Timedelta(days=1)
    return Shape(
        "outcomes_after_last_lead",
        "deals won for six months after the last lead and activity (scored as of the day "
        "after the newest lead or activity)",
        folder,
        _open_ids(crm, as_of, leads=leads),
        as_of=str(as_of.date()),
        expect={"source.tables.outcomes": "outcomes", "source.extract_date": None},
    )


def mixed_zones(folder: Path) -> Shape:
    crm = _crm(seed=22)
    leads = crm.leads.copy()
    created = leads["created_at"]
    text = created.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
    local = np.arange(len(leads)) % 3
    text[local == 1] = created[local == 1].dt.strftime("%Y-%m-%d %H:%M:%S")
    text[local == 2] = created[local == 2].dt.strftime("%d.%m.%Y %H:%M")
    leads["created_at"] = text
    _write_csv(leads, folder / "leads.csv")
    _write_csv(crm.activities, folder / "activities.csv")
    _write_csv(_won(crm), folder / "outcomes.csv")
    return Shape(
        "mixed_zones",
        "creation times merged from two systems: some with an offset, some local, some in "
        "a day-first local format",
        folder,
        _open_ids(crm, _today()),
        todos=1,  # which zone the times without an offset are in
        expect={"source.files.leads.timezone": "UTC"},
        crm=crm,
    )


# --------------------------------------------------------------------------------------
# X Education's real leads (../shared/data), with the newest labels blanked as open leads

X_OPEN = 300


def _x_education(rows: int | None = None) -> pd.DataFrame:
    """X Education's leads (a seeded sample of `rows` of them), the newest unlabelled."""
    path = X_EDUCATION / "Leads.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; see ../shared/data/README.md")
    frame = pd.read_csv(path, dtype={"Converted": "object"})
    if rows is not None:
        frame = frame.sample(rows, random_state=0).sort_index().reset_index(drop=True)
    newest = frame["Lead Number"].nlargest(X_OPEN).index
    frame.loc[newest, "Converted"] = None
    return frame


def _x_open(frame: pd.DataFrame, column: str = "Prospect ID") -> set[str]:
    return set(frame.loc[frame["Converted"].isna(), column].astype(str))


def x_education_semicolon(folder: Path) -> Shape:
    frame = _x_education(rows=5000)
    _write_csv(frame, folder / "Leads.csv", sep=";", decimal=",", encoding="cp1252")
    return Shape(
        "x_education_semicolon",
        "5,000 of X Education's leads as German Excel writes them: `;`, decimal commas, cp1252",
        folder,
        _x_open(frame),
        expect={
            "source.files.Leads.decimal": ",",
            "source.columns.lead_id": "Prospect ID",
            "split.order_column": "Lead Number",
        },
        auc_floor=0.8,
    )


def x_education_xlsx(folder: Path) -> Shape:
    frame = _x_education(rows=4000)  # Excel files read slowly: a sample keeps the test short
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_excel(folder / "Leads.xlsx", index=False, sheet_name="Leads")
    return Shape(
        "x_education_xlsx",
        "4,000 of X Education's leads as an Excel workbook",
        folder,
        _x_open(frame),
        expect={"source.columns.lead_id": "Prospect ID", "source.label.column": "Converted"},
        auc_floor=0.8,
    )


def x_education_no_id(folder: Path) -> Shape:
    frame = _x_education(rows=5000).drop(columns=["Prospect ID", "Lead Number"])
    _write_csv(frame, folder / "Leads.csv")
    rows = np.flatnonzero(frame["Converted"].isna().to_numpy()) + 1
    return Shape(
        "x_education_no_id",
        "5,000 of X Education's leads without their ids (no order either: a seeded random split)",
        folder,
        {f"row-{r}" for r in rows},
        todos=1,  # nothing says the arrival order: a random split unless the user knows one
        expect={"source.columns.lead_id": None, "split.method": "random"},
        auc_floor=0.8,
    )


BUILDERS: dict[str, Callable[[Path], Shape]] = {
    f.__name__: f
    for f in (
        semicolon_cp1252,
        tab_separated,
        shift_jis,
        no_id,
        json_lines,
        leads_and_deals,
        opportunities_in_stages,
        salesforce,
        hubspot,
        marketo,
        outcomes_after_last_lead,
        mixed_zones,
        x_education_semicolon,
        x_education_xlsx,
        x_education_no_id,
    )
}


def written(project: dict, dotted: str) -> object:
    """The value at a dotted key of a loaded project file (None where it is absent)."""
    value: object = project
    for key in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def todo_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("# TODO:")]


def _run(shape: Shape) -> dict:
    """init -> train -> score with the installed command, as a user runs it."""
    import yaml

    command = str(Path(sys.executable).with_name("leadscore"))

    def leadscore(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [command, *args], cwd=shape.folder, capture_output=True, text=True, check=False
        )

    project = shape.folder / "leadscore.yaml"
    init = leadscore("init", ".", "--out", str(project))
    if init.returncode != 0:
        return {"shape": shape.name, "init": f"failed: {init.stderr.strip()[-300:]}"}
    text = project.read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    decided = {key: written(config, key) for key in shape.expect}
    trained = leadscore("train", "-c", str(project), "--json")
    auc = None
    if trained.returncode == 0:
        auc = json.loads(trained.stdout.strip().splitlines()[-1])["model"]["roc_auc"]
    as_of = ["--as-of", shape.as_of] if shape.as_of else []
    scored = leadscore("score", "-c", str(project), "--json", *as_of)
    published = None
    if scored.returncode in (0, 3):
        published = json.loads(scored.stdout.strip().splitlines()[-1])["rows"]["published"]
    return {
        "shape": shape.name,
        "init": decided,
        "todos": todo_lines(text),
        "train_exit": trained.returncode,
        "roc_auc": auc,
        "score_exit": scored.returncode,
        "published": published,
        "open_leads": len(shape.open_ids),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the shapes into (one each)")
    parser.add_argument("--run", action="store_true", help="init, train and score each shape")
    parser.add_argument("--only", nargs="*", choices=sorted(BUILDERS), help="these shapes only")
    args = parser.parse_args(argv)
    for name in args.only or BUILDERS:
        shape = BUILDERS[name](args.out / name)
        print(f"{name}: {shape.what} -> {shape.folder}", file=sys.stderr)
        if args.run:
            print(json.dumps(_run(shape), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
