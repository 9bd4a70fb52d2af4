"""Errors that a user can act on: what is wrong, where, and how to fix it."""

from __future__ import annotations


class LeadscoreError(Exception):
    """A problem with the user's input or setup, reported without a traceback.

    `transient` marks problems that may go away by themselves (a database or tracking
    server that is unreachable or locked): flows retry those, never the others.
    """

    def __init__(self, problem: str, fix: str | None = None, transient: bool = False) -> None:
        self.problem = problem
        self.fix = fix
        self.transient = transient
        super().__init__(problem if fix is None else f"{problem}\n  fix: {fix}")


class ConfigError(LeadscoreError):
    """The project file is missing, unreadable or invalid."""


class DataError(LeadscoreError):
    """A source table is missing, unreadable, empty or lacks a required column."""


class ModelError(LeadscoreError):
    """Training cannot proceed or the registry lacks a model to score with."""


class NoOpenLeadsError(DataError):
    """No lead is open at the scoring date (none created and unconverted in the window)."""


class TooLittleHistoryError(ModelError):
    """Too few conversions (or too short a history) for a model to be trained and evaluated
    honestly: a training run then reports on the rules alone (rules-only mode)."""
