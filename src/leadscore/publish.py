"""All score writes: publish a scoring run to the database in one transaction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore import db
from leadscore.errors import DataError
from leadscore.sources import check_identifier, is_database_uri, is_transient, redact_uri

#: Columns added after the first release; an older table gets them on the next publish.
ADDED_COLUMNS = {"tier": "VARCHAR(1)", "reasons_up": "TEXT", "reasons_down": "TEXT"}
TEXT_COLUMNS = ("rules_fired", "reasons_up", "reasons_down")

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


def _score_table(name: str, metadata: sa.MetaData, integer_ids: bool) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("lead_id", sa.BigInteger if integer_ids else sa.String(255), nullable=False),
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("conversion_probability", sa.Float, nullable=False),
        sa.Column("percentile", sa.Float, nullable=False),
        sa.Column("tier", sa.String(1)),
        sa.Column("rule_score", sa.Float, nullable=False),
        sa.Column("is_mql", sa.Boolean, nullable=False),
        sa.Column("rules_fired", sa.Text, nullable=False),
        sa.Column("reasons_up", sa.Text),
        sa.Column("reasons_down", sa.Text),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("mlflow_run_id", sa.String(64), nullable=False),
        sa.Column("scored_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("lead_id", "as_of_date"),
    )


def check_scores(scores: pd.DataFrame) -> None:
    """Refuse to publish anything incomplete or invalid."""
    missing = [c for c in SCORE_COLUMNS if c not in scores]
    if missing:
        raise DataError(f"scores lack column(s) {', '.join(missing)}; nothing was published")
    if scores.empty:
        raise DataError("no scores to publish; nothing was published")
    p = scores["conversion_probability"].to_numpy(dtype=float)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} probabilities are missing or outside [0, 1]; nothing was published"
        )
    dupes = scores.duplicated(["lead_id", "as_of_date"])
    if dupes.any():
        raise DataError(
            f"{int(dupes.sum())} duplicate (lead_id, as_of_date) rows; nothing was published"
        )
    tiers = scores["tier"].astype("str")
    if not tiers.isin(["A", "B", "C", "D"]).all():
        raise DataError("scores contain tiers other than A-D; nothing was published")
    if scores[list(SCORE_COLUMNS)].drop(columns=list(TEXT_COLUMNS)).isna().any().any():
        raise DataError("scores contain empty values; nothing was published")


def publish_scores(scores: pd.DataFrame, uri: str, table: str = "lead_scores") -> int:
    """Replace the rows of each as-of date in `table` with `scores`, atomically.

    Rerunning the same as-of date replaces its rows; a failure leaves the table as it was.
    Returns the number of rows written.
    """
    check_identifier(table, "publish table")
    check_scores(scores)
    if not is_database_uri(uri):
        raise DataError(
            f"publish.uri {uri!r} is not a database URL",
            "set publish.uri to e.g. sqlite:///scores.db or postgresql://host/db",
        )
    frame = scores[list(SCORE_COLUMNS)].copy()
    integer_ids = pd.api.types.is_integer_dtype(frame["lead_id"])
    frame["lead_id"] = frame["lead_id"].astype("int64" if integer_ids else "str")
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    frame["scored_at"] = pd.to_datetime(frame["scored_at"]).dt.to_pydatetime()
    frame["is_mql"] = frame["is_mql"].astype(bool)
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str)
    records = frame.astype(object).to_dict("records")
    engine = db.create_engine(uri)
    try:
        metadata = sa.MetaData()
        target = _score_table(table, metadata, integer_ids)
        with engine.begin() as conn:
            existing = sa.inspect(conn)
            if existing.has_table(table):
                have = {c["name"] for c in existing.get_columns(table)}
                # Check before altering anything: some databases commit DDL at once, so a
                # foreign table must be refused untouched.
                lacking = [c for c in SCORE_COLUMNS if c not in have and c not in ADDED_COLUMNS]
                if lacking:
                    raise DataError(
                        f"table '{table}' in {redact_uri(uri)} exists without column(s) "
                        f"{', '.join(lacking)}",
                        "rename the old table or set publish.table to a new name",
                    )
                for column, kind in ADDED_COLUMNS.items():
                    if column not in have:
                        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
            else:
                metadata.create_all(conn)
            dates = sorted(set(frame["as_of_date"]))
            conn.execute(sa.delete(target).where(target.c.as_of_date.in_(dates)))
            for start in range(0, len(records), 50_000):
                conn.execute(sa.insert(target), records[start : start + 50_000])
    except DataError:
        raise
    except sa.exc.SQLAlchemyError as exc:
        raise DataError(
            f"cannot publish to table '{table}' in {redact_uri(uri)}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
            "check publish.uri and that the database accepts writes; nothing was published",
            transient=is_transient(exc),
        ) from None
    finally:
        engine.dispose()
    return len(records)


def read_scores(uri: str, table: str = "lead_scores", latest: bool = False) -> pd.DataFrame:
    """Read published scores back (all, or only the latest as-of date); empty if none yet."""
    check_identifier(table, "publish table")
    if not is_database_uri(uri):
        raise DataError(
            f"publish.uri {uri!r} is not a database URL",
            "set publish.uri to e.g. sqlite:///scores.db or postgresql://host/db",
        )
    empty = pd.DataFrame(columns=list(SCORE_COLUMNS))
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return empty  # nothing published yet; do not create an empty database file
    query = f"SELECT * FROM {table}"
    if latest:
        query += f" WHERE as_of_date = (SELECT max(as_of_date) FROM {table})"
    engine = None
    try:
        engine = db.create_engine(uri)
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return empty
            return pd.read_sql(sa.text(query), conn)
    except sa.exc.SQLAlchemyError as exc:
        raise DataError(
            f"cannot read table '{table}' in {redact_uri(uri)}: {type(exc).__name__}",
            "check publish.uri",
            transient=is_transient(exc),
        ) from None
    finally:
        if engine is not None:
            engine.dispose()
