"""Marketing's monthly review, on a published history built run by run: every monthly figure
agrees with a direct computation from the tables, open months are marked, the rule file's
versions, their diff and the before/after come out as published."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from conftest import direct_review_months

from leadscore.errors import ConfigError, DataError
from leadscore.evaluation import review as review_module
from leadscore.io.history import ScoreHistory
from leadscore.io.publish import (
    RULES_ONLY_MODEL,
    RuleFile,
    ScoreTables,
    publish_with_alerts,
    published_frame,
    read_rule_versions,
    read_scores,
)

RULES_V1 = """mql_threshold: 50
attribute_rules:
  - name: senior
    field: seniority
    in: [director, vp]
    points: 30
behaviour_rules:
  - name: pricing
    activity: page_view
    page_category: pricing
    within_days: 30
    points: 10
    cap: 30
"""
RULES_V2 = """mql_threshold: 60
attribute_rules:
  - name: senior
    field: seniority
    in: [director, vp]
    points: 30
behaviour_rules:
  - name: pricing
    activity: page_view
    page_category: pricing
    within_days: 30
    points: 15
    cap: 45
  - name: demo
    activity: demo_request
    within_days: 30
    points: 60
"""
FIRST_RUN, CHANGE, LAST_RUN = "2025-09-01", "2026-05-04", "2026-11-30"
UNTIL = pd.Timestamp("2026-11-30")
HORIZON = 90


def _rule_file(text: str, name: str) -> RuleFile:
    return RuleFile(name, hashlib.sha256(text.encode()).hexdigest(), text)


def publish_history(uri: str, seed: int = 0, leads: int = 1200) -> pd.DataFrame:
    """Weekly runs for 15 months (the first four by the rules alone, a rule file change in
    month 9), published as `leadscore score` does; returns the outcomes."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-03-01")
    created = start + pd.to_timedelta(rng.uniform(0, 620, leads), "D")
    quality = rng.normal(0, 1, leads)
    senior = rng.random(leads) < 0.3
    converts = rng.random(leads) < 1 / (1 + np.exp(-(quality - 1.0)))
    converted_at = created + pd.to_timedelta(rng.exponential(60, leads), "D")
    converted_at = pd.Series(converted_at).where(converts)
    ids = np.arange(1, leads + 1)
    versions = (_rule_file(RULES_V1, "rules_v1.yaml"), _rule_file(RULES_V2, "rules_v2.yaml"))
    for i, day in enumerate(pd.date_range(FIRST_RUN, LAST_RUN, freq="7D")):
        open_ = (
            (created < day)
            & (created >= day - pd.Timedelta(days=365))
            & ~(converted_at < day).to_numpy()
        )
        n = int(open_.sum())
        age = (day - created[open_]).days.to_numpy()
        noise = rng.normal(0, 0.7, n)
        p = 1 / (1 + np.exp(-(quality[open_] + noise - 2.0)))
        rule_score = np.round(15 + 30 * senior[open_] + 15 * (quality[open_] + noise) + age / 20)
        v2 = day >= pd.Timestamp(CHANGE)
        threshold = 60 if v2 else 50
        fired = np.where(senior[open_], "senior", "")
        fired = np.where(rule_score - 30 * senior[open_] > 5, np.char.add(fired, ",pricing"), fired)
        scores = pd.DataFrame(
            {
                "lead_id": ids[open_],
                "as_of": day,
                "conversion_probability": p,
                "percentile": pd.Series(p).rank(pct=True).to_numpy() * 100,
                "tier": np.select([p >= 0.3, p >= 0.15, p >= 0.05], ["A", "B", "C"], "D"),
                "rule_score": rule_score.astype(float),
                "is_mql": rule_score >= threshold,
                "rules_fired": pd.Series(fired).str.strip(",").to_numpy(),
                "reasons_up": "",
                "reasons_down": "",
            }
        )
        if i < 4:  # before the first model: the rules alone
            scores["conversion_probability"] = np.nan
            scores["tier"] = np.select([rule_score >= 60, rule_score >= 40], ["A", "B"], "C")
            frame = published_frame(scores, RULES_ONLY_MODEL, None, None)
        else:
            frame = published_frame(scores, "m", "1", "run")
        publish_with_alerts(frame, uri, ScoreTables(), None, versions[int(v2)])
    return pd.DataFrame({"lead_id": ids, "converted_at": converted_at}).dropna()


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[str, pd.DataFrame]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('review') / 'scores.db'}"
    return uri, publish_history(uri)


