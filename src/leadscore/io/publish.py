"""All score writes: publish a scoring run to the database in one transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.config import ProjectConfig
from leadscore.config.schema import AlertConfig
from leadscore.errors import DataError
from leadscore.io import alerts, uris
from leadscore.io.uris import (
    check_identifier,
    database_error,
    is_database_uri,
    is_transient,
    redact_uri,
)

#: Columns added after the first release; an older table gets them on the next publish.
ADDED_COLUMNS = {"tier": "VARCHAR(1)", "reasons_up": "TEXT", "reasons_down": "TEXT"}
TEXT_COLUMNS = ("rules_fired", "reasons_up", "reasons_down")
#: Empty in a rules-only run (no model yet, or by choice): its rows carry the rule score, the
#: MQL flag and tiers by rule points, and `model_name` "rules".
MODEL_COLUMNS = ("conversion_probability", "model_version", "mlflow_run_id")
RULES_ONLY_MODEL = "rules"

SCORE_COLUMNS = (
    "lead_id",
    "as_of_date",
    "conversion_probability",
    "percentile",
    "tier",
    "rule_score",
    "is_mql",
    "rules_fired",
    "reasons_up",
    "reasons_down",
    "model_name",
    "model_version",
    "mlflow_run_id",
    "scored_at",
)


def _score_table(
    name: str, metadata: sa.MetaData, integer_ids: bool, key: tuple[str, ...]
) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("lead_id", sa.BigInteger if integer_ids else sa.String(255), nullable=False),
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("conversion_probability", sa.Float),
        sa.Column("percentile", sa.Float, nullable=False),
        sa.Column("tier", sa.String(1)),
        sa.Column("rule_score", sa.Float, nullable=False),
        sa.Column("is_mql", sa.Boolean, nullable=False),
        sa.Column("rules_fired", sa.Text, nullable=False),
        sa.Column("reasons_up", sa.Text),
        sa.Column("reasons_down", sa.Text),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64)),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("scored_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint(*key),
    )


def _runs_table(name: str, metadata: sa.MetaData) -> sa.Table:
    """One row per published as-of date: which model, how many leads, when."""
    return sa.Table(
        name,
        metadata,
        sa.Column("as_of_date", sa.Date, primary_key=True),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64)),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("leads", sa.Integer, nullable=False),
        sa.Column("scored_at", sa.DateTime, nullable=False),
        sa.Column("published_at", sa.DateTime, nullable=False),
        sa.Column("rules_sha256", sa.String(64)),
    )


def _rule_files_table(name: str, metadata: sa.MetaData) -> sa.Table:
    """Each version of the rule file a run was scored with, by the SHA-256 of its bytes."""
    return sa.Table(
        name,
        metadata,
        sa.Column("rules_sha256", sa.String(64), primary_key=True),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("rules_text", sa.Text, nullable=False),
        sa.Column("first_published_at", sa.DateTime, nullable=False),
    )


@dataclass(frozen=True)
class RuleFile:
    """The rule file of a run, as publishing records it (see data.rules.RuleFileVersion)."""

    name: str
    sha256: str
    text: str


@dataclass(frozen=True)
class ScoreTables:
    """Where scores go: the latest score per lead, every run's scores, and the runs."""

    latest: str = "lead_scores"
    history: str = "lead_score_history"
    runs: str = "lead_score_runs"
    rule_files: str = "lead_score_rule_files"

    @classmethod
    def of(cls, config: ProjectConfig) -> ScoreTables:
        """The tables a project file names."""
        p = config.publish
        return cls(
            latest=p.table,
            history=p.history_table,
            runs=p.runs_table,
            rule_files=p.rule_files_table,
        )

    def __post_init__(self) -> None:
        names = {"latest": self.latest, "history": self.history, "runs": self.runs,
                 "rule files": self.rule_files}  # fmt: skip
        for what, name in names.items():
            check_identifier(name, f"publish {what} table")
        if len(set(names.values())) < len(names):
            raise DataError(
                "publish.table, publish.history_table, publish.runs_table and "
                "publish.rule_files_table must differ",
                "give each its own name",
            )


