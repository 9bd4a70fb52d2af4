"""The promotion gate through the command: train, judge, promote by hand, roll back, and
the history of every decision."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import DEFAULT_RULES, mlflow_client
from typer.testing import CliRunner

from leadscore.apps.cli import app
from leadscore.io.tables import write_tables
from leadscore.synthetic import generate_crm


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, prefect_home: str) -> Path:
    os.environ["PREFECT_HOME"] = prefect_home
    folder = tmp_path_factory.mktemp("gate")
    tables = generate_crm(3000, seed=11, end="2026-06-30").tables()
    write_tables({k: tables[k] for k in ("leads", "activities", "outcomes")}, str(folder / "data"))
    (folder / "rules.yaml").write_text(DEFAULT_RULES.read_text(encoding="utf-8"))
    return folder


def _config(folder: Path, name: str, model: dict | None = None) -> Path:
    config = {
        "source": {"uri": "data"},
        "rules": "rules.yaml",
        "publish": {"uri": "sqlite:///s.db"},
        # The weak champion predicts almost a constant, so its calibration error is near
        # zero by construction, while a full model's moves by about 0.01 on these ~2,000
        # test leads with any change of its features. This test is about the workflow;
        # the calibration rule of the gate has unit tests above.
        "promotion": {"max_ece_increase": 0.02},
        # Two folds keep the three trainings (and the champion recipe's reruns) quick.
        "backtest": {"folds": 2},
    }
    if model:
        config["model"] = model
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(args: list[str]) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _champion(folder: Path) -> str:

    client = mlflow_client(f"sqlite:///{folder / 'mlflow.db'}")
    return str(client.get_model_version_by_alias("leadscore-conversion", "champion").version)


@pytest.mark.long  # a minute of CLI trainings: CI's long step
def test_gate_promote_and_rollback_through_the_cli(project: Path) -> None:
    # A deliberately weak first champion: one shallow tree.
    weak = {"max_trees": 1, "params": {"num_leaves": 2, "min_child_samples": 200}}
    first = _run(["train", "--config", str(_config(project, "weak", weak))])
    assert first["promotion"]["decision"] == "first" and _champion(project) == "1"

    # The default model beats it clearly: promoted.
    better = _run(["train", "--config", str(_config(project, "full"))])
    gate = better["promotion"]
    assert gate["decision"] == "promoted", gate
    assert gate["challenger"]["roc_auc"] >= gate["champion"]["roc_auc"] + 0.005
    assert _champion(project) == "2"

    # The weak model again is a worse challenger: not promoted, champion unchanged.
    worse = _run(["train", "--config", str(_config(project, "weak", weak))])
    gate = worse["promotion"]
    assert gate["decision"] == "kept" and not gate["promoted"], gate
    assert "below the required" in gate["reason"]
    assert _champion(project) == "2"

    client = mlflow_client(f"sqlite:///{project / 'mlflow.db'}")
    v3 = client.get_model_version("leadscore-conversion", "3")
    assert v3.tags["gate.decision"] == "kept" and "challenger" in v3.aliases
    assert client.get_run(worse["run_id"]).data.tags["gate.decision"] == "kept"

    # By hand: promote v3 with a reason, then roll back to v2.
    config = str(_config(project, "full"))
    moved = _run(["promote", "3", "--reason", "campaign season test", "--config", config])
    assert moved["champion_version"] == "3" and moved["previous_champion"] == "2"
    back = _run(["rollback", "--reason", "v3 underperforms", "--config", config])
    assert back["champion_version"] == "2" and _champion(project) == "2"
    assert client.get_model_version("leadscore-conversion", "2").tags["promotion.reason"] == (
        "v3 underperforms"
    )

    history = _run(["promotions", "--config", config])["history"]
    assert [(h["version"], h["action"], h["champion_after"]) for h in history] == [
        ("1", "first", "1"),
        ("2", "promoted", "2"),
        ("3", "kept", "2"),
        ("3", "manual", "3"),
        ("2", "rollback", "2"),
    ]
    assert history[3]["reason"] == "campaign season test"


def test_promote_needs_a_known_version_and_a_reason(project: Path) -> None:
    config = str(_config(project, "full"))
    result = CliRunner().invoke(app, ["promote", "99", "--reason", "x", "--config", config])
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["promote", "1", "--reason", " ", "--config", config])
    assert result.exit_code == 2 and "reason" in result.output
