"""Marketing's monthly review: the MQL KPI month by month, the rule file's versions and what
the last change did, read from the published score history and the outcomes.

Two views of a month, both from what was published (nothing is rescored):

* **Flags.** A lead counts as a rule MQL in the month its first published score with
  `is_mql` falls in, and as tier A in the month a model first put it in tier A. It converted
  if its conversion came within `horizon_days` of that date. The KPI is the share converted
  (MQL -> conversion), with a Wilson interval.
* **Ranking.** Every lead scored in the month, once, as of its first score in the month,
  against conversion within the horizon of that date: realised ROC-AUC of both scores, ECE
  of the probability, and the conversions each score puts in its top N, N being the number
  of rule MQLs among those rows (the same volume for both).

A month whose outcomes are not all known yet (its last day plus the horizon is after the
newest outcome the source holds) is provisional: its figures are shown and marked.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.data.rules import RuleSet, parse_rule_text
from leadscore.errors import ConfigError
from leadscore.evaluation import plots
from leadscore.evaluation.sla import Sla, build_sla, newcombe
from leadscore.i18n import Words
from leadscore.io.history import ScoreHistory
from leadscore.modeling.metrics import (
    classification_metrics,
    expected_captured,
    wilson_interval,
)

#: Months shown by default, the newest last.
MONTHS = 12


@dataclass(frozen=True)
class Rate:
    """A share with its 95% Wilson interval (nan when n is 0)."""

    hits: int
    n: int

    @property
    def rate(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.hits, self.n)


@dataclass
class RuleChange:
    """One change of the rule file between two runs: what moved, rule by rule."""

    when: pd.Timestamp
    before: str
    after: str
    before_name: str
    after_name: str
    #: rule, kind, points_before, points_after, change (added/removed/points/definition)
    table: pd.DataFrame
    threshold_before: float | None
    threshold_after: float | None
    text_diff: str


@dataclass
class Effect:
    """The rules' MQLs before and after the last change, over equal windows."""

    change: RuleChange
    days: int
    #: per side ("before", "after"): first_day, last_day, mqls, mqls_per_30_days, conversions, rate,
    #: low, high, open (flags whose outcome is not known yet), new_leads, base_rate
    table: pd.DataFrame
    difference: tuple[float, float, float]  # after - before rate, with a 95% interval


@dataclass
class Review:
    """Everything the monthly review page shows."""

    month: pd.Period
    horizon_days: int
    outcomes_until: pd.Timestamp
    months: pd.DataFrame
    versions: pd.DataFrame
    changes: list[RuleChange]
    effect: Effect | None
    #: "unchanged" (no change published), "too_recent" (nothing after it has closed), "measured"
    effect_state: str
    diagnostics: pd.DataFrame | None
    thresholds: pd.DataFrame | None
    #: "none_closed", "current" (on the current file's closed months), "earlier" (none of
    #: its months has closed: on earlier versions' rows), "unreadable" (its text does not parse)
    diagnostics_state: str
    diagnostics_rows: int
    #: The sales SLA of the closed months (None: no sales touch in the activities, or no
    #: month closed yet).
    sla: Sla | None = None

    @property
    def closed_months(self) -> pd.DataFrame:
        """Months whose outcomes are all known and that had a published run."""
        return self.months[~self.months["provisional"] & (self.months["runs"] > 0)]


def _conversion_dates(outcomes: pd.DataFrame) -> pd.Series:
    """The first conversion per lead, indexed by the lead id as text."""
    if outcomes.empty:
        return pd.Series(dtype="datetime64[us]")
    at = pd.to_datetime(outcomes["converted_at"], utc=True).dt.tz_localize(None)
    frame = pd.DataFrame({"lead": outcomes["lead_id"].astype("str").to_numpy(), "at": at})
    return frame.dropna().groupby("lead")["at"].min()


def _converted(ids: pd.Series, since: pd.Series, conversions: pd.Series, horizon) -> np.ndarray:
    """Did each lead convert in [since, since + horizon)?"""
    at = pd.to_datetime(ids.astype("str").map(conversions))
    since = pd.to_datetime(since)
    return ((at >= since) & (at < since + horizon)).fillna(False).to_numpy(dtype=bool)


