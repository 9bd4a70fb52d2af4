"""The checks `stack.sh` needs and bash does badly: databases, health, a worker online.

Run by stack.sh with the checkout's venv Python; every connection gets its password from
libpq's own places (PGPASSWORD or ~/.pgpass), never from a command line or a file of ours.

    stackctl.py databases NAME...          create each missing database (needs CREATEDB)
    stackctl.py wait-http URL SECONDS PIDFILE LOG
    stackctl.py wait-worker API POOL SECONDS PIDFILE LOG
    stackctl.py answers URL                exit 0 if URL answers 200
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx


def _fail(message: str, fix: str) -> None:
    print(f"stack: {message}\n  fix: {fix}", file=sys.stderr)
    sys.exit(2)


def _tail(log: str, lines: int = 25) -> str:
    path = Path(log)
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _alive(pidfile: str) -> bool:
    try:
        os.kill(int(Path(pidfile).read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def databases(names: list[str]) -> None:
    """Create the databases that do not exist yet; say which were there."""
    import psycopg
    from psycopg import sql

    host = os.environ["LEADSCORE_DB_HOST"]
    port = os.environ["LEADSCORE_DB_PORT"]
    user = os.environ["LEADSCORE_DB_USER"]
    maintenance = os.environ.get("LEADSCORE_DB_MAINTENANCE", "postgres")
    where = f"{user}@{host}:{port}"
    try:
        conn = psycopg.connect(
            host=host, port=port, user=user, dbname=maintenance, autocommit=True, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail(
            f"cannot connect to PostgreSQL as {where} (database {maintenance}): {first}",
            "start PostgreSQL, check LEADSCORE_DB_HOST/PORT/USER, put the password in "
            "PGPASSWORD or ~/.pgpass; LEADSCORE_DB_MAINTENANCE names a database to connect to",
        )
    with conn:
        existing = {
            row[0]
            for row in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
        }
        for name in names:
            if name in existing:
                print(f"  database {name}: exists")
                continue
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.InsufficientPrivilege:
                _fail(
                    f"{user} may not create the database {name}",
                    f"ask an administrator for `CREATE DATABASE {name} OWNER {user}` "
                    f"(or `ALTER ROLE {user} CREATEDB`), then run up again",
                )
            print(f"  database {name}: created")


def wait_http(url: str, seconds: float, pidfile: str, log: str) -> None:
    """Poll URL until it answers 200; stop early with the log if the process died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pidfile):
            _fail(f"the process behind {url} exited:\n{_tail(log)}", f"read {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    _fail(f"{url} did not answer within {seconds:.0f} s:\n{_tail(log)}", f"read {log}")


def wait_worker(api: str, pool: str, seconds: float, pidfile: str, log: str) -> None:
    """Poll the Prefect API until a worker of the pool reports ONLINE."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pidfile):
            _fail(f"the worker exited:\n{_tail(log)}", f"read {log}")
        try:
            response = httpx.post(f"{api}/work_pools/{pool}/workers/filter", json={}, timeout=5)
            if response.status_code == 200 and any(
                w.get("status") == "ONLINE" for w in response.json()
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    _fail(f"no worker of pool {pool} came online in {seconds:.0f} s:\n{_tail(log)}", f"read {log}")


def answers(url: str) -> None:
    """Exit 0 if URL answers 200, else 1 (for `stack.sh status`)."""
    try:
        ok = httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        ok = False
    sys.exit(0 if ok else 1)


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "databases":
        databases(args)
    elif command == "wait-http":
        wait_http(args[0], float(args[1]), args[2], args[3])
    elif command == "wait-worker":
        wait_worker(args[0], args[1], float(args[2]), args[3], args[4])
    elif command == "answers":
        answers(args[0])
    else:
        sys.exit(f"stackctl.py: unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
