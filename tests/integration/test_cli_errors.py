"""Refused inputs through the `leadscore` command, in-process: each ends with its own
message and fix, exit code 2, no traceback, and nothing published. (The real process's
exit code and stream separation: tests/e2e/test_e2e.py.)"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import DEFAULT_RULES, demo_variant, sqlite_table
from typer.testing import CliRunner

from leadscore.apps.cli import app
from leadscore.io.tables import write_tables
from leadscore.synthetic import generate_crm


@pytest.fixture(scope="module")
def runner(prefect_home: str) -> CliRunner:
    os.environ["PREFECT_HOME"] = prefect_home
    return CliRunner()


def _bad_inputs(workdir: Path) -> dict[str, tuple[Path, str]]:
    folder = workdir / "bad_exports"
    folder.mkdir(exist_ok=True)
    leads = pd.DataFrame({"lead_id": [1, 2], "created": ["2026-01-01", "2026-01-02"]})
    (folder / "missing_column").mkdir(exist_ok=True)
    leads.to_csv(folder / "missing_column" / "leads.csv", index=False)
    (folder / "empty").mkdir(exist_ok=True)
    (folder / "empty" / "leads.csv").write_text(
        "lead_id,created_at,industry,country,lead_source,employees,job_title,email\n"
    )
    garbage = folder / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    return {
        "missing required column": (
            demo_variant(workdir, "missing", {"uri": str(folder / "missing_column")}),
            "missing column(s) 'created_at'",
        ),
        "unreadable source": (
            demo_variant(workdir, "unreadable", {"uri": f"sqlite:///{garbage}"}),
            "cannot",
        ),
        "empty table": (
            demo_variant(workdir, "empty", {"uri": str(folder / "empty")}),
            "is empty",
        ),
        "unknown config key": (
            demo_variant(workdir, "unknown", extra={"horizon": 30}),
            "unknown key 'horizon'",
        ),
        "missing folder": (
            demo_variant(workdir, "nofolder", {"uri": str(folder / "nope")}),
            "does not exist",
        ),
    }


def _refused(result, capfd, expected: str) -> None:
    terminal = result.output + "".join(capfd.readouterr())
    assert result.exit_code == 2, terminal[-2000:]
    assert expected in result.output and "fix:" in result.output
    assert "Traceback" not in terminal


@pytest.mark.parametrize(
    "case",
    ["missing required column", "unreadable source", "empty table", "missing folder"],
)
def test_bad_input_fails_cleanly_and_publishes_nothing(demo, runner, capfd, case) -> None:
    workdir, summary = demo
    project, expected = _bad_inputs(workdir)[case]
    before = sqlite_table(workdir / "crm.db")
    result = runner.invoke(app, ["score", "-c", str(project), "--as-of", summary["as_of"]])
    _refused(result, capfd, expected)
    pd.testing.assert_frame_equal(sqlite_table(workdir / "crm.db"), before)


def test_score_without_champion_publishes_the_rules_alone(tmp_path, runner, capfd) -> None:
    """No model yet: the rule file's scores are published, and the run says so."""
    tables = generate_crm(600, seed=7).tables()
    write_tables({k: tables[k] for k in ("leads", "activities", "outcomes")},
                 f"sqlite:///{tmp_path / 'crm.db'}")  # fmt: skip
    cfg = {"source": {"uri": "sqlite:///crm.db"}, "mlflow": {"tracking_uri": "sqlite:///empty.db"}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    shutil.copy(DEFAULT_RULES, tmp_path / "mql_rules.yaml")
    result = runner.invoke(app, ["score", "-c", str(tmp_path / "p.yaml")])
    assert result.exit_code == 0, result.output[-3000:]
    assert "by the rules alone" in capfd.readouterr().err + result.output


def test_bad_as_of_is_refused_before_anything_runs(demo, runner, capfd) -> None:
    workdir, _ = demo
    config = str(workdir / "leadscore.yaml")
    result = runner.invoke(app, ["score", "-c", config, "--as-of", "next tuesday"])
    _refused(result, capfd, "is not a date")


def test_retry_delays_are_an_operators_choice_and_checked() -> None:
    from leadscore_flows.tasks import io_retry_delays

    from leadscore.errors import ConfigError

    assert io_retry_delays(None) == [2.0, 5.0, 15.0]
    assert io_retry_delays("1, 1,30") == [1.0, 1.0, 30.0]
    assert io_retry_delays("0") == [] and io_retry_delays("") == []
    for bad in ("2,five", "-1", "7200"):
        with pytest.raises(ConfigError, match="LEADSCORE_IO_RETRY_DELAYS"):
            io_retry_delays(bad)


@pytest.mark.parametrize(
    "args",
    [["score"], ["train"], ["report"], ["promotions"], ["rollback", "--reason", "x"],
     ["score", "--lead-id", "7"], ["scores", "prune", "--after", "2026-01-01"], ["serve"]],
)  # fmt: skip
def test_a_command_without_a_project_file_says_so(
    args, tmp_path, runner, monkeypatch, capfd
) -> None:
    """No --config, no LEADSCORE_CONFIG, no leadscore.yaml here: the command stops and
    names `leadscore init`, instead of reading built-in defaults that describe no project."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEADSCORE_CONFIG", raising=False)
    result = runner.invoke(app, args)
    said = result.output + "".join(capfd.readouterr())
    assert result.exit_code == 2, said
    assert "no project file" in said and "leadscore init" in said
    assert not any(tmp_path.iterdir())  # nothing created here (no crm.db, no mlflow.db)


def test_a_project_file_is_found_in_the_folder_or_through_the_environment(
    tmp_path, runner, monkeypatch
) -> None:
    (tmp_path / "leadscore.yaml").write_text("publish: {uri: 'sqlite:///here.db'}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEADSCORE_CONFIG", raising=False)
    assert runner.invoke(app, ["promotions", "--json"]).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("LEADSCORE_CONFIG", str(tmp_path / "leadscore.yaml"))
    assert runner.invoke(app, ["promotions", "--json"]).exit_code == 0


def test_the_folders_project_file_wins_over_leadscore_config(
    tmp_path, runner, monkeypatch, capfd
) -> None:
    """LEADSCORE_CONFIG is often set for deployments in a shell used for other projects:
    a leadscore.yaml in the working folder is the one a command reads."""
    (tmp_path / "leadscore.yaml").write_text("publish: {uri: 'sqlite:///here.db'}\n")
    other = tmp_path / "production.yaml"
    other.write_text("no_such_section: 1\n")  # read, it would be refused (exit 2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADSCORE_CONFIG", str(other))
    result = runner.invoke(app, ["promotions", "--json"])
    said = result.output + "".join(capfd.readouterr())
    assert result.exit_code == 0, said
    assert "from LEADSCORE_CONFIG" not in said
    (tmp_path / "leadscore.yaml").unlink()
    result = runner.invoke(app, ["promotions", "--json"])
    said = result.output + "".join(capfd.readouterr())
    assert result.exit_code == 2 and "no_such_section" in said, said
