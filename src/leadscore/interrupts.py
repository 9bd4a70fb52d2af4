"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM (a scheduler's timeout): within moments,
with one line instead of a traceback, no child process left behind, and never half-way
through a record that must be whole.

The `leadscore` command installs the handling (`install`); library steps that write a
record in several places mark themselves `critical` (registering a model and recording its
gate decision, moving the champion alias, recording monitoring checks): a signal during
such a step waits for it to end. Everything else is simply cut off: publishing is one
database transaction, which a vanished process rolls back.

Why a watcher thread rather than a Python signal handler: a Python handler runs only when
the main thread returns to the interpreter (not inside a long LightGBM or DuckDB call), and
Prefect's flow engine installs its own SIGTERM handler, whose crash reporting waits for a
Prefect server that a Ctrl-C to the process group has already stopped. The interpreter
writes every signal to a wake-up pipe at once; the thread reading it stops the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The shell's convention: 128 + the signal number.
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}

_lock = threading.Condition()
_critical: list[str] = []
_installed = False
_stopping = False


def _ignore(signum: int, frame: object) -> None:
    """The Python-level handler: the watcher thread does the work."""


def install(stop: Callable[[int, list[str]], None]) -> None:
    """Route SIGINT and SIGTERM to `stop(signum, steps_waited_for)`, called on a thread.

    `stop` must end the process (`os._exit`); it runs once no critical step is running.
    Call from the main thread, once.
    """
    global _installed
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in SIGNALS:
        signal.signal(signum, _ignore)
    thread = threading.Thread(
        target=_watch, args=(read_end, stop), name="leadscore-signals", daemon=True
    )
    thread.start()
    _installed = True


def _watch(read_end: int, stop: Callable[[int, list[str]], None]) -> None:
    global _stopping
    while True:
        received = os.read(read_end, 1)
        if not received or received[0] not in EXIT_CODES:
            continue  # a signal someone else handles
        signum = received[0]
        with _lock:
            _stopping = True
            waited = list(_critical)
            while _critical:
                _lock.wait()
        stop(signum, waited)
        return


@contextlib.contextmanager
def critical(step: str) -> Iterator[None]:
    """A step that, once begun, finishes before a signal stops the process.

    Outside the `leadscore` command (no `install`) this only marks the step. In the main
    thread, Python-level signal handlers (Prefect's among them) are held off meanwhile, so
    no exception is raised half-way through the step.
    """
    with _lock:
        while _stopping:  # the process is stopping: begin nothing new
            _lock.wait()
        _critical.append(step)
    held = _hold_handlers() if _installed else None
    try:
        yield
    finally:
        if held is not None:
            for signum, handler in held.items():
                signal.signal(signum, handler)
        with _lock:
            _critical.remove(step)
            _lock.notify_all()


def _hold_handlers() -> dict[int, object] | None:
    if threading.current_thread() is not threading.main_thread():
        return None
    held = {}
    for signum in SIGNALS:
        held[signum] = signal.getsignal(signum)
        signal.signal(signum, _ignore)
    return held


def running_steps() -> list[str]:
    """The critical steps running now (for messages)."""
    with _lock:
        return list(_critical)


def stop_children(timeout: float = 3.0) -> int:
    """Terminate every descendant process (Prefect's temporary server, Dask workers).

    Returns how many were still alive after `timeout` seconds and had to be killed.
    """
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return len(alive)