def published_frame(
    scores: pd.DataFrame,
    model_name: str,
    model_version: str | None,
    run_id: str | None,
    scored_at: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Scores with the model's identity and the scoring time (default now), ready to publish.

    A rules-only run has no model: `model_name` "rules", version and run None.
    """
    if scored_at is None:
        scored_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    out = scores.rename(columns={"as_of": "as_of_date"}).copy()
    out["model_name"] = model_name
    out["model_version"] = model_version
    out["mlflow_run_id"] = run_id
    out["scored_at"] = scored_at
    return out


def check_scores(scores: pd.DataFrame) -> None:
    """Refuse to publish anything incomplete or invalid."""
    missing = [c for c in SCORE_COLUMNS if c not in scores]
    if missing:
        raise DataError(f"scores lack column(s) {', '.join(missing)}; nothing was published")
    if scores.empty:
        raise DataError("no scores to publish; nothing was published")
    by_rules = scores["model_version"].isna()
    if by_rules.any() and not by_rules.all():
        raise DataError(
            f"{int(by_rules.sum())} of {len(scores)} scores have no model version: a run is "
            "scored by a model or by the rules alone, never both; nothing was published"
        )
    p = scores["conversion_probability"].to_numpy(dtype=float)
    if by_rules.all():
        if np.isfinite(p).any():
            raise DataError("rules-only scores carry probabilities; nothing was published")
    else:
        bad = ~np.isfinite(p) | (p < 0) | (p > 1)
        if bad.any():
            raise DataError(
                f"{int(bad.sum())} probabilities are missing or outside [0, 1]; nothing was "
                "published"
            )
    dupes = scores.duplicated(["lead_id", "as_of_date"])
    if dupes.any():
        raise DataError(
            f"{int(dupes.sum())} duplicate (lead_id, as_of_date) rows; nothing was published"
        )
    tiers = scores["tier"].astype("str")
    if not tiers.isin(["A", "B", "C", "D"]).all():
        raise DataError("scores contain tiers other than A-D; nothing was published")
    optional = [*TEXT_COLUMNS, *(MODEL_COLUMNS if by_rules.all() else ())]
    if scores[list(SCORE_COLUMNS)].drop(columns=optional).isna().any().any():
        raise DataError("scores contain empty values; nothing was published")


def _database_uri(uri: str) -> None:
    if not is_database_uri(uri):
        raise DataError(
            f"publish.uri {uri!r} is not a database URL",
            "set publish.uri to e.g. sqlite:///scores.db or postgresql://host/db",
        )


def _prepare_latest(conn: sa.Connection, table: str, uri: str) -> None:
    """Refuse a foreign table untouched; add columns later releases introduced."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(table):
        return
    have = {c["name"] for c in inspector.get_columns(table)}
    # Check before altering anything: some databases commit DDL at once, so a foreign
    # table must be refused untouched.
    lacking = [c for c in SCORE_COLUMNS if c not in have and c not in ADDED_COLUMNS]
    if lacking:
        raise DataError(
            f"table '{table}' in {redact_uri(uri)} exists without column(s) {', '.join(lacking)}",
            "rename the old table or set publish.table to a new name",
        )
    for column, kind in ADDED_COLUMNS.items():
        if column not in have:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))


def _insert(conn: sa.Connection, table: sa.Table, records: list[dict]) -> None:
    """Bulk insert: COPY on PostgreSQL, batched executemany elsewhere."""
    if conn.dialect.name == "postgresql":
        names = [c.name for c in table.columns]
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
            for record in records:
                copy.write_row([record[n] for n in names])
        return
    for start in range(0, len(records), 50_000):
        conn.execute(sa.insert(table), records[start : start + 50_000])


def _records(scores: pd.DataFrame) -> tuple[list[dict], bool]:
    frame = scores[list(SCORE_COLUMNS)].copy()
    integer_ids = pd.api.types.is_integer_dtype(frame["lead_id"])
    frame["lead_id"] = frame["lead_id"].astype("int64" if integer_ids else "str")
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    frame["scored_at"] = pd.to_datetime(frame["scored_at"]).dt.to_pydatetime()
    frame["is_mql"] = frame["is_mql"].astype(bool)
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str)
    frame = frame.astype(object)
    for column in MODEL_COLUMNS:  # empty in a rules-only run: NULL, not NaN or "None"
        frame[column] = frame[column].where(frame[column].notna(), None)
    return frame.to_dict("records"), integer_ids


def publish_scores(
    scores: pd.DataFrame, uri: str, tables: ScoreTables | str = ScoreTables()
) -> int:
    """Publish a scoring run in one transaction: history, latest score per lead, run record.

    Per as-of date the run is idempotent: a rerun replaces that date's history and run rows.
    `lead_scores` then holds each lead's score from its newest as-of date (a backfill of an
    older date never overwrites a newer score). A failure or a killed process leaves every
    table as it was. Returns the number of leads published.
    """
    return publish_with_alerts(scores, uri, tables)[0]


