"""Hot-lead alerts: which leads turned hot, the signature, the sink settings."""

from __future__ import annotations

import pandas as pd
import pytest

from leadscore.config import config_from_dict
from leadscore.config.schema import AlertConfig
from leadscore.errors import ConfigError
from leadscore.i18n import Words
from leadscore.io.alerts import _message, hot_changes, sign, verify, where

SINK = {"name": "sales", "url": "https://hooks.example.com/T1/B2/secret-token"}


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["lead_id", "tier", "is_mql", "conversion_probability", "rule_score"]
    )


def test_entering_tier_a_becoming_an_mql_and_rising_are_hot() -> None:
    previous = _frame(
        [
            (1, "B", False, 0.10, 20),
            (2, "A", False, 0.40, 30),  # already A
            (3, "C", False, 0.05, 40),
            (4, "D", False, 0.02, 0),
            (5, "B", True, 0.20, 60),  # already an MQL
        ]
    )
    current = _frame(
        [
            (1, "A", False, 0.30, 20),  # entered A, rose 0.20
            (2, "A", False, 0.45, 30),  # nothing new
            (3, "C", True, 0.06, 55),  # became an MQL
            (4, "D", False, 0.11, 0),  # rose by 0.09 (< 0.10)
            (5, "B", True, 0.21, 65),
            (6, "A", False, 0.50, 10),  # new lead, straight into A
        ]
    )
    changes = hot_changes(current, previous, AlertConfig())
    assert dict(changes) == {
        "1": ["entered tier A (was B)", "probability rose from 10% to 30%"],
        "3": ["became an MQL by the rules (rule score 55)"],
        "6": ["new lead, in tier A"],
    }


def test_alerts_speak_the_reports_language_unless_told_otherwise() -> None:
    """A Japanese team (report.language: ja) gets its alerts in Japanese; alerts.language
    can keep them in English for a sales team that reads English."""
    previous = _frame([(1, "B", False, 0.10, 20), (3, "C", False, 0.05, 40)])
    current = _frame([(1, "A", False, 0.30, 20), (3, "C", True, 0.06, 55)])
    japanese = config_from_dict({"report": {"language": "ja"}, "alerts": {"sinks": [SINK]}},
                                environ={})  # fmt: skip
    assert japanese.alerts.language == "ja"
    assert dict(hot_changes(current, previous, japanese.alerts)) == {
        "1": ["ランクAに入った（以前：B）", "確率が10%から30%に上昇"],
        "3": ["ルールでMQLになった（ルールスコア 55）"],
    }
    english = config_from_dict(
        {"report": {"language": "ja"}, "alerts": {"sinks": [SINK], "language": "en"}}, environ={}
    )
    assert english.alerts.language == "en" and english.report.language == "ja"
    assert config_from_dict({}, environ={}).alerts.language == "en"
    payload = {"lead_id": 1, "tier": "A", "conversion_probability": 0.3,
               "changes": ["ランクAに入った（以前：B）"],
               "reasons_up": ["過去7日間に料金ページ閲覧2回"]}  # fmt: skip
    assert _message(payload, "slack", Words("ja")) == {
        "text": "ホットリード 1（ランクA、30%）：ランクAに入った（以前：B）。"
        "要因：過去7日間に料金ページ閲覧2回"
    }
    assert _message({**payload, "conversion_probability": None}, "slack", Words("en")) == {
        "text": "Hot lead 1 (tier A): ランクAに入った（以前：B）. Why: 過去7日間に料金ページ閲覧2回"
    }


def test_the_triggers_and_the_rise_are_configurable() -> None:
    previous = _frame([(1, "B", False, 0.10, 20), (4, "D", False, 0.02, 0)])
    current = _frame([(1, "A", True, 0.30, 60), (4, "D", False, 0.11, 0)])
    only_rise = AlertConfig(triggers=["rise"], rise=0.05)
    assert dict(hot_changes(current, previous, only_rise)) == {
        "1": ["probability rose from 10% to 30%"],
        "4": ["probability rose from 2% to 11%"],
    }
    assert hot_changes(current, current, AlertConfig()).empty  # nothing changed


def test_a_run_by_the_rules_alone_has_no_probability_to_rise() -> None:
    previous = _frame([(1, "C", False, None, 20)])
    current = _frame([(1, "A", True, None, 70)])
    assert dict(hot_changes(current, previous, AlertConfig())) == {
        "1": ["entered tier A (was C)", "became an MQL by the rules (rule score 70)"]
    }


def test_the_signature_verifies_with_the_secret_and_fails_with_another() -> None:
    body = b'{"lead_id": 1}'
    signature = sign("s3cret", "1700000000", body)
    assert signature.startswith("v1=") and len(signature) == 3 + 64
    assert verify("s3cret", "1700000000", body, signature, now=1700000100)
    assert not verify("other", "1700000000", body, signature, now=1700000100)
    assert not verify("s3cret", "1700000000", body + b" ", signature, now=1700000100)
    assert not verify("s3cret", "1700000000", body, signature, now=1700000000 + 301)  # stale


def test_a_sink_is_shown_by_scheme_and_host_only() -> None:
    assert where(SINK["url"]) == "https://hooks.example.com"
    assert where("http://127.0.0.1:8123/hook?token=x") == "http://127.0.0.1:8123"


def test_sink_url_and_secret_come_from_the_environment() -> None:
    data = {"alerts": {"sinks": [{**SINK, "url": "${HOOK}", "secret": "${ALERT_KEY}"}]}}
    config = config_from_dict(data, environ={"HOOK": SINK["url"], "ALERT_KEY": "k"})
    assert config.alerts.sinks[0].url == SINK["url"] and config.alerts.sinks[0].secret == "k"
    with pytest.raises(ConfigError, match=r"ALERT_KEY\} is used but not set"):
        config_from_dict(data, environ={"HOOK": SINK["url"]})


def test_a_secret_written_into_the_project_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="has its secret written out"):
        config_from_dict({"alerts": {"sinks": [{**SINK, "secret": "hunter2"}]}}, environ={})


def test_sinks_need_distinct_names_and_a_web_address() -> None:
    with pytest.raises(ConfigError, match="names must differ"):
        config_from_dict({"alerts": {"sinks": [SINK, SINK]}}, environ={})
    with pytest.raises(ConfigError, match="url"):
        config_from_dict({"alerts": {"sinks": [{**SINK, "url": "ftp://x"}]}}, environ={})
