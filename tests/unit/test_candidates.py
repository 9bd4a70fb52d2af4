"""The candidate recipes: their settings, the choice among them (ties go to the simpler),
the monotone constraints, and a backtest that fits them all on the same folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.config import config_from_dict
from leadscore.data.features import BehaviourSpec, FeatureBuilder
from leadscore.errors import ConfigError
from leadscore.scoring.backtest import (
    Backtest,
    Examples,
    candidate_configs,
    fit_recipe,
    run_backtest,
    time_folds,
    time_refit,
)
from leadscore.scoring.training import (
    check_monotone,
    choose_candidate,
    recipe,
    recipe_config,
    same_folds,
)


def _config(**backtest):
    return config_from_dict(
        {
            "split": {"calibration_days": 60, "validation_days": 30, "test_days": 30},
            "horizon_days": 30,
            "model": {"max_trees": 60, "params": {"min_child_samples": 20}},
            "backtest": {"folds": 3, "min_fit_share": 0.1, "interval_samples": 100, **backtest},
        },
        environ={},
    )


def test_candidate_settings_follow_fixed_rules_on_the_projects_own() -> None:
    config = config_from_dict({}, environ={})
    assert list(candidate_configs(config)) == ["model", "baseline"]  # monotone: no constraints
    settings = candidate_configs(config, ["project", "shallow", "logistic"])
    assert list(settings) == ["model", "baseline", "shallow"]
    assert settings["model"] == config.model and settings["baseline"].learner == "logistic"
    project, shallow = config.model.params, settings["shallow"].params
    assert shallow["num_leaves"] == 3 < project["num_leaves"]
    assert shallow["min_child_samples"] == 2 * project["min_child_samples"]
    assert shallow["reg_lambda"] == 10 * project["reg_lambda"]
    assert shallow["colsample_bytree"] == pytest.approx(0.5 * project["colsample_bytree"])
    assert shallow["learning_rate"] == pytest.approx(3 * project["learning_rate"])
    constrained = config_from_dict({"backtest": {"monotone": {"n_all_30d": 1}}}, environ={})
    monotone = candidate_configs(constrained)["monotone"]
    assert monotone.monotone == {"n_all_30d": 1} and monotone.params == config.model.params
    assert candidate_configs(constrained)["model"].monotone == {}  # the project's stay free
    # A logistic project is its own logistic candidate.
    linear = config_from_dict({"model": {"learner": "logistic"}}, environ={})
    assert list(candidate_configs(linear, ["project", "shallow", "logistic"])) == [
        "model",
        "shallow",
    ]
    only = config_from_dict({"backtest": {"candidates": ["project"]}}, environ={})
    assert list(candidate_configs(only)) == ["model"]


def _board(pooled: dict[str, dict[str, float]]) -> Backtest:
    return Backtest([], pooled, candidates=tuple(pooled))


@pytest.mark.parametrize(
    ("metric", "figures", "tolerance", "chosen"),
    [
        # Lower log loss wins; within the tolerance the simpler (earlier) one wins.
        ("log_loss", {"baseline": 0.2160, "shallow": 0.2151, "model": 0.2150}, 0.0005, "shallow"),
        ("log_loss", {"baseline": 0.2160, "shallow": 0.2151, "model": 0.2150}, 0.0, "model"),
        ("log_loss", {"baseline": 0.2152, "shallow": 0.2151, "model": 0.2150}, 0.0005, "baseline"),
        # Higher AUC wins.
        ("roc_auc", {"baseline": 0.70, "shallow": 0.76, "model": 0.75}, 0.0005, "shallow"),
        ("roc_auc", {"baseline": 0.7598, "shallow": 0.74, "model": 0.76}, 0.0005, "baseline"),
    ],
)
def test_the_best_pooled_figure_wins_and_a_tie_goes_to_the_simpler(
    metric, figures, tolerance, chosen
) -> None:
    config = config_from_dict(
        {"backtest": {"metric": metric, "tie_tolerance": tolerance}}, environ={}
    )
    board = _board({who: {metric: value} for who, value in figures.items()})
    assert choose_candidate(board, config) == chosen


def test_monotone_features_must_be_numeric_features_of_the_model() -> None:
    builder = _builder(_config())
    check_monotone(_config(monotone={"signal": 1}), builder)
    with pytest.raises(ConfigError, match="pricing_views") as caught:
        check_monotone(_config(monotone={"pricing_views": 1}), builder)
    assert "signal" in caught.value.fix


def _examples(n_leads: int = 600, dates: int = 8, seed: int = 0) -> Examples:
    """Leads whose odds rise with `signal` and are U-shaped in `bump` (high at both ends)."""
    rng = np.random.default_rng(seed)
    as_of = pd.date_range("2026-01-01", periods=dates, freq="30D")
    lead = np.tile(np.arange(1, n_leads + 1), dates)
    when = np.repeat(as_of.to_numpy(dtype="datetime64[us]"), n_leads)
    signal, bump = rng.normal(size=len(lead)), rng.normal(size=len(lead))
    logit = signal * 1.5 + 1.2 * bump**2 - 3
    y = (rng.random(len(lead)) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    snapshots = pd.DataFrame({"lead_id": lead, "as_of": when, "converted": y})
    rows = pd.DataFrame({"lead_id": lead, "as_of": when, "signal": signal, "bump": bump})
    rules = pd.DataFrame({"rule_score": np.round(signal * 10), "is_mql": signal > 1})
    return Examples(snapshots, rows, rules)


def _builder(config) -> FeatureBuilder:
    return FeatureBuilder(
        [], ["signal", "bump"], None, config.features, BehaviourSpec.none(),
        derive_title=False, derive_email=False,
    )  # fmt: skip


def _along_bump(model, rows: pd.DataFrame) -> np.ndarray:
    """Each member's raw score as `bump` sweeps from -3 to 3 on a few rows (rows x grid)."""
    grid = np.linspace(-3, 3, 25)
    out = []
    for _, row in rows.iterrows():
        swept = pd.DataFrame([row] * len(grid)).assign(bump=grid).reset_index(drop=True)
        x = model.features.transform(swept)
        out += [m.raw(x) for m in model.members_]
    return np.array(out)