def publish_with_alerts(
    scores: pd.DataFrame,
    uri: str,
    tables: ScoreTables | str = ScoreTables(),
    alert_config: AlertConfig | None = None,
    rule_file: RuleFile | None = None,
) -> tuple[int, int]:
    """`publish_scores`, and in the same transaction the hot-lead alerts of the run
    (leadscore.io.alerts) and the rule file's version (its SHA-256 on the run's row, its
    text in the rule files table). Returns the leads published and the alert rows written."""
    if isinstance(tables, str):
        tables = ScoreTables(latest=tables)
    check_scores(scores)
    _database_uri(uri)
    records, integer_ids = _records(scores)
    by_rules = records[0]["model_version"] is None
    metadata = sa.MetaData()
    _score_table(tables.latest, metadata, integer_ids, ("lead_id",))  # created if missing
    history = _score_table(tables.history, metadata, integer_ids, ("lead_id", "as_of_date"))
    runs = _runs_table(tables.runs, metadata)
    rule_files = _rule_files_table(tables.rule_files, metadata)
    dates = sorted({r["as_of_date"] for r in records})
    engine = uris.create_engine(uri)
    try:
        with engine.begin() as conn:
            _queue_writers(conn, tables)
            _prepare_latest(conn, tables.latest, uri)
            inspector = sa.inspect(conn)
            migrate = inspector.has_table(tables.latest) and not inspector.has_table(tables.history)
            had_runs = inspector.has_table(tables.runs)
            metadata.create_all(conn)
            if migrate:
                _migrate_to_history(conn, tables)
            if had_runs:
                _add_rules_column(conn, tables.runs)
            conn.execute(sa.delete(history).where(history.c.as_of_date.in_(dates)))
            if by_rules:  # after a write: SQLite's transaction is open, the DDL joins it
                _allow_rules_only(conn, tables)
            _insert(conn, history, records)
            _refresh_latest(conn, tables, dates)
            staged = 0
            if alert_config is not None and alert_config.sinks:
                now = pd.Timestamp.now(tz="UTC").tz_localize(None)
                staged = alerts.stage_alerts(
                    conn, alert_config, records, tables.history, tables.runs, now
                )
            conn.execute(sa.delete(runs).where(runs.c.as_of_date.in_(dates)))
            published_at = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()
            if rule_file is not None:
                _record_rule_file(conn, rule_files, rule_file, published_at)
            for day in dates:
                rows = [r for r in records if r["as_of_date"] == day]
                first = rows[0]
                conn.execute(
                    sa.insert(runs),
                    {
                        "as_of_date": day,
                        "model_name": first["model_name"],
                        "model_version": first["model_version"],
                        "mlflow_run_id": first["mlflow_run_id"],
                        "leads": len(rows),
                        "scored_at": first["scored_at"],
                        "published_at": published_at,
                        "rules_sha256": None if rule_file is None else rule_file.sha256,
                    },
                )
    except DataError:
        raise
    except sa.exc.SQLAlchemyError as exc:
        raise database_error(
            f"cannot publish to table '{tables.latest}'", uri, exc,
            "check publish.uri and that the database accepts writes; nothing was published",
        ) from None  # fmt: skip
    finally:
        engine.dispose()
    return len(records), staged


_COLUMNS = ", ".join(SCORE_COLUMNS)


def _add_rules_column(conn: sa.Connection, runs: str) -> None:
    """Runs tables made before rule file versions were recorded gain the column (empty for
    their runs), in the publishing transaction."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns(runs)}
    if "rules_sha256" not in columns:
        conn.execute(sa.text(f"ALTER TABLE {runs} ADD COLUMN rules_sha256 VARCHAR(64)"))


def _record_rule_file(
    conn: sa.Connection, table: sa.Table, rule_file: RuleFile, published_at
) -> None:
    """The rule file's text under its SHA-256, once per version."""
    known = conn.execute(
        sa.select(sa.func.count()).where(table.c.rules_sha256 == rule_file.sha256)
    ).scalar()
    if not known:
        conn.execute(
            sa.insert(table),
            {
                "rules_sha256": rule_file.sha256,
                "file_name": rule_file.name,
                "rules_text": rule_file.text,
                "first_published_at": published_at,
            },
        )


