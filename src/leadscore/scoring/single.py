"""One lead scored in a few hundred microseconds: the batch's recipe, compiled for one row.

The service answers one lead at a time. The batch's pandas and DuckDB code, run on a
one-row frame, spends its time on per-call set-up (a DuckDB connection per feature block,
a frame per step, each title pattern applied through pandas four times), not on the lead.
:class:`SingleLeadScorer` does the same arithmetic on plain values and small NumPy arrays,
with everything that does not depend on the lead prepared once per model: the title,
e-mail and page patterns compiled, each categorical column's codes, the boosters and their
per-leaf attribution tables, the factor table of the reasons, the rules.

It gives the batch's result: probability, percentile, tier, reasons, rule points, fired
rules (``tests/integration/test_single_lead.py`` draws hundreds of leads and compares them
with the nightly batch at 1e-9). A logistic champion reads its design from a one-row model
matrix (its one-hot encoder works on frames). Where boosters were trained on other
categories than the model's feature builder holds, :meth:`SingleLeadScorer.of` returns
None and the caller scores through the batch's code, as before.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import FeatureConfig, ProjectConfig
from leadscore.data import titles
from leadscore.data.features import (
    _DAY_US,
    _URL_HOST,
    _URL_TAIL,
    DECAY_HALF_LIFE_DAYS,
    OTHER,
    TREND_PREVIOUS_DAYS,
    TREND_RECENT_DAYS,
    BehaviourSpec,
    FeatureBuilder,
)
from leadscore.data.rules import AttributeRule, RuleSet
from leadscore.errors import ConfigError, DataError, LeadscoreError, ModelError
from leadscore.io.events import EventStore
from leadscore.io.lead_reader import LeadReader, OneLead
from leadscore.io.sources import CRMData, load_crm
from leadscore.io.tables import id_text, lead_id_text
from leadscore.io.uris import is_database_uri
from leadscore.modeling.reasons import SEPARATOR, Phrases, category_phrase, factors
from leadscore.scoring import ondemand
from leadscore.scoring.inputs import attribute_columns, check_inputs
from leadscore.scoring.ondemand import Population, rank_in_population
from leadscore.scoring.scorer import Scorer
from leadscore.scoring.tiers import assign_rule_tiers, rule_point_floors

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"@([^@\s]+)$")


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _classifier(patterns: tuple[tuple[str, str], ...], missing: str):
    """A title → label function: `titles._classify` on one title (first match wins)."""
    compiled = [(label, re.compile(p, re.IGNORECASE)) for label, p in patterns]
    default = missing if missing == "unknown" else "other"

    def classify(title: Any) -> str:
        if _missing(title):
            return "unknown"
        text = unicodedata.normalize("NFKC", str(title)).strip().lower()
        if text == "":
            return "unknown"
        for label, pattern in compiled:
            if pattern.search(text):
                return label
        return default

    return classify


_SENIORITY = _classifier(titles._SENIORITY_PATTERNS, "unknown")
_DEPARTMENT = _classifier(titles._DEPARTMENT_PATTERNS, "other")


class _Derivation:
    """Seniority, department and e-mail domain kind of one lead (`derive_attributes`)."""

    def __init__(self, config: FeatureConfig) -> None:
        student = "|".join(config.student_domain_patterns)
        self.student = re.compile(student) if student else None
        self.free = {d.lower() for d in config.free_mail_domains}
        self.competitor = {d.lower() for d in config.competitor_domains}

    def kind(self, domain: Any) -> str:
        if _missing(domain):
            return "unknown"
        d = str(domain).lower()
        if d == "":
            return "unknown"
        kind = "corporate"
        if self.student is not None and self.student.search(d):
            kind = "student"
        if d in self.free:
            kind = "free_mail"
        if d in self.competitor:
            kind = "competitor"
        return kind

    def derive(self, row: Mapping[str, Any], title_column: str | None) -> dict[str, str]:
        title = row.get(title_column) if title_column else None
        return {
            "seniority": _SENIORITY(title),
            "department": _DEPARTMENT(title),
            "email_domain_kind": self.kind(row.get("email_domain")),
        }


def email_domain(email: Any) -> str | None:
    """`features.email_domain` of one address."""
    if _missing(email):
        return None
    found = _EMAIL.search(str(email).strip().lower())
    return found.group(1) if found else None


def _url_path(detail: str) -> str:
    path = _URL_TAIL.sub("", _URL_HOST.sub("", detail))
    return path if path != "" or detail == "" else "/"


class _PageCategories:
    """`page_category_codes` of one detail: the first pattern matching its URL path."""

    def __init__(self, categories: Mapping[str, str]) -> None:
        self.patterns = [re.compile(p, re.IGNORECASE) for p in categories.values()]
        self.cache: dict[str, int] = {}

    def code(self, detail: Any) -> int:
        if _missing(detail):
            return -1
        text = str(detail)
        found = self.cache.get(text)
        if found is None:
            path = _url_path(text)
            found = next((i for i, p in enumerate(self.patterns) if p.search(path)), -1)
            if len(self.cache) < 100_000:  # URL paths repeat; the cache stays bounded
                self.cache[text] = found
        return found


@dataclass(frozen=True)
class _Events:
    """One lead's activities in a lookback: ages in days, type and category per event."""

    t: np.ndarray  # microseconds
    age: np.ndarray
    types: np.ndarray  # object: the type names
    category: np.ndarray  # int: position in the categories, -1 when none


