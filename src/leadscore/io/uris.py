"""Where data lives: database URLs and folders, safe names, and one way to open a database.

Every module that opens a database or prints a location uses these: the right driver (a
PostgreSQL URL without one, ``postgresql://``, would make SQLAlchemy look for psycopg2;
leadscore ships psycopg 3), a name the server shows, a connect timeout, passwords masked,
table names that cannot inject SQL or reach outside a source folder.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import sqlalchemy as sa

from leadscore.errors import DataError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

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


def is_database_uri(uri: str) -> bool:
    """True for SQLAlchemy URLs such as sqlite:///x.db or postgresql://host/db."""
    return "://" in uri and not uri.startswith("file://")


def is_transient(exc: BaseException) -> bool:
    """Connection problems and locks, which a retry may get past."""
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError)


def database_error(problem: str, uri: str, exc: BaseException, fix: str) -> DataError:
    """A failed database call as an error a user acts on: what failed, where (password
    masked), the driver's first line; connection problems and locks are transient."""
    first = next(iter(str(exc).splitlines()), "")
    return DataError(
        f"{problem} in {redact_uri(uri)}: {type(exc).__name__}" + (f": {first}" if first else ""),
        fix,
        transient=is_transient(exc),
    )


def redact_uri(uri: str) -> str:
    """A URI safe to print or log: the password is masked (databases and web servers alike)."""
    if not is_database_uri(uri):
        return uri
    if uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host  # IPv6
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    try:
        return sa.engine.make_url(uri).render_as_string(hide_password=True)
    except Exception:
        return uri.split("@")[-1]


def check_identifier(name: str, what: str) -> str:
    """Reject table or column names that are not plain identifiers (no SQL injection)."""
    if not _IDENTIFIER.match(name):
        raise DataError(
            f"{what} {name!r} is not a plain identifier",
            "use letters, digits and underscores only (optionally schema.table)",
        )
    return name


def check_file_table(table: str) -> str:
    """A table of a source folder names a file there, never a path elsewhere."""
    if "/" in table or "\\" in table or table.startswith("."):
        raise DataError(
            f"table name {table!r} is not a plain file name",
            "name the file in the source folder without a path, e.g. leads",
        )
    return table
