"""The gate never judges a model on rows it learned from.

The champion is trained on a history cut two weeks earlier, the challenger on the whole
history. A sentinel makes the champion perfect on every row it learned from and
uninformative on the others: if a single learned row reached the verdict, the champion
would win.

- The champion's recipe differs in its split (its folds are not the challenger's), so the
  gate judges both on the newest fold's rows dated after its newest learned snapshot.
- The champion's recipe differs in its features: the gate reruns that recipe on the
  challenger's folds, so the champion's model (the sentinel) never reaches the verdict.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from leadscore.config import config_from_dict
from leadscore.data.rules import load_rules
from leadscore.io.sources import CRMData
from leadscore.lifecycle import promotion
from leadscore.lifecycle.registry import Champion, RegisteredModel, Registry
from leadscore.scoring import training
from leadscore.scoring.backtest import candidate_configs
from leadscore.synthetic import generate_crm

#: the gate's folds on several trainings: CI's long step.
pytestmark = pytest.mark.long

CUT = pd.Timestamp("2026-06-15")
#: A recipe whose folds differ from the default's (a longer calibration window).
OTHER_SPLIT = {"split": {"calibration_days": 120}}
#: A recipe with other behaviour features (windows) on the same folds.
OTHER_FEATURES = {"features": {"windows_days": [14, 60]}}


def _until(crm: CRMData, cut: pd.Timestamp) -> CRMData:
    return CRMData(
        crm.leads[crm.leads["created_at"] < cut],
        crm.activities[crm.activities["occurred_at"] < cut],
        crm.outcomes[crm.outcomes["converted_at"] < cut],
        "generated",
    )


def _train(crm: CRMData, overrides: dict) -> training.TrainingResult:
    config = config_from_dict({"backtest": {"folds": 1}, **overrides}, environ={})
    rules = load_rules(REPO / "models" / "mql_rules.yaml")
    return training.train(training.build_training_set(crm, config, rules), config, crm)


@pytest.fixture(scope="module")
def runs():
    generated = generate_crm(4000, seed=21, end="2026-06-30")
    crm = CRMData(generated.leads, generated.activities, generated.outcomes.dropna(), "g")
    champion = _train(_until(crm, CUT), OTHER_SPLIT)
    challenger = _train(crm, {})
    return crm, champion, challenger


class _Sentinel:
    """The champion's model, perfect on the rows it learned from, 0.5 elsewhere."""

    def __init__(self, model, labels: pd.DataFrame) -> None:
        self._model, self._labels = model, labels.set_index(["lead_id", "as_of"])["converted"]
        self.trained_through_ = model.trained_through_
        self.recipe_ = model.recipe_
        self.features = model.features

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        keys = pd.MultiIndex.from_frame(rows[["lead_id", "as_of"]])
        learned = rows["as_of"].to_numpy() <= np.datetime64(self.trained_through_)
        truth = self._labels.reindex(keys).to_numpy(dtype=float)
        return np.where(learned, truth, 0.5)


def _record_backtests(monkeypatch) -> list[list[str]]:
    """The columns of the rows each backtest the gate runs reads (filled as it runs)."""
    seen: list[list[str]] = []
    run_backtest = training.run_backtest

    def recording(examples, *args, **kwargs):
        seen.append(list(examples.rows.columns))
        return run_backtest(examples, *args, **kwargs)

    monkeypatch.setattr(training, "run_backtest", recording)
    return seen


def _judge(crm, champion, challenger, model, monkeypatch, **extra) -> promotion.Verdict:
    config = config_from_dict(extra, environ={})
    registry = Registry("sqlite:///unused.db", "unused", "leadscore-conversion")
    entry = RegisteredModel("leadscore-conversion", "1", "run", ("champion",))
    monkeypatch.setattr(registry, "load", lambda e: Champion(e, None, model))
    return promotion.judge_challenger(challenger, crm, config, registry, entry)


