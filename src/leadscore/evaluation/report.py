"""The marketing report: one self-contained HTML file (inline SVG charts, no network needed)."""

from __future__ import annotations

import importlib.metadata
import math
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.data import leakage
from leadscore.evaluation import plots
from leadscore.evaluation.comparison import Interval
from leadscore.evaluation.evidence import Evidence
from leadscore.i18n import Words
from leadscore.io.changes import score_change
from leadscore.modeling.reasons import SEPARATOR


@dataclass
class ReportInputs:
    """What the report shows besides the evidence: the open leads and where things came from."""

    evidence: Evidence
    open_leads: pd.DataFrame
    model_name: str
    model_version: str
    run_id: str
    source: str
    rules_file: str
    oracle_auc: float | None = None
    #: The run's leakage findings, baseline, shift check and split (tracking.checks_payload).
    checks: dict | None = None
    #: The published run before the open leads' (lead lists say what changed since).
    previous: pd.DataFrame | None = None


def _ok(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def formatters(words: Words) -> dict:
    """What the training and rules-only reports call: the catalogue and locale formats."""

    def fixed(digits: int):
        return lambda v: words.num(v, digits)

    def diff(v, digits: int = 3):
        """A difference of two scores (ROC-AUC, say), with its sign."""
        if not _ok(v):
            return "—"
        return ("+" if v >= 0 else "−") + words.num(abs(v), digits)

    def ci(iv: Interval):
        if not _ok(iv.low):
            return ""
        return words("report.interval", low=words.num(iv.low, 3), high=words.num(iv.high, 3))

    def tier_name(tier) -> str:
        return words("tier.name", tier=tier)

    def tier_names(tiers) -> str:
        return words("tier.name", tier=words("tier.join").join(tiers))

    def period(text) -> str:
        """A period as the evidence or the backtest writes it ("2026-01-01 to 2026-03-31",
        "2026-01-01..2026-03-31"), in the locale."""
        found = re.fullmatch(
            r"(\d{4}-\d{2}-\d{2})(?: to |\.\.)(\d{4}-\d{2}-\d{2})", str(text or "")
        )
        if not found:
            if text == "all folds":
                return words("report.backtest.all_folds")
            return str(text) if text else "—"
        return words("report.range", first=words.date(found[1]), last=words.date(found[2]))

    def fold(name) -> str:
        """A backtest fold ("fold 2", "pooled") in words."""
        found = re.fullmatch(r"fold (\d+)", str(name))
        if found:
            return words("report.backtest.fold_n", n=found[1])
        return words("report.backtest.pooled") if name == "pooled" else str(name)

    def scorer(name: str) -> str:
        key = f"chart.scorer.{name}"
        return words(key) if key in words else name

    def leak_evidence(finding: dict) -> str:
        """A guard finding's evidence in the reader's language (older runs: as logged)."""
        if finding.get("facts"):
            return leakage.describe(finding["facts"], finding["excluded"], words)
        return finding["evidence"]

    def check_name(check: str) -> str:
        key = f"report.checks.kind.{check}"
        return words(key) if key in words else check

    return {
        **words.formatters(),
        "f0": fixed(0),
        "f1": fixed(1),
        "f2": fixed(2),
        "f3": fixed(3),
        "f4": fixed(4),
        "n0": fixed(0),
        "g": words.points,
        "diff": diff,
        "ci": ci,
        "tier_name": tier_name,
        "tier_names": tier_names,
        "check_name": check_name,
        "leak_evidence": leak_evidence,
        "period": period,
        "fold": fold,
        "scorer": scorer,
    }


def _text(value) -> str:
    """A text cell; SQL NULLs arrive as NaN (truthy), which must not print as "nan"."""
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _lead_records(frame: pd.DataFrame, previous: pd.DataFrame | None, words: Words) -> list[dict]:
    before = {}
    if previous is not None and len(previous):
        before = {str(r["lead_id"]): r for r in previous.to_dict("records")}
    out = []
    for record in frame.to_dict("records"):
        if previous is not None:
            record["changed"] = score_change(before.get(str(record["lead_id"])), record, words)
        record["up"] = [r for r in _text(record.get("reasons_up")).split(SEPARATOR) if r]
        record["down"] = [r for r in _text(record.get("reasons_down")).split(SEPARATOR) if r]
        record["rules_fired"] = _text(record.get("rules_fired"))
        record["tier"] = _text(record.get("tier")) or "—"
        out.append(record)
    return out


def _previous_as_of(previous: pd.DataFrame | None) -> str | None:
    """The date of the run the lead lists compare with (None: no comparison)."""
    if previous is None or not len(previous):
        return None
    return str(pd.to_datetime(previous["as_of_date"]).max().date())


def _tier_rule(config: ProjectConfig, words: Words) -> str:
    c = config.tiers.cutoffs
    if config.tiers.by == "count":
        a, b, cc = (words.num(v) for v in c)
    else:
        a, b, cc = (words.pct(v, 0) for v in c)
    return words(f"report.tiers.{config.tiers.by}", a=a, b=b, c=cc)


def _charts(evidence: Evidence, backtest: dict | None, words: Words) -> dict[str, str]:
    """The report's figures as inline SVG, with the words of `words`' language."""
    import matplotlib

    c = evidence.comparison
    test_mql_share = c.mql_volume / c.rows if c.rows else 0.0
    figures: dict = {}
    try:
        with matplotlib.rc_context(plots.chart_fonts(words.language)):
            figures["gains"] = plots.gains_figure(
                c.curves, {words("chart.mql_share"): test_mql_share}, words
            )
            figures["lift"] = plots.lift_figure(c.gains, words)
            figures["calibration"] = plots.calibration_tables_figure(
                {
                    words("chart.model_calibrated"): c.calibration["model"],
                    words("chart.rules_mapped"): c.calibration["rules"],
                },
                words("chart.calibration_title"),
                words,
            )
            figures["distribution"] = plots.distribution_figure(
                c.distributions["converted"],
                c.distributions["conversion_probability"],
                c.distributions["rule_score"],
                words,
            )
            if backtest and backtest.get("folds"):
                folds = pd.DataFrame(backtest["folds"])
                figures["over_time"] = plots.over_time_figure(folds, words)
                if backtest.get("leaderboard"):
                    figures["leaderboard"] = plots.leaderboard_figure(
                        folds,
                        pd.DataFrame(backtest["leaderboard"]),
                        backtest.get("metric", "log_loss"),
                        backtest.get("tie_tolerance"),
                        words,
                    )
            return {name: plots.to_svg(fig) for name, fig in figures.items()}
    finally:
        for fig in figures.values():
            plots.close(fig)


def render_report(inputs: ReportInputs, config: ProjectConfig) -> str:
    """The report as one HTML document, in `report.language`."""
    import jinja2

    words = Words(config.report.language)
    evidence = inputs.evidence
    c = evidence.comparison
    checks = inputs.checks or {}
    backtest = checks.get("backtest")
    charts = _charts(evidence, backtest, words)

    open_leads = inputs.open_leads
    top = config.report.top_leads
    if len(open_leads):
        mql = open_leads["is_mql"].astype(bool)
        p = open_leads["conversion_probability"].astype(float)
        missed = open_leads.loc[p[~mql].sort_values(ascending=False, kind="stable").index[:top]]
        cold = open_leads.loc[p[mql].sort_values(kind="stable").index[:top]]
    else:
        missed = cold = open_leads
    g_model, g_rules = c.gains["model"], c.gains["rules"]
    gains = [
        {
            "bin": int(b),
            "leads": int(n),
            "model_conversions": mc,
            "model_rate": mr,
            "model_cumulative": mcum,
            "rules_conversions": rc,
            "rules_rate": rr,
            "rules_cumulative": rcum,
        }
        for b, n, mc, mr, mcum, rc, rr, rcum in zip(
            g_model["bin"],
            g_model["leads"],
            g_model["conversions"],
            g_model["conversion_rate"],
            g_model["cumulative_capture_share"],
            g_rules["conversions"],
            g_rules["conversion_rate"],
            g_rules["cumulative_capture_share"],
            strict=True,
        )
    ]
    quad = {(bool(r.rule_mql), bool(r.model_hot)): r for r in c.quadrants.itertuples()}
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("leadscore.evaluation", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(formatters(words))
    as_of = pd.to_datetime(open_leads["as_of_date"]) if len(open_leads) else pd.Series([])
    split = checks.get("split", {})
    flat = split.get("method") in ("order", "random")
    label = config.source.label.column if config.source.label is not None else None
    return env.get_template("report.html.j2").render(
        title=config.report.heading(words),
        version=importlib.metadata.version("leadscore"),
        model_name=inputs.model_name,
        model_version=inputs.model_version,
        run_id=inputs.run_id,
        generated_at=words.date(pd.Timestamp.now(tz="UTC")),
        open_as_of=as_of.max() if len(as_of) else None,
        open_total=words.num(len(open_leads)),
        evidence=evidence,
        c=c,
        iv=c.intervals,
        m=c.metrics,
        oracle_auc=inputs.oracle_auc,
        charts=charts,
        gains=gains,
        quad=quad,
        tiers=c.tiers.to_dict("records"),
        tier_rule=_tier_rule(config, words),
        rules=evidence.rules.to_dict("records"),
        points_scale=(
            float(evidence.suggestion.points["points_per_log_odds"].iloc[0])
            if len(evidence.suggestion.points)
            else None
        ),
        effect=evidence.suggestion.effect.to_dict("records"),
        thresholds=evidence.suggestion.thresholds.to_dict("records"),
        suggested_uri=urllib.parse.quote(evidence.suggested_rules_yaml),
        missed=_lead_records(missed, inputs.previous, words),
        cold=_lead_records(cold, inputs.previous, words),
        previous_as_of=_previous_as_of(inputs.previous),
        every_days=config.snapshots.every_days,
        horizon=config.horizon_days,
        conversion_definition=(
            words("report.conversion.label", column=label)
            if flat and label
            else words("report.conversion.opportunity", horizon=config.horizon_days)
        ),
        test_period=(split.get("cohorts", {}).get("test") if flat else None)
        or evidence.test_period,
        flat=flat,
        split_method=split.get("method", "time"),
        leakage=checks.get("leakage"),
        baseline=checks.get("baseline"),
        shift=checks.get("shift"),
        shift_top=_shift_top(checks.get("shift"), words),
        backtest=_backtest_rows(backtest),
        data_warnings=checks.get("warnings", []),
        samples=config.report.bootstrap_samples,
        rules_file=inputs.rules_file,
        source=inputs.source,
    )


def _shift_top(shift: dict | None, words: Words) -> str:
    """The features the shift classifier leans on, with their share of its gain."""
    top = (shift or {}).get("top") or []
    return words("report.checks.list_glue").join(
        words("report.checks.shift_feature", feature=t["feature"], share=words.pct(t["share"]))
        for t in top
    )


def _backtest_rows(backtest: dict | None) -> dict | None:
    """The backtest per fold as table rows (fold, period, learned through, per scorer)."""
    if not backtest or not backtest.get("folds"):
        return None
    rows: dict[str, dict] = {}
    for record in backtest["folds"]:
        row = rows.setdefault(
            record["fold"],
            {"fold": record["fold"], "period": record["test_period"], "fit_end": record["fit_end"]},
        )
        row[record["scorer"]] = record
    defaults = {"learner": "lightgbm", "leaderboard": None, "metric": "log_loss"}
    out = {**defaults, **backtest, "rows": list(rows.values())}
    # Runs logged before the variants name no chosen candidate nor scorers.
    out.setdefault("chosen", out["learner"])
    out.setdefault("scorers", list(dict.fromkeys(r["scorer"] for r in backtest["folds"])))
    for row in out["rows"]:
        for who in out["scorers"]:
            row.setdefault(who, None)
    return out


def choose_open_leads(
    published: pd.DataFrame, preview: pd.DataFrame, model_version: str
) -> tuple[pd.DataFrame, str]:
    """The champion's latest published scores, else the training run's own preview."""
    if len(published) and "model_version" in published:
        mine = published[published["model_version"].astype(str) == str(model_version)]
        if len(mine):
            day = pd.to_datetime(mine["as_of_date"]).max().date()
            return mine.reset_index(drop=True), f"published scores as of {day}"
    return preview, "the training run's preview at the end of its data"


def write_report(html: str, path: Path | str) -> Path:
    """Write the report atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
