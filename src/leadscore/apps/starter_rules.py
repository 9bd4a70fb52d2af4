"""A starter rule file from the data: the values and activities that went with conversion on
the user's own history, as suggestions with their evidence.

`leadscore init` writes it beside the project file instead of the generic example (whose
rules count activity types and fields an export may not have, so the first `train` would
fail). Each rule is measured the way training measures: on the point-in-time snapshots of
the history (a lead's fields and its activities before the snapshot, its conversion within
the horizon after it) of the training cohort only (so the rules know no more of the
newest cohort, where the first run compares them with the model, than the model does), the
columns the leakage guard excludes left out. A rule is
suggested when leads matching it converted at least 1.5 times (or at most 1/1.5 times) as
often as all leads, with a 95 % interval (counted in leads, not snapshots) that does not
reach the overall rate. Points follow the lift (+10 for twice the rate, -10 for half),
and the MQL threshold is the multiple of 5 that flags nearest a fifth of the snapshots.
Where nothing qualifies the file is empty but valid, and says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import yaml

from leadscore.config import ProjectConfig
from leadscore.data.leakage import excluded
from leadscore.data.rules import RuleSet, rule_fields
from leadscore.errors import LeadscoreError
from leadscore.io.sources import load_crm
from leadscore.modeling.metrics import wilson_interval
from leadscore.scoring import training

#: Leads a suggestion needs behind it (and at least this share of all leads).
MIN_LEADS, MIN_SHARE = 30, 0.01
#: Smallest lift (or largest inverse lift) worth a rule.
MIN_LIFT = 1.5
#: Rules written at most: those that add points, those that take them away (the strongest
#: of each first), and per field (values of one field are often one signal).
MAX_POSITIVE, MAX_NEGATIVE, MAX_PER_FIELD = 6, 4, 2
#: Leads read to suggest rules on a large source (a seeded sample, as training's).
SAMPLE_LEADS = 20_000
#: Days a behaviour rule counts back (the middle window the features have).
BEHAVIOUR_DAYS = 30
#: Share of snapshots the suggested threshold flags at most.
MQL_SHARE = 0.2


@dataclass(frozen=True)
class Suggestion:
    rule: dict
    hits: np.ndarray  # which snapshots it fires on
    rate: float
    base: float
    leads: int

    @property
    def lift(self) -> float:
        return self.rate / self.base if self.base > 0 else float("nan")

    @property
    def points(self) -> int:
        return int(np.clip(5 * round(2 * math.log2(self.lift)), -30, 30))


def _judge(rule: dict, hits: np.ndarray, y: np.ndarray, leads: np.ndarray) -> Suggestion | None:
    n_leads = len(np.unique(leads[hits]))
    total = len(np.unique(leads))
    if n_leads < max(MIN_LEADS, MIN_SHARE * total) or hits.all():
        return None
    base, rate = float(y.mean()), float(y[hits].mean())
    low, high = wilson_interval(rate * n_leads, n_leads)
    strong = rate >= MIN_LIFT * base and low > base
    weak = rate * MIN_LIFT <= base and high < base
    if not (strong or weak) or rate == 0:
        return None
    return Suggestion(rule, hits, rate, base, n_leads)


def _name(*parts: object) -> str:
    """A rule name of ASCII letters, digits and underscores (what a rule file allows):
    values in other scripts leave only the field's name, made unique by `_unique`."""
    text = "_".join(str(p) for p in parts).lower()
    name = "".join(c if c.isascii() and c.isalnum() else "_" for c in text)
    return "_".join(part for part in name.split("_") if part)[:60] or "rule"


def _unique(chosen: list[Suggestion]) -> list[dict]:
    """The chosen rules with their points, names made unique (industry, industry_2, ...)."""
    seen: dict[str, int] = {}
    out = []
    for s in chosen:
        name = s.rule["name"]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}_{seen[name]}"
        out.append({**s.rule, "name": name, "points": s.points})
    return out


