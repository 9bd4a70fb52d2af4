"""Profile a CRM export and write a starting project file: the library behind `leadscore init`.

Mapping an export onto the project file is a new user's first hurdle. This module reads each
table once (the first rows of a big one), guesses what every column is from generic evidence
(its name, uniqueness, value shapes) and writes YAML whose comments show that evidence, so the
user reviews guesses instead of typing names. What it cannot decide it says, in the header and
as a `# TODO:` at the key.

Privacy: the YAML and the summary never hold values of personal columns or ids. Only counts,
placeholder values ("Select"), label values and constant yes/no values are written.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from leadscore.config import (
    DEFAULT_NEGATIVE,
    DEFAULT_POSITIVE,
    DEFAULT_STATE_WORDS,
    FeatureConfig,
    ProjectConfig,
    config_from_dict,
)
from leadscore.errors import ConfigError, DataError
from leadscore.io.sources import UTC_OFFSET, code_text, parse_dates
from leadscore.io.tables import SAMPLE_ROWS, list_tables, local_source, read_sample
from leadscore.io.uris import is_database_uri, redact_uri
from leadscore.io.validation import PLACEHOLDERS

#: Written for a required key that could not be guessed: it validates, and loading data
#: fails on it with "no column 'TODO'", so a forgotten TODO cannot train silently.
TODO = "TODO"

_ID_TOKENS = frozenset({"id", "ids", "uuid", "guid", "key"})
_NUMBER_TOKENS = frozenset({"number", "no", "nr", "num"})
_LABEL_HINTS = ("converted", "conversion", "won", "label", "target", "outcome", "is_customer")
_CREATED_TOKENS = frozenset(
    {"created", "creation", "create", "signup", "registered", "registration", "added"}
)
_CREATED_PHRASES = (
    "first_seen",
    "sign_up",
    "signed_up",
    "createdate",  # HubSpot
    "first_contact",
    "first_touch",
    "inquiry_date",
)
_CONVERTED_TOKENS = frozenset({"converted", "conversion", "convert", "won", "closed", "close"})
#: A pipeline stage column of opportunities or deals, and the stage values that are a win.
_STAGE_TOKENS = frozenset({"stage", "stagename", "status", "dealstage", "phase"})
_WON_VALUE = re.compile(
    r"(?:closed[\s_-]*)?won|won[\s_-]*(?:closed|deal)|deal[\s_-]*won|受注(?:済み?)?|成約(?:済み?)?",
    re.IGNORECASE,
)
#: Lifecycle stage dates ("Became a Sales Qualified Lead Date", as HubSpot exports them),
#: in the order the conversion is proposed: the MQL practice measures MQL -> SQL, then the
#: opportunity, then the customer.
_STAGE_DATE = re.compile(r"^became_an?_(?P<stage>.+)_date$")
_CONVERSION_STAGES = ("sales_qualified_lead", "sql", "opportunity", "customer")
_TYPE_TOKENS = ("type", "activity", "event", "action", "kind")
_DETAIL_TOKENS = frozenset({"detail", "details", "url", "page", "path", "uri", "description"})
_LEADS_TABLE_TOKENS = frozenset({"lead", "leads", "contact", "contacts", "prospect", "prospects"})
_ACTIVITY_TABLE_TOKENS = frozenset(
    {"activity", "activities", "event", "events", "touch", "touches", "interactions"}
)
_SCRATCH_TABLE_TOKENS = frozenset({"truth", "tmp", "temp", "test", "backup", "old", "copy"})
_PHONE_TOKENS = frozenset({"phone", "mobile", "telephone", "tel", "cell", "fax", "whatsapp"})
_ADDRESS_TOKENS = frozenset(
    {"address", "street", "addr", "zip", "zipcode", "postcode", "postal", "ip"}
)
_OTHER_PERSONAL_TOKENS = frozenset(
    {"birthday", "birthdate", "dob", "birth", "ssn", "passport", "linkedin", "password"}
)
_NAME_PHRASES = ("firstname", "lastname", "fullname", "surname", "first_name", "last_name")
#: Columns that name the CRM's own people (the lead's owner, a sales rep, who created or
#: changed the record): people's names, and assigned as the lead is worked.
_STAFF_TOKENS = frozenset({"owner", "owners", "rep", "salesperson", "assignee", "assigned"})
_STAFF_PHRASES = ("created_by", "modified_by", "updated_by", "changed_by", "assigned_to")
#: "name" next to one of these is a thing's name, not a person's.
_THING_TOKENS = frozenset(
    {
        "company",
        "account",
        "organisation",
        "organization",
        "org",
        "campaign",
        "product",
        "page",
        "course",
        "file",
        "event",
        "source",
        "domain",
        "business",
        "brand",
        "form",
        "list",
        "plan",
        "team",
        "city",
        "country",
        "state",
        "industry",
        "host",
        "table",
    }
)
_JOB_TITLE_NAMES = frozenset({"title", "job", "job_title", "jobtitle", "position", "designation"})

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE_RE = re.compile(
    r"^\s*(?:\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
    rf"|{_MONTHS}\s+\d{{1,2}},?\s+\d{{4}}"
    rf"|\d{{1,2}}\s+{_MONTHS}\s+\d{{4}})",
    re.IGNORECASE,
)
_PLAIN_SCALAR = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_ .()/:+-]*")
_COMMENT_COLUMN = 44


@dataclass
class ColumnProfile:
    """What one column holds, as evidence for the guesses (never personal values)."""

    name: str
    #: id | label | timestamp | numeric | categorical | text | constant | empty
    kind: str
    dtype: str
    rows: int
    n_distinct: int
    #: Share of rows without a value, placeholders counted as missing.
    missing_share: float
    #: Placeholder value -> count ("" is a blank string).
    placeholders: dict[str, int] = field(default_factory=dict)
    #: The most frequent values with counts; only for label, yes/no and constant columns.
    example_counts: dict[str, int] = field(default_factory=dict)
    #: email | name | phone | address | personal | job_title, else None.
    personal: str | None = None
    unique: bool = False
    #: Unique whole numbers: a candidate for the arrival order.
    sequential: bool = False
    #: Rank correlation of the values with the row position (sequential columns only).
    order_correlation: float = 0.0
    #: Its non-missing values are all from the label lists (1/0, yes/no, ...), one of each side.
    binary: bool = False
    #: Timestamps: the share of its filled rows where it is the earliest of the row's dates
    #: (1.0 for a table's only date column).
    earliest_share: float = 0.0
    #: Timestamps: some carry a UTC offset and some do not (their zone must be said).
    mixed_zones: bool = False
    notes: list[str] = field(default_factory=list)
    #: Ids and codes (numbers of few values): the distinct values as text, to find which
    #: column of another table refers to them; kept in memory, never written.
    values: frozenset[str] = field(default_factory=frozenset, repr=False)

    def describe(self) -> str:
        """Kind, distinct count, missing share and placeholders, for a comment."""
        parts = [
            self.kind,
            f"{self.n_distinct:,} distinct",
            f"{_percent(self.missing_share)} missing",
        ]
        if self.placeholders:
            parts.append("placeholders " + _placeholder_text(self.placeholders))
        return ", ".join(parts)


@dataclass
class TableProfile:
    """One table: its columns and what they are guessed to be."""

    name: str
    rows: int
    columns: list[ColumnProfile]
    #: Rows profiled, when fewer than `rows` (a big table).
    sampled: int | None = None
    #: leads | activities | outcomes | empty
    role: str = "leads"
    lead_id: str | None = None
    label: str | None = None
    #: Yes/no columns that could be the label.
    label_candidates: list[str] = field(default_factory=list)
    created_at: str | None = None
    converted_at: str | None = None
    order_column: str | None = None
    activity_lead_id: str | None = None
    occurred_at: str | None = None
    activity_type: str | None = None
    detail: str | None = None
    #: Activities: the types (as the table writes them) whose details are web addresses,
    #: with their row counts.
    page_types: dict[str, int] = field(default_factory=dict)
    #: A small table (a lookup of names): its rows, in memory only.
    small: pd.DataFrame | None = field(default=None, repr=False)
    email: str | None = None
    job_title: str | None = None
    #: Personal columns that are left out entirely (names, phones, addresses).
    personal: list[str] = field(default_factory=list)
    #: What could not be decided, in sentences.
    undecided: list[str] = field(default_factory=list)
    #: Problems the user must fix before leadscore can read the table (encoding, file name).
    warnings: list[str] = field(default_factory=list)
    #: How its file is written (separator, decimal mark, thousands, encoding; Excel sheet),
    #: as `source.files` takes it, and in words; None for a database table or Parquet.
    file_format: dict[str, Any] | None = None
    format_text: str | None = None

    def column(self, name: str) -> ColumnProfile:
        """The profile of column `name`."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def placeholders(self) -> dict[str, int]:
        """Placeholder value -> count over all columns."""
        total: dict[str, int] = {}
        for col in self.columns:
            for value, count in col.placeholders.items():
                total[value] = total.get(value, 0) + count
        return total


