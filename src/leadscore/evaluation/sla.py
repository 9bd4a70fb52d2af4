"""The sales SLA: how fast sales first touched a lead after it became an MQL (or tier A), and
how those leads converted by response time.

The moment a lead became a rule MQL is replayed from its activities: the published run that
first flagged it says which day; the lead's rule score is recomputed just after each of its
activities since the run before (with the rule file version that flagged it), and the first
activity that took it to the threshold is the moment. A tier A lead became one when its run
was published, so its moment is that run's as-of date. The response time runs from the
moment to the first sales touch (`review.touch_types`) at or after it; business days count
Monday to Friday.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.config.schema import response_target
from leadscore.data.features import index_activities
from leadscore.data.rules import RuleSet, parse_rule_text, rule_fields
from leadscore.errors import ConfigError
from leadscore.modeling.metrics import wilson_interval


@dataclass(frozen=True)
class Target:
    """A response-time target: minutes, counted in business time ("1bd") or not."""

    text: str
    minutes: float
    business: bool


def parse_target(text: str) -> Target:
    """ "5m", "1h", "1d" or "1bd" (one business day: 24 hours counted Monday to Friday)."""
    try:
        minutes, business = response_target(text)
    except ValueError as exc:
        raise ConfigError(f"review.sla_targets: {exc}") from None
    return Target(str(text).strip(), minutes, business)


def business_minutes(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Minutes from `start` to `end` that fall on Monday to Friday (UTC calendar days)."""
    start = np.asarray(start, dtype="datetime64[m]")
    end = np.asarray(end, dtype="datetime64[m]")
    start_day, end_day = start.astype("datetime64[D]"), end.astype("datetime64[D]")
    whole = np.busday_count(start_day + 1, end_day) * 1440.0
    first = np.where(np.is_busday(start_day), ((start_day + 1) - start).astype(float), 0.0)
    last = np.where(np.is_busday(end_day), (end - end_day).astype(float), 0.0)
    same = start_day == end_day
    within = np.where(np.is_busday(start_day), (end - start).astype(float), 0.0)
    out = np.where(same, within, np.where(end_day > start_day, whole + first + last, 0.0))
    return np.maximum(out, 0.0)


def _behaviour_matches(rules: RuleSet, acts: pd.DataFrame, config: ProjectConfig) -> dict:
    """Per behaviour rule: a boolean array over `acts` (the activities it counts)."""
    spec = config.features
    index = index_activities(acts, spec.page_categories, spec.page_activity_type)
    out = {}
    for rule in rules.behaviour_rules:
        if rule.activity not in index.type_names:
            out[rule.name] = np.zeros(len(acts), bool)
            continue
        hit = index.type_code == index.type_names.index(rule.activity)
        if rule.page_category is not None:
            if rule.page_category not in index.category_names:
                hit = np.zeros(len(acts), bool)
            else:
                hit &= index.category_code == index.category_names.index(rule.page_category)
        out[rule.name] = hit
    return out


