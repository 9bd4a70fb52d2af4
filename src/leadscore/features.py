"""Attribute and behaviour features, point-in-time, as pure vectorised functions.

Two steps, both used identically for training and scoring:

1. :func:`snapshot_rows` joins each snapshot (`lead_id`, `as_of`) with the lead's raw
   attributes and its behaviour aggregates from activities strictly before `as_of`. These
   "raw snapshot rows" are what the packaged model takes.
2. :class:`FeatureBuilder` (inside the packaged model) derives attribute features (title →
   seniority/department, e-mail domain → kind), fixes categories at fit time and returns the
   matrix LightGBM sees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadscore.config import FeatureConfig
from leadscore.titles import (
    DEPARTMENTS,
    SENIORITY_LEVELS,
    department_from_title,
    seniority_from_title,
)

EMAIL_KINDS = ("corporate", "free_mail", "student", "competitor", "unknown")
OTHER = "__other__"
TREND_RECENT_DAYS = 7
TREND_PREVIOUS_DAYS = 21
#: Half-life of the decayed engagement scores: each event counts 0.5 ** (age / half-life).
DECAY_HALF_LIFE_DAYS = 14


@dataclass(frozen=True)
class BehaviourSpec:
    """What behaviour features exist; fixed at fit time and stored with the model."""

    activity_types: tuple[str, ...]
    page_categories: dict[str, str]
    page_activity_type: str
    windows_days: tuple[int, ...]
    recency_cap_days: int
    #: False for flat exports: no activities, so no behaviour columns at all.
    enabled: bool = True

    @classmethod
    def none(cls) -> BehaviourSpec:
        """No behaviour features (a flat export without activities)."""
        return cls((), {}, "", (), 0, enabled=False)

    @property
    def lookback_days(self) -> int:
        if not self.enabled:
            return 0
        return max(
            max(self.windows_days), self.recency_cap_days, TREND_RECENT_DAYS + TREND_PREVIOUS_DAYS
        )

    def keys(self) -> list[str]:
        """Behaviour keys: one per activity type, then one per page category."""
        if not self.enabled:
            return []
        return [*self.activity_types, *(f"page_{c}" for c in self.page_categories)]

    def columns(self) -> list[str]:
        """Names of the behaviour columns, in a stable order."""
        if not self.enabled:
            return []
        cols = []
        for key in self.keys():
            cols += [f"n_{key}_{w}d" for w in self.windows_days]
            cols.append(f"days_since_{key}")
            cols.append(f"decayed_{key}")
        cols += [f"n_all_{w}d" for w in self.windows_days]
        cols.append("decayed_all")
        cols += [
            f"active_days_{max(self.windows_days)}d",
            "trend_7d_vs_prev_21d",
            "days_since_any",
            "lead_age_days",
        ]
        return cols


def behaviour_spec(
    activities: pd.DataFrame, config: FeatureConfig, max_activity_types: int = 30
) -> BehaviourSpec:
    """The behaviour spec for a training set: its activity types (most frequent first)."""
    counts = activities["activity_type"].value_counts()
    types = tuple(sorted(str(t) for t in counts.index[:max_activity_types]))
    return BehaviourSpec(
        activity_types=types,
        page_categories=dict(config.page_categories),
        page_activity_type=config.page_activity_type,
        windows_days=tuple(config.windows_days),
        recency_cap_days=config.recency_cap_days,
    )


def page_category(detail: pd.Series, categories: dict[str, str]) -> pd.Series:
    """The first category whose pattern matches the detail (URL path); missing if none.

    Patterns run once per distinct detail, not per event: URL paths repeat a lot.
    """
    codes, uniques = pd.factorize(detail.astype("str"), use_na_sentinel=True)
    text = pd.Series(uniques, dtype="str")
    result = pd.Series(pd.NA, index=text.index, dtype="str")
    for name, pattern in categories.items():
        hit = (
            text.str.contains(pattern, regex=True, flags=re.IGNORECASE).fillna(False)
            & result.isna()
        )
        result = result.mask(hit.astype(bool), name)
    mapped = result.to_numpy(dtype=object)
    values = np.where(codes >= 0, mapped[np.maximum(codes, 0)] if len(mapped) else None, None)
    return pd.Series(values, index=detail.index, dtype="str")


@dataclass(frozen=True)
class ActivityIndex:
    """Activities sorted by time as integer-coded arrays, classified once per run."""

    times: np.ndarray  # datetime64[us], ascending
    lead_id: np.ndarray
    type_code: np.ndarray  # index into type_names
    type_names: tuple[str, ...]
    category_code: np.ndarray  # index into category_names, -1 when not a categorised page view
    category_names: tuple[str, ...]

    def window(self, as_of: np.datetime64, days: int) -> slice:
        """Events in [as_of - days, as_of): strictly before the snapshot."""
        lo, hi = np.searchsorted(
            self.times, [as_of - np.timedelta64(days, "D"), as_of], side="left"
        )
        return slice(int(lo), int(hi))

    def type_codes(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """Map this index's type codes to positions in `names` (-1 when absent)."""
        lookup = np.array([names.index(t) if t in names else -1 for t in self.type_names] + [-1])
        return lookup[self.type_code]

    def category_codes(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        lookup = np.array(
            [names.index(c) if c in names else -1 for c in self.category_names] + [-1]
        )
        return lookup[self.category_code]


def index_activities(
    activities: pd.DataFrame, page_categories: dict[str, str], page_activity_type: str
) -> ActivityIndex:
    """Sort activities by time and code their type and page category."""
    acts = activities.sort_values("occurred_at", kind="stable")
    type_code, type_names = pd.factorize(acts["activity_type"].astype("str"), sort=True)
    type_names = tuple(str(t) for t in type_names)
    is_page = (
        (type_code == type_names.index(page_activity_type))
        if page_activity_type in type_names
        else np.zeros(len(acts), bool)
    )
    category_code = np.full(len(acts), -1, dtype=np.int64)
    names = tuple(page_categories)
    if is_page.any() and names:
        cats = page_category(acts["detail"].iloc[np.flatnonzero(is_page)], page_categories)
        category_code[is_page] = pd.Categorical(cats, categories=list(names)).codes
    return ActivityIndex(
        times=acts["occurred_at"].to_numpy(dtype="datetime64[us]"),
        lead_id=acts["lead_id"].to_numpy(),
        type_code=np.where(type_code >= 0, type_code, len(type_names)).astype(np.int64),
        type_names=type_names,
        category_code=category_code,
        category_names=names,
    )


def behaviour_features(
    snapshots: pd.DataFrame,
    activities: ActivityIndex,
    leads: pd.DataFrame,
    spec: BehaviourSpec,
) -> pd.DataFrame:
    """Behaviour columns for each snapshot row, from activities strictly before its `as_of`."""
    if not spec.enabled:
        return pd.DataFrame(index=snapshots.index)
    n = len(snapshots)
    keys = spec.keys()
    k = len(keys)
    windows = spec.windows_days
    counts = np.zeros((len(windows), n, k), dtype=np.float64)
    decayed = np.zeros((n, k), dtype=np.float64)
    decayed_all = np.zeros(n, dtype=np.float64)
    totals = np.zeros((len(windows), n), dtype=np.float64)
    recency = np.full((n, k), np.inf)
    recency_any = np.full(n, np.inf)
    active_days = np.zeros(n)
    recent = np.zeros(n)
    previous = np.zeros(n)

    type_code = activities.type_codes(spec.activity_types)
    cat_code = activities.category_codes(tuple(spec.page_categories))
    cat_code = np.where(cat_code >= 0, cat_code + len(spec.activity_types), -1)
    as_of_all = snapshots["as_of"].to_numpy(dtype="datetime64[us]")
    snapshot_leads = snapshots["lead_id"].to_numpy()
    day = np.timedelta64(1, "D")

    for as_of in np.unique(as_of_all):
        rows = np.flatnonzero(as_of_all == as_of)
        window = activities.window(as_of, spec.lookback_days)  # [as_of - lookback, as_of)
        if window.stop <= window.start:
            continue
        pos = pd.Index(snapshot_leads[rows]).get_indexer(activities.lead_id[window])
        known = pos >= 0
        pos = pos[known]
        age = (as_of - activities.times[window][known]) / day  # days before as_of, > 0
        t_code = type_code[window][known]
        c_code = cat_code[window][known]
        m = len(rows)
        weight = 0.5 ** (age / DECAY_HALF_LIFE_DAYS)
        decayed_all[rows] = np.bincount(pos, weight, minlength=m)
        for code in (t_code, c_code):
            has = code >= 0
            flat = pos[has] * k + code[has]
            decayed[rows] += np.bincount(flat, weight[has], minlength=m * k).reshape(m, k)
            for wi, w in enumerate(windows):
                inw = age[has] <= w
                counts[wi, rows] += np.bincount(flat[inw], minlength=m * k).reshape(m, k)
            rec = np.full(m * k, np.inf)
            capped = age[has] <= spec.recency_cap_days
            np.minimum.at(rec, flat[capped], age[has][capped])
            recency[rows] = np.minimum(recency[rows], rec.reshape(m, k))
        for wi, w in enumerate(windows):
            totals[wi, rows] = np.bincount(pos[age <= w], minlength=m)
        rec_any = np.full(m, np.inf)
        capped = age <= spec.recency_cap_days
        np.minimum.at(rec_any, pos[capped], age[capped])
        recency_any[rows] = rec_any
        widest = age <= max(windows)
        # Distinct calendar days (UTC) with any activity.
        event_day = activities.times[window][known][widest].astype("datetime64[D]").astype(np.int64)
        pairs = np.unique(pos[widest].astype(np.int64) * 1_000_000 + event_day)
        active_days[rows] = np.bincount(pairs // 1_000_000, minlength=m)
        recent[rows] = np.bincount(pos[age <= TREND_RECENT_DAYS], minlength=m)
        prev = (age > TREND_RECENT_DAYS) & (age <= TREND_RECENT_DAYS + TREND_PREVIOUS_DAYS)
        previous[rows] = np.bincount(pos[prev], minlength=m)

    data: dict[str, np.ndarray] = {}
    for ki, key in enumerate(keys):
        for wi, w in enumerate(windows):
            data[f"n_{key}_{w}d"] = counts[wi, :, ki]
        data[f"days_since_{key}"] = np.where(np.isinf(recency[:, ki]), np.nan, recency[:, ki])
        data[f"decayed_{key}"] = decayed[:, ki]
    for wi, w in enumerate(windows):
        data[f"n_all_{w}d"] = totals[wi]
    data["decayed_all"] = decayed_all
    data[f"active_days_{max(windows)}d"] = active_days
    # Activity rate of the last 7 days relative to the 21 before (1 = steady, >1 = heating up).
    data["trend_7d_vs_prev_21d"] = (recent / TREND_RECENT_DAYS + 0.1) / (
        previous / TREND_PREVIOUS_DAYS + 0.1
    )
    data["days_since_any"] = np.where(np.isinf(recency_any), np.nan, recency_any)
    created = (
        snapshots[["lead_id"]]
        .merge(leads[["lead_id", "created_at"]], on="lead_id", how="left")["created_at"]
        .to_numpy(dtype="datetime64[us]")
    )
    data["lead_age_days"] = (as_of_all - created) / day
    return pd.DataFrame(data, index=snapshots.index)[spec.columns()]


def email_domain(emails: pd.Series) -> pd.Series:
    """The lower-cased domain of each address; the mailbox part is dropped (personal data)."""
    text = emails.astype("str").str.strip().str.lower()
    domain = text.str.extract(r"@([^@\s]+)$", expand=False)
    return domain.astype("str")


def snapshot_rows(
    snapshots: pd.DataFrame,
    leads: pd.DataFrame,
    activities: ActivityIndex,
    spec: BehaviourSpec,
    attribute_columns: list[str],
    email_column: str | None,
) -> pd.DataFrame:
    """Raw snapshot rows: keys, lead attributes (e-mail reduced to its domain), behaviour."""
    attrs = snapshots[["lead_id", "as_of"]].merge(
        leads[["lead_id", *attribute_columns, *([email_column] if email_column else [])]],
        on="lead_id",
        how="left",
        validate="many_to_one",
    )
    attrs.index = snapshots.index
    if email_column:
        attrs["email_domain"] = email_domain(attrs.pop(email_column))
    behaviour = behaviour_features(snapshots, activities, leads, spec)
    return pd.concat([attrs, behaviour], axis=1)


def derive_attributes(
    rows: pd.DataFrame, title_column: str | None, config: FeatureConfig
) -> pd.DataFrame:
    """Seniority and department from the title, kind from the e-mail domain (new frame)."""
    out = pd.DataFrame(index=rows.index)
    titles = (
        rows[title_column]
        if title_column and title_column in rows
        else pd.Series(pd.NA, index=rows.index, dtype="str")
    )
    out["seniority"] = seniority_from_title(titles)
    out["department"] = department_from_title(titles)
    domain = (
        rows["email_domain"]
        if "email_domain" in rows
        else pd.Series(pd.NA, index=rows.index, dtype="str")
    )
    out["email_domain_kind"] = email_domain_kind(domain, config)
    return out


def email_domain_kind(domain: pd.Series, config: FeatureConfig) -> pd.Series:
    """corporate / free_mail / student / competitor / unknown for each domain."""
    codes, uniques = pd.factorize(domain.astype("str").str.lower(), use_na_sentinel=True)
    d = pd.Series(uniques, dtype="str")
    kind = pd.Series("corporate", index=d.index, dtype="str")
    student = d.str.contains("|".join(config.student_domain_patterns), regex=True).fillna(False)
    kind = kind.mask(student.astype(bool), "student")
    kind = kind.mask(
        d.isin([x.lower() for x in config.free_mail_domains]).fillna(False), "free_mail"
    )
    competitor = d.isin([x.lower() for x in config.competitor_domains]).fillna(False)
    kind = kind.mask(competitor, "competitor")
    kind = kind.mask(d.isna() | d.eq(""), "unknown").to_numpy(dtype=object)
    mapped = np.append(kind, "unknown")[np.where(codes >= 0, codes, len(kind))]
    return pd.Series(mapped, index=domain.index, dtype="str")


@dataclass
class FeatureBuilder:
    """Raw snapshot rows → LightGBM matrix; categories are fixed when fitted.

    Follows scikit-learn conventions: parameters in the constructor, fitted attributes end
    in `_`, `fit` returns self.
    """

    categorical: list[str]
    numeric: list[str]
    title_column: str | None
    feature_config: FeatureConfig
    behaviour: BehaviourSpec
    max_categories: int = 50
    min_category_count: int = 20
    #: Derive seniority/department (from the title) and the e-mail domain kind; off when the
    #: source has no such column, so no constant feature is made up.
    derive_title: bool = True
    derive_email: bool = True
    categories_: dict[str, list[str]] = field(default_factory=dict)
    feature_names_: list[str] = field(default_factory=list)

    DERIVED = ("seniority", "department", "email_domain_kind")

    def _attribute_frame(self, rows: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame(index=rows.index)
        for col in self.categorical:
            frame[col] = (
                rows[col].astype("str")
                if col in rows
                else pd.Series(pd.NA, index=rows.index, dtype="str")
            )
        derived = derive_attributes(rows, self.title_column, self.feature_config)
        for col in self.derived:
            frame[col] = derived[col]
        return frame

    @property
    def derived(self) -> list[str]:
        """The derived columns this builder makes."""
        return [
            c
            for c in self.DERIVED
            if (c == "email_domain_kind" and self.derive_email)
            or (c != "email_domain_kind" and self.derive_title)
        ]

    def fit(self, rows: pd.DataFrame) -> FeatureBuilder:
        """Fix the categories of every categorical column from the training rows."""
        frame = self._attribute_frame(rows)
        fixed = {
            "seniority": list(SENIORITY_LEVELS),
            "department": list(DEPARTMENTS),
            "email_domain_kind": list(EMAIL_KINDS),
        }
        self.categories_ = {}
        for col in frame.columns:
            if col in fixed:
                self.categories_[col] = fixed[col]
                continue
            counts = frame[col].value_counts()
            frequent = counts[counts >= self.min_category_count].index[: self.max_categories]
            self.categories_[col] = [*sorted(str(v) for v in frequent), OTHER]
        self.feature_names_ = [*frame.columns, *self.numeric, *self.behaviour.columns()]
        return self

    def transform(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The model matrix: fitted categories (unseen values → other), floats elsewhere."""
        if not self.feature_names_:
            raise RuntimeError("FeatureBuilder is not fitted")
        frame = self._attribute_frame(rows)
        out = {}
        for col, cats in self.categories_.items():
            values = frame[col]
            known = values.isin(cats) | values.isna()
            values = values.where(known, OTHER)
            out[col] = pd.Categorical(values, categories=cats)
        for col in [*self.numeric, *self.behaviour.columns()]:
            out[col] = (
                pd.to_numeric(rows[col], errors="coerce").astype("float64")
                if col in rows
                else np.nan
            )
        return pd.DataFrame(out, index=rows.index)[self.feature_names_]

    @property
    def categorical_features(self) -> list[str]:
        return list(self.categories_)