# --------------------------------------------------------------------------------------
# Names


def name_tokens(name: str) -> list[str]:
    """Lower-case words of a column name: "Prospect ID" and "ProspectId" -> prospect, id."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [t for t in re.split(r"[^0-9a-zA-Z]+", spaced.lower()) if t]


def _norm(name: str) -> str:
    return "_".join(name_tokens(name))


def _id_hint(name: str) -> bool:
    """Named like an id: an id/uuid/key word anywhere, or number/no as the last word."""
    tokens = name_tokens(name)
    return bool(_ID_TOKENS & set(tokens)) or bool(tokens and tokens[-1] in _NUMBER_TOKENS)


def _label_rank(name: str) -> int | None:
    """Position of the first label hint in the name (lower is stronger), None without one."""
    tokens, norm = set(name_tokens(name)), _norm(name)
    for rank, hint in enumerate(_LABEL_HINTS):
        if hint in tokens or ("_" in hint and hint in norm):
            return rank
    return None


def _created_hint(name: str) -> bool:
    norm = _norm(name)
    return bool(_CREATED_TOKENS & set(name_tokens(name))) or any(
        p in norm for p in _CREATED_PHRASES
    )


def _converted_hint(name: str) -> bool:
    return bool(_CONVERTED_TOKENS & set(name_tokens(name)))


def _personal_by_name(name: str) -> str | None:
    """The kind of personal data a name announces (e-mail is confirmed by content later)."""
    tokens, norm = set(name_tokens(name)), _norm(name)
    if "email" in tokens or "mail" in tokens or "e_mail" in norm:
        return "email"
    if tokens & _PHONE_TOKENS:
        return "phone"
    if tokens & _ADDRESS_TOKENS:
        return "address"
    if tokens & _OTHER_PERSONAL_TOKENS:
        return "personal"
    if any(p in norm for p in _NAME_PHRASES) or ("name" in tokens and not tokens & _THING_TOKENS):
        return "name"
    if tokens & _STAFF_TOKENS or any(p in norm for p in _STAFF_PHRASES):
        return "name"
    if norm in _JOB_TITLE_NAMES or "job_title" in norm or "jobtitle" in norm:
        return "job_title"
    return None


def _state_word(name: str) -> str | None:
    """The leakage guard's state word in a name ("last", "tags", ...), if any."""
    tokens = set(name_tokens(name))
    return next((w for w in DEFAULT_STATE_WORDS if w in tokens), None)


# --------------------------------------------------------------------------------------
# Columns


def _is_text(values: pd.Series) -> bool:
    return not (
        pd.api.types.is_numeric_dtype(values)
        or pd.api.types.is_bool_dtype(values)
        or pd.api.types.is_datetime64_any_dtype(values)
    )


def _label_text(values: pd.Series) -> pd.Series:
    """Values as the label compares them: lower-case text, whole numbers without decimals."""
    if pd.api.types.is_bool_dtype(values):
        return values.map(lambda v: str(bool(v)).lower())
    return values.astype(str).str.strip().str.lower()


def _is_binary(clean: pd.Series) -> bool:
    """Two values, one from each of LabelConfig's default positive and negative lists."""
    distinct = set(_label_text(clean.drop_duplicates()))
    return (
        len(distinct) == 2
        and bool(distinct & set(DEFAULT_POSITIVE))
        and bool(distinct & set(DEFAULT_NEGATIVE))
        and distinct <= set(DEFAULT_POSITIVE) | set(DEFAULT_NEGATIVE)
    )


def _email_share(clean: pd.Series) -> float:
    """Share of a sample that looks like e-mail addresses."""
    sample = clean.iloc[:1000].astype(str)
    return float(sample.str.match(_EMAIL_RE).mean()) if len(sample) else 0.0


def _parses_as_dates(text: pd.Series) -> bool:
    """Most of a sample looks like dates and parses as dates (ISO first, then one format)."""
    sample = text.iloc[:2000]
    if sample.empty or sample.str.match(_DATE_RE).mean() < 0.95:
        return False
    try:
        parsed = _dates(sample)
    except (ValueError, TypeError, OverflowError):
        return False
    return bool(parsed.notna().mean() >= 0.95)


def _whole_numbers(clean: pd.Series) -> pd.Series | None:
    """The values as integers if all of them are whole numbers, else None."""
    if pd.api.types.is_bool_dtype(clean):
        return None
    numbers = (
        clean if pd.api.types.is_numeric_dtype(clean) else pd.to_numeric(clean, errors="coerce")
    )
    if numbers.isna().any() or not np.all(np.isfinite(numbers)) or (numbers % 1 != 0).any():
        return None
    return numbers.astype("int64")


def _order_correlation(numbers: pd.Series) -> float:
    """Rank correlation with row position: near +-1 when the export is sorted by it."""
    if len(numbers) < 3:
        return 0.0
    ranks = numbers.rank().to_numpy()
    corr = np.corrcoef(np.arange(len(ranks)), ranks)[0, 1]
    return 0.0 if not np.isfinite(corr) else float(corr)


def profile_column(values: pd.Series, name: str) -> ColumnProfile:
    """Profile one column: placeholders, distinct values, and its kind.

    The kind is decided in an order that puts the strongest evidence first: nothing there,
    dates, one value, ids, then numbers and categories. The label kind is set later, by the
    table, because it depends on the other columns.
    """
    rows = len(values)
    present = values.dropna()
    placeholders: dict[str, int] = {}
    text = _is_text(values)
    if text:
        stripped = present.astype(str).str.strip()
        mask = stripped.str.lower().isin(PLACEHOLDERS) | (stripped == "")
        if mask.any():
            counts = stripped[mask].value_counts()
            placeholders = {str(k): int(v) for k, v in counts.items()}
        clean = stripped[~mask]
    else:
        clean = present
    n_missing = rows - len(clean)
    n_distinct = int(clean.nunique())
    profile = ColumnProfile(
        name=str(name),
        kind="categorical",
        dtype=str(values.dtype),
        rows=rows,
        n_distinct=n_distinct,
        missing_share=n_missing / rows if rows else 1.0,
        placeholders=placeholders,
        unique=rows > 0 and n_missing == 0 and n_distinct == rows,
    )
    personal = _personal_by_name(profile.name)
    emails = _email_share(clean) if text else 0.0
    if personal == "email" and emails < 0.5:
        personal = None  # "Do Not Email": a flag about e-mail, not an address
    elif personal is None and emails >= 0.8:
        personal = "email"
    if personal == "job_title" and not text:
        personal = None
    profile.personal = personal

    if not len(clean):
        profile.kind = "empty"
        return profile
    # Dates before "constant": one conversion date in a small export is still a date.
    if pd.api.types.is_datetime64_any_dtype(values) or (text and _parses_as_dates(clean)):
        profile.kind = "timestamp"
        if text:
            offset = clean.astype("str").str.contains(UTC_OFFSET, regex=True)
            profile.mixed_zones = bool(offset.any() and not offset.all())
        return profile
    if n_distinct == 1:
        profile.kind = "constant"
        # Shown only when it is a yes/no-like word or 0/1: never an id, name or address.
        if personal is None and _label_text(clean.iloc[:1]).iloc[0] in _LABEL_VALUES:
            profile.example_counts = {str(clean.iloc[0]): len(clean)}
        return profile
    profile.binary = personal is None and n_distinct == 2 and _is_binary(clean)
    # A pipeline stage's values (Closed Won, Closed Lost, ...) say which rows are wins;
    # they are a CRM's picklist, never a person's data.
    stage = text and n_distinct <= 30 and bool(set(name_tokens(profile.name)) & _STAGE_TOKENS)
    if profile.binary or (stage and personal is None):
        counts = clean.value_counts()
        profile.example_counts = {str(k): int(v) for k, v in counts.items()}
    numbers = _whole_numbers(clean) if profile.unique else None
    if numbers is not None:
        profile.order_correlation = _order_correlation(numbers)
        # Handed out one by one: the export is sorted by it, or it has few gaps (not a hash).
        span = int(numbers.max() - numbers.min()) + 1
        profile.sequential = abs(profile.order_correlation) >= 0.8 or span <= 20 * len(numbers)
    _decide_id_or_value_kind(profile, clean, text, numbers)
    if profile.kind == "id" or (profile.kind == "numeric" and n_distinct <= 1000):
        profile.values = frozenset(code_text(clean))
    return profile


_LABEL_VALUES = frozenset(DEFAULT_POSITIVE) | frozenset(DEFAULT_NEGATIVE)


