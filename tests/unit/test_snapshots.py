import itertools

import pandas as pd
import pytest

from leadscore.data.snapshots import build_snapshots, plan_splits, snapshot_dates
from leadscore.errors import ModelError


def test_examples_are_open_leads_with_horizon_labels() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4, 5],
            "created_at": pd.to_datetime(
                ["2026-01-01", "2026-01-01", "2026-01-01", "2026-03-01", "2025-01-01"]
            ).astype("datetime64[us]"),
        }
    )
    outcomes = pd.DataFrame(
        {
            "lead_id": [1, 2, 3],
            "converted_at": pd.to_datetime(
                ["2026-02-28 23:59", "2026-03-01 00:00", "2026-03-31 00:00"]
            ).astype("datetime64[us]"),
        }
    )
    snaps = build_snapshots(
        leads, outcomes, [pd.Timestamp("2026-03-01")], max_lead_age_days=365, horizon_days=30
    )
    got = dict(zip(snaps["lead_id"], snaps["converted"], strict=True))
    # 1 converted before as-of: not an example; 4 created exactly at as-of: not yet a lead;
    # 5 is older than max age. 2 converts at as-of (in window); 3 at as-of + 30 days (out).
    assert got == {2: 1, 3: 0}


def test_unlabelled_snapshots_have_no_label() -> None:
    leads = pd.DataFrame(
        {"lead_id": [1], "created_at": pd.to_datetime(["2026-01-01"]).astype("datetime64[us]")}
    )
    outcomes = pd.DataFrame(
        {
            "lead_id": pd.Series([], dtype="int64"),
            "converted_at": pd.Series([], dtype="datetime64[us]"),
        }
    )
    snaps = build_snapshots(leads, outcomes, [pd.Timestamp("2026-02-01")], 365)
    assert list(snaps.columns) == ["lead_id", "as_of"]
    assert len(snaps) == 1


def test_snapshot_dates_anchor_on_the_latest() -> None:
    dates = snapshot_dates(pd.Timestamp("2026-01-01"), pd.Timestamp("2026-04-10 13:00"), 30, 10)
    assert dates[-1] == pd.Timestamp("2026-04-10")
    assert dates[0] >= pd.Timestamp("2026-01-11")
    assert all((b - a).days == 30 for a, b in itertools.pairwise(dates))


def test_plan_splits_orders_cohorts_and_purges_the_gap() -> None:
    plan = plan_splits(
        pd.Timestamp("2024-01-01"),
        pd.Timestamp("2026-01-01"),
        horizon_days=90,
        every_days=30,
        min_history_days=30,
        test_days=60,
        calibration_days=90,
        validation_days=60,
        gap_days=90,
    )
    d = plan.dates
    assert max(d["train"]) < min(d["validation"]) <= max(d["validation"]) < min(d["calibration"])
    assert max(d["calibration"]) + pd.Timedelta(days=90) <= min(d["test"])
    assert max(d["test"]) + pd.Timedelta(days=90) <= pd.Timestamp("2026-01-01")


def test_plan_splits_explains_short_history() -> None:
    with pytest.raises(ModelError, match="not enough history"):
        plan_splits(
            pd.Timestamp("2025-06-01"), pd.Timestamp("2026-01-01"), 90, 30, 30, 60, 90, 60, 90
        )
