"""Rule diagnostics and tuning: hand-computed tables, and suggested points against the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.data.rules import RuleSet, load_rules
from leadscore.evaluation.tuning import (
    apply_points,
    rule_diagnostics,
    suggest_rules,
    suggested_rules_yaml,
    threshold_for_rate,
)


def _rules() -> RuleSet:
    return RuleSet.model_validate(
        {
            "mql_threshold": 30,
            "attribute_rules": [
                {"name": "senior", "field": "seniority", "equals": "director", "points": 20}
            ],
            "behaviour_rules": [
                {
                    "name": "downloads",
                    "activity": "content_download",
                    "within_days": 90,
                    "points": 30,
                    "cap": 60,
                }
            ],
        }
    )


def _rows(senior, downloads, y) -> tuple[pd.DataFrame, np.ndarray]:
    senior = np.asarray(senior, float)
    downloads = np.asarray(downloads, float)
    rows = pd.DataFrame(
        {
            "hits_senior": senior,
            "hits_downloads": downloads,
            "rule_score": 20 * senior + 30 * downloads,
        }
    )
    return rows, np.asarray(y, float)


def test_rule_diagnostics_by_hand() -> None:
    rows, y = _rows([1, 1, 0, 0, 0], [0, 2, 1, 0, 0], [1, 0, 1, 0, 0])
    table = rule_diagnostics(_rules(), rows, y).set_index("rule")
    # senior fires on leads 1-2 (1 of 2 converted); not on 3-5 (1 of 3). Base rate 2/5.
    assert table.loc["senior", "fires"] == 2
    assert table.loc["senior", "conversion_rate_fired"] == pytest.approx(0.5)
    assert table.loc["senior", "conversion_rate_not_fired"] == pytest.approx(1 / 3)
    assert table.loc["senior", "lift"] == pytest.approx(0.5 / 0.4)
    assert table.loc["downloads", "fire_rate"] == pytest.approx(0.4)


def test_threshold_for_rate_picks_the_closest_share() -> None:
    score = np.array([0, 10, 10, 20, 30])
    # Shares flagged: >=0: 1.0, >=10: 0.8, >=20: 0.4, >=30: 0.2, >30: 0.
    assert threshold_for_rate(score, 0.4) == 20
    assert threshold_for_rate(score, 0.3) == 30  # 0.2 and 0.4 tie: the smaller share wins
    assert threshold_for_rate(score, 0.9) == 10
    assert threshold_for_rate(score, 0.0) == 31


def test_apply_points_keeps_the_number_of_capped_occurrences() -> None:
    new = apply_points(_rules(), {"senior": 15, "downloads": 10}, threshold=25)
    assert new.mql_threshold == 25
    assert new.attribute_rules[0].points == 15
    assert new.behaviour_rules[0].points == 10
    assert new.behaviour_rules[0].cap == 20  # two downloads, as before (60 / 30)


def test_suggestions_follow_the_data_and_the_file_is_valid(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n = 4000
    senior = rng.random(n) < 0.3
    downloads = rng.integers(0, 3, n)
    # Seniority helps a lot; downloads hurt (the current file says the opposite).
    logit = -2.5 + 1.2 * senior - 0.6 * downloads
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    rows, yy = _rows(senior, downloads, y)
    s = suggest_rules(_rules(), rows, yy, rows, yy)
    points = s.points.set_index("rule")["suggested_points"]
    assert points["senior"] > 0 > points["downloads"]
    # Same MQL share as today's rules on the fitting rows (within the coarseness of points).
    effect = s.effect.set_index("rules")
    assert effect.loc["suggested rules", "mql_share"] == pytest.approx(
        effect.loc["current rules", "mql_share"], abs=0.15
    )
    assert (
        effect.loc["suggested rules", "captured_at_current_volume"]
        > effect.loc["current rules", "captured_at_current_volume"]
    )
    text = suggested_rules_yaml(s, _rules(), "the test cohort")
    assert "# was 30" in text and "# was 20" in text
    path = tmp_path / "suggested.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_rules(path)
    assert loaded.names == _rules().names
    assert loaded.attribute_rules[0].points == points["senior"]


def test_a_rule_that_never_fired_keeps_its_points() -> None:
    rows, y = _rows([1, 0, 1, 0] * 50, [0] * 200, [1, 0, 0, 0] * 50)
    table = suggest_rules(_rules(), rows, y, rows, y).points.set_index("rule")
    assert not table.loc["downloads", "usable"]
    assert table.loc["downloads", "suggested_points"] == 30


def test_a_zero_point_rule_loses_its_cap_when_it_gets_points() -> None:
    """Its hits were counted uncapped, so the suggested file must not cap them either."""
    zero = _rules().model_dump(by_alias=True, exclude_none=True)
    zero["behaviour_rules"][0]["points"] = 0
    zero["behaviour_rules"][0]["cap"] = 10
    new = apply_points(RuleSet.model_validate(zero), {"senior": 20, "downloads": 5}, 30)
    assert new.behaviour_rules[0].points == 5 and new.behaviour_rules[0].cap is None


def test_no_rules_at_all_still_gives_a_comparison() -> None:
    empty = RuleSet.model_validate({"mql_threshold": 50})
    rows = pd.DataFrame({"rule_score": np.zeros(100)})
    y = np.r_[np.ones(10), np.zeros(90)]
    s = suggest_rules(empty, rows, y, rows, y)
    assert s.points.empty
    assert rule_diagnostics(empty, rows, y).empty
    assert "mql_threshold" in suggested_rules_yaml(s, empty, "the test cohort")
