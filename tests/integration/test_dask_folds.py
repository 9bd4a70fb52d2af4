"""The backtest's folds as tasks on a Dask LocalCluster (`scale.dask: local`): the same
folds, predictions and leaderboard as the folds fitted one after the other here."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import REPO

from leadscore.config import config_from_dict
from leadscore.data.rules import load_rules
from leadscore.io.sources import CRMData
from leadscore.scoring import training
from leadscore.synthetic import generate_crm

#: A Dask LocalCluster: CI's long step.
pytestmark = pytest.mark.long


@pytest.fixture(scope="module")
def data():
    generated = generate_crm(3_000, seed=21, end="2026-06-30")
    crm = CRMData(generated.leads, generated.activities, generated.outcomes.dropna(), "generated")
    config = config_from_dict(
        {"backtest": {"folds": 3, "candidates": ["project", "shallow", "logistic"]}},
        environ={},
    )
    rules = load_rules(REPO / "models" / "mql_rules.yaml")
    return crm, config, training.build_training_set(crm, config, rules)


def test_folds_on_a_local_dask_cluster_give_the_sequential_leaderboard(data) -> None:
    crm, config, training_set = data
    here = training.train(training_set, config, crm)
    on_dask = config.model_copy(update={"scale": config.scale.model_copy(update={"dask": "local"})})
    there = training.train(training_set, on_dask, crm)
    assert len(here.backtest.folds) == 3
    pd.testing.assert_frame_equal(here.leaderboard, there.leaderboard)
    pd.testing.assert_frame_equal(here.backtest.table(), there.backtest.table())
    pd.testing.assert_frame_equal(here.backtest.predictions(), there.backtest.predictions())
    assert here.chosen_column == there.chosen_column
    # The refit runs here either way: the same registered model's scores.
    rows = training_set.rows["test"]
    assert (here.model.predict_proba(rows) == there.model.predict_proba(rows)).all()
