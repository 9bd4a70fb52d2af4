"""How a text export is written: its encoding, field separator, decimal mark and thousands
separator, sniffed from the file itself.

Excel in much of Europe writes `;` between fields and `,` as the decimal mark (1.234,5);
Japanese Excel writes Shift_JIS; databases write tabs. A run reads a file with what its
project file says (`source.files`, which `leadscore init` fills in from the sniff), and
sniffs only what is left "auto".
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from leadscore.config.schema import DELIMITERS, FileFormat

#: Encodings tried in turn for CSV files that are not UTF-8 and not in a multi-byte
#: encoding detected with confidence; Latin-1 last, as it reads any bytes.
CSV_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
#: Multi-byte encodings that are detected reliably (their byte patterns are distinctive);
#: a file in one of them is read in it, never as Windows-1252 (which would garble it).
#: Shift_JIS is read as cp932, its Windows superset, which is what Excel writes.
_MULTIBYTE = {
    "cp932": "cp932",
    "shift_jis": "cp932",
    "shift_jis_2004": "cp932",
    "shift_jisx0213": "cp932",
    "euc_jp": "euc_jp",
    "euc_jis_2004": "euc_jis_2004",
    "euc_jisx0213": "euc_jisx0213",
    "iso2022_jp": "iso2022_jp",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "gb18030": "gb18030",
    "big5": "big5",
    "big5hkscs": "big5hkscs",
    "cp950": "cp950",
    "euc_kr": "cp949",
    "cp949": "cp949",
    "utf_16": "utf-16",
    "utf_16_le": "utf-16",
    "utf_16_be": "utf-16",
}
#: Bytes sniffed to detect an encoding (enough for a few thousand rows of text).
_SNIFF_BYTES = 2_000_000


def csv_encoding(path: Path, configured: str = "auto", utf8: bool = True) -> str:
    """The encoding to read a CSV file with: the configured one, else detected.

    UTF-8 (with or without BOM) when the sniffed bytes decode as UTF-8 (`utf8` False: the
    file was found not to, further on); a multi-byte encoding (Shift_JIS, EUC-JP, GB18030,
    Big5, EUC-KR, UTF-16) when its bytes say so; else Windows-1252, which Western CRMs
    often write (Latin-1 if even that fails).
    """
    if configured != "auto":
        return configured
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if utf8:
        try:
            head.decode("utf-8-sig")
            return "utf-8-sig"
        except UnicodeDecodeError as exc:
            cut_at_the_end = len(head) == _SNIFF_BYTES and exc.start >= len(head) - 3
            if cut_at_the_end:  # a character cut by the sample, not a bad byte
                return "utf-8-sig"
    from charset_normalizer import from_path

    # Chunks from across the file: the non-UTF-8 text may start far from the top.
    best = from_path(path).best()
    guess = _MULTIBYTE.get(best.encoding) if best is not None else None
    if guess is not None:
        return guess
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


#: Lines sniffed for the separator and the number format.
_SNIFF_LINES = 2_000
#: Share of sniffed lines that must have the header's number of fields for a separator.
_CONSISTENT = 0.9

#: A number with a decimal comma (and "." , " " or "'" grouping thousands), and with a dot.
_COMMA_NUMBER = re.compile(r"[-+]?(\d{1,3}([. ']\d{3})+|\d+)(,\d+)?")
_DOT_NUMBER = re.compile(r"[-+]?(\d{1,3}([, ']\d{3})+|\d+)(\.\d+)?")
_HAS_COMMA_DECIMAL = re.compile(r"\d,\d{1,2}$|\d,\d{4,}$|^[-+]?0,\d")
_SEMICOLON_COMMA_DECIMAL = re.compile(r"\d,\d+$")
_HAS_DOT_DECIMAL = re.compile(r"\d\.\d{1,2}$|\d\.\d{4,}$|^[-+]?0\.\d")
_GROUPED = re.compile(r"^[-+]?\d{1,3}(?P<mark>[., '])\d{3}(?!\d)")


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written, every mark decided (what it is read with)."""

    delimiter: str
    decimal: str
    thousands: str  # "": none
    encoding: str

    def describe(self) -> str:
        """In words, for the terminal and the notes of a run."""
        names = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "bars"}
        parts = [f"fields separated by {names[self.delimiter]}", f"decimal {self.decimal!r}"]
        if self.thousands:
            parts.append(f"thousands {self.thousands!r}")
        parts.append(self.encoding)
        return ", ".join(parts)

    def as_format(self) -> dict[str, str]:
        """The `source.files` entry that reads the file this way every time. The encoding
        stays detected on each read: pinned, a later export in UTF-8 would be misread
        without an error (Köln as KÃ¶ln), and the run says when a file is not UTF-8."""
        return {"delimiter": self.delimiter, "decimal": self.decimal, "thousands": self.thousands}


