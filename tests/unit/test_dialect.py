"""How a CSV file is written, sniffed: separator, decimal mark, thousands separator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.config import FileFormat
from leadscore.errors import DataError
from leadscore.io.dialect import sniff_csv, sniff_delimiter, sniff_numbers
from leadscore.io.tables import read_sample, read_table


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def test_the_separator_splits_every_line_alike_even_with_quoted_separators() -> None:
    text = 'id;name;note\n1;"Smith, J.";"a; b"\n2;Lee;"x, y, z"\n3;"O\'Neil";plain\n'
    assert sniff_delimiter(_lines(text)) == ";"
    assert sniff_delimiter(_lines(text.replace(";", "\t"))) == "\t"
    assert sniff_delimiter(_lines("id|name\n1|a,b\n2|c\n")) == "|"
    assert sniff_delimiter(_lines("id,name\n1,a;b\n2,c;d\n")) == ","
    assert sniff_delimiter(_lines("only\n1\n2\n")) == ","  # one column: nothing to split


def test_numbers_say_their_decimal_mark_and_thousands_separator() -> None:
    def rows(*values: str) -> list[list[str]]:
        return [["x"], *([v] for v in values)]

    assert sniff_numbers(rows("12,5", "3", "0,25")) == (",", "")
    assert sniff_numbers(rows("1.234,5", "12,75", "7")) == (",", ".")
    assert sniff_numbers(rows("1 234,5", "12,75")) == (",", " ")
    assert sniff_numbers(rows("12.5", "3", "1,234.75")) == (".", ",")
    # 1.234 alone is a thousand in one style and a decimal in the other: the dot stays.
    assert sniff_numbers(rows("1.234", "2.500")) == (".", "")
    # A column of text or dates says nothing.
    assert sniff_numbers(rows("2026-01-02", "Smith, J.")) == (".", "")


def test_what_the_project_file_says_wins_over_the_sniff(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a;b\n1,5;x\n2,5;y\n", encoding="utf-8")
    assert sniff_csv(path).as_format() == {"delimiter": ";", "decimal": ",", "thousands": ""}
    assert sniff_csv(path).encoding == "utf-8-sig"
    told = sniff_csv(path, FileFormat(decimal="."))
    assert told.delimiter == ";" and told.decimal == "."
    assert sniff_csv(path, FileFormat(encoding="cp1252")).encoding == "cp1252"
    frame = read_table(str(tmp_path), "t", file_format=FileFormat(decimal="."))
    assert frame["a"].tolist() == ["1,5", "2,5"]  # read as told: text
    assert read_table(str(tmp_path), "t")["a"].tolist() == [1.5, 2.5]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    decimal=st.sampled_from([".", ","]),
    seed=st.integers(0, 10_000),
)
def test_a_written_frame_is_read_back_as_it_was(tmp_path: Path, delimiter, decimal, seed) -> None:
    """Whatever separator and decimal mark an export uses (text with quotes, separators
    and line breaks included), the sniffed reading gives back the same values."""
    if delimiter == decimal:
        decimal = "."
    rng = np.random.default_rng(seed)
    n = 40
    words = ["plain", "with, comma", 'quote "q"', "semi; colon", "tab\there", "bar | x", "é ü"]
    frame = pd.DataFrame(
        {
            "id": [f"L-{i:04d}" for i in range(n)],
            "amount": np.round(rng.normal(100, 50, n), 2),
            "count": rng.integers(0, 10_000, n),
            "note": rng.choice(words, n),
        }
    )
    path = tmp_path / f"export_{seed}_{ord(delimiter)}_{ord(decimal)}.csv"
    frame.to_csv(path, sep=delimiter, decimal=decimal, index=False)
    dialect = sniff_csv(path)
    assert (dialect.delimiter, dialect.decimal) == (delimiter, decimal)
    back = read_table(str(tmp_path), path.stem, text=["id"])
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)


def test_an_unsplittable_header_is_named_with_its_fix(tmp_path: Path) -> None:
    """Lines of different lengths under every separator: a quoting problem, said so."""
    (tmp_path / "bad.csv").write_text("a;b;c\n1;2\n1;2;3;4\n5\n", encoding="utf-8")
    _, _, problems = read_sample(str(tmp_path), "bad")
    assert problems and "source.files.bad.delimiter" in problems[0]


def test_an_excel_workbook_reads_its_sheet_or_names_the_ones_it_has(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"note": ["x"]}).to_excel(writer, sheet_name="About", index=False)
        pd.DataFrame({"id": ["007", "008"], "v": [1.5, 2.5]}).to_excel(
            writer, sheet_name="Leads", index=False
        )
    frame, rows, _ = read_sample(str(tmp_path), "book")
    assert rows == 1 and "the first of 2: About, Leads" in frame.attrs["format"]
    leads = read_table(str(tmp_path), "book", text=["id"], file_format=FileFormat(sheet="Leads"))
    assert leads["id"].tolist() == ["007", "008"] and leads["v"].tolist() == [1.5, 2.5]
    with pytest.raises(DataError) as raised:
        read_table(str(tmp_path), "book", file_format=FileFormat(sheet="Deals"))
    assert "sheets: About, Leads" in raised.value.problem


def test_json_lines_keep_ids_as_text(tmp_path: Path) -> None:
    (tmp_path / "leads.jsonl").write_text(
        '{"id": "0042", "created": "2026-01-02T03:04:05Z", "n": 1.5}\n'
        '{"id": 43, "created": "2026-01-03", "n": null}\n',
        encoding="utf-8",
    )
    frame = read_table(str(tmp_path), "leads", text=["id"])
    assert frame["id"].tolist() == ["0042", "43"]
    assert frame["created"].tolist() == ["2026-01-02T03:04:05Z", "2026-01-03"]


def test_a_thousands_separator_reads_amounts_and_leaves_dates_alone(tmp_path: Path) -> None:
    """German Excel: 1.234,50 is an amount, 31.12.2025 a date (never 31122025), and in a
    file separated by semicolons 1,500 is one and a half."""
    (tmp_path / "t.csv").write_text(
        "id;created;amount;rate\n1;31.12.2025;1.234,50;1,500\n2;01.02.2026;12,00;2,750\n",
        encoding="utf-8",
    )
    frame = read_table(str(tmp_path), "t", text=["id"])
    assert frame["created"].tolist() == ["31.12.2025", "01.02.2026"]
    assert frame["amount"].tolist() == [1234.5, 12.0]
    assert frame["rate"].tolist() == [1.5, 2.75]
    sample, _, _ = read_sample(str(tmp_path), "t")
    assert sample["amount"].tolist() == [1234.5, 12.0]
    assert sample.attrs["file_format"] == {"delimiter": ";", "decimal": ",", "thousands": "."}
