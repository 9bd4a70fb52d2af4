import numpy as np
import pandas as pd
import pytest

from leadscore.config import FeatureConfig
from leadscore.features import (
    BehaviourSpec,
    FeatureBuilder,
    behaviour_features,
    email_domain,
    email_domain_kind,
    index_activities,
    page_category,
    snapshot_rows,
)

AS_OF = pd.Timestamp("2026-03-01")
SPEC = BehaviourSpec(
    activity_types=("content_download", "demo_request", "email_open", "page_view"),
    page_categories={"pricing": "/pricing", "careers": "/careers"},
    page_activity_type="page_view",
    windows_days=(7, 30, 90),
    recency_cap_days=180,
)


def _features(leads, activities, as_of=AS_OF, ids=(1, 2, 3, 5)) -> pd.DataFrame:
    snaps = pd.DataFrame({"lead_id": list(ids), "as_of": as_of}).astype({"as_of": "datetime64[us]"})
    index = index_activities(activities, SPEC.page_categories, SPEC.page_activity_type)
    return behaviour_features(snaps, index, leads, SPEC).set_index(snaps["lead_id"])


def test_window_counts_use_only_events_strictly_before_as_of(tiny_leads, tiny_activities) -> None:
    f = _features(tiny_leads, tiny_activities)
    assert f.loc[1, "n_page_view_7d"] == 2  # two pricing views on 02-27; 03-01 and 03-05 excluded
    assert f.loc[1, "n_page_view_90d"] == 3
    assert f.loc[1, "n_page_pricing_7d"] == 2
    assert f.loc[1, "n_demo_request_90d"] == 0  # at as-of exactly: not yet known
    assert f.loc[1, "n_content_download_30d"] == 1
    assert f.loc[1, "n_content_download_7d"] == 0
    assert f.loc[5, "n_content_download_30d"] == 3
    assert f.loc[2, "n_page_careers_7d"] == 1
    assert f.loc[2, "n_email_open_90d"] == 0  # 9 months back


def test_recency_and_missing_history(tiny_leads, tiny_activities) -> None:
    f = _features(tiny_leads, tiny_activities)
    assert f.loc[1, "days_since_page_pricing"] == pytest.approx(1 + 14.92 / 24, abs=1e-2)
    assert f.loc[2, "days_since_page_careers"] == pytest.approx(1 / 60 / 24, abs=1e-6)
    assert np.isnan(f.loc[3, "days_since_any"])  # no activity at all
    assert f.loc[3, "n_all_90d"] == 0
    assert np.isnan(f.loc[2, "days_since_email_open"])  # beyond the recency cap


def test_active_days_trend_and_age(tiny_leads, tiny_activities) -> None:
    f = _features(tiny_leads, tiny_activities)
    assert f.loc[5, "active_days_90d"] == 3
    assert f.loc[1, "active_days_90d"] == 3  # 02-27 (twice), 02-10, 01-15
    assert f.loc[1, "trend_7d_vs_prev_21d"] > 1  # heating up
    assert f.loc[1, "lead_age_days"] == pytest.approx(
        (AS_OF - pd.Timestamp("2026-01-01 10:00")).total_seconds() / 86400
    )


def test_unknown_leads_and_empty_activities_are_harmless(tiny_leads, tiny_activities) -> None:
    empty = tiny_activities.iloc[:0]
    f = _features(tiny_leads, empty)
    assert (f.filter(like="n_").to_numpy() == 0).all()
    assert list(f.columns) == SPEC.columns()


def test_page_category_first_match_and_nulls() -> None:
    detail = pd.Series(["/pricing", "/ja/careers", None, "/other", "/PRICING/x"], dtype="str")
    out = page_category(detail, {"pricing": "/pricing", "careers": "/careers"})
    assert out.tolist()[:2] == ["pricing", "careers"]
    assert out.isna().tolist()[2:4] == [True, True]
    assert out.iloc[4] == "pricing"


def test_email_domain_kind() -> None:
    emails = pd.Series(
        ["x@Acme.example", "y@gmail.com", "z@u-tokyo.ac.jp", "w@rivalscore.com", None, "bad"],
        dtype="str",
    )
    kinds = email_domain_kind(email_domain(emails), FeatureConfig())
    assert kinds.tolist() == [
        "corporate",
        "free_mail",
        "student",
        "competitor",
        "unknown",
        "unknown",
    ]


def test_snapshot_rows_drop_the_mailbox(tiny_leads, tiny_activities) -> None:
    snaps = pd.DataFrame({"lead_id": [1, 2], "as_of": AS_OF}).astype({"as_of": "datetime64[us]"})
    index = index_activities(tiny_activities, SPEC.page_categories, SPEC.page_activity_type)
    rows = snapshot_rows(snaps, tiny_leads, index, SPEC, ["industry", "job_title"], "email")
    assert "email" not in rows
    assert rows["email_domain"].tolist() == ["acme.example", "yahoo.co.jp"]
    assert not rows.astype(str).apply(lambda c: c.str.contains("@")).any().any()


def test_feature_builder_fixes_categories_at_fit(tiny_leads, tiny_activities) -> None:
    snaps = pd.DataFrame({"lead_id": [1, 2, 3, 4, 5], "as_of": AS_OF}).astype(
        {"as_of": "datetime64[us]"}
    )
    index = index_activities(tiny_activities, SPEC.page_categories, SPEC.page_activity_type)
    rows = snapshot_rows(
        snaps,
        tiny_leads,
        index,
        SPEC,
        ["industry", "country", "lead_source", "employees", "job_title"],
        "email",
    )
    builder = FeatureBuilder(
        ["industry", "country", "lead_source"],
        ["employees"],
        "job_title",
        FeatureConfig(),
        SPEC,
        min_category_count=1,
    )
    x = builder.fit(rows).transform(rows)
    assert list(x.columns) == builder.feature_names_
    assert x["seniority"].tolist()[:2] == ["vp", "director"]
    assert x["email_domain_kind"].tolist() == [
        "corporate",
        "free_mail",
        "unknown",
        "competitor",
        "student",
    ]
    # An unseen category at scoring time maps to the "other" bucket, not a new category.
    later = rows.assign(industry=pd.array(["aerospace"] * 5, dtype="str"))
    x2 = builder.transform(later)
    assert list(x2["industry"].cat.categories) == list(x["industry"].cat.categories)
    assert (x2["industry"] == "__other__").all()
    assert x2.dtypes["employees"] == np.float64