def _decide_id_or_value_kind(
    profile: ColumnProfile, clean: pd.Series, text: bool, numbers: pd.Series | None
) -> None:
    """Set id / numeric / categorical / text for a column with several values."""
    tokens = set(name_tokens(profile.name))
    strong_hint = bool(_ID_TOKENS & tokens)
    uuid = text and bool(clean.iloc[:1000].astype(str).str.match(_UUID_RE).all())
    row_numbers = (
        numbers is not None
        and int(numbers.min()) in (0, 1)
        and int(numbers.max() - numbers.min()) + 1 == profile.rows
    )
    if profile.unique and (_id_hint(profile.name) or uuid):
        profile.kind = "id"
        if uuid:
            profile.notes.append("uuids")
        return
    if profile.unique and row_numbers and not text:
        profile.kind = "id"
        profile.sequential = False  # the export's row numbers, not an arrival order
        profile.notes.append("row numbers (an exported index?)")
        return
    repeats_like_id = (
        strong_hint
        and not profile.binary
        and profile.n_distinct > 2
        and (text or _whole_numbers(clean) is not None)
    )
    if repeats_like_id:
        profile.kind = "id"
        profile.notes.append("repeats: several rows per id")
        return
    if pd.api.types.is_bool_dtype(clean):
        profile.kind = "categorical"
        return
    if not text:
        profile.kind = "numeric"
        return
    if not profile.binary and pd.to_numeric(clean, errors="coerce").notna().all():
        profile.kind = "numeric"
        profile.notes.append("numbers stored as text")
        return
    non_missing = profile.rows * (1 - profile.missing_share)
    high = profile.n_distinct > 1000 or (
        profile.n_distinct > 20 and profile.n_distinct > 0.5 * non_missing
    )
    profile.kind = "text" if high else "categorical"


# --------------------------------------------------------------------------------------
# Tables


def profile_frame(frame: pd.DataFrame, name: str, *, total_rows: int | None = None) -> TableProfile:
    """Profile a table and guess the role of its columns.

    Tables larger than SAMPLE_ROWS are profiled on their first SAMPLE_ROWS rows; `total_rows`
    gives the true count when the caller read only those.
    """
    rows = len(frame) if total_rows is None else max(total_rows, len(frame))
    work = frame.iloc[:SAMPLE_ROWS] if len(frame) > SAMPLE_ROWS else frame
    columns = [profile_column(work[c], str(c)) for c in work.columns]
    _earliest_shares(work, columns)
    table = TableProfile(
        name=name,
        rows=rows,
        columns=columns,
        sampled=len(work) if len(work) < rows else None,
    )
    _guess_fields(table)
    _guess_role(table)
    if table.role == "activities" and table.detail:
        table.page_types = _page_types(work, table)
    if rows <= SMALL_ROWS:
        table.small = work
    if table.role in ("leads", "empty"):
        table.undecided = [
            text for _, text in leads_todos(table, timestamped=bool(table.converted_at))
        ]
    return table


#: Tables this small are kept whole in memory while planning (a lookup of names).
SMALL_ROWS = 5_000
#: A detail that is a web address: a URL, a host name with a path, or a path.
_WEB_ADDRESS = re.compile(r"^(?:https?://|www\.|/|[\w-]+(?:\.[\w-]+)+/)")


def _page_types(frame: pd.DataFrame, table: TableProfile) -> dict[str, int]:
    """Activity types (as written) whose details are web addresses (at least 80 % of their
    rows), with how many such rows: the candidates for page views."""
    types = code_text(frame[table.activity_type].dropna())
    detail = frame.loc[types.index, table.detail].astype("str").str.strip()
    web = detail.str.match(_WEB_ADDRESS).fillna(False).astype(bool)
    by_type = web.groupby(types.to_numpy()).agg(["mean", "sum"])
    pages = by_type[by_type["mean"] >= 0.8]
    return {str(t): int(n) for t, n in pages["sum"].items()}


def _dates(values: pd.Series) -> pd.Series:
    """A column of dates parsed as the loader parses it (`parse_dates`)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True)
    text = values.astype("str").str.strip()
    return parse_dates(text.where(values.notna() & text.ne("")))[0]


def _earliest_shares(frame: pd.DataFrame, columns: list[ColumnProfile]) -> None:
    """For each date column, how often it is the earliest date of its row (the creation date
    of a lead comes before everything else that happens to it)."""
    stamps = [c for c in columns if c.kind == "timestamp"]
    if not stamps:
        return
    parsed = pd.DataFrame({c.name: _dates(frame[c.name]) for c in stamps})
    first = parsed.min(axis=1)
    for c in stamps:
        filled = parsed[c.name].notna()
        c.earliest_share = float((parsed[c.name] <= first)[filled].mean()) if filled.any() else 0.0


def _created_from_content(table: TableProfile) -> ColumnProfile | None:
    """A creation date no name announces: a date filled for (nearly) every lead that is the
    earliest of its row's dates for (nearly) every row, and not named like a conversion."""
    found = [
        c
        for c in table.columns
        if c.kind == "timestamp"
        and c.personal is None  # a date of birth is earliest too
        and not _converted_hint(c.name)
        and c.missing_share <= 0.05
        and c.earliest_share >= 0.95
    ]
    found.sort(key=lambda c: (-c.earliest_share, c.missing_share))
    return found[0] if found else None


def _first(columns: Iterable[ColumnProfile]) -> str | None:
    return next((c.name for c in columns), None)


def _guess_fields(table: TableProfile) -> None:
    """Fill the table's column guesses from the column profiles."""
    cols = table.columns
    ids = [
        c for c in cols if c.kind == "id" and c.unique and (_id_hint(c.name) or "uuids" in c.notes)
    ]
    # Prefer a text id named with id/uuid (a CRM's record id) over a sequential number.
    ids.sort(
        key=lambda c: (
            not (set(name_tokens(c.name)) & _ID_TOKENS),
            c.sequential,
            "uuids" not in c.notes,
        )
    )
    table.lead_id = _first(ids)

    stamps = [c for c in cols if c.kind == "timestamp"]
    table.created_at = _first(c for c in stamps if _created_hint(c.name))
    table.converted_at = _first(
        c for c in stamps if _converted_hint(c.name) and c.name != table.created_at
    )
    if table.converted_at is None:
        _stage_conversion(table, stamps)

    binary = [c for c in cols if c.binary and c.name != table.lead_id]
    table.label_candidates = [c.name for c in binary]
    ranked = sorted(
        (
            (_label_rank(c.name), i, c)
            for i, c in enumerate(binary)
            if _label_rank(c.name) is not None
        ),
        key=lambda t: (t[0], t[1]),
    )
    if ranked and (len(ranked) == 1 or ranked[0][0] != ranked[1][0]):
        table.label = ranked[0][2].name
    elif not ranked and len(binary) == 1:
        table.label = binary[0].name
        binary[0].notes.append("the only yes/no column: check that it is the outcome")
    if table.label:
        table.column(table.label).kind = "label"

    orders = [c for c in cols if c.sequential and c.kind == "id" and _id_hint(c.name)]
    others = [c for c in orders if c.name != table.lead_id]
    others.sort(
        key=lambda c: (name_tokens(c.name)[-1] not in _NUMBER_TOKENS, -abs(c.order_correlation))
    )
    if table.created_at:
        table.order_column = table.created_at
    elif others or orders:
        chosen = (others or orders)[0]
        table.order_column = chosen.name
        chosen.notes.append(_order_note(chosen))
        if chosen.name == table.lead_id:
            chosen.notes.append("assumes ids grow with arrival")

    emails = [c for c in cols if c.personal == "email"]
    table.email = _first(emails)
    table.job_title = _first(c for c in cols if c.personal == "job_title" and c.kind != "empty")
    table.personal = [
        c.name
        for c in cols
        if c.personal is not None and c.name not in (table.email, table.job_title)
    ]

    # A type given as a code (Marketo's activityTypeId): a repeated id named like a type.
    codes = [
        c
        for c in cols
        if c.kind in ("id", "numeric")
        and not c.unique
        and {"type", "id"} <= set(name_tokens(c.name))
        and c.n_distinct <= 1000
    ]
    repeated = [c for c in cols if c.kind == "id" and not c.unique and c not in codes]
    repeated.sort(key=lambda c: "lead" not in name_tokens(c.name))
    table.activity_lead_id = _first(repeated)
    table.occurred_at = _first(
        sorted(
            (c for c in stamps if c.name not in (table.created_at, table.converted_at)),
            key=lambda c: (
                not ({"occurred", "occured", "at", "time", "timestamp"} & set(name_tokens(c.name)))
            ),
        )
    )
    kinds = [c for c in cols if c.kind in ("categorical", "text") and c.personal is None]
    table.activity_type = _first(
        sorted(
            (c for c in kinds if set(_TYPE_TOKENS) & set(name_tokens(c.name))),
            key=lambda c: "type" not in name_tokens(c.name),
        )
    ) or _first(codes)
    table.detail = _first(
        c
        for c in cols
        if (
            _DETAIL_TOKENS & set(name_tokens(c.name))
            # Marketo: the activity's "primary attribute" (a page's URL, a form's name)
            or {"primary", "attribute", "value"} <= set(name_tokens(c.name))
        )
        and c.name != table.activity_type
        and c.kind in ("categorical", "text")
    )