def _review(uri: str, outcomes: pd.DataFrame, month: str = "2026-11", **kw):
    with ScoreHistory(uri, ScoreTables()) as history:
        return review_module.build_review(
            history, outcomes, read_rule_versions(uri), pd.Period(month, freq="M"), HORIZON,
            UNTIL, **kw,
        )  # fmt: skip


def test_every_monthly_figure_agrees_with_a_direct_computation(published) -> None:
    uri, outcomes = published
    review = _review(uri, outcomes)
    months = [str(p) for p in pd.period_range(end="2026-11", periods=12, freq="M")]
    assert list(review.months["month"]) == months
    history = read_scores(uri, "lead_score_history")
    direct = direct_review_months(history, outcomes, HORIZON, months).set_index("month")
    got = review.months.set_index("month")
    for column in ("leads", "rule_mqls", "rule_mql_conversions", "tier_as",
                   "tier_a_conversions", "conversions", "volume", "rules_captured"):  # fmt: skip
        assert got[column].tolist() == direct[column].tolist(), column
    assert got["rule_mqls"].sum() > 200 and got["rule_mql_conversions"].sum() > 20
    for column in ("rule_roc_auc", "model_roc_auc"):
        np.testing.assert_allclose(got[column], direct[column].astype(float), atol=1e-12)
    rate = got["rule_mql_conversions"] / got["rule_mqls"]
    np.testing.assert_allclose(got["rule_mql_rate"], rate)
    assert (got["rule_mql_low"] <= rate).all() and (rate <= got["rule_mql_high"]).all()


def test_months_whose_outcome_window_is_open_are_provisional(published) -> None:
    uri, outcomes = published
    review = _review(uri, outcomes)
    months = review.months.set_index("month")
    # A lead flagged on Aug 31 has until Nov 29 to convert: known by Nov 30, the data's end;
    # one flagged on Sep 30 has until Dec 29.
    assert months.index[months["provisional"]].tolist() == ["2026-09", "2026-10", "2026-11"]
    assert months.loc["2026-08", "outcomes_complete_on"] == "2026-11-29"
    assert months.loc["2026-09", "outcomes_complete_on"] == "2026-12-29"
    assert review.closed_months["month"].iloc[-1] == "2026-08"


def test_the_backlog_and_rules_only_runs_are_not_first_flags(published) -> None:
    uri, outcomes = published
    review = _review(uri, outcomes, month="2025-12", months=4)
    months = review.months.set_index("month")
    history = read_scores(uri, "lead_score_history")
    first_run = history[history["as_of_date"] == FIRST_RUN]
    # The first run found leads open and MQLs already: none of them is new that day, so
    # September counts only what later runs flagged.
    assert len(first_run) > 100 and first_run["is_mql"].astype(bool).sum() > 10
    september = history[history["as_of_date"].dt.month == 9]
    flagged_later = september[september["as_of_date"] > FIRST_RUN]
    assert (
        0
        < months.loc["2025-09", "rule_mqls"]
        < september["lead_id"][september["is_mql"].astype(bool)].nunique()
    )
    assert months.loc["2025-09", "new_leads"] <= flagged_later["lead_id"].nunique()
    # Four runs by the rules alone (tiers by points), then the model's first run (its tier A
    # is a backlog too): September has no tier A of its own, October has.
    assert months.loc["2025-09", "tier_as"] == 0 < months.loc["2025-10", "tier_as"]
    # The model's figures of September come from its own run of the month, not the rules'.
    assert not np.isnan(months.loc["2025-09", "model_roc_auc"])
    direct = direct_review_months(history, outcomes, HORIZON, list(months.index))
    np.testing.assert_allclose(
        months["model_roc_auc"], direct["model_roc_auc"].astype(float), atol=1e-12
    )


def test_rule_versions_their_diff_and_the_effect_of_the_change(published) -> None:
    uri, outcomes = published
    review = _review(uri, outcomes)
    assert list(review.versions["file_name"]) == ["rules_v1.yaml", "rules_v2.yaml"]
    assert str(review.versions["first_run"].iloc[1].date()) == CHANGE
    (change,) = review.changes
    assert change.threshold_before == 50 and change.threshold_after == 60
    table = change.table.set_index("rule")
    assert table.loc["pricing", "change"] == "points"
    assert (table.loc["pricing", "points_before"], table.loc["pricing", "points_after"]) == (10, 15)
    assert table.loc["demo", "change"] == "added" and "senior" not in table.index
    assert "+  - name: demo" in change.text_diff
    months = review.months.set_index("month")
    assert months.loc["2026-04", "rule_versions"] == review.versions["rules_sha256"][0][:12]
    assert months.loc["2026-06", "rule_versions"] == review.versions["rules_sha256"][1][:12]

    # Before and after: MQLs first flagged in equal windows, outcomes known; by hand.
    effect = review.effect
    assert review.effect_state == "measured" and effect.days == 90
    history = read_scores(uri, "lead_score_history")
    first = history[history["is_mql"].astype(bool)].groupby("lead_id")["as_of_date"].min()
    converted = outcomes.set_index("lead_id")["converted_at"]
    when = pd.Timestamp(CHANGE)
    for side, lo, hi in (("before", when - pd.Timedelta(days=90), when),
                         ("after", when, when + pd.Timedelta(days=90))):  # fmt: skip
        mine = first[(first >= lo) & (first < hi)]
        at = converted.reindex(mine.index)
        hits = int(((at >= mine) & (at < mine + pd.Timedelta(days=HORIZON))).sum())
        row = effect.table.set_index("side").loc[side]
        assert (row["mqls"], row["conversions"]) == (len(mine), hits)
    d, low, high = effect.difference
    assert low < d < high


