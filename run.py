#!/usr/bin/env python3
"""Set up `.venv` from the lock file and run a leadscore job. Needs only Python 3.11+.

    python3 run.py demo [--leads N] [--workdir DIR]   # the end-to-end demo
    python3 run.py test [pytest args]                 # lint + the test suite
    python3 run.py bench [args]                       # benchmarks/pipeline.py
    python3 run.py setup                              # only create/update .venv

Setup is idempotent: it creates `.venv` with the standard library's venv, installs the
pinned uv into it, and syncs the exact locked versions (uv.lock) into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
UV_VERSION = "0.13.9"


def _run(cmd: list[str], **kwargs) -> int:
    return subprocess.call(cmd, cwd=ROOT, **kwargs)


def setup() -> None:
    """Create .venv and sync the locked dependencies into it."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before the venv exists
        sys.exit(f"leadscore needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    python = BIN / "python"
    if not python.exists():
        print(f"creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    uv = BIN / "uv"
    pip_install = [str(python), "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}"]
    if not uv.exists() and _run(pip_install) != 0:
        sys.exit("could not install uv into .venv (is the package index reachable?)")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_PROJECT_ENVIRONMENT": str(VENV)}
    # --inexact keeps uv itself (and pip) in the environment it syncs.
    cmd = [
        str(uv),
        "sync",
        "--frozen",
        "--inexact",
        "--extra",
        "dev",
        "--python",
        str(python),
        "--quiet",
    ]
    if _run(cmd, env=env) != 0:
        sys.exit("uv sync failed; see the messages above")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"setup", "demo", "test", "bench"}:
        print(__doc__, file=sys.stderr)
        return 2
    job, args = argv[0], argv[1:]
    setup()
    if job == "setup":
        return 0
    if job == "demo":
        return _run([str(BIN / "leadscore"), "demo", *args])
    if job == "bench":
        return _run([str(BIN / "python"), "benchmarks/pipeline.py", *args])
    lint = _run(
        [
            str(BIN / "ruff"),
            "check",
            "src",
            "flows",
            "tests",
            "benchmarks",
            "notebooks",
            "examples",
            "run.py",
        ]
    )
    if lint != 0:
        print(
            "ruff found problems (above); fix them or run `.venv/bin/ruff check --fix`",
            file=sys.stderr,
        )
        return lint
    return _run([str(BIN / "pytest"), *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