def read_rule_versions(uri: str, tables: ScoreTables = ScoreTables()) -> pd.DataFrame:
    """Which rule file version scored which published run: as_of_date, rules_sha256,
    file_name and rules_text (empty for runs published before versions were recorded)."""
    _database_uri(uri)
    engine = uris.create_engine(uri)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(tables.runs):
                return pd.DataFrame(
                    columns=["as_of_date", "rules_sha256", "file_name", "rules_text"]
                )
            if "rules_sha256" not in {c["name"] for c in inspector.get_columns(tables.runs)}:
                query = f"SELECT as_of_date, NULL AS rules_sha256 FROM {tables.runs}"
                runs = pd.read_sql(sa.text(query), conn)
            else:
                runs = pd.read_sql(
                    sa.text(f"SELECT as_of_date, rules_sha256 FROM {tables.runs}"), conn
                )
            files = (
                pd.read_sql(
                    sa.text(f"SELECT rules_sha256, file_name, rules_text FROM {tables.rule_files}"),
                    conn,
                )
                if inspector.has_table(tables.rule_files)
                else pd.DataFrame(columns=["rules_sha256", "file_name", "rules_text"])
            )
    except sa.exc.SQLAlchemyError as exc:
        raise database_error(
            f"cannot read the runs of table '{tables.runs}'", uri, exc, "check publish.uri"
        ) from None
    finally:
        engine.dispose()
    out = runs.merge(files, on="rules_sha256", how="left")
    return out.sort_values("as_of_date").reset_index(drop=True)


def _allow_rules_only(conn: sa.Connection, tables: ScoreTables) -> None:
    """Tables made before rules-only runs existed require a model on every row: let the
    model's columns be empty (in the publishing transaction; rows are kept as they are)."""
    inspector = sa.inspect(conn)
    for table in (tables.latest, tables.history, tables.runs):
        strict = [
            c["name"]
            for c in inspector.get_columns(table)
            if c["name"] in MODEL_COLUMNS and not c["nullable"]
        ]
        if not strict:
            continue
        if conn.dialect.name != "sqlite":
            for column in strict:
                conn.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL"))
            continue
        columns = [c["name"] for c in inspector.get_columns(table)]
        _rebuild_sqlite_table(conn, table, strict, columns)


def _rebuild_sqlite_table(
    conn: sa.Connection, table: str, strict: list[str], columns: list[str]
) -> None:
    """SQLite cannot alter a column: the table is made again from its own definition without
    NOT NULL on `strict` (SQLite's documented recipe: new table, copy, drop, rename), and its
    indexes, triggers and the views that read it are made again as they were."""
    schema = conn.execute(
        sa.text("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL")
    ).all()
    ddl = next(r.sql for r in schema if r.type == "table" and r.name == table)
    own = [r.sql for r in schema if r.tbl_name == table and r.type in ("index", "trigger")]
    mentions = re.compile(rf"\b{re.escape(table)}\b", re.IGNORECASE)
    views = [r for r in schema if r.type == "view" and mentions.search(r.sql)]
    for column in strict:
        ddl = re.sub(
            rf"([\"`\[]?\b{column}\b[\"`\]]?[^,\n]*?)\s+NOT\s+NULL",
            r"\1",
            ddl,
            count=1,
            flags=re.IGNORECASE,
        )
    new = f"{table}__rules_only"
    ddl = re.sub(
        rf"^(\s*CREATE\s+TABLE\s+)[\"`\[]?{re.escape(table)}[\"`\]]?",
        rf"\g<1>{new}",
        ddl,
        count=1,
        flags=re.IGNORECASE,
    )
    names = ", ".join(columns)
    for view in views:
        conn.exec_driver_sql(f'DROP VIEW "{view.name}"')
    conn.exec_driver_sql(ddl)  # the database's own DDL, run as it is (no bind parameters)
    conn.execute(sa.text(f"INSERT INTO {new} ({names}) SELECT {names} FROM {table}"))
    conn.execute(sa.text(f"DROP TABLE {table}"))
    conn.execute(sa.text(f"ALTER TABLE {new} RENAME TO {table}"))
    for sql in [*own, *(v.sql for v in views)]:
        conn.exec_driver_sql(sql)


