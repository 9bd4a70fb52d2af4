"""Reasons: factor grouping, plain-words phrases from the lead's own values, and selection."""

from __future__ import annotations

import pandas as pd
import pytest

from leadscore.config import FeatureConfig
from leadscore.data.features import (
    BehaviourSpec,
    FeatureBuilder,
    index_activities,
    snapshot_rows,
)
from leadscore.modeling.reasons import Phrases, explain, factors

AS_OF = pd.Timestamp("2026-03-01")
SPEC = BehaviourSpec(
    activity_types=("content_download", "demo_request", "email_open", "page_view"),
    page_categories={"pricing": "/pricing", "careers": "/careers"},
    page_activity_type="page_view",
    windows_days=(7, 30, 90),
    recency_cap_days=180,
)


@pytest.fixture
def fitted(tiny_leads, tiny_activities) -> tuple[pd.DataFrame, FeatureBuilder]:
    snaps = pd.DataFrame({"lead_id": [1, 2, 3, 4, 5], "as_of": AS_OF}).astype(
        {"as_of": "datetime64[us]"}
    )
    index = index_activities(tiny_activities, SPEC.page_categories, SPEC.page_activity_type)
    columns = ["industry", "country", "lead_source", "employees", "job_title"]
    rows = snapshot_rows(snaps, tiny_leads, index, SPEC, columns, "email")
    builder = FeatureBuilder(
        ["industry", "country", "lead_source"],
        ["employees"],
        "job_title",
        FeatureConfig(),
        SPEC,
        min_category_count=1,
    ).fit(rows)
    return rows, builder


def test_factors_group_the_features_of_one_thing(fitted) -> None:
    _, builder = fitted
    groups = {f.key: set(f.features) for f in factors(builder)}
    assert groups["activity:page_pricing"] == {
        "n_page_pricing_7d",
        "n_page_pricing_30d",
        "n_page_pricing_90d",
        "days_since_page_pricing",
        "decayed_page_pricing",
    }
    assert groups["engagement"] == {
        "n_all_7d",
        "n_all_30d",
        "n_all_90d",
        "decayed_all",
        "active_days_90d",
    }
    assert groups["field:email_domain_kind"] == {"email_domain_kind"}
    every = [name for f in factors(builder) for name in f.features]
    assert sorted(every) == sorted(builder.feature_names_)  # each feature in exactly one


def test_phrases_use_the_leads_own_values(fitted) -> None:
    rows, builder = fitted
    words = Phrases(builder, rows)
    everyone = list(range(5))
    assert list(words.describe("n_page_pricing_7d", everyone)[:2]) == [
        "2 pricing-page views in the last 7 days",
        "no pricing-page views in the last 7 days",
    ]
    # Last pricing view 02-27 09:05, as of 03-01: 1.6 days.
    assert words.describe("days_since_page_pricing", [0])[0] == "last pricing-page view 2 days ago"
    assert words.describe("days_since_page_pricing", [1])[0] == (
        "no pricing-page views in the last 180 days"
    )
    assert words.describe("n_content_download_30d", [4])[0] == (
        "3 content downloads in the last 30 days"
    )
    assert list(words.describe("email_domain_kind", everyone)) == [
        "corporate e-mail domain",
        "free e-mail domain",
        "no usable e-mail domain",
        "competitor e-mail domain",
        "student e-mail domain",
    ]
    assert words.describe("seniority", [0])[0] == "job title says VP"
    assert words.describe("employees", [0, 1]).tolist() == [
        "company size (employees): 250",
        "company size (employees) not given",
    ]
    assert words.describe("industry", [0, 1]).tolist() == [
        "industry: software",
        "industry not given",
    ]
    assert words.describe("days_since_any", [0])[0] == "last activity 2 days ago"
    assert words.describe("days_since_any", [3])[0] == "no activity in the last 180 days"


def test_labels_rename_things_in_the_users_words(fitted) -> None:
    rows, builder = fitted
    words = Phrases(builder, rows, {"page_pricing": "visit to pricing|visits to pricing"})
    assert words.describe("n_page_pricing_7d", [0])[0] == "2 visits to pricing in the last 7 days"