def _version_segments(versions: pd.DataFrame) -> pd.DataFrame:
    """Consecutive runs with one rule file version: sha, file name, first and last run, runs."""
    columns = ["rules_sha256", "file_name", "rules_text", "first_run", "last_run", "runs"]
    known = versions.dropna(subset=["rules_sha256"]).sort_values("as_of_date")
    if known.empty:
        return pd.DataFrame(columns=columns)
    start = known["rules_sha256"].ne(known["rules_sha256"].shift()).cumsum()
    grouped = known.groupby(start, sort=True)
    out = grouped.agg(
        rules_sha256=("rules_sha256", "first"),
        file_name=("file_name", "first"),
        rules_text=("rules_text", "first"),
        first_run=("as_of_date", "min"),
        last_run=("as_of_date", "max"),
        runs=("as_of_date", "size"),
    )
    return out.reset_index(drop=True)[columns]


def _definition(rule) -> dict:
    """What a rule tests (its points and cap are its weight, its description words)."""
    return rule.model_dump(
        by_alias=True, exclude_none=True, exclude={"points", "cap", "description"}
    )


def rule_change(before: pd.Series, after: pd.Series) -> RuleChange:
    """What changed between two versions (rows of `_version_segments`)."""
    old, new = parse_rule_text(before["rules_text"]), parse_rule_text(after["rules_text"])
    rows = []
    if old is not None and new is not None:
        kinds = {}
        for rules in (old, new):
            kinds |= {r.name: "attribute" for r in rules.attribute_rules}
            kinds |= {r.name: "behaviour" for r in rules.behaviour_rules}
        was = {r.name: r for r in [*old.attribute_rules, *old.behaviour_rules]}
        now = {r.name: r for r in [*new.attribute_rules, *new.behaviour_rules]}
        for name in [*was, *(n for n in now if n not in was)]:
            a, b = was.get(name), now.get(name)
            if a is None:
                change = "added"
            elif b is None:
                change = "removed"
            elif _definition(a) != _definition(b):
                change = "definition"
            elif a.points != b.points or getattr(a, "cap", None) != getattr(b, "cap", None):
                change = "points"
            else:
                continue
            rows.append(
                {
                    "rule": name,
                    "kind": kinds[name],
                    "points_before": float(a.points) if a is not None else float("nan"),
                    "points_after": float(b.points) if b is not None else float("nan"),
                    "change": change,
                }
            )
    table = pd.DataFrame(rows, columns=["rule", "kind", "points_before", "points_after", "change"])
    diff = difflib.unified_diff(
        str(before["rules_text"] or "").splitlines(),
        str(after["rules_text"] or "").splitlines(),
        fromfile=f"{before['file_name']} ({before['rules_sha256'][:12]})",
        tofile=f"{after['file_name']} ({after['rules_sha256'][:12]})",
        lineterm="",
    )
    return RuleChange(
        when=pd.Timestamp(after["first_run"]),
        before=before["rules_sha256"],
        after=after["rules_sha256"],
        before_name=str(before["file_name"]),
        after_name=str(after["file_name"]),
        table=table,
        threshold_before=float(old.mql_threshold) if old is not None else None,
        threshold_after=float(new.mql_threshold) if new is not None else None,
        text_diff="\n".join(diff),
    )


