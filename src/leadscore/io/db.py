"""One way to open a database: the right driver, a name the server shows, a connect timeout.

PostgreSQL URLs without a driver (``postgresql://``) would make SQLAlchemy look for psycopg2;
leadscore ships psycopg 3, so they are rewritten to ``postgresql+psycopg://``.
"""

from __future__ import annotations

import sqlalchemy as sa

#: How the server lists leadscore's connections (pg_stat_activity.application_name).
APPLICATION_NAME = "leadscore"
CONNECT_TIMEOUT_SECONDS = 10


def normalise_uri(uri: str) -> str:
    """`postgresql://` and `postgres://` become `postgresql+psycopg://`; others are unchanged."""
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    return uri


def create_engine(uri: str, **kwargs) -> sa.Engine:
    """An engine for `uri`; PostgreSQL connections are named and time out after 10 s."""
    uri = normalise_uri(uri)
    url = sa.engine.make_url(uri)
    if url.get_backend_name() == "postgresql":
        connect_args = {
            "application_name": APPLICATION_NAME,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            **kwargs.pop("connect_args", {}),
        }
        return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True, **kwargs)
    return sa.create_engine(url, **kwargs)
