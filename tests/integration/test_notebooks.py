"""Notebooks run top to bottom on generated data."""

import runpy
from pathlib import Path

import pytest
from conftest import REPO

#: the notebooks end to end: CI's long step.
pytestmark = pytest.mark.long

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSCORE_NOTEBOOK_LEADS", "3000")
    namespace = runpy.run_path(str(path))
    assert namespace["result"].metrics["model"]["roc_auc"] > 0.6


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS, "notebooks/ holds no jupytext scripts"
