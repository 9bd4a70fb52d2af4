"""The checks training and scoring share, before anything is fitted or published.

One validation for both paths: the source and the rule file are checked the same way by
`leadscore train` and by every scoring path (batch, partitions, on demand, the service),
and an as-of date is bounded the same way wherever it is given.
"""

from __future__ import annotations

import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.data.rules import RuleSet, check_activities
from leadscore.errors import ConfigError, DataError
from leadscore.modeling.estimator import LeadScoringModel


def activity_types(activities: pd.DataFrame) -> tuple[str, ...]:
    """The activity types that occur in `activities`, sorted."""
    types = activities["activity_type"]
    if isinstance(types.dtype, pd.CategoricalDtype):
        types = types.cat.remove_unused_categories().cat.categories.to_series()
    return tuple(sorted({str(t) for t in types.dropna().unique()}))


def check_inputs(
    rules: RuleSet,
    config: ProjectConfig,
    flat: bool,
    types: tuple[str, ...],
    known: tuple[str, ...] = (),
    whole_source: bool = True,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> None:
    """The checks of the source and the rule file that training and scoring share.

    `types`: the activity types in the data read; `known`: those the model's training data
    had (scoring only: a rule may count a type that happens to be absent from tonight's
    window). `whole_source` is False for on-demand scoring, which reads a few leads only,
    so an empty activities table says nothing there. `window`: the activities read for
    scoring (the model's lookback before the as-of date).
    """
    if flat and rules.behaviour_rules:
        names = ", ".join(r.name for r in rules.behaviour_rules)
        raise ConfigError(
            f"rule(s) {names} count activities, but a flat export has none",
            "use attribute rules (equals, in, contains, range) on the export's columns",
        )
    table = config.source.tables.activities
    if table is not None and not flat and whole_source and not types:
        where = (
            f"between {window[0].date()} and {window[1].date()} (the lookback of the model "
            "and the rules before the as-of date)"
            if window is not None
            else "(the table is empty)"
        )
        raise DataError(
            f"table '{table}': no activities {where}; scores without any behaviour would be "
            "published as if no lead had done anything",
            "export the activities again (is the export or its sync stale? is --as-of right?); "
            "if your data has no activities, set source.tables.activities: null and retrain",
        )
    check_activities(rules, tuple(sorted({*types, *known})))


def now() -> pd.Timestamp:
    """This moment in UTC, naive like every timestamp in leadscore."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def parse_as_of(value: str | None, moment: bool = False) -> pd.Timestamp:
    """The as-of of a scoring run, in UTC, never in the future.

    A batch run scores as of a date (midnight; default today). With `moment`, on-demand
    scoring takes a date or a time (default now).
    """
    today = now().normalize()
    if value is None:
        return now() if moment else today
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if pd.isna(stamp):
        if moment:
            raise ConfigError(
                f"--as-of {value!r} is not a date or a time",
                "use ISO 8601, e.g. 2026-03-01 or 2026-03-01T14:05:00Z",
            )
        raise ConfigError(f"--as-of {value!r} is not a date", "use YYYY-MM-DD, e.g. 2026-03-01")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if moment:
        return stamp.as_unit("us")
    if stamp.normalize() > today:
        raise ConfigError(
            f"--as-of {stamp.date()} lies in the future (today is {today.date()}, UTC): its "
            "scores would describe leads on a day that has not happened",
            "leave --as-of out to score as of today, or give a past date to backfill",
        )
    return stamp.normalize()


def check_as_of(as_of: pd.Timestamp, data_end: pd.Timestamp, max_days_after: int) -> None:
    """Refuse an as-of date too long after the newest data (stale export or a wrong date)."""
    newest = pd.Timestamp(data_end).normalize()
    # Scoring as of the day after the newest data sees all of it: that is no gap yet.
    gap = (as_of.normalize() - newest).days - 1
    if gap > max_days_after:
        raise DataError(
            f"as-of {as_of.date()} follows {gap} days without any data in the source (its "
            f"newest is from {newest.date()}); at most {max_days_after} are allowed: every "
            "recent-behaviour feature would be empty and the scores would describe a CRM that "
            "stopped",
            "refresh the export (is its sync stale?), or score as of a date inside the data "
            "with --as-of; if the quiet spell is real, raise scoring.max_days_after_data",
        )


def attribute_columns(config: ProjectConfig) -> list[str]:
    """The lead columns a project file maps: what a model learns from and rules test."""
    attrs = config.source.attributes
    return [*attrs.categorical, *attrs.numeric, *([attrs.job_title] if attrs.job_title else [])]


def model_activity_types(model: LeadScoringModel | None) -> tuple[str, ...]:
    """The activity types of the model's training history (older models: its features');
    none without a model (rules-only scoring)."""
    if model is None:
        return ()
    return tuple(getattr(model, "activity_types_", model.features.behaviour.activity_types))


def lookback_days(model: LeadScoringModel | None, rules: RuleSet) -> int:
    """How far back scoring must read activities: the model's and the rules' longest window."""
    windows = [r.within_days for r in rules.behaviour_rules]
    own = 0 if model is None else model.features.behaviour.lookback_days
    accounts = None if model is None else model.features.accounts
    own = max(own, accounts.lookback_days if accounts is not None else 0)
    return max([own, *windows]) + 1
