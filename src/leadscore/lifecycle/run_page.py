"""What a run's page in the Prefect UI says: a markdown summary, tables and links, built
from the run's JSON summary (and its monitoring checks), never from lead data.

Pure functions: the flows hand the result to Prefect's artifact API (`flows/tasks.py`).
Keys are the artifact keys (lowercase letters, digits and dashes), so each kind of run has
its history on the UI's Artifacts page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

#: Artifact key per kind of run (a run's markdown; its tables add a suffix).
KEYS = {"train": "leadscore-train", "score": "leadscore-score", "report": "leadscore-report",
        "review": "leadscore-review"}  # fmt: skip


@dataclass
class RunPage:
    """The artifacts of one run: a markdown summary, tables (key suffix -> rows), links
    (text -> URL) and the one-line story for the log."""

    key: str
    markdown: str
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    headline: str = ""


def _n(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"


def _rows(pairs: list[tuple[str, str]]) -> list[str]:
    """A two-column markdown table (the UI renders GitHub-flavoured markdown)."""
    out = ["| | |", "|---|---|"]
    out += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in pairs]
    return out


def _where(uris: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    if uris.get("publish"):
        table = uris.get("table", "lead_scores")
        history = uris.get("history_table")
        pairs.append(
            ("Scores", f"`{table}`" + (f" (history `{history}`)" if history else "")
             + f" in `{uris['publish']}`")  # code: no mailto link of user@host
        )  # fmt: skip
    if uris.get("tracking"):
        pairs.append(("MLflow", str(uris["tracking"])))
    if uris.get("model"):
        pairs.append(("Model URI", f"`{uris['model']}`"))
    return pairs


def _tier_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    tiers = summary.get("tiers") or {}
    total = sum(tiers.values()) or 1
    return [
        {"tier": tier, "leads": int(n), "share": f"{n / total:.1%}"} for tier, n in tiers.items()
    ]


def check_rows(checks: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The monitoring checks for a table: every run-level check, and each input whose drift
    warned or failed (the ones that passed are in the monitoring table)."""
    if checks is None or checks.empty:
        return []
    shown = checks[checks["feature"].isna() | checks["status"].isin(["warn", "fail"])]
    return [
        {
            "check": row.check,
            "input": "" if pd.isna(row.feature) else str(row.feature),
            "value": _f(row.value, 4),
            "threshold": _f(row.threshold, 4),
            "status": str(row.status),
        }
        for row in shown.itertuples()
    ]


