"""Input validation that reports every problem at once, and quarantine of bad rows.

Loading a source collects problems instead of stopping at the first: a user fixing an export
wants the whole list. Each problem names the table, the column, how many rows and which (row
numbers, never values: they may be personal) and the fix. Row problems can be quarantined
(`validation.quarantine`): the rows go to a CSV file with the reason and the run goes on
without them. Table problems (a missing column, an empty table) always stop the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.errors import DataError

log = logging.getLogger(__name__)

#: Values exports use for "not filled in" (compared stripped and lower-case): `init` reads
#: them as missing, loading warns about those not listed in source.missing_values.
PLACEHOLDERS = (
    "select", "unknown", "n/a", "na", "null", "none", "nan", "nil", "-", "--", "?", "#n/a",
    "not set",
)  # fmt: skip


#: Positions in the rows as read (0-based) → their row numbers in the table (1-based).
RowNumbers = Callable[[np.ndarray], np.ndarray]


def row_numbers(
    mask: np.ndarray | pd.Series, limit: int = 5, numbers: RowNumbers | None = None
) -> str:
    """'rows 3, 17, …' (1 = first data row) for a mask; never the values.

    `numbers` maps positions in the rows read to the table's own row numbers, when the
    rows read are not the whole table in order (a time window or a lead filter).
    """
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    shown = positions[:limit]
    rows = numbers(shown) if numbers is not None else shown + 1
    text = ", ".join(str(int(r)) for r in rows)
    more = ", …" if len(positions) > limit else ""
    return f"row{'s' if len(positions) != 1 else ''} {text}{more}"


@dataclass(frozen=True)
class RowOrigin:
    """Where the rows read sit in their table: how to name a row so the user finds it."""

    #: Positions in the rows read → row numbers in the table; None: position + 1.
    numbers: RowNumbers | None = None
    #: Said after the row numbers when they are not the table's own (a database without
    #: row numbers), e.g. "counted in the rows read".
    note: str | None = None

    def kept(self, keep: np.ndarray) -> RowOrigin:
        """The origin of the rows that remain after keeping `keep` (a mask) of them."""
        positions = np.flatnonzero(np.asarray(keep, dtype=bool))
        inner = self.numbers

        def numbers(at: np.ndarray) -> np.ndarray:
            picked = positions[np.asarray(at, dtype=int)]
            return inner(picked) if inner is not None else picked + 1

        return RowOrigin(numbers, self.note)


@dataclass
class Problem:
    """One finding: an error stops the run (unless its rows are quarantined), a warning not."""

    level: str  # "error" | "warning"
    table: str
    column: str | None
    message: str
    fix: str
    count: int = 0
    #: Row mask over the table as read (row problems only); None for table problems.
    mask: np.ndarray | None = None
    #: Where those rows sit in the table (set when the problem is recorded).
    origin: RowOrigin = field(default_factory=RowOrigin)

    def describe(self) -> str:
        where = f"table '{self.table}'" + (f", column '{self.column}'" if self.column else "")
        rows = ""
        if self.mask is not None and self.count:
            rows = row_numbers(self.mask, numbers=self.origin.numbers)
            rows = f" ({rows}{'; ' + self.origin.note if self.origin.note else ''})"
        count = f"{self.count:,} row(s): " if self.mask is not None else ""
        return f"{where}: {count}{self.message}{rows}\n    fix: {self.fix}"


@dataclass
class Checks:
    """Problems found while loading one source."""

    problems: list[Problem] = field(default_factory=list)
    quarantined: dict[str, int] = field(default_factory=dict)
    #: Per table: where the rows being checked sit in it (default: all rows, in order).
    origins: dict[str, RowOrigin] = field(default_factory=dict)

    def keep_rows(self, table: str, keep: np.ndarray) -> None:
        """Rows of `table` were dropped (quarantine, a time window): renumber what is left."""
        self.origins[table] = self.origins.get(table, RowOrigin()).kept(keep)

    def error(self, table: str, column: str | None, message: str, fix: str, mask=None) -> None:
        """An error: a row problem when `mask` marks rows, else a table problem."""
        self._add("error", table, column, message, fix, mask)

    def warn(self, table: str, column: str | None, message: str, fix: str, mask=None) -> None:
        """A warning: said in the run, the log and the report; the run goes on."""
        self._add("warning", table, column, message, fix, mask)

    def _add(self, level, table, column, message, fix, mask) -> None:
        m = None if mask is None else np.asarray(mask, dtype=bool)
        count = int(m.sum()) if m is not None else 0
        if m is not None and count == 0:
            return
        origin = self.origins.get(table, RowOrigin())
        self.problems.append(Problem(level, table, column, message, fix, count, m, origin))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    def stop_on_table_errors(self) -> None:
        """Raise now for problems no quarantine can fix (a missing column, an empty table)."""
        fatal = [p for p in self.errors if p.mask is None]
        if fatal:
            raise self._error(fatal)

    def raise_if_errors(self) -> None:
        """Raise for every error recorded so far (rows that no quarantine can set aside)."""
        if self.errors:
            raise self._error(self.errors)

    def settle(self, table: str, frame: pd.DataFrame, quarantine: Path | None) -> pd.DataFrame:
        """Apply this table's row errors: raise, or move the rows to quarantine.

        Returns the frame without the quarantined rows (positions as read).
        """
        self.stop_on_table_errors()
        mine = [p for p in self.errors if p.table == table and p.mask is not None]
        if not mine:
            return frame
        if quarantine is None:
            raise self._error(self.errors)
        bad = np.zeros(len(frame), dtype=bool)
        reasons = np.full(len(frame), "", dtype=object)
        for p in mine:
            reason = f"{p.column}: {p.message}" if p.column else p.message
            reasons[p.mask & (reasons == "")] = reason
            bad |= p.mask
            p.level = "warning"
            p.message += f" - set aside in {quarantine_file(quarantine, table).name}"
        target = quarantine_file(quarantine, table)
        origin = self.origins.get(table, RowOrigin())
        write_quarantine(target, table, frame, bad, reasons, origin)
        self.quarantined[table] = int(bad.sum())
        self.keep_rows(table, ~bad)
        log.warning("quarantined %s row(s) of table '%s' to %s", int(bad.sum()), table, target)
        return frame[~bad].reset_index(drop=True)

    def _error(self, problems: list[Problem]) -> DataError:
        head = f"{len(problems)} problem(s) in the source data; nothing was trained or published"
        body = "\n".join(f"  - {p.describe()}" for p in problems)
        quarantinable = all(p.mask is not None for p in problems)
        fix = (
            "fix the rows named above, or set validation.quarantine: bad_rows.csv in the "
            "project file to set them aside and go on without them"
            if quarantinable
            else "fix the problems named above"
        )
        return DataError(f"{head}:\n{body}", fix)

    def summary(self) -> list[str]:
        """Warnings as lines for the terminal and the run log."""
        return [p.describe() for p in self.warnings]


def quarantine_file(path: Path, table: str) -> Path:
    """One file per table (their columns differ): bad_rows.csv → bad_rows.leads.csv."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in table)
    return path.with_name(f"{path.stem}.{safe}{path.suffix or '.csv'}")


def write_quarantine(
    path: Path,
    table: str,
    frame: pd.DataFrame,
    bad: np.ndarray,
    reasons: np.ndarray,
    origin: RowOrigin | None = None,
) -> None:
    """Write the bad rows as read, with their row number and reason (replacing older ones)."""
    out = frame[bad].copy()
    out.insert(0, "_reason", reasons[bad])
    positions = np.flatnonzero(bad)
    numbers = origin.numbers if origin is not None else None
    out.insert(0, "_row", numbers(positions) if numbers is not None else positions + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(path)
