"""Hot-lead alerts: found while scores are published, kept in an outbox, delivered from there.

A scoring run compares each lead's new score with its score in the previous run. A lead
that entered tier A, became an MQL by the rules or whose probability rose by
`alerts.rise` gets one alert per sink, written to the outbox table in the same transaction
as the scores it follows from: a run that fails publishes neither, and a run that dies
after publishing leaves its alerts pending for the next delivery. Delivery takes one row at
a time, POSTs it signed with HMAC-SHA256, and records the outcome; a failed attempt is
retried after a back-off, and after `max_attempts` the row is `failed` (`leadscore
alerts`). Delivery is at least once: a process killed while a request is in flight sends
that alert again once its claim times out, with the same `Idempotency-Key`, so the
receiver can drop the repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.config.schema import AlertConfig, AlertSink
from leadscore.i18n import Words
from leadscore.io import uris
from leadscore.io.changes import reasons, score_change
from leadscore.io.uris import database_error

STATUSES = ("pending", "sending", "sent", "failed")
SIGNATURE_HEADER = "X-Leadscore-Signature"
TIMESTAMP_HEADER = "X-Leadscore-Timestamp"


def outbox_table(name: str, metadata: sa.MetaData) -> sa.Table:
    """One row per alert and sink, with its delivery state."""
    return sa.Table(
        name,
        metadata,
        sa.Column("alert_key", sa.String(255), nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("lead_id", sa.String(255), nullable=False),
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("changes", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("claimed_at", sa.DateTime),
        sa.Column("sent_at", sa.DateTime),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("alert_key", "sink"),
        sa.Index(f"{name}_due", "status", "next_attempt_at"),
    )


# -- what makes a lead hot ---------------------------------------------------------------------


def hot_changes(current: pd.DataFrame, previous: pd.DataFrame, config: AlertConfig) -> pd.Series:
    """For each lead of `current` that turned hot since `previous`, its changes in words.

    Both frames have lead_id, tier, is_mql and conversion_probability (empty in a run by
    the rules alone); a lead missing from `previous` is new since that run. Returns a
    Series of lists of sentences indexed by lead_id, only for leads with at least one.
    """
    words = Words(config.language)
    before = previous.set_index(previous["lead_id"].astype(str))
    now = current.set_index(current["lead_id"].astype(str))
    was = before.reindex(now.index)
    known = was["tier"].notna() | was["is_mql"].notna()
    found: dict[str, list[str]] = {}

    def add(mask: pd.Series, say) -> None:
        """`say(lead)`, the sentence of one lead, for each lead where `mask` holds."""
        for lead in mask.index[mask.fillna(False).astype(bool).to_numpy()]:
            found.setdefault(lead, []).append(say(lead))

    if "tier_a" in config.triggers:
        entered = (now["tier"] == "A") & (was["tier"] != "A")

        def tier_was(lead: str) -> str:
            tier = was.at[lead, "tier"]
            return tier if isinstance(tier, str) else words("alerts.not_scored")

        add(entered, lambda lead: words("alerts.entered_a", before=tier_was(lead))
            if known[lead] else words("alerts.new_in_a"))  # fmt: skip
    if "mql" in config.triggers:
        prior = was["is_mql"].map(lambda v: bool(v) if pd.notna(v) else False).astype(bool)
        became = now["is_mql"].astype(bool) & ~prior
        add(became, lambda lead: words("alerts.became_mql" if known[lead] else "alerts.new_mql",
                                       points=f"{now.at[lead, 'rule_score']:g}"))  # fmt: skip
    if "rise" in config.triggers:
        p_now = pd.to_numeric(now["conversion_probability"], errors="coerce")
        p_was = pd.to_numeric(was["conversion_probability"], errors="coerce")
        rose = ((p_now - p_was) >= config.rise - 1e-12) & p_now.notna() & p_was.notna()
        add(rose, lambda lead: words("alerts.rose", before=words.pct(p_was[lead], 0),
                                     after=words.pct(p_now[lead], 0)))  # fmt: skip
    return pd.Series(found, dtype=object)


def _payload(
    row: dict[str, Any], previous: dict[str, Any] | None, changes: list[str], key: str
) -> dict[str, Any]:
    """What a receiver gets: scores, tier, reasons and what changed; no personal data."""
    probability = row.get("conversion_probability")
    probability = None if probability is None or pd.isna(probability) else float(probability)
    model = f"{row['model_name']} v{row['model_version']}" if row.get("model_version") else "rules"
    lead = row["lead_id"]
    return {
        "alert_key": key,
        "lead_id": int(lead) if isinstance(lead, int | np.integer) else str(lead),
        "as_of": str(row["as_of_date"]),
        "conversion_probability": probability,
        "percentile": None if pd.isna(row.get("percentile")) else float(row["percentile"]),
        "tier": row.get("tier"),
        "is_mql": bool(row["is_mql"]),
        "rule_score": float(row["rule_score"]),
        "rules_fired": reasons(row.get("rules_fired"), ","),
        "reasons_up": reasons(row.get("reasons_up")),
        "changes": changes,
        "previous": previous,
        "model": model,
        "scored_at": str(row["scored_at"]),
    }


def _message(payload: dict[str, Any], fmt: str, words: Words) -> dict[str, Any]:
    if fmt == "json":
        return payload
    probability = payload["conversion_probability"]
    key = "alerts.text" if probability is not None else "alerts.text_rules"
    text = words(
        key,
        lead=payload["lead_id"],
        tier=words("tier.name", tier=payload["tier"]),
        probability=words.pct(probability, 0) if probability is not None else "",
        changes=words("alerts.glue").join(payload["changes"]),
    )
    why = words("alerts.glue").join(payload["reasons_up"][:3])
    if why:
        text += words("alerts.why", why=why)
    return {"text": text}


def stage_alerts(
    conn: sa.Connection,
    config: AlertConfig,
    records: list[dict[str, Any]],
    history: str,
    runs: str,
    now: pd.Timestamp,
) -> int:
    """In the publishing transaction: write the alerts of this run's newest as-of date.

    No alerts when there is no earlier run to compare with (the first run is the
    baseline), for a backfill (a newer date is already published), or for a rerun's
    alerts that exist already (same key: kept, never sent twice). Returns rows written.
    """
    if not config.sinks or not records:
        return 0
    day = max(r["as_of_date"] for r in records)
    newer = conn.execute(
        sa.text(f"SELECT max(as_of_date) FROM {runs} WHERE as_of_date > :day"), {"day": day}
    ).scalar()
    previous_day = conn.execute(
        sa.text(f"SELECT max(as_of_date) FROM {runs} WHERE as_of_date < :day"), {"day": day}
    ).scalar()
    if newer is not None or previous_day is None:
        return 0
    previous = pd.read_sql(
        sa.text(
            "SELECT lead_id, tier, is_mql, conversion_probability, rule_score, reasons_up, "
            f"reasons_down FROM {history} "
            "WHERE as_of_date = :day"
        ),
        conn,
        params={"day": previous_day},
    )
    current = pd.DataFrame([r for r in records if r["as_of_date"] == day])
    changes = hot_changes(current, previous, config)
    if changes.empty:
        return 0
    metadata = sa.MetaData()
    table = outbox_table(config.table, metadata)
    metadata.create_all(conn)
    existing = {
        row[0]
        for row in conn.execute(
            sa.select(table.c.alert_key).where(table.c.as_of_date == day).distinct()
        )
    }
    by_lead = {str(r["lead_id"]): r for r in current.to_dict("records")}
    was = {str(r["lead_id"]): r for r in previous.to_dict("records")}
    rows = []
    announced = _announced(conn, table, runs, previous_day)
    for lead, sentences in changes.items():
        key = f"{lead}:{day}"
        if key in existing or lead in announced:
            continue
        rows += _outbox_rows(
            config, key, by_lead[lead], was.get(lead), str(previous_day), sentences, day, now
        )
    if rows:
        conn.execute(sa.insert(table), rows)
    return len(rows)


#: What an alert's key holds when it follows from events posted to the service.
EVENT_KEY = ":event:"


def _announced(conn: sa.Connection, table: sa.Table, runs: str, previous_day) -> set[str]:
    """Leads whose turn hot an event alert announced since the previous run was
    published: the nightly run does not announce it again."""
    published = conn.execute(
        sa.text(f"SELECT published_at FROM {runs} WHERE as_of_date = :day"), {"day": previous_day}
    ).scalar()
    if published is None:
        return set()
    query = sa.select(table.c.lead_id).where(
        table.c.alert_key.contains(EVENT_KEY, autoescape=True),
        table.c.created_at > published,
    )
    return {str(row[0]) for row in conn.execute(query.distinct())}


def _outbox_rows(
    config: AlertConfig,
    key: str,
    row: dict[str, Any],
    before: dict[str, Any] | None,
    previous_day: str,
    sentences: list[str],
    day,
    now: pd.Timestamp,
) -> list[dict[str, Any]]:
    """One pending outbox row per sink for the alert `key` of lead `row`."""
    prior = None
    if before is not None:
        p = before.get("conversion_probability")
        prior = {
            "as_of": previous_day,
            "tier": before.get("tier"),
            "is_mql": bool(before.get("is_mql")),
            "conversion_probability": None if p is None or pd.isna(p) else float(p),
        }
    payload = _payload(row, prior, sentences, key)
    words = Words(config.language)
    payload["what_changed"] = score_change(before, row, words)
    created = now.to_pydatetime()  # naive UTC, as every timestamp leadscore writes
    return [
        {
            "alert_key": key,
            "sink": sink.name,
            "lead_id": str(row["lead_id"]),
            "as_of_date": day,
            "changes": "; ".join(sentences),
            "payload": json.dumps(_message(payload, sink.format, words), default=str),
            "status": "pending",
            "attempts": 0,
            "created_at": created,
            "next_attempt_at": created,
            "claimed_at": None,
            "sent_at": None,
            "last_error": None,
        }
        for sink in config.sinks
    ]


def stage_event_alerts(
    uri: str,
    config: AlertConfig,
    current: dict[str, Any],
    previous: dict[str, Any] | None,
    event_key: str,
    now: pd.Timestamp,
) -> int:
    """The alerts of one lead rescored after events were posted (`POST /events`): hot
    since its newest published score (`previous`, a history row; None: never published).

    Keyed `<lead>:event:<the first new event's key>`, so a retried post alerts once; the
    next nightly run does not announce the same turn again (`_announced`). Returns rows
    written.
    """
    if not config.sinks:
        return 0
    columns = ["lead_id", "tier", "is_mql", "conversion_probability", "rule_score"]
    before = pd.DataFrame([previous] if previous else [], columns=columns)
    changes = hot_changes(pd.DataFrame([current]), before, config)
    if changes.empty:
        return 0
    lead = str(current["lead_id"])
    key = f"{lead}{EVENT_KEY}{event_key}"
    previous_day = str(previous["as_of_date"]) if previous else ""
    rows = _outbox_rows(
        config, key, current, previous, previous_day, changes[lead], now.date(), now
    )
    engine = uris.create_engine(uri)
    try:
        metadata = sa.MetaData()
        table = outbox_table(config.table, metadata)
        with engine.begin() as conn:
            metadata.create_all(conn)
            seen = conn.execute(sa.select(sa.func.count()).where(table.c.alert_key == key)).scalar()
            if seen:
                return 0
            conn.execute(sa.insert(table), rows)
    except sa.exc.SQLAlchemyError as exc:
        raise database_error(
            f"cannot write to the alert outbox '{config.table}'", uri, exc,
            "check publish.uri; the next nightly run alerts the lead if it is still hot",
        ) from None  # fmt: skip
    finally:
        engine.dispose()
    return len(rows)


# -- delivery ----------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: v1=hex(HMAC-SHA256(secret, "<timestamp>.<body>"))."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float | None = None,
    tolerance: float = 300,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    now = time.time() if now is None else now
    try:
        fresh = abs(now - float(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def where(url: str) -> str:
    """A sink's address as it may be shown: scheme and host only (paths hold tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


