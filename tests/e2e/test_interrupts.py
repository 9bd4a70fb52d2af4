"""SIGINT and SIGTERM end a run within moments: exit 130/143, one line, no traceback, no
child process left behind, and the registry and promotion records whole or absent.

Each case runs the real `leadscore` command in its own session (as a terminal runs a job)
with one library step wrapped so that the process signals itself as that step begins: the
signal lands at a known stage, however fast or slow the machine is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import sqlalchemy as sa
import yaml
from conftest import DEFAULT_RULES, mlflow_client

from leadscore.io.tables import write_tables
from leadscore.synthetic import generate_crm

#: Trainings stopped by signals in subprocesses: CI's long step.
pytestmark = pytest.mark.long


#: Runs `leadscore ARGS` with TARGET wrapped: as it begins, the process records the time
#: and its child processes, then sends itself SIGNAL (to its process group for SIGINT,
#: as Ctrl-C in a terminal does; to itself only for SIGTERM, as a scheduler does).
WRAPPER = """
import json, os, signal, sys, time, importlib
import psutil

target, signame, record, *args = sys.argv[1:]
module_name, attribute = target.rsplit(":", 1)
module = importlib.import_module(module_name)
owner, name = module, attribute
if "." in attribute:
    owner_name, name = attribute.split(".")
    owner = getattr(module, owner_name)
original = getattr(owner, name)

def wrapped(*a, **k):
    children = [p.pid for p in psutil.Process().children(recursive=True)]
    with open(record, "w") as f:
        json.dump({"sent": time.time(), "children": children}, f)
    signum = getattr(signal, signame)
    if signum == signal.SIGINT:
        os.killpg(os.getpgid(0), signum)
    else:
        os.kill(os.getpid(), signum)
    time.sleep(2)  # the signal arrives while the step runs
    return original(*a, **k)

setattr(owner, name, wrapped)
from leadscore.apps.cli import main
sys.argv = ["leadscore", *args]
main()
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("interrupts")
    tables = generate_crm(1500, seed=9).tables()
    write_tables(
        {k: tables[k] for k in ("leads", "activities", "outcomes")},
        "sqlite:///" + str(folder / "crm.db"),
    )
    (folder / "rules.yaml").write_text(DEFAULT_RULES.read_text(encoding="utf-8"))
    config = {"source": {"uri": "sqlite:///crm.db"}, "rules": "rules.yaml",
              "report": {"bootstrap_samples": 100}}  # fmt: skip
    (folder / "leadscore.yaml").write_text(yaml.safe_dump(config))
    return folder


def _interrupt(folder: Path, env: dict, target: str, signame: str, *args: str):
    record = folder / "signal.json"
    record.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, target, signame, str(record), *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err = process.communicate(timeout=600)
    ended = time.time()
    assert record.exists(), f"the step {target} never ran: {err[-2000:]}"
    sent = json.loads(record.read_text())
    return process.returncode, out, err, ended - sent["sent"], sent["children"]


def _versions(folder: Path) -> dict[str, dict[str, str]]:

    if not (folder / "mlflow.db").exists():
        return {}
    client = mlflow_client(f"sqlite:///{folder / 'mlflow.db'}")
    found = client.search_model_versions("name='leadscore-conversion'")
    return {str(v.version): dict(v.tags) for v in found}


def _promotions(folder: Path) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{folder / 'crm.db'}")
    try:
        if not sa.inspect(engine).has_table("model_promotions"):
            return []
        return pd.read_sql_table("model_promotions", engine)["version"].astype(str).tolist()
    finally:
        engine.dispose()


def _assert_consistent(folder: Path) -> None:
    """Every registered version has its gate decision, in the registry and the history."""
    versions = _versions(folder)
    assert sorted(versions) == sorted(_promotions(folder))
    assert all("gate.decision" in tags for tags in versions.values())


CASES = [
    # (library step the signal lands in, signal, does the step finish first?)
    ("leadscore_flows.tasks:load_crm", "SIGINT", False),
    ("leadscore.modeling.estimator:LeadScoringModel.fit_crossfit", "SIGTERM", False),
    ("leadscore.lifecycle.registry:Registry.log_training_run", "SIGINT", True),
    ("leadscore.lifecycle.promotion:apply_verdict", "SIGTERM", True),
]


@pytest.mark.parametrize(("target", "signame", "finishes"), CASES, ids=[c[0] for c in CASES])
def test_an_interrupted_training_stops_at_once_or_after_its_record(
    project, prefect_home, prefect_api, target, signame, finishes
) -> None:
    env = {**os.environ, "PREFECT_HOME": prefect_home, "OMP_NUM_THREADS": "1"}
    # The first case runs Prefect's temporary server, a child process that must not
    # outlive the run; the others use the session's server (quicker).
    temporary_server = target == CASES[0][0]
    if temporary_server:
        env.pop("PREFECT_API_URL", None)
    else:
        env["PREFECT_API_URL"] = prefect_api
    before = _versions(project)
    code, out, err, seconds, children = _interrupt(
        project, env, target, signame, "train", "-c", "leadscore.yaml"
    )
    assert code == (130 if signame == "SIGINT" else 143), err[-3000:]
    assert "Traceback" not in err + out, err[-3000:]
    (line,) = [t for t in err.splitlines() if t.startswith("interrupted by")]
    assert signame in line
    assert seconds < (30 if finishes else 10), f"{seconds:.1f} s after the signal"
    assert children or not temporary_server, "no child process (Prefect's server) to check"
    assert not [pid for pid in children if psutil.pid_exists(pid)], (
        "a child process outlived the run"
    )
    after = _versions(project)
    assert len(after) == len(before) + (1 if finishes else 0)
    if finishes:
        assert "after finishing registering the model" in line
    _assert_consistent(project)


def test_an_interrupted_scoring_run_publishes_nothing(project, prefect_home, prefect_api) -> None:
    env = {**os.environ, "PREFECT_HOME": prefect_home, "PREFECT_API_URL": prefect_api}
    if not _versions(project):
        trained = subprocess.run(
            [str(Path(sys.executable).with_name("leadscore")), "train", "-c", "leadscore.yaml"],
            cwd=project, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr[-3000:]
    code, out, err, seconds, _ = _interrupt(
        project,
        env,
        "leadscore.io.publish:publish_with_alerts",
        "SIGTERM",
        "score",
        "-c",
        "leadscore.yaml",
    )
    assert code == 143 and seconds < 10, err[-3000:]
    assert "Traceback" not in err + out
    engine = sa.create_engine(f"sqlite:///{project / 'crm.db'}")
    try:
        assert not sa.inspect(engine).has_table("lead_scores")
    finally:
        engine.dispose()