def _month_row(
    month: pd.Period,
    rows: pd.DataFrame,
    flags: pd.DataFrame,
    conversions: pd.Series,
    horizon: pd.Timedelta,
    outcomes_until: pd.Timestamp,
    shas: pd.Series,
) -> tuple[dict, pd.DataFrame]:
    """One month's figures, and its ranking rows (first score per lead, with outcome)."""
    start, end = month.start_time, (month + 1).start_time
    # A lead flagged on the month's last day has until then + horizon (exclusive) to convert.
    known_until = end - pd.Timedelta(days=1) + horizon
    out: dict = {
        "month": str(month),
        "runs": int(rows["as_of_date"].nunique()),
        "provisional": bool(known_until > outcomes_until),
        "outcomes_complete_on": known_until.date().isoformat(),
    }
    first = flags["first_scored"]
    out["new_leads"] = int(((first >= start) & (first < end)).sum())
    for key, column in (("rule_mql", "first_mql"), ("tier_a", "first_a")):
        when = flags[column]
        mine = flags[(when >= start) & (when < end)]
        hit = _converted(mine["lead_id"], mine[column], conversions, horizon)
        rate = Rate(int(hit.sum()), len(mine))
        low, high = rate.interval
        out |= {f"{key}s": rate.n, f"{key}_conversions": rate.hits, f"{key}_rate": rate.rate,
                f"{key}_low": low, f"{key}_high": high}  # fmt: skip
    snap = rows.drop_duplicates("lead_id", keep="first").reset_index(drop=True)
    y = _converted(snap["lead_id"], snap["as_of_date"], conversions, horizon).astype(float)
    snap["converted"] = y
    snap["rules_sha256"] = snap["as_of_date"].map(shas)
    out["leads"] = len(snap)
    out["conversions"] = int(y.sum())
    volume = int(snap["is_mql"].sum())
    out["volume"] = volume
    out["rules_captured"] = float(y[snap["is_mql"].to_numpy()].sum())
    both = 0 < y.sum() < len(y)
    rules = classification_metrics(y, snap["rule_score"].to_numpy(float), None) if both else {}
    out["rule_roc_auc"] = rules.get("roc_auc", float("nan"))
    # The model on each lead's first score by a model in the month (a month may begin with
    # runs by the rules alone); the same rows as the rules' when every run had a model.
    by_model = rows[rows["conversion_probability"].notna()].drop_duplicates("lead_id")
    y_m = _converted(by_model["lead_id"], by_model["as_of_date"], conversions, horizon)
    y_m = y_m.astype(float)
    p = by_model["conversion_probability"].to_numpy(dtype=float)
    model = classification_metrics(y_m, p, p) if 0 < y_m.sum() < len(y_m) else {}
    out["model_roc_auc"] = model.get("roc_auc", float("nan"))
    out["model_ece"] = model.get("ece", float("nan"))
    n_model = int(by_model["is_mql"].sum()) if len(by_model) < len(snap) else volume
    out["model_captured"] = (
        float(expected_captured(y_m, p, np.array([n_model]))[0]) if len(y_m) else float("nan")
    )
    out["rule_versions"] = ", ".join(
        s[:12] for s in dict.fromkeys(snap["rules_sha256"].dropna()) if isinstance(s, str)
    )
    return out, snap


def _effect(
    change: RuleChange,
    previous_start: pd.Timestamp,
    next_change: pd.Timestamp | None,  # the end of what may be counted (the reviewed month)
    flags: pd.DataFrame,
    conversions: pd.Series,
    horizon: pd.Timedelta,
    outcomes_until: pd.Timestamp,
    days: int,
) -> Effect:
    """MQLs flagged in equal windows before and after the change, outcomes known only."""
    span = pd.Timedelta(days=days)
    # The windows: up to `days` on each side, as long as both sides are covered: by flags
    # before the end of the reviewed month (`next_change`) whose outcome window has closed.
    closed = (outcomes_until - horizon).normalize() + pd.Timedelta(days=1)
    after_end = min(change.when + span, next_change or change.when + span, closed)
    length = max(min(after_end - change.when, change.when - previous_start, span), pd.Timedelta(0))
    rows = []
    rates = {}
    for side, lo, hi in (
        ("before", change.when - length, change.when),
        ("after", change.when, change.when + length),
    ):
        when = flags["first_mql"]
        mine = flags[(when >= lo) & (when < hi)]
        hit = _converted(mine["lead_id"], mine["first_mql"], conversions, horizon)
        rate = Rate(int(hit.sum()), len(mine))
        new = flags[(flags["first_scored"] >= lo) & (flags["first_scored"] < hi)]
        base = _converted(new["lead_id"], new["first_scored"], conversions, horizon)
        days_in = max(length.days, 1)
        rates[side] = rate
        low, high = rate.interval
        rows.append(
            {
                "side": side,
                "first_day": lo,
                "last_day": hi - pd.Timedelta(days=1),
                "mqls": rate.n,
                "mqls_per_30_days": rate.n * 30 / days_in,
                "conversions": rate.hits,
                "rate": rate.rate,
                "low": low,
                "high": high,
                "new_leads": len(new),
                "base_rate": float(base.mean()) if len(base) else float("nan"),
            }
        )
    difference = _difference(rates["before"], rates["after"])
    return Effect(change=change, days=length.days, table=pd.DataFrame(rows), difference=difference)


