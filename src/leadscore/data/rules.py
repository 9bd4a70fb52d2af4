"""The rule-based MQL score: a declarative YAML agreement between marketing and sales.

Attribute rules test a lead field (`equals`, `in`, `contains`, `range`); behaviour rules give
points per occurrence of an activity type (optionally a page category) within N days, with a
cap; negative points are negative rules. Evaluated on the same point-in-time snapshot rows as
the model, so both scores can be compared fairly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadscore.config import ProjectConfig
from leadscore.data.features import (
    ActivityIndex,
    derive_attributes,
    rows_by_date,
    window_events,
)
from leadscore.errors import ConfigError

#: A number written as a number: finite, and not a yes/no (YAML reads `true` as a bool,
#: which Python would count as 1) nor quoted text.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = ""
    points: Number


class AttributeRule(_Rule):
    """Points when a lead field matches."""

    field: str
    equals: Any = None
    in_: list[Any] | None = Field(None, alias="in")
    contains: list[str] | str | None = None
    range: tuple[Number | None, Number | None] | None = None

    @model_validator(mode="after")
    def _one_test(self) -> AttributeRule:
        tests = [
            self.equals is not None,
            self.in_ is not None,
            self.contains is not None,
            self.range is not None,
        ]
        if sum(tests) != 1:
            raise ValueError(f"rule '{self.name}' needs exactly one of equals, in, contains, range")
        return self

    def unknown_field(self, names) -> ConfigError:
        """The error of a rule testing a field the leads do not have (`names`: theirs)."""
        return ConfigError(
            f"rule '{self.name}' tests field '{self.field}', which the leads do not have "
            f"(fields: {', '.join(names)})",
            "fix the field name in the rule file or map the column in source.attributes",
        )

    def matches(self, fields: pd.DataFrame) -> np.ndarray:
        """Boolean per lead: does the field match?"""
        if self.field not in fields:
            raise self.unknown_field(fields.columns)
        values = fields[self.field]
        targets = [self.equals] if self.equals is not None else self.in_
        if targets is not None:
            numbers = pd.to_numeric(pd.Series(targets, dtype=object), errors="coerce")
            if pd.api.types.is_numeric_dtype(values) and numbers.notna().all():
                hit = values.isin(numbers.astype(float).tolist())  # 100 matches 100.0
            else:
                hit = values.astype("str").str.lower().isin([str(v).lower() for v in targets])
        elif self.contains is not None:
            needles = [self.contains] if isinstance(self.contains, str) else self.contains
            text = values.astype("str").str.lower()
            hit = pd.Series(False, index=values.index)
            for needle in needles:
                hit |= text.str.contains(needle.lower(), regex=False).fillna(False).astype(bool)
        else:
            low, high = self.range  # type: ignore[misc]
            num = pd.to_numeric(values, errors="coerce")
            hit = num.notna()
            if low is not None:
                hit &= num >= low
            if high is not None:
                hit &= num <= high
        return hit.fillna(False).to_numpy(dtype=bool)


class BehaviourRule(_Rule):
    """Points per occurrence of an activity (optionally a page category) within N days."""

    activity: str
    page_category: str | None = None
    within_days: int = Field(gt=0)
    cap: Annotated[Number, Field(gt=0)] | None = Field(
        None, description="largest absolute points from this rule"
    )


class RuleSet(BaseModel):
    """A parsed rule file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mql_threshold: Number
    attribute_rules: list[AttributeRule] = Field(default_factory=list)
    behaviour_rules: list[BehaviourRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> RuleSet:
        names = [r.name for r in [*self.attribute_rules, *self.behaviour_rules]]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dupes)}")
        return self

    @property
    def names(self) -> list[str]:
        return [r.name for r in [*self.attribute_rules, *self.behaviour_rules]]