def _events(lead: OneLead, as_of_us: int, lookback_days: int, pages, page_type: str) -> _Events:
    t = np.asarray(lead.times, dtype=np.int64)
    inside = (t < as_of_us) & (t >= as_of_us - int(lookback_days) * _DAY_US)
    t = t[inside]
    types = np.asarray(lead.types, dtype=object)[inside]
    details = np.asarray(lead.details, dtype=object)[inside]
    category = np.array(
        [pages.code(d) if ty == page_type else -1 for ty, d in zip(types, details, strict=True)],
        dtype=np.int64,
    )
    return _Events(t, (as_of_us - t) / float(_DAY_US), types, category)


class _Behaviour:
    """`behaviour_features` of one lead, from its events."""

    def __init__(self, spec: BehaviourSpec) -> None:
        self.spec = spec
        self.pages = _PageCategories(spec.page_categories)
        self.columns = spec.columns()

    def values(self, lead: OneLead, as_of_us: int) -> dict[str, float]:
        spec = self.spec
        out: dict[str, float] = {}
        if not spec.enabled:  # a flat export: no behaviour columns at all
            return out
        events = _events(lead, as_of_us, spec.lookback_days, self.pages, spec.page_activity_type)
        age, cap = events.age, int(spec.recency_cap_days)
        weight = np.power(0.5, (as_of_us - events.t) / (_DAY_US * float(DECAY_HALF_LIFE_DAYS)))
        masks = [events.types == name for name in spec.activity_types]
        masks += [events.category == i for i in range(len(spec.page_categories))]
        for key, mask in zip(spec.keys(), masks, strict=True):
            _aggregate(out, key, age[mask], weight[mask], spec.windows_days, cap)
        for w in spec.windows_days:
            out[f"n_all_{w}d"] = float(np.count_nonzero(age <= w))
        out["decayed_all"] = float(weight.sum()) if len(weight) else 0.0
        widest = max(spec.windows_days)
        days = np.unique(events.t[age <= widest] // _DAY_US)
        out[f"active_days_{widest}d"] = float(len(days))
        recent = np.count_nonzero(age <= TREND_RECENT_DAYS)
        previous = np.count_nonzero(
            (age > TREND_RECENT_DAYS) & (age <= TREND_RECENT_DAYS + TREND_PREVIOUS_DAYS)
        )
        out["trend_7d_vs_prev_21d"] = (recent / TREND_RECENT_DAYS + 0.1) / (
            previous / TREND_PREVIOUS_DAYS + 0.1
        )
        capped = age[age <= cap]
        out["days_since_any"] = float(capped.min()) if len(capped) else math.nan
        created = lead.created_at
        out["lead_age_days"] = (
            math.nan if np.isnat(created) else (as_of_us - _us(created)) / float(_DAY_US)
        )
        return out


def _aggregate(out: dict, key: str, age: np.ndarray, weight: np.ndarray, windows, cap) -> None:
    for w in windows:
        out[f"n_{key}_{w}d"] = float(np.count_nonzero(age <= w))
    capped = age[age <= cap]
    out[f"days_since_{key}"] = float(capped.min()) if len(capped) else math.nan
    out[f"decayed_{key}"] = float(weight.sum()) if len(weight) else 0.0


def _us(moment: Any) -> int:
    return int(np.datetime64(moment, "us").astype(np.int64))


class _Matrix:
    """`FeatureBuilder.transform` of one row: the numbers the boosters read."""

    def __init__(self, builder: FeatureBuilder) -> None:
        self.builder = builder
        self.codes = {
            col: {value: i for i, value in enumerate(cats)}
            for col, cats in builder.categories_.items()
        }
        self.numeric = [*builder.numeric, *builder.behaviour.columns()]
        self.names = list(builder.feature_names_)

    def attributes(self, row: Mapping[str, Any], derived: Mapping[str, str]) -> dict[str, Any]:
        """`_attribute_frame`: the categorical values before unseen ones become "other"."""
        out = {}
        for col in self.builder.categorical:
            value = row.get(col)
            out[col] = None if _missing(value) else str(value)
        for col in self.builder.derived:
            out[col] = derived[col]
        return out

    def row(self, row: Mapping[str, Any], attributes: Mapping[str, Any]) -> np.ndarray:
        x = np.empty(len(self.names))
        for i, col in enumerate(self.names):
            if col in self.codes:
                value = attributes[col]
                codes = self.codes[col]
                x[i] = math.nan if value is None else codes.get(value, codes.get(OTHER, math.nan))
            else:
                x[i] = _number(row.get(col))
        return x

    def frame(self, x: np.ndarray) -> pd.DataFrame:
        """The one-row model matrix as `FeatureBuilder.transform` returns it."""
        columns = {}
        for i, col in enumerate(self.names):
            if col in self.codes:
                code = -1 if math.isnan(x[i]) else int(x[i])
                cats = self.builder.categories_[col]
                columns[col] = pd.Categorical.from_codes([code], categories=cats)
            else:
                columns[col] = np.array([x[i]], dtype=np.float64)
        return pd.DataFrame(columns, index=[0])


def _number(value: Any) -> float:
    """`pd.to_numeric(errors="coerce")` of one value."""
    if _missing(value):
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | np.number):
        return float(value)
    return float(pd.to_numeric(str(value), errors="coerce"))  # text: pandas' own parsing