def mql_moments(
    flagged: pd.DataFrame,
    rules: RuleSet,
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    config: ProjectConfig,
) -> pd.Series:
    """When each lead of `flagged` (lead_id, since, until: its flagging run's as-of date and
    the run before it) reached the MQL threshold of `rules`, replayed from its activities.

    A lead whose replay never reaches the threshold in (since, until) (the batch counts
    activity ages in whole days) gets `until`, the day its run flagged it.
    """
    out = pd.Series(pd.to_datetime(flagged["until"]).to_numpy(), index=flagged["lead_id"])
    if flagged.empty:
        return out
    ids = flagged["lead_id"].astype(str)
    lead_rows = leads[leads["lead_id"].astype(str).isin(set(ids))]
    fields = rule_fields(lead_rows.reset_index(drop=True), config)
    attribute = np.zeros(len(fields))
    for rule in rules.attribute_rules:
        attribute += rule.matches(fields) * rule.points
    attribute_points = pd.Series(attribute, index=lead_rows["lead_id"].astype(str).to_numpy())
    mine = activities[activities["lead_id"].astype(str).isin(set(ids))]
    mine = mine.assign(key=mine["lead_id"].astype(str)).sort_values("occurred_at")
    mine = mine.reset_index(drop=True)
    matches = _behaviour_matches(rules, mine, config)
    times = mine["occurred_at"].to_numpy(dtype="datetime64[us]")
    groups = mine.groupby("key").indices
    threshold = rules.mql_threshold
    moments = []
    for lead, since, until in zip(ids, flagged["since"], flagged["until"], strict=True):
        base = float(attribute_points.get(lead, 0.0))
        since, until = np.datetime64(since, "us"), np.datetime64(until, "us")
        if base >= threshold:  # who they are makes them an MQL: from the first moment seen
            moments.append(since)
            continue
        rows = groups.get(lead, np.empty(0, dtype=np.int64))
        t = times[rows]
        candidates = np.flatnonzero((t >= since) & (t < until))
        found = until
        for k in candidates:
            score = base
            for rule in rules.behaviour_rules:
                window = np.timedelta64(rule.within_days, "D")
                inside = matches[rule.name][rows] & (t <= t[k]) & (t > t[k] - window)
                points = float(inside.sum()) * rule.points
                if rule.cap is not None and rule.points != 0:
                    points = float(np.sign(points) * min(abs(points), rule.cap))
                score += points
            if score >= threshold:
                found = t[k]
                break
        moments.append(found)
    out[:] = np.asarray(moments, dtype="datetime64[us]")
    return out


def _local(values: np.ndarray, timezone: str) -> np.ndarray:
    """Naive UTC times as the wall clock of `timezone` shows them (naive)."""
    if timezone == "UTC":
        return values
    stamps = pd.Series(pd.to_datetime(values)).dt.tz_localize("UTC").dt.tz_convert(timezone)
    return stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


def response_minutes(
    moments: pd.Series,
    touches: pd.DataFrame,
    horizon_days: int,
    business: bool = False,
    timezone: str = "UTC",
) -> pd.Series:
    """Minutes from each lead's moment to its first sales touch at or after it, within the
    horizon (NaN: not touched in time). `touches` has lead_id and occurred_at (naive UTC).
    With `business`, only Monday to Friday counts, as calendar days in `timezone`."""
    if moments.empty:
        return pd.Series(dtype=float)
    merged = _nearest_touch(moments, touches, "forward", exact=True)
    touched = merged["touch"].notna() & (
        merged["touch"] < merged["moment"] + pd.Timedelta(days=horizon_days)
    )
    start = merged["moment"].to_numpy(dtype="datetime64[us]")
    end = merged["touch"].fillna(merged["moment"]).to_numpy(dtype="datetime64[us]")
    wall = (end - start) / np.timedelta64(1, "m")
    if business:
        start, end = (_local(values, timezone) for values in (start, end))
    minutes = business_minutes(start, end) if business else wall
    return pd.Series(np.where(touched, minutes, np.nan), index=moments.index)


def _nearest_touch(
    moments: pd.Series, touches: pd.DataFrame, direction: str, exact: bool
) -> pd.DataFrame:
    """Per lead (in `moments`' order): its moment and the nearest sales touch after it
    ("forward", at the moment itself if `exact`) or before it ("backward"), NaT if none."""
    frame = pd.DataFrame(
        {"key": moments.index.astype(str), "moment": pd.to_datetime(moments.to_numpy())}
    ).reset_index()
    t = touches.assign(key=touches["lead_id"].astype(str))[["key", "occurred_at"]]
    t = t.sort_values("occurred_at").rename(columns={"occurred_at": "touch"})
    merged = pd.merge_asof(
        frame.sort_values("moment"),
        t.assign(moment=t["touch"]),
        on="moment",
        by="key",
        direction=direction,
        allow_exact_matches=exact,
    )
    return merged.set_index("index").sort_index()


def touched_before(moments: pd.Series, touches: pd.DataFrame, days: int) -> pd.Series:
    """Was each lead touched by sales in the `days` before its moment (sales was already
    talking to it when it was flagged)?"""
    if moments.empty:
        return pd.Series(dtype=bool)
    last = _nearest_touch(moments, touches, "backward", exact=False)
    before = last["touch"].notna() & (last["touch"] >= last["moment"] - pd.Timedelta(days=days))
    return pd.Series(before.to_numpy(), index=moments.index)