def test_the_monotone_candidate_never_lowers_the_odds_as_a_constrained_feature_grows() -> None:
    examples = _examples()
    config = _config(monotone={"bump": 1})
    as_of = examples.snapshots["as_of"]
    refit = time_refit(as_of, config, as_of.max())
    settings = candidate_configs(config)
    free = fit_recipe(examples, refit, _builder(config), config, settings["model"])
    bound = fit_recipe(examples, refit, _builder(config), config, settings["monotone"])
    rows = examples.rows.head(5)
    # Unconstrained, the trees learn the U (the test can fail); constrained, never falling.
    assert (np.diff(_along_bump(free, rows), axis=1) < -1e-9).any()
    assert (np.diff(_along_bump(bound, rows), axis=1) >= -1e-12).all()


def test_every_candidate_is_fitted_and_judged_on_the_same_folds_with_intervals() -> None:
    examples = _examples()
    config = _config(candidates=["project", "shallow", "logistic"])
    as_of = examples.snapshots["as_of"]
    folds, notes = time_folds(as_of, examples.labels, config, as_of.max())
    assert len(folds) == 2, notes
    backtest, models = run_backtest(examples, folds, lambda fold: _builder(config), config)
    assert backtest.candidates == ("baseline", "shallow", "model")  # simplest first
    assert set(models) == {"model", "baseline", "shallow"}
    for result in backtest.folds:
        features = [models[who][result.fold.number].features for who in models]
        # One feature fit per fold, shared by the candidates.
        assert all(f.categories_ == features[0].categories_ for f in features)
        for who in ("model", "baseline", "shallow", "rules"):
            m = result.metrics[who]
            assert m["roc_auc_low"] <= m["roc_auc"] <= m["roc_auc_high"]
            assert m["pr_auc_low"] <= m["pr_auc"] <= m["pr_auc_high"]
            assert m["roc_auc_high"] - m["roc_auc_low"] < 0.2
        trees = result.trees
        assert trees["baseline"] == [0, 0] and min(trees["shallow"]) > 0
    table = backtest.table()
    assert set(table["scorer"]) == {"lightgbm", "logistic", "lightgbm_shallow", "rules"}
    assert table[table["fold"] == "pooled"]["roc_auc_low"].notna().all()
    board = backtest.leaderboard("shallow")
    assert list(board["candidate"]) == ["logistic", "lightgbm_shallow", "lightgbm"]
    assert board.set_index("candidate").loc["lightgbm_shallow", "chosen"]


def test_a_stored_recipe_makes_the_project_it_came_from() -> None:
    """What the gate reruns a champion with: the stored recipe read back into a project file
    is the same recipe, and only the sections that cut the examples decide the folds."""
    ours = config_from_dict({}, environ={})
    theirs = config_from_dict(
        {
            "features": {"windows_days": [14, 60]},
            "model": {"learner": "logistic", "params": {"num_leaves": 7}},
            "source": {"attributes": {"numeric": ["employees"], "categorical": ["industry"]}},
            "leakage": {"enabled": False},
            "backtest": {"groups": 3},
        },
        environ={},
    )
    stored = recipe(theirs)
    rebuilt = recipe_config(ours, stored)
    assert recipe(rebuilt) == stored
    assert rebuilt.mlflow == ours.mlflow and rebuilt.source.tables == ours.source.tables
    assert same_folds(stored, recipe(ours))
    other_split = recipe(config_from_dict({"split": {"calibration_days": 120}}, environ={}))
    assert not same_folds(other_split, recipe(ours))
    assert not same_folds(stored, None)