def _queue_writers(conn: sa.Connection, tables: ScoreTables) -> None:
    """Two writers of the same score tables queue here instead of interleaving (PostgreSQL;
    SQLite's write lock does the same)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
            {"name": f"leadscore.publish.{tables.latest}"},
        )


def _migrate_to_history(conn: sa.Connection, tables: ScoreTables) -> None:
    """A table from before the history existed held every as-of date: keep them as history."""
    conn.execute(
        sa.text(f"INSERT INTO {tables.history} ({_COLUMNS}) SELECT {_COLUMNS} FROM {tables.latest}")
    )
    conn.execute(
        sa.text(
            f"DELETE FROM {tables.latest} WHERE as_of_date < (SELECT max(s.as_of_date) "
            f"FROM {tables.latest} s WHERE s.lead_id = {tables.latest}.lead_id)"
        )
    )


def _refresh_latest(conn: sa.Connection, tables: ScoreTables, dates: list) -> None:
    """Each lead scored on `dates` gets its newest score in the latest table.

    A backfill (an older as-of) reaches the latest table only for leads that have no newer
    score: for the others it goes to the history alone. Rows dated in the future (published
    before as-of dates were bounded) are no newer score: any run replaces them.
    """
    latest, history = tables.latest, tables.history
    today = pd.Timestamp.now(tz="UTC").tz_localize(None).date()
    future = conn.execute(
        sa.text(f"DELETE FROM {latest} WHERE as_of_date > :today"), {"today": today}
    ).rowcount
    if future:
        _restore_latest(conn, tables, today)
    for day in dates:
        conn.execute(
            sa.text(
                f"DELETE FROM {latest} WHERE as_of_date <= :day AND lead_id IN "
                f"(SELECT lead_id FROM {history} WHERE as_of_date = :day)"
            ),
            {"day": day},
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {latest} ({_COLUMNS}) SELECT {_COLUMNS} FROM {history} h "
                f"WHERE h.as_of_date = :day AND NOT EXISTS "
                f"(SELECT 1 FROM {latest} s WHERE s.lead_id = h.lead_id)"
            ),
            {"day": day},
        )


def prune_scores(
    uri: str,
    tables: ScoreTables,
    after: pd.Timestamp,
    monitoring_table: str | None = None,
    dry_run: bool = False,
) -> dict[str, int]:
    """Remove every run with an as-of date after `after`, in one transaction.

    History, run records, monitoring rows and latest rows of those dates go; a lead whose
    latest score was removed gets its newest remaining score back. Returns the rows removed
    (and restored) per table; `dry_run` counts without changing anything.
    """
    _database_uri(uri)
    if monitoring_table is not None:
        check_identifier(monitoring_table, "monitoring table")
    day = {"after": pd.Timestamp(after).date()}
    engine = uris.create_engine(uri)
    counts: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            _queue_writers(conn, tables)
            present = set(sa.inspect(conn).get_table_names())
            targets = [tables.history, tables.runs, tables.latest]
            targets += [monitoring_table] if monitoring_table else []
            for table in targets:
                if table not in present:
                    counts[table] = 0
                    continue
                where = f"FROM {table} WHERE as_of_date > :after"
                counts[table] = int(conn.execute(sa.text(f"SELECT count(*) {where}"), day).scalar())
                if not dry_run:
                    conn.execute(sa.text(f"DELETE {where}"), day)
            restored = 0
            if {tables.latest, tables.history} <= present:
                restored = _restore_latest(conn, tables, day["after"], dry_run)
            counts["restored"] = restored
    except sa.exc.SQLAlchemyError as exc:
        raise DataError(
            f"cannot prune the scores in {redact_uri(uri)}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}",
            "check publish.uri; nothing was removed",
            transient=is_transient(exc),
        ) from None
    finally:
        engine.dispose()
    return counts


def _restore_latest(conn: sa.Connection, tables: ScoreTables, until, dry_run: bool = False) -> int:
    """Leads without a latest score up to `until` get their newest history row up to it.

    Returns how many (with `dry_run`, how many would).
    """
    missing = (
        f"FROM {tables.history} h WHERE h.as_of_date = (SELECT max(h2.as_of_date) "
        f"FROM {tables.history} h2 WHERE h2.lead_id = h.lead_id AND h2.as_of_date <= :until) "
        f"AND NOT EXISTS (SELECT 1 FROM {tables.latest} s WHERE s.lead_id = h.lead_id AND "
        "s.as_of_date <= :until)"
    )
    bound = {"until": until}
    count = int(conn.execute(sa.text(f"SELECT count(*) {missing}"), bound).scalar())
    if count and not dry_run:
        insert = f"INSERT INTO {tables.latest} ({_COLUMNS}) SELECT {_COLUMNS} {missing}"
        conn.execute(sa.text(insert), bound)
    return count


def read_scores(
    uri: str,
    table: str = "lead_scores",
    latest: bool = False,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Read a published table back (scores, history or runs); empty if nothing yet.

    `latest` keeps the newest as-of date only; `until` keeps as-of dates on or before it.
    """
    check_identifier(table, "publish table")
    _database_uri(uri)
    empty = pd.DataFrame(columns=list(SCORE_COLUMNS))
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return empty  # nothing published yet; do not create an empty database file
    query, params = f"SELECT * FROM {table}", {}
    if until is not None:
        query += " WHERE as_of_date <= :until"
        params["until"] = pd.Timestamp(until).date()
    if latest:
        query += " AND" if until is not None else " WHERE"
        inner = f"SELECT max(as_of_date) FROM {table}"
        inner += " WHERE as_of_date <= :until" if until is not None else ""
        query += f" as_of_date = ({inner})"
    engine = None
    try:
        engine = uris.create_engine(uri)
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return empty
            frame = pd.read_sql(sa.text(query), conn, params=params)
    except sa.exc.SQLAlchemyError as exc:
        raise DataError(
            f"cannot read table '{table}' in {redact_uri(uri)}: {type(exc).__name__}",
            "check publish.uri",
            transient=is_transient(exc),
        ) from None
    finally:
        if engine is not None:
            engine.dispose()
    if "as_of_date" in frame:
        frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).astype("datetime64[us]")
    return frame