class _Contributions:
    """`PathAttributions.contributions` of one row: a gather and one `bincount`."""

    def __init__(self, table) -> None:
        self.table = table
        sizes = np.array([len(v) for v in table.pair_values], dtype=np.int64)
        self.offset = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
        self.flat = np.concatenate(table.pair_values) if len(sizes) else np.zeros(0)
        self.feature = np.asarray(table.pair_feature, dtype=np.int64)
        self.tree = np.asarray(table.pair_tree, dtype=np.int64)

    def of(self, x: np.ndarray) -> np.ndarray:
        leaves = np.asarray(self.table.leaves(x.reshape(1, -1), num_threads=1))[0]
        values = self.flat[self.offset + leaves[self.tree]]
        return np.bincount(self.feature, values, self.table.n_features)


@dataclass(frozen=True)
class Scored:
    """One lead's score before it is ranked (the batch's partial row)."""

    lead_id: Any
    as_of: pd.Timestamp
    conversion_probability: float
    rule_score: float
    is_mql: bool
    rules_fired: str
    reasons_up: str
    reasons_down: str
    #: Rules-only: the tier by rule points (a model's tier comes from its ranking).
    rule_tier: str | None = None


class _Rules:
    """`rule_results` of one lead: attribute rules on its fields, behaviour rules on its
    events (counted as `behaviour_counts` counts them)."""

    def __init__(self, rules: RuleSet, numeric: set[str], categories: tuple[str, ...]) -> None:
        self.rules = rules
        self.numeric = numeric
        self.categories = categories
        for rule in rules.behaviour_rules:
            if rule.page_category is not None and rule.page_category not in categories:
                raise ConfigError(
                    f"rule '{rule.name}' uses page_category '{rule.page_category}', which is "
                    f"not configured (known: {', '.join(categories)})",
                    "add the category under features.page_categories or fix the rule",
                )

    def points(self, fields: Mapping[str, Any], events: _Events) -> dict[str, float]:
        out = {}
        for rule in self.rules.attribute_rules:
            out[rule.name] = float(self._matches(rule, fields)) * rule.points
        present = set(events.types.tolist())
        for rule in self.rules.behaviour_rules:
            occurrences = 0.0
            if rule.activity in present:
                mask = (events.types == rule.activity) & (events.age <= rule.within_days)
                if rule.page_category is not None:
                    mask &= events.category == self.categories.index(rule.page_category)
                occurrences = float(np.count_nonzero(mask))
            if rule.cap is not None and rule.points != 0:
                occurrences = min(occurrences, rule.cap / abs(rule.points))
            out[rule.name] = occurrences * rule.points
        return out

    def _matches(self, rule: AttributeRule, fields: Mapping[str, Any]) -> bool:
        if rule.field not in fields:
            raise rule.unknown_field(fields)
        value = fields[rule.field]
        numeric = rule.field in self.numeric
        targets = [rule.equals] if rule.equals is not None else rule.in_
        if targets is not None:
            numbers = [_number(t) for t in targets]
            if numeric and not any(math.isnan(n) for n in numbers):
                return not _missing(value) and float(value) in numbers
            if _missing(value):
                return False
            text = _text(value, numeric).lower()
            return text in {str(v).lower() for v in targets}
        if rule.contains is not None:
            if _missing(value):
                return False
            needles = [rule.contains] if isinstance(rule.contains, str) else rule.contains
            text = _text(value, numeric).lower()
            return any(n.lower() in text for n in needles)
        low, high = rule.range  # type: ignore[misc]
        number = _number(value)
        if math.isnan(number):
            return False
        return (low is None or number >= low) and (high is None or number <= high)


