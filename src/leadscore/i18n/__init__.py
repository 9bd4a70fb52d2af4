"""Words in the reader's language: one catalogue per language, numbers and dates by locale.

Every sentence a page shows comes from `<language>.yaml` beside this file, looked up by a
dotted key (`review.title`) and filled in with `str.format` fields. Numbers, percentages
and dates are formatted by Babel for the language's locale, so a Japanese page reads
"2026年11月" and an English one "Nov 2026". A key missing from a catalogue is an error, not
a silent fallback: `tests/unit/test_i18n.py` fails when the catalogues disagree.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import date, datetime
from importlib import resources

import pandas as pd
import yaml

LANGUAGES = ("en", "ja")

#: Fonts that hold Japanese glyphs, for matplotlib (which looks them up by family name); the
#: pages' CSS (templates/_style.html.j2) names the same ones for the browser.
CHART_FONTS = (
    "Hiragino Sans",
    "Yu Gothic",
    "Meiryo",
    "Noto Sans CJK JP",
    "Noto Sans JP",
    "Source Han Sans JP",
    "IPAexGothic",
    "IPAGothic",
    "DejaVu Sans",
)


def _flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flatten(value, name + ".")
        else:
            out[name] = str(value)
    return out


@functools.cache
def messages(language: str) -> dict[str, str]:
    """The catalogue of `language`: dotted key -> text."""
    if language not in LANGUAGES:
        raise ValueError(f"no catalogue for language {language!r}; known: {', '.join(LANGUAGES)}")
    text = resources.files(__package__).joinpath(f"{language}.yaml").read_text("utf-8")
    return _flatten(yaml.safe_load(text) or {})


def _ok(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


class Words:
    """Look-ups and locale formats for one language; what templates call as `t`, `pct`..."""

    def __init__(self, language: str = "en") -> None:
        from babel import Locale

        self.language = language
        self._messages = messages(language)
        self.locale = Locale.parse(language)

    def __call__(self, key: str, /, **values) -> str:
        try:
            text = self._messages[key]
        except KeyError:
            raise KeyError(f"catalogue '{self.language}' has no key '{key}'") from None
        return text.format(**values) if values else text

    def __contains__(self, key: str) -> bool:
        return key in self._messages

    def sentences(self, *parts: str) -> str:
        """Sentences one after the other: a space between them in English, none in Japanese."""
        return self("glue.sentence").join(p for p in parts if p)

    def pct(self, value, digits: int = 1) -> str:
        """A share as a percentage (0.153 -> "15.3%"); a dash when unknown."""
        from babel.numbers import format_percent

        if not _ok(value):
            return "—"
        return format_percent(value, "#,##0." + "0" * digits + "%" if digits else "#,##0%",
                              locale=self.locale)  # fmt: skip

    def num(self, value, digits: int = 0) -> str:
        """A number with the locale's grouping; a dash when unknown."""
        from babel.numbers import format_decimal

        if not _ok(value):
            return "—"
        pattern = "#,##0." + "0" * digits if digits else "#,##0"
        return format_decimal(value, pattern, locale=self.locale)

    def points(self, value) -> str:
        """Rule points or a threshold: whole numbers as such, others with their decimals."""
        if not _ok(value):
            return "—"
        value = float(value)
        if value.is_integer():
            return self.num(value)
        return self.num(value, 1 if round(value, 1) == round(value, 2) else 2)

    def signed(self, value, digits: int = 1) -> str:
        """A difference in percentage points, with its sign."""
        if not _ok(value):
            return "—"
        return ("+" if value >= 0 else "−") + self.num(abs(value) * 100, digits)

    def date(self, value) -> str:
        """A day in the locale's medium form (Nov 3, 2026 / 2026/11/03)."""
        from babel.dates import format_date

        if value is None or (not isinstance(value, date | datetime) and pd.isna(value)):
            return "—"
        return format_date(pd.Timestamp(value).date(), "medium", locale=self.locale)

    def month(self, value) -> str:
        """A month (a Period, a date or "YYYY-MM") in the locale's year-month form."""
        from babel.dates import format_skeleton

        day = pd.Period(value, freq="M").start_time.date()
        return format_skeleton("yMMM", day, locale=self.locale)

    def duration(self, minutes) -> str:
        """A response time: minutes below an hour, hours below a day, else days."""
        if not _ok(minutes):
            return "—"
        if minutes < 60:
            return self("review.duration.minutes", n=self.num(minutes, 0 if minutes >= 10 else 1))
        if minutes < 1440:
            return self("review.duration.hours", n=self.num(minutes / 60, 1))
        return self("review.duration.days", n=self.num(minutes / 1440, 1))

    def target(self, text: str) -> str:
        """A response-time target as written in the project file ("5m", "1bd"), in words."""
        found = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|bd)\s*$", str(text))
        if not found:
            return str(text)
        value, unit = float(found.group(1)), found.group(2).replace("min", "m")
        return self(f"review.target.{unit}", n=self.num(value, 0 if value.is_integer() else 1))

    def formatters(self) -> dict:
        """What a template gets: `t` and the formats."""
        return {"t": self, "pct": self.pct, "num": self.num, "signed": self.signed,
                "day": self.date, "month": self.month, "duration": self.duration,
                "points": self.points, "target": self.target,
                "sentences": self.sentences}  # fmt: skip
