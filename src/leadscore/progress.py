"""Progress reporting hook: the CLI installs a reporter; library code only calls it.

A context variable rather than an argument threaded through Prefect flows, because flow
parameters must be serialisable and a progress bar is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Reporter = Callable[[str, int, int], None]


def _silent(stage: str, done: int, total: int) -> None:
    return None


_REPORTER: ContextVar[Reporter] = ContextVar("leadscore_progress", default=_silent)


def reporter() -> Reporter:
    """The active reporter: `reporter()(stage, done, total)`."""
    return _REPORTER.get()


@contextmanager
def reporting(callback: Reporter) -> Iterator[None]:
    """Install `callback` as the reporter for the duration of the block."""
    token = _REPORTER.set(callback)
    try:
        yield
    finally:
        _REPORTER.reset(token)
