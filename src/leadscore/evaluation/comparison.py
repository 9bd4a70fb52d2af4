"""Marketing's comparison of the model and the MQL rules: pure functions on scored cohorts.

Everything here takes the same rows for both scores (the newest labelled cohort) and returns
numbers or frames; no I/O. Where a sales team works a fixed number of leads, volumes are
counted per snapshot date, because each date's list is what sales would have been handed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
import pandas as pd

from leadscore.config import ReportConfig, TierConfig
from leadscore.modeling.metrics import (  # noqa: F401  (the bootstrap, re-exported)
    Interval,
    _weighted_ranking_metrics,
    bootstrap_ranking,
    calibration_table,
    classification_metrics,
    expected_captured,
    ranking_metrics,
)
from leadscore.scoring.tiers import TIERS, assign_tiers

# --------------------------------------------------------------------------- ranking metrics


def gains_table(y: np.ndarray, score: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Conversions, lift and cumulative gains per equal-size bin of leads ranked by `score`."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    edges = np.round(np.linspace(0, n, n_bins + 1)).astype(int)
    cumulative = expected_captured(y, score, edges[1:])
    per_bin = np.diff(np.r_[0.0, cumulative])
    leads = np.diff(edges)
    base = y.mean() if n else float("nan")
    total = y.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = per_bin / leads
        return pd.DataFrame(
            {
                "bin": np.arange(1, n_bins + 1),
                "leads": leads,
                "conversions": per_bin,
                "conversion_rate": rate,
                "lift": rate / base,
                "cumulative_leads_share": edges[1:] / n,
                "cumulative_conversions": cumulative,
                "cumulative_capture_share": cumulative / total if total else np.nan,
                "cumulative_lift": (cumulative / edges[1:]) / base,
            }
        )


def gains_curve(y: np.ndarray, score: np.ndarray, points: int = 101) -> pd.DataFrame:
    """Share of conversions captured against share of leads worked, for the gains chart."""
    n = len(y)
    share = np.linspace(0, 1, points)
    captured = expected_captured(y, score, np.round(share * n))
    total = float(np.sum(y))
    return pd.DataFrame({"leads_share": share, "captured_share": captured / max(total, 1e-12)})


def worked_probability(score: np.ndarray, as_of: np.ndarray, volume: dict | Integral) -> np.ndarray:
    """Per row: the chance it is among the top `volume[date]` of its snapshot date.

    1 above the cut, 0 below; inside the tie group that straddles the cut, the share of
    that group which fits (a random pick among equal scores).
    """
    score = np.asarray(score, dtype=float)
    dates = pd.to_datetime(pd.Series(as_of)).dt.tz_localize(None).to_numpy()
    keys = (
        {}
        if isinstance(volume, Integral)
        else {pd.Timestamp(k).tz_localize(None): int(v) for k, v in volume.items()}
    )
    worked = np.zeros(len(score))
    for date in np.unique(dates):
        rows = np.flatnonzero(dates == date)
        if isinstance(volume, Integral):
            k = int(volume)
        elif pd.Timestamp(date) in keys:
            k = keys[pd.Timestamp(date)]
        else:
            raise KeyError(f"no volume given for snapshot date {pd.Timestamp(date).date()}")
        s = score[rows]
        k = min(max(k, 0), len(s))
        if k == 0:
            continue
        threshold = np.sort(s)[::-1][k - 1]
        above = s > threshold
        tied = s == threshold
        worked[rows[above]] = 1.0
        worked[rows[tied]] = (k - above.sum()) / tied.sum()
    return worked


def leads_found(y: np.ndarray, lead_id: np.ndarray, worked: np.ndarray) -> float:
    """Expected converting leads that were worked on a date where their row is converted.

    A lead can sit in several snapshots of one conversion; it is counted once.
    """
    converted = np.asarray(y, dtype=float) > 0
    if not converted.any():
        return 0.0
    frame = pd.DataFrame(
        {"lead": np.asarray(lead_id)[converted], "miss": 1.0 - np.asarray(worked)[converted]}
    )
    return float((1.0 - frame.groupby("lead", sort=False)["miss"].prod()).sum())


# ------------------------------------------------------------------------------ tiers, 2x2


def quadrants(y: np.ndarray, is_mql: np.ndarray, is_hot: np.ndarray) -> pd.DataFrame:
    """The 2x2 of rule MQL x model hot list: leads, conversions and conversion rate per cell."""
    y = np.asarray(y, dtype=float)
    mql = np.asarray(is_mql, dtype=bool)
    hot = np.asarray(is_hot, dtype=bool)
    rows = []
    for m in (True, False):
        for h in (True, False):
            cell = (mql == m) & (hot == h)
            n = int(cell.sum())
            conv = float(y[cell].sum())
            rows.append(
                {
                    "rule_mql": m,
                    "model_hot": h,
                    "leads": n,
                    "conversions": conv,
                    "conversion_rate": conv / n if n else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def tier_table(y: np.ndarray, tiers: np.ndarray, probability: np.ndarray) -> pd.DataFrame:
    """Leads, conversions, observed and predicted rate per tier."""
    frame = pd.DataFrame({"tier": tiers, "y": np.asarray(y, float), "p": probability})
    out = (
        frame.groupby("tier")
        .agg(leads=("y", "size"), conversions=("y", "sum"), mean_probability=("p", "mean"))
        .reindex(list(TIERS))
        .fillna({"leads": 0, "conversions": 0})
    )
    out["conversion_rate"] = out["conversions"] / out["leads"].where(out["leads"] > 0)
    return out.reset_index()


# ---------------------------------------------------------------------------- the comparison


@dataclass
class Comparison:
    """Everything marketing's comparison shows, computed on one cohort."""

    rows: int
    leads: int
    conversions: float
    dates: list[str]
    intervals: dict[str, Interval]
    metrics: dict[str, dict[str, float]]
    gains: dict[str, pd.DataFrame]
    curves: dict[str, pd.DataFrame]
    calibration: dict[str, dict[str, np.ndarray]]
    converting_leads: int
    mql_volume: int
    mql_per_date: float
    captured_at_mql_volume: dict[str, float]
    capacity_per_week: int | None
    capacity_per_date: int | None
    captured_at_capacity: dict[str, float] | None
    quadrants: pd.DataFrame
    tiers: pd.DataFrame
    hot_tiers: list[str] = field(default_factory=list)
    #: converted, conversion_probability and rule_score per row, for distribution charts.
    distributions: dict[str, np.ndarray] = field(default_factory=dict)

    def headline(self, words=None) -> str:
        """One sentence with the key number, for the top of the report and the CLI, in the
        language of `words` (an `i18n.Words`; English without one)."""
        if words is None:
            from leadscore.i18n import Words

            words = Words("en")
        m = self.captured_at_mql_volume["model"]
        r = self.captured_at_mql_volume["rules"]
        if self.mql_volume == 0:
            top = self.metrics["model"].get("top_decile_captured", float("nan"))
            return words(
                "report.headline.no_mqls",
                cohort=self._cohort(words),
                found=words.num(top) if np.isfinite(top) else "-",
                converting=words.num(self.converting_leads),
            )
        more = m - r
        relative = ""
        if r > 0:
            change = ("+" if more >= 0 else "−") + words.pct(abs(more) / r, 0)
            relative = words("report.headline.relative", change=change)
        if len(self.dates) == 1:
            volume = words(
                "report.headline.volume_one",
                mqls=words.num(self.mql_volume),
                rows=words.num(self.rows),
            )
        else:
            volume = words("report.headline.volume_many", per=words.num(self.mql_per_date))
        return words(
            "report.headline.compared",
            volume=volume,
            model=words.num(m),
            converting=words.num(self.converting_leads),
            rules=words.num(r),
            more=("+" if more >= 0 else "−") + words.num(abs(more)),
            relative=relative,
        )

    def _cohort(self, words) -> str:
        """The test cohort in words: its leads (one date, as a flat export's), or its lead
        snapshots over several dates."""
        if len(self.dates) == 1:
            return words("report.headline.cohort_one", rows=words.num(self.rows))
        return words(
            "report.headline.cohort_many", rows=words.num(self.rows), dates=len(self.dates)
        )


