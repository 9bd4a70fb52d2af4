"""Comparison metrics against hand-computed values (code tests: tiny inputs, exact answers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from leadscore.config import ReportConfig, TierConfig
from leadscore.evaluation.comparison import (
    _weighted_ranking_metrics,
    assign_tiers,
    bootstrap_ranking,
    compare,
    expected_captured,
    gains_table,
    leads_found,
    quadrants,
    ranking_metrics,
    worked_probability,
)
from leadscore.i18n import Words
from leadscore.modeling.metrics import _resampled_ranking_metrics


def test_ranking_metrics_by_hand() -> None:
    # Pairs (pos, neg): (0.35 vs 0.1) yes, (0.35 vs 0.4) no, (0.8 vs both) yes -> 3/4.
    # AP: thresholds 0.8 (P=1, R=.5), 0.4 (P=1/2, R=.5), 0.35 (P=2/3, R=1) -> .5 + .5*2/3.
    auc, ap = ranking_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert auc == pytest.approx(0.75)
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_ranking_metrics_count_ties_as_half() -> None:
    # pos@1 vs neg@1: 1/2, pos@1 vs neg@0: 1, pos@0 vs neg@1: 0, pos@0 vs neg@0: 1/2.
    auc, _ = ranking_metrics(np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0]))
    assert auc == pytest.approx(0.5)


@pytest.mark.parametrize("rounding", [None, 1, 0])
def test_ranking_metrics_match_scikit_learn(rounding: int | None) -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.08).astype(float)
    s = rng.normal(size=3000) + 1.2 * y
    if rounding is not None:
        s = np.round(s, rounding)  # heavy ties, like rule scores
    auc, ap = ranking_metrics(y, s)
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_expected_captured_counts_the_boundary_tie_group_at_its_rate() -> None:
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([5, 4, 4, 4, 1])
    # k=2: the 5 (converted) plus one of the three 4s, which convert at 1/3.
    got = expected_captured(y, s, np.array([0, 1, 2, 4, 5]))
    np.testing.assert_allclose(got, [0, 1, 1 + 1 / 3, 2, 2])


def test_gains_table_by_hand() -> None:
    # Ten leads, scores descending 10..1; conversions at ranks 1, 2 and 6. Base rate 0.3.
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    s = np.arange(10, 0, -1)
    table = gains_table(y, s, n_bins=5)
    np.testing.assert_allclose(table["conversions"], [2, 0, 1, 0, 0])
    np.testing.assert_allclose(table["lift"], [1 / 0.3, 0, 0.5 / 0.3, 0, 0])
    np.testing.assert_allclose(table["cumulative_capture_share"], [2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(table["cumulative_lift"].iloc[0], 1 / 0.3)


def test_worked_probability_takes_each_snapshot_separately_and_splits_ties() -> None:
    as_of = pd.to_datetime(["2026-01-01"] * 3 + ["2026-02-01"] * 3).to_numpy()
    s = np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.7])
    np.testing.assert_allclose(worked_probability(s, as_of, 1), [1, 0, 0, 0, 0.5, 0.5])
    np.testing.assert_allclose(worked_probability(s, as_of, 2), [1, 1, 0, 0, 1, 1])
    volume = {np.datetime64("2026-01-01"): 0, pd.Timestamp("2026-02-01"): 3}
    np.testing.assert_allclose(worked_probability(s, as_of, volume), [0, 0, 0, 1, 1, 1])
    with pytest.raises(KeyError, match="2026-02-01"):
        worked_probability(s, as_of, {pd.Timestamp("2026-01-01"): 1})
    assert worked_probability(s, as_of, np.int64(1)).sum() == 2


def test_leads_found_counts_a_lead_once() -> None:
    # Lead 7 converts once but sits in two snapshots; worked on both, it is one lead found.
    y = np.array([1, 1, 1, 0])
    lead = np.array([7, 7, 8, 9])
    assert leads_found(y, lead, np.array([1.0, 1.0, 0.0, 1.0])) == 1
    # Worked with chance 1/2 on each of its two dates: found with chance 3/4.
    assert leads_found(y, lead, np.array([0.5, 0.5, 1.0, 0.0])) == pytest.approx(1.75)


def test_weighted_metrics_match_scikit_learn_sample_weights() -> None:
    """The bootstrap path: per-row weights (resample counts) instead of repeated rows."""
    rng = np.random.default_rng(4)
    y = (rng.random(2000) < 0.1).astype(float)
    s = np.round(rng.normal(size=2000) + y, 1)
    w = rng.multinomial(2000, np.full(2000, 1 / 2000), size=3).astype(float)
    auc, ap = _weighted_ranking_metrics(y, s, w)
    for i in range(3):
        assert auc[i] == pytest.approx(roc_auc_score(y, s, sample_weight=w[i]), abs=1e-12)
        assert ap[i] == pytest.approx(average_precision_score(y, s, sample_weight=w[i]), abs=1e-12)


def test_resampled_leads_match_scikit_learn_sample_weights() -> None:
    """The bootstrap's own path: counts per resampled lead (each with several rows, scores
    with ties) weigh every row of that lead, summed per lead and tie group at once."""
    rng = np.random.default_rng(5)
    leads = rng.integers(0, 600, 2000)
    codes, uniques = pd.factorize(pd.Series(leads))
    y = (rng.random(2000) < 0.1).astype(float)
    s = np.round(rng.normal(size=2000) + y, 1)
    counts = rng.multinomial(len(uniques), np.full(len(uniques), 1 / len(uniques)), size=4)
    auc, ap = _resampled_ranking_metrics(y, s, codes, counts)
    for i in range(4):
        w = counts[i, codes].astype(float)
        assert auc[i] == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
        assert ap[i] == pytest.approx(average_precision_score(y, s, sample_weight=w), abs=1e-12)


def test_bootstrap_interval_of_identical_scores_is_zero() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(800) < 0.2).astype(float)
    s = rng.normal(size=800) + y
    out = bootstrap_ranking(y, {"a": s, "b": s.copy()}, np.arange(800), samples=200)
    assert out["roc_auc_difference"].low == out["roc_auc_difference"].high == 0
    a = out["roc_auc_a"]
    assert a.low < a.estimate < a.high
    assert a.estimate == pytest.approx(roc_auc_score(y, s))


def test_bootstrap_resamples_leads_not_rows() -> None:
    """Counting every lead twice must not make the interval narrower."""
    rng = np.random.default_rng(1)
    y = (rng.random(1000) < 0.2).astype(float)
    s = rng.normal(size=1000) + y
    leads = np.arange(1000)
    once = bootstrap_ranking(y, {"m": s}, leads, samples=400, seed=2)["roc_auc_m"]
    y2, s2, leads2 = np.tile(y, 2), np.tile(s, 2), np.tile(leads, 2)
    by_lead = bootstrap_ranking(y2, {"m": s2}, leads2, samples=400, seed=2)["roc_auc_m"]
    by_row = bootstrap_ranking(y2, {"m": s2}, np.arange(2000), samples=400, seed=2)["roc_auc_m"]
    width = once.high - once.low
    assert by_lead.high - by_lead.low == pytest.approx(width, rel=0.2)
    assert by_row.high - by_row.low < 0.85 * width


def test_tiers_by_share_are_taken_within_each_run() -> None:
    as_of = np.repeat(pd.to_datetime(["2026-01-01", "2026-02-01"]).to_numpy(), 10)
    p = np.r_[np.linspace(0.9, 0.0, 10), np.linspace(0.09, 0.0, 10)]
    tiers = assign_tiers(p, as_of, TierConfig(by="share", cutoffs=[0.1, 0.3, 0.6]))
    for day in range(2):
        part = list(tiers[day * 10 : (day + 1) * 10])
        assert part == ["A"] + ["B"] * 2 + ["C"] * 3 + ["D"] * 4


def test_tiers_by_count_and_by_probability() -> None:
    as_of = np.repeat(np.datetime64("2026-01-01"), 6)
    p = np.array([0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    by_count = assign_tiers(p, as_of, TierConfig(by="count", cutoffs=[1, 2, 4]))
    assert list(by_count) == ["A", "B", "C", "C", "D", "D"]
    by_p = assign_tiers(p, as_of, TierConfig(by="probability", cutoffs=[0.4, 0.2, 0.1]))
    assert list(by_p) == ["A", "A", "B", "B", "C", "D"]


def test_tied_probabilities_keep_the_capacity_exactly() -> None:
    """Isotonic calibration ties many leads; tier A still holds exactly the capacity."""
    as_of = np.repeat(np.datetime64("2026-01-01"), 6)
    p = np.array([0.3, 0.3, 0.3, 0.3, 0.1, 0.0])
    lead = np.array([40, 10, 30, 20, 50, 60])
    tiers = assign_tiers(p, as_of, TierConfig(by="count", cutoffs=[2, 3, 5]), lead)
    # Equal probabilities are ordered by lead id: 10 and 20 make tier A.
    assert list(tiers) == ["C", "A", "B", "A", "C", "D"]
    by_share = assign_tiers(p, as_of, TierConfig(by="share", cutoffs=[0.5, 0.9, 0.95]), lead)
    assert (by_share == "A").sum() == 3


def test_tier_config_rejects_cutoffs_in_the_wrong_order() -> None:
    with pytest.raises(ValueError, match="rise"):
        TierConfig(by="share", cutoffs=[0.5, 0.3, 0.6])
    with pytest.raises(ValueError, match="fall"):
        TierConfig(by="probability", cutoffs=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="whole"):
        TierConfig(by="count", cutoffs=[10.5, 20, 30])


def test_quadrants_by_hand() -> None:
    y = np.array([1, 0, 1, 0, 0, 1])
    mql = np.array([True, True, False, False, False, True])
    hot = np.array([True, False, True, False, False, False])
    q = quadrants(y, mql, hot).set_index(["rule_mql", "model_hot"])
    assert q.loc[(True, True), "leads"] == 1 and q.loc[(True, True), "conversion_rate"] == 1
    assert q.loc[(True, False), "leads"] == 2 and q.loc[(True, False), "conversions"] == 1
    assert q.loc[(False, True), "conversion_rate"] == 1
    assert q.loc[(False, False), "leads"] == 2 and q.loc[(False, False), "conversions"] == 0


def test_compare_counts_converting_leads_at_mql_volume_and_capacity() -> None:
    frame = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4, 1, 2, 3, 4],
            "as_of": pd.to_datetime(["2026-01-01"] * 4 + ["2026-02-01"] * 4),
            "converted": [1, 0, 0, 1, 0, 1, 0, 0],
            "conversion_probability": [0.8, 0.1, 0.2, 0.6, 0.3, 0.7, 0.1, 0.2],
            "rule_score": [60, 70, 0, 0, 0, 60, 0, 10],
            "rule_probability": [0.3, 0.3, 0.1, 0.1, 0.1, 0.3, 0.1, 0.1],
            "is_mql": [True, True, False, False, False, True, False, False],
        }
    )
    c = compare(
        frame,
        ReportConfig(bootstrap_samples=100, sales_capacity_per_week=1),
        TierConfig(by="count", cutoffs=[1, 2, 3]),
        snapshot_every_days=7,
    )
    # Rules: MQLs are leads 1, 2 on the first date (1 converts) and lead 2 on the second.
    assert c.mql_volume == 3 and c.converting_leads == 3
    assert c.captured_at_mql_volume == {"rules": 2.0, "model": 3.0}
    # One lead a week, a snapshot a week: the model's top lead each date converts (1, then
    # 2); the rules' top lead is 2 both times, which converts only in the second snapshot.
    assert c.capacity_per_date == 1
    assert c.captured_at_capacity == {"model": 2.0, "rules": 1.0}
    assert "the model finds 3 of the 3 leads that converted and the rules find 2: +1 (+50%)" in (
        c.headline()
    )
    # The headline the report and the CLI show, in Japanese (report.language: ja).
    assert c.headline(Words("ja")) == (
        "ルールがMQLと判定するのと同じ件数（スナップショット日あたり2件）を対応すると、"
        "コンバージョンした3件のうち、モデルは3件、ルールは2件を見つけます：差は+1件（+50%）。"
    )


def test_the_headline_speaks_of_test_leads_or_snapshot_dates_and_of_missing_rules() -> None:
    """A flat export's test cohort is one list of leads (no snapshot dates); a rule file
    with no rules flags nothing, and the headline says so instead of '+0'."""
    rng = np.random.default_rng(0)
    n = 400
    p = rng.random(n)
    frame = pd.DataFrame(
        {
            "lead_id": np.arange(n),
            "as_of": pd.Timestamp("2026-03-31"),
            "converted": (rng.random(n) < p).astype(int),
            "conversion_probability": p,
            "rule_score": np.where(p > 0.7, 50, 0),
            "rule_probability": 0.2,
            "is_mql": p > 0.7,
        }
    )
    config = (ReportConfig(bootstrap_samples=100), TierConfig())
    flat = compare(frame, *config, snapshot_every_days=30)
    mqls = int((p > 0.7).sum())
    assert f"MQLs ({mqls:,} of the 400 test leads)" in flat.headline()
    no_rules = frame.assign(rule_score=0, is_mql=False)
    said = compare(no_rules, *config, snapshot_every_days=30).headline()
    assert "The rules flag no MQL here" in said and "+0" not in said
    top = int(flat.metrics["model"]["top_decile_captured"])
    assert f"top tenth of the 400 test leads holds {top} of the" in said
    two_dates = pd.concat([frame, frame.assign(as_of=pd.Timestamp("2026-04-30"))])
    assert "per snapshot date" in compare(two_dates, *config, snapshot_every_days=30).headline()
