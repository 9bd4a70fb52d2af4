"""Metrics on scores and labels: pure functions, the same for the model and the rules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

#: Metrics computed for both the model and the rules (stable names).
METRIC_KEYS = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "ece",
    "top_decile_lift",
    "top_decile_captured",
)


def _quantile_bins(p: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Indices per bin with edges at the quantiles of `p`; tied predictions share a bin.

    Equal-count bins keep the estimate meaningful when most probabilities are small, as
    they are for lead conversion; keeping ties together makes the result independent of
    row order (isotonic outputs and rule scores tie a lot).
    """
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)[1:-1]))
    assignment = np.searchsorted(edges, p, side="right")
    return [np.flatnonzero(assignment == b) for b in range(len(edges) + 1)]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE over quantile bins: sum of bin share x |mean prediction - conversion rate|."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    bins = [b for b in _quantile_bins(p, n_bins) if len(b)]
    return float(sum(len(b) / len(y) * abs(p[b].mean() - y[b].mean()) for b in bins))


def expected_captured(y: np.ndarray, score: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Expected conversions among the `k` highest scores, for each k, ties at random.

    One sort for all `k`: within the tie group that straddles the boundary, each lead counts
    at the group's conversion rate, which is what a random pick among equal scores gives.
    """
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    ks = np.clip(np.asarray(ks, dtype=float), 0, len(y))
    if len(y) == 0:
        return np.zeros(len(ks))
    order = np.argsort(-score, kind="stable")
    s, yy = score[order], y[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, len(s)])
    positives = np.add.reduceat(yy, starts)
    before_n = np.r_[0, np.cumsum(sizes)[:-1]]
    before_y = np.r_[0, np.cumsum(positives)[:-1]]
    g = np.clip(np.searchsorted(np.cumsum(sizes), ks, side="left"), 0, len(starts) - 1)
    return before_y[g] + (ks - before_n[g]) * positives[g] / sizes[g]


def captured_in_top(y: np.ndarray, score: np.ndarray, k: int) -> float:
    """Expected conversions among the `k` highest scores, with ties broken at random.

    Rule scores tie a lot; counting the boundary tie group at its average rate is what a
    random pick among equally scored leads would give.
    """
    return float(expected_captured(y, score, np.array([k]))[0])


def classification_metrics(
    y: np.ndarray, score: np.ndarray, probability: np.ndarray | None
) -> dict[str, float]:
    """ROC-AUC and PR-AUC of `score`; Brier, log loss and ECE of `probability`; top-decile lift."""
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    out: dict[str, float] = {
        "n": float(len(y)),
        "conversions": float(y.sum()),
        "rate": float(y.mean()),
    }
    both = 0 < y.sum() < len(y)
    out["roc_auc"] = float(roc_auc_score(y, score)) if both else float("nan")
    out["pr_auc"] = float(average_precision_score(y, score)) if both else float("nan")
    if probability is not None:
        prob = np.clip(np.asarray(probability, dtype=float), 1e-6, 1 - 1e-6)
        out["brier"] = float(brier_score_loss(y, prob))
        out["log_loss"] = float(log_loss(y, prob, labels=[0, 1]))
        out["ece"] = expected_calibration_error(y, prob)
        out["mean_probability"] = float(prob.mean())
    k = max(1, round(0.1 * len(y)))
    captured = captured_in_top(y, score, k)
    out["top_decile_captured"] = captured
    out["top_decile_capture_share"] = captured / y.sum() if y.sum() else float("nan")
    out["top_decile_lift"] = (captured / k) / y.mean() if y.sum() else float("nan")
    return out


def calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Mean prediction, observed rate and count per equal-count bin, for calibration plots."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    bins = [b for b in _quantile_bins(p, n_bins) if len(b)] if len(p) else []
    return {
        "predicted": np.array([p[b].mean() for b in bins]),
        "observed": np.array([y[b].mean() for b in bins]),
        "count": np.array([len(b) for b in bins]),
    }


# ------------------------------------------------------------------------------- bootstrap


def _weighted_ranking_metrics(
    y: np.ndarray, score: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision for each row of `weights` (replicates x rows).

    Ties count half in the AUC and form one threshold in the average precision, as in
    scikit-learn; one sort serves all replicates.
    """
    order = np.argsort(score, kind="stable")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    w = weights[:, order]
    pos = np.add.reduceat(w * y[order], starts, axis=1)  # per tie group, ascending score
    neg = np.add.reduceat(w * (1 - y[order]), starts, axis=1)
    total_pos = pos.sum(axis=1)
    total_neg = neg.sum(axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)
        # Average precision walks thresholds from the highest score down.
        tp = np.cumsum(pos[:, ::-1], axis=1)
        fp = np.cumsum(neg[:, ::-1], axis=1)
        precision = tp / (tp + fp)
        ap = (pos[:, ::-1] * np.nan_to_num(precision)).sum(axis=1) / total_pos
    return auc, ap


def _resampled_ranking_metrics(
    y: np.ndarray, score: np.ndarray, codes: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`_weighted_ranking_metrics` with the weights of resampled groups: row i weighs
    `counts[:, codes[i]]`. The rows are summed per group and tie group once (a sparse
    matrix), so no (replicates x rows) array is ever made."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    tie = np.empty(len(s), dtype=np.int64)
    tie[order] = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
    shape = (int(counts.shape[1]), int(tie[order[-1]]) + 1 if len(s) else 0)
    per = counts.T.astype(np.float64)  # groups x replicates

    def summed(values: np.ndarray) -> np.ndarray:
        # Replicates x tie groups, highest score first (the walk of the average precision).
        ties = sparse.csr_matrix((values, (codes, tie)), shape=shape).T @ per
        return np.ascontiguousarray(ties[::-1].T)

    pos, neg = summed(y), summed(1 - y)
    total_pos = pos.sum(axis=1)
    total_neg = neg.sum(axis=1)
    tp = np.cumsum(pos, axis=1)
    fp = np.cumsum(neg, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Negatives ranked below a tie group: all of them minus those at or above it.
        auc = (pos * (total_neg[:, None] - fp + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)
        precision = tp / (tp + fp)
        ap = (pos * np.nan_to_num(precision)).sum(axis=1) / total_pos
    return auc, ap


def ranking_metrics(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """ROC-AUC and PR-AUC (average precision) of one score."""
    y = np.asarray(y, dtype=float)
    auc, ap = _weighted_ranking_metrics(y, np.asarray(score, float), np.ones((1, len(y))))
    return float(auc[0]), float(ap[0])


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a share (95% by default); (nan, nan) when n is 0."""
    if n <= 0:
        return float("nan"), float("nan")
    rate = successes / n
    centre = (rate + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z**2 / (4 * n * n)) / (1 + z**2 / n)
    return float(centre - half), float(centre + half)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap interval."""

    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def bootstrap_ranking(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    groups: np.ndarray,
    samples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int | None = None,
) -> dict[str, Interval]:
    """ROC-AUC and PR-AUC of each score, and of the first minus the second, with intervals.

    Leads are resampled, not rows: a lead's snapshots move together, so the interval is not
    narrowed by counting one lead twice. Every replicate scores both on the same resample
    (a paired bootstrap), which is what makes the interval of the difference meaningful.
    """
    y = np.asarray(y, dtype=float)
    names = list(scores)
    codes, uniques = pd.factorize(pd.Series(groups))
    n_groups = len(uniques)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {f"{m}_{n}": [] for n in names for m in ("auc", "ap")}
    # Replicates per batch: a few (replicates x rows) float arrays stay near 160 MB each.
    chunk = chunk or int(min(50, max(1, 20_000_000 // max(len(y), 1))))
    done = 0
    while done < samples:
        size = min(chunk, samples - done)
        counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=size)
        for name in names:
            auc, ap = _resampled_ranking_metrics(y, np.asarray(scores[name], float), codes, counts)
            draws[f"auc_{name}"].append(auc)
            draws[f"ap_{name}"].append(ap)
        done += size
    tail = (1 - level) / 2 * 100
    out: dict[str, Interval] = {}
    point = {n: ranking_metrics(y, scores[n]) for n in names}

    def interval(estimate: float, values: np.ndarray) -> Interval:
        values = values[np.isfinite(values)]
        low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (np.nan,) * 2
        return Interval(float(estimate), float(low), float(high))

    for name in names:
        out[f"roc_auc_{name}"] = interval(point[name][0], np.concatenate(draws[f"auc_{name}"]))
        out[f"pr_auc_{name}"] = interval(point[name][1], np.concatenate(draws[f"ap_{name}"]))
    if len(names) >= 2:
        a, b = names[:2]
        for metric, key, idx in (("auc", "roc_auc", 0), ("ap", "pr_auc", 1)):
            diff = np.concatenate(draws[f"{metric}_{a}"]) - np.concatenate(draws[f"{metric}_{b}"])
            out[f"{key}_difference"] = interval(point[a][idx] - point[b][idx], diff)
    return out