def _difference(before: Rate, after: Rate) -> tuple[float, float, float]:
    """after - before, with Newcombe's 95% interval."""
    return newcombe(before.hits, before.n, after.hits, after.n)


def rule_diagnostics(snap: pd.DataFrame, rules: RuleSet) -> pd.DataFrame:
    """Per rule of `rules`, on ranking rows: how often it fired, how its leads converted
    (with an interval) against the rest, and what the evidence suggests doing."""
    y = snap["converted"].to_numpy(dtype=float)
    base = float(y.mean()) if len(y) else float("nan")
    fired_lists = snap["rules_fired"].fillna("").astype("str").str.split(",")
    out = []
    for rule in [*rules.attribute_rules, *rules.behaviour_rules]:
        fired = fired_lists.map(lambda names, n=rule.name: n in names).to_numpy(dtype=bool)
        on = Rate(int(y[fired].sum()), int(fired.sum()))
        off = Rate(int(y[~fired].sum()), int((~fired).sum()))
        low, high = on.interval
        if on.n == 0:
            advice = "never_fired"
        elif rule.points > 0 and high < base:
            advice = "lower"
        elif rule.points <= 0 and low > base:
            advice = "raise"
        elif rule.points > 0 and low > base:
            advice = "keep_up"
        elif rule.points < 0 and high < base:
            advice = "keep_down"
        else:
            advice = "unclear"
        out.append(
            {
                "rule": rule.name,
                "kind": "attribute" if rule in rules.attribute_rules else "behaviour",
                "points": float(rule.points),
                "fires": on.n,
                "fire_share": on.n / len(y) if len(y) else float("nan"),
                "rate_fired": on.rate,
                "low": low,
                "high": high,
                "rate_not_fired": off.rate,
                "lift": on.rate / base if base else float("nan"),
                "advice": advice,
            }
        )
    return pd.DataFrame(out)


def threshold_table(snap: pd.DataFrame, current: float, target_rate: float | None) -> pd.DataFrame:
    """What other MQL thresholds would have flagged on the ranking rows: share, conversion
    rate, and the share of conversions among them; the current threshold marked."""
    score = snap["rule_score"].to_numpy(dtype=float)
    y = snap["converted"].to_numpy(dtype=float)
    candidates = {float(current)}
    for share in (0.05, 0.1, 0.2, 0.3, *([target_rate] if target_rate else [])):
        if len(score):
            candidates.add(float(np.quantile(score, 1 - share, method="higher")))
    rows = []
    for t in sorted(candidates):
        mql = score >= t
        n = int(mql.sum())
        rows.append(
            {
                "threshold": t,
                "mqls": n,
                "mql_share": n / len(y) if len(y) else float("nan"),
                "rate": float(y[mql].mean()) if n else float("nan"),
                "conversions_captured_share": float(y[mql].sum() / y.sum())
                if y.sum()
                else float("nan"),
                "current": t == float(current),
            }
        )
    return pd.DataFrame(rows)


def parse_month(text: str, today: pd.Timestamp | None = None) -> pd.Period:
    """A month given as YYYY-MM, or "previous": the calendar month before `today` (default:
    now, UTC; the flow passes now in `review.timezone`), what a run on the 1st reviews."""
    import re

    text = text.strip()
    if text == "previous":
        today = today if today is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
        return pd.Timestamp(today).tz_localize(None).to_period("M") - 1
    if not re.fullmatch(r"\d{4}-\d{2}", text):
        raise ConfigError(
            f"month '{text}' is not of the form YYYY-MM", "e.g. --month 2026-11, or previous"
        )
    try:
        return pd.Period(text, freq="M")
    except ValueError:
        raise ConfigError(f"month '{text}' is not a month", "e.g. --month 2026-11") from None


