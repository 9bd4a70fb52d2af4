"""Fixed cost of the CLI: what a command imports, and how it fails without a Prefect API."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DEFAULT_RULES, run_cli

#: Imported only by the commands that run flows or touch the registry (seconds apiece).
HEAVY = ("prefect", "mlflow", "leadscore_flows")

PROBE = """
import json, sys
import typer
from typer.testing import CliRunner
from leadscore.apps.cli import app

runner = CliRunner()
commands = sorted(typer.main.get_command(app).commands)
calls = [["--help"], *[[name, "--help"] for name in commands]]
calls.append(["generate", "--leads", "500", "--out", sys.argv[1], "--json"])
codes = {" ".join(args): runner.invoke(app, args).exit_code for args in calls}
print(json.dumps({"codes": codes, "loaded": [m for m in sys.argv[2:] if m in sys.modules]}))
"""


@pytest.fixture
def cli_home(prefect_home: str) -> dict[str, str]:
    """The user's environment without a Prefect API configured."""
    env = {**os.environ, "PREFECT_HOME": prefect_home}
    env.pop("PREFECT_API_URL", None)
    return env


def test_help_and_generate_import_neither_prefect_nor_mlflow(tmp_path, cli_home) -> None:
    uri = f"sqlite:///{tmp_path / 'crm.db'}"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, uri, *HEAVY],
        env=cli_home,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"--help", "score --help", "train --help", "generate --help"} <= set(probe["codes"])
    assert set(probe["codes"].values()) == {0}, probe["codes"]
    assert probe["loaded"] == [], f"imported by --help/generate: {probe['loaded']}"
    assert (tmp_path / "crm.db").exists()


#: What `leadscore --help` and `--version` must not import: each costs a second or more.
LIBRARIES = ("prefect", "mlflow", "lightgbm", "pandas", "sklearn", "duckdb", "leadscore_flows")

FIRST_LOOK = """
import json, sys
from typer.testing import CliRunner
from leadscore.apps.cli import app

runner = CliRunner()
codes = {" ".join(a): runner.invoke(app, a).exit_code for a in (["--help"], ["--version"])}
version = runner.invoke(app, ["--version"]).stdout.strip()
print(json.dumps({"codes": codes, "version": version,
                  "loaded": [m for m in sys.argv[1:] if m in sys.modules]}))
"""


def test_help_and_version_import_no_heavy_library(cli_home) -> None:
    """A fast first look: the CLI's own modules and its two presentation libraries only."""
    result = subprocess.run(
        [sys.executable, "-c", FIRST_LOOK, *LIBRARIES],
        env=cli_home, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["codes"] == {"--help": 0, "--version": 0}
    assert probe["version"].startswith("leadscore 0.")
    assert probe["loaded"] == [], f"imported by --help/--version: {probe['loaded']}"


def _project(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"source": {"uri": "sqlite:///crm.db"}}))
    shutil.copy(
        DEFAULT_RULES,
        tmp_path / "mql_rules.yaml",
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_prefect_api_fails_with_the_fix(tmp_path, cli_home) -> None:
    _project(tmp_path)
    url = f"http://user:secret@127.0.0.1:{_closed_port()}/api"
    result = run_cli(["score", "-c", "p.yaml"], {**cli_home, "PREFECT_API_URL": url}, tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "does not answer" in result.stderr and "PREFECT_API_URL" in result.stderr
    assert "fix:" in result.stderr and "prefect server start" in result.stderr
    assert "secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "crm.db").exists()
    assert "set in the environment" in result.stderr and "unset PREFECT_API_URL" in result.stderr


def test_a_dead_prefect_api_in_the_profile_is_removed_from_the_profile(tmp_path) -> None:
    """The README's `prefect config set PREFECT_API_URL=...` lives in the Prefect profile,
    not in the environment: the fix names the command that removes it from there."""
    _project(tmp_path)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    prefect = str(Path(sys.executable).with_name("prefect"))
    url = f"http://127.0.0.1:{_closed_port()}/api"
    subprocess.run([prefect, "config", "set", f"PREFECT_API_URL={url}"], env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    result = run_cli(["score", "-c", "p.yaml"], env, tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "set in your Prefect profile" in result.stderr
    assert "prefect config unset PREFECT_API_URL" in result.stderr


def test_no_api_and_no_temporary_server_names_the_fix(tmp_path, cli_home) -> None:
    _project(tmp_path)
    env = {**cli_home, "PREFECT_SERVER_EPHEMERAL_ENABLED": "false"}
    result = run_cli(["score", "-c", "p.yaml"], env, tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "PREFECT_SERVER_EPHEMERAL_ENABLED" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_never_overrides_where_prefect_runs(monkeypatch) -> None:
    """A running server via PREFECT_API_URL is the documented fix for the startup cost."""
    import logging

    from leadscore.apps import cli

    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environ["PREFECT_API_URL"] = "http://127.0.0.1:4200/api"
    monkeypatch.setattr(os, "environ", environ)
    mlflow_logger = logging.getLogger("mlflow")
    monkeypatch.setattr(mlflow_logger, "level", mlflow_logger.level)
    cli.prefect_environment(verbose=False)
    assert environ["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert "PREFECT_HOME" not in environ
    assert "PREFECT_SERVER_EPHEMERAL_ENABLED" not in environ


def test_password_is_masked_in_the_api_url() -> None:
    from leadscore.io.uris import redact_uri

    assert redact_uri("http://u:pw@h:4200/api") == "http://u:***@h:4200/api"
    assert redact_uri("http://127.0.0.1:4200/api") == "http://127.0.0.1:4200/api"
    assert redact_uri("http://u:pw@[::1]:4200/api") == "http://u:***@[::1]:4200/api"
    assert redact_uri("postgresql://u:pw@db/crm") == "postgresql://u:***@db/crm"