@dataclass
class Delivery:
    """What a delivery did: sent, failed for good, still pending; errors per sink."""

    sent: int = 0
    failed: int = 0
    pending: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "pending": self.pending,
            "errors": dict(self.errors),
        }


def _utcnow() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def deliver(
    uri: str,
    config: AlertConfig,
    budget_seconds: float = 0,
    clock=_utcnow,
    client: httpx.Client | None = None,
) -> Delivery:
    """Send every alert that is due; keep retrying what fails for up to `budget_seconds`."""
    engine = uris.create_engine(uri)
    own = client is None
    client = client or httpx.Client(timeout=config.timeout_seconds)
    report = Delivery()
    sinks = {s.name: s for s in config.sinks}
    deadline = time.monotonic() + budget_seconds
    try:
        table = outbox_table(config.table, sa.MetaData())
        if not sa.inspect(engine).has_table(config.table):
            return report
        while True:
            _one_pass(engine, table, config, sinks, client, clock(), report)
            with engine.connect() as conn:
                due = conn.execute(
                    sa.select(sa.func.min(table.c.next_attempt_at)).where(
                        table.c.status == "pending"
                    )
                ).scalar()
            if due is None:
                break
            wait = (pd.Timestamp(due) - clock()).total_seconds()
            if wait > 0 and time.monotonic() + wait > deadline:
                break  # what is due now is always sent (a pass takes 1,000 at most)
            time.sleep(max(wait, 0))
        with engine.connect() as conn:
            report.pending = conn.execute(
                sa.select(sa.func.count()).where(table.c.status.in_(("pending", "sending")))
            ).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise database_error(
            f"cannot read the alert outbox '{config.table}'", uri, exc,
            "check publish.uri; the alerts stay in the outbox for the next delivery",
        ) from None  # fmt: skip
    finally:
        if own:
            client.close()
        engine.dispose()
    return report


