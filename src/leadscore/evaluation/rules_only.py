"""Rules-only: what the MQL rules are worth on the history, before there is a model.

A team whose history has too few conversions for a model (see `scoring.training.
MIN_CONVERSIONS`) still gets leadscore's evidence about its rules: how well the rule score
ranks leads, how MQLs convert against the rest, what each rule is worth and how the tiers
by rule points convert. Nothing is fitted, so every labelled example is used; the
intervals say how little a small history can tell.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.data.rules import RuleSet
from leadscore.evaluation import plots
from leadscore.evaluation.comparison import Interval
from leadscore.evaluation.report import formatters
from leadscore.evaluation.tuning import rule_diagnostics
from leadscore.i18n import Words
from leadscore.modeling.metrics import bootstrap_ranking
from leadscore.scoring.tiers import TIERS, assign_rule_tiers, rule_point_floors
from leadscore.scoring.training import MIN_CONVERSIONS


@dataclass
class RulesEvidence:
    """The rules on the labelled history: counts, ranking, MQLs, tiers and each rule."""

    why: str  # why there is no model (the training run's problem)
    examples: int
    leads: int
    conversions: int
    converting_leads: int
    dates: int
    period: str
    #: ROC-AUC and PR-AUC of the rule score, with bootstrap intervals (None: one outcome).
    roc_auc: Interval | None
    pr_auc: Interval | None
    mqls: int
    mql_conversions: int
    mql_conversion_rate: float
    other_conversion_rate: float
    #: Share of the converting leads that were MQLs on some labelled date before converting.
    captured_share: float
    tiers: pd.DataFrame
    floors: list[float]
    rules: pd.DataFrame

    def headline(self, words=None) -> str:
        """The key sentence, in the language of `words` (English without one)."""
        if words is None:
            words = Words("en")
        if self.mqls == 0:
            return words("rules_report.headline.no_mqls", examples=words.num(self.examples))
        lift = ""
        if self.other_conversion_rate > 0:
            ratio = words.num(self.mql_conversion_rate / self.other_conversion_rate, 1)
            lift = words("rules_report.headline.lift", ratio=ratio)
        return words(
            "rules_report.headline.mqls",
            mql_rate=words.pct(self.mql_conversion_rate),
            other_rate=words.pct(self.other_conversion_rate),
            lift=lift,
            captured=words.pct(self.captured_share, 0),
            converting=words.num(self.converting_leads),
        )

    def metrics(self) -> dict[str, float]:
        """Flat figures for MLflow."""
        out = {
            "history_examples": float(self.examples),
            "history_conversions": float(self.conversions),
            "history_converting_leads": float(self.converting_leads),
            "rules_mqls": float(self.mqls),
            "rules_mql_conversion_rate": self.mql_conversion_rate,
            "rules_other_conversion_rate": self.other_conversion_rate,
            "rules_captured_share": self.captured_share,
        }
        for name, iv in (("roc_auc", self.roc_auc), ("pr_auc", self.pr_auc)):
            if iv is not None:
                out |= {f"rules_{name}": iv.estimate, f"rules_{name}_low": iv.low}
                out[f"rules_{name}_high"] = iv.high
        return {k: v for k, v in out.items() if np.isfinite(v)}


def _rate(y: np.ndarray) -> float:
    return float(y.mean()) if len(y) else float("nan")


def rules_evidence(
    history: pd.DataFrame, rules: RuleSet, config: ProjectConfig, why: str, seed: int = 0
) -> RulesEvidence:
    """The rules judged on `history` (from `training.rules_history`)."""
    y = history["converted"].to_numpy(dtype=float)
    score = history["rule_score"].to_numpy(dtype=float)
    mql = history["is_mql"].to_numpy(dtype=bool)
    leads = history["lead_id"].to_numpy()
    roc = pr = None
    if len(np.unique(y)) == 2:
        iv = bootstrap_ranking(
            y, {"rules": score}, leads, samples=config.report.bootstrap_samples, seed=seed
        )
        roc, pr = iv["roc_auc_rules"], iv["pr_auc_rules"]
    converting = pd.unique(leads[y > 0])
    captured = pd.unique(leads[(y > 0) & mql])
    floors = rule_point_floors(rules.mql_threshold, config.tiers)
    tier = assign_rule_tiers(score, floors)
    tiers = pd.DataFrame(
        [
            {
                "tier": t,
                "from_points": floors[i] if i < 3 else None,
                "examples": int((tier == t).sum()),
                "conversions": int(y[tier == t].sum()),
                "conversion_rate": _rate(y[tier == t]),
            }
            for i, t in enumerate(TIERS)
        ]
    )
    dates = pd.to_datetime(history["as_of"])
    period = f"{dates.min().date()} to {dates.max().date()}" if len(dates) else "none"
    return RulesEvidence(
        why=why,
        examples=len(history),
        leads=int(pd.Series(leads).nunique()),
        conversions=int(y.sum()),
        converting_leads=len(converting),
        dates=int(dates.nunique()),
        period=period,
        roc_auc=roc,
        pr_auc=pr,
        mqls=int(mql.sum()),
        mql_conversions=int(y[mql].sum()),
        mql_conversion_rate=_rate(y[mql]),
        other_conversion_rate=_rate(y[~mql]),
        captured_share=len(captured) / len(converting) if len(converting) else float("nan"),
        tiers=tiers,
        floors=floors,
        rules=rule_diagnostics(rules, history, y),
    )


def render_rules_report(
    evidence: RulesEvidence, config: ProjectConfig, rules_file: str, source: str, run_id: str
) -> str:
    """The rules-only report as one HTML document (no network needed)."""
    import jinja2
    import matplotlib

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("leadscore.evaluation", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
    )
    words = Words(config.report.language)
    env.globals.update(formatters(words))
    need = sum(MIN_CONVERSIONS.values())
    with matplotlib.rc_context(plots.chart_fonts(words.language)):
        fig = plots.rule_tiers_figure(evidence.tiers, words)
        try:
            chart = plots.to_svg(fig)
        finally:
            plots.close(fig)
    return env.get_template("rules_report.html.j2").render(
        title=config.report.heading(words),
        version=importlib.metadata.version("leadscore"),
        generated_at=words.date(pd.Timestamp.now(tz="UTC")),
        e=evidence,
        rules=evidence.rules.to_dict("records"),
        tiers=evidence.tiers.to_dict("records"),
        chart=chart,
        minimums=MIN_CONVERSIONS,
        need=need,
        flat=config.flat,
        horizon=config.horizon_days,
        every_days=config.snapshots.every_days,
        samples=config.report.bootstrap_samples,
        rules_file=rules_file,
        source=source,
        run_id=run_id,
    )