def _stage_conversion(table: TableProfile, stamps: list[ColumnProfile]) -> None:
    """The conversion among lifecycle stage dates: the first of `_CONVERSION_STAGES` the
    table has, with a note naming the others (the user may measure another stage)."""
    stages = {}
    for c in stamps:
        found = _STAGE_DATE.match(_norm(c.name))
        if found:
            stages[found.group("stage")] = c
    chosen = next((stages[s] for s in _CONVERSION_STAGES if s in stages), None)
    if chosen is None:
        return
    table.converted_at = chosen.name
    others = [c.name for c in stages.values() if c is not chosen]
    chosen.notes.append(
        "a lifecycle stage date: the conversion the MQL practice measures is MQL -> SQL "
        "(then opportunity, then customer)"
        + (f"; other stage dates here: {', '.join(others)}" if others else "")
    )


def _order_note(col: ColumnProfile) -> str:
    """Why a number column is taken as the arrival order."""
    corr = col.order_correlation
    if abs(corr) >= 0.8:
        sorted_how = "newest first" if corr < 0 else "oldest first"
        return f"sequential numbers; the export is sorted by it ({sorted_how})"
    return "sequential numbers with few gaps"


def _guess_role(table: TableProfile) -> None:
    """leads, activities (repeating lead id, time and type) or outcomes (id and conversion time)."""
    if table.rows == 0:
        table.role = "empty"
    elif table.activity_lead_id and table.occurred_at and table.activity_type:
        table.role = "activities"
    elif (
        table.converted_at and len(table.columns) <= 3 and (table.lead_id or table.activity_lead_id)
    ):
        table.role = "outcomes"
    else:
        table.role = "leads"


def leads_todos(table: TableProfile, timestamped: bool) -> list[tuple[str, str]]:
    """(config key, sentence) for each guess missing to use `table` as the leads table."""
    todos: list[tuple[str, str]] = []
    if table.rows == 0:
        todos.append(
            (
                "source.tables.leads",
                f"table '{table.name}' is empty: nothing to guess from; fill in its columns "
                "by hand or point init at the full export",
            )
        )
    if table.lead_id is None and (timestamped or table.rows == 0):
        todos.append(
            (
                "source.columns.lead_id",
                f"no column of '{table.name}' is unique, complete and named like an id "
                "(id, uuid, key, number): set columns.lead_id",
            )
        )
    if timestamped:
        if table.created_at is None:
            todos.append(
                (
                    "source.columns.created_at",
                    f"no date column of '{table.name}' is named like a creation date "
                    "(created, signup, first_seen): set columns.created_at",
                )
            )
        return todos
    if table.label is None:
        if len(table.label_candidates) > 1:
            shown = _names(table.label_candidates)
            todos.append(
                (
                    "source.label.column",
                    f"several yes/no columns could be the label ({shown}) and none is named "
                    "like one (converted, won, target, ...): set label.column to the one that "
                    "says whether the lead converted",
                )
            )
        else:
            todos.append(
                (
                    "source.label.column",
                    f"no yes/no column (1/0, yes/no, true/false) in '{table.name}' to use as "
                    "the label, and no conversion date: set label.column",
                )
            )
    if table.order_column is None and table.rows > 0:
        todos.append(
            (
                "split.order_column",
                "nothing orders the leads by arrival (no creation date, no sequential number): "
                "the split is random; if a column does, set split.order_column and "
                "split.method: order",
            )
        )
    return todos


# --------------------------------------------------------------------------------------
# Reading


def profile_source(uri: str, tables: list[str] | None = None) -> dict[str, TableProfile]:
    """Profile tables of a folder of .csv/.parquet files or of a database URL.

    `tables` None profiles every table there. A single .csv/.parquet file stands for its
    folder and that one table.
    """
    names = list(tables) if tables else list_tables(uri)
    if not names:
        where = redact_uri(uri)
        raise DataError(
            f"no tables found in {where}",
            "pass the folder of your export (.csv, .tsv, .xlsx, .jsonl or .parquet files) "
            "or a database URL",
        )
    profiles: dict[str, TableProfile] = {}
    for name in names:
        frame, rows, problems = read_sample(uri, name)
        profile = profile_frame(frame, name, total_rows=rows)
        profile.warnings.extend(problems)
        profile.file_format = frame.attrs.get("file_format")
        profile.format_text = frame.attrs.get("format")
        if profile.file_format is not None and any(c.mixed_zones for c in profile.columns):
            # Written, so the file reads; which zone the times without an offset are in is
            # the user's to say (the TODO).
            profile.file_format = {**profile.file_format, "timezone": "UTC"}
        profiles[name] = profile
    return profiles


# --------------------------------------------------------------------------------------
# Planning the config


class _LeftOut(NamedTuple):
    name: str
    reason: str  # short: personal, empty, constant, ...
    sentence: str
    numeric: bool  # listed under attributes.numeric (else categorical)


@dataclass
class _Plan:
    """Everything the YAML says, decided from the profiles (pure, no I/O)."""

    leads: TableProfile | None
    activities: TableProfile | None = None
    #: An activities table a flat export cannot use (no conversion dates).
    unusable_activities: TableProfile | None = None
    outcomes: TableProfile | None = None
    flat: bool = True
    activity_lead_id: str | None = None
    outcome_lead_id: str | None = None
    converted_at: str | None = None
    #: An outcomes table in pipeline stages: the stage column and its winning values.
    outcome_stage: tuple[str, list[str]] | None = None
    #: Activity types given as ids: the table that names them, its id and name columns.
    activity_types: tuple[TableProfile, str, str] | None = None
    #: The activity type of page views, where it is not the default `page_view`.
    page_activity_type: str | None = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    #: Columns of the leads table written commented out, with the reason.
    left_out: list[_LeftOut] = field(default_factory=list)
    missing_values: dict[str, tuple[int, int]] = field(default_factory=dict)
    todos: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def todo(self, key: str) -> list[str]:
        return [text for k, text in self.todos if k == key]


def _leads_score(table: TableProfile) -> tuple:
    tokens = set(name_tokens(table.name))
    return (
        -bool(tokens & _SCRATCH_TABLE_TOKENS),
        table.role in ("leads", "empty"),
        _norm(table.name) in ("leads", "lead", "contacts", "prospects"),
        bool(tokens & _LEADS_TABLE_TOKENS),
        table.lead_id is not None,
        table.label is not None or table.created_at is not None,
        len(table.columns),
        table.rows,
    )


