import numpy as np
import pandas as pd
import pytest

from leadscore.config import FeatureConfig
from leadscore.data.features import (
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


def _naive_behaviour(snaps: pd.DataFrame, acts: pd.DataFrame, spec: BehaviourSpec) -> pd.DataFrame:
    """The behaviour columns by the definitions, one snapshot and one event at a time."""
    out = []
    for lead, as_of in zip(snaps["lead_id"], snaps["as_of"], strict=True):
        row = {c: 0.0 for c in spec.columns()}
        mine = acts[(acts["lead_id"] == lead) & (acts["occurred_at"] < as_of)]
        mine = mine[mine["occurred_at"] >= as_of - pd.Timedelta(days=spec.lookback_days)]
        recency: dict[str, float] = {}
        days, recent, previous = set(), 0, 0
        for when, kind, detail in zip(
            mine["occurred_at"], mine["activity_type"], mine["detail"], strict=True
        ):
            age = (as_of - when) / pd.Timedelta(days=1)
            keys = [kind] if kind in spec.activity_types else []
            if kind == spec.page_activity_type:
                cat = page_category(pd.Series([detail], dtype="str"), spec.page_categories)[0]
                keys += [f"page_{cat}"] if isinstance(cat, str) else []
            for key in [*keys, "all"]:
                for w in spec.windows_days:
                    row[f"n_{key}_{w}d"] += float(age <= w)
                row[f"decayed_{key}"] += 0.5 ** (age / 14)
                if age <= spec.recency_cap_days:
                    recency[key] = min(recency.get(key, np.inf), age)
            if age <= max(spec.windows_days):
                days.add(when.floor("D"))
            recent += age <= 7
            previous += 7 < age <= 28
        for key in [*spec.keys(), "any"]:
            value = recency.get("all" if key == "any" else key, np.inf)
            row[f"days_since_{key}"] = np.nan if np.isinf(value) else value
        row[f"active_days_{max(spec.windows_days)}d"] = float(len(days))
        row["trend_7d_vs_prev_21d"] = (recent / 7 + 0.1) / (previous / 21 + 0.1)
        out.append(row)
    frame = pd.DataFrame(out, index=snaps.index)
    frame["lead_age_days"] = np.nan
    return frame[spec.columns()]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("categorical", [False, True])
def test_behaviour_features_match_the_definitions(seed: int, categorical: bool) -> None:
    """Random leads with several snapshot dates each, text ids, events on both sides of
    every as-of and window edge: the SQL aggregation equals a naive reading of the spec."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"L{i}" for i in range(12)], dtype=object)
    n = 600
    start = np.datetime64("2025-12-01T00:00:00")
    acts = pd.DataFrame(
        {
            "lead_id": rng.choice(ids[:10], n),  # two leads never act
            "occurred_at": (
                start + rng.integers(0, 120 * 86_400, n).astype("timedelta64[s]")
            ).astype("datetime64[us]"),
            "activity_type": rng.choice(
                ["page_view", "page_view", "email_open", "demo_request", "webinar"], n
            ),
            "detail": rng.choice(["/pricing", "/careers/x", "/blog", None], n),
        }
    )
    if categorical:
        acts = acts.astype({"activity_type": "category", "detail": "category"})
    else:
        acts = acts.astype({"activity_type": "str", "detail": "str"})
    # Snapshot dates exactly on some event times too: those events are not yet known.
    dates = [pd.Timestamp("2026-01-15"), pd.Timestamp("2026-02-20"), acts["occurred_at"][0]]
    snaps = pd.DataFrame(
        [(lead, d) for lead in ids for d in dates], columns=["lead_id", "as_of"]
    ).astype({"as_of": "datetime64[us]"})
    leads = pd.DataFrame({"lead_id": ids, "created_at": pd.Timestamp("2025-06-01")})
    index = index_activities(acts, SPEC.page_categories, SPEC.page_activity_type)
    got = behaviour_features(snaps, index, leads, SPEC).drop(columns="lead_age_days")
    want = _naive_behaviour(snaps, acts.astype({"activity_type": "str"}), SPEC)
    pd.testing.assert_frame_equal(
        got, want.drop(columns="lead_age_days"), check_exact=False, rtol=1e-9, atol=1e-9
    )
    assert got["n_all_90d"].sum() > 100  # the data exercised the windows


def test_page_categories_read_the_path_of_a_full_address() -> None:
    """Marketo logs a page view as www.example.com/pricing, other tools as a full URL with
    a query: the categories' patterns (written for paths) read the path."""
    from leadscore.config import DEFAULT_PAGE_CATEGORIES
    from leadscore.data.features import page_category

    details = pd.Series(
        ["/pricing", "www.example.com/pricing", "https://acme.co.jp/pricing/?utm_source=x",
         "https://example.com", "example.com/ja/", "/customers/globex#top", "form:demo", None,
         "pricing.html"],
        dtype="str",
    )  # fmt: skip
    got = page_category(details, dict(DEFAULT_PAGE_CATEGORIES)).tolist()
    assert got[:6] == ["pricing", "pricing", "pricing", "home", "home", "case_studies"]
    assert pd.isna(got[6]) and pd.isna(got[7])
    assert pd.isna(got[8])  # a relative name is no host: not the home page
