"""Tiers A-D: where a lead's probability ranks within its scoring run, as sales reads it.

`tiers.by` in the project file: `share` (A = the top 10 % of each run, ...), `count` (the
first N leads, for a sales team's capacity) or `probability` (fixed floors).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.config import TierConfig

TIERS = ("A", "B", "C", "D")


def assign_tiers(
    probability: np.ndarray,
    as_of: np.ndarray,
    config: TierConfig,
    tiebreak: np.ndarray | None = None,
) -> np.ndarray:
    """Tier A-D per lead; shares and counts are taken within each snapshot date (one run).

    Shares and counts are kept exactly, also when probabilities tie (isotonic calibration
    gives long runs of equal values): equal probabilities are ordered by `tiebreak` (the
    lead id), so a sales team's capacity is never exceeded and reruns agree.
    """
    p = np.asarray(probability, dtype=float)
    cut = np.asarray(config.cutoffs, dtype=float)
    if config.by == "probability":
        level = np.searchsorted(-cut, -p, side="left")  # p >= cut[0] -> 0 (A), ...
        return np.asarray(TIERS, dtype=object)[np.minimum(level, 3)]
    days = pd.to_datetime(pd.Series(as_of)).to_numpy()
    second = np.arange(len(p)) if tiebreak is None else np.asarray(tiebreak)
    order = np.lexsort((second, -p, days))  # by date, then probability down, then id
    sorted_days = days[order]
    starts = np.flatnonzero(np.r_[True, sorted_days[1:] != sorted_days[:-1]])
    sizes = np.diff(np.r_[starts, len(p)])
    rank = np.empty(len(p))
    rank[order] = np.arange(len(p)) - np.repeat(starts, sizes) + 1  # 1 = best of its run
    if config.by == "share":
        size = np.empty(len(p))
        size[order] = np.repeat(sizes, sizes)
        level = np.searchsorted(cut, rank / size - 1e-12, side="left")
    else:
        level = np.searchsorted(cut, rank, side="left")
    return np.asarray(TIERS, dtype=object)[np.minimum(level, 3)]


def rule_point_floors(mql_threshold: float, config: TierConfig) -> list[float]:
    """Tier floors of rules-only scores: `tiers.rule_points`, else A from the MQL threshold,
    B from two thirds of it, C from one third, in whole points (a threshold of 0 or less:
    A = MQL, else D)."""
    if config.rule_points is not None:
        return [float(v) for v in config.rule_points]
    t = float(mql_threshold)
    if t <= 0:
        return [t, t, t]
    # Whole points, as rule files are written (a threshold below 3 keeps its fractions).
    return [t, *(float(round(t * k / 3)) if t >= 3 else t * k / 3 for k in (2, 1))]


def assign_rule_tiers(rule_score: np.ndarray, floors: list[float]) -> np.ndarray:
    """Tier A-D of rules-only scores by rule points: A at or above the first floor, ..."""
    level = np.searchsorted(-np.asarray(floors, dtype=float), -np.asarray(rule_score, float))
    return np.asarray(TIERS, dtype=object)[np.minimum(level, 3)]
