"""The backtest chooses the learner: a flat export built to drift, where boosted trees
cannot follow and a logistic regression can, makes the logistic candidate the champion;
then it scores and explains open leads like any model.

The export: 6,000 leads in arrival order. In the newest third, the strongest numeric
feature ("Engagement") moves beyond the range the older leads had and the conversion rate
about triples with it. Trees predict flat beyond the range they saw; a linear model
extrapolates the trend.
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
from leadscore.lifecycle.registry import load_champion

N = 6000
OPEN = 300


def _export(folder: Path, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    newest = np.arange(N) >= 2 * N // 3
    engagement = rng.normal(0, 1, N) + np.where(newest, 2.2, 0.0)
    industry = rng.choice(["software", "retail", "finance", "public"], N)
    logit = -2.4 + 1.1 * engagement + np.where(industry == "software", 0.4, 0.0)
    converted = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(float)
    frame = pd.DataFrame(
        {
            "Lead Id": [f"L{i:05d}" for i in range(N)],
            "Lead Number": np.arange(100_000, 100_000 + N),
            "Engagement": engagement.round(3),
            "Visits": rng.poisson(3, N),
            "Industry": industry,
            "Converted": converted,
        }
    )
    frame.loc[frame.index[-OPEN:], "Converted"] = np.nan  # the newest leads are still open
    (folder / "data").mkdir(parents=True)
    frame.to_csv(folder / "data" / "export.csv", index=False)
    return frame


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, prefect_home: str) -> Path:
    os.environ["PREFECT_HOME"] = prefect_home
    folder = tmp_path_factory.mktemp("candidates")
    frame = _export(folder)
    config = {
        "source": flat_source(["Industry"], ["Engagement", "Visits"], ["Engagement"]),
        "split": {"method": "order", "order_column": "Lead Number", "test_share": 0.15},
        "backtest": {"candidates": ["project", "shallow", "monotone", "logistic"]},
        "rules": "rules.yaml",
        "publish": {"uri": "sqlite:///scores.db"},
        "report": {"bootstrap_samples": 100},
    }
    (folder / "rules.yaml").write_text(
        "mql_threshold: 20\nattribute_rules:\n  - name: engaged\n    field: Engagement\n"
        "    range: [1, null]\n    points: 20\n"
    )
    (folder / "leadscore.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert (
        frame["Converted"].iloc[-N // 3 : -OPEN].mean()
        > 2.5 * frame["Converted"].iloc[: 2 * N // 3].mean()
    )  # the base rate about triples in the newest third
    return folder


def _run(args: list[str], code: int = 0) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(project: Path) -> dict:
    return _run(["train", "--config", str(project / "leadscore.yaml")])


def test_where_the_logistic_candidate_wins_the_backtest_it_is_the_champion(
    project, trained
) -> None:
    path = str(project / "leadscore.yaml")
    backtest = trained["backtest"]
    board = {row["candidate"]: row for row in backtest["leaderboard"]}
    assert backtest["learner"] == "logistic" and board["logistic"]["chosen"]
    assert board["logistic"]["log_loss"] < board["lightgbm"]["log_loss"]
    # The champion is never worse than the best candidate by more than the folds' spread.
    best = min(row["log_loss"] for row in board.values())
    spread = max(row["fold_auc_spread"] for row in board.values())
    assert board["logistic"]["log_loss"] <= best + spread
    # Each fold's 95 % interval holds its AUC.
    for record in backtest["folds"]:
        assert record["roc_auc_low"] <= record["roc_auc"] <= record["roc_auc_high"]
    assert set(board) == {"logistic", "lightgbm_shallow", "lightgbm"}

    # MLflow: under the training run, one child run per candidate and one per fold, in the
    # run's experiment; the leaderboard as a table and a plot.
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(trained["run_id"])
    children = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    kinds = sorted(c.data.tags["leadscore.kind"] for c in children)
    folds = len({r["fold"] for r in backtest["folds"]}) - 1  # without the pooled rows
    assert kinds == ["backtest candidate"] * 3 + ["backtest fold"] * folds
    chosen = [c for c in children if c.data.params.get("chosen") == "True"]
    assert [c.data.params["candidate"] for c in chosen] == ["logistic"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/leaderboard.png", "plots/over_time.png"} <= artifacts

    champion = load_champion(load_config(path))
    assert champion.model.learner == "logistic"
    assert champion.model.recipe_["model"]["learner"] == "logistic"

    # It scores the open leads and explains them like any model. The export drifted by
    # construction: monitoring says so (exit 3), after the scores were published.
    scored = _run(["score", "--config", path], code=3)
    assert scored["rows"]["published"] == OPEN
    assert any("Engagement PSI" in m for m in scored["monitoring"]["messages"])
    scores = pd.read_sql_table("lead_scores", f"sqlite:///{project / 'scores.db'}")
    assert scores["conversion_probability"].between(0, 1).all()
    assert scores["reasons_up"].str.contains("Engagement|engagement", case=False).any()
    top = scores.sort_values("conversion_probability").iloc[-1]
    one = _run(["score", "--config", path, "--lead-id", str(top["lead_id"])])
    assert one["leads"][0]["conversion_probability"] == pytest.approx(
        top["conversion_probability"], abs=1e-9
    )


def test_logistic_contributions_add_up_to_its_log_odds(project, trained) -> None:
    champion = load_champion(load_config(str(project / "leadscore.yaml")))
    model = champion.model
    frame = pd.read_csv(project / "data" / "export.csv").head(200)
    rows = frame.rename(columns={"Lead Id": "lead_id"})
    contrib = model.contributions(rows)
    bias = np.mean([m.bias for m in model.members_])
    assert np.max(np.abs(contrib.sum(axis=1).to_numpy() + bias - model.log_odds(rows))) < 1e-9
    # A linear model: path and SHAP are the same exact values.
    pd.testing.assert_frame_equal(contrib, model.contributions(rows, method="shap"))
    assert model.feature_importance().index[0] == "Engagement"