def _one_pass(engine, table, config, sinks, client, now, report) -> None:
    stale = now - pd.Timedelta(seconds=config.claim_timeout_seconds)
    with engine.begin() as conn:  # a process that died mid-send: send it again
        conn.execute(
            sa.update(table)
            .where(table.c.status == "sending", table.c.claimed_at < stale.to_pydatetime())
            .values(status="pending")
        )
        due = conn.execute(
            sa.select(table)
            .where(table.c.status == "pending", table.c.next_attempt_at <= now.to_pydatetime())
            .order_by(table.c.created_at, table.c.alert_key)
            .limit(1000)
        ).all()
    postponed: dict[str, pd.Timestamp] = {}
    for row in due:
        if row.sink in postponed:
            continue  # that sink just failed: its other alerts wait with it
        with engine.begin() as conn:  # claim it: no two deliveries send the same row
            claimed = conn.execute(
                sa.update(table)
                .where(
                    table.c.alert_key == row.alert_key,
                    table.c.sink == row.sink,
                    table.c.status == "pending",
                )
                .values(status="sending", claimed_at=now.to_pydatetime())
            ).rowcount
        if not claimed:
            continue
        sink = sinks.get(row.sink)
        error, unreachable = (
            _post(client, sink, row) if sink else ("the sink is no longer in alerts.sinks", False)
        )
        attempts = row.attempts + 1
        if error is None:
            values = {"status": "sent", "sent_at": _utcnow().to_pydatetime(), "last_error": None}
            report.sent += 1
        elif attempts >= config.max_attempts or sink is None:
            values = {"status": "failed", "last_error": error}
            report.failed += 1
            report.errors[row.sink] = error
        else:
            wait = config.backoff_seconds[min(attempts, len(config.backoff_seconds)) - 1]
            later = now + pd.Timedelta(seconds=wait)
            values = {
                "status": "pending",
                "last_error": error,
                "next_attempt_at": later.to_pydatetime(),
            }
            report.errors[row.sink] = error
            if unreachable:  # down: its other alerts wait too (a 500 is tried row by row)
                postponed[row.sink] = later
        with engine.begin() as conn:
            conn.execute(
                sa.update(table)
                .where(table.c.alert_key == row.alert_key, table.c.sink == row.sink)
                .values(attempts=attempts, **values)
            )
    for sink, later in postponed.items():  # not an attempt of theirs: the sink was down
        with engine.begin() as conn:
            conn.execute(
                sa.update(table)
                .where(
                    table.c.sink == sink,
                    table.c.status == "pending",
                    table.c.next_attempt_at < later.to_pydatetime(),
                )
                .values(next_attempt_at=later.to_pydatetime())
            )


