"""The marketing report: self-contained, escaped, and rendered by a real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.config import config_from_dict
from leadscore.data.leakage import Finding
from leadscore.data.rules import RuleSet
from leadscore.evaluation.evidence import build_evidence
from leadscore.evaluation.report import ReportInputs, choose_open_leads, render_report, write_report

#: Anything that would make the browser fetch from elsewhere.
EXTERNAL = re.compile(
    r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""", re.I
)

RULES = RuleSet.model_validate(
    {
        "mql_threshold": 30,
        "attribute_rules": [
            {"name": "senior", "field": "seniority", "equals": "director", "points": 20},
            {
                "name": "competitor",
                "field": "email_domain_kind",
                "equals": "competitor",
                "points": -50,
            },
        ],
        "behaviour_rules": [
            {
                "name": "pricing",
                "activity": "page_view",
                "page_category": "pricing",
                "within_days": 30,
                "points": 10,
                "cap": 30,
            },
        ],
    }
)


def _cohort(n: int, seed: int, dates: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    senior = (rng.random(n) < 0.3).astype(float)
    competitor = (rng.random(n) < 0.05).astype(float)
    pricing = rng.integers(0, 4, n).astype(float)
    logit = -2.6 + 0.8 * senior - 3 * competitor + 0.3 * pricing + rng.normal(0, 1, n)
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < p).astype(float)
    score = 20 * senior - 50 * competitor + 10 * np.minimum(pricing, 3)
    return pd.DataFrame(
        {
            "lead_id": np.arange(n) % (n // 2),
            "as_of": pd.to_datetime(rng.choice(dates, n)),
            "converted": y,
            "conversion_probability": np.clip(p * rng.uniform(0.8, 1.2, n), 0, 1),
            "rule_score": score,
            "rule_probability": np.clip(0.05 + score / 400, 0, 1),
            "is_mql": score >= 30,
            "hits_senior": senior,
            "hits_competitor": competitor,
            "hits_pricing": np.minimum(pricing, 3),
        }
    )


def _report(folder: Path, language: str = "en", checks: dict | None = None) -> tuple[Path, str]:
    config = config_from_dict(
        {
            "report": {
                "bootstrap_samples": 200,
                "sales_capacity_per_week": 50,
                "top_leads": 5,
                "language": language,
            }
        },
        environ={},
    )
    test = _cohort(3000, 1, ["2026-05-01", "2026-05-31"])
    fit = _cohort(8000, 2, ["2026-01-01", "2026-02-01", "2026-03-01"])
    evidence = build_evidence(test, fit, RULES, config)
    open_leads = pd.DataFrame(
        {
            "lead_id": [101, 102, 103, 104],
            "as_of_date": pd.Timestamp("2026-06-30"),
            "conversion_probability": [0.41, 0.02, 0.30, 0.01],
            "percentile": [100.0, 20.0, 90.0, 5.0],
            "tier": ["A", "D", "A", "D"],
            "rule_score": [10.0, 60.0, 0.0, 40.0],
            "is_mql": [False, True, False, True],
            "rules_fired": ["pricing", "senior,pricing", "", "senior"],
            "reasons_up": ["4 pricing-page views in the last 30 days; department: it", "", "", ""],
            "reasons_down": ["", "<script>alert('x')</script>", "free e-mail domain", ""],
            "model_version": "3",
        }
    )
    inputs = ReportInputs(
        evidence,
        open_leads,
        "leadscore-conversion",
        "3",
        "run1",
        "sqlite:///crm.db",
        "mql_rules.yaml",
        0.8,
        checks=checks,
        previous=pd.DataFrame(
            {
                "lead_id": [101, 102],
                "as_of_date": pd.Timestamp("2026-06-29"),
                "conversion_probability": [0.12, 0.02],
                "tier": ["C", "D"],
                "rule_score": [10.0, 60.0],
                "is_mql": [False, True],
                "reasons_up": ["2 pricing-page views in the last 30 days", ""],
                "reasons_down": ["", "<script>alert('x')</script>"],
            }
        ),
    )
    html = render_report(inputs, config)
    path = write_report(html, folder / f"report-{language}.html")
    return path, html


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> tuple[Path, str]:
    return _report(tmp_path_factory.mktemp("report"))


def test_report_is_self_contained(report_html) -> None:
    _, html = report_html
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    assert "<svg" in html and html.count("<svg") == 4  # gains, lift, calibration, distributions
    assert "<script src" not in html


def test_lead_lists_say_what_changed_since_the_previous_run(report_html) -> None:
    _, html = report_html
    assert "<th>since Jun 29, 2026</th>" in html
    for said in (
        "<li>tier C → A</li>",
        "<li>probability 12% → 41%</li>",
        "<li>4 pricing-page views in the last 30 days (was: 2 pricing-page views in the last "
        "30 days)</li>",
        "<li>now raises it: department: it</li>",
        "<li>no change</li>",  # lead 102
        "<li>first score of this lead</li>",  # lead 103 was not in the previous run
    ):
        assert said in html, said


def test_report_escapes_what_came_from_data(report_html) -> None:
    _, html = report_html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_report_says_the_key_numbers(report_html) -> None:
    _, html = report_html
    assert "Working as many leads as the rules flag as MQLs" in html
    for section in (
        "Who finds the conversions",
        "The MQL flag against the model",
        "Can you trust the numbers?",
        "The MQL rules: what each is worth",
        "Open leads the rules miss",
        "MQLs the model calls cold",
        "At sales capacity (50 leads / week)",
    ):
        assert section in html, section
    # The lead the rules miss (101) is listed with its reasons; the cold MQL (104) too.
    assert "4 pricing-page views in the last 30 days" in html
    assert re.search(r"<td>101</td>.*<td>104</td>", html, re.S)
    assert "suggested_mql_rules.yaml" in html and "# was 20" in html


def test_report_opens_in_a_real_browser(report_html, browser, tmp_path) -> None:
    path, _ = report_html
    shot = tmp_path / "report.png"
    dom, console = browser.open(path, shot)
    assert console == [], console
    assert 'data-report-ready="yes"' in dom  # the page's script ran to the end
    colours, ink = browser.ink(shot)
    assert colours > 200 and ink > 0.05, (colours, ink)


def test_open_leads_come_from_the_champions_latest_publication() -> None:
    preview = pd.DataFrame({"lead_id": [1], "as_of_date": [pd.Timestamp("2026-01-01")]})
    published = pd.DataFrame(
        {
            "lead_id": [5, 6],
            "as_of_date": pd.to_datetime(["2026-02-01", "2026-02-01"]),
            "model_version": ["2", "2"],
        }
    )
    frame, origin = choose_open_leads(published, preview, "2")
    assert len(frame) == 2 and origin == "published scores as of 2026-02-01"
    frame, origin = choose_open_leads(published, preview, "3")  # another model published
    assert frame is preview and "preview" in origin


def test_report_without_open_leads_still_renders(report_html) -> None:
    """A history with no open lead at its end (closed-leads export) still gets a report."""
    config = config_from_dict({"report": {"bootstrap_samples": 100}}, environ={})
    test = _cohort(1500, 3, ["2026-05-01"])
    fit = _cohort(3000, 4, ["2026-01-01", "2026-02-01"])
    evidence = build_evidence(test, fit, RULES, config)
    empty = pd.DataFrame(columns=["lead_id", "as_of_date", "conversion_probability", "is_mql"])
    html = render_report(
        ReportInputs(evidence, empty, "m", "1", "r", "s", "mql_rules.yaml"), config
    )
    assert html.count('<p class="sub">None.</p>') == 2


def test_report_with_an_empty_rule_file(tmp_path) -> None:
    """A rule file with only a threshold is valid; the report says so instead of failing."""
    config = config_from_dict({"report": {"bootstrap_samples": 100}}, environ={})
    empty = RuleSet.model_validate({"mql_threshold": 50})
    cohort = _cohort(1500, 5, ["2026-05-01"]).assign(rule_score=0.0, is_mql=False)
    evidence = build_evidence(cohort, _cohort(3000, 6, ["2026-01-01"]), empty, config)
    opened = pd.DataFrame(columns=["lead_id", "as_of_date", "conversion_probability", "is_mql"])
    html = render_report(ReportInputs(evidence, opened, "m", "1", "r", "s", "x.yaml"), config)
    assert "The MQL rules: what each is worth" in html


def test_the_report_in_japanese_is_drawn_in_japanese(tmp_path, browser) -> None:
    """`report.language: ja`: every sentence from the Japanese catalogue, numbers and dates in
    the Japanese locale, the charts' words too; read back from what Chromium drew with a
    Japanese font (not only from the HTML)."""
    facts = ({"check": "single_auc", "auc": 0.9812}, {"check": "after_conversion", "share": 0.93})
    found = Finding("Tags", "single_auc", "as logged", True, facts).as_dict()
    path, html = _report(tmp_path, "ja", {"leakage": [found], "split": {"method": "time"}})
    assert '<html lang="ja">' in html
    # The guard's evidence from its numbers, in Japanese (the logged text is English).
    assert (
        "単独で検証用リードを ROC-AUC 0.981 で順位付けできる；コンバージョンしたリードの93%で、"
        "コンバージョンより後の日時が入っている"
    ) in html and "単独で予測できる" in html
    english, _ = _report(tmp_path, "en")
    for said in ("Who finds the conversions", "Can you trust the numbers?", "Cumulative gains",
                 "Working as many leads", "Open leads the rules miss", "How this was measured",
                 "tier C → A", "first score of this lead"):  # fmt: skip
        assert said in english.read_text(encoding="utf-8"), said
        assert said not in html, said
    assert "ランク C → A" in html and "このリードの初めてのスコア" in html
    assert "2026/06/29からの変化" in html  # the date in the Japanese locale
    # The charts' words are drawn as glyph outlines; matplotlib names each text beside them.
    for said in ("累積ゲイン", "十分位ごとのリフト", "予測と実際のコンバージョン率"):
        assert said in html, said
    text, fonts = browser.rendered_text(path, tmp_path / "report-ja.pdf")
    for said in ("コンバージョンを見つけるのはどちらか", "この数字は信頼できるか",
                 "2026/05/01〜2026/05/31", "ルールが見逃しているオープンなリード",
                 "モデルが低く見ているMQL", "提案ルールファイル", "測定方法",
                 "ランクA"):  # fmt: skip
        assert said.replace(" ", "") in text.replace(" ", ""), said
    assert any("CJK" in f for f in fonts), fonts
    shot = tmp_path / "report-ja.png"
    dom, console = browser.open(path, shot)
    assert console == [] and 'data-report-ready="yes"' in dom, console
    colours, ink = browser.ink(shot)
    assert colours > 200 and ink > 0.05, (colours, ink)