def _head_text(path: Path, encoding: str) -> list[str]:
    """The first lines of the file, decoded (a line cut by the sample is dropped)."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    text = head.decode(encoding, errors="replace")
    lines = text.splitlines(keepends=True)
    if len(head) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]
    return lines[: _SNIFF_LINES + 1]


def _fields(lines: list[str], delimiter: str) -> list[list[str]]:
    try:
        return [row for row in csv.reader(io.StringIO("".join(lines)), delimiter=delimiter) if row]
    except csv.Error:
        return []


def sniff_delimiter(lines: list[str]) -> str:
    """The separator that splits the header and (nearly) every line into the same number
    of fields, more than one; of several, the one giving the most fields. A file of one
    column reads as comma-separated."""
    best: tuple[float, int, str] | None = None
    for delimiter in DELIMITERS:
        rows = _fields(lines, delimiter)
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        body = rows[1:] or rows
        share = sum(len(r) == width for r in body) / len(body)
        if share >= _CONSISTENT and (best is None or (share, width) > best[:2]):
            best = (share, width, delimiter)
    return best[2] if best is not None else ","


def sniff_numbers(rows: list[list[str]], semicolons: bool = False) -> tuple[str, str]:
    """The decimal mark and thousands separator of the numbers in `rows` (header first).

    A column counts when every filled value is a number in one style; the comma is the
    decimal mark when some column has values like 12,5 or 0,25 and no column has values
    like 12.5 (1.234 alone is a thousand in one style and a decimal in the other). In a
    file separated by semicolons (Excel where the comma is the decimal mark) 1,500 is one
    and a half too.
    """
    comma_decimal = _SEMICOLON_COMMA_DECIMAL if semicolons else _HAS_COMMA_DECIMAL
    if len(rows) < 2:
        return ".", ""
    width = len(rows[0])
    comma_columns = dot_columns = 0
    grouped: dict[str, int] = {}
    for i in range(width):
        values = [r[i].strip() for r in rows[1:] if len(r) == width and r[i].strip()]
        if not values:
            continue
        if all(_COMMA_NUMBER.fullmatch(v) for v in values) and any(
            comma_decimal.search(v) for v in values
        ):
            comma_columns += 1
        elif all(_DOT_NUMBER.fullmatch(v) for v in values) and any(
            _HAS_DOT_DECIMAL.search(v) for v in values
        ):
            dot_columns += 1
        if all(_COMMA_NUMBER.fullmatch(v) or _DOT_NUMBER.fullmatch(v) for v in values):
            for v in values:
                found = _GROUPED.match(v)
                if found:
                    grouped[found.group("mark")] = grouped.get(found.group("mark"), 0) + 1
    decimal = "," if comma_columns and not dot_columns else "."
    marks = [m for m in sorted(grouped, key=grouped.get, reverse=True) if m != decimal]
    return decimal, (marks[0] if marks else "")


def grouped_numbers(frame, dialect: CsvDialect, keep_text=()):
    """`frame` with its text columns that are numbers grouped by the thousands separator
    (1.234,50) as numbers. Only such columns: given to the CSV reader for the whole file,
    the separator would read a date 31.12.2025 as the number 31122025."""
    import pandas as pd

    if not dialect.thousands:
        return frame
    mark, decimal = re.escape(dialect.thousands), re.escape(dialect.decimal)
    number = re.compile(rf"[-+]?(\d{{1,3}}({mark}\d{{3}})+|\d+)({decimal}\d+)?")
    for column in frame.columns:
        values = frame[column]
        if column in keep_text or pd.api.types.is_numeric_dtype(values):
            continue
        filled = values.dropna().astype("str").str.strip()
        filled = filled[filled != ""]
        if filled.empty or not filled.map(lambda v: number.fullmatch(v) is not None).all():
            continue
        plain = values.astype("str").str.strip().str.replace(dialect.thousands, "", regex=False)
        plain = plain.str.replace(dialect.decimal, ".", regex=False)
        frame[column] = pd.to_numeric(plain.where(values.notna()), errors="coerce")
    return frame


def sniff_csv(path: Path, given: FileFormat | None = None, encoding: str = "auto") -> CsvDialect:
    """How the CSV file at `path` is written: what `given` says, the rest sniffed
    (`encoding`: the source's, where `given` leaves it to the source)."""
    given = given or FileFormat()
    chosen = csv_encoding(path, given.encoding if given.encoding != "auto" else encoding)
    lines = _head_text(path, chosen)
    delimiter = given.delimiter if given.delimiter != "auto" else sniff_delimiter(lines)
    decimal, thousands = given.decimal, given.thousands
    if "auto" in (decimal, thousands):
        found_decimal, found_thousands = sniff_numbers(_fields(lines, delimiter), delimiter == ";")
        decimal = found_decimal if decimal == "auto" else decimal
        if thousands == "auto":
            thousands = found_thousands if found_thousands not in (decimal, delimiter) else ""
    return CsvDialect(delimiter, decimal, thousands, chosen)
