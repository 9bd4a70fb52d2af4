"""The shell commands of the README and docs/*.md: the blocks CI runs, and every command's flags.

A fenced ```bash block preceded by `<!-- runnable -->` is run by CI as written (from the
checkout's root; `<!-- runnable: teardown -->` marks the block that stops what the others
started). Every command of every block, runnable or not, and of the README's command table
is checked against its own `--help`: a renamed or removed subcommand or flag fails CI.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))

_FENCE = re.compile(r"^```(bash|sh|shell)\s*$")
_MARK = re.compile(r"^<!--\s*runnable(?::\s*(\w+))?\s*-->\s*$")
_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

#: Programs of the venv whose subcommands and flags are checked against their --help.
VENV_PROGRAMS = ("leadscore", "prefect", "mlflow", "dask")
#: Programs the docs use that are not ours to check (the shell's and the system's).
EXTERNAL = {
    "export",
    "eval",
    "source",
    "cd",
    "mkdir",
    "curl",
    "psql",
    "createdb",
    "systemctl",
    "chmod",
    "unset",
    "date",
}


@dataclass(frozen=True)
class Block:
    """One fenced shell block: where it is, its text, and how CI treats it."""

    path: Path
    line: int
    code: str
    role: str | None  # None: only its flags are checked; "setup" or "teardown": CI runs it

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def shell_blocks(path: Path) -> list[Block]:
    """Every fenced bash/sh block of a markdown file, with its runnable mark if any."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if _FENCE.match(lines[i]):
            mark = _MARK.match(lines[i - 1]) if i else None
            start = i + 1
            end = next(j for j in range(start, len(lines)) if lines[j].startswith("```"))
            role = (mark.group(1) or "setup") if mark else None
            blocks.append(Block(path, start, "\n".join(lines[start:end]) + "\n", role))
            i = end
        i += 1
    return blocks


def command_table(path: Path) -> list[tuple[str, str]]:
    """The README's command table: each `leadscore ...` of a row's first cell, [ ] and … removed."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not re.match(r"^\| `leadscore[ `]", line):
            continue
        first_cell = line.split("|")[1]
        for code in re.findall(r"`([^`]+)`", first_cell):
            found.append((f"{path.relative_to(REPO)}:{number}", re.sub(r"[\[\]…]", " ", code)))
    return found


def commands(code: str) -> list[list[str]]:
    """The simple commands of a shell text as token lists (split at newlines, ; && || | &)."""
    lexer = shlex.shlex(_without_comments(code), posix=True, punctuation_chars=";&|\n")
    lexer.whitespace = " \t\r"
    lexer.commenters = ""
    lexer.wordchars += "~-./:=@$%+,{}*?[]()"
    out, current = [], []
    for token in lexer:
        if token and set(token) <= set(";&|\n"):
            if current:
                out.append(current)
            current = []
        else:
            current.append(token)
    if current:
        out.append(current)
    return out


def _without_comments(code: str) -> str:
    """The text with continuations joined and `# comments` cut, keeping every newline.

    (shlex's own comments swallow the newline that ends a command, and an apostrophe in a
    comment would open a quote.)
    """
    out, quote, i = [], None, 0
    code = code.replace("\\\n", " ")
    while i < len(code):
        char = code[i]
        if quote:
            if char == "\\" and quote == '"':
                out.append(code[i : i + 2])
                i += 2
                continue
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "\\":
            out.append(code[i : i + 2])
            i += 2
            continue
        elif char == "#" and (not out or out[-1][-1:] in " \t\n"):
            end = code.find("\n", i)
            i = len(code) if end < 0 else end
            continue
        out.append(char)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class Invocation:
    """A command reduced to what --help can check: the program, its subcommand path, flags."""

    program: tuple[str, ...]  # how to run it: (venv program,) or (python, script)
    path: tuple[str, ...]  # the words between the program and the first flag
    flags: tuple[str, ...]


def invocation(tokens: list[str]) -> Invocation | str | None:
    """What to check of one command; the program's name if we cannot check it; None to skip."""
    tokens = list(tokens)
    while tokens and _ASSIGNMENT.match(tokens[0]):
        if "=$(" in tokens[0]:  # KEY=$(leadscore keys create ...): the command inside
            tokens[0] = tokens[0].split("=$(", 1)[1]
            tokens[-1] = tokens[-1].removesuffix(")")
            break
        tokens.pop(0)
    if not tokens:
        return None
    name = Path(tokens[0]).name
    rest = tokens[1:]
    if name in VENV_PROGRAMS:
        program: tuple[str, ...] = (str(BIN / name),)
    elif name.startswith("python"):
        if not rest or not rest[0].endswith(".py"):
            return name
        script, rest = rest[0], rest[1:]
        if script == "run.py":  # run.py JOB ...: the job's own program takes the options
            job, rest = (rest[0], rest[1:]) if rest else ("", [])
            if job in ("setup", "test"):
                return None  # no options of its own / pytest's options
            script = {"demo": None, "bench": "benchmarks/pipeline.py"}.get(job, "?")
            if script is None:
                return Invocation((str(BIN / "leadscore"),), ("demo",), _flags(rest))
            if script == "?":
                return f"run.py {job}"
        program = (sys.executable, str(REPO / script))
    elif tokens[0].endswith("stack.sh"):
        return Invocation((str(REPO / tokens[0]),), tuple(rest[:1]), ())
    else:
        return name
    # The words before the first option, after the program's own options (`prefect
    # --no-prompt deploy`); two at most: nothing nests deeper (`leadscore scores prune`).
    words = rest[next((i for i, t in enumerate(rest) if not t.startswith("-")), len(rest)) :]
    path = []
    for token in words[:2]:
        if token.startswith("-"):
            break
        path.append(token)
    return Invocation(program, tuple(path), _flags(rest))