def publish_checks(checks: pd.DataFrame, uri: str, table: str) -> int:
    """Write a scoring run's monitoring checks; a rerun of the same as-of replaces its rows."""
    check_identifier(table, "monitoring table")
    _database_uri(uri)
    metadata = sa.MetaData()
    target = sa.Table(
        table,
        metadata,
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("check_name", sa.String(64), nullable=False),
        sa.Column("feature", sa.String(255)),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("checked_at", sa.DateTime, nullable=False),
    )
    frame = checks.rename(columns={"check": "check_name"})
    frame = frame.astype(object).where(frame.notna(), None)
    records = frame.to_dict("records")
    for record in records:
        record["as_of_date"] = pd.Timestamp(record["as_of_date"]).date()
        for key in ("value", "threshold"):
            value = record.get(key)
            record[key] = None if value is None or not np.isfinite(float(value)) else float(value)
    dates = sorted({r["as_of_date"] for r in records})
    engine = uris.create_engine(uri)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(sa.delete(target).where(target.c.as_of_date.in_(dates)))
            if records:
                conn.execute(sa.insert(target), records)
    except sa.exc.SQLAlchemyError as exc:
        raise DataError(
            f"cannot write monitoring table '{table}' in {redact_uri(uri)}: {type(exc).__name__}",
            "check publish.uri; the scores themselves were published",
            transient=is_transient(exc),
        ) from None
    finally:
        engine.dispose()
    return len(records)


class PublishedScores:
    """One lead's published scores, newest first, on one pooled engine (for the service)."""

    def __init__(self, uri: str, tables: ScoreTables) -> None:
        self.uri, self.tables = uri, tables
        self.engine = uris.create_engine(uri) if is_database_uri(uri) else None
        self._integer_ids: bool | None = None

    def last(self, lead_id: str, n: int = 2) -> list[dict]:
        """The lead's newest `n` rows of the history table (none: never published)."""
        if self.engine is None:
            return []
        try:
            if self._integer_ids is None:
                inspector = sa.inspect(self.engine)
                if not inspector.has_table(self.tables.history):
                    return []  # nothing published yet: look again next time
                column = next(
                    c for c in inspector.get_columns(self.tables.history) if c["name"] == "lead_id"
                )
                self._integer_ids = isinstance(column["type"], sa.Integer)
            key: int | str = str(lead_id)
            if self._integer_ids:
                if not re.fullmatch(r"-?\d{1,18}", key):
                    return []
                key = int(key)
            query = sa.text(
                f"SELECT {_COLUMNS} FROM {self.tables.history} WHERE lead_id = :id "
                "ORDER BY as_of_date DESC LIMIT :n"
            )
            with self.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(query, {"id": key, "n": n})]
        except sa.exc.SQLAlchemyError as exc:
            raise database_error(
                f"cannot read table '{self.tables.history}'", self.uri, exc, "check publish.uri"
            ) from None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
