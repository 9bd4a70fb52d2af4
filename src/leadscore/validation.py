"""Input validation that reports every problem at once, and quarantine of bad rows.

Loading a source collects problems instead of stopping at the first: a user fixing an export
wants the whole list. Each problem names the table, the column, how many rows and which (row
numbers, never values: they may be personal) and the fix. Row problems can be quarantined
(`validation.quarantine`): the rows go to a CSV file with the reason and the run goes on
without them. Table problems (a missing column, an empty table) always stop the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.errors import DataError

log = logging.getLogger(__name__)


def row_numbers(mask: np.ndarray | pd.Series, limit: int = 5) -> str:
    """'rows 3, 17, …' (1 = first data row) for a mask; never the values."""
    rows = np.flatnonzero(np.asarray(mask, dtype=bool)) + 1
    shown = ", ".join(str(r) for r in rows[:limit])
    return f"row{'s' if len(rows) != 1 else ''} {shown}{', …' if len(rows) > limit else ''}"


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

    def describe(self) -> str:
        where = f"table '{self.table}'" + (f", column '{self.column}'" if self.column else "")
        rows = f" ({row_numbers(self.mask)})" if self.mask is not None and self.count else ""
        count = f"{self.count:,} row(s): " if self.mask is not None else ""
        return f"{where}: {count}{self.message}{rows}\n    fix: {self.fix}"


@dataclass
class Checks:
    """Problems found while loading one source."""

    problems: list[Problem] = field(default_factory=list)
    quarantined: dict[str, int] = field(default_factory=dict)

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
        self.problems.append(Problem(level, table, column, message, fix, count, m))

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
        write_quarantine(target, table, frame, bad, reasons)
        self.quarantined[table] = int(bad.sum())
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
    path: Path, table: str, frame: pd.DataFrame, bad: np.ndarray, reasons: np.ndarray
) -> None:
    """Write the bad rows as read, with their row number and reason (replacing older ones)."""
    out = frame[bad].copy()
    out.insert(0, "_reason", reasons[bad])
    out.insert(0, "_row", np.flatnonzero(bad) + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(path)