def _plan(profiles: dict[str, TableProfile]) -> _Plan:
    """Choose the leads, activities and outcomes tables and sort the leads' columns."""
    tables = list(profiles.values())
    if not tables:
        return _Plan(leads=None, todos=[("source.tables.leads", "no tables were profiled")])
    ranked = sorted(tables, key=_leads_score, reverse=True)
    leads = ranked[0]
    plan = _Plan(leads=leads)
    rest = [t for t in tables if t is not leads]
    if len(ranked) > 1 and _leads_score(ranked[0]) == _leads_score(ranked[1]):
        plan.todos.append(
            (
                "source.tables.leads",
                f"tables '{ranked[0].name}' and '{ranked[1].name}' look equally like the leads "
                f"table: picked '{leads.name}'",
            )
        )

    activity_tables = [t for t in rest if t.role == "activities"]
    activity_tables.sort(
        key=lambda t: (bool(set(name_tokens(t.name)) & _ACTIVITY_TABLE_TOKENS), t.rows),
        reverse=True,
    )
    if activity_tables:
        plan.activities = activity_tables[0]
        plan.activity_lead_id = _matching_id(plan.activities, leads)
        plan.activity_types = _type_names(
            plan.activities,
            [t for t in rest if t.small is not None and t is not plan.activities],
        )
        _page_activity_type(plan)

    if leads.converted_at:
        plan.converted_at = leads.converted_at
    else:
        outcome_tables = [t for t in rest if t.converted_at and t is not plan.activities]
        outcome_tables.sort(
            key=lambda t: (t.role == "outcomes", "outcome" in _norm(t.name)), reverse=True
        )
        if outcome_tables:
            plan.outcomes = outcome_tables[0]
            plan.converted_at = plan.outcomes.converted_at
            plan.outcome_lead_id = _matching_id(plan.outcomes, leads)
            plan.outcome_stage = _won_stages(plan.outcomes)
    plan.flat = plan.converted_at is None
    if plan.flat and plan.activities is not None:
        # Without conversion times nothing says which activities came before the outcome.
        plan.notes.append(
            f"table '{plan.activities.name}' looks like activities but is not used: a flat "
            "export has no conversion dates, so activities after the outcome would leak "
            "into features; map conversion dates to use it"
        )
        plan.unusable_activities, plan.activities = plan.activities, None
        plan.activity_lead_id = plan.activity_types = plan.page_activity_type = None
    if not plan.flat and leads.created_at is None:
        guess = _created_from_content(leads)
        if guess is not None:
            leads.created_at = leads.order_column = guess.name
            guess.notes.append(
                f"no name says creation: the earliest date of {guess.earliest_share:.0%} of "
                f"the rows, filled for {1 - guess.missing_share:.0%}; taken as the creation date"
            )
    plan.todos.extend(leads_todos(leads, timestamped=not plan.flat))
    for table in (plan.activities, plan.outcomes):
        if table is not None and table.rows == 0:
            plan.notes.append(f"table '{table.name}' is empty")
    if plan.activities is not None and plan.activity_lead_id is None:
        plan.todos.append(
            (
                "source.columns.activity_lead_id",
                f"no column of '{plan.activities.name}' is named like a lead id: set "
                "columns.activity_lead_id",
            )
        )
    if plan.outcomes is not None and plan.outcome_lead_id is None:
        plan.todos.append(
            (
                "source.columns.outcome_lead_id",
                f"no column of '{plan.outcomes.name}' is named like a lead id: set "
                "columns.outcome_lead_id",
            )
        )
    for key, table in (
        ("source.tables.leads", leads),
        ("source.tables.activities", plan.activities),
        ("source.tables.outcomes", plan.outcomes),
    ):
        if table is not None:
            plan.todos.extend((key, w) for w in table.warnings)
    names = plan.activity_types[0] if plan.activity_types else None
    used = {id(t) for t in (leads, plan.activities, plan.outcomes, names) if t is not None}
    plan.unused = [t.name for t in tables if id(t) not in used]
    _sort_attributes(plan, leads)
    _collect_missing_values(plan, [t for t in tables if id(t) in used])
    return plan


def _won_stages(table: TableProfile) -> tuple[str, list[str]] | None:
    """The stage column of an outcomes table whose rows are in several stages (open, won,
    lost), and its winning values; None when every row is a win (a table of won deals) or
    no column is a stage."""
    for col in table.columns:
        if not col.example_counts or not set(name_tokens(col.name)) & _STAGE_TOKENS:
            continue
        won = [v for v in col.example_counts if _WON_VALUE.fullmatch(v.strip())]
        if won and len(won) < len(col.example_counts):
            return col.name, won
    return None


def _matching_id(table: TableProfile, leads: TableProfile) -> str | None:
    """The column of `table` that refers to a lead: an id column whose values are the
    leads' ids (most of them found among the leads' ids: activities and outcomes refer to
    leads, not the other way round), not the table's own key, preferring a name with
    "lead" in it, then the lead id's own name, then the most matches; without such values,
    by name."""
    lead_id = leads.lead_id
    ids = leads.column(lead_id).values if lead_id else frozenset()
    found = []
    for col in table.columns:
        if col.kind != "id" or not col.values or not ids:
            continue
        matched = len(col.values & ids)
        if matched >= 0.5 * len(col.values):
            lead = "lead" in name_tokens(col.name)
            # The table's own key (a deal's id 1..K) overlaps small lead ids by chance.
            own_key = col.unique and col.name == table.lead_id and not lead
            same = col.name.lower() == lead_id.lower()
            found.append((not own_key, lead, same, matched, col.name))
    if found:
        return max(found)[4]
    names = [c.name for c in table.columns]
    if lead_id in names:
        return lead_id
    lowered = {n.lower(): n for n in names}
    if lead_id and lead_id.lower() in lowered:
        return lowered[lead_id.lower()]
    return table.activity_lead_id or table.lead_id


def _type_names(
    activities: TableProfile, small: list[TableProfile]
) -> tuple[TableProfile, str, str] | None:
    """The table that names the activity types, where the activities give them as ids: a
    small table with a unique id column holding (nearly) every type id, and a text column
    of names (named like a name, else its first)."""
    column = activities.column(activities.activity_type) if activities.activity_type else None
    if column is None or column.kind not in ("id", "numeric") or not column.values:
        return None
    best = None
    for table in small:
        # A lookup of types says so in its name (Marketo: activity types); a small table of
        # people (staff with ids 1..30) must never name the activities.
        typed = {"type", "types"} & set(name_tokens(table.name))
        if table.converted_at or not table.columns:
            continue
        for col in table.columns:
            if col.kind != "id" or not col.unique or not (typed or "type" in name_tokens(col.name)):
                continue
            covered = len(col.values & column.values) / len(column.values)
            if covered < 0.9:
                continue
            # A column called "name" in a table of types names types, not people.
            texts = [
                c
                for c in table.columns
                if c.kind in ("categorical", "text") and c.personal in (None, "name")
                and c is not col
            ]  # fmt: skip
            texts.sort(key=lambda c: "name" not in name_tokens(c.name))
            if texts and (best is None or covered > best[0]):
                best = (covered, table, col.name, texts[0].name)
    return best[1:] if best else None


#: Words of an activity type's name that say "page view" (Visit Webpage, Page View, ...).
_PAGE_WORDS = frozenset({"page", "pages", "webpage", "pageview", "visit", "view", "web"})


def _page_activity_type(plan: _Plan) -> None:
    """The page-view type, by its name (through the table of type names, if any), where it
    is not the default: among the types whose details are web addresses, the default
    `page_view` if it is one (e-mail clicks carry URLs too), else one named like a page
    view, else the one with the most such rows."""
    found = plan.activities.page_types
    if not found:
        return
    names: dict[str, str] = {}
    if plan.activity_types is not None:
        table, id_column, name_column = plan.activity_types
        rows = table.small.dropna(subset=[id_column])
        names = dict(zip(code_text(rows[id_column]), rows[name_column].astype("str").str.strip(),
                         strict=True))  # fmt: skip
    named = {names.get(t, t if not names else f"type {t}"): n for t, n in found.items()}
    default = FeatureConfig().page_activity_type
    if default in named:
        return
    worded = {t: n for t, n in named.items() if set(name_tokens(t)) & _PAGE_WORDS}
    pool = worded or named
    plan.page_activity_type = max(pool, key=lambda t: (pool[t], t))


def _mapped(table: TableProfile, plan: _Plan) -> set[str]:
    """Columns of the leads table that a key other than the attribute lists uses."""
    used = {table.lead_id, table.created_at, table.email, table.job_title}
    used |= {table.label, table.order_column} if plan.flat else {table.converted_at}
    return {name for name in used if name is not None}


def _left_out_reason(col: ColumnProfile) -> tuple[str, str] | None:
    """(short reason, sentence) for a column that is no attribute, None for one that is."""
    if col.personal is not None:
        return "personal", f"personal data, left out ({col.personal})"
    if col.kind == "empty":
        return "empty", "empty: no values"
    if col.kind == "constant":
        shown = next(iter(col.example_counts), None)
        what = "one value" if shown is None else _scalar_text(shown)
        return "constant", f"constant: {what} in every row"
    if col.kind == "id":
        return "id-like", "id-like: " + (
            "; ".join(col.notes) or "unique per row"
        ) + ", not a signal"
    if col.kind == "timestamp":
        return "date", "a date: not an attribute"
    if col.kind == "text":
        return "high-cardinality", "high cardinality (free text or an id?)"
    if col.kind == "label":
        return "label", "the label, not an attribute"
    return None


def _sort_attributes(plan: _Plan, table: TableProfile) -> None:
    """Attributes: numbers and categories in; the rest commented out with the reason."""
    mapped = _mapped(table, plan)
    for col in table.columns:
        if col.name in mapped:
            continue
        reason = _left_out_reason(col)
        if reason is not None:
            plan.left_out.append(_LeftOut(col.name, *reason, not _is_text_dtype(col.dtype)))
        elif col.kind == "numeric":
            plan.numeric.append(col.name)
        else:
            plan.categorical.append(col.name)


def _is_text_dtype(dtype: str) -> bool:
    return not re.match(r"(u?int|float|bool|datetime|Int|UInt|Float|boolean)", dtype)


