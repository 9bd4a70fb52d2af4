"""One run of a job per project at a time: the second waits, then exits cleanly.

PostgreSQL publish databases use a session advisory lock (released by the server when the
holder's connection dies, so a killed run never leaves a stale lock); elsewhere an exclusive
`flock` on a file beside the SQLite database (released by the kernel when the process dies;
removed when the run ends, so only a killed run leaves the file, and it holds no lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from leadscore.errors import LeadscoreError
from leadscore.io import uris
from leadscore.io.uris import is_transient, redact_uri

POLL_SECONDS = 0.5
#: Backoff between attempts to reach the database for the lock (as the flows' I/O tasks).
CONNECT_RETRY_DELAYS = (2, 5, 15)


class RunLockedError(LeadscoreError):
    """Another run of the same job holds the lock; this one did nothing."""


def _lock_key(name: str) -> int:
    """A stable key for pg_advisory_lock (31 bits, so pg_locks shows it as objid)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def lock_file(uri: str, fallback_dir: Path, name: str) -> Path:
    """Beside a SQLite database file, else in `fallback_dir`."""
    url = sa.engine.make_url(uris.normalise_uri(uri)) if "://" in uri else None
    if url is not None and url.get_backend_name() == "sqlite" and url.database:
        folder = Path(url.database).resolve().parent
    else:
        folder = fallback_dir
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f".leadscore-{name}.lock"


@contextlib.contextmanager
def run_lock(uri: str, name: str, wait_seconds: float, fallback_dir: Path) -> Iterator[None]:
    """Hold the lock `name` for the duration; RunLockedError if still busy after waiting."""
    url = sa.engine.make_url(uris.normalise_uri(uri)) if "://" in uri else None
    if url is not None and url.get_backend_name() == "postgresql":
        with _advisory_lock(uri, name, wait_seconds):
            yield
        return
    with _file_lock(lock_file(uri, fallback_dir, name), name, wait_seconds):
        yield


def _busy(name: str, waited: float, holder: str) -> RunLockedError:
    return RunLockedError(
        f"another '{name}' run is in progress ({holder}); waited {waited:.0f} s, so this run "
        "did nothing and published nothing",
        "let the other run finish, or raise publish.lock_wait_seconds to queue behind it",
    )


@contextlib.contextmanager
def _file_lock(path: Path, name: str, wait_seconds: float) -> Iterator[None]:
    """The flock, and the lock file removed when the run ends (no `.leadscore-*.lock` is
    left beside the user's database). A run that waited on a file a finished run removed
    holds a lock nobody else can see: it checks that its file is still the one at `path`,
    and takes the new one if not."""
    start = time.monotonic()
    while True:
        handle = path.open("a+", encoding="utf-8")
        try:
            _wait_for(handle, name, wait_seconds, start)
        except BaseException:
            handle.close()
            raise
        try:
            current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": str(pd.Timestamp.now(tz="UTC").floor("s")),
                }
            )
        )
        handle.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding it: a waiter then sees the file is gone
        handle.close()  # closing releases the flock


def _wait_for(handle, name: str, wait_seconds: float, start: float) -> None:
    """Take the flock of `handle`, polling until `wait_seconds` after `start`."""
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() - start >= wait_seconds:
                handle.seek(0)
                holder = handle.read().strip() or "holder unknown"
                raise _busy(name, time.monotonic() - start, holder) from None
            time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def _advisory_lock(uri: str, name: str, wait_seconds: float) -> Iterator[None]:
    engine = uris.create_engine(uri, poolclass=sa.pool.NullPool)
    key = _lock_key(f"leadscore.{name}")
    for delay in (*CONNECT_RETRY_DELAYS, None):
        try:
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            break
        except sa.exc.SQLAlchemyError as exc:
            if delay is not None and is_transient(exc):
                time.sleep(delay)
                continue
            engine.dispose()
            raise LeadscoreError(
                f"cannot reach {redact_uri(uri)} to take the run lock after "
                f"{len(CONNECT_RETRY_DELAYS) + 1} attempts: {type(exc).__name__}",
                "check publish.uri and that PostgreSQL is up",
            ) from None
    start = time.monotonic()
    try:
        while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            if time.monotonic() - start >= wait_seconds:
                holder = conn.execute(
                    sa.text(
                        "SELECT a.pid, a.backend_start FROM pg_locks l JOIN pg_stat_activity a "
                        "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                        "AND l.objid = CAST(:k AS bigint)::text::oid LIMIT 1"
                    ),
                    {"k": key},
                ).first()
                text = (
                    f"PostgreSQL backend {holder.pid}, connected since {holder.backend_start}"
                    if holder
                    else "holder unknown"
                )
                raise _busy(name, time.monotonic() - start, text)
            time.sleep(POLL_SECONDS)
        yield
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        conn.close()
        engine.dispose()
