"""The promotion gate: a worse challenger never replaces the champion; promote and rollback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.config import PromotionConfig
from leadscore.errors import ModelError
from leadscore.lifecycle.promotion import judge, rollback_target

GATE = PromotionConfig(min_auc_gain=0.01, max_ece_increase=0.005)


def _cohort(seed: int = 0, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 6, n)
    return (rng.random(n) < p).astype(float), p


def test_first_model_is_promoted() -> None:
    y, p = _cohort()
    verdict = judge(y, p, None, GATE)
    assert verdict.promote and verdict.action == "first"


def test_a_noisier_challenger_is_kept_out() -> None:
    y, p = _cohort()
    noisy = np.clip(p + np.random.default_rng(1).normal(0, 0.15, len(p)), 0.001, 0.999)
    verdict = judge(y, noisy, p, GATE, champion_version="3")
    assert not verdict.promote and verdict.action == "kept"
    assert "champion v3" in verdict.reason and "below the required" in verdict.reason
    assert verdict.challenger_auc < verdict.champion_auc


def test_a_better_ranked_but_worse_calibrated_challenger_is_kept_out() -> None:
    y, p = _cohort()
    stale = np.clip(p * 0.6 + 0.2 * np.random.default_rng(2).random(len(p)), 0, 1)
    sharper = np.clip(p * 1.8, 0, 1)  # same ranking as the truth, over-confident
    verdict = judge(y, sharper, stale, GATE)
    assert verdict.challenger_auc > verdict.champion_auc + GATE.min_auc_gain
    assert not verdict.promote and "calibration is worse" in verdict.reason


def test_a_clearly_better_challenger_is_promoted() -> None:
    y, p = _cohort()
    stale = np.clip(p * 0.6 + 0.2 * np.random.default_rng(2).random(len(p)), 0, 1)
    verdict = judge(y, p, stale, GATE)
    assert verdict.promote and verdict.action == "promoted"
    assert verdict.tags()["gate.decision"] == "promoted"


def test_one_outcome_cohort_cannot_be_judged() -> None:
    with pytest.raises(ModelError, match="only one outcome"):
        judge(np.zeros(10), np.full(10, 0.1), np.full(10, 0.2), GATE)


def test_rollback_goes_to_the_champion_before_the_current_one() -> None:
    history = pd.DataFrame(
        {
            "action": ["first", "kept", "promoted", "rollback", "manual"],
            "version": ["1", "2", "3", "1", "4"],
            "previous_champion": [None, "1", "1", "3", "1"],
            "champion_after": ["1", "1", "3", "1", "4"],
        }
    )
    assert rollback_target(history, "4") == "1"
    assert rollback_target(history.iloc[:3], "3") == "1"
    with pytest.raises(ModelError, match="no earlier champion"):
        rollback_target(history.iloc[:2], "1")
