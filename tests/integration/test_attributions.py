"""Path attributions of a model trained on generated data: exact additivity on every row,
agreement with TreeSHAP, the reasons scoring publishes, and the cache that is never pickled."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from leadscore.config import config_from_dict
from leadscore.data.rules import load_rules
from leadscore.io.sources import CRMData
from leadscore.modeling.reasons import explain, factors
from leadscore.scoring import training
from leadscore.scoring.scorer import Scorer
from leadscore.synthetic import generate_crm


@pytest.fixture(scope="module")
def trained():
    crm = generate_crm(10_000, seed=3, end="2026-06-30")
    data = CRMData(crm.leads, crm.activities, crm.outcomes.dropna(), "generated")
    # Tree attributions: the boosted-trees recipe only (the logistic candidate could win
    # the backtest on this small history; its contributions have their own test).
    config = config_from_dict({"backtest": {"candidates": ["project"]}}, environ={})
    rules = load_rules(REPO / "models" / "mql_rules.yaml")
    result = training.train(training.build_training_set(data, config, rules), config)
    return result, data, config, rules


def test_contributions_add_up_to_the_raw_log_odds_on_every_row(trained) -> None:
    result, _, _, _ = trained
    model, rows = result.model, result.data.rows["test"]
    contrib = model.contributions(rows)
    assert list(contrib.columns) == model.features.feature_names_
    assert contrib.index.equals(rows.index)
    tables = model.path_attributions()
    assert len(tables) == len(model.members_) == 2
    bias = np.mean([t.expected_value for t in tables])
    total = contrib.sum(axis=1).to_numpy() + bias
    assert np.max(np.abs(total - model.log_odds(rows))) <= 1e-9
    # Per member, and with exact TreeSHAP, whose bias is the path attributions' too.
    x = model.features.transform(rows)
    for member, table in zip(model.members_, tables, strict=True):
        booster = member.booster.booster_
        margin = booster.predict(x, raw_score=True, num_iteration=member.iteration)
        own = table.contributions(x).sum(axis=1) + table.expected_value
        assert np.max(np.abs(own - margin)) <= 1e-9
        shap = booster.predict(x.head(50), pred_contrib=True, num_iteration=member.iteration)
        assert shap[0, -1] == pytest.approx(table.expected_value, abs=1e-9)


def test_reasons_mostly_agree_with_exact_treeshap(trained) -> None:
    result, _, _, _ = trained
    model, rows = result.model, result.data.rows["test"]
    path = model.contributions(rows)
    shap = model.contributions(rows, method="shap")
    assert not np.allclose(path.to_numpy(), shap.to_numpy())  # two different methods
    for sign in (1.0, -1.0):
        same = _top_factor(path, model.features, sign, 0.02) == _top_factor(
            shap, model.features, sign, 0.02
        )
        assert same.mean() >= 0.75, (sign, same.mean())
    ours, exact = explain(rows, path, model.features), explain(rows, shap, model.features)
    for column in ("reasons_up", "reasons_down"):
        identical = (ours[column] == exact[column]).mean()
        assert identical >= 0.30, (column, identical)


def test_scoring_gives_the_reasons_of_path_attributions(trained) -> None:
    result, crm, config, rules = trained
    model = result.model
    as_of = result.data.plan.dates["test"][-1]
    scores, rows = Scorer.unregistered(model, rules, config).score_with_rows(crm, as_of)
    labels = config.report.labels
    path = explain(rows, model.contributions(rows, method="path"), model.features, labels)
    shap = explain(rows, model.contributions(rows, method="shap"), model.features, labels)
    for column in ("reasons_up", "reasons_down"):
        assert scores[column].tolist() == path[column].tolist()
    assert (scores["reasons_up"].to_numpy() != shap["reasons_up"].to_numpy()).any()


def test_the_table_is_cached_but_never_pickled(trained) -> None:
    result, _, _, _ = trained
    rows = result.data.rows["test"].head(200)
    fresh = pickle.loads(pickle.dumps(result.model))
    assert "_path_attributions" not in vars(fresh)  # as a model pickled before the cache
    size = len(pickle.dumps(fresh))
    first = fresh.contributions(rows)
    assert fresh.path_attributions()[0] is fresh.path_attributions()[0]
    assert len(pickle.dumps(fresh)) == size
    again = pickle.loads(pickle.dumps(fresh))
    pd.testing.assert_frame_equal(again.contributions(rows), first)
    # A model told to use fewer trees gets a table of those trees.
    for member in again.members_:
        member.iteration = 40
    total = again.contributions(rows).sum(axis=1).to_numpy()
    assert [t.num_iteration for t in again.path_attributions()] == [40, 40]
    bias = np.mean([t.expected_value for t in again.path_attributions()])
    assert np.max(np.abs(total + bias - again.log_odds(rows))) <= 1e-9
    with pytest.raises(ValueError, match="unknown contributions method"):
        again.contributions(rows, method="lime")


def _top_factor(contrib: pd.DataFrame, builder, sign: float, min_effect: float) -> np.ndarray:
    groups = factors(builder)
    member = np.zeros((contrib.shape[1], len(groups)))
    position = {name: i for i, name in enumerate(contrib.columns)}
    for j, group in enumerate(groups):
        member[[position[name] for name in group.features], j] = 1.0
    effect = sign * (contrib.to_numpy() @ member)
    top = np.argmax(effect, axis=1)
    return np.where(effect[np.arange(len(top)), top] > min_effect, top, -1)
