"""One catalogue per language: the same keys with the same fields in each, every key a page
asks for present, numbers and dates in the reader's locale."""

from __future__ import annotations

import html
import re
import string
from pathlib import Path

import pandas as pd
import pytest

from leadscore.data.leakage import describe
from leadscore.i18n import LANGUAGES, Words, messages

SRC = Path(__file__).resolve().parents[2] / "src" / "leadscore"


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_language_has_every_key_with_the_same_fields() -> None:
    english = messages("en")
    for language in LANGUAGES:
        mine = messages(language)
        assert sorted(set(english) - set(mine)) == [], f"missing in {language}.yaml"
        assert sorted(set(mine) - set(english)) == [], f"only in {language}.yaml"
        for key, text in english.items():
            assert _fields(mine[key]) == _fields(text), f"{language}: fields of '{key}'"


def _keys_asked_for() -> tuple[set[str], set[str]]:
    """Literal keys the templates and the code look up, and the prefixes of computed ones
    (`t("review.kind." ~ row.kind)`, `words(f"review.effect.{state}")`)."""
    literal, prefixes = set(), set()
    files = [*SRC.rglob("*.j2"), *SRC.rglob("*.py")]
    for path in files:
        text = path.read_text(encoding="utf-8")
        literal |= set(re.findall(r"""\b(?:t|w|words)\(\s*["']([a-z_]+(?:\.[a-z_]+)+)["']""", text))
        # Reasons say their keys without the section (`v.say("count", ...)`).
        literal |= {f"reasons.{k}" for k in re.findall(r"""\bsay\(\s*["']([a-z_.]+)["']""", text)}
        prefixes |= set(re.findall(r"""\bt\(\s*["']([a-z_.]+\.)["']\s*~""", text))
        prefixes |= set(re.findall(r"""\bwords\(\s*f["']([a-z_.]+\.)\{""", text))
    return literal, prefixes


def test_every_key_a_page_asks_for_is_in_the_catalogues() -> None:
    literal, prefixes = _keys_asked_for()
    assert len(literal) > 200 and {"review.title", "report.subtitle", "reasons.none"} <= literal
    assert {"review.kind.", "review.change.", "review.advice."} <= prefixes
    for language in LANGUAGES:
        known = set(messages(language))
        assert sorted(literal - known) == [], language
        for prefix in prefixes:
            assert any(k.startswith(prefix) for k in known), (language, prefix)


def test_templates_hold_no_words_of_their_own() -> None:
    """Every word a page shows comes from a catalogue: strip the template's expressions,
    tags, style and script, and no word may be left."""
    templates = sorted(SRC.rglob("*.j2"))
    assert {p.name for p in templates} >= {"report.html.j2", "review.html.j2",
                                           "rules_report.html.j2", "_sla.html.j2"}  # fmt: skip
    for path in templates:
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"<(style|script)\b.*?</\1>", "", text, flags=re.S)
        text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", text, flags=re.S)
        text = html.unescape(re.sub(r"<[^>]*>", "", text))
        assert re.findall(r"[^\W\d_]{2,}", text) == [], path.name


def test_a_missing_key_is_an_error_not_a_blank() -> None:
    with pytest.raises(KeyError, match=r"no key 'review\.nothing'"):
        Words("ja")("review.nothing")
    with pytest.raises(ValueError, match="no catalogue"):
        messages("fr")


@pytest.mark.parametrize(
    ("language", "month", "day", "share", "count"),
    [
        ("en", "Nov 2026", "Nov 3, 2026", "15.3%", "12,345"),
        ("ja", "2026年11月", "2026/11/03", "15.3%", "12,345"),
    ],
)
def test_numbers_and_dates_follow_the_locale(language, month, day, share, count) -> None:
    words = Words(language)
    assert words.month("2026-11") == month
    assert words.month(pd.Period("2026-11", freq="M")) == month
    assert words.date(pd.Timestamp("2026-11-03")) == day
    assert words.pct(0.153) == share and words.pct(float("nan")) == "—"
    assert words.num(12345) == count and words.num(None) == "—"
    assert words.signed(0.021) == "+2.1" and words.signed(-0.028) == "−2.8"


def test_the_guards_evidence_is_said_from_its_numbers_in_each_language() -> None:
    facts = (
        {"check": "certain_values", "share": 0.912, "n": 2, "rate": 0.95},
        {"check": "state_name", "names": ["last", "status"]},
    )
    assert describe(facts, excluded=False) == (
        "91% of conversions carry one of 2 value(s) that convert at >= 95%; a flat export "
        "holds it as of the export; its name says latest state (last, status) (kept: "
        "leakage.keep)"
    )
    assert describe(facts, excluded=True, words=Words("ja")) == (
        "コンバージョンの91%が、95%以上の率でコンバージョンする2個の値のいずれかを持つ；"
        "フラットなエクスポートでは出力時点の値を持ち、列名が最新の状態を示す（last、status）"
    )