#: Buckets of response time for the conversion table: edges in minutes (the last open).
BUCKETS = ((0, 5), (5, 60), (60, 1440), (1440, np.inf))
#: The split of the effect line: answered within the hour, or later.
FAST_MINUTES = 60


def sla_tables(
    minutes: pd.Series,
    business: pd.Series,
    converted: np.ndarray,
    targets: list[Target],
    before: pd.Series | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[float, float, float]]:
    """Share of leads answered within each target (95% Wilson intervals), the conversion
    rate per response-time bucket, of leads sales was already talking to (`before`) and of
    those never touched in time; and the conversion of those answered within the hour minus
    that of those answered later, with a 95% Newcombe interval.

    Leads sales was already talking to are left out of the targets' shares and the buckets.
    """
    values = minutes.to_numpy(dtype=float)
    biz = business.to_numpy(dtype=float)
    y = np.asarray(converted, dtype=bool)
    already = np.zeros(len(values), bool) if before is None else before.to_numpy(dtype=bool)
    fresh = ~already
    n = int(fresh.sum())
    within = []
    for target in targets:
        measure = biz if target.business else values
        hit = int(np.sum(fresh & (measure <= target.minutes)))
        low, high = wilson_interval(hit, n)
        share = hit / n if n else float("nan")
        within.append({"target": target.text, "within": hit, "leads": n, "share": share,
                       "low": low, "high": high})  # fmt: skip
    rows = []
    for lo, hi in BUCKETS:
        mask = fresh & (values > lo if lo else values >= 0) & (values <= hi)
        rows.append(_bucket(mask, y, values))
    rows.append(_bucket(already, y, values))
    rows.append(_bucket(fresh & np.isnan(values), y, values))
    fast = fresh & (values <= FAST_MINUTES)
    slow = fresh & (values > FAST_MINUTES)
    difference = newcombe(int(y[slow].sum()), int(slow.sum()), int(y[fast].sum()),
                          int(fast.sum()))  # fmt: skip
    return pd.DataFrame(within), pd.DataFrame(rows), difference


def newcombe(hits_a: int, n_a: int, hits_b: int, n_b: int) -> tuple[float, float, float]:
    """rate b - rate a, with Newcombe's 95% interval (from the two Wilson intervals)."""
    if not n_a or not n_b:
        return (float("nan"),) * 3
    p1, p2 = hits_a / n_a, hits_b / n_b
    l1, u1 = wilson_interval(hits_a, n_a)
    l2, u2 = wilson_interval(hits_b, n_b)
    d = p2 - p1
    return d, d - float(np.hypot(p2 - l2, u1 - p1)), d + float(np.hypot(u2 - p2, p1 - l1))


def _bucket(mask: np.ndarray, y: np.ndarray, values: np.ndarray) -> dict:
    n, hits = int(mask.sum()), int(y[mask].sum())
    low, high = wilson_interval(hits, n)
    mine = values[mask]
    median = float(np.nanmedian(mine)) if n and not np.isnan(mine).all() else None
    return {"leads": n, "conversions": hits, "rate": hits / n if n else float("nan"),
            "low": low, "high": high, "median_minutes": median}  # fmt: skip


@dataclass
class SlaGroup:
    """One kind of hand-over (rule MQLs, or tier A) and how fast sales answered it."""

    leads: int
    touched: int
    #: Leads sales was already talking to when they were flagged.
    already: int
    median_minutes: float
    within: pd.DataFrame
    buckets: pd.DataFrame
    #: Conversion answered within the hour minus answered later: (difference, low, high).
    difference: tuple[float, float, float]
    #: Rule MQLs whose moment the replay found (the others count from their run's day).
    replayed: int | None = None


@dataclass
class Sla:
    """The SLA section: per group, the response times and conversion by response time."""

    touch_types: list[str]
    months: list[str]
    groups: dict[str, SlaGroup]