def scoring_page(summary: dict[str, Any], checks: pd.DataFrame | None = None) -> RunPage:
    """A scoring run (by the champion or by the rules alone)."""
    rows = summary["rows"]
    by_rules = summary.get("mode") == "rules-only"
    headline = (
        f"as of {summary['as_of']}: {rows['published']:,} open leads published"
        + (" by the rules alone (no model yet)" if by_rules else
           f" by {summary['model_name']} v{summary['model_version']}")
    )  # fmt: skip
    tiers = summary.get("tiers") or {}
    pairs = [
        ("As of", f"{summary['as_of']} (activities before it)"),
        ("Leads scored / published", f"{_n(rows['scored'])} / {_n(rows['published'])}"),
        ("MQL by the rules", _n(rows.get("mql"))),
        ("Tiers", ", ".join(f"{t} {n:,}" for t, n in tiers.items())),
    ]
    if by_rules:
        pairs += [
            ("Scored by", f"the rule file `{summary.get('rules')}` (tiers by rule points)"),
            ("Mean rule score", _f(summary.get("mean_rule_score"), 1)),
        ]
    else:
        model, rules = summary.get("model") or {}, summary.get("rules") or {}
        pairs += [
            ("Model", f"{summary['model_name']} v{summary['model_version']} (champion)"),
            ("Mean probability", _f(summary.get("mean_probability"))),
            (
                "Champion's test ROC-AUC",
                f"model {_f(model.get('roc_auc'))}, rules {_f(rules.get('roc_auc'))}",
            ),
        ]
    monitoring = summary.get("monitoring") or {}
    status = str(monitoring.get("status", "-"))
    pairs.append(("Monitoring", status.upper() if status == "fail" else status))
    alerts = summary.get("alerts")
    if alerts:
        pending = alerts.get("pending")
        pairs.append((
            "Hot-lead alerts",
            f"{_n(alerts.get('queued'))} new; {_n(alerts.get('sent'))} sent, "
            f"{_n(alerts.get('failed'))} failed, "
            f"{'-' if pending is None else _n(pending)} waiting (`leadscore alerts`)",
        ))  # fmt: skip
        for sink, error in (alerts.get("errors") or {}).items():
            pairs.append((f"Alert sink {sink}", error))
    pairs += _where(summary.get("uris") or {})
    lines = [f"# Scoring {headline}", "", *_rows(pairs)]
    messages = monitoring.get("messages") or []
    if messages:
        lines += ["", "## Monitoring", "", *[f"- {m}" for m in messages]]
    realised = monitoring.get("realised")
    if realised:
        lines += [
            "",
            f"Realised quality of the scores of {realised.get('as_of_date', '')[:10]}: "
            f"ROC-AUC {_f(realised.get('roc_auc'))}, ECE {_f(realised.get('ece'))} on "
            f"{_n(realised.get('leads'))} leads.",
        ]
    tables = {"tiers": _tier_rows(summary)}
    if checks is not None:
        tables["monitoring"] = check_rows(checks)
    return RunPage(KEYS["score"], "\n".join(lines) + "\n", tables, headline=headline)


def training_page(summary: dict[str, Any]) -> RunPage:
    """A training run: the comparison with the rules and the gate's decision."""
    if summary.get("mode") == "rules-only":
        return _rules_only_training_page(summary)
    model, rules = summary["model"], summary["rules"]
    gate = summary["promotion"]
    headline = (
        f"{summary['model_name']} v{summary['model_version']}: test ROC-AUC "
        f"{_f(model['roc_auc'])} against the rules' {_f(rules['roc_auc'])}; "
        + ("promoted to champion" if gate["promoted"] else "not promoted")
    )
    challenger, champion = gate["challenger"], gate["champion"]
    pairs = [
        ("Model", f"{summary['model_name']} v{summary['model_version']}"),
        ("Test ROC-AUC", f"model {_f(model['roc_auc'])}, rules {_f(rules['roc_auc'])}"),
        ("Test PR-AUC", f"model {_f(model['pr_auc'])}, rules {_f(rules['pr_auc'])}"),
        ("Brier / ECE (model)", f"{_f(model.get('brier'))} / {_f(model.get('ece'))}"),
        ("History ends", str(summary.get("data_end", "-"))[:10]),
        ("Split", str(summary.get("split_method", "-"))),
        ("Gate", f"{gate['decision']}: {gate['reason']}"),
        (
            "Challenger vs champion",
            f"ROC-AUC {_f(challenger['roc_auc'])} vs {_f(champion['roc_auc'])}, "
            f"ECE {_f(challenger['ece'])} vs {_f(champion['ece'])}",
        ),
        ("Champion now", f"v{gate['champion_version']}" if gate["champion_version"] else "none"),
        ("Left out as leaks", ", ".join(summary["leakage"]["excluded"]) or "none"),
        ("Warnings", str(len(summary.get("warnings") or []))),
    ]
    pairs += _where(summary.get("uris") or {})
    headline_text = (summary.get("comparison") or {}).get("headline")
    lines = [f"# Training: {headline}", "", *_rows(pairs)]
    if headline_text:
        lines += ["", f"> {headline_text}"]
    if summary.get("warnings"):
        lines += ["", "## Warnings", "", *[f"- {w}" for w in summary["warnings"]]]
    metrics = [
        {"who": who, **{k: _f(v) for k, v in summary[who].items() if k in _METRICS}}
        for who in ("model", "rules", "baseline")
    ]
    return RunPage(KEYS["train"], "\n".join(lines) + "\n", {"metrics": metrics}, headline=headline)


