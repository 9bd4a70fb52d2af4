"""The backtest's folds: each learns only from outcomes known before its test window, the
refit from every labelled example; the cross-fit never scores a row with a member that
learned from its lead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.config import config_from_dict
from leadscore.data.features import BehaviourSpec, FeatureBuilder
from leadscore.modeling.estimator import LeadScoringModel, Member, lead_groups
from leadscore.scoring.backtest import (
    Examples,
    fit_recipe,
    flat_folds,
    flat_refit,
    time_folds,
    time_refit,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    horizon=st.integers(7, 120),
    extra_gap=st.integers(0, 30),
    every=st.integers(1, 30),
    test_days=st.integers(1, 90),
    calibration_days=st.integers(1, 120),
    validation_days=st.integers(1, 90),
    folds=st.integers(1, 6),
    step=st.one_of(st.none(), st.integers(1, 120)),
    history_days=st.integers(200, 900),
)
def test_every_fold_learns_only_from_outcomes_known_before_it(
    horizon, extra_gap, every, test_days, calibration_days, validation_days, folds, step,
    history_days,
) -> None:  # fmt: skip
    config = config_from_dict(
        {
            "horizon_days": horizon,
            "split": {
                "gap_days": horizon + extra_gap,
                "test_days": test_days,
                "calibration_days": calibration_days,
                "validation_days": validation_days,
            },
            "backtest": {"folds": folds, "step_days": step, "min_fit_share": 0.01},
        },
        environ={},
    )
    label_end = pd.Timestamp("2026-06-30")
    dates = [label_end - pd.Timedelta(days=every * k) for k in range(history_days // every)]
    # Twenty examples per date, every fourth converts: enough for every part of a fold.
    as_of = pd.Series(np.repeat(np.array(dates, dtype="datetime64[us]"), 20))
    y = np.tile((np.arange(20) % 4 == 0).astype(float), len(dates))
    older, _ = time_folds(as_of, y, config, label_end)
    days = as_of.to_numpy(dtype="datetime64[us]")
    for fold in older:
        first_test = days[fold.test].min()
        fitted = days[fold.fit]
        # The newest outcome a fitted row can carry is before the fold's test window opens.
        assert fitted.max() + np.timedelta64(horizon, "D") <= first_test
        assert fitted.max() <= np.datetime64(fold.fit_end)
        assert not (fold.fit & fold.test).any()
        # Calibration and early stopping are parts of the fitting rows, newest last.
        assert not (fold.recent & ~fold.fit).any() and not (fold.stopping & ~fold.fit).any()
        assert days[fold.stopping].max() < days[fold.recent].min()
        assert days[fold.recent].max() == fitted.max()
    # Older folds step back; their test windows never overlap the newer ones'.
    ends = [days[f.test].max() for f in older]
    assert ends == sorted(ends, reverse=True)
    seen = np.zeros(len(days), bool)
    for fold in older:
        assert not (seen & fold.test).any()
        seen |= fold.test
    refit = time_refit(as_of, config, label_end)
    assert refit.fit.all() and refit.test is None and refit.fit_end == label_end
    assert days[refit.recent].max() == np.datetime64(label_end)


@pytest.mark.parametrize("method", ["order", "random"])
def test_flat_folds_step_back_in_arrival_order_or_take_seeded_blocks(method: str) -> None:
    split = {"method": method, "test_share": 0.2, "order_column": "n"}
    if method == "random":
        split.pop("order_column")
    config = config_from_dict(
        {"source": {"label": {"column": "won"}, "tables": {"outcomes": None,
         "activities": None}, "columns": {"created_at": None, "converted_at": None}},
         "split": split, "backtest": {"folds": 4, "min_fit_share": 0.3}},
        environ={},
    )  # fmt: skip
    n = 1000
    y = (np.arange(n) % 5 == 0).astype(float)
    sizes = {"test": 200, "calibration": 100, "validation": 100, "train": 600}
    older, notes = flat_folds(n, y, config, sizes)
    position = np.arange(n)
    for fold in older:
        assert fold.test.sum() == 200 and not (fold.fit & fold.test).any()
        assert fold.recent.sum() == 100 and fold.stopping.sum() == 100
        if method == "order":  # only leads that arrived before the test block
            assert position[fold.fit].max() < position[fold.test].min()
            assert position[fold.recent].min() > position[fold.stopping].max()
    # Order: fold 4 would learn from 200 of 1,000 leads, under min_fit_share: left out, said.
    if method == "order":
        assert len(older) == 2 and "fold 4" in notes[0]
    else:
        assert len(older) == 3
    refit = flat_refit(n, config, sizes)
    assert refit.fit.all() and refit.recent[-100:].all() and refit.recent.sum() == 100


def _examples(n_leads: int = 600, dates: int = 8, seed: int = 0) -> Examples:
    rng = np.random.default_rng(seed)
    as_of = pd.date_range("2026-01-01", periods=dates, freq="30D")
    lead = np.tile(np.arange(1, n_leads + 1), dates)
    when = np.repeat(as_of.to_numpy(dtype="datetime64[us]"), n_leads)
    signal = rng.normal(size=len(lead))
    y = (rng.random(len(lead)) < 1 / (1 + np.exp(-(signal * 1.5 - 2)))).astype(np.int8)
    snapshots = pd.DataFrame({"lead_id": lead, "as_of": when, "converted": y})
    rows = pd.DataFrame({"lead_id": lead, "as_of": when, "signal": signal})
    rules = pd.DataFrame({"rule_score": np.round(signal * 10), "is_mql": signal > 1})
    return Examples(snapshots, rows, rules)


def test_the_cross_fit_never_scores_a_row_with_a_member_that_learned_its_lead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each member learns from the other group's leads and rows up to the fold's fit end
    only; the calibrator sees, for every recent row, the score of the member that did not
    learn from that lead (out of fold)."""
    examples = _examples()
    config = config_from_dict(
        {"split": {"calibration_days": 60, "validation_days": 30}, "horizon_days": 30,
         "model": {"max_trees": 30, "params": {"min_child_samples": 20}}},
        environ={},
    )  # fmt: skip
    as_of = examples.snapshots["as_of"]
    fold = time_refit(as_of, config, as_of.max())
    fold = type(fold)(2, as_of < as_of.max(), *_shifted(fold, as_of), None, None, "")
    learned: dict[int, set] = {}  # by member (the members train side by side)
    scored: list[tuple[int, set]] = []
    boost, raw = LeadScoringModel._boost, Member.raw

    def record_boost(self, x_train, *args, **kwargs):
        member = int(args[-1].split()[1].split("/")[0]) - 1  # stage "training g/groups"
        learned[member] = set(fit_rows.loc[x_train.index, "lead_id"])
        assert fit_rows.loc[x_train.index, "as_of"].max() < as_of.max()  # after the cut-off
        return boost(self, x_train, *args, **kwargs)

    def record_raw(self, x):
        scored.append((id(self), set(fit_rows.loc[x.index, "lead_id"])))
        return raw(self, x)

    fit_rows = examples.rows[fold.fit]
    monkeypatch.setattr(LeadScoringModel, "_boost", record_boost)
    monkeypatch.setattr(Member, "raw", record_raw)
    builder = FeatureBuilder(
        [], ["signal"], None, config.features, BehaviourSpec.none(), derive_title=False,
        derive_email=False,
    )  # fmt: skip
    model = fit_recipe(examples, fold, builder, config)
    monkeypatch.undo()
    groups = lead_groups(fit_rows["lead_id"].to_numpy(), 2)
    by_group = [set(fit_rows["lead_id"].to_numpy()[groups == g]) for g in range(2)]
    assert len(learned) == 2
    for g in range(2):
        assert learned[g] and not learned[g] & by_group[g]
    # The out-of-fold scores: member g scores only its own group's leads.
    for g, member in enumerate(model.members_):
        mine = [leads for who, leads in scored if who == id(member)]
        assert mine and all(leads <= by_group[g] for leads in mine)
    p = model.predict_proba(examples.rows)
    assert np.isfinite(p).all() and 0.05 < p.mean() < 0.4


def _shifted(fold, as_of: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Stopping and recent windows of a fold whose fit ends one date before the newest."""
    dates = sorted(as_of.unique())
    stopping = (as_of == dates[-4]).to_numpy()
    recent = as_of.isin(dates[-3:-1]).to_numpy()
    return stopping, recent