def _collect_missing_values(plan: _Plan, tables: list[TableProfile]) -> None:
    """Placeholders actually seen in text columns: value -> (count, columns)."""
    seen: dict[str, tuple[int, int]] = {}
    for table in tables:
        for col in table.columns:
            if col.personal is not None and col.personal != "job_title":
                continue
            for value, count in col.placeholders.items():
                if value == "":
                    continue  # blank strings are always missing
                total, ncols = seen.get(value, (0, 0))
                seen[value] = (total + count, ncols + 1)
    plan.missing_values = dict(sorted(seen.items(), key=lambda kv: -kv[1][0]))


# --------------------------------------------------------------------------------------
# Rendering


def _scalar(value: str | None) -> str:
    """A YAML scalar: plain when that reads back as the same string, else JSON-quoted."""
    if value is None:
        return "null"
    text = str(value)
    if _PLAIN_SCALAR.fullmatch(text) and text == text.strip():
        try:
            if yaml.safe_load(text) == text:
                return text
        except yaml.YAMLError:
            pass
    return json.dumps(text, ensure_ascii=not text.isprintable())


def _scalar_text(value: str | None) -> str:
    return json.dumps(value, ensure_ascii=False) if value is not None else "null"


def _clean_comment(text: str) -> str:
    """A comment stays on its line and holds only printable characters."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _percent(share: float) -> str:
    value = 100 * share
    if value == 0:
        return "0%"
    if value < 0.1:
        return "<0.1%"
    return f"{value:.1f}%".replace(".0%", "%")


def _placeholder_text(placeholders: dict[str, int]) -> str:
    return ", ".join(
        f"{_scalar_text(v) if v else '(blank)'} x{n:,}"
        for v, n in sorted(placeholders.items(), key=lambda kv: -kv[1])
    )


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class _Writer:
    """Collects YAML lines; a line's comment starts at a fixed column for readability."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def comment(self, text: str, indent: int = 0) -> None:
        self.lines.append(
            " " * indent + "# " + _clean_comment(text) if text else " " * indent + "#"
        )

    def line(self, indent: int, body: str, comment: str | None = None) -> None:
        text = " " * indent + body
        if comment:
            text = text.ljust(_COMMENT_COLUMN - 1) + " # " + _clean_comment(comment)
        self.lines.append(text)

    def todos(self, indent: int, texts: list[str]) -> None:
        for text in texts:
            self.comment(f"TODO: {text}", indent)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _column_comment(
    table: TableProfile | None, name: str | None, extra: str = "", notes: bool = True
) -> str | None:
    """The evidence for a mapped column; `notes` False for activity and outcome tables,
    whose columns' notes speak of their own table, not of the mapping."""
    if table is None or name is None:
        return extra or None
    try:
        col = table.column(name)
    except KeyError:
        return extra or None
    parts = [col.describe(), *(col.notes if notes else [])]
    if extra:
        parts.append(extra)
    return "; ".join(parts)


def _label_comment(table: TableProfile, name: str) -> str:
    col = table.column(name)
    # Label values come from the label lists (1/0, yes/no): safe to show as they are.
    values = ", ".join(f"{k} x{v:,}" for k, v in col.example_counts.items())
    open_leads = f"{_percent(col.missing_share)} missing (open leads, scored not trained on)"
    parts = [f"values {values}", open_leads if col.missing_share else "none missing", *col.notes]
    return "; ".join(parts)


def project_todos(profiles: dict[str, TableProfile]) -> list[str]:
    """What the written project file leaves to the user: exactly its `# TODO:` lines."""
    return [text for _, text in _plan(profiles).todos]


def render_config(
    profiles: dict[str, TableProfile],
    uri: str,
    *,
    source_label: str | None = None,
    every_key: bool = True,
) -> str:
    """The project file as YAML text, with the evidence for each guess as comments.

    `uri` is written as the source (with any password masked); `source_label` names the
    source in the header when `uri` is relative to the file. The text always validates as a
    project file; keys that could not be guessed hold a placeholder and a `# TODO:`.
    `every_key` also writes every key init does not decide, at its default (see
    `_render_defaults`); without it those keys are left out and their defaults apply.
    """
    plan = _plan(profiles)
    out = _Writer()
    _render_header(out, profiles, plan, source_label or uri)
    out.lines.append("source:")
    shown_uri = redact_uri(uri)
    out.line(
        2,
        f"uri: {_scalar(shown_uri)}",
        "password masked: set LEADSCORE_SOURCE_URI to the full URL" if shown_uri != uri else None,
    )
    _render_tables(out, plan)
    _render_columns(out, plan)
    leads = plan.leads
    if plan.flat:
        out.line(2, "label:")
        out.todos(4, plan.todo("source.label.column"))
        label = leads.label if leads else None
        out.line(
            4,
            f"column: {_scalar(label or TODO)}",
            _label_comment(leads, label) if leads and label else "the outcome: converted or not",
        )
    if plan.outcome_stage is not None:
        column, won = plan.outcome_stage
        stages = plan.outcomes.column(column).example_counts
        others = [v for v in stages if v not in won]
        out.line(2, "outcome_stage:", "deals in stages: a conversion is a won deal")
        out.todos(
            4,
            [
                f"conversion = a deal reaching {', '.join(won)} (dated by "
                f"{plan.converted_at}); rows in {_names(others)} convert no lead. To measure "
                "lead -> opportunity instead, delete outcome_stage and set "
                "columns.converted_at to the deal's creation date"
            ],
        )
        out.line(4, f"column: {_scalar(column)}", _column_comment(plan.outcomes, column))
        out.line(4, f"converted: [{', '.join(_scalar(v) for v in won)}]")
    if plan.activity_types is not None:
        table, id_column, name_column = plan.activity_types
        out.line(
            2, "activity_types:", f"the activity log gives types by id; '{table.name}' names them"
        )
        out.line(4, f"table: {_scalar(table.name)}", _count(table.rows, "row"))
        out.line(4, f"id: {_scalar(id_column)}", _column_comment(table, id_column, notes=False))
        out.line(4, f"name: {_scalar(name_column)}", _column_comment(table, name_column))
    _render_missing_values(out, plan)
    _render_files(out, profiles)
    _render_attributes(out, plan)
    if not plan.flat:
        out.line(0, "horizon_days: 90", "a conversion within this many days counts")
    _render_split(out, plan)
    if plan.page_activity_type is not None:
        out.lines.append("features:")
        out.line(
            2,
            f"page_activity_type: {_scalar(plan.page_activity_type)}",
            "the activity type whose details are web addresses: page views",
        )
    if every_key:
        _render_defaults(out)
        return out.text()
    out.lines.append("")
    out.comment(
        "Other sections (model, mlflow, publish, tiers, report, leakage, validation) keep "
        "their defaults;"
    )
    out.comment("the README section 'The project file' lists every key.")
    return out.text()


def _render_files(out: _Writer, profiles: dict[str, TableProfile]) -> None:
    """How each file was found to be written, so every run reads it the same way."""
    found = {name: p.file_format for name, p in profiles.items() if p.file_format}
    if not found:
        return
    out.line(2, "files:", "how each file is written, as init found it (change it if it is wrong)")
    for name, marks in found.items():
        out.line(4, f"{_scalar(name)}:")
        for key, value in marks.items():
            if key == "timezone":
                mixed = [c.name for c in profiles[name].columns if c.mixed_zones]
                out.todos(
                    6,
                    [
                        f"{_names(mixed)} mix times with and without a UTC offset: those "
                        "without one are read in this zone; set the one they were written in "
                        "(e.g. Europe/Berlin, Asia/Tokyo)"
                    ],
                )
            out.line(6, f"{key}: {_yaml_scalar(value)}")


def _render_header(out: _Writer, profiles: dict[str, TableProfile], plan: _Plan, uri: str) -> None:
    out.comment(f"leadscore project file written by `leadscore init` from {redact_uri(uri)}")
    out.comment(
        "Every guess is commented with its evidence (kind, distinct values, missing share)."
    )
    out.comment("Review it, resolve each TODO, then train with `leadscore train -c <this file>`.")
    out.comment("")
    for table in profiles.values():
        role = _role_of(table, plan)
        out.comment(
            f"table {table.name}: {_count(table.rows, 'row')}, "
            f"{_count(len(table.columns), 'column')} -> {role}"
        )
        if table.sampled:
            out.comment(f"  sampled: types guessed from the first {table.sampled:,} rows", 0)
        if table.format_text:
            out.comment(f"  read as: {table.format_text}", 0)
    if plan.missing_values:
        seen = ", ".join(
            f"{_scalar_text(v)} (x{n:,} in {_count(c, 'column')})"
            for v, (n, c) in plan.missing_values.items()
        )
        out.comment(f"read as missing (source.missing_values): {seen}")
    out.comment(
        "flat export: one row per lead with a label column, no conversion dates"
        if plan.flat
        else "timestamped export: creation and conversion dates, snapshots by time"
    )
    for note in plan.notes:
        out.comment(note)
    if plan.todos:
        out.comment("Could not decide:")
        for _, text in plan.todos:
            out.comment(f"  - {text}")
    else:
        out.comment("Could not decide: nothing; still check the guesses below.")