def _flags(tokens: list[str]) -> tuple[str, ...]:
    flags = []
    for token in tokens:
        if token == "--":
            break
        if token.startswith("-") and len(token) > 1 and not token[1].isdigit():
            flags.append(token.split("=", 1)[0])
    return tuple(flags)


@cache
def help_text(program: tuple[str, ...], path: tuple[str, ...]) -> tuple[int, str]:
    """`program path... --help` (exit code, output), as a wide terminal would show it."""
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    env.pop("PREFECT_API_URL", None)
    if program[0].endswith("stack.sh"):
        result = subprocess.run(
            [*program], capture_output=True, text=True, env=env, timeout=60, cwd=REPO
        )
        return 0, result.stdout + result.stderr  # its usage line lists the subcommands
    result = subprocess.run(
        [*program, *path, "--help"], capture_output=True, text=True, env=env, timeout=120, cwd=REPO
    )
    return result.returncode, result.stdout + result.stderr


def problems(inv: Invocation) -> list[str]:
    """What --help does not know of this invocation (empty: all of it is known)."""
    code, text = help_text(inv.program, inv.path)
    shown = " ".join(Path(p).name for p in inv.program) + " " + " ".join(inv.path)
    if inv.program[0].endswith("stack.sh"):
        usage = re.search(r"usage: \S+ ([\w|]+)", text)
        known = usage.group(1).split("|") if usage else []
        return [] if inv.path and inv.path[0] in known else [f"stack.sh has no {inv.path}"]
    if code != 0:
        return [f"`{shown.strip()} --help` exits {code}: {text.strip()[-400:]}"]
    known = set(_FLAG.findall(text))
    if inv.path:  # flags before the subcommand (prefect --no-prompt) are the program's
        known |= set(_FLAG.findall(help_text(inv.program, ())[1]))
    return [f"`{shown.strip()}` has no option {flag}" for flag in inv.flags if flag not in known]