def test_the_champion_is_judged_only_on_rows_it_never_learned_from(runs, monkeypatch) -> None:
    crm, champion, challenger = runs
    through = champion.model.trained_through_
    assert through == champion.data.plan.label_end  # the refit learned up to the newest
    # At most a horizon and one snapshot step before the end of its data.
    end = _until(crm, CUT).data_end
    assert end - through <= pd.Timedelta(days=90 + 30)
    assert champion.outcomes_through <= end
    test = challenger.data.snapshots["test"]
    unseen = test["as_of"] > through
    assert 0 < unseen.sum() < len(test)  # both kinds are in the newest fold
    sentinel = _Sentinel(champion.model, test)
    verdict = _judge(crm, champion, challenger, sentinel, monkeypatch)
    assert verdict.cohort_rows == unseen.sum()
    assert verdict.champion_auc == pytest.approx(0.5)
    assert verdict.action == "promoted" and "never learned from" in verdict.reason


def test_no_fair_comparison_without_unseen_rows_keeps_the_champion(runs, monkeypatch) -> None:
    """The same history: the champion learned from every row of the newest fold."""
    crm, _, challenger = runs
    champion = _train(crm, OTHER_SPLIT)
    sentinel = _Sentinel(champion.model, challenger.data.snapshots["test"])
    verdict = _judge(crm, champion, challenger, sentinel, monkeypatch)
    assert verdict.action == "kept" and "cannot be compared fairly" in verdict.reason
    # With the gate switched off, the challenger is promoted all the same.
    off = _judge(crm, champion, challenger, sentinel, monkeypatch, promotion={"enabled": False})
    assert off.promote and off.reason == "promotion gate disabled"


def test_the_same_recipe_on_newer_data_is_a_refresh(runs, monkeypatch) -> None:
    crm, _, challenger = runs
    older = _train(_until(crm, CUT), {})
    verdict = _judge(crm, older, challenger, older.model, monkeypatch)
    assert verdict.promote and verdict.action == "refreshed"
    assert str(challenger.trained_through.date()) in verdict.reason
    assert str(older.trained_through.date()) in verdict.reason


def test_a_champion_recipe_that_lost_this_runs_backtest_is_replaced(runs, monkeypatch) -> None:
    """The champion's recipe is one of this run's candidates (another one was chosen): its
    fold predictions are already there, no recipe is refitted, and the challenger, which
    won that contest on the same folds, is promoted even without the AUC margin."""
    crm, _, challenger = runs
    config = config_from_dict({"backtest": {"folds": 1}}, environ={})
    settings = candidate_configs(config)
    other = next(w for w in challenger.backtest.candidates if w != challenger.chosen_column)
    recipe = copy.deepcopy(challenger.model.recipe_)
    recipe["model"] = settings[other].model_dump(
        mode="json", exclude={"num_threads", "params_file"}
    )
    champion = copy.copy(challenger.model)
    champion.recipe_ = recipe

    def no_refit(*args, **kwargs):
        raise AssertionError("the champion's recipe was refitted")

    monkeypatch.setattr(promotion, "recipe_backtest", no_refit)
    verdict = _judge(crm, None, challenger, champion, monkeypatch, backtest={"folds": 1})
    assert verdict.promote and verdict.action == "promoted"
    gain = verdict.challenger_auc - verdict.champion_auc
    if gain < config.promotion.min_auc_gain:
        assert "was a candidate of this run" in verdict.reason
    pooled = challenger.backtest.predictions()
    assert verdict.cohort_rows == len(pooled)


def test_a_champion_of_other_features_is_rerun_on_the_same_folds(runs, monkeypatch) -> None:
    """Its recipe is fitted on the challenger's folds with its own features: the verdict
    holds every pooled test row, and the sentinel model (perfect on rows it learned from)
    never reaches it."""
    crm, _, challenger = runs
    champion = _train(_until(crm, CUT), OTHER_FEATURES)
    seen = _record_backtests(monkeypatch)
    sentinel = _Sentinel(champion.model, challenger.data.snapshots["test"])
    verdict = _judge(crm, champion, challenger, sentinel, monkeypatch, backtest={"folds": 1})
    assert "on its own features" in verdict.reason
    assert verdict.cohort_rows == len(challenger.backtest.predictions())
    # The rerun read the champion's windows, not the challenger's.
    assert len(seen) == 1
    assert any(c.endswith("_14d") for c in seen[0]) and not any(c.endswith("_7d") for c in seen[0])
    assert 0.6 < verdict.champion_auc < 0.95  # a real recipe, not the sentinel's 1.0