def _text(value: Any, numeric: bool) -> str:
    """A value as `astype("str")` writes it (a float column's 100 reads "100.0")."""
    return str(float(value)) if numeric else str(value)


class SingleLeadScorer:
    """A `Scorer` compiled for one lead at a time (see the module's docstring)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        config: ProjectConfig = scorer.config
        self.config = config
        self.rules = scorer.rules
        model = scorer.model
        self.known_types = scorer.known_activity_types
        if model is None:
            self.builder = None
            self.attribute_columns = attribute_columns(config)
            numeric = set(config.source.attributes.numeric)
            spec = BehaviourSpec.none()
            self.page_categories = dict(config.features.page_categories)
            self.page_type = config.features.page_activity_type
            self.floors = rule_point_floors(scorer.rules.mql_threshold, config.tiers)
        else:
            builder = model.features
            self.builder = builder
            columns = [*builder.categorical, *builder.numeric]
            columns += [builder.title_column] if builder.title_column else []
            self.attribute_columns = list(dict.fromkeys(columns))
            spec = builder.behaviour
            numeric = {*builder.numeric, *spec.columns()}
            self.page_categories = dict(spec.page_categories)
            self.page_type = spec.page_activity_type
            self.matrix = _Matrix(builder)
            self.behaviour = _Behaviour(spec)
            self.model_derivation = _Derivation(builder.feature_config)
            self.model = model
            self.linear = model.learner != "lightgbm"
            self.calibrator = model.calibrator_
            if not self.linear:
                self.members = [(m.booster.booster_, m.iteration) for m in model.members_]
                self.contributions = [_Contributions(t) for t in model.path_attributions()]
            self.groups = factors(builder)
            position = {name: i for i, name in enumerate(self.matrix.names)}
            self.group_columns = [[position[n] for n in g.features] for g in self.groups]
            self.member = np.zeros((len(self.matrix.names), len(self.groups)))
            for j, cols in enumerate(self.group_columns):
                self.member[cols, j] = 1.0
            self.phrases = Phrases(
                builder, pd.DataFrame(), config.report.labels, config.report.language
            )
        self.spec = spec
        self.pages = _PageCategories(self.page_categories)
        self.rule_derivation = _Derivation(config.features)
        self.rule_evaluator = _Rules(scorer.rules, numeric, tuple(self.page_categories))
        self.email = config.source.attributes.email
        self.lookback_days = scorer.lookback_days

    @classmethod
    def of(cls, scorer: Scorer) -> SingleLeadScorer | None:
        """The compiled scorer, or None where only the batch's code scores this model."""
        model = scorer.model
        if model is None or model.learner != "lightgbm":
            return cls(scorer)
        builder = model.features
        if builder.accounts is not None and builder.accounts.enabled:
            return None  # a lead's account is more than its own row: the batch's code refuses
        for member in model.members_:
            stored = getattr(member.booster.booster_, "pandas_categorical", None) or []
            if [list(c) for c in stored] != [
                list(builder.categories_[c]) for c in builder.categorical_features
            ]:
                return None
        return cls(scorer)

    # -- the lead's row ---------------------------------------------------------------------

    def _row(self, lead: OneLead) -> dict[str, Any]:
        """`snapshot_rows`' attribute part: the mapped fields, e-mail reduced to its domain."""
        missing = [c for c in self.attribute_columns if c not in lead.fields]
        if missing and self.builder is not None:  # `model_rows`' refusal
            raise DataError(
                f"the model was trained with lead column(s) {', '.join(missing)}, which the "
                "source no longer provides",
                "map them again under source.attributes, or retrain with `leadscore train`",
            )
        if missing:  # `rule_rows`' refusal
            raise DataError(
                f"table '{self.config.source.tables.leads}' lacks the mapped column(s) "
                f"{', '.join(missing)}",
                "map existing columns under source.attributes",
            )
        row = {col: lead.fields.get(col) for col in self.attribute_columns}
        if self.email:
            row["email_domain"] = email_domain(lead.fields.get(self.email))
        return row

    def _check(self, types: set[str]) -> None:
        """`Scorer.check` of one lead: the rule file against the activity types known."""
        check_inputs(self.rules, self.config, self.config.flat, tuple(sorted(types)),
                     self.known_types, whole_source=False)  # fmt: skip

    def score(self, lead: OneLead, as_of: pd.Timestamp) -> Scored:
        """Probability, rule score and reasons of an open lead as of `as_of`."""
        as_of_us = _us(as_of.to_datetime64())
        row = self._row(lead)
        lookback = self.lookback_days
        types = {str(t) for t, at in zip(lead.types, lead.times, strict=True)
                 if as_of_us - lookback * _DAY_US <= at < as_of_us}  # fmt: skip
        self._check(types)
        if self.builder is None:
            return self._rules_only(lead, row, as_of, as_of_us)
        row.update(self.behaviour.values(lead, as_of_us))
        attributes = self.matrix.attributes(
            row, self.model_derivation.derive(row, self.builder.title_column)
        )
        x = self.matrix.row(row, attributes)
        if self.linear:  # a logistic champion reads its design from the model's matrix
            frame = self.matrix.frame(x)
            members = self.model.members_
            raw = np.array([m.raw(frame)[0] for m in members])
            contrib = np.mean([m.contributions(frame, len(x))[0] for m in members], axis=0)
        else:
            rows = x.reshape(1, -1)
            raw = np.array([b.predict(rows, num_iteration=n)[0] for b, n in self.members])
            contrib = np.mean([c.of(x) for c in self.contributions], axis=0)
        calibrated = self.calibrator.predict(raw)  # elementwise: one call for every member
        probability = float(calibrated.mean())
        if not (math.isfinite(probability) and 0 <= probability <= 1):
            raise ModelError(
                "the model returned probabilities outside [0, 1]; nothing was published"
            )
        up, down = self._reasons(contrib, row, attributes)
        events = _events(lead, as_of_us, self._rule_lookback(), self.pages, self.page_type)
        points = self._points(row, events)
        return self._scored(lead, as_of, probability, points, up, down)

    def _rule_lookback(self) -> int:
        windows = [r.within_days for r in self.rules.behaviour_rules]
        return max(windows) if windows else 0

    def _points(self, row: Mapping[str, Any], events: _Events) -> dict[str, float]:
        title = self.config.source.attributes.job_title
        derived = self.rule_derivation.derive(row, title if title in row else None)
        fields = {k: v for k, v in row.items() if k not in derived} | derived
        return self.rule_evaluator.points(fields, events)

    def _scored(self, lead, as_of, probability, points, up, down, rule_tier=None) -> Scored:
        score = float(sum(points.values())) if points else 0.0
        fired = ",".join(name for name, p in points.items() if p != 0)
        return Scored(
            lead.lead_id,
            as_of,
            probability,
            score,
            bool(score >= self.rules.mql_threshold),
            fired,
            up,
            down,
            rule_tier,
        )

    def _rules_only(self, lead, row, as_of, as_of_us) -> Scored:
        events = _events(lead, as_of_us, self._rule_lookback(), self.pages, self.page_type)
        points = self._points(row, events)
        ordered = sorted(
            ((name, p) for name, p in points.items() if p != 0), key=lambda item: -abs(item[1])
        )
        up = SEPARATOR.join(f"{n} {p:+g}" for n, p in ordered if p > 0)
        down = SEPARATOR.join(f"{n} {p:+g}" for n, p in ordered if p < 0)
        score = float(sum(points.values())) if points else 0.0
        tier = assign_rule_tiers(np.array([score]), self.floors)[0]
        return self._scored(lead, as_of, math.nan, points, up, down, tier)

    # -- reasons ----------------------------------------------------------------------------

    def _reasons(self, contrib: np.ndarray, row, attributes) -> tuple[str, str]:
        """`explain` of one lead: the top factors each way, in words."""
        top, min_effect = 3, 0.02
        effect = (contrib.reshape(1, -1) @ self.member)[0]
        out = []
        for sign in (1.0, -1.0):
            k = min(top, len(effect))
            order = np.argsort(-(sign * effect), kind="stable")[:k]
            phrases = []
            for j in order:
                if not sign * effect[j] > min_effect:
                    continue
                cols = self.group_columns[j]
                driver = int(np.argmax(sign * contrib[cols]))
                feature = self.groups[j].features[driver]
                phrases.append(self._describe(feature, row, attributes, lowering=sign < 0))
            out.append(SEPARATOR.join(p for p in phrases if p))
        return out[0], out[1]

    def _describe(self, feature: str, row, attributes, lowering: bool) -> str:
        """`Phrases.describe` of one lead (the same vocabulary, so the same words)."""
        phrases, spec = self.phrases, self.spec
        v = phrases.vocabulary
        builder = self.builder
        if feature in builder.categories_:
            return self._category(feature, attributes[feature])
        if feature in builder.numeric:
            return v.number(phrases.field_label(feature), _number(row.get(feature)))
        match = re.fullmatch(r"n_(.+)_(\d+)d", feature)
        if match:
            noun = phrases.noun(match.group(1))
            return v.counted(noun, row[feature], int(match.group(2)), lowering)
        if feature.startswith("days_since_") and feature != "days_since_any":
            days = row[feature]
            singular, plural = phrases.noun(feature[len("days_since_") :])
            if math.isnan(days):
                return v.say("none", nouns=plural, window=spec.recency_cap_days)
            return v.say("last", noun=singular, ago=v.days_ago(days))
        if feature.startswith("decayed_"):
            noun = phrases.noun(feature[len("decayed_") :])
            chosen = v.say("none", nouns=noun[1], window=max(spec.windows_days))
            for w in sorted(spec.windows_days, reverse=True):
                count = row[f"n_{feature[len('decayed_') :]}_{w}d"]
                if count > 0:
                    chosen = v.counted(noun, count, w, lowering)
            return chosen
        if feature.startswith("active_days_"):
            return v.active(row[feature], feature[len("active_days_") : -1], lowering)
        if feature == "days_since_any":
            days = row[feature]
            if math.isnan(days):
                return v.say("no_activity", window=spec.recency_cap_days)
            if days >= 30:
                return v.say("quiet_for", n=f"{int(np.round(days)):,}")
            return v.say("last_activity", ago=v.days_ago(days))
        if feature == "trend_7d_vs_prev_21d":
            trend = row[feature]
            since = row["days_since_any"]
            if (math.inf if math.isnan(since) else since) >= 28:
                return v.say("quiet_weeks")
            if trend >= 1.25:
                return v.say("picking_up")
            if trend <= 0.8:
                return v.say("slowing_down")
            return v.say("steady")
        if feature == "lead_age_days":
            return v.say("created", ago=v.days_ago(row[feature]))
        return feature.replace("_", " ")

    def _category(self, feature: str, value: str | None) -> str:
        v = self.phrases.vocabulary
        if feature in ("email_domain_kind", "seniority", "department"):
            return category_phrase(v, feature, value)
        label = self.phrases.field_label(feature)
        if value is None or value == "":
            return v.say("not_given", label=label)
        if value not in self.builder.categories_.get(feature, []):
            return v.say("less_common", label=label)
        return v.say("value", label=label, value=value.replace("_", " "))