def backlog_free(
    flags: pd.DataFrame,
    span: tuple[pd.Timestamp, pd.Timestamp] | None,
    first_model_run: pd.Timestamp | None,
) -> pd.DataFrame:
    """First flags without the backlog: on the history's first run every lead already open,
    already an MQL, is "first" seen, and on a model's first run every lead it puts in tier A
    is; none of them became so that day. Those flags are left out (NaT)."""
    out = flags.copy()
    if span is not None:
        for column in ("first_scored", "first_mql", "first_a"):
            out.loc[out[column] == span[0], column] = pd.NaT
    if first_model_run is not None:
        out.loc[out["first_a"] == first_model_run, "first_a"] = pd.NaT
    return out


def build_review(
    history: ScoreHistory,
    outcomes: pd.DataFrame,
    versions: pd.DataFrame,
    month: pd.Period,
    horizon_days: int,
    outcomes_until: pd.Timestamp,
    months: int = MONTHS,
    effect_days: int = 90,
    target_rate: float | None = None,
    progress=None,
    leads: pd.DataFrame | None = None,
    activities: pd.DataFrame | None = None,
    config: ProjectConfig | None = None,
) -> Review:
    """The review of `month` and the `months - 1` before it (see the module's docstring).

    With the source's `leads` and `activities` and the project's `config`, the sales SLA of
    the closed months too (`review.touch_types`, `review.sla_targets`)."""
    horizon = pd.Timedelta(days=horizon_days)
    outcomes_until = pd.Timestamp(outcomes_until)
    periods = pd.period_range(end=month, periods=months, freq="M")
    end = (month + 1).start_time
    flags = backlog_free(history.first_flags(end), history.span(), history.first_model_run())
    conversions = _conversion_dates(outcomes)
    versions = versions.assign(as_of_date=pd.to_datetime(versions["as_of_date"]))
    shas = versions.dropna(subset=["rules_sha256"]).set_index("as_of_date")["rules_sha256"]
    records, closed_snaps = [], []
    for i, period in enumerate(periods):
        rows = history.window(period.start_time, (period + 1).start_time)
        record, snap = _month_row(period, rows, flags, conversions, horizon, outcomes_until, shas)
        records.append(record)
        if not record["provisional"] and len(snap):
            closed_snaps.append(snap)
        if progress is not None:
            progress("reviewing months", i + 1, len(periods))
    table = pd.DataFrame(records)
    segments = _version_segments(versions[versions["as_of_date"] < end])
    changes = [rule_change(segments.iloc[i - 1], segments.iloc[i]) for i in range(1, len(segments))]
    effect, effect_state = None, "unchanged"
    if changes:
        last = len(segments) - 1
        effect = _effect(
            changes[-1], pd.Timestamp(segments.iloc[last - 1]["first_run"]), end, flags,
            conversions, horizon, outcomes_until, effect_days,
        )  # fmt: skip
        effect_state = "measured" if effect.days else "too_recent"
    diagnostics = thresholds = None
    diagnostics_state, diagnostics_rows = "none_closed", 0
    if closed_snaps and len(segments):
        current = segments.iloc[-1]
        rules = parse_rule_text(current["rules_text"])
        snap = pd.concat(closed_snaps, ignore_index=True)
        mine = snap[snap["rules_sha256"] == current["rules_sha256"]]
        diagnostics_state = "current"
        if mine.empty:
            # Nothing the current file scored has closed yet: judge its rules on what the
            # earlier versions published (rules added since show as never fired).
            mine, diagnostics_state = snap, "earlier"
        diagnostics_rows = len(mine)
        if rules is None:
            diagnostics_state = "unreadable"
        else:
            diagnostics = rule_diagnostics(mine, rules)
            thresholds = threshold_table(mine, rules.mql_threshold, target_rate)
    sla = None
    if config is not None and leads is not None and activities is not None:
        closed = [p for p, r in zip(periods, records, strict=True) if not r["provisional"]]
        known = versions.dropna(subset=["rules_sha256"])
        texts = dict(zip(known["rules_sha256"], known["rules_text"], strict=True))
        sla = build_sla(
            flags, versions[["as_of_date", "rules_sha256"]], texts, closed, leads, activities,
            lambda ids, moments: _converted(ids, moments, conversions, horizon), config,
        )  # fmt: skip
    return Review(
        month=month,
        horizon_days=horizon_days,
        outcomes_until=outcomes_until,
        months=table,
        versions=segments,
        changes=changes,
        effect=effect,
        effect_state=effect_state,
        diagnostics=diagnostics,
        thresholds=thresholds,
        diagnostics_state=diagnostics_state,
        diagnostics_rows=diagnostics_rows,
        sla=sla,
    )


