"""The run's page in the Prefect UI, built from the JSON summaries alone."""

from __future__ import annotations

import pandas as pd

from leadscore.lifecycle import run_page


def _scoring_summary(**extra) -> dict:
    return {
        "command": "score",
        "as_of": "2026-12-05",
        "model": {"roc_auc": 0.812345, "pr_auc": 0.3},
        "rules": {"roc_auc": 0.654321, "pr_auc": 0.2},
        "rows": {"scored": 1207, "published": 1207, "mql": 311},
        "tiers": {"A": 121, "B": 241, "C": 362, "D": 483},
        "mean_probability": 0.0812,
        "model_name": "leadscore-conversion",
        "model_version": "3",
        "monitoring": {
            "status": "warn",
            "failed": [],
            "messages": ["WARN: input 'employees' drifted (PSI 0.2100 > 0.2000)"],
            "realised": {"as_of_date": "2026-08-07", "roc_auc": 0.79, "ece": 0.02, "leads": 900},
            "run_id": "abc",
        },
        "uris": {
            "publish": "postgresql://scorer:***@db/crm",
            "table": "lead_scores",
            "history_table": "lead_score_history",
            "tracking": "http://mlflow:5000",
            "model": "models:/leadscore-conversion@champion",
        },
        **extra,
    }


def test_a_scoring_page_tells_the_run_with_its_numbers() -> None:
    checks = pd.DataFrame(
        [
            {"check": "row_count", "feature": None, "value": 1207.0, "threshold": 600.0,
             "status": "ok", "detail": "..."},
            {"check": "input_psi", "feature": "employees", "value": 0.21, "threshold": 0.2,
             "status": "warn", "detail": "..."},
            {"check": "input_psi", "feature": "industry", "value": 0.01, "threshold": 0.2,
             "status": "ok", "detail": "..."},
        ]
    )  # fmt: skip
    page = run_page.scoring_page(_scoring_summary(), checks)
    assert page.key == "leadscore-score"
    assert page.headline == (
        "as of 2026-12-05: 1,207 open leads published by leadscore-conversion v3"
    )
    text = page.markdown
    for shown in ("1,207 / 1,207", "| MQL by the rules | 311 |", "A 121, B 241, C 362, D 483",
                  "model 0.812, rules 0.654", "| Monitoring | warn |", "employees' drifted",
                  "`lead_scores` (history `lead_score_history`) in `postgresql://scorer:***@db/crm`",
                  "ROC-AUC 0.790, ECE 0.020 on 900 leads"):  # fmt: skip
        assert shown in text, shown
    assert page.tables["tiers"][0] == {"tier": "A", "leads": 121, "share": "10.0%"}
    # Every run-level check, and only the inputs that warned or failed.
    assert [(r["check"], r["input"]) for r in page.tables["monitoring"]] == [
        ("row_count", ""),
        ("input_psi", "employees"),
    ]


def test_a_rules_only_run_says_it_has_no_model_yet() -> None:
    summary = _scoring_summary(mode="rules-only", model_name="rules", model_version=None,
                               rules="mql_rules.yaml", mean_rule_score=22.5)  # fmt: skip
    page = run_page.scoring_page(summary)
    assert "by the rules alone (no model yet)" in page.headline
    assert "`mql_rules.yaml` (tiers by rule points)" in page.markdown
    assert "monitoring" not in page.tables


def test_the_mlflow_link_only_for_a_tracking_server() -> None:
    assert (
        run_page.mlflow_run_link("http://mlflow:5000/", "7", "r1")
        == "http://mlflow:5000/#/experiments/7/runs/r1"
    )
    assert run_page.mlflow_run_link("sqlite:///mlflow.db", "7", "r1") is None
    assert run_page.mlflow_run_link("http://mlflow:5000", "7", None) is None


def test_a_scoring_page_counts_the_alerts_and_names_a_failing_sink() -> None:
    alerts = {"queued": 12, "sent": 11, "failed": 0, "pending": 1,
              "errors": {"crm": "ConnectError reaching https://crm.example.com"}}  # fmt: skip
    text = run_page.scoring_page(_scoring_summary(alerts=alerts)).markdown
    assert "| Hot-lead alerts | 12 new; 11 sent, 0 failed, 1 waiting (`leadscore alerts`) |" in text
    assert "| Alert sink crm | ConnectError reaching https://crm.example.com |" in text
    assert "Hot-lead alerts" not in run_page.scoring_page(_scoring_summary()).markdown