def lead_from_crm(crm: CRMData, key: str) -> OneLead:
    """The lead whose id reads `key` (`lead_id_text`), from a source read for a few leads."""
    leads = crm.leads
    at = int(np.flatnonzero(lead_id_text(leads["lead_id"]).to_numpy() == key)[0])
    record = leads.iloc[at]
    acts = crm.activities
    mine = acts["lead_id"].to_numpy() == record["lead_id"]
    outcomes = crm.outcomes
    converted = outcomes["converted_at"].to_numpy(dtype="datetime64[us]")[
        outcomes["lead_id"].to_numpy() == record["lead_id"]
    ]
    fields = {c: _plain(record[c]) for c in leads.columns if c not in ("lead_id", "created_at")}
    return OneLead(
        lead_id=record["lead_id"],
        created_at=np.datetime64(record["created_at"], "us")
        if "created_at" in leads and pd.notna(record["created_at"])
        else np.datetime64("NaT", "us"),
        fields=fields,
        times=acts["occurred_at"].to_numpy(dtype="datetime64[us]")[mine].view(np.int64),
        types=acts["activity_type"].astype("str").to_numpy(dtype=object)[mine],
        details=acts["detail"].astype("str").to_numpy(dtype=object)[mine]
        if "detail" in acts
        else np.full(int(mine.sum()), None, dtype=object),
        converted_at=converted.min() if len(converted) else None,
        labelled=bool(crm.flat and pd.notna(record.get("converted"))),
    )


