"""The sales SLA's parts: business time, targets, the moment a lead became an MQL replayed
from its activities, the first sales touch after it, and conversion by response time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.config import ProjectConfig
from leadscore.data.rules import RuleSet
from leadscore.errors import ConfigError
from leadscore.evaluation import sla


def _t(text: str) -> np.datetime64:
    return np.datetime64(pd.Timestamp(text), "us")


@pytest.mark.parametrize(
    ("start", "end", "minutes"),
    [
        ("2026-11-27 17:00", "2026-11-30 09:00", 7 * 60 + 9 * 60),  # Friday evening to Monday
        ("2026-11-24 10:00", "2026-11-24 10:05", 5),  # within a Tuesday
        ("2026-11-28 10:00", "2026-11-28 12:00", 0),  # within a Saturday
        ("2026-11-29 23:00", "2026-11-30 01:00", 60),  # Sunday night into Monday
        ("2026-11-23 00:00", "2026-11-30 00:00", 5 * 1440),  # a whole week
    ],
)
def test_business_minutes_count_monday_to_friday(start, end, minutes) -> None:
    got = sla.business_minutes(np.array([_t(start)]), np.array([_t(end)]))
    assert got.tolist() == [minutes]


@given(
    st.datetimes(min_value=pd.Timestamp("2026-01-01"), max_value=pd.Timestamp("2026-12-31")),
    st.integers(min_value=0, max_value=20 * 1440),
)
@settings(max_examples=200, deadline=None)
def test_business_minutes_never_exceed_wall_minutes(start, span) -> None:
    s = np.datetime64(pd.Timestamp(start).floor("min"), "m")
    e = s + np.timedelta64(span, "m")
    got = float(sla.business_minutes(np.array([s]), np.array([e]))[0])
    assert 0 <= got <= span
    # A week holds five business days, whatever day it starts on.
    week = float(sla.business_minutes(np.array([s]), np.array([s + np.timedelta64(7, "D")]))[0])
    assert week == 5 * 1440


def test_targets_read_as_minutes_and_refuse_anything_else() -> None:
    assert sla.parse_target("5m") == sla.Target("5m", 5.0, False)
    assert sla.parse_target("1h").minutes == 60 and sla.parse_target("2 d").minutes == 2880
    assert sla.parse_target("1bd") == sla.Target("1bd", 1440.0, True)
    with pytest.raises(ConfigError, match="not a response time"):
        sla.parse_target("asap")
    with pytest.raises(ValueError, match="not a response time"):
        ProjectConfig.model_validate({"review": {"sla_targets": ["5 minutes"]}})


def test_the_first_touch_at_or_after_the_moment_within_the_horizon() -> None:
    moments = pd.Series(
        pd.to_datetime(["2026-03-02 10:00"] * 3 + ["2026-03-02 00:00"]),
        index=["a", "b", "c", "d"],
    )
    touches = pd.DataFrame(
        {
            "lead_id": ["a", "a", "b", "b", "c"],
            "occurred_at": pd.to_datetime(
                [
                    "2026-03-02 09:00",  # a: before it became an MQL: not an answer
                    "2026-03-02 10:07",  # a: the answer, 7 minutes later
                    "2026-03-02 10:00",  # b: at the very moment
                    "2026-03-03 10:00",
                    "2026-07-01 10:00",  # c: after the 90-day horizon: not touched in time
                ]
            ),
        }
    )
    got = sla.response_minutes(moments, touches, horizon_days=90)
    assert got["a"] == 7 and got["b"] == 0
    assert np.isnan(got["c"]) and np.isnan(got["d"])


def test_the_mql_moment_is_replayed_from_the_activities(tiny_leads) -> None:
    rules = RuleSet.model_validate(
        {
            "mql_threshold": 50,
            "attribute_rules": [
                {"name": "vp", "field": "seniority", "in": ["vp"], "points": 60},
                {"name": "manager", "field": "seniority", "in": ["director"], "points": 20},
            ],
            "behaviour_rules": [
                {
                    "name": "content",
                    "activity": "content_download",
                    "within_days": 30,
                    "points": 15,
                    "cap": 45,
                },
                {
                    "name": "pricing",
                    "activity": "page_view",
                    "page_category": "pricing",
                    "within_days": 7,
                    "points": 10,
                },
            ],
        }
    )
    activities = pd.DataFrame(
        [
            (2, "2026-02-20 10:00", "page_view", "/pricing"),
            (2, "2026-02-24 09:00", "page_view", "/pricing"),  # 20 + 20: 40
            (2, "2026-02-24 15:30", "page_view", "/pricing"),  # 50 here: the moment
            (2, "2026-02-25 08:00", "page_view", "/pricing"),
            (5, "2026-01-20 10:00", "content_download", "ebook:y"),  # before `since`
            (5, "2026-02-21 10:00", "content_download", "ebook:y"),
            (5, "2026-02-22 10:00", "content_download", "ebook:z"),
            (5, "2026-02-23 11:00", "content_download", "ebook:z"),  # 45: capped, never 50
            (4, "2026-02-23 11:00", "page_view", "/pricing"),
        ],
        columns=["lead_id", "occurred_at", "activity_type", "detail"],
    ).astype({"occurred_at": "datetime64[us]", "activity_type": "str", "detail": "str"})
    flagged = pd.DataFrame(
        {
            "lead_id": [1, 2, 5],
            "since": pd.to_datetime(["2026-02-22", "2026-02-22", "2026-02-01"]),
            "until": pd.to_datetime(["2026-03-01", "2026-03-01", "2026-03-01"]),
        }
    )
    got = sla.mql_moments(flagged, rules, tiny_leads, activities, ProjectConfig())
    # Lead 1 is a VP (60 points from who they are): an MQL from the first moment seen.
    assert got[1] == pd.Timestamp("2026-02-22")
    # Lead 2 (a director by the Japanese title, 20) crossed at its third pricing view.
    assert got[2] == pd.Timestamp("2026-02-24 15:30")
    # Lead 5 never reaches 50 in the replay (the cap): it counts from its run's day.
    assert got[5] == pd.Timestamp("2026-03-01")


def test_conversion_by_response_time_bucket_with_intervals() -> None:
    minutes = pd.Series([1, 3, 30, 50, 120, 2000, 3000, np.nan, np.nan, 4.0, np.nan, 2.0])
    converted = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1], dtype=bool)
    # The last two: sales was talking to them before they were flagged.
    before = pd.Series([False] * 10 + [True, True])
    targets = [sla.parse_target("5m"), sla.parse_target("1h")]
    within, buckets, difference = sla.sla_tables(minutes, minutes, converted, targets, before)
    assert within["within"].tolist() == [3, 5] and within["leads"].tolist() == [10, 10]
    assert buckets["leads"].tolist() == [3, 2, 1, 2, 2, 2]
    assert buckets["conversions"].tolist() == [2, 1, 0, 0, 2, 1]
    assert (buckets["low"] <= buckets["rate"]).all() and (buckets["rate"] <= buckets["high"]).all()
    # Within the hour 3 of 5 converted, later 0 of 3: +60 points, an interval around it.
    d, low, high = difference
    assert d == pytest.approx(0.6) and low < d < high


def test_touched_before_looks_back_from_the_moment() -> None:
    moments = pd.Series(pd.to_datetime(["2026-03-10 12:00"] * 3), index=["a", "b", "c"])
    touches = pd.DataFrame(
        {
            "lead_id": ["a", "b", "b"],
            "occurred_at": pd.to_datetime(
                ["2026-03-09 12:00", "2025-01-01 00:00", "2026-03-10 12:00"]
            ),
        }
    )
    got = sla.touched_before(moments, touches, days=90)
    # a: the day before; b: long before the horizon, and one at the moment (an answer).
    assert got.tolist() == [True, False, False]
