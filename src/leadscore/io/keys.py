"""API keys of the scoring service: created, listed and revoked by `leadscore keys`.

A key reads `lsk_<id>_<secret>`. Only its id and the SHA-256 of its secret are stored
(a key has 256 random bits, so a plain hash is enough: nothing to guess), in a table of the
publish database; the whole key is shown once, when it is created. Each key has scopes:
`score` (scores by id or payload, what changed), `events` (posting activities) and `admin`
(everything), and a rate limit in requests per minute.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from leadscore.errors import ConfigError, DataError
from leadscore.io import uris
from leadscore.io.uris import check_identifier, database_error

SCOPES = ("score", "events", "admin")
PREFIX = "lsk_"
_KEY = re.compile(r"^lsk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def keys_table(name: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("key_id", sa.String(12), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(100), nullable=False),
        sa.Column("rate_per_minute", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime),
        sa.Column("last_used_at", sa.DateTime),
    )


@dataclass(frozen=True)
class ApiKey:
    """A stored key as the service checks it (never the secret)."""

    key_id: str
    name: str
    scopes: frozenset[str]
    rate_per_minute: int
    revoked: bool

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")


class KeyStore:
    """The keys table of one database, on one pooled engine."""

    def __init__(self, uri: str, table: str = "api_keys") -> None:
        check_identifier(table, "service.keys_table")
        self.uri, self.name = uri, table
        self.engine = uris.create_engine(uri)
        self.table = keys_table(table, sa.MetaData())

    def _guard(self, action: str, work):
        try:
            return work()
        except sa.exc.SQLAlchemyError as exc:
            raise database_error(
                f"cannot {action} table '{self.name}'", self.uri, exc,
                "check publish.uri (the keys live in the publish database)",
            ) from None  # fmt: skip

    def create(self, name: str, scopes: list[str], rate_per_minute: int) -> str:
        """Store a new key; returns the whole key (shown once, never stored)."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise ConfigError(
                f"unknown or missing scope(s): {', '.join(unknown) or '(none)'}",
                f"give one or more of {', '.join(SCOPES)} with --scope",
            )
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)

        def work() -> None:
            with self.engine.begin() as conn:
                self.table.create(conn, checkfirst=True)
                conn.execute(
                    sa.insert(self.table),
                    {
                        "key_id": key_id,
                        "name": name,
                        "secret_sha256": _digest(secret),
                        "scopes": ",".join(sorted(set(scopes))),
                        "rate_per_minute": rate_per_minute,
                        "created_at": _now().to_pydatetime(),
                    },
                )

        self._guard("write", work)
        return f"{PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by its id (`lsk_<id>_...` or the id); False if there is none."""
        match = _KEY.match(key_id)
        key_id = match.group(1) if match else key_id.removeprefix(PREFIX)

        def work() -> int:
            with self.engine.begin() as conn:
                self.table.create(conn, checkfirst=True)
                return conn.execute(
                    sa.update(self.table)
                    .where(self.table.c.key_id == key_id, self.table.c.revoked_at.is_(None))
                    .values(revoked_at=_now().to_pydatetime())
                ).rowcount

        return bool(self._guard("write", work))

    def list(self) -> pd.DataFrame:
        """Every key without its hash: id, name, scopes, rate, created, revoked, last used."""

        def work() -> pd.DataFrame:
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table(self.name):
                    return pd.DataFrame(columns=["key_id", "name", "scopes"])
                t = self.table
                return pd.read_sql(
                    sa.select(
                        t.c.key_id,
                        t.c.name,
                        t.c.scopes,
                        t.c.rate_per_minute,
                        t.c.created_at,
                        t.c.revoked_at,
                        t.c.last_used_at,
                    ).order_by(t.c.created_at, t.c.key_id),
                    conn,
                )

        keys = self._guard("read", work)
        return keys.astype(object).where(keys.notna(), None)  # never used: None, not NaT

    def check(self, presented: str) -> ApiKey | None:
        """The stored key a caller presented, or None if it is not one (revoked keys are
        returned with `revoked`; the caller refuses them)."""
        match = _KEY.match(presented.strip())
        if not match:
            return None
        key_id, secret = match.groups()

        def work():
            with self.engine.connect() as conn:
                return conn.execute(
                    sa.select(self.table).where(self.table.c.key_id == key_id)
                ).first()

        try:
            row = self._guard("read", work)
        except DataError as exc:
            if "no such table" in exc.problem or "does not exist" in exc.problem:
                return None  # no key was ever created
            raise
        if row is None or not hmac.compare_digest(row.secret_sha256, _digest(secret)):
            return None
        return ApiKey(
            row.key_id,
            row.name,
            frozenset(row.scopes.split(",")),
            int(row.rate_per_minute),
            row.revoked_at is not None,
        )

    def touch(self, key_id: str) -> None:
        """Record that a key was used (the service calls it at most once a minute per key)."""

        def work() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(self.table)
                    .where(self.table.c.key_id == key_id)
                    .values(last_used_at=_now().to_pydatetime())
                )

        self._guard("write", work)

    def close(self) -> None:
        self.engine.dispose()
