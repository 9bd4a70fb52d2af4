"""Why a lead's score changed, in words: two published scores compared."""

from __future__ import annotations

from leadscore.io.changes import reasons, score_change

BEFORE = {
    "tier": "B", "conversion_probability": 0.08, "is_mql": True, "rule_score": 60,
    "reasons_up": "4 pricing-page views in the last 30 days; webinar attended",
    "reasons_down": "",
}  # fmt: skip


def test_a_first_score_and_an_unchanged_one() -> None:
    assert score_change(None, BEFORE) == ["first score of this lead"]
    assert score_change(BEFORE, dict(BEFORE)) == ["no change"]


def test_each_kind_of_change_in_order_of_importance() -> None:
    after = {
        **BEFORE, "tier": "D", "conversion_probability": 0.031, "is_mql": False,
        "rule_score": 30, "reasons_up": "1 pricing-page view in the last 30 days",
        "reasons_down": "no e-mail opened in 60 days",
    }  # fmt: skip
    assert score_change(BEFORE, after) == [
        "tier B → D",
        "probability 8.0% → 3.1%",
        "no longer an MQL by the rules (rule score 60 → 30)",
        "1 pricing-page view in the last 30 days (was: 4 pricing-page views in the last 30 days)",
        "no longer raises it: webinar attended",
        "now lowers it: no e-mail opened in 60 days",
    ]


def test_small_moves_and_rules_only_scores() -> None:
    assert score_change(BEFORE, {**BEFORE, "conversion_probability": 0.082}) == ["no change"]
    rules_only = {**BEFORE, "conversion_probability": None, "rule_score": 70}
    assert score_change({**BEFORE, "conversion_probability": float("nan")}, rules_only) == [
        "rule score 60 → 70"
    ]


def test_reasons_columns_become_lists() -> None:
    assert reasons("a; b;; ") == ["a", "b"] and reasons(None) == [] and reasons(float("nan")) == []
    assert reasons("pricing_page,director", ",") == ["pricing_page", "director"]