def compare(
    scored: pd.DataFrame,
    report: ReportConfig,
    tiers: TierConfig,
    snapshot_every_days: int,
    seed: int = 0,
) -> Comparison:
    """Compare the model and the rules on a scored, labelled cohort.

    `scored` has lead_id, as_of, converted, conversion_probability, rule_score,
    rule_probability and is_mql (one row per lead and snapshot date).
    """
    y = scored["converted"].to_numpy(dtype=float)
    p = scored["conversion_probability"].to_numpy(dtype=float)
    rule = scored["rule_score"].to_numpy(dtype=float)
    rule_p = scored["rule_probability"].to_numpy(dtype=float)
    mql = scored["is_mql"].to_numpy(dtype=bool)
    as_of = pd.to_datetime(scored["as_of"]).to_numpy()
    intervals = bootstrap_ranking(
        y,
        {"model": p, "rules": rule},
        scored["lead_id"].to_numpy(),
        samples=report.bootstrap_samples,
        seed=seed,
    )
    metrics = {
        "model": classification_metrics(y, p, p),
        "rules": classification_metrics(y, rule, rule_p),
    }
    leads = scored["lead_id"].to_numpy()
    dates = sorted(pd.unique(pd.Series(as_of)))
    # Today's sales volume: as many leads on each date as the rules flagged that day.
    mql_by_date = {pd.Timestamp(d): int(mql[as_of == d].sum()) for d in dates}
    at_mql = {
        "model": leads_found(y, leads, worked_probability(p, as_of, mql_by_date)),
        "rules": leads_found(y, leads, mql.astype(float)),
    }
    capacity_per_date = None
    at_capacity = None
    if report.sales_capacity_per_week is not None:
        # Each snapshot's list is worked until the next snapshot.
        capacity_per_date = max(1, round(report.sales_capacity_per_week * snapshot_every_days / 7))
        at_capacity = {
            "model": leads_found(y, leads, worked_probability(p, as_of, capacity_per_date)),
            "rules": leads_found(y, leads, worked_probability(rule, as_of, capacity_per_date)),
        }
    tier = assign_tiers(p, as_of, tiers, scored["lead_id"].to_numpy())
    hot = np.isin(tier, report.hot_tiers)
    return Comparison(
        rows=len(scored),
        leads=int(scored["lead_id"].nunique()),
        conversions=float(y.sum()),
        dates=[str(pd.Timestamp(d).date()) for d in dates],
        intervals=intervals,
        metrics=metrics,
        gains={"model": gains_table(y, p), "rules": gains_table(y, rule)},
        curves={"model": gains_curve(y, p), "rules": gains_curve(y, rule)},
        calibration={"model": calibration_table(y, p), "rules": calibration_table(y, rule_p)},
        converting_leads=int(pd.Series(leads[y > 0]).nunique()),
        mql_volume=int(mql.sum()),
        mql_per_date=float(mql.sum()) / max(len(dates), 1),
        captured_at_mql_volume=at_mql,
        capacity_per_week=report.sales_capacity_per_week,
        capacity_per_date=capacity_per_date,
        captured_at_capacity=at_capacity,
        quadrants=quadrants(y, mql, hot),
        tiers=tier_table(y, tier, p),
        hot_tiers=list(report.hot_tiers),
        distributions={"converted": y, "conversion_probability": p, "rule_score": rule},
    )
