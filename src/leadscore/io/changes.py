"""Why a lead's score changed: two of its published scores, compared in words.

Used where people ask "why is this lead hot now?": the hot-lead alerts, the service's
`/leads/{id}/changes` and the score it answers next to the lead's published one, and the
report's lead lists. Both scores are rows of the score tables (or the same fields).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_NUMBER = re.compile(r"\d[\d.,]*%?")
_PLURAL = re.compile(r"(?<=\w)s\b")


def reasons(text: Any, separator: str = ";") -> list[str]:
    """A reasons column ("a; b; c") as a list, empty for none (rules_fired: separator ",")."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    if isinstance(text, list):
        return [str(r).strip() for r in text if str(r).strip()]
    return [r.strip() for r in str(text).split(separator) if r.strip()]


def _topic(reason: str) -> str:
    """What a reason is about, without its numbers or plurals ("4 pricing-page views" ~
    "1 pricing-page view")."""
    return _PLURAL.sub("", _NUMBER.sub("#", reason))


def _share(p: float, words) -> str:
    return words.pct(p, 1 if p < 0.1 else 0)


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _reason_changes(before: list[str], after: list[str], up: bool, words) -> list[str]:
    was = {_topic(r): r for r in before}
    now = {_topic(r): r for r in after}
    way = "up" if up else "down"
    out = []
    for topic, reason in now.items():
        if topic not in was:
            out.append(words(f"changes.now_{way}", reason=reason))
        elif was[topic] != reason:
            out.append(words("changes.was", reason=reason, before=was[topic]))
    out += [words(f"changes.no_longer_{way}", reason=r) for t, r in was.items() if t not in now]
    return out


def score_change(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], words=None
) -> list[str]:
    """The differences from `before` to `after`, most important first, in plain words (the
    language of `words`, an `i18n.Words`; English without one).

    Each is a mapping with tier, conversion_probability, is_mql, rule_score, reasons_up
    and reasons_down (a run by the rules alone has no probability).
    """
    if words is None:
        from leadscore.i18n import Words

        words = Words("en")
    if before is None:
        return [words("changes.first")]
    out = []
    if before.get("tier") != after.get("tier") and after.get("tier") is not None:
        out.append(words("changes.tier", before=before.get("tier") or "-", after=after["tier"]))
    p_was, p_now = (
        _number(before.get("conversion_probability")),
        _number(after.get("conversion_probability")),
    )
    if p_was is not None and p_now is not None and abs(p_now - p_was) >= 0.005:
        out.append(
            words("changes.probability", before=_share(p_was, words), after=_share(p_now, words))
        )
    r_was, r_now = _number(before.get("rule_score")), _number(after.get("rule_score"))
    points = ""
    if r_was is not None and r_now is not None:
        points = words("changes.points", before=f"{r_was:g}", after=f"{r_now:g}")
    mql_was, mql_now = bool(before.get("is_mql")), bool(after.get("is_mql"))
    if mql_now and not mql_was:
        out.append(
            words("changes.became_mql_by", points=points) if points else words("changes.became_mql")
        )
    elif mql_was and not mql_now:
        out.append(
            words("changes.left_mql_by", points=points) if points else words("changes.left_mql")
        )
    elif points and r_was != r_now:
        out.append(points)
    out += _reason_changes(
        reasons(before.get("reasons_up")), reasons(after.get("reasons_up")), True, words
    )
    out += _reason_changes(
        reasons(before.get("reasons_down")), reasons(after.get("reasons_down")), False, words
    )
    return out or [words("changes.none")]