def _role_of(table: TableProfile, plan: _Plan) -> str:
    if table is plan.leads:
        return "leads"
    if table is plan.activities:
        return "activities"
    if table is plan.unusable_activities:
        return "activities, not used (flat export)"
    if table is plan.outcomes:
        return "outcomes"
    if plan.activity_types is not None and table is plan.activity_types[0]:
        return "activity type names"
    return "not used"


def _render_tables(out: _Writer, plan: _Plan) -> None:
    leads = plan.leads
    out.line(2, "tables:")
    out.todos(4, plan.todo("source.tables.leads"))
    out.line(
        4,
        f"leads: {_scalar(leads.name if leads else TODO)}",
        f"{_count(leads.rows, 'row')}, {_count(len(leads.columns), 'column')}" if leads else None,
    )
    out.todos(4, plan.todo("source.tables.activities"))
    act = plan.activities
    if act is not None:
        act_comment = _count(act.rows, "row")
    elif plan.unusable_activities is not None:
        act_comment = f"'{plan.unusable_activities.name}' needs conversion dates (see header)"
    else:
        act_comment = "no table of dated activities per lead found"
    out.line(4, f"activities: {_scalar(act.name if act else None)}", act_comment)
    out.todos(4, plan.todo("source.tables.outcomes"))
    if plan.outcomes is not None:
        outcome_comment = _count(plan.outcomes.rows, "row")
    elif plan.flat:
        outcome_comment = "flat export: the label column says who converted"
    else:
        outcome_comment = "conversion dates are on the leads table"
    out.line(
        4,
        f"outcomes: {_scalar(plan.outcomes.name if plan.outcomes else None)}",
        outcome_comment,
    )


def _render_columns(out: _Writer, plan: _Plan) -> None:
    leads = plan.leads
    out.line(2, "columns:")
    out.todos(4, plan.todo("source.columns.lead_id"))
    lead_id = leads.lead_id if leads else None
    if plan.flat and leads is not None and lead_id is None and leads.rows > 0:
        out.line(
            4,
            "lead_id: null",
            "no column is unique, complete and named like an id: leads are named by their "
            "row in the file (row-1 is the first data row); keep the row order, or map an id",
        )
    else:
        out.line(4, f"lead_id: {_scalar(lead_id or TODO)}", _column_comment(leads, lead_id))
    out.todos(4, plan.todo("source.columns.created_at"))
    created = leads.created_at if leads else None
    if plan.flat:
        out.line(
            4,
            f"created_at: {_scalar(created)}",
            _column_comment(leads, created) if created else "no creation date found",
        )
    else:
        out.line(4, f"created_at: {_scalar(created or TODO)}", _column_comment(leads, created))
    act = plan.activities
    if act is not None:
        out.todos(4, plan.todo("source.columns.activity_lead_id"))
        out.line(
            4,
            f"activity_lead_id: {_scalar(plan.activity_lead_id or TODO)}",
            _column_comment(act, plan.activity_lead_id, notes=False),
        )
        out.line(
            4,
            f"occurred_at: {_scalar(act.occurred_at)}",
            _column_comment(act, act.occurred_at, notes=False),
        )
        out.line(
            4,
            f"activity_type: {_scalar(act.activity_type)}",
            _column_comment(act, act.activity_type, notes=False),
        )
        out.line(
            4,
            f"detail: {_scalar(act.detail)}",
            _column_comment(act, act.detail, notes=False)
            if act.detail
            else "no page/url/detail column found",
        )
    if plan.outcomes is not None:
        out.todos(4, plan.todo("source.columns.outcome_lead_id"))
        out.line(
            4,
            f"outcome_lead_id: {_scalar(plan.outcome_lead_id or TODO)}",
            _column_comment(plan.outcomes, plan.outcome_lead_id, notes=False),
        )
    where = plan.outcomes or leads
    if plan.flat:
        out.line(4, "converted_at: null", "no conversion date: a flat export")
    else:
        out.line(
            4,
            f"converted_at: {_scalar(plan.converted_at)}",
            _column_comment(where, plan.converted_at, notes=where is leads),
        )


def _render_missing_values(out: _Writer, plan: _Plan) -> None:
    if not plan.missing_values:
        out.line(2, "missing_values: []", "no placeholder values seen (blanks are always missing)")
        return
    out.line(2, "missing_values:", "placeholders seen in text columns, read as missing")
    for value, (count, ncols) in plan.missing_values.items():
        out.line(4, f"- {_scalar(value)}", f"x{count:,} in {_count(ncols, 'column')}")


def _render_attributes(out: _Writer, plan: _Plan) -> None:
    leads = plan.leads
    out.line(2, "attributes:", "this block replaces the default one: a key left out maps nothing")
    for key, names, numeric in (
        ("numeric", plan.numeric, True),
        ("categorical", plan.categorical, False),
    ):
        out.line(4, f"{key}:" if names else f"{key}: []")
        for name in names:
            col = leads.column(name)
            notes = list(col.notes)
            word = _state_word(name)
            if word:
                notes.append(f"'{word}' in name: the leakage guard drops it (see leakage.keep)")
            out.line(6, f"- {_scalar(name)}", "; ".join([col.describe(), *notes]))
        for left in plan.left_out:
            if left.numeric == numeric and left.reason != "personal":
                out.line(6, f"# - {_scalar(left.name)}", left.sentence)
    email = leads.email if leads else None
    title = leads.job_title if leads else None
    out.line(
        4,
        f"job_title: {_scalar(title)}",
        _column_comment(leads, title, "values not shown") if title else "no job title column found",
    )
    out.line(
        4,
        f"email: {_scalar(email)}",
        _column_comment(leads, email, "only the domain is used; values not shown")
        if email
        else "no e-mail column found",
    )
    for left in plan.left_out:
        if left.reason == "personal":
            out.comment(f"{_scalar(left.name)}: {left.sentence}", 4)


def _render_split(out: _Writer, plan: _Plan) -> None:
    leads = plan.leads
    out.line(0, "split:")
    if not plan.flat:
        out.line(2, "method: time", "snapshots by date: the newest cohort is the test set")
        return
    order = leads.order_column if leads else None
    out.todos(2, plan.todo("split.order_column"))
    if order:
        out.line(2, "method: order", "oldest leads train, the newest are the test cohort")
        out.line(2, f"order_column: {_scalar(order)}", _column_comment(leads, order))
    else:
        out.line(2, "method: random", "seeded random split: nothing orders the leads by arrival")


# --------------------------------------------------------------------------------------
# Every key init does not decide, at its default
#
# Generated from ProjectConfig, so a section or key added there appears here by itself.

#: A mapping key as init writes it: `key:` or `key: value`, never commented out.
_KEY_LINE = re.compile(r"( *)([A-Za-z_][A-Za-z0-9_]*):(?: |$)")
#: A flow list (`[a, b]`) no longer than this; longer lists are written one item a line.
_FLOW_WIDTH = 96


def _section_of(annotation: Any) -> type[BaseModel] | None:
    """The section model of a field typed `Section` or `Section | None`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The keys a project file may hold in this section (`base_dir` is not one)."""
    return {name: f for name, f in model.model_fields.items() if not f.exclude}


@functools.cache
def _field_notes(model: type[BaseModel]) -> dict[str, list[str]]:
    """The `#:` comment lines written above each field in the section's source: its docs."""
    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):  # no source (a frozen install): descriptions only
        return {}
    notes: dict[str, list[str]] = {}
    pending: list[str] = []
    for line in source.splitlines()[1:]:
        body = line.strip()
        if line[:4] != "    " or line[4:5] == " ":
            continue  # not a line of the class body (a continuation, a nested block)
        if body.startswith("#:"):
            pending.append(body[2:].strip())
            continue
        match = _KEY_LINE.match(body)
        if match and pending and match.group(2) in model.model_fields:
            notes[match.group(2)] = pending
        pending = []
    return notes


def _section_doc(model: type[BaseModel]) -> list[str]:
    doc = model.__dict__.get("__doc__")
    return inspect.cleandoc(doc).splitlines() if doc else []


def _yaml_scalar(value: Any) -> str:
    """One YAML scalar that reads back as `value` (a JSON-like value)."""
    if isinstance(value, str):
        return _scalar(value)
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def _reads_back(text: str, value: Any) -> bool:
    try:
        return yaml.safe_load(f"k: {text}") == {"k": value}
    except yaml.YAMLError:
        return False