_METRICS = ("roc_auc", "pr_auc", "brier", "log_loss", "ece")


def _rules_only_training_page(summary: dict[str, Any]) -> RunPage:
    history, rules = summary["history"], summary["rules"]
    headline = f"no model trained ({summary['why']}); the rules judged on the history"
    pairs = [
        ("Why no model", summary["why"]),
        ("Labelled examples / leads", f"{_n(history['examples'])} / {_n(history['leads'])}"),
        ("Conversions", _n(history["conversions"])),
        ("Rules' ROC-AUC", _f(rules.get("roc_auc"))),
        ("MQLs", _n(rules.get("mqls"))),
        ("MQL / other conversion rate",
         f"{_f(rules.get('mql_conversion_rate'))} / {_f(rules.get('other_conversion_rate'))}"),
    ]  # fmt: skip
    pairs += _where(summary.get("uris") or {})
    lines = [f"# Training: {headline}", "", *_rows(pairs), "", f"> {summary['headline']}"]
    return RunPage(KEYS["train"], "\n".join(lines) + "\n", headline=headline)


def report_page(summary: dict[str, Any]) -> RunPage:
    """A report run: where the HTML file is and what it shows."""
    if summary.get("mode") == "rules-only":
        headline = f"rules-only report written to {summary['path']}"
        pairs = [("Report", f"`{summary['path']}`"), ("Why no model", summary["why"])]
    else:
        model, rules = summary["model"], summary["rules"]
        headline = (
            f"report on {summary['model_name']} v{summary['model_version']} written to "
            f"{summary['path']}"
        )
        pairs = [
            ("Report", f"`{summary['path']}`"),
            ("Model", f"{summary['model_name']} v{summary['model_version']} (champion)"),
            ("Test ROC-AUC", f"model {_f(model['roc_auc'])}, rules {_f(rules['roc_auc'])}"),
            ("Open leads shown", f"{_n(summary['open_leads']['rows'])} "
                                 f"({summary['open_leads']['from']})"),
        ]  # fmt: skip
    pairs += _where(summary.get("uris") or {})
    lines = [f"# Report: {headline}", "", *_rows(pairs)]
    return RunPage(KEYS["report"], "\n".join(lines) + "\n", headline=headline)


def review_page(summary: dict[str, Any]) -> RunPage:
    """A review run: where the HTML file is, and the monthly KPI as a table."""
    headline = f"monthly review of {summary['month']} written to {summary['path']}"
    pairs = [
        ("Review", f"`{summary['path']}`"),
        ("Outcomes known until", summary["outcomes_until"]),
        ("Rule file versions", str(len(summary["rule_versions"]))),
    ]
    pairs += _where(summary.get("uris") or {})
    rows = [
        {"month": m["month"] + (" (provisional)" if m["provisional"] else ""),
         "rule MQLs": m["rule_mqls"], "MQL→conversion": _f(m["rule_mql_rate"]),
         "tier A": m["tier_as"], "tier A→conversion": _f(m["tier_a_rate"]),
         "ROC-AUC rules": _f(m["rule_roc_auc"]), "ROC-AUC model": _f(m["model_roc_auc"])}
        for m in summary["months"]
    ]  # fmt: skip
    lines = [f"# Review: {headline}", "", *_rows(pairs)]
    return RunPage(KEYS["review"], "\n".join(lines) + "\n", {"months": rows}, headline=headline)


def mlflow_run_link(tracking_uri: str, experiment_id: str | None, run_id: str | None) -> str | None:
    """The run's page on an MLflow tracking server (None for a local store: no page)."""
    if not run_id or not experiment_id or not tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
