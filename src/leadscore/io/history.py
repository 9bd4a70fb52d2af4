"""Reading the score history back for the monthly review, a window at a time.

A nightly run writes one row per open lead, so a year of history can hold hundreds of
millions of rows. The review never reads it whole: the first dates a lead was scored, became
an MQL and reached tier A come from one GROUP BY, and the rows themselves a month at a time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from leadscore.errors import DataError
from leadscore.io import uris
from leadscore.io.publish import ScoreTables
from leadscore.io.uris import database_error

#: The columns the review reads of each published row.
REVIEW_COLUMNS = (
    "lead_id",
    "as_of_date",
    "conversion_probability",
    "tier",
    "rule_score",
    "is_mql",
    "rules_fired",
)


class ScoreHistory:
    """The published history of one project: windows of rows, first flags and the runs."""

    def __init__(self, uri: str, tables: ScoreTables) -> None:
        if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
            raise DataError(
                f"no scores have been published to {uri} yet",
                "run `leadscore score` (nightly, or with --as-of for past dates) first",
            )
        self.uri, self.tables = uri, tables
        self._engine = uris.create_engine(uri)
        try:
            with self._engine.connect() as conn:
                found = sa.inspect(conn).has_table(tables.history)
        except sa.exc.SQLAlchemyError as exc:
            self.close()
            raise database_error(
                "cannot read the score history", uri, exc, "check publish.uri"
            ) from None
        if not found:
            self.close()
            raise DataError(
                f"table '{tables.history}' does not exist in {uris.redact_uri(uri)}: "
                "nothing has been published there yet",
                "run `leadscore score` first, or set publish.uri and publish.history_table "
                "to where the scores are",
            )

    def _read(self, query: str, params: dict) -> pd.DataFrame:
        try:
            with self._engine.connect() as conn:
                frame = pd.read_sql(sa.text(query), conn, params=params)
        except sa.exc.SQLAlchemyError as exc:
            raise database_error(
                f"cannot read table '{self.tables.history}'", self.uri, exc, "check publish.uri"
            ) from None
        for column in frame.columns:
            if column == "as_of_date" or column.startswith("first_"):
                frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
        return frame

    def window(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Every published row with `start <= as_of_date < end`, oldest first."""
        columns = ", ".join(REVIEW_COLUMNS)
        frame = self._read(
            f"SELECT {columns} FROM {self.tables.history} "
            "WHERE as_of_date >= :start AND as_of_date < :end ORDER BY as_of_date",
            {"start": start.date(), "end": end.date()},
        )
        frame["is_mql"] = frame["is_mql"].astype("bool")
        return frame

    def first_flags(self, end: pd.Timestamp) -> pd.DataFrame:
        """Per lead scored before `end`: when it was first scored, first an MQL by the rules
        and first in tier A by a model (rules-only runs have tiers by points: not counted)."""
        return self._read(
            "SELECT lead_id, MIN(as_of_date) AS first_scored, "
            "MIN(CASE WHEN is_mql THEN as_of_date END) AS first_mql, "
            "MIN(CASE WHEN tier = 'A' AND conversion_probability IS NOT NULL "
            "THEN as_of_date END) AS first_a "
            f"FROM {self.tables.history} WHERE as_of_date < :end GROUP BY lead_id",
            {"end": end.date()},
        )

    def span(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The oldest and the newest as-of date published, or None when there is none."""
        frame = self._read(
            f"SELECT MIN(as_of_date) AS first_date, MAX(as_of_date) AS last_date "
            f"FROM {self.tables.history}",
            {},
        )
        if frame.empty or pd.isna(frame.iloc[0, 0]):
            return None
        return tuple(pd.Timestamp(v).normalize() for v in frame.iloc[0])  # type: ignore[return-value]

    def first_model_run(self) -> pd.Timestamp | None:
        """The first as-of date a model scored (None: the rules alone so far)."""
        frame = self._read(
            f"SELECT MIN(as_of_date) AS first_date FROM {self.tables.history} "
            "WHERE conversion_probability IS NOT NULL",
            {},
        )
        value = frame.iloc[0, 0] if len(frame) else None
        return None if value is None or pd.isna(value) else pd.Timestamp(value).normalize()

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> ScoreHistory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
