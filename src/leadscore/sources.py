"""All input I/O: read leads, activities and outcomes from a database or a folder of files.

Tables come back with canonical column names (`lead_id`, `created_at`, `occurred_at`,
`activity_type`, `detail`, `converted_at`) and naive UTC timestamps; attribute columns keep
their own names. Problems raise :class:`DataError` naming the table, column and fix.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.config import ProjectConfig, SourceConfig
from leadscore.errors import DataError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


@dataclass(frozen=True)
class CRMData:
    """The three logical tables of the data contract, in canonical form."""

    leads: pd.DataFrame
    activities: pd.DataFrame
    outcomes: pd.DataFrame
    source: str

    @property
    def data_end(self) -> pd.Timestamp:
        """The latest moment seen in any table: the end of the observed history."""
        stamps = [self.leads["created_at"].max()]
        if len(self.activities):
            stamps.append(self.activities["occurred_at"].max())
        stamps.append(self.outcomes["converted_at"].max())
        return max(s for s in stamps if pd.notna(s))


def is_database_uri(uri: str) -> bool:
    """True for SQLAlchemy URLs such as sqlite:///x.db or postgresql://host/db."""
    return "://" in uri and not uri.startswith("file://")


def is_transient(exc: BaseException) -> bool:
    """Connection problems and locks, which a retry may get past."""
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError)


def check_identifier(name: str, what: str) -> str:
    """Reject table or column names that are not plain identifiers (no SQL injection)."""
    if not _IDENTIFIER.match(name):
        raise DataError(
            f"{what} {name!r} is not a plain identifier",
            "use letters, digits and underscores only (optionally schema.table)",
        )
    return name


def redact_uri(uri: str) -> str:
    """A URI safe to print or log: the password is masked."""
    if not is_database_uri(uri):
        return uri
    try:
        return sa.engine.make_url(uri).render_as_string(hide_password=True)
    except Exception:
        return uri.split("@")[-1]


def _fetch_frame(conn: sa.Connection, stmt: sa.TextClause) -> pd.DataFrame:
    """Run a SELECT on the raw driver cursor: several times faster than row objects."""
    compiled = stmt.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args = tuple(params[name] for name in compiled.positiontup) if compiled.positional else params
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        names = [d[0] for d in cursor.description]
        frame = pd.DataFrame.from_records(cursor.fetchall(), columns=names, coerce_float=True)
    finally:
        cursor.close()
    return frame.infer_objects()


def _read_table(
    uri: str,
    table: str,
    columns: list[str] | None = None,
    time_window: tuple[str, pd.Timestamp | None, pd.Timestamp | None] | None = None,
) -> pd.DataFrame:
    """Read one table from a database or from `<folder>/<table>.parquet|.csv`.

    `columns` limits what is read (absent ones are left for the caller to report);
    `time_window` = (column, since, until) lets a database skip rows outside a window,
    padded by a day: callers filter exactly after parsing timestamps.
    """
    check_identifier(table, "table name")
    if is_database_uri(uri):
        try:
            engine = sa.create_engine(uri)
        except Exception as exc:
            raise DataError(
                f"cannot open source {redact_uri(uri)}: {exc}",
                "check source.uri in the project file (or LEADSCORE_SOURCE_URI)",
            ) from None
        try:
            with engine.connect() as conn:
                inspector = sa.inspect(conn)
                names = set(inspector.get_table_names(schema=_schema(table)))
                if table.split(".")[-1] not in names:
                    raise DataError(
                        f"table '{table}' not found in {redact_uri(uri)}"
                        f" (tables there: {', '.join(sorted(names)) or 'none'})",
                        "create the table or map source.tables to an existing one",
                    )
                described = inspector.get_columns(table.split(".")[-1], schema=_schema(table))
                existing = [c["name"] for c in described]
                types = {c["name"]: c["type"] for c in described}
                quote = conn.dialect.identifier_preparer.quote
                qualified = ".".join(quote(p) for p in table.split("."))
                wanted = [c for c in (columns or existing) if c in existing] or existing
                select = ", ".join(quote(c) for c in wanted)
                sql, params = f"SELECT {select} FROM {qualified}", {}
                if time_window is not None and _comparable_time(
                    conn.dialect.name, types.get(time_window[0])
                ):
                    column, since, until = time_window
                    clauses = []
                    for name, bound, op in (("since", since, ">="), ("until", until, "<")):
                        if bound is None:
                            continue
                        padded = bound + pd.Timedelta(days=-1 if name == "since" else 1)
                        # SQLite stores timestamps as ISO text, which compares in order.
                        value = (
                            padded.strftime("%Y-%m-%d %H:%M:%S")
                            if conn.dialect.name == "sqlite"
                            else padded.to_pydatetime()
                        )
                        params[name] = value
                        clauses.append(f"{quote(column)} {op} :{name}")
                    if clauses:
                        sql += " WHERE " + " AND ".join(clauses)
                return _fetch_frame(conn, sa.text(sql).bindparams(**params))
        except DataError:
            raise
        except Exception as exc:
            raise DataError(
                f"cannot read table '{table}' from {redact_uri(uri)}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
                "check that the database is reachable and source.uri is right",
                transient=is_transient(exc),
            ) from None
        finally:
            engine.dispose()
    folder = Path(uri)
    if not folder.is_dir():
        raise DataError(
            f"source folder {folder} does not exist",
            "set source.uri to a folder of .parquet/.csv files or a database URL",
        )
    for suffix in (".parquet", ".csv"):
        path = folder / f"{table}{suffix}"
        if path.is_file():
            try:
                if suffix == ".parquet":
                    return pd.read_parquet(path, columns=columns)
                return pd.read_csv(path, usecols=columns)
            except ValueError as exc:
                raise DataError(f"cannot read {path}: {exc}", "check the file's columns") from None
            except Exception as exc:
                raise DataError(
                    f"cannot read {path}: {type(exc).__name__}: {exc}",
                    "check that the file is a valid Parquet/CSV file",
                ) from None
    raise DataError(
        f"table '{table}' not found: neither {table}.parquet nor {table}.csv in {folder}",
        "export the table there or map source.tables to the right file name",
    )