@dataclass(frozen=True)
class RuleFileVersion:
    """The rule file a run used: its name, the SHA-256 of its bytes and its text."""

    name: str
    sha256: str
    text: str

    @property
    def short(self) -> str:
        return self.sha256[:12]


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rule file."""
    return read_rule_file(path)[0]


def read_rule_file(path: str | Path) -> tuple[RuleSet, RuleFileVersion]:
    """Read and validate a rule file; its version is of the very bytes parsed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"rule file {path} does not exist", "set `rules` in the project file to your rule file"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        version = RuleFileVersion(path.name, hashlib.sha256(raw).hexdigest(), text)
        data = yaml.safe_load(text) or {}
        return RuleSet.model_validate(data), version
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"rule file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            "save the rule file as UTF-8",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"rule file {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        lines = [f"{path}: '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors()]
        raise ConfigError(
            "\n".join(lines), "fix the rule file (see models/mql_rules.yaml)"
        ) from None


def parse_rule_text(text: object) -> RuleSet | None:
    """A rule file's text as recorded by a run, parsed; None when it is missing or no longer
    parses (an old version of the format): a review then loses that version's details only."""
    if not isinstance(text, str):
        return None
    try:
        return RuleSet.model_validate(yaml.safe_load(text) or {})
    except (yaml.YAMLError, ValueError):
        return None


def check_activities(rules: RuleSet, known_types: tuple[str, ...] | list[str]) -> None:
    """Refuse behaviour rules on activity types the data never has (likely a typo)."""
    unknown = [r for r in rules.behaviour_rules if r.activity not in known_types]
    if unknown:
        names = ", ".join(f"'{r.name}' ({r.activity})" for r in unknown)
        raise ConfigError(
            f"rule(s) {names} count an activity type that never occurs in the data "
            f"(types there: {', '.join(known_types)})",
            "fix the activity name in the rule file",
        )


def behaviour_counts(
    snapshots: pd.DataFrame, activities: ActivityIndex, rules: list[BehaviourRule]
) -> pd.DataFrame:
    """Occurrences per rule in its window strictly before each snapshot's `as_of`."""
    out = pd.DataFrame(index=snapshots.index)
    if not rules:
        return out
    for rule in rules:
        if rule.page_category is not None and rule.page_category not in activities.category_names:
            raise ConfigError(
                f"rule '{rule.name}' uses page_category '{rule.page_category}', which is not "
                f"configured (known: {', '.join(activities.category_names)})",
                "add the category under features.page_categories or fix the rule",
            )
    longest = max(r.within_days for r in rules)
    filters = []
    for i, rule in enumerate(rules):
        if rule.activity not in activities.type_names:
            continue  # never happened: zero occurrences
        where = f"ty = {activities.type_names.index(rule.activity)} AND age <= {rule.within_days}"
        if rule.page_category is not None:
            where += f" AND ca = {activities.category_names.index(rule.page_category)}"
        filters.append((i, f"count(*) FILTER ({where}) AS r{i}"))
    counts = {r.name: np.zeros(len(snapshots)) for r in rules}
    if filters:
        for part in rows_by_date(snapshots):  # one date at a time bounds the join
            with window_events(
                snapshots.iloc[part],
                activities,
                longest,
                activities.type_code,
                activities.category_code,
            ) as con:
                got = con.execute(
                    f"SELECT row, {', '.join(f for _, f in filters)} FROM events GROUP BY row"
                ).fetchnumpy()
            for i, _ in filters:
                counts[rules[i].name][part[got["row"]]] = got[f"r{i}"]
    for name, values in counts.items():
        out[name] = values
    return out


def evaluate_rules(
    rules: RuleSet,
    fields: pd.DataFrame,
    snapshots: pd.DataFrame,
    activities: ActivityIndex,
) -> pd.DataFrame:
    """Per snapshot row: `rule_score`, `is_mql`, `rules_fired`, points and hits per rule.

    `fields` holds the lead fields attribute rules may test (raw attributes plus derived
    seniority, department and email_domain_kind), aligned with `snapshots`.
    """
    points = pd.DataFrame(index=snapshots.index)
    # Hits: 1/0 for attribute rules, occurrences up to the cap for behaviour rules; what
    # the points multiply, so that points can be re-estimated from data (see tuning).
    hits = pd.DataFrame(index=snapshots.index)
    for rule in rules.attribute_rules:
        hits[rule.name] = rule.matches(fields).astype(np.float64)
        points[rule.name] = hits[rule.name] * rule.points
    counts = behaviour_counts(snapshots, activities, rules.behaviour_rules)
    for rule in rules.behaviour_rules:
        occurrences = counts[rule.name].to_numpy(dtype=np.float64)
        if rule.cap is not None and rule.points != 0:
            occurrences = np.minimum(occurrences, rule.cap / abs(rule.points))
        hits[rule.name] = occurrences
        points[rule.name] = occurrences * rule.points
    score = points.sum(axis=1) if len(points.columns) else pd.Series(0.0, index=snapshots.index)
    # Comma-separated names of the rules that gave points, built column by column.
    fired = pd.Series("", index=snapshots.index, dtype="str")
    for name in points.columns:
        fired = fired + np.where(points[name].to_numpy() != 0, name + ",", "")
    rules_fired = fired.str.rstrip(",")
    result = pd.DataFrame(
        {
            "rule_score": score.astype("float64"),
            "is_mql": (score >= rules.mql_threshold).astype(bool),
            "rules_fired": pd.array(rules_fired, dtype="str"),
        },
        index=snapshots.index,
    )
    return pd.concat([result, points.add_prefix("points_"), hits.add_prefix("hits_")], axis=1)


def rule_fields(rows: pd.DataFrame, config: ProjectConfig) -> pd.DataFrame:
    """Fields attribute rules may test: raw attributes plus derived ones."""
    derived = derive_attributes(rows, config.source.attributes.job_title, config.features)
    return pd.concat([rows.drop(columns=derived.columns, errors="ignore"), derived], axis=1)


def rule_results(
    rules: RuleSet,
    rows: pd.DataFrame,
    snapshots: pd.DataFrame,
    activities: ActivityIndex,
    config: ProjectConfig,
) -> pd.DataFrame:
    """Rule score, MQL flag and fired rules for the snapshot rows."""
    return evaluate_rules(rules, rule_fields(rows, config), snapshots, activities)
