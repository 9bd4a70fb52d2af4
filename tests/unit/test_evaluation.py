import numpy as np
import pytest

from leadscore.modeling.metrics import (
    captured_in_top,
    classification_metrics,
    expected_calibration_error,
)


def test_ece_by_hand() -> None:
    # Two equal-count bins: predictions 0.1,0.1 (1 of 2 convert) and 0.8,0.8 (2 of 2).
    y = np.array([0, 1, 1, 1])
    p = np.array([0.1, 0.1, 0.8, 0.8])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * 0.4 + 0.5 * 0.2)


def test_ece_is_zero_when_calibrated() -> None:
    y = np.array([0, 1] * 50)
    assert expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)


def test_captured_in_top_breaks_ties_by_expectation() -> None:
    y = np.array([1, 0, 1, 0, 0, 1])
    score = np.array([9, 5, 5, 5, 5, 1])
    # top 3: lead with 9 (1), then 2 of the 4 tied at 5 whose rate is 1/4.
    assert captured_in_top(y, score, 3) == pytest.approx(1 + 2 * 0.25)
    assert captured_in_top(y, score, 0) == 0
    assert captured_in_top(y, score, 100) == 3


def test_classification_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1] * 5)
    score = np.array([0.1, 0.4, 0.35, 0.8] * 5)
    m = classification_metrics(y, score, score)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx(np.mean((score - y) ** 2))
    assert m["top_decile_captured"] == pytest.approx(2)  # the two 0.8s
    assert m["top_decile_lift"] == pytest.approx(2.0)


def test_single_class_gives_nan_auc_not_an_error() -> None:
    m = classification_metrics(np.zeros(10), np.linspace(0, 1, 10), np.full(10, 0.1))
    assert np.isnan(m["roc_auc"])


def test_ece_keeps_ties_together_so_row_order_does_not_matter() -> None:
    rng = np.random.default_rng(0)
    p = np.repeat([0.05, 0.2, 0.5], 40)
    y = (rng.random(120) < p).astype(float)
    order = rng.permutation(120)
    assert expected_calibration_error(y, p) == pytest.approx(
        expected_calibration_error(y[order], p[order])
    )
    # With three distinct values there are three bins, each scored on its own rate.
    by_hand = sum(abs(v - y[p == v].mean()) / 3 for v in (0.05, 0.2, 0.5))
    assert expected_calibration_error(y, p) == pytest.approx(by_hand)