def _post(client: httpx.Client, sink: AlertSink, row) -> tuple[str | None, bool]:
    """POST one alert: (None when the receiver took it (2xx), else what went wrong;
    whether the receiver could not be reached at all)."""
    body = row.payload.encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": row.alert_key,
        TIMESTAMP_HEADER: stamp,
        "User-Agent": "leadscore-alerts",
    }
    if sink.secret:
        headers[SIGNATURE_HEADER] = sign(sink.secret, stamp, body)
    try:
        response = client.post(sink.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__} reaching {where(sink.url)}", True
    if 200 <= response.status_code < 300:
        return None, False
    return f"HTTP {response.status_code} from {where(sink.url)}", False


# -- what `leadscore alerts` shows -------------------------------------------------------------


def read_outbox(uri: str, table: str, limit: int = 20) -> tuple[dict[str, int], pd.DataFrame]:
    """Counts by status and the newest rows (no payloads: they stay in the database)."""
    engine = uris.create_engine(uri)
    try:
        if not sa.inspect(engine).has_table(table):
            return dict.fromkeys(STATUSES, 0), pd.DataFrame()
        t = outbox_table(table, sa.MetaData())
        with engine.connect() as conn:
            counts = dict(
                conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status)).all()
            )
            rows = pd.read_sql(
                sa.select(
                    t.c.alert_key,
                    t.c.sink,
                    t.c.lead_id,
                    t.c.changes,
                    t.c.status,
                    t.c.attempts,
                    t.c.created_at,
                    t.c.sent_at,
                    t.c.last_error,
                )
                .order_by(t.c.created_at.desc(), t.c.alert_key)
                .limit(limit),
                conn,
            )
    finally:
        engine.dispose()
    return {s: int(counts.get(s, 0)) for s in STATUSES}, rows


def retry_failed(uri: str, table: str, clock=_utcnow) -> int:
    """Put every failed alert back in the queue with a fresh count of attempts."""
    engine = uris.create_engine(uri)
    try:
        if not sa.inspect(engine).has_table(table):
            return 0
        t = outbox_table(table, sa.MetaData())
        with engine.begin() as conn:
            return conn.execute(
                sa.update(t)
                .where(t.c.status == "failed")
                .values(status="pending", attempts=0, next_attempt_at=clock().to_pydatetime())
            ).rowcount
    finally:
        engine.dispose()
