"""Activities posted to the service (`POST /events`), kept where the batch reads them.

A web tracker or a form handler posts a lead's activities as they happen; they land in
the events table of the publish database (`service.events_table`, default `lead_events`),
one row per event under its idempotency key, and every read of the source (`load_crm`:
training, the nightly batch, on-demand scoring) adds them to the source's activities. A
key seen before is ignored, so a client may retry a post it is unsure of.

The events are activities the source does not hold: an event that also reaches the
source's activities table (the CRM syncs it later) would count twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from leadscore.io import uris

#: The longest idempotency key a caller may send.
MAX_EVENT_ID = 200


@dataclass(frozen=True)
class Event:
    """One posted activity of a known lead (`lead_id` as the leads table's id reads)."""

    lead_id: str
    occurred_at: pd.Timestamp  # naive UTC
    activity_type: str
    detail: str | None
    event_id: str | None = None

    @property
    def key(self) -> str:
        """The idempotency key, per lead: a hash of the caller's event id, else of the
        event itself (time, type, detail)."""
        if self.event_id is not None:  # per lead: two forms may both count from 1
            parts = [self.lead_id, self.event_id]
            kind = "id"
        else:
            parts = [self.lead_id, self.occurred_at.isoformat(), self.activity_type]
            parts.append(self.detail or "")
            kind = "sha256"
        digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:40]
        return f"{kind}:{digest}"


def events_table(name: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("event_key", sa.String(64), primary_key=True),
        sa.Column("lead_id", sa.String(200), nullable=False, index=True),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Column("activity_type", sa.String(100), nullable=False),
        sa.Column("detail", sa.String(1000)),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("event_id", sa.String(MAX_EVENT_ID)),
        sa.Column("key_id", sa.String(64)),
    )


class EventStore:
    """The events table of one publish database, created when first opened."""

    def __init__(self, uri: str, table: str) -> None:
        self.uri, self.name = uri, table
        self.engine = uris.create_engine(uri)
        metadata = sa.MetaData()
        self.table = events_table(table, metadata)
        try:
            metadata.create_all(self.engine)
        except Exception as exc:
            self.engine.dispose()
            raise uris.database_error(
                f"cannot create the events table '{table}'",
                uri,
                exc,
                "check that publish.uri is reachable and writable",
            ) from None

    def close(self) -> None:
        self.engine.dispose()

    def store(self, events: Sequence[Event], key_id: str | None = None) -> list[Event]:
        """Store `events` in one transaction; returns those stored, in order (a key seen
        before, or twice in `events`, is stored once)."""
        fresh: dict[str, Event] = {}
        for event in events:
            fresh.setdefault(event.key, event)
        if not fresh:
            return []
        received = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()
        rows = [
            {
                "event_key": key,
                "lead_id": e.lead_id,
                "occurred_at": e.occurred_at.to_pydatetime(),
                "activity_type": e.activity_type,
                "detail": e.detail,
                "event_id": e.event_id,
                "received_at": received,
                "key_id": key_id,
            }
            for key, e in fresh.items()
        ]
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        statement = (
            insert(self.table)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["event_key"])
            .returning(self.table.c.event_key)
        )
        try:
            with self.engine.begin() as conn:
                stored = {row[0] for row in conn.execute(statement)}
        except Exception as exc:
            raise uris.database_error(
                f"cannot store events in table '{self.name}'",
                self.uri,
                exc,
                "check that publish.uri is reachable and writable; the post may be retried",
            ) from None
        return [e for key, e in fresh.items() if key in stored]

    def of_lead(
        self, conn: sa.Connection, lead_id: str, since: pd.Timestamp, until: pd.Timestamp
    ) -> list[tuple]:
        """A lead's events in [since, until): (occurred_at, activity_type, detail)."""
        t = self.table
        query = sa.select(t.c.occurred_at, t.c.activity_type, t.c.detail).where(
            t.c.lead_id == lead_id,
            t.c.occurred_at >= since.to_pydatetime(),
            t.c.occurred_at < until.to_pydatetime(),
        )
        return list(conn.execute(query))


def read_events(
    uri: str,
    table: str,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    lead_ids: Sequence[str] | None = None,
) -> pd.DataFrame | None:
    """Posted events as activities (lead_id as text, occurred_at naive UTC, activity_type,
    detail), or None when no event was ever posted (no table)."""
    if not uris.is_database_uri(uri):
        return None
    engine = uris.create_engine(uri)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return None
            t = events_table(table, sa.MetaData())
            query = sa.select(t.c.lead_id, t.c.occurred_at, t.c.activity_type, t.c.detail)
            if since is not None:
                query = query.where(t.c.occurred_at >= since.to_pydatetime())
            if until is not None:
                query = query.where(t.c.occurred_at < until.to_pydatetime())
            if lead_ids is not None:
                query = query.where(t.c.lead_id.in_([str(i) for i in lead_ids]))
            rows = conn.execute(query).all()
    except Exception as exc:
        raise uris.database_error(
            f"cannot read the posted events of table '{table}'",
            uri,
            exc,
            "check that publish.uri is reachable",
        ) from None
    finally:
        engine.dispose()
    return pd.DataFrame(
        {
            "lead_id": pd.Series([r[0] for r in rows], dtype="str"),
            "occurred_at": pd.Series([r[1] for r in rows], dtype="datetime64[us]"),
            "activity_type": pd.Series([r[2] for r in rows], dtype="str"),
            "detail": pd.Series([r[3] for r in rows], dtype="str"),
        }
    )
