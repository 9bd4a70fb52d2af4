"""One lead's rows from a database source, for the service: three prepared queries on a
pooled connection, each value cleaned as `load_crm` cleans it.

`load_crm` reads a few leads correctly for every source shape, and spends ~40 ms doing it
for one lead (a frame per step, the schema inspected per table, a connection per read).
:class:`LeadReader` reads one lead of a database source (SQLite, PostgreSQL) as plain
values: the lead's row, its activities and its outcomes, by the indexed lead-id columns,
with the table shapes looked up once. It only reads what it can clean exactly as
`load_crm` would; anything else (a value `load_crm` would refuse or rewrite, an unknown
lead, a shape it does not cover) makes :meth:`LeadReader.read` return None, and the
caller reads the lead through `load_crm`, which gives the exact result or the exact error.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.config import ProjectConfig
from leadscore.io import uris
from leadscore.io.events import EventStore
from leadscore.io.tables import _comparable_time, _lead_id_clause, check_identifier, id_text
from leadscore.io.uris import is_database_uri

_DAY_US = 86_400_000_000
#: ISO 8601 without an offset, as SQLite stores timestamps (to the microsecond).
_ISO_NAIVE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?$")


@dataclass(frozen=True)
class OneLead:
    """One lead as the source gives it, cleaned as `load_crm` cleans it.

    `fields`: the lead's mapped columns (text, a float, or None when missing);
    `times`: its activities' times (microseconds since the epoch, naive UTC) with their
    `types` and `details`. `converted_at`: its first conversion (None: none);
    `labelled`: a flat export's row has a label (its outcome is known).
    """

    lead_id: Any
    created_at: np.datetime64
    fields: Mapping[str, Any]
    times: np.ndarray
    types: Sequence[str]
    details: Sequence[str | None]
    converted_at: np.datetime64 | None = None
    labelled: bool = False


class _Unclean(Exception):
    """A value `load_crm` would refuse or rewrite: the lead is read the batch's way."""


def _timestamp(value: Any, allow_null: bool, latest: np.datetime64) -> np.datetime64 | None:
    """A stored timestamp as naive UTC microseconds (`_timestamps` of one clean value);
    one after `latest` (a day from now) is in the future, which the batch refuses."""
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            value = None
    if value is None:
        if allow_null:
            return None
        raise _Unclean
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        stamp = np.datetime64(value, "us")
    elif isinstance(value, dt.date):
        stamp = np.datetime64(value, "D").astype("datetime64[us]")
    elif isinstance(value, str) and _ISO_NAIVE.match(value):
        try:
            stamp = np.datetime64(value.replace(" ", "T"), "us")
        except ValueError:  # 2026-02-30: the batch names the row
            raise _Unclean from None
    else:
        raise _Unclean  # epoch numbers, offsets, local formats: the batch's checks decide
    if stamp > latest:
        raise _Unclean  # a future timestamp: an error the batch names
    return stamp


def _text(value: Any, placeholders: frozenset[str]) -> str | None:
    """A text field: blank and placeholder values are missing (`blank_placeholders`)."""
    if value is None:
        return None
    if not isinstance(value, str):
        # A number in a text column reads "42" or "42.0" in the batch, by whether the
        # column holds a null anywhere: the batch's read decides.
        raise _Unclean
    if value.strip() == "" or value in placeholders:
        return None
    return value


