"""Point-in-time examples: leads as of snapshot dates, labels from the horizon after them.

A lead is an example at snapshot `as_of` when it was created before `as_of`, had not
converted before `as_of`, and is at most `max_lead_age_days` old. Its label is whether it
converted in `[as_of, as_of + horizon)`. Features may use only what happened before `as_of`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.errors import TooLittleHistoryError

SPLITS = ("train", "validation", "calibration", "test")


@dataclass(frozen=True)
class SplitPlan:
    """Snapshot dates per split, oldest first; `test` is the newest labelled cohort."""

    dates: dict[str, list[pd.Timestamp]]
    label_end: pd.Timestamp
    data_end: pd.Timestamp
    #: time, order or random (the last two for flat exports).
    method: str = "time"
    #: Flat exports: what each split holds, in words.
    descriptions: dict[str, str] | None = None

    def describe(self) -> dict[str, str]:
        """First and last date per split (or what a flat split holds), for logs and MLflow."""
        if self.descriptions is not None:
            return dict(self.descriptions)
        return {
            name: f"{d[0].date()}..{d[-1].date()} ({len(d)} snapshots)"
            for name, d in self.dates.items()
        }


def snapshot_dates(
    data_start: pd.Timestamp,
    latest: pd.Timestamp,
    every_days: int,
    min_history_days: int,
) -> list[pd.Timestamp]:
    """Midnight dates every `every_days`, anchored on `latest` and going back to the start."""
    latest = pd.Timestamp(latest).normalize()
    first = pd.Timestamp(data_start).normalize() + pd.Timedelta(days=max(min_history_days, 1))
    if latest < first:
        return []
    n = int((latest - first).days // every_days) + 1
    return [latest - pd.Timedelta(days=every_days * k) for k in range(n)][::-1]


def plan_splits(
    data_start: pd.Timestamp,
    data_end: pd.Timestamp,
    horizon_days: int,
    every_days: int,
    min_history_days: int,
    test_days: int,
    calibration_days: int,
    validation_days: int,
    gap_days: int,
) -> SplitPlan:
    """Assign labelled snapshot dates to train / validation / calibration / test by time.

    Only dates whose whole label window lies inside the data are labelled. Fitting dates end
    `gap_days` before the first test date, so no outcome used for fitting or calibration
    happened after the test cohort's snapshot.
    """
    label_end = (pd.Timestamp(data_end) - pd.Timedelta(days=horizon_days)).normalize()
    dates = snapshot_dates(data_start, label_end, every_days, min_history_days)
    test = [d for d in dates if d > label_end - pd.Timedelta(days=test_days)]
    if not test:
        raise TooLittleHistoryError(
            f"no labelled snapshot: the data spans {data_start.date()}..{data_end.date()} but a "
            f"{horizon_days}-day label horizon needs at least "
            f"{horizon_days + min_history_days} days",
            "provide a longer history or shorten horizon_days",
        )
    fit_end = test[0] - pd.Timedelta(days=gap_days)
    cal_start = fit_end - pd.Timedelta(days=calibration_days)
    val_start = cal_start - pd.Timedelta(days=validation_days)
    plan = {
        "train": [d for d in dates if d <= val_start],
        "validation": [d for d in dates if val_start < d <= cal_start],
        "calibration": [d for d in dates if cal_start < d <= fit_end],
        "test": test,
    }
    empty = [name for name, d in plan.items() if not d]
    if empty:
        needed = (
            min_history_days
            + test_days
            + gap_days
            + calibration_days
            + validation_days
            + every_days
            + horizon_days
        )
        raise TooLittleHistoryError(
            f"not enough history for a time split: no snapshot falls in {', '.join(empty)} "
            f"(data spans {(data_end - data_start).days} days; this config needs about {needed})",
            "provide more history, or reduce split.*_days, snapshots.every_days or horizon_days",
        )
    return SplitPlan(plan, label_end, pd.Timestamp(data_end))


def build_snapshots(
    leads: pd.DataFrame,
    outcomes: pd.DataFrame,
    dates: list[pd.Timestamp],
    max_lead_age_days: int,
    horizon_days: int | None = None,
) -> pd.DataFrame:
    """Open leads as of each date; with `horizon_days`, also the label `converted`.

    Returns columns `lead_id`, `as_of` and, when labelled, `converted` (0/1).
    """
    converted_at = (
        leads[["lead_id"]]
        .merge(outcomes, on="lead_id", how="left")["converted_at"]
        .to_numpy(dtype="datetime64[us]")
    )
    created = leads["created_at"].to_numpy(dtype="datetime64[us]")
    lead_ids = leads["lead_id"].to_numpy()
    max_age = np.timedelta64(max_lead_age_days, "D")
    parts = []
    for as_of in dates:
        t = np.datetime64(pd.Timestamp(as_of).to_datetime64(), "us")
        open_ = (created < t) & (created >= t - max_age)
        open_ &= np.isnat(converted_at) | (converted_at >= t)
        part = pd.DataFrame({"lead_id": lead_ids[open_], "as_of": pd.Timestamp(as_of)})
        if horizon_days is not None:
            c = converted_at[open_]
            label = ~np.isnat(c) & (c < t + np.timedelta64(horizon_days, "D"))
            part["converted"] = label.astype(np.int8)
        parts.append(part)
    if not parts:
        columns = {"lead_id": lead_ids[:0], "as_of": pd.Series(dtype="datetime64[us]")}
        return pd.DataFrame(columns)
    frame = pd.concat(parts, ignore_index=True)
    frame["as_of"] = frame["as_of"].astype("datetime64[us]")
    return frame
