"""`leadscore tune` on a real project: a search on the backtest folds beats parameters that
clearly underfit, writes the winner where the project reads it, logs every trial to
MLflow, and the next `train` uses the winner.

The export: 4,000 leads of a flat export whose odds follow two numeric attributes and an
industry. The project's current parameters ask for 5,000 leads per leaf, more than any
member learns from, so its trees cannot split at all; every sampled setting of the search
(10 to 1,000 per leaf) can.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import flat_source
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from leadscore.apps.cli import app
from leadscore.config import load_config

N = 4000


def _project(folder: Path, seed: int = 5) -> Path:
    rng = np.random.default_rng(seed)
    fit = rng.normal(0, 1, N)
    visits = rng.poisson(3, N)
    industry = rng.choice(["software", "retail", "finance"], N)
    logit = -1.8 + 1.3 * fit + 0.25 * visits + np.where(industry == "software", 0.5, 0.0)
    converted = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(float)
    frame = pd.DataFrame(
        {
            "Lead Id": [f"T{i:05d}" for i in range(N)],
            "Lead Number": np.arange(N),
            "Fit": fit.round(3),
            "Visits": visits,
            "Industry": industry,
            "Converted": converted,
        }
    )
    (folder / "data").mkdir(parents=True)
    frame.to_csv(folder / "data" / "export.csv", index=False)
    config = {
        "source": flat_source(["Industry"], ["Fit", "Visits"], ["Fit"]),
        "split": {"method": "order", "order_column": "Lead Number", "test_share": 0.15},
        "model": {
            "max_trees": 150,
            "early_stopping_rounds": 30,
            "params": {"learning_rate": 0.05, "num_leaves": 7, "min_child_samples": 5000},
        },
        "backtest": {"folds": 2, "candidates": ["project"], "interval_samples": 0},
        "rules": "rules.yaml",
        "publish": {"uri": "sqlite:///scores.db"},
        "report": {"bootstrap_samples": 100},
    }
    (folder / "rules.yaml").write_text(
        "mql_threshold: 20\nattribute_rules:\n  - name: high_fit\n    field: Fit\n"
        "    range: [1, null]\n    points: 20\n"
    )
    path = folder / "leadscore.yaml"
    path.write_text("# written by the test\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def _run(args: list[str]) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, prefect_home: str) -> tuple[Path, dict]:
    os.environ["PREFECT_HOME"] = prefect_home
    path = _project(tmp_path_factory.mktemp("tune"))
    return path, _run(["tune", "--config", str(path), "--budget", "5m", "--trials", "3"])


def test_tune_writes_a_winner_that_beats_underfitting_parameters(tuned) -> None:
    path, summary = tuned
    assert summary["trials"] == 3 and summary["folds"] == 2
    current, best = summary["current"], summary["best"]
    assert current["params"]["min_child_samples"] == 5000  # trial 0: the project's own
    assert current["metrics"]["roc_auc"] == pytest.approx(0.5, abs=0.01)  # no split at all
    assert best["trial"] != 0 and best["metrics"]["roc_auc"] > 0.7
    assert best["metrics"]["log_loss"] < current["metrics"]["log_loss"] - 0.02
    assert "-min_child_samples: 5000" in summary["diff"]
    written = Path(summary["written"]["params_file"])
    assert written == path.parent / "tuned-params.yaml"
    config = load_config(path)
    assert config.model.params == pytest.approx(best["params"])
    assert config.model.max_trees == 150  # only the parameters changed
    assert path.read_text().startswith("# written by the test\n")

    # Every trial is a nested MLflow run under the search's run.
    uri = f"sqlite:///{path.parent / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(summary["run_id"])
    assert run.data.tags["leadscore.kind"] == "tuning"
    children = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    assert len(children) == 3
    assert {c.data.tags["leadscore.kind"] for c in children} == {"tuning trial"}

    # The next training reads the winner: its recipe carries the tuned parameters.
    _run(["train", "--config", str(path)])
    from leadscore.lifecycle.registry import load_champion

    champion = load_champion(config)
    assert champion.model.recipe_["model"]["params"] == pytest.approx(best["params"])