@pytest.mark.parametrize("champion_has_country", [False, True])
def test_a_flat_export_champion_of_other_attributes_is_rerun(
    tmp_path, monkeypatch, champion_has_country
) -> None:
    """A flat export: the champion learned from every labelled lead of this export, so no
    row is unseen; its recipe (with or without Country, where this run's has the other) is
    rerun on the challenger's folds instead, its columns read from the source, and the
    champion's model itself never scores a row of the verdict."""
    import yaml
    from conftest import FLAT_CONFIG, FLAT_RULES, write_flat_export

    from leadscore.config import load_config
    from leadscore.io.sources import load_crm

    write_flat_export(tmp_path / "data", leads=3000)
    (tmp_path / "rules.yaml").write_text(FLAT_RULES)

    def project(name: str, categorical: list[str]):
        raw = copy.deepcopy(FLAT_CONFIG)
        raw["source"]["attributes"]["categorical"] = categorical
        raw["backtest"] = {"folds": 2}
        (tmp_path / name).write_text(yaml.safe_dump(raw))
        return load_config(tmp_path / name)

    with_country = project("ours.yaml", ["Industry", "Country", "Lead Source", "Sales Status"])
    without = project("theirs.yaml", ["Industry", "Lead Source", "Sales Status"])
    ours, theirs = (without, with_country) if champion_has_country else (with_country, without)
    crm = load_crm(ours)  # what this run read: only its own columns
    rules = load_rules(ours.rules_path)

    def fit(config):
        read = load_crm(config)
        return training.train(training.build_training_set(read, config, rules), config, read)

    challenger, champion = fit(ours), fit(theirs)

    class _Untouchable:
        recipe_ = champion.model.recipe_
        fitted_leads_ = champion.model.fitted_leads_
        features = champion.model.features

        def predict_proba(self, rows):
            raise AssertionError("the champion's model scored a row it learned from")

    registry = Registry("sqlite:///unused.db", "unused", "leadscore-conversion")
    entry = RegisteredModel("leadscore-conversion", "1", "run", ("champion",))
    monkeypatch.setattr(registry, "load", lambda e: Champion(e, None, _Untouchable()))
    seen = _record_backtests(monkeypatch)
    verdict = promotion.judge_challenger(challenger, crm, ours, registry, entry)
    assert "on its own features" in verdict.reason, verdict.reason
    assert verdict.cohort_rows == len(challenger.backtest.predictions())
    assert len(challenger.backtest.folds) == 2
    assert seen and ("Country" in seen[0]) == champion_has_country and "Industry" in seen[0]
    # "Sales Status" is a leak in this export: the champion's own guard excluded it again.
    assert 0.6 < verdict.champion_auc < 0.97


def test_without_the_refit_the_newest_fold_model_is_registered_with_its_drift_reference(
    runs,
) -> None:
    """`backtest.refit: false` registers the newest fold's model, learned through that
    fold's fit end, with the drift reference monitoring needs; a fold model that is not
    registered keeps none (it costs time and is never read)."""
    crm, _, challenger = runs
    kept = _train(crm, {"backtest": {"folds": 1, "refit": False}})
    assert kept.model is kept.fold_models[1]
    assert kept.trained_through == kept.backtest.newest.fold.fit_end < challenger.trained_through
    reference, refit = kept.model.drift_reference_, challenger.model.drift_reference_
    assert reference.features and reference.features == refit.features
    # The newest fold's fitting rows: fewer than the refit's (it learned through an older date).
    assert reference.rows == int(kept.backtest.newest.fold.fit.sum()) < refit.rows
    assert not hasattr(challenger.fold_models[1], "drift_reference_")


def test_a_model_of_an_older_history_never_replaces_the_champion(runs, monkeypatch) -> None:
    """A run as of a past date (`train --as-of`) with the champion's own recipe is not a
    refresh: the champion learned from newer snapshots and stays."""
    crm, older, newer = runs
    verdict = _judge(crm, None, older, newer.model, monkeypatch)
    assert not verdict.promote and verdict.action == "kept"
    assert "older than champion" in verdict.reason
