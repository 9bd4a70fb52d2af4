"""The data contract read and checked: leads, activities and outcomes from any source.

Tables come back with canonical column names (`lead_id`, `created_at`, `occurred_at`,
`activity_type`, `detail`, `converted_at`) and naive UTC timestamps; attribute columns keep
their own names. Problems raise :class:`DataError` naming the table, column and fix.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.config import FileFormat, LabelConfig, ProjectConfig, SourceConfig
from leadscore.errors import ConfigError
from leadscore.io.events import read_events
from leadscore.io.tables import lead_id_text, read_table, row_origin
from leadscore.io.uris import is_database_uri, redact_uri
from leadscore.io.validation import PLACEHOLDERS, Checks, row_numbers


@dataclass(frozen=True)
class CRMData:
    """The three logical tables of the data contract, in canonical form."""

    leads: pd.DataFrame
    activities: pd.DataFrame
    outcomes: pd.DataFrame
    source: str
    #: Warnings (and quarantined rows) found while loading.
    checks: Checks = field(default_factory=Checks)
    #: Leads in the source when `leads` is a sample of them (training on a sample).
    sampled_from: int | None = None
    #: When the extract was taken (`source.extract_date`, or a run's `--as-of`): the end of
    #: the observed history; nothing dated from then on was read.
    extract_date: pd.Timestamp | None = None

    @property
    def flat(self) -> bool:
        """One row per lead with a label column (`converted`), no conversion timestamps."""
        return "converted" in self.leads

    @property
    def data_end(self) -> pd.Timestamp:
        """The end of the observed history: the extract date when known, else the newest
        lead or activity (not outcome: deals are often still being won months after the
        last lead came in, and a history that ended there would hold months without new
        leads).

        A flat export without timestamps ends now (it is as of its export).
        """
        if self.extract_date is not None:
            return self.extract_date
        stamps = [self.leads["created_at"].max()]
        if len(self.activities):
            stamps.append(self.activities["occurred_at"].max())
        known = [s for s in stamps if pd.notna(s)]
        if not known and len(self.outcomes):
            known = [self.outcomes["converted_at"].max()]
        return max(known) if known else pd.Timestamp.now(tz="UTC").tz_localize(None)

    def until(self, moment: pd.Timestamp) -> CRMData:
        """The source as an extract taken at `moment` would have held it: leads created,
        activities and conversions before it (a lead's later conversion is unseen)."""
        moment = pd.Timestamp(moment)
        leads = self.leads[self.leads["created_at"] < moment].reset_index(drop=True)
        known = self.activities["lead_id"].isin(leads["lead_id"])
        activities = self.activities[(self.activities["occurred_at"] < moment) & known]
        converted = self.outcomes["converted_at"] < moment
        outcomes = self.outcomes[converted & self.outcomes["lead_id"].isin(leads["lead_id"])]
        return replace(
            self,
            leads=leads,
            activities=activities.reset_index(drop=True),
            outcomes=outcomes.reset_index(drop=True),
            extract_date=moment,
        )


def _missing_columns(frame: pd.DataFrame, wanted: dict[str, str]) -> list[str]:
    """Sentences for mapped columns (config key -> name) that the table lacks."""
    out = []
    for key, name in wanted.items():
        if name not in frame.columns:
            close = [c for c in frame.columns if str(c).lower() == str(name).lower()]
            close += difflib.get_close_matches(str(name), [str(c) for c in frame.columns], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            out.append(f"'{name}' (source.{key}){hint}")
    return out


def _require(frame: pd.DataFrame, table: str, columns: dict[str, str], checks: Checks) -> bool:
    """Record a table problem for mapped columns the table lacks; True when all are there."""
    missing = _missing_columns(frame, columns)
    if missing:
        shown = ", ".join(map(str, frame.columns[:30])) + (", …" if frame.shape[1] > 30 else "")
        checks.error(
            table,
            None,
            f"missing column(s) {', '.join(missing)}; columns there: {shown}",
            "map the right columns in the project file (the keys named in brackets)",
        )
    return not missing


#: A time's UTC offset or zone at its end (10:00Z, 10:00:00+01:00, 10:00 UTC); a date alone
#: (05-03-2026) has none.
UTC_OFFSET = re.compile(
    r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE
)


def parse_dates(text: pd.Series, day_first: bool | None = None) -> tuple[pd.Series, bool]:
    """Text as UTC timestamps: ISO 8601, else one format inferred for the whole column, never
    a guess per value (which reads 03/04 and 13/04 with different day orders): day first or
    month first as `day_first` says, else the order that reads more of it. Also whether
    both orders read it whole, differently (then it is read month first)."""
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    rest = parsed.isna() & text.notna()
    if not rest.any():
        return parsed, False
    # The values ISO 8601 does not read are read in one local format (a column may mix the
    # two, as exports merged from two systems do).
    other = text.where(rest)
    orders = [False, True] if day_first is None else [day_first]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        read = {
            first: pd.to_datetime(other, errors="coerce", utc=True, dayfirst=first)
            for first in orders
        }
    best = min(orders, key=lambda first: (read[first].isna().sum(), first))
    ambiguous = (
        day_first is None
        and read[False].isna().sum() == read[True].isna().sum()
        and not read[False].equals(read[True])
    )
    return parsed.where(~rest, read[best]), ambiguous


def _in_utc(naive: pd.Series, zone: str | None) -> pd.Series:
    """Naive times written in `zone` (None: UTC) as naive UTC. The hour a clock repeats in
    autumn is read as standard time, a time in the hour it skips moves forward: an hour's
    doubt, for leads scored by the day."""
    if zone in (None, "UTC"):
        return naive
    standard = np.zeros(len(naive), bool)
    local = naive.dt.tz_localize(zone, ambiguous=standard, nonexistent="shift_forward")
    return local.dt.tz_convert("UTC").dt.tz_localize(None)


def _timestamps(
    values: pd.Series,
    table: str,
    column: str,
    allow_null: bool,
    checks: Checks,
    file_format: FileFormat | None = None,
) -> pd.Series:
    """Parse to naive UTC, recording rows that are not timestamps, lie in the future or are
    empty (when not allowed). Times with an offset are converted to UTC; times without one
    are in the file's `timezone` (default UTC). A column that mixes the two with no
    `timezone` set is refused: nothing says where the naive ones were written.

    Text that is not ISO 8601 is read in one format for the whole column, never a guess per
    value: day first (31.12.2025, 03/04/2026 as 3 April) or month first as `day_first`
    says, else the order that reads more of the column; a column both orders read whole,
    differently, is read month first with a warning naming the setting. A column that mixes
    ISO 8601 with one local format reads each part in its own."""
    fmt = file_format or FileFormat()
    day_first, zone = fmt.day_first, fmt.timezone
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_any_dtype(values):
        parsed = _in_utc(values, zone)  # Excel cells and Parquet columns carry no zone
    elif pd.api.types.is_numeric_dtype(values) and values.notna().any():
        # Epoch numbers are ambiguous (seconds? milliseconds?): refuse rather than guess.
        checks.error(
            table,
            column,
            "holds numbers, not timestamps",
            "export it as ISO 8601 text (2026-03-01 14:05:00) or a timestamp column",
        )
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    else:
        text = values.astype("str").str.strip()
        filled = text.notna() & text.ne("")
        has_offset = text.str.contains(UTC_OFFSET, regex=True).fillna(False).astype(bool)
        naive = filled & ~has_offset
        if has_offset.any() and naive.any() and zone is None:
            checks.error(
                table,
                column,
                f"mixes time zones: {int(has_offset.sum()):,} value(s) carry a UTC offset and "
                f"{int(naive.sum()):,} do not (e.g. {row_numbers(naive, 3)}), so the naive ones "
                "cannot be placed in time",
                f"set source.files.{table}.timezone to the zone the ones without an offset "
                "were written in (e.g. UTC, Europe/Berlin, Asia/Tokyo), or export every "
                "timestamp in UTC",
            )
            return pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
        parsed, ambiguous = parse_dates(text.where(filled & has_offset), day_first)
        if naive.any():
            local, ambiguous_local = parse_dates(text.where(naive), day_first)
            local = _in_utc(local.dt.tz_localize(None), zone)
            parsed = parsed.dt.tz_localize(None).where(has_offset, local)
            ambiguous = ambiguous or ambiguous_local
        if ambiguous:
            checks.warn(
                table,
                column,
                "has dates that read as day first or month first alike (every day is "
                "12 or less, e.g. 03/04): read month first",
                f"if they are day first, set source.files.{table}.day_first: true",
            )
        if parsed.dt.tz is not None:
            parsed = parsed.dt.tz_localize(None)
        values = values.where(filled)
    bad = parsed.isna() & values.notna()
    checks.error(
        table,
        column,
        "not timestamps",
        "fix or remove those rows, or map the right column",
        bad,
    )
    future = parsed > pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(days=1)
    checks.error(
        table,
        column,
        "timestamps in the future; they would move every snapshot date",
        "fix the clock or time zone of the export, or remove those rows",
        future,
    )
    if not allow_null:
        checks.error(
            table,
            column,
            "empty timestamp",
            "every row needs one; fill or drop them",
            parsed.isna() & values.isna(),
        )
    return parsed.where(~future).astype("datetime64[us]")


def blank_placeholders(frame: pd.DataFrame, columns: list[str], missing: list[str]) -> None:
    """Blank and whitespace strings, and the configured placeholders, become missing."""
    placeholders = set(missing)
    for col in columns:
        values = frame[col]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
            continue
        if isinstance(values.dtype, pd.CategoricalDtype):
            names = pd.Series(values.cat.categories.astype("str"), dtype="str")
            blank = names.str.strip().eq("").fillna(False) | names.isin(placeholders)
            if blank.any():
                frame[col] = values.cat.remove_categories(values.cat.categories[blank.to_numpy()])
            continue
        text = values.astype("str")
        empty = text.str.strip().eq("").fillna(False).astype(bool)
        empty |= text.isin(placeholders).fillna(False).astype(bool)
        if empty.any():
            frame[col] = values.where(~empty)


def _attribute_warnings(
    leads: pd.DataFrame, table: str, columns: list[str], missing: list[str], checks: Checks
) -> None:
    """Constant, nearly empty and placeholder-holding attribute columns: kept, but said."""
    listed = {m.lower() for m in missing}
    for col in columns:
        values = leads[col]
        distinct = values.nunique(dropna=True)
        if distinct <= 1:
            checks.warn(
                table,
                col,
                "is constant (one value or empty): it cannot inform a score",
                "remove it from source.attributes",
            )
            continue
        if values.isna().mean() > 0.95:
            checks.warn(
                table,
                col,
                f"is {values.isna().mean():.0%} empty",
                "check the export, or remove it from source.attributes",
            )
        if pd.api.types.is_numeric_dtype(values):
            continue
        counts = values.astype("str").str.strip().str.lower().value_counts()
        seen = [v for v in PLACEHOLDERS if v in counts.index and v not in listed]
        if seen:
            checks.warn(
                table,
                col,
                "holds value(s) that usually mean 'not filled in': "
                + ", ".join(f"'{v}' ({int(counts[v]):,})" for v in seen),
                "list them under source.missing_values if they mean missing",
            )


def account_text(values: pd.Series, table: str, checks: Checks | None = None) -> pd.Series:
    """An account column as text keys: whole numbers without a decimal part (a float
    column with gaps stores 42 as 42.0), stripped, blank → missing. A column that mixes
    numbers and text (JSON, a spreadsheet, SQLite) is warned about: 42 and "42" are then
    one account, but "042" and 42 are not."""
    column = str(values.name)
    if pd.api.types.is_float_dtype(values):
        whole = values.notna() & (values % 1 == 0)
        values = values.astype(object).where(~whole, values[whole].map(lambda v: str(int(v))))
    elif values.dtype == object and checks is not None:
        present = values.dropna()
        number = present.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool))
        if number.any() and not number.all():
            mask = values.index.isin(present.index[number])
            example_number = present[number].iloc[0]
            example_text = present[~number].iloc[0]
            checks.warn(
                table,
                column,
                f"mixes numbers (e.g. {example_number!r}) and text (e.g. {str(example_text)!r}) "
                "as account keys: both are read as text, so 42 and '42' are one account but "
                "'042' and 42 are two",
                f"export '{column}' as text in every row (with the leading zeros your CRM uses)",
                mask,
            )
        values = values.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else v)
    text = values.astype("str").str.strip()
    return text.where(text.notna() & text.ne(""))


