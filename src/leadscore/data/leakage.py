"""The leakage guard: find lead columns that tell the outcome instead of predicting it.

Exports often carry columns filled in after the outcome (sales tags, lead quality, a
"last activity" that includes the sales call). A model trained on them looks perfect and is
useless. The guard looks at each attribute column before training, on the fitting cohorts
only (never the test cohort), and excludes it when

- `single_auc`: the column alone ranks the validation leads almost perfectly (fitted on
  train, so a memorised id does not count);
- `certain_values`: values that convert at >= 95 % carry a large share of all conversions
  (a tag like "Closed by sales");
- `filled_for_converted`: it is filled for converted leads far more often than for the
  others, and for fewer than half of those (entered by sales after contact);
- `after_conversion`: it holds timestamps that lie after the lead's conversion;
- `state_name` (flat exports only, which have no time to prove a column was known before the
  outcome): its name says it holds the lead's latest state ("Last Activity", "Lead Quality").

Every finding is named with its evidence; `leakage.keep` overrides, `leakage.exclude` adds.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore.config import LeakageConfig

#: A value "converts almost always" at this rate.
CERTAIN_RATE = 0.95
#: Fewest training rows for a value to count as certain.
MIN_VALUE_ROWS = 20
#: Numeric columns with at most this many distinct values are also checked value by value.
MAX_VALUES_NUMERIC = 30


@dataclass(frozen=True)
class Finding:
    """One suspicious column: why, with numbers, and whether it was excluded.

    `facts` are the checks that fired with their numbers ({"check": "single_auc", "auc":
    0.97}); `evidence` is them in English words, and `describe` says them in any language.
    """

    column: str
    check: str
    evidence: str
    excluded: bool
    facts: tuple[dict, ...] = ()

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["facts"] = [dict(f) for f in self.facts]
        return out


def describe(facts, excluded: bool, words=None) -> str:
    """A finding's facts in the words of `words` (an `i18n.Words`; English without one)."""
    if words is None:
        from leadscore.i18n import Words

        words = Words("en")
    said = []
    for fact in facts:
        shown = {
            k: (words.pct(v, 0) if k in ("share", "rate", "filled", "others") else v)
            for k, v in fact.items()
            if k != "check"
        }
        if "auc" in shown:
            shown["auc"] = words.num(fact["auc"], 3)
        if "names" in shown:
            shown["names"] = words("leakage.names_glue").join(fact["names"])
        said.append(words(f"leakage.{fact['check']}", **shown))
    text = words("leakage.glue").join(said)
    return text if excluded else text + words("leakage.kept")