def build_sla(
    flags: pd.DataFrame,
    runs: pd.DataFrame,
    texts: dict[str, str],
    months: list[pd.Period],
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    converted_within,
    config: ProjectConfig,
) -> Sla | None:
    """The SLA of the leads first flagged in `months` (closed months: outcomes known).

    `flags`: lead_id, first_mql, first_a; `runs`: as_of_date and rules_sha256 of every run;
    `texts`: rule file text by SHA-256; `converted_within(ids, moments)`: did each convert
    within the horizon of its moment. None when the activities hold no sales touch.
    """
    touch_types = list(config.review.touch_types)
    touches = activities[activities["activity_type"].isin(touch_types)]
    if touches.empty or not months:
        return None
    targets = [parse_target(t) for t in config.review.sla_targets]
    horizon = config.horizon_days
    in_months = {str(m) for m in months}
    dates = np.sort(pd.to_datetime(runs["as_of_date"]).unique())
    created = pd.Series(
        pd.to_datetime(leads["created_at"]).to_numpy(), index=leads["lead_id"].astype(str)
    )
    dates = dates.astype("datetime64[us]")
    recorded = runs.dropna(subset=["rules_sha256"])
    sha_of = pd.Series(
        recorded["rules_sha256"].to_numpy(), index=pd.to_datetime(recorded["as_of_date"])
    )
    groups: dict[str, SlaGroup] = {}

    mqls = flags[flags["first_mql"].dt.to_period("M").astype(str).isin(in_months)]
    if len(mqls):
        until = mqls["first_mql"].to_numpy(dtype="datetime64[us]")
        previous = np.searchsorted(dates, until, side="left") - 1
        prior = np.full(len(until), np.datetime64("NaT"), dtype="datetime64[us]")
        if len(dates):
            known = previous >= 0
            prior[known] = dates[previous[known]]
        born = created.reindex(mqls["lead_id"].astype(str)).to_numpy(dtype="datetime64[us]")
        since = np.where(np.isnat(prior) | (born > prior), born, prior)
        frame = pd.DataFrame({"lead_id": mqls["lead_id"].to_numpy(), "since": since,
                              "until": until})  # fmt: skip
        frame["sha"] = sha_of.reindex(pd.to_datetime(frame["until"])).to_numpy()
        moments = pd.Series(frame["until"].to_numpy(), index=frame["lead_id"])
        for sha, part in frame.groupby("sha", dropna=True):
            rules = parse_rule_text(texts.get(sha))
            if rules is None:
                continue
            try:
                found = mql_moments(part, rules, leads, activities, config)
            except ConfigError:
                # An old version testing a field the leads no longer have: its MQLs count
                # from the day of the run that flagged them.
                continue
            moments.loc[found.index] = found.to_numpy()
        replayed = int((moments.to_numpy() != frame["until"].to_numpy()).sum())
        groups["rules"] = _group(moments, touches, horizon, targets, converted_within,
                                 config.review.timezone, replayed)  # fmt: skip
    tier_a = flags[flags["first_a"].dt.to_period("M").astype(str).isin(in_months)]
    if len(tier_a):
        moments = pd.Series(tier_a["first_a"].to_numpy(), index=tier_a["lead_id"])
        groups["tier_a"] = _group(moments, touches, horizon, targets, converted_within,
                                  config.review.timezone)  # fmt: skip
    return Sla(touch_types, sorted(in_months), groups) if groups else None


def _group(
    moments, touches, horizon, targets, converted_within, timezone, replayed=None
) -> SlaGroup:
    wall = response_minutes(moments, touches, horizon)
    business = response_minutes(moments, touches, horizon, business=True, timezone=timezone)
    before = touched_before(moments, touches, horizon)
    y = converted_within(pd.Series(moments.index), pd.Series(moments.to_numpy()))
    within, buckets, difference = sla_tables(wall, business, y, targets, before)
    fresh = ~before.to_numpy(dtype=bool)
    answered = wall.to_numpy(dtype=float)[fresh]
    touched = int(np.isfinite(answered).sum())
    median = float(np.nanmedian(answered)) if touched else float("nan")
    return SlaGroup(len(moments), touched, int(before.sum()), median, within, buckets,
                    difference, replayed)  # fmt: skip