def _plain(value: Any) -> Any:
    if _missing(value) or value is pd.NaT:
        return None
    return value.item() if isinstance(value, np.generic) else value


def is_open(lead: OneLead, as_of: pd.Timestamp, config: ProjectConfig, flat: bool) -> bool:
    """`open_leads` of one lead: created in the lookback before `as_of`, not converted."""
    if flat:
        return not lead.labelled
    t = np.datetime64(as_of.to_datetime64(), "us")
    created = lead.created_at
    if np.isnat(created) or not (t - np.timedelta64(config.snapshots.max_lead_age_days, "D")
                                 <= created < t):  # fmt: skip
        return False
    converted = lead.converted_at
    return bool(converted is None or np.isnat(converted) or converted >= t)


def as_record(
    scored: Scored, compiled: SingleLeadScorer, population: Population | None, ranked_id: Any
) -> dict[str, Any]:
    """The service's answer (`ondemand.as_records` of the batch's row): ranked in
    `population`, the lead's own published row left out (`ranked_id`; None: a posted lead)."""
    config = compiled.config
    by_rules = compiled.builder is None
    value = scored.rule_score if by_rules else scored.conversion_probability
    own = None
    if population is not None and ranked_id is not None:
        own = np.array([population.positions.get(id_text(ranked_id), -1)])
    percentile, tier = rank_in_population(
        np.array([value]),
        None if ranked_id is None else [ranked_id],
        population,
        config.tiers,
        own,
    )
    lead_id = scored.lead_id
    p = scored.conversion_probability
    pct = float(percentile[0])
    return {
        "lead_id": lead_id.item() if isinstance(lead_id, np.generic) else lead_id,
        "as_of": scored.as_of.isoformat() + "Z",
        "conversion_probability": None if not math.isfinite(p) else float(p),
        "percentile": None if not math.isfinite(pct) else pct,
        "tier": scored.rule_tier if by_rules else tier[0],
        "rule_score": float(scored.rule_score),
        "is_mql": bool(scored.is_mql),
        "rules_fired": scored.rules_fired.split(",") if scored.rules_fired else [],
        "reasons_up": scored.reasons_up.split(SEPARATOR) if scored.reasons_up else [],
        "reasons_down": scored.reasons_down.split(SEPARATOR) if scored.reasons_down else [],
    }