def test_diagnostics_judge_the_current_rules_on_closed_months(published) -> None:
    uri, outcomes = published
    review = _review(uri, outcomes)
    assert review.diagnostics_state == "current"
    diagnostics = review.diagnostics.set_index("rule")
    assert list(diagnostics.index) == ["senior", "pricing", "demo"]
    # Nothing published "demo" as fired: the advice says so, not a conversion rate.
    assert diagnostics.loc["demo", "fires"] == 0
    assert diagnostics.loc["demo", "advice"] == "never_fired"
    assert diagnostics.loc["senior", "fires"] > 0
    thresholds = review.thresholds
    assert thresholds["current"].sum() == 1
    assert thresholds.loc[thresholds["current"], "threshold"].item() == 60
    assert thresholds["mqls"].is_monotonic_decreasing


@pytest.mark.parametrize("language", ["en", "ja"])
def test_the_page_renders_in_both_languages(published, language) -> None:
    uri, outcomes = published
    review = _review(uri, outcomes)
    html = review_module.render_review(
        review, title="Acme", language=language, source="sqlite:///crm.db", publish=uri
    )
    assert html.count('class="provisional"') == 3 and html.count('class="closed"') == 9
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org", "")
    if language == "ja":
        assert "月次レビュー：2026年11月" in html and "暫定" in html
    else:
        assert "Monthly review: Nov 2026" in html and "provisional" in html


def test_a_missing_history_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataError, match="no scores have been published") as missing:
        ScoreHistory(f"sqlite:///{tmp_path / 'none.db'}", ScoreTables())
    assert "leadscore score" in missing.value.fix
    with pytest.raises(ConfigError, match="YYYY-MM"):
        review_module.parse_month("2026-13x")
    with pytest.raises(ConfigError, match="not a month"):
        review_module.parse_month("2026-13")
    # What the monthly deployment asks for on the 1st: the month that just ended.
    december = pd.Timestamp("2026-12-01 06:00")
    assert review_module.parse_month("previous", december) == pd.Period("2026-11", freq="M")
    assert review_module.parse_month("previous", pd.Timestamp("2027-01-01")).year == 2026


def test_runs_published_before_versions_were_recorded_still_get_an_sla(published) -> None:
    """Older runs have no rule file SHA-256: nothing to replay, the MQLs count from their
    run's day, and nothing fails."""
    from leadscore.config import ProjectConfig

    uri, outcomes = published
    versions = read_rule_versions(uri).assign(rules_sha256=None, rules_text=None)
    history = read_scores(uri, "lead_score_history")
    ids = history["lead_id"].unique()
    leads = pd.DataFrame({"lead_id": ids, "created_at": pd.Timestamp("2025-03-01")})
    mqls = history[history["is_mql"].astype(bool)].groupby("lead_id")["as_of_date"].min()
    touches = pd.DataFrame(
        {
            "lead_id": mqls.index,
            "occurred_at": mqls.to_numpy() + pd.Timedelta(hours=30),
            "activity_type": "call",
            "detail": "",
        }
    )
    with ScoreHistory(uri, ScoreTables()) as h:
        review = review_module.build_review(
            h, outcomes, versions, pd.Period("2026-11", freq="M"), HORIZON, UNTIL,
            leads=leads, activities=touches, config=ProjectConfig(),
        )  # fmt: skip
    rules = review.sla.groups["rules"]
    assert rules.replayed == 0 and rules.leads > 100
    # Every MQL was called 30 hours after its run's day: all answered after 24 hours.
    assert rules.buckets["leads"].iloc[3] == rules.leads - rules.already
    assert review.changes == [] and review.effect_state == "unchanged"
