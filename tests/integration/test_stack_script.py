"""examples/production/stack.sh where it must stop before starting anything, and its small commands.

The whole stack up and down is tests/e2e/test_production_example.py (CI's long step).
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import PG_ADMIN_URI, REPO, require_postgres

from leadscore.io import uris

STACK_SH = REPO / "examples" / "production" / "stack.sh"


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    server = sa.engine.make_url(uris.normalise_uri(PG_ADMIN_URI))
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "LEADSCORE_", "MLFLOW_", "PG"))
    }
    return {
        **keep,
        "HOME": str(tmp_path),
        "LEADSCORE_STACK_DIR": str(tmp_path / "stack"),
        "LEADSCORE_DB_HOST": server.host or "127.0.0.1",
        "LEADSCORE_DB_PORT": str(server.port or 5432),
        "LEADSCORE_DB_USER": server.username or "postgres",
        **settings,
    }


def _stack(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(STACK_SH), *args], env=env, capture_output=True, text=True, timeout=120, cwd=REPO
    )


def _nothing_started(tmp_path: Path) -> None:
    assert not list((tmp_path / "stack" / "run").glob("*.pid"))
    assert not (tmp_path / "stack" / "logs" / "mlflow.log").exists()


def test_up_stops_with_the_fix_when_postgres_does_not_answer(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens once the socket is closed
    env = _env(tmp_path, LEADSCORE_DB_PORT=str(closed))
    result = _stack(["up"], env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot connect to PostgreSQL as {env['LEADSCORE_DB_USER']}@" in result.stderr
    assert f":{closed}" in result.stderr and "PGPASSWORD or ~/.pgpass" in result.stderr
    _nothing_started(tmp_path)


def test_up_names_the_privilege_a_role_lacks(tmp_path: Path) -> None:
    require_postgres()
    role = f"leadscore_nocreatedb_{uuid.uuid4().hex[:8]}"
    admin = uris.create_engine(PG_ADMIN_URI, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        env = _env(tmp_path, LEADSCORE_DB_USER=role, LEADSCORE_DB_NAME=f"crm_{role}")
        result = _stack(["up"], env)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "crm_{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
        admin.dispose()
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{role} may not create the database crm_{role}" in result.stderr
    assert f"ALTER ROLE {role} CREATEDB" in result.stderr
    _nothing_started(tmp_path)


def test_status_down_and_env_on_a_stack_that_is_not_running(tmp_path: Path) -> None:
    env = _env(tmp_path, PGPASSWORD="s3cret-not-printed")
    status = _stack(["status"], env)
    assert status.returncode == 0 and status.stdout.count("stopped") == 3, status.stdout
    down = _stack(["down"], env)
    assert down.returncode == 0 and down.stdout.count("not running") == 3, down.stdout
    exports = _stack(["env"], env)
    assert exports.returncode == 0
    assert "s3cret" not in exports.stdout
    # The exports are valid shell and point a shell at the stack's project file and server.
    shown = subprocess.run(
        ["bash", "-c", exports.stdout + 'echo "$LEADSCORE_CONFIG $PREFECT_API_URL"'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shown == [str(tmp_path / "stack" / "leadscore.yaml"), "http://127.0.0.1:4200/api"]


@pytest.mark.parametrize("args", [[], ["restart"]])
def test_an_unknown_command_prints_the_usage(tmp_path: Path, args: list[str]) -> None:
    result = _stack(args, _env(tmp_path))
    assert (
        result.returncode == 2
        and "usage:" in result.stderr
        and "up|down|status|env" in result.stderr
    )