class OnDemand:
    """On-demand scoring, one lead at a time: the compiled scorer and the one-lead reader
    where they apply; the batch's own code for the rest and for every refusal (an unknown
    or closed lead, a value the batch would refuse), so errors read as they always did."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.config = scorer.config
        self.compiled = SingleLeadScorer.of(scorer)
        config = scorer.config
        #: Where `POST /events` stores, and the reader reads posted events (None: off, or
        #: its table could not be created: `events_problem` says why).
        self.events: EventStore | None = None
        self.events_problem: str | None = None
        takes_events = (
            config.service.events_table is not None
            and is_database_uri(config.publish_uri)
            and not config.flat
            and config.source.tables.activities is not None
        )
        if takes_events:
            try:
                self.events = EventStore(config.publish_uri, config.service.events_table)
            except LeadscoreError as exc:  # scoring goes on; posting events waits for it
                log.warning("events are off: %s", exc.problem)
                self.events_problem = exc.problem
        self.reader = LeadReader.of(config, self.events) if self.compiled is not None else None

    @property
    def mode(self) -> str:
        """How a lead is scored: "compiled" (read and scored one lead at a time),
        "compiled-score" (read the batch's way), or "batch"."""
        if self.compiled is None:
            return "batch"
        return "compiled" if self.reader is not None else "compiled-score"

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        if self.events is not None:
            self.events.close()

    def by_id(self, key: str, moment: pd.Timestamp, population: Population | None) -> dict:
        """Lead `key` of the source as of `moment`, ranked in `population`."""
        scorer = self.scorer
        (key,) = ondemand.check_lead_ids([key])
        if self.reader is not None:
            since = moment - pd.Timedelta(days=scorer.lookback_days)
            lead = self.reader.read(key, since, moment)
            if lead is not None and is_open(lead, moment, self.config, flat=False):
                scored = self.compiled.score(lead, moment)
                return as_record(scored, self.compiled, population, lead.lead_id)
        crm = ondemand.read_leads(scorer, [key], moment)
        if self.compiled is None:
            scores = ondemand.score_leads(crm, [key], scorer, moment, population)
            return ondemand.as_records(scores)[0]
        ondemand.check_requested(crm, [key], moment, self.config)
        lead = lead_from_crm(crm, key)
        return as_record(self.compiled.score(lead, moment), self.compiled, population, lead.lead_id)

    def known_leads(self, keys: Sequence[str]) -> dict[str, str]:
        """Requested id -> the lead's id as text, for the ids the source's leads table
        holds (events are stored under it, as every read matches them)."""
        found = self.reader.lead_ids(keys) if self.reader is not None else None
        if found is not None:
            return found
        moment, found = ondemand.now(), {}
        for key in keys:  # the batch's read, one lead at a time ("0042" may find 42)
            crm = load_crm(
                self.config, activities_since=moment, activities_until=moment, lead_ids=[key]
            )
            if len(crm.leads):
                found[key] = lead_id_text(crm.leads["lead_id"]).iloc[0]
        return found

    def posted(
        self,
        attributes: Mapping[str, str | float | None],
        activities: Sequence[tuple[pd.Timestamp, str, str | None]],
        created_at: pd.Timestamp | None,
        moment: pd.Timestamp,
        population: Population | None,
    ) -> dict:
        """A lead posted as JSON: its fields, its activities (naive UTC time, type, detail)."""
        scorer = self.scorer
        if self.compiled is None:
            return self._posted_batch(attributes, activities, created_at, moment, population)
        newest = max((a[0] for a in activities), default=None)
        kinds = ondemand.check_payload(attributes, newest, created_at, scorer)
        placeholders = set(self.config.source.missing_values)
        fields: dict[str, Any] = {}
        for name, kind in kinds.items():
            value = attributes.get(name)
            if kind == "number":
                fields[name] = math.nan if value is None else float(value)
            elif value is None or not str(value).strip() or value in placeholders:
                fields[name] = None
            else:
                fields[name] = str(value)
        lead = OneLead(
            lead_id=ondemand.POSTED,
            created_at=np.datetime64("NaT", "us")
            if created_at is None
            else np.datetime64(created_at.to_datetime64(), "us"),
            fields=fields,
            times=np.array([_us(a[0].to_datetime64()) for a in activities], dtype=np.int64),
            types=[a[1] for a in activities],
            details=[a[2] for a in activities],
        )
        if not is_open(lead, moment, self.config, flat=self.config.flat):
            # The batch's code refuses it, saying why.
            return self._posted_batch(attributes, activities, created_at, moment, population)
        record = as_record(self.compiled.score(lead, moment), self.compiled, population, None)
        return {**record, "lead_id": None}

    def _posted_batch(self, attributes, activities, created_at, moment, population) -> dict:
        frame = pd.DataFrame(
            {
                "occurred_at": pd.Series([a[0] for a in activities], dtype="datetime64[us]"),
                "activity_type": pd.Series([a[1] for a in activities], dtype="str"),
                "detail": pd.Series([a[2] for a in activities], dtype="str"),
            }
        )
        crm = ondemand.crm_from_payload(attributes, frame, created_at, self.scorer)
        scores = ondemand.score_payload(crm, self.scorer, moment, population)
        return ondemand.as_records(scores)[0]