def _comparable_time(dialect: str, column_type: object) -> bool:
    """Can the database compare this column with a timestamp bound in time order?

    True for real date/time columns, and for SQLite text (ISO 8601 sorts in time order);
    anything else (epoch integers, free text in PostgreSQL) is filtered after reading.
    """
    if column_type is None:
        return False
    if isinstance(column_type, sa.types.DateTime | sa.types.Date):
        return True
    return dialect == "sqlite" and isinstance(column_type, sa.types.String | sa.types.NullType)


def _schema(table: str) -> str | None:
    return table.split(".")[0] if "." in table else None


def _require(frame: pd.DataFrame, table: str, columns: dict[str, str]) -> None:
    """Raise if a mapped column is missing; `columns` maps config key -> column name."""
    for key, name in columns.items():
        if name not in frame.columns:
            close = [c for c in frame.columns if c.lower() == name.lower()]
            hint = f" (a column '{close[0]}' exists)" if close else ""
            raise DataError(
                f"table '{table}' has no column '{name}'{hint}; columns there: "
                f"{', '.join(map(str, frame.columns))}",
                f"map the right column in source.{key} of the project file",
            )


def _timestamps(values: pd.Series, table: str, column: str, allow_null: bool) -> pd.Series:
    """Parse to naive UTC; raise naming rows that are not timestamps."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif pd.api.types.is_numeric_dtype(values) and values.notna().any():
        # Epoch numbers are ambiguous (seconds? milliseconds?): refuse rather than guess.
        raise DataError(
            f"table '{table}', column '{column}' holds numbers, not timestamps",
            "export it as ISO 8601 text (2026-03-01 14:05:00) or a timestamp column",
        )
    else:
        text = values.astype("str")
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        if (parsed.isna() & values.notna()).any():
            # Not ISO 8601: one format inferred from the data for the whole column, never a
            # per-value guess (which reads 03/04 and 13/04 with different day orders).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                inferred = pd.to_datetime(text, errors="coerce", utc=True)
            if inferred.isna().sum() < parsed.isna().sum():
                parsed = inferred
        parsed = parsed.dt.tz_localize(None)
    bad = parsed.isna() & values.notna()
    if bad.any():
        raise DataError(
            f"table '{table}', column '{column}': {int(bad.sum())} value(s) are not timestamps "
            f"({_rows(bad)})",
            "fix or remove those rows, or map source.columns to the right column",
        )
    future = parsed > pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(days=1)
    if future.any():
        raise DataError(
            f"table '{table}', column '{column}': {int(future.sum())} timestamp(s) lie in the "
            f"future ({_rows(future)}); they would move every snapshot date",
            "fix the clock or time zone of the export, or remove those rows",
        )
    if not allow_null and parsed.isna().any():
        n = int(parsed.isna().sum())
        raise DataError(
            f"table '{table}', column '{column}': {n} row(s) are empty",
            "every row needs a timestamp; fill or drop them",
        )
    return parsed.astype("datetime64[us]")


def _rows(mask: pd.Series) -> str:
    """Row numbers (1 = first data row) of a mask, never the values: they may be personal."""
    rows = np.flatnonzero(mask.to_numpy()) + 1
    shown = ", ".join(str(r) for r in rows[:5])
    return f"rows {shown}{', …' if len(rows) > 5 else ''}"


def _not_empty(frame: pd.DataFrame, table: str) -> None:
    if frame.empty:
        raise DataError(
            f"table '{table}' is empty",
            "point source.uri/source.tables at the table that holds your data",
        )


def load_crm(
    config: ProjectConfig | SourceConfig,
    uri: str | None = None,
    activities_since: pd.Timestamp | None = None,
    activities_until: pd.Timestamp | None = None,
) -> CRMData:
    """Read and normalise the configured source tables.

    `activities_since`/`activities_until` keep only activities in that window (scoring needs
    only the model's lookback); a database source filters them before they are transferred.
    """
    source = config.source if isinstance(config, ProjectConfig) else config
    uri = uri or (config.source_uri if isinstance(config, ProjectConfig) else source.uri)
    cols = source.columns
    tables = source.tables

    leads_raw = _read_table(uri, tables.leads)
    _not_empty(leads_raw, tables.leads)
    attrs = source.attributes
    _require(
        leads_raw,
        tables.leads,
        {"columns.lead_id": cols.lead_id, "columns.created_at": cols.created_at},
    )
    for name in [*attrs.categorical, *attrs.numeric]:
        _require(leads_raw, tables.leads, {"attributes": name})
    for key, name in (("attributes.job_title", attrs.job_title), ("attributes.email", attrs.email)):
        if name is not None:
            _require(leads_raw, tables.leads, {key: name})
    if leads_raw[cols.lead_id].isna().any():
        empty = leads_raw[cols.lead_id].isna()
        raise DataError(
            f"table '{tables.leads}', column '{cols.lead_id}': {int(empty.sum())} empty id(s) "
            f"({_rows(empty)})",
            "every lead needs an id",
        )
    dup = leads_raw[cols.lead_id].duplicated()
    if dup.any():
        raise DataError(
            f"table '{tables.leads}', column '{cols.lead_id}': {int(dup.sum())} duplicate id(s) "
            f"({_rows(dup)})",
            "keep one row per lead",
        )
    keep = [cols.lead_id, cols.created_at, *attrs.categorical, *attrs.numeric]
    keep += [c for c in (attrs.job_title, attrs.email) if c is not None]
    leads = leads_raw[list(dict.fromkeys(keep))].rename(
        columns={cols.lead_id: "lead_id", cols.created_at: "created_at"}
    )
    leads["created_at"] = _timestamps(leads["created_at"], tables.leads, cols.created_at, False)
    for name in attrs.numeric:
        converted = pd.to_numeric(leads[name], errors="coerce")
        bad = converted.isna() & leads[name].notna()
        if bad.any():
            raise DataError(
                f"table '{tables.leads}', column '{name}': {int(bad.sum())} non-numeric "
                f"value(s) ({_rows(bad)})",
                "clean the column or list it under source.attributes.categorical",
            )
        leads[name] = converted.astype("float64")
    for name in attrs.categorical + [c for c in (attrs.job_title, attrs.email) if c]:
        leads[name] = leads[name].astype("str").where(leads[name].notna())

    if tables.activities is not None:
        wanted = [cols.activity_lead_id, cols.occurred_at, cols.activity_type]
        wanted += [cols.detail] if cols.detail else []
        window = (cols.occurred_at, activities_since, activities_until)
        act_raw = _read_table(uri, tables.activities, wanted, window)
        act_cols = {
            "columns.activity_lead_id": cols.activity_lead_id,
            "columns.occurred_at": cols.occurred_at,
            "columns.activity_type": cols.activity_type,
        }
        if cols.detail is not None:
            act_cols["columns.detail"] = cols.detail
        _require(act_raw, tables.activities, act_cols)
        activities = act_raw[list(act_cols.values())].rename(
            columns={
                cols.activity_lead_id: "lead_id",
                cols.occurred_at: "occurred_at",
                cols.activity_type: "activity_type",
                **({cols.detail: "detail"} if cols.detail else {}),
            }
        )
        if "detail" not in activities:
            activities["detail"] = pd.Series(pd.NA, index=activities.index, dtype="str")
        activities["occurred_at"] = _timestamps(
            activities["occurred_at"], tables.activities, cols.occurred_at, False
        )
        keep = pd.Series(True, index=activities.index)
        if activities_since is not None:
            keep &= activities["occurred_at"] >= activities_since
        if activities_until is not None:
            keep &= activities["occurred_at"] < activities_until
        if not keep.all():
            activities = activities[keep].reset_index(drop=True)
        activities["activity_type"] = activities["activity_type"].astype("str")
        activities["detail"] = activities["detail"].astype("str")
    else:
        activities = pd.DataFrame(
            {
                "lead_id": pd.Series(dtype=leads["lead_id"].dtype),
                "occurred_at": pd.Series(dtype="datetime64[us]"),
                "activity_type": pd.Series(dtype="str"),
                "detail": pd.Series(dtype="str"),
            }
        )

    if tables.outcomes is not None:
        out_raw = _read_table(uri, tables.outcomes)
        _require(
            out_raw,
            tables.outcomes,
            {
                "columns.outcome_lead_id": cols.outcome_lead_id,
                "columns.converted_at": cols.converted_at,
            },
        )
        outcomes = out_raw[[cols.outcome_lead_id, cols.converted_at]].rename(
            columns={cols.outcome_lead_id: "lead_id", cols.converted_at: "converted_at"}
        )
        where = tables.outcomes
    else:
        _require(leads_raw, tables.leads, {"columns.converted_at": cols.converted_at})
        outcomes = leads_raw[[cols.lead_id, cols.converted_at]].rename(
            columns={cols.lead_id: "lead_id", cols.converted_at: "converted_at"}
        )
        where = tables.leads
    outcomes["converted_at"] = _timestamps(outcomes["converted_at"], where, cols.converted_at, True)
    # A lead converts once: keep its first conversion.
    outcomes = (
        outcomes.dropna(subset=["converted_at"])
        .groupby("lead_id", as_index=False)["converted_at"]
        .min()
    )
    activities, outcomes = _align_ids(leads, activities, outcomes, tables)
    return CRMData(leads=leads, activities=activities, outcomes=outcomes, source=redact_uri(uri))


def _align_ids(
    leads: pd.DataFrame, activities: pd.DataFrame, outcomes: pd.DataFrame, tables
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give every table the leads' id type, and refuse tables whose ids match no lead.

    Exports often mix 42 and "42"; left alone, joins would silently match nothing.
    """
    target = leads["lead_id"]
    as_text = not pd.api.types.is_integer_dtype(target)

    def convert(ids: pd.Series) -> pd.Series:
        if as_text:
            numeric = pd.api.types.is_float_dtype(ids)
            return (ids.astype("Int64") if numeric else ids).astype("str")
        converted = pd.to_numeric(ids, errors="coerce")
        if converted.isna().any() or (converted % 1 != 0).any():
            return ids.astype("str")  # cannot be matched to integer ids: reported below
        return converted.astype("int64")

    out = []
    known = set(target.astype("str")) if as_text else set(target)
    for frame, table in ((activities, tables.activities), (outcomes, tables.outcomes)):
        frame = frame.assign(lead_id=convert(frame["lead_id"])) if len(frame) else frame
        if len(frame) and not frame["lead_id"].isin(known).any():
            raise DataError(
                f"table '{table or tables.leads}': none of its {len(frame):,} lead ids matches an "
                f"id in table '{tables.leads}'",
                "map source.columns to the lead id columns of both tables",
            )
        out.append(frame)
    return out[0], out[1]


def load_ground_truth(config: ProjectConfig) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The generator's hidden truth tables, if the config names them (generated data only)."""
    truth = config.source.ground_truth
    if truth is None:
        return None
    uri = config.source_uri
    leads = _read_table(uri, truth.leads)
    leads["created_day"] = pd.to_datetime(leads["created_day"]).astype("datetime64[us]")
    return leads, _read_table(uri, truth.shocks)


def write_tables(tables: dict[str, pd.DataFrame], uri: str, file_format: str = "sqlite") -> None:
    """Write generated tables to a database URL or to Parquet files in a folder."""
    if is_database_uri(uri):
        engine = sa.create_engine(uri)
        try:
            with engine.begin() as conn:
                for name, frame in tables.items():
                    check_identifier(name, "table name")
                    if conn.dialect.name == "sqlite":
                        _write_sqlite(conn, name, frame)
                    else:
                        frame.to_sql(
                            name, conn, if_exists="replace", index=False, chunksize=100_000
                        )
        finally:
            engine.dispose()
        return
    folder = Path(uri)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if file_format == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)


def _write_sqlite(conn: sa.Connection, name: str, frame: pd.DataFrame) -> None:
    """Bulk insert through the driver: ~10x faster than row-wise `to_sql` for millions of rows.

    Timestamps are written as ISO text ('YYYY-MM-DD HH:MM:SS'), SQLite's convention, which
    also sorts and compares in time order.
    """
    frame.head(0).to_sql(name, conn, if_exists="replace", index=False)
    columns = []
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_datetime64_any_dtype(values):
            text = values.astype("str").to_numpy(dtype=object)
            columns.append(np.where(values.isna().to_numpy(), None, text))
        elif pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
            columns.append(values.to_numpy().tolist())
        else:
            obj = values.to_numpy(dtype=object)
            columns.append(np.where(values.isna().to_numpy(), None, obj))
    placeholders = ", ".join("?" for _ in frame.columns)
    cursor = conn.connection.driver_connection.cursor()
    try:
        insert = f'INSERT INTO "{name}" VALUES ({placeholders})'
        cursor.executemany(insert, zip(*columns, strict=True))
    finally:
        cursor.close()