def _label(values: pd.Series, label: LabelConfig, table: str, checks: Checks) -> pd.Series:
    """0/1 per lead, <NA> for open leads (empty label); other values are recorded."""
    text = values.astype("str").str.strip().str.lower()
    # 1.0 from a float column reads "1.0", which the defaults list; "True" reads "true".
    pos = text.isin(label.positive).fillna(False).astype(bool)
    neg = text.isin(label.negative).fillna(False).astype(bool)
    empty = values.isna() | text.eq("").fillna(True).astype(bool)
    other = ~(pos | neg | empty)
    if other.any():
        odd = text[other].str.slice(0, 20).value_counts().head(5)
        seen = ", ".join(f"'{v}' ({n:,})" for v, n in odd.items())
        checks.error(
            table,
            label.column,
            f"label values that are neither positive nor negative: {seen}",
            f"positive: {label.positive}, negative: {label.negative}; add the value to "
            "source.label.positive / negative, or fix the rows",
            other,
        )
    out = pd.Series(pd.NA, index=values.index, dtype="Int8")
    out[pos] = 1
    out[neg] = 0
    return out


def _order(values: pd.Series, table: str, column: str, checks: Checks) -> pd.Series:
    """An arrival order: numbers as they are, or timestamps (as nanoseconds)."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() >= 0.9 * values.notna().sum() and numbers.notna().any():
        checks.error(
            table,
            column,
            "empty or non-numeric arrival order (split.order_column)",
            "fill those rows, or use split.method: random",
            numbers.isna(),
        )
        return numbers.astype("float64")
    stamps = _timestamps(values, table, column, False, checks)
    return stamps.astype("int64").astype("float64").where(stamps.notna())


def load_crm(
    config: ProjectConfig | SourceConfig,
    uri: str | None = None,
    activities_since: pd.Timestamp | None = None,
    activities_until: pd.Timestamp | None = None,
    lead_ids: Sequence[str] | None = None,
    sample: int | None = None,
    as_of: pd.Timestamp | None = None,
) -> CRMData:
    """Read, check and normalise the configured source tables.

    `as_of` (else `source.extract_date`) is when the extract was taken: rows dated from
    then on are left out (see `CRMData.until`), as if read that day.

    Every problem is collected before anything stops, so one run lists them all (see
    :mod:`leadscore.validation`). `activities_since`/`activities_until` keep only activities
    in that window (scoring needs only the model's lookback); a database source filters them
    before they are transferred. `lead_ids` reads only those leads and their activities and
    outcomes (on-demand scoring): a database filters them in the query; none found gives an
    empty `leads` table, not an error; bad rows stop the read even in quarantine mode, so
    the batch's quarantine files are never overwritten. `sample` keeps a seeded random
    sample of that many leads (by a hash of the id, so it does not depend on row order),
    and only their activities and outcomes are kept (a Parquet file of the same id type
    skips the others while reading). Rows of other leads are not checked: their problems,
    and activities of no lead at all, surface in scoring, which reads every lead.
    """
    project = config if isinstance(config, ProjectConfig) else None
    source = config.source if project is not None else config
    uri = uri or (project.source_uri if project is not None else source.uri)
    quarantine = project.quarantine_path if project is not None and lead_ids is None else None
    order_column = (
        project.split.order_column
        if project is not None and project.flat and project.split_method == "order"
        else None
    )
    cols, tables, attrs, label = source.columns, source.tables, source.attributes, source.label
    checks = Checks()

    # A flat export without an id column: each row is named by its position in the file.
    by_position = cols.lead_id is None
    if by_position and is_database_uri(uri):
        raise ConfigError(
            "source.columns.lead_id is null, but rows of a database table have no fixed order "
            "to name leads by",
            "map the table's id column as source.columns.lead_id",
        )
    id_column = ROW_ID if by_position else cols.lead_id
    leads_raw = read_table(
        uri,
        tables.leads,
        lead_filter=None if lead_ids is None or by_position else (id_column, lead_ids),
        text=[id_column],
        encoding=source.encoding,
        file_format=source.file_format(tables.leads),
    )
    checks.origins[tables.leads] = row_origin(leads_raw)
    if by_position:
        leads_raw = position_ids(leads_raw)
        checks.warn(
            tables.leads,
            None,
            "has no id column: each lead is named by its row in the file (row-1 is the first "
            "data row), so scores name leads that way",
            "keep the file's rows in the same order from one export to the next, or add an "
            "id column and set source.columns.lead_id",
        )
        if lead_ids is not None:
            leads_raw = leads_raw[leads_raw[ROW_ID].isin(list(lead_ids))].reset_index(drop=True)
    if leads_raw.attrs.get("encoding") not in (None, "utf-8-sig"):
        checks.warn(
            tables.leads,
            None,
            f"is not UTF-8: read as {leads_raw.attrs['encoding']} (detected)",
            "check a few values with letters beyond ASCII; if they are garbled, set "
            "source.encoding to the file's encoding (or re-export it as UTF-8)",
        )
    sampled_from, sample_ids = None, None
    if sample is not None and lead_ids is None and id_column in leads_raw:
        seed = project.model.seed if project is not None else 0
        keep = sample_rows(leads_raw[id_column], sample, seed)
        if not keep.all():
            sampled_from = int(leads_raw[id_column].nunique())
            leads_raw = leads_raw[keep].reset_index(drop=True)
            checks.keep_rows(tables.leads, keep)
            sample_ids = leads_raw[id_column].dropna().unique()
    if leads_raw.empty and lead_ids is None:
        checks.error(
            tables.leads,
            None,
            "is empty (no rows)",
            "point source.uri / source.tables.leads at the table that holds your leads",
        )
        checks.stop_on_table_errors()
    wanted = {"columns.lead_id": id_column}
    if cols.created_at is not None:
        wanted["columns.created_at"] = cols.created_at
    if label is not None:
        wanted["label.column"] = label.column
    elif tables.outcomes is None and cols.converted_at is not None:
        wanted["columns.converted_at"] = cols.converted_at
    if order_column is not None:
        wanted["split.order_column"] = order_column
    for name in [*attrs.categorical, *attrs.numeric]:
        wanted[f"attributes ({name})"] = name
    for key, name in (
        ("attributes.job_title", attrs.job_title),
        ("attributes.email", attrs.email),
        ("attributes.account", attrs.account),
    ):
        if name is not None:
            wanted[key] = name
    _require(leads_raw, tables.leads, {k: v for k, v in wanted.items()}, checks)
    checks.stop_on_table_errors()

    text_columns = [*attrs.categorical, *[c for c in (attrs.job_title, attrs.email) if c]]
    used = list(dict.fromkeys([id_column, *wanted.values()]))
    leads_work = leads_raw[used].copy()
    blank_placeholders(leads_work, [c for c in used if c != id_column], source.missing_values)
    ids = leads_work[id_column]
    blank_id = ids.isna() | ids.astype("str").str.strip().eq("").fillna(True).astype(bool)
    checks.error(tables.leads, id_column, "empty lead id", "every lead needs an id", blank_id)
    checks.error(
        tables.leads,
        id_column,
        "duplicate lead id (the first row of each id is kept in quarantine mode)",
        "keep one row per lead",
        ids.duplicated() & ~blank_id,
    )
    out = pd.DataFrame({"lead_id": ids})
    if cols.created_at is not None:
        out["created_at"] = _timestamps(
            leads_work[cols.created_at],
            tables.leads,
            cols.created_at,
            label is not None,
            checks,
            source.file_format(tables.leads),
        )
    else:
        out["created_at"] = pd.Series(pd.NaT, index=ids.index, dtype="datetime64[us]")
    for name in attrs.numeric:
        converted = pd.to_numeric(leads_work[name], errors="coerce")
        checks.error(
            tables.leads,
            name,
            "non-numeric value in a numeric attribute",
            "clean the column, list its placeholder under source.missing_values, or list it "
            "under source.attributes.categorical",
            converted.isna() & leads_work[name].notna(),
        )
        negative = (converted < 0).fillna(False).to_numpy(dtype=bool)
        if name not in attrs.signed:
            checks.error(
                tables.leads,
                name,
                "negative value in a numeric attribute",
                f"fix the rows; if '{name}' can be negative, list it under "
                "source.attributes.signed",
                negative,
            )
        out[name] = converted.astype("float64")
    for name in text_columns:
        out[name] = leads_work[name].astype("str").where(leads_work[name].notna())
    if attrs.account is not None and attrs.account not in text_columns:
        out[attrs.account] = account_text(leads_work[attrs.account], tables.leads, checks)
    if label is not None:
        out["converted"] = _label(leads_work[label.column], label, tables.leads, checks)
        if order_column is not None:
            out["_order"] = _order(leads_work[order_column], tables.leads, order_column, checks)
    elif tables.outcomes is None:
        out["_converted_at"] = _timestamps(
            leads_work[cols.converted_at],
            tables.leads,
            cols.converted_at,
            True,
            checks,
            source.file_format(tables.leads),
        )
    if lead_ids is None:  # a column's shape says nothing when a few leads are read
        _attribute_warnings(
            out, tables.leads, [*attrs.categorical, *attrs.numeric], source.missing_values, checks
        )
    # Quarantine sets aside every duplicate but the first row of each id.
    leads = checks.settle(tables.leads, out, quarantine)

    activities = _load_activities(
        uri, source, checks, quarantine, activities_since, activities_until, lead_ids, sample_ids
    )
    outcomes = _load_outcomes(uri, source, leads, checks, quarantine, lead_ids, sample_ids)
    if sample_ids is not None:  # the sampled leads' rows, matched as _align_ids matches
        activities = _of_leads(activities, leads["lead_id"], checks, tables.activities)
        outcomes = _of_leads(outcomes, leads["lead_id"], checks, tables.outcomes)
    leads = leads.drop(columns=["_converted_at"], errors="ignore")
    activities, outcomes = _align_ids(leads, activities, outcomes, source, checks, quarantine)
    if project is not None and label is None and tables.activities is not None:
        activities = _with_events(project, activities, leads, activities_since,
                                  activities_until, lead_ids, checks)  # fmt: skip
    crm = CRMData(
        leads=leads,
        activities=activities,
        outcomes=first_conversions(outcomes),
        source=redact_uri(uri),
        checks=checks,
        sampled_from=sampled_from,
    )
    extract = as_of if as_of is not None else source.extract_date
    if extract is None:
        return crm
    if crm.flat:
        raise ConfigError(
            f"a flat export cannot be read as of a date ({pd.Timestamp(extract).date()}): its "
            "labels say who converted by the day it was exported, not by that date",
            "drop --as-of / source.extract_date, or export conversion dates (an outcomes "
            "table or columns.converted_at)",
        )
    cut = crm.until(pd.Timestamp(extract))
    if as_of is None:
        later = len(crm.leads) - len(cut.leads) + len(crm.activities) - len(cut.activities)
        if later:
            crm.checks.warn(
                tables.leads,
                None,
                f"{later:,} lead(s) and activities dated from source.extract_date "
                f"({pd.Timestamp(extract).date()}) on were left out",
                "if the export is newer than that, update or remove source.extract_date",
            )
    return cut


def _with_events(
    project: ProjectConfig,
    activities: pd.DataFrame,
    leads: pd.DataFrame,
    since: pd.Timestamp | None,
    until: pd.Timestamp | None,
    lead_ids: Sequence[str] | None,
    checks: Checks,
) -> pd.DataFrame:
    """The source's activities (checked, their ids aligned) plus the events posted to the
    service (leadscore.io.events), checked on their way in. An event of a lead the leads
    table no longer holds (deleted, merged) is left out, with a warning."""
    table = project.service.events_table
    uri = project.publish_uri
    if table is None or (uri.startswith("sqlite:///") and not _sqlite_path_exists(uri)):
        return activities
    texts = lead_id_text(leads["lead_id"]).to_numpy()
    wanted = None if lead_ids is None else list(texts)
    posted = read_events(uri, table, since, until, wanted)
    if posted is None or posted.empty:
        return activities
    position = pd.Index(texts).get_indexer(posted["lead_id"].to_numpy())
    if (position < 0).any():
        checks.warn(
            table,
            "lead_id",
            f"{int((position < 0).sum()):,} posted event(s) of leads no longer in table "
            f"'{project.source.tables.leads}' were left out",
            "nothing to do if those leads were deleted or merged on purpose",
        )
    posted = posted[position >= 0].assign(
        lead_id=leads["lead_id"].to_numpy()[position[position >= 0]]
    )
    if posted.empty:
        return activities
    acts = activities.reset_index(drop=True)
    for column in ("activity_type", "detail"):
        values = acts[column]
        if isinstance(values.dtype, pd.CategoricalDtype):  # kept: tens of millions of rows
            new = pd.Index(posted[column].dropna().unique()).difference(values.cat.categories)
            acts[column] = values.cat.add_categories(new) if len(new) else values
            posted[column] = pd.Categorical(posted[column], categories=acts[column].cat.categories)
    return pd.concat([acts, posted[acts.columns]], ignore_index=True)


def _sqlite_path_exists(uri: str) -> bool:
    """A SQLite URL's file exists (reading a missing one would create it)."""
    import sqlalchemy as sa

    database = sa.engine.make_url(uri).database
    return database in (None, "", ":memory:") or Path(database).exists()


#: The column of the ids made from row positions (a flat export without an id column).
ROW_ID = "_row_id"


def position_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (a whole file, in its order) with ids from the rows' positions: row-1 is the
    first data row, as errors number rows."""
    return frame.assign(**{ROW_ID: [f"row-{i}" for i in range(1, len(frame) + 1)]})


def sample_rows(ids: pd.Series, n: int, seed: int = 0) -> np.ndarray:
    """Rows of a seeded random sample of `n` distinct lead ids (all rows of each id kept).

    A lead is in the sample when the hash of its id is among the `n` smallest, so the
    sample does not depend on the order of the rows, and a lead sampled from a history
    mostly stays sampled as the history grows.
    """
    text = lead_id_text(ids).str.strip().to_numpy(dtype=object)
    hashed = pd.util.hash_array(text, hash_key=f"leadscore{seed:07d}"[:16])
    distinct = np.unique(hashed)
    if len(distinct) <= n:
        return np.ones(len(ids), dtype=bool)
    return hashed <= np.partition(distinct, n - 1)[n - 1]


def _load_activities(
    uri: str,
    source: SourceConfig,
    checks: Checks,
    quarantine: Path | None,
    since: pd.Timestamp | None,
    until: pd.Timestamp | None,
    lead_ids: Sequence[str] | None = None,
    sample: np.ndarray | None = None,
) -> pd.DataFrame:
    cols, table = source.columns, source.tables.activities
    if table is None:
        return pd.DataFrame(
            {
                "lead_id": pd.Series(dtype="str"),
                "occurred_at": pd.Series(dtype="datetime64[us]"),
                "activity_type": pd.Series(dtype="str"),
                "detail": pd.Series(dtype="str"),
            }
        )
    wanted = [cols.activity_lead_id, cols.occurred_at, cols.activity_type]
    wanted += [cols.detail] if cols.detail else []
    raw = read_table(
        uri,
        table,
        wanted,
        (cols.occurred_at, since, until),
        None if lead_ids is None else (cols.activity_lead_id, lead_ids),
        dictionary=[cols.activity_type, *([cols.detail] if cols.detail else [])],
        sample=None if sample is None else (cols.activity_lead_id, sample),
        text=[cols.activity_lead_id],
        encoding=source.encoding,
        file_format=source.file_format(table),
    )
    checks.origins[table] = row_origin(raw)
    mapping = {
        "columns.activity_lead_id": cols.activity_lead_id,
        "columns.occurred_at": cols.occurred_at,
        "columns.activity_type": cols.activity_type,
    }
    if cols.detail is not None:
        mapping["columns.detail"] = cols.detail
    _require(raw, table, mapping, checks)
    checks.stop_on_table_errors()
    acts = raw[list(mapping.values())].rename(
        columns={
            cols.activity_lead_id: "lead_id",
            cols.occurred_at: "occurred_at",
            cols.activity_type: "activity_type",
            **({cols.detail: "detail"} if cols.detail else {}),
        }
    )
    if "detail" not in acts:
        acts["detail"] = pd.Series(pd.NA, index=acts.index, dtype="str")
    blank_placeholders(acts, ["lead_id", "activity_type"], [])
    checks.error(
        table, cols.activity_lead_id, "empty lead id", "fill or drop them", acts["lead_id"].isna()
    )
    checks.error(
        table,
        cols.activity_type,
        "empty activity type",
        "fill or drop them",
        acts["activity_type"].isna(),
    )
    acts["occurred_at"] = _timestamps(
        acts["occurred_at"], table, cols.occurred_at, False, checks,
        source.file_format(table),
    )  # fmt: skip
    acts = checks.settle(table, acts, quarantine)
    if source.activity_types is not None:
        acts["activity_type"] = _type_names(uri, source, acts["activity_type"], checks)
    keep = pd.Series(True, index=acts.index)
    if since is not None:
        keep &= acts["occurred_at"] >= since
    if until is not None:
        keep &= acts["occurred_at"] < until
    if not keep.all():
        acts = acts[keep].reset_index(drop=True)
        checks.keep_rows(table, keep.to_numpy())
    for column in ("activity_type", "detail"):
        # Categoricals stay categoricals: tens of millions of rows, a few distinct values.
        if not isinstance(acts[column].dtype, pd.CategoricalDtype):
            acts[column] = acts[column].astype("str")
    return acts


def code_text(values: pd.Series) -> pd.Series:
    """Type ids as text, the same whether a file gave them as numbers or as text (1, 1.0
    and "1" are one id)."""
    text = values.astype("str").str.strip()
    return text.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)


def _type_names(uri: str, source: SourceConfig, codes: pd.Series, checks: Checks) -> pd.Series:
    """The activity types named by the lookup table of `source.activity_types`."""
    names = source.activity_types
    lookup = read_table(
        uri,
        names.table,
        [names.id, names.name],
        text=[names.id],
        encoding=source.encoding,
        file_format=source.file_format(names.table),
    )
    _require(lookup, names.table, {"activity_types.id": names.id,
                                   "activity_types.name": names.name}, checks)  # fmt: skip
    checks.stop_on_table_errors()
    lookup = pd.DataFrame(
        {"id": code_text(lookup[names.id]), "name": lookup[names.name].astype("str").str.strip()}
    ).dropna()
    clash = lookup.groupby("id")["name"].nunique()
    if (clash > 1).any():
        checks.error(
            names.table, names.id,
            f"type id(s) {', '.join(clash.index[clash > 1][:5])} have more than one name",
            "keep one row per activity type id in the table of activity type names",
        )  # fmt: skip
        checks.stop_on_table_errors()
    named = dict(zip(lookup["id"], lookup["name"], strict=True))
    if isinstance(codes.dtype, pd.CategoricalDtype):
        # Tens of millions of rows, a few ids (Parquet): name the categories, not the rows.
        ids = code_text(pd.Series(codes.cat.categories.astype("str")))
        found = ids.map(named)
        missing = found.isna().to_numpy()
        labels = found.where(~missing, "type " + ids).to_numpy(dtype="str")
        uniques, position = np.unique(labels, return_inverse=True)
        raw = codes.cat.codes.to_numpy()
        out = pd.Series(
            pd.Categorical.from_codes(np.where(raw >= 0, position[raw], -1), categories=uniques),
            index=codes.index,
        )
        if missing.any():
            rows = np.isin(raw, np.flatnonzero(missing))
            _warn_unnamed(source, pd.Series(ids.to_numpy()[raw[rows]]), checks)
        return out
    text = code_text(codes)
    out = text.map(named)
    unnamed = out.isna().to_numpy()
    if unnamed.any():
        _warn_unnamed(source, text[unnamed], checks)
        out = out.where(~unnamed, "type " + text)
    return out.astype("str")


def _warn_unnamed(source: SourceConfig, ids: pd.Series, checks: Checks) -> None:
    """Activities whose type id the table of names does not name (kept as 'type <id>')."""
    table = source.activity_types.table
    counts = ids.value_counts()
    shown = ", ".join(f"{i} (x{n:,})" for i, n in counts.head(5).items())
    checks.warn(
        source.tables.activities, source.columns.activity_type,
        f"{len(ids):,} activities have a type id that table '{table}' does not name: "
        f"{shown}; kept as 'type <id>'",
        f"export the activity types again (with every id) into '{table}'",
    )  # fmt: skip


def _load_outcomes(
    uri: str,
    source: SourceConfig,
    leads: pd.DataFrame,
    checks: Checks,
    quarantine: Path | None,
    lead_ids: Sequence[str] | None = None,
    sample: np.ndarray | None = None,
) -> pd.DataFrame:
    cols, table = source.columns, source.tables.outcomes
    if source.label is not None:
        return pd.DataFrame(
            {
                "lead_id": leads["lead_id"].iloc[:0],
                "converted_at": pd.Series(dtype="datetime64[us]"),
            }
        )
    if table is not None:
        raw = read_table(
            uri,
            table,
            lead_filter=None if lead_ids is None else (cols.outcome_lead_id, lead_ids),
            sample=None if sample is None else (cols.outcome_lead_id, sample),
            text=[cols.outcome_lead_id],
            encoding=source.encoding,
            file_format=source.file_format(table),
        )
        checks.origins[table] = row_origin(raw)
        stage = source.outcome_stage
        required = {
            "columns.outcome_lead_id": cols.outcome_lead_id,
            "columns.converted_at": cols.converted_at,
        }
        if stage is not None:
            required["outcome_stage.column"] = stage.column
        _require(raw, table, required, checks)
        checks.stop_on_table_errors()
        out = raw[[cols.outcome_lead_id, cols.converted_at]].rename(
            columns={cols.outcome_lead_id: "lead_id", cols.converted_at: "converted_at"}
        )
        checks.error(
            table, cols.outcome_lead_id, "empty lead id", "fill or drop them", out["lead_id"].isna()
        )
        if stage is not None:  # open and lost opportunities convert no lead
            reached = raw[stage.column].astype("str").str.strip().str.lower().isin(stage.converted)
            reached = reached.to_numpy() & raw[stage.column].notna().to_numpy()
            if not reached.any() and lead_ids is None and sample is None and len(raw):
                # A warning, not an error: a lead partition may hold no won deal at all.
                seen = raw[stage.column].dropna().astype("str").value_counts().index[:10]
                checks.warn(
                    table, stage.column,
                    f"no row in stage(s) {', '.join(stage.converted)} (stages there: "
                    f"{', '.join(seen)})",
                    "list the stage values that mean won (or converted) under "
                    "outcome_stage.converted",
                )  # fmt: skip
            out.loc[~reached, "converted_at"] = None
        out["converted_at"] = _timestamps(
            out["converted_at"], table, cols.converted_at, True, checks,
            source.file_format(table),
        )  # fmt: skip
        out = checks.settle(table, out, quarantine)
    else:  # a conversion column on the leads table, checked with the leads
        out = leads[["lead_id", "_converted_at"]].rename(columns={"_converted_at": "converted_at"})
    converted = out["converted_at"].notna().to_numpy()
    if not converted.all():
        out = out[converted].reset_index(drop=True)
        checks.keep_rows(table or source.tables.leads, converted)
    return out


def first_conversions(outcomes: pd.DataFrame) -> pd.DataFrame:
    """A lead converts once: its first conversion (after the rows were checked)."""
    return outcomes.groupby("lead_id", as_index=False)["converted_at"].min()


def _as_lead_ids(ids: pd.Series, as_text: bool) -> pd.Series:
    """Ids of another table in the leads' id type (text, or integers when they all are)."""
    if as_text:
        numeric = pd.api.types.is_float_dtype(ids)
        return (ids.astype("Int64") if numeric else ids).astype("str")
    converted = pd.to_numeric(ids, errors="coerce")
    if converted.isna().any() or (converted % 1 != 0).any():
        return ids.astype("str")  # cannot be matched to integer ids: reported by the caller
    return converted.astype("int64")


def _of_leads(
    frame: pd.DataFrame,
    lead_ids: pd.Series,
    checks: Checks | None = None,
    table: str | None = None,
) -> pd.DataFrame:
    """The rows of `frame` whose lead id is one of `lead_ids`, matched as `_align_ids` does."""
    if not len(frame):
        return frame
    as_text = not pd.api.types.is_integer_dtype(lead_ids)
    known = lead_ids.astype("str") if as_text else lead_ids
    keep = _as_lead_ids(frame["lead_id"], as_text).isin(known).to_numpy(dtype=bool)
    if checks is not None and table is not None:
        checks.keep_rows(table, keep)
    return frame[keep].reset_index(drop=True)


def _align_ids(
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    outcomes: pd.DataFrame,
    source: SourceConfig,
    checks: Checks,
    quarantine: Path | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give every table the leads' id type; refuse rows whose lead id matches no lead.

    Exports often mix 42 and "42"; left alone, joins would silently match nothing.
    """
    tables, cols = source.tables, source.columns
    id_column = {
        tables.activities: cols.activity_lead_id,
        tables.outcomes: cols.outcome_lead_id,
        None: cols.lead_id,
    }
    target = leads["lead_id"]
    as_text = not pd.api.types.is_integer_dtype(target)

    def convert(ids: pd.Series) -> pd.Series:
        return _as_lead_ids(ids, as_text)

    out = []
    known = set(target.astype("str")) if as_text else set(target)
    created = leads.set_index("lead_id")["created_at"]
    for frame, table in ((activities, tables.activities), (outcomes, tables.outcomes)):
        if not len(frame):
            out.append(frame)
            continue
        frame = frame.assign(lead_id=convert(frame["lead_id"])).reset_index(drop=True)
        name = table or tables.leads
        unknown = ~frame["lead_id"].isin(known).to_numpy()
        if unknown.all():
            checks.error(
                name,
                None,
                f"none of its {len(frame):,} lead ids matches an id in table '{tables.leads}'",
                "map source.columns to the lead id columns of both tables",
            )
            checks.stop_on_table_errors()
        checks.error(
            name,
            id_column.get(table, cols.lead_id),
            f"lead id matches no lead in table '{tables.leads}'",
            f"export the missing leads, or drop these rows from '{name}'",
            unknown,
        )
        if "converted_at" in frame:
            c = frame["lead_id"].map(created)
            stamps = frame["converted_at"]
            if stamps.notna().any() and (stamps.dropna() == stamps.dropna().dt.normalize()).all():
                # Dates without times (a deal's won date) say the day, not the moment: one on
                # the lead's creation day is not before it; it is taken as at creation.
                same_day = (stamps < c) & (stamps == c.dt.normalize())
                frame = frame.assign(converted_at=stamps.where(~same_day, c))
            checks.error(
                name,
                cols.converted_at,
                "conversion before the lead was created",
                "fix the timestamps (time zone?) or the lead ids",
                (frame["converted_at"] < c).fillna(False).to_numpy(dtype=bool),
            )
        if table is not None:
            frame = checks.settle(name, frame, quarantine)
        else:
            checks.raise_if_errors()
        out.append(frame)
    return out[0], out[1]


def load_ground_truth(
    config: ProjectConfig,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None] | None:
    """The generator's hidden truth tables, if the config names them (generated data only):
    leads, their research episodes, and the accounts' buying projects (None without
    accounts)."""
    truth = config.source.ground_truth
    if truth is None:
        return None
    uri = config.source_uri
    leads = read_table(uri, truth.leads)
    leads["created_day"] = pd.to_datetime(leads["created_day"]).astype("datetime64[us]")
    projects = None
    if "account_shock_prob" in leads:
        projects = read_table(uri, truth.account_shocks)
        projects["day"] = pd.to_datetime(projects["day"]).astype("datetime64[us]")
    return leads, read_table(uri, truth.shocks), projects