def suggest(config: ProjectConfig) -> tuple[list[Suggestion], str]:
    """The suggestions on the source's history, and a sentence on what they rest on."""
    crm = load_crm(config, sample=SAMPLE_LEADS)
    data = training.build_training_set(crm, config, RuleSet(mql_threshold=50))
    dropped = excluded(training.leakage_findings(data, config, crm))
    # Only the training cohort: the rules are then no better informed about the newest
    # cohort, where the first run compares them with the model, than the model is.
    examples = data.examples.select(data.splits["train"])
    y = examples.labels
    leads = examples.snapshots["lead_id"].astype("str").to_numpy()
    fields = rule_fields(examples.rows, config)
    attrs = config.source.attributes
    candidates: list[tuple[dict, np.ndarray]] = []
    categorical = [c for c in attrs.categorical if c not in dropped]
    derived = [c for c in ("seniority", "department", "email_domain_kind") if c in fields]
    for column in [*categorical, *derived]:
        values = fields[column].astype("str").where(fields[column].notna())
        for value in values.dropna().unique():
            rule = {"name": _name(column, value), "field": column, "equals": str(value)}
            candidates.append((rule, (values == value).to_numpy()))
    for column in (c for c in attrs.numeric if c not in dropped):
        values = pd.to_numeric(fields[column], errors="coerce")
        if values.notna().sum() >= MIN_LEADS:
            top = float(values.quantile(0.75))
            rule = {"name": _name(column, "top_quarter"), "field": column, "range": [top, None]}
            candidates.append((rule, (values >= top).to_numpy()))
    spec = data.spec
    if spec.enabled:
        window = min(spec.windows_days, key=lambda w: abs(w - BEHAVIOUR_DAYS))
        behaviour = spec.keys()  # activity types, then page categories
        for key in behaviour:
            counts = examples.rows.get(f"n_{key}_{window}d")
            if counts is None:
                continue
            if key.startswith("page_"):
                category = key.removeprefix("page_")
                rule = {"name": _name(category, "pages"), "activity": spec.page_activity_type,
                        "page_category": category}  # fmt: skip
            else:
                rule = {"name": _name(key), "activity": key}
            candidates.append(({**rule, "within_days": int(window)}, counts.to_numpy() > 0))
    found = [s for rule, hits in candidates if (s := _judge(rule, hits, y, leads)) is not None]
    found.sort(key=lambda s: -abs(math.log(s.lift)))
    chosen, per_field = [], {}
    for up, most in ((True, MAX_POSITIVE), (False, MAX_NEGATIVE)):
        kept = 0
        for s in found:
            field = s.rule.get("field", s.rule.get("activity"))
            if (s.lift > 1) != up or kept == most or per_field.get(field, 0) == MAX_PER_FIELD:
                continue
            chosen.append(s)
            per_field[field] = per_field.get(field, 0) + 1
            kept += 1
    basis = (
        f"the training cohort's {len(examples.snapshots):,} snapshots of "
        f"{len(np.unique(leads)):,} leads, {y.mean():.1%} converting within "
        f"{config.horizon_days} days"
        if not config.flat
        else f"the training cohort's {len(leads):,} leads, {y.mean():.1%} converted"
    )
    if dropped:
        basis += f"; left out as leaks: {', '.join(sorted(dropped))}"
    return chosen, basis


def _threshold(chosen: list[Suggestion]) -> tuple[int, float]:
    """The multiple of 5 points whose MQL share of the snapshots is nearest `MQL_SHARE`
    (and above none); 50 when no rule adds points."""
    points = np.asarray(sum(s.points * s.hits for s in chosen))
    top = int(points.max()) if points.size else 0
    if top <= 0:
        return 50, 0.0
    shares = {t: float((points >= t).mean()) for t in range(5, top + 1, 5)}
    best = min(shares, key=lambda t: (abs(shares[t] - MQL_SHARE), t))
    return best, shares[best]


def starter_rules_text(config: ProjectConfig) -> str:
    """The rule file to start with: suggestions from the data, or an empty valid file."""
    head = [
        "# Your MQL agreement as leadscore evaluates it: points per lead, an MQL at",
        "# mql_threshold. `leadscore init` suggested the rules below from your own history;",
        "# they are a start, not your agreement: replace them with the rules marketing and",
        "# sales agreed on, or keep the ones you recognise. Attribute rules test a field",
        "# (equals, in, contains, range); behaviour rules count activities within N days.",
    ]
    try:
        found, basis = suggest(config)
    except LeadscoreError as exc:
        return _empty(head, f"no rules suggested: {exc.problem}")
    if not found:
        return _empty(head, f"no value or activity went with conversion clearly enough ({basis})")
    threshold, share = _threshold(found)
    lines = [*head, f"# Measured on {basis}.", f"mql_threshold: {threshold}"]
    lines.append(f"# flags {share:.0%} of those snapshots with the rules below")
    named = dict(zip(map(id, found), _unique(found), strict=True))
    for kind, key in (("attribute_rules", "field"), ("behaviour_rules", "activity")):
        chosen = [s for s in found if key in s.rule]
        if not chosen:
            lines.append(f"{kind}: []")
            continue
        lines.append(f"{kind}:")
        for s in chosen:
            lines.append(
                f"  # suggestion: converted at {s.rate:.1%} against {s.base:.1%} overall "
                f"(lift {s.lift:.2f}, {s.leads:,} leads)"
            )
            rule = named[id(s)]
            if key == "activity":
                rule["cap"] = abs(s.points)  # once per lead, as it was measured
            text = yaml.safe_dump([rule], sort_keys=False, allow_unicode=True, width=1000)
            lines.extend(f"  {line}" for line in text.rstrip("\n").splitlines())
    return "\n".join(lines) + "\n"


#: What a rule looks like, for a file with none yet.
_EXAMPLES = """\
#  - name: working_professional
#    field: occupation              # a column of your leads, or seniority, department,
#    equals: Working Professional   #   email_domain_kind (derived by leadscore)
#    points: 30
behaviour_rules: []
#  - name: pricing_page
#    activity: page_view            # an activity type of your activities table
#    page_category: pricing         # optional: features.page_categories
#    within_days: 30
#    points: 10
#    cap: 30"""


def _empty(head: list[str], why: str) -> str:
    said = [f"# {line}" for line in f"{why}.".splitlines()]
    lines = [*head, *said, "# Until you add rules, every lead has 0 points.",
             "mql_threshold: 50", "attribute_rules: []", _EXAMPLES]  # fmt: skip
    return "\n".join(lines) + "\n"
