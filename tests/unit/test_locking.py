"""The file lock of a SQLite project: one run at a time, and no lock file left behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from leadscore.io.locking import RunLockedError, lock_file, run_lock


def test_a_run_leaves_no_lock_file_and_a_second_one_waits_its_turn(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'scores.db'}"
    path = lock_file(uri, tmp_path, "score")
    with run_lock(uri, "score", 0, tmp_path):
        assert path.is_file()
        busy = pytest.raises(RunLockedError, match="another 'score' run is in progress")
        with busy, run_lock(uri, "score", 0, tmp_path):
            pass
    assert not path.exists()

    # A run waiting on the file the first run removes takes the lock and holds it alone: a
    # third run started meanwhile finds it busy.
    order: list[str] = []
    first_holds, second_holds, second_may_go = (threading.Event() for _ in range(3))

    def first() -> None:
        with run_lock(uri, "score", 0, tmp_path):
            first_holds.set()
            time.sleep(0.3)
            order.append("first done")

    def second() -> None:
        first_holds.wait()
        with run_lock(uri, "score", 10, tmp_path):
            order.append("second holds")
            second_holds.set()
            second_may_go.wait(10)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert second_holds.wait(10)
    with pytest.raises(RunLockedError), run_lock(uri, "score", 0, tmp_path):
        pass
    second_may_go.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first done", "second holds"]
    assert not path.exists()