def _tokens(name: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return {t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t}


def _encode(train: pd.Series, y: np.ndarray, other: pd.Series, numeric: bool) -> np.ndarray:
    """Smoothed conversion rate per value (per decile bin for numbers), fitted on train."""
    prior = float(y.mean())
    if numeric and train.nunique() > MAX_VALUES_NUMERIC:
        edges = np.unique(np.nanquantile(train.to_numpy(dtype=float), np.linspace(0, 1, 11)))
        if len(edges) < 2:
            return np.full(len(other), prior)

        def key(s: pd.Series) -> pd.Series:
            codes = np.searchsorted(edges[1:-1], s.to_numpy(dtype=float), side="right")
            return pd.Series(np.where(s.isna(), -1, codes), index=s.index)
    else:

        def key(s: pd.Series) -> pd.Series:
            return s.astype("str").fillna("__missing__")

    frame = pd.DataFrame({"k": key(train).to_numpy(), "y": y})
    stats = frame.groupby("k")["y"].agg(["sum", "count"])
    rate = (stats["sum"] + 10 * prior) / (stats["count"] + 10)
    return key(other).map(rate).fillna(prior).to_numpy(dtype=float)


def single_column_auc(
    train: pd.Series, y_train: np.ndarray, valid: pd.Series, y_valid: np.ndarray, numeric: bool
) -> float:
    """ROC-AUC on validation of the column alone (direction-free)."""
    if len(np.unique(y_valid)) < 2:
        return float("nan")
    auc = roc_auc_score(y_valid, _encode(train, y_train, valid, numeric))
    return float(max(auc, 1 - auc))


def certain_share(values: pd.Series, y: np.ndarray) -> tuple[float, list[str]]:
    """Share of conversions carried by values converting at >= 95 %, and those values."""
    frame = pd.DataFrame({"v": values.astype("str").to_numpy(), "y": y}).dropna(subset=["v"])
    stats = frame.groupby("v")["y"].agg(["sum", "count"])
    certain = stats[
        (stats["count"] >= MIN_VALUE_ROWS) & (stats["sum"] >= CERTAIN_RATE * stats["count"])
    ]
    total = float(np.sum(y))
    if total == 0:
        return 0.0, []
    return float(certain["sum"].sum() / total), [str(v) for v in certain.index]


def fill_rates(values: pd.Series, y: np.ndarray) -> tuple[float, float]:
    """Share of rows filled among converted and among other leads."""
    filled = values.notna().to_numpy()
    pos = y == 1
    return float(filled[pos].mean()) if pos.any() else 0.0, float(filled[~pos].mean()) if (
        ~pos
    ).any() else 0.0


def after_conversion_share(
    leads: pd.DataFrame, outcomes: pd.DataFrame, column: str
) -> float | None:
    """Share of converted leads whose value (when it reads as a timestamp) is after conversion.

    None when the column does not hold timestamps.
    """
    values = leads[column]
    if pd.api.types.is_numeric_dtype(values) or values.notna().sum() == 0:
        return None
    stamps = pd.to_datetime(values.astype("str"), errors="coerce", utc=True, format="ISO8601")
    if stamps.notna().sum() < 0.9 * values.notna().sum():
        return None
    stamps = stamps.dt.tz_localize(None)
    joined = pd.DataFrame({"lead_id": leads["lead_id"], "t": stamps}).merge(outcomes, on="lead_id")
    joined = joined.dropna()
    if joined.empty:
        return None
    return float((joined["t"] > joined["converted_at"]).mean())


def guard(
    columns: dict[str, bool],
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    config: LeakageConfig,
    flat: bool,
    leads: pd.DataFrame | None = None,
    outcomes: pd.DataFrame | None = None,
) -> list[Finding]:
    """Findings for the attribute `columns` (name -> is numeric), first reason per column.

    `train`/`valid` are the fitting cohorts' rows; `leads`/`outcomes` (timestamped sources)
    let the guard see columns that hold times after the conversion.
    """
    if not config.enabled:
        facts = ({"check": "exclude"},)
        return [Finding(c, "exclude", describe(facts, True), True, facts) for c in config.exclude]
    findings: list[Finding] = []
    words = {w.lower() for w in config.state_words}
    y_all = np.r_[y_train, y_valid]
    for col, numeric in columns.items():
        facts: list[dict] = []
        if col in config.exclude:
            facts.append({"check": "exclude"})
        auc = single_column_auc(train[col], y_train, valid[col], y_valid, numeric)
        if auc >= config.max_single_auc:
            facts.append({"check": "single_auc", "auc": float(auc)})
        both = pd.concat([train[col], valid[col]], ignore_index=True)
        if not numeric or both.nunique() <= MAX_VALUES_NUMERIC:
            share, values = certain_share(both, y_all)
            if share >= config.max_certain_share:
                facts.append({"check": "certain_values", "share": float(share),
                              "n": len(values), "rate": CERTAIN_RATE})  # fmt: skip
        pos, neg = fill_rates(both, y_all)
        if neg < 0.5 and pos >= config.max_fill_ratio * max(neg, 1e-9) and pos > 0.05:
            facts.append({"check": "filled_for_converted", "filled": float(pos),
                          "others": float(neg)})  # fmt: skip
        if leads is not None and outcomes is not None and len(outcomes) and col in leads:
            after = after_conversion_share(leads, outcomes, col)
            if after is not None and after >= config.max_after_conversion:
                facts.append({"check": "after_conversion", "share": float(after)})
        if flat:
            hit = sorted(_tokens(col) & words)
            if hit:
                facts.append({"check": "state_name", "names": hit})
        if facts:
            keep = col in config.keep
            findings.append(
                Finding(col, facts[0]["check"], describe(facts, not keep), not keep, tuple(facts))
            )
    return findings


def excluded(findings: list[Finding]) -> set[str]:
    return {f.column for f in findings if f.excluded}