def test_explain_picks_the_strongest_factors_and_names_their_driver(fitted) -> None:
    rows, builder = fitted
    contrib = pd.DataFrame(0.0, index=rows.index, columns=builder.feature_names_)
    contrib.loc[0, "n_page_pricing_7d"] = 0.5
    contrib.loc[0, "decayed_page_pricing"] = 0.3  # same factor: 0.8 in all
    contrib.loc[0, "email_domain_kind"] = 0.6
    contrib.loc[0, "industry"] = 0.01  # below the minimum effect: not a reason
    contrib.loc[0, "days_since_any"] = -0.4
    contrib.loc[3, "email_domain_kind"] = -2.0
    contrib.loc[3, "n_page_pricing_30d"] = 0.2
    contrib.loc[3, "n_page_pricing_7d"] = -0.1  # the factor is +0.1; the 30-day count drives it
    out = explain(rows, contrib, builder)
    assert out.loc[0, "reasons_up"] == (
        "2 pricing-page views in the last 7 days; corporate e-mail domain"
    )
    assert out.loc[0, "reasons_down"] == "last activity 2 days ago"
    assert out.loc[3, "reasons_down"] == "competitor e-mail domain"
    assert out.loc[3, "reasons_up"] == "no pricing-page views in the last 30 days"
    assert out.loc[1, "reasons_up"] == "" and out.loc[1, "reasons_down"] == ""


def test_explain_gives_at_most_three_reasons_each_way(fitted) -> None:
    rows, builder = fitted
    contrib = pd.DataFrame(0.1, index=rows.index, columns=builder.feature_names_)
    out = explain(rows, contrib, builder)
    assert (out["reasons_up"].str.count("; ") == 2).all()
    assert (out["reasons_down"] == "").all()


def test_a_count_that_lowers_the_probability_reads_only(fitted) -> None:
    rows, builder = fitted
    contrib = pd.DataFrame(0.0, index=rows.index, columns=builder.feature_names_)
    contrib.loc[0, "n_page_pricing_7d"] = -0.3  # 2 views, fewer than the model expected
    out = explain(rows, contrib, builder)
    assert out.loc[0, "reasons_down"] == "only 2 pricing-page views in the last 7 days"


def test_a_value_the_model_never_learned_is_not_named(fitted) -> None:
    """Rare or new values were "other" to the model; the raw value must not be published."""
    rows, builder = fitted
    rare = rows.assign(industry=pd.array(["Acme Holdings Ltd"] * 5, dtype="str"))
    words = Phrases(builder, rare)
    assert list(words.describe("industry", [0, 1])) == ["less common industry"] * 2


def test_words_for_departments_and_plurals(fitted) -> None:
    rows, builder = fitted
    it = rows.assign(job_title=pd.array(["IT Manager"] * 5, dtype="str"))
    assert Phrases(builder, it).describe("department", [0])[0] == "department: IT"
    words = Phrases(builder, rows, {"page_pricing": "pricing activity", "email_open": "inbox"})
    assert words.noun("page_pricing") == ("pricing activity", "pricing activities")
    assert words.noun("email_open") == ("inbox", "inboxes")


def test_reasons_in_japanese_come_from_the_japanese_catalogue(fitted) -> None:
    """`report.language: ja`: the same facts in Japanese words (no plurals, the counter
    after the number), and the user's labels as they wrote them."""
    rows, builder = fitted
    words = Phrases(builder, rows, language="ja")
    assert list(words.describe("n_page_pricing_7d", [0, 1])) == [
        "過去7日間に料金ページ閲覧2回",
        "過去7日間に料金ページ閲覧なし",
    ]
    assert words.describe("days_since_page_pricing", [0])[0] == "最後の料金ページ閲覧は2日前"
    assert words.describe("email_domain_kind", [1])[0] == "フリーメールのドメイン"
    assert words.describe("seniority", [0])[0] == "役職：VP・役員"
    assert words.describe("employees", [0, 1]).tolist() == [
        "企業規模（従業員数）：250",
        "企業規模（従業員数）の記載なし",
    ]
    assert words.describe("days_since_any", [3])[0] == "過去180日間に活動なし"
    contrib = pd.DataFrame(0.0, index=rows.index, columns=builder.feature_names_)
    contrib.loc[0, "n_page_pricing_7d"] = -0.3
    out = explain(rows, contrib, builder, language="ja")
    assert out.loc[0, "reasons_down"] == "過去7日間の料金ページ閲覧はわずか2回"
    mine = Phrases(builder, rows, {"page_pricing": "価格ページ訪問"}, language="ja")
    assert mine.noun("page_pricing") == ("価格ページ訪問", "価格ページ訪問")
    assert mine.describe("n_page_pricing_7d", [0])[0] == "過去7日間に価格ページ訪問2回"