def _render_value(
    out: _Writer, indent: int, name: str, value: Any, comment: str | None = None
) -> None:
    """`name: value` with a JSON-like value: scalars inline, short lists as `[a, b]`,
    longer lists one item a line, mappings as a block."""
    head = f"{_scalar(name)}:"
    if isinstance(value, dict) and value:
        out.line(indent, head, comment)
        for key, item in value.items():
            _render_value(out, indent + 2, str(key), item)
        return
    if isinstance(value, list) and value:
        if all(not isinstance(v, dict | list) for v in value):
            flow = "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
            if indent + len(head) + len(flow) < _FLOW_WIDTH and _reads_back(flow, value):
                out.line(indent, f"{head} {flow}", comment)
                return
            out.line(indent, head, comment)
            for item in value:
                out.line(indent + 2, f"- {_yaml_scalar(item)}")
            return
        text = json.dumps(value, ensure_ascii=False)  # nested lists: JSON is YAML
    elif isinstance(value, dict | list):
        text = "{}" if isinstance(value, dict) else "[]"
    else:
        text = _yaml_scalar(value)
    out.line(indent, f"{head} {text}", comment)


def _render_key(
    out: _Writer, model: type[BaseModel], name: str, value: Any, indent: int, *, top: bool = False
) -> None:
    """One key of `model` at `value` (its default), its documentation as comments."""
    info = model.model_fields[name]
    section = _section_of(info.annotation)
    if top:
        out.lines.append("")
    for note in _field_notes(model).get(name, []):
        out.comment(note, indent)
    if section is not None and isinstance(value, BaseModel):
        for line in _section_doc(section):
            out.comment(line, indent)
        out.line(indent, f"{name}:", info.description)
        for key in _fields(section):
            _render_key(out, section, key, getattr(value, key), indent + 2)
        return
    if section is not None and value is None:
        # Any value here, even the section's own defaults, would switch the section on:
        # show its keys commented out.
        if name not in _field_notes(model):
            for line in _section_doc(section):
                out.comment(line, indent)
        out.line(indent, f"{name}: null", info.description or "off; to use it, write it as below")
        example = _Writer()
        example.line(indent, f"{name}:")
        for key, sub in _fields(section).items():
            default = sub.get_default(call_default_factory=True)
            if default is PydanticUndefined:
                example.line(indent + 2, f"{key}:", "required")
            else:
                _render_value(example, indent + 2, key, to_jsonable_python(default))
        out.lines.extend(" " * indent + "# " + line[indent:] for line in example.lines)
        return
    if value is PydanticUndefined:  # a required key init did not write: show, do not guess
        out.comment(f"{name}:", indent)
        return
    _render_value(out, indent, name, to_jsonable_python(value), info.description)


def _block_ends(lines: list[str]) -> dict[tuple[str, ...], int]:
    """For each mapping key init wrote (its path), the index of its block's last line."""
    ends: dict[tuple[str, ...], int] = {}
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        match = None if line.lstrip().startswith("#") else _KEY_LINE.match(line)
        if match:
            stack.append((indent, match.group(2)))
        for depth in range(1, len(stack) + 1):
            ends[tuple(key for _, key in stack[:depth])] = i
    return ends


def _render_defaults(out: _Writer) -> None:
    """Complete init's text with every key of ProjectConfig it did not write, at its default.

    Keys missing from a section init wrote go at the end of that section; whole sections at
    the end of the file. Each key carries its documentation (the field's description, the
    `#:` comments above it in config.py). The values are the defaults, so the file loads as
    the same config as without them; a section that is off (None) is shown commented out.
    """
    given = yaml.safe_load(out.text()) or {}
    ends = _block_ends(out.lines)
    after: dict[int, list[str]] = {}

    def complete(model: type[BaseModel], default: BaseModel | None, written: dict, path) -> None:
        for name, info in _fields(model).items():
            section = _section_of(info.annotation)
            if section is not None and isinstance(written.get(name), dict):
                value = getattr(default, name) if default is not None else None
                complete(section, value, written[name], (*path, name))
        missing = [name for name in _fields(model) if name not in written]
        if not missing:
            return
        block = _Writer()
        for name in missing:
            if default is not None:
                value = getattr(default, name)
            else:
                value = model.model_fields[name].get_default(call_default_factory=True)
            _render_key(block, model, name, value, 2 * len(path), top=not path)
        if path:
            after.setdefault(ends[path], []).extend(block.lines)
        else:
            after.setdefault(len(out.lines) - 1, []).extend(
                [
                    "",
                    "# Every other key, at its default (with its documentation). Change what you",
                    "# need; the README section 'The project file' explains each key.",
                    *block.lines,
                ]
            )

    complete(ProjectConfig, ProjectConfig.model_construct(), given, ())
    lines = []
    for i, line in enumerate(out.lines):
        lines.append(line)
        lines.extend(after.get(i, []))
    out.lines = lines


# --------------------------------------------------------------------------------------
# Entry points


def summary_lines(profiles: dict[str, TableProfile]) -> list[str]:
    """Short lines for the terminal: what was guessed and what was not (no personal values)."""
    plan = _plan(profiles)
    lines = []
    for table in profiles.values():
        sampled = f" (types from the first {table.sampled:,})" if table.sampled else ""
        read_as = f"; read as {table.format_text}" if table.format_text else ""
        lines.append(
            f"{table.name}: {_count(table.rows, 'row')}, "
            f"{_count(len(table.columns), 'column')}{sampled} "
            f"-> {_role_of(table, plan)}{read_as}"
        )
    leads = plan.leads
    if leads is None:
        return lines
    no_id = "none (leads named by their row: row-1, ...)" if plan.flat and leads.rows else "?"
    guessed = [f"lead id: {leads.lead_id or no_id}"]
    if plan.flat:
        label = leads.label
        if label:
            col = leads.column(label)
            positive = sum(
                n
                for v, n in col.example_counts.items()
                if str(v).strip().lower() in DEFAULT_POSITIVE
            )
            total = sum(col.example_counts.values())
            guessed.append(
                f"label: {label} ({positive / total:.1%} positive)" if total else f"label: {label}"
            )
        else:
            guessed.append("label: ?")
        guessed.append(f"arrival order: {leads.order_column or 'none (random split)'}")
    else:
        guessed.append(f"created: {leads.created_at or '?'}")
        guessed.append(f"converted: {plan.converted_at}")
        if plan.activities is not None:
            guessed.append(f"activities: {plan.activities.name}")
    lines.append(("flat export; " if plan.flat else "timestamped export; ") + "; ".join(guessed))
    if plan.missing_values:
        lines.append(
            "read as missing: "
            + ", ".join(f"{_scalar_text(v)} x{n:,}" for v, (n, _) in plan.missing_values.items())
        )
    reasons: dict[str, int] = {}
    for left in plan.left_out:
        reasons[left.reason] = reasons.get(left.reason, 0) + 1
    left_text = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
    lines.append(
        f"attributes: {len(plan.numeric)} numeric, {len(plan.categorical)} categorical"
        + (f"; left out: {left_text}" if left_text else "")
    )
    lines.extend(f"could not decide: {text}" for _, text in plan.todos)
    return lines


def _uri_for(uri: str, out: Path) -> str:
    """The source as the project file should say it: local paths relative to the file's
    folder when the data lies below it (the folder moves as a whole), else absolute."""
    base = out.parent.resolve()

    def rel(path: Path) -> str:
        path = path.resolve()
        return os.path.relpath(path, base) if path.is_relative_to(base) else str(path)

    if uri.startswith("sqlite:///") and "?" not in uri:
        database = uri[len("sqlite:///") :]
        if database and database != ":memory:" and not database.startswith("file:"):
            return "sqlite:///" + rel(Path(database))
        return uri
    if is_database_uri(uri):
        return uri
    folder, _ = local_source(uri)
    return rel(folder)


def init_project(
    uri: str, out: Path, tables: list[str] | None = None, force: bool = False
) -> tuple[Path, dict[str, TableProfile]]:
    """Profile the source and write a project file at `out` that loads with `load_config`.

    Refuses to overwrite an existing file unless `force`: a project file holds the user's
    decisions, and init's guesses must not silently replace them.
    """
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(
            f"{out} already exists",
            "pass --force to overwrite it, or choose another file with --out",
        )
    profiles = profile_source(uri, tables)
    shown = uri if is_database_uri(uri) else str(local_source(uri)[0].resolve())
    text = render_config(profiles, _uri_for(uri, out), source_label=shown)
    # The promise of init: the file it writes loads. Check before touching the disk.
    config_from_dict(yaml.safe_load(text), out.parent, str(out), environ={})
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(text, encoding="utf-8")
    partial.replace(out)
    return out, profiles
