"""Rule diagnostics and tuning: what each MQL rule is worth in the data, and a suggested file.

Points are re-estimated by a regularised logistic regression of conversion on each rule's
hits (1/0 for attribute rules, capped occurrences for behaviour rules) over the fitting
cohorts, then put on the current points scale. The effect of adopting them is measured on
the newest labelled cohort, which the fit never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression

from leadscore.data.rules import RuleSet
from leadscore.evaluation.comparison import ranking_metrics
from leadscore.modeling.metrics import expected_captured


def rule_diagnostics(rules: RuleSet, rule_rows: pd.DataFrame, y: np.ndarray) -> pd.DataFrame:
    """Per rule: how often it fires, conversion rate when it fires and when not, and lift."""
    y = np.asarray(y, dtype=float)
    base = y.mean() if len(y) else float("nan")
    out = []
    for rule in [*rules.attribute_rules, *rules.behaviour_rules]:
        fired = rule_rows[f"hits_{rule.name}"].to_numpy(dtype=float) > 0
        n_fired = int(fired.sum())
        rate_fired = float(y[fired].mean()) if n_fired else float("nan")
        rate_not = float(y[~fired].mean()) if n_fired < len(y) else float("nan")
        out.append(
            {
                "rule": rule.name,
                "description": rule.description,
                "kind": "attribute" if rule in rules.attribute_rules else "behaviour",
                "points": rule.points,
                "fires": n_fired,
                "fire_rate": n_fired / len(y) if len(y) else float("nan"),
                "conversion_rate_fired": rate_fired,
                "conversion_rate_not_fired": rate_not,
                "lift": rate_fired / base if base else float("nan"),
            }
        )
    columns = [
        "rule",
        "description",
        "kind",
        "points",
        "fires",
        "fire_rate",
        "conversion_rate_fired",
        "conversion_rate_not_fired",
        "lift",
    ]
    return pd.DataFrame(out, columns=columns).astype({"rule": "str"})


def _scale(points: np.ndarray, coef: np.ndarray) -> float:
    """Points per unit of log-odds that keeps the suggested points on the current scale."""
    a, c = np.abs(points), np.abs(coef)
    if c.sum() == 0 or a.sum() == 0:
        return 10.0 / max(c.max(initial=0.0), 1e-9) if c.sum() else 10.0
    return float(a.sum() / c.sum())


def _round_points(values: np.ndarray, step: float) -> np.ndarray:
    return np.round(values / step) * step + 0.0  # + 0.0 turns -0.0 into 0.0


def suggest_points(
    rules: RuleSet, rule_rows: pd.DataFrame, y: np.ndarray, c: float = 1.0
) -> pd.DataFrame:
    """The points the data suggests per rule (per hit or occurrence), on the current scale.

    `coefficient` is the change in log-odds of converting per hit, holding the other rules
    fixed; `suggested_points` scales all coefficients by one factor so that their total
    size matches today's points, rounded to a step that suits that scale.
    """
    names = rules.names
    x = rule_rows[[f"hits_{n}" for n in names]].to_numpy(dtype=float)
    y = np.asarray(y, dtype=float)
    # Standardise for the penalty, so a rare rule and a frequent one are shrunk alike.
    sd = x.std(axis=0)
    usable = sd > 0
    coef = np.zeros(len(names))
    if usable.any() and 0 < y.sum() < len(y):
        fit = LogisticRegression(C=c, max_iter=1000).fit(x[:, usable] / sd[usable], y)
        coef[usable] = fit.coef_[0] / sd[usable]
    current = np.array(
        [r.points for r in [*rules.attribute_rules, *rules.behaviour_rules]], dtype=float
    )
    scale = _scale(current[usable], coef[usable])
    step = 5.0 if np.abs(current).max(initial=0) >= 20 else 1.0
    # A rule that never fired in the fitting cohorts has no evidence either way: keep it.
    suggested = np.where(usable, _round_points(coef * scale, step), current)
    return pd.DataFrame(
        {
            "rule": pd.array(names, dtype="str"),
            "points": current,
            "coefficient": np.where(usable, coef, np.nan),
            "usable": usable,
            "suggested_points": suggested,
            "points_per_log_odds": scale,
        }
    )


def threshold_for_rate(score: np.ndarray, rate: float) -> float:
    """The threshold whose MQL share (score >= threshold) comes closest to `rate`.

    Points scores are coarse, so an exact share is rarely possible; on a tie the smaller
    share wins (sales is not handed more than asked for).
    """
    s = np.sort(np.asarray(score, dtype=float))
    if len(s) == 0:
        return float("nan")
    candidates = np.unique(s)
    shares = (len(s) - np.searchsorted(s, candidates, side="left")) / len(s)
    # Above the top score nobody is flagged; that is a candidate too (share 0).
    candidates = np.r_[candidates, candidates[-1] + 1]
    shares = np.r_[shares, 0.0]
    distance = np.abs(shares - rate)
    best = np.flatnonzero(distance == distance.min())
    return float(candidates[best[np.argmin(shares[best])]])


def rescore(rules: RuleSet, rule_rows: pd.DataFrame, points: dict[str, float]) -> np.ndarray:
    """Rule scores with new points per hit, from the hits already evaluated."""
    score = np.zeros(len(rule_rows))
    for name in rules.names:
        score += rule_rows[f"hits_{name}"].to_numpy(dtype=float) * points[name]
    return score


@dataclass
class RuleSuggestion:
    """Suggested points and threshold, and their effect on the newest labelled cohort."""

    points: pd.DataFrame
    threshold: float
    target_rate: float
    effect: pd.DataFrame
    thresholds: pd.DataFrame
    rules: RuleSet


def suggest_rules(
    rules: RuleSet,
    fit_rows: pd.DataFrame,
    y_fit: np.ndarray,
    test_rows: pd.DataFrame,
    y_test: np.ndarray,
    target_rate: float | None = None,
) -> RuleSuggestion:
    """Fit points on the fitting cohorts, set the threshold for the target MQL share, and
    measure current vs suggested rules on the test cohort at that share."""
    table = suggest_points(rules, fit_rows, y_fit)
    new_points = dict(zip(table["rule"], table["suggested_points"], strict=True))
    current_fit = fit_rows["rule_score"].to_numpy(dtype=float)
    rate = (
        float(target_rate)
        if target_rate is not None
        else float(np.mean(current_fit >= rules.mql_threshold))
    )
    suggested_fit = rescore(rules, fit_rows, new_points)
    threshold = threshold_for_rate(suggested_fit, rate)
    current_threshold = (
        rules.mql_threshold if target_rate is None else threshold_for_rate(current_fit, rate)
    )
    y_test = np.asarray(y_test, dtype=float)
    current_test = test_rows["rule_score"].to_numpy(dtype=float)
    suggested_test = rescore(rules, test_rows, new_points)
    volume = int(np.sum(current_test >= current_threshold))
    effect = pd.DataFrame(
        [
            _effect("current rules", current_test, current_threshold, y_test, volume),
            _effect("suggested rules", suggested_test, threshold, y_test, volume),
        ]
    )
    shares = sorted({0.05, 0.1, 0.2, round(rate, 3)})
    thresholds = pd.DataFrame(
        {
            "mql_share": shares,
            "current_threshold": [threshold_for_rate(current_fit, s) for s in shares],
            "suggested_threshold": [threshold_for_rate(suggested_fit, s) for s in shares],
        }
    )
    return RuleSuggestion(
        points=table,
        threshold=threshold,
        target_rate=rate,
        effect=effect,
        thresholds=thresholds,
        rules=apply_points(rules, new_points, threshold),
    )


def _effect(name: str, score: np.ndarray, threshold: float, y: np.ndarray, volume: int) -> dict:
    mql = score >= threshold
    n = int(mql.sum())
    auc, ap = ranking_metrics(y, score) if 0 < y.sum() < len(y) else (np.nan, np.nan)
    return {
        "rules": name,
        "mql_threshold": float(threshold),
        "mqls": n,
        "mql_share": n / len(y) if len(y) else float("nan"),
        "mql_conversions": float(y[mql].sum()),
        "mql_conversion_rate": float(y[mql].mean()) if n else float("nan"),
        "conversions_missed": float(y[~mql].sum()),
        "roc_auc": auc,
        "pr_auc": ap,
        # The fair comparison: conversions among as many leads as today's rules flag.
        "captured_at_current_volume": float(expected_captured(y, score, np.array([volume]))[0]),
    }


def apply_points(rules: RuleSet, points: dict[str, float], threshold: float) -> RuleSet:
    """A copy of `rules` with new points (caps keep their number of occurrences)."""
    data = rules.model_dump(by_alias=True, exclude_none=True)
    data["mql_threshold"] = float(threshold)
    for kind in ("attribute_rules", "behaviour_rules"):
        for rule, entry in zip(getattr(rules, kind), data[kind], strict=True):
            new = float(points[rule.name])
            entry["points"] = new
            if kind == "behaviour_rules" and rule.cap is not None:
                if rule.points == 0:
                    # A 0-point rule's cap limited nothing (its hits were counted uncapped).
                    entry.pop("cap", None)
                elif new != 0:
                    entry["cap"] = abs(new) * rule.cap / abs(rule.points)
    return RuleSet.model_validate(data)


def _whole_numbers(value):
    """15.0 -> 15 throughout, so the file reads like one a person wrote."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def suggested_rules_yaml(suggestion: RuleSuggestion, current: RuleSet, cohort: str) -> str:
    """The suggested rule file, commented for review (old points beside the new)."""
    old = {r.name: r.points for r in [*current.attribute_rules, *current.behaviour_rules]}
    table = suggestion.points
    no_data = set(table.loc[~table["usable"].astype(bool), "rule"])
    data = _whole_numbers(suggestion.rules.model_dump(by_alias=True, exclude_none=True))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    lines = []
    rule = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("- name:"):
            rule = stripped.split(":", 1)[1].strip()
        if stripped.startswith("points:") and rule in old:
            new = float(stripped.split(":", 1)[1])
            if rule in no_data:
                note = f"  # was {old[rule]:g}; kept: it never fired in the fitting cohorts"
            elif new == 0:
                note = f"  # was {old[rule]:g}; consider removing the rule"
            else:
                note = f"  # was {old[rule]:g}"
            line = line + note
        if stripped.startswith("mql_threshold:"):
            line = line + f"  # was {current.mql_threshold:g}"
        lines.append(line)
    effect = suggestion.effect.set_index("rules")
    cur, new = effect.loc["current rules"], effect.loc["suggested rules"]
    header = [
        "# Suggested MQL rules, written by leadscore for review; adopt by pointing `rules`",
        "# in the project file at this file. Points were fitted on the cohorts before",
        f"# {cohort} and checked on those (the newest labelled cohort, unseen by the fit):",
        f"#   current:   {cur['mqls']:,.0f} MQLs, {cur['mql_conversions']:,.0f} converted "
        f"({cur['mql_conversion_rate']:.1%})",
        f"#   suggested: {new['mqls']:,.0f} MQLs, {new['mql_conversions']:,.0f} converted "
        f"({new['mql_conversion_rate']:.1%})",
        f"#   at the same volume ({cur['mqls']:,.0f} leads with the highest points): "
        f"{cur['captured_at_current_volume']:,.0f} conversions now, "
        f"{new['captured_at_current_volume']:,.0f} with the suggested points",
    ]
    return "\n".join(header + lines) + "\n"