def _number(value: Any, placeholders: frozenset[str], signed: bool) -> float:
    """A numeric field as `load_crm` converts it; anything it would refuse is unclean."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        if value.strip() == "" or value in placeholders:
            return math.nan
        raise _Unclean  # text in a numeric column: the batch decides (it may refuse it)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unclean
    number = float(value)
    if number < 0 and not signed:
        raise _Unclean
    return number


class LeadReader:
    """Reads one lead of a database source at a time (see the module's docstring)."""

    def __init__(self, config: ProjectConfig, events: EventStore | None = None) -> None:
        self.config = config
        source = config.source
        self.source = source
        self.engine = uris.create_engine(config.source_uri)
        #: The events posted to the service, read with the source's activities (None: off).
        self.events = events
        self._lock = threading.Lock()
        self._statements: dict[str, tuple[str, Any]] | None = None
        #: The activities' time column, quoted, and whether it is SQLite text (or None).
        self.window: tuple[str, bool] | None = None
        attrs, cols = source.attributes, source.columns
        self.text_columns = [*attrs.categorical, *[c for c in (attrs.job_title, attrs.email) if c]]
        self.numeric_columns = list(attrs.numeric)
        self.signed = set(attrs.signed)
        self.placeholders = frozenset(source.missing_values)
        self.converted_on_leads = source.tables.outcomes is None and cols.converted_at is not None
        lead_columns = [cols.lead_id, cols.created_at, *self.numeric_columns, *self.text_columns]
        if self.converted_on_leads:
            lead_columns.append(cols.converted_at)
        self.lead_columns = list(dict.fromkeys(c for c in lead_columns if c is not None))

    @classmethod
    def of(cls, config: ProjectConfig, events: EventStore | None = None) -> LeadReader | None:
        """A reader for this project's source, or None for a shape it does not cover (files,
        a flat export, activity type codes, an extract date, local time zones)."""
        source = config.source
        if not is_database_uri(config.source_uri) or config.flat:
            return None
        if source.columns.lead_id is None or source.columns.created_at is None:
            return None
        if source.activity_types is not None or source.extract_date is not None:
            return None
        url = sa.engine.make_url(uris.normalise_uri(config.source_uri))
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            return None  # the batch's read says so (opening it would create an empty file)
        tables = [t for t in source.tables.model_dump().values() if isinstance(t, str)]
        if any(source.file_format(t).timezone not in (None, "UTC") for t in tables):
            return None
        return cls(config, events)

    def close(self) -> None:
        self.engine.dispose()

    # -- statements, prepared on first use --------------------------------------------------

    def _prepare_once(self, conn: sa.Connection) -> None:
        """The statements, or {} when this reader cannot read the source's shape."""
        with self._lock:
            if self._statements is None:
                try:
                    self._statements = self._prepare(conn)
                except _Unclean:
                    self._statements = {}

    def _prepare(self, conn: sa.Connection) -> dict[str, tuple[str, Any]]:
        """One SELECT per table with the lead-id column's type (ids bind as that type)."""
        source, cols = self.source, self.source.columns
        quote = conn.dialect.identifier_preparer.quote
        inspector = sa.inspect(conn)

        def statement(table: str, id_column: str, columns: list[str]) -> tuple[str, Any]:
            check_identifier(table, "table name")
            schema, name = (table.split(".")[0], table.split(".")[-1]) if "." in table else (
                None, table
            )  # fmt: skip
            described = {c["name"]: c["type"] for c in inspector.get_columns(name, schema=schema)}
            missing = [c for c in columns if c not in described]
            if missing:
                raise _Unclean  # the batch's read names the missing columns
            qualified = ".".join(quote(p) for p in table.split("."))
            select = ", ".join(quote(c) for c in columns)
            return f"SELECT {select} FROM {qualified} WHERE ", (
                quote(id_column),
                described[id_column],
            )

        def family(column_type: Any) -> str:
            if isinstance(column_type, sa.types.Integer):
                return "integer"
            return "text" if isinstance(column_type, sa.types.String) else "other"

        statements = {"leads": statement(source.tables.leads, cols.lead_id, self.lead_columns)}
        if source.tables.activities is not None:
            wanted = [cols.activity_lead_id, cols.occurred_at, cols.activity_type]
            wanted += [cols.detail] if cols.detail else []
            statements["activities"] = statement(
                source.tables.activities, cols.activity_lead_id, wanted
            )
        if source.tables.outcomes is not None:
            wanted = [cols.outcome_lead_id, cols.converted_at]
            wanted += [source.outcome_stage.column] if source.outcome_stage else []
            statements["outcomes"] = statement(source.tables.outcomes, cols.outcome_lead_id, wanted)
        families = {family(kind) for _, (_, kind) in statements.values()}
        if len(families) != 1 or families & {"other"}:
            # Ids of another type in another table ("0042" beside 42): the batch's read
            # matches them by value, this one by the column's own type.
            raise _Unclean
        if "activities" in statements:
            table = source.tables.activities.split(".")[-1]
            schema = (
                source.tables.activities.split(".")[0] if "." in source.tables.activities else None
            )
            kinds = {c["name"]: c["type"] for c in inspector.get_columns(table, schema=schema)}
            if _comparable_time(conn.dialect.name, kinds.get(cols.occurred_at)):
                self.window = (quote(cols.occurred_at), conn.dialect.name == "sqlite")
        return statements

    def _rows(
        self,
        conn: sa.Connection,
        table: str,
        key: str,
        window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    ) -> list[tuple]:
        sql, (column, column_type) = self._statements[table]  # type: ignore[index]
        clause, params = _lead_id_clause(column, column_type, [key])
        if window is not None and self.window is not None:
            # Padded by a day as the batch's read pads it; exact after parsing.
            quoted, as_text = self.window
            for name, bound, op in (("since", window[0], ">="), ("until", window[1], "<")):
                padded = bound + pd.Timedelta(days=-1 if name == "since" else 1)
                params[name] = (
                    padded.strftime("%Y-%m-%d %H:%M:%S") if as_text else padded.to_pydatetime()
                )
                clause += f" AND {quoted} {op} :{name}"
        return list(conn.execute(sa.text(sql + clause), params))

    # -- one lead -------------------------------------------------------------------------

    def read(self, key: str, since: pd.Timestamp, until: pd.Timestamp) -> OneLead | None:
        """The lead whose id reads `key`, with its activities in [since, until); None when
        it must be read the batch's way (not found, a value the batch refuses or rewrites)."""
        try:
            with self.engine.connect() as conn:
                if self._statements is None:
                    self._prepare_once(conn)
                if not self._statements:
                    return None  # a shape the batch's read reports on
                leads = self._rows(conn, "leads", key)
                if len(leads) != 1 or id_text(leads[0][0]) != key:
                    return None  # unknown, duplicated or asked as "0042": the batch's read
                acts = (
                    self._rows(conn, "activities", key, (since, until))
                    if "activities" in self._statements
                    else []
                )
                outs = self._rows(conn, "outcomes", key) if "outcomes" in self._statements else []
            if self.events is not None:
                with self.events.engine.connect() as conn:
                    own = id_text(leads[0][0])
                    acts += [(own, *e) for e in self.events.of_lead(conn, own, since, until)]
            return self._lead(leads[0], acts, outs, since, until)
        except _Unclean:
            return None
        except sa.exc.SQLAlchemyError as exc:
            raise uris.database_error(
                f"cannot read lead {key!r}",
                self.config.source_uri,
                exc,
                "check that the source database is reachable",
            ) from None

    def lead_ids(self, keys: Sequence[str]) -> dict[str, str] | None:
        """Requested id -> the lead's id as text, for the ids the leads table holds; None
        when the table's shape is not one this reader covers."""
        found: dict[str, str] = {}
        try:
            with self.engine.connect() as conn:
                if self._statements is None:
                    self._prepare_once(conn)
                if not self._statements:
                    return None
                for key in keys:
                    rows = self._rows(conn, "leads", key)
                    if rows and rows[0][0] is not None:
                        found[key] = id_text(rows[0][0])
        except _Unclean:
            return None
        except sa.exc.SQLAlchemyError as exc:
            raise uris.database_error(
                "cannot look up leads", self.config.source_uri, exc,
                "check that the source database is reachable",
            ) from None  # fmt: skip
        return found

    def _lead(self, row, acts, outs, since: pd.Timestamp, until: pd.Timestamp) -> OneLead:
        values = dict(zip(self.lead_columns, row, strict=True))
        now = np.datetime64(pd.Timestamp.now(tz="UTC").tz_localize(None).to_datetime64(), "us")
        latest = now + np.timedelta64(1, "D")
        cols = self.source.columns
        lead_id = values[cols.lead_id]
        if lead_id is None or (isinstance(lead_id, str) and not lead_id.strip()):
            raise _Unclean
        if isinstance(lead_id, float):
            raise _Unclean  # a float id column: the batch's text form decides
        created = _timestamp(values[cols.created_at], False, latest)
        fields: dict[str, Any] = {}
        for name in self.numeric_columns:
            fields[name] = _number(values[name], self.placeholders, name in self.signed)
        for name in self.text_columns:
            fields[name] = _text(values[name], self.placeholders)
        converted = []
        if self.converted_on_leads:
            stamp = _timestamp(values[cols.converted_at], True, latest)
            converted = [stamp] if stamp is not None else []
        stage = self.source.outcome_stage
        for out in outs:
            if stage is not None:
                if out[2] is not None and not isinstance(out[2], str):
                    raise _Unclean  # a numbered stage reads "5" or "5.0": the batch decides
                reached = out[2] is not None and out[2].strip().lower() in stage.converted
                if not reached:
                    continue
            stamp = _timestamp(out[1], True, latest)
            if stamp is not None:
                converted.append(stamp)
        if any(c < created for c in converted):
            raise _Unclean  # a conversion before creation: the batch adjusts or refuses
        start = np.datetime64(since.to_datetime64(), "us")
        stop = np.datetime64(until.to_datetime64(), "us")
        times, types, details = [], [], []
        for act in acts:
            kind = act[2]
            if kind is None or (isinstance(kind, str) and not kind.strip()):
                raise _Unclean
            if not isinstance(kind, str):
                raise _Unclean
            at = _timestamp(act[1], False, latest)
            if not start <= at < stop:
                continue
            detail = act[3] if len(act) > 3 else None
            if detail is not None and not isinstance(detail, str):
                raise _Unclean
            times.append(at)
            types.append(kind)
            details.append(detail)
        return OneLead(
            lead_id=lead_id,
            created_at=created,
            fields=fields,
            times=np.array(times, dtype="datetime64[us]").view(np.int64),
            types=types,
            details=details,
            converted_at=min(converted) if converted else None,
        )