def _headline(review: Review, words: Words) -> str:
    closed = review.closed_months
    if closed.empty:
        return words("review.headline.none_closed", horizon=review.horizon_days)
    m = closed.iloc[-1]
    return words(
        "review.headline.closed",
        month=words.month(m["month"]),
        rule_rate=words.pct(m["rule_mql_rate"]),
        rule_mqls=words.num(m["rule_mqls"]),
        a_rate=words.pct(m["tier_a_rate"]),
        tier_a=words.num(m["tier_as"]),
    )


def _effect_sentence(effect: Effect | None, words: Words) -> str:
    if effect is None or not effect.days:
        return ""
    before, after = (effect.table.set_index("side").loc[s] for s in ("before", "after"))
    d, low, high = effect.difference
    return words(
        "review.effect.sentence",
        after_volume=words.num(after["mqls_per_30_days"]),
        before_volume=words.num(before["mqls_per_30_days"]),
        after_rate=words.pct(after["rate"]),
        before_rate=words.pct(before["rate"]),
        difference=words.signed(d),
        low=words.signed(low),
        high=words.signed(high),
        after_base=words.pct(after["base_rate"]),
        before_base=words.pct(before["base_rate"]),
    )


def render_review(
    review: Review,
    *,
    title: str,
    language: str,
    source: str,
    publish: str,
) -> str:
    """The review as one HTML document in `language` (no network needed to read it)."""
    import importlib.metadata

    import jinja2
    import matplotlib

    words = Words(language)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("leadscore.evaluation", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(words.formatters())
    with matplotlib.rc_context(plots.chart_fonts(language)):
        fig = plots.kpi_figure(review.months, words)
        try:
            chart = plots.to_svg(fig)
        finally:
            plots.close(fig)
        sla_chart = None
        if review.sla is not None:
            fig = plots.sla_figure(review.sla.groups, words)
            try:
                sla_chart = plots.to_svg(fig)
            finally:
                plots.close(fig)
    months = review.months.to_dict("records")
    closed = review.closed_months
    effect_note = words(
        f"review.effect.{review.effect_state}",
        days=review.effect.days if review.effect else 0,
        date=words.date(review.changes[-1].when) if review.changes else "",
        horizon=review.horizon_days,
    )
    diagnostics_note = words(
        f"review.diagnostics.{review.diagnostics_state}",
        version=review.versions.iloc[-1]["rules_sha256"][:12] if len(review.versions) else "",
        rows=words.num(review.diagnostics_rows),
    )
    return env.get_template("review.html.j2").render(
        r=review,
        title=title,
        version=importlib.metadata.version("leadscore"),
        generated_at=words.date(pd.Timestamp.now(tz="UTC")),
        first_month=review.months["month"].iloc[0],
        this=months[-1],
        closed=closed.iloc[-1].to_dict() if len(closed) else None,
        months=months,
        kpi_chart=chart,
        headline=_headline(review, words),
        versions=review.versions.to_dict("records"),
        changes=review.changes,
        effect=review.effect,
        effect_note=effect_note,
        effect_sentence=_effect_sentence(review.effect, words),
        diagnostics=(
            review.diagnostics.to_dict("records") if review.diagnostics is not None else None
        ),
        thresholds=(
            review.thresholds.to_dict("records") if review.thresholds is not None else None
        ),
        diagnostics_note=diagnostics_note,
        sla=review.sla,
        sla_chart=sla_chart,
        source=source,
        publish=publish,
    )
