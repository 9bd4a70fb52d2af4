"""Every command the README and docs/ show exists with the options they use.

The runnable blocks themselves run in tests/e2e/test_production_example.py; both are in
CI's long step (`python3 run.py test -m long`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from doc_commands import (
    DOCS,
    EXTERNAL,
    REPO,
    Invocation,
    command_table,
    commands,
    help_text,
    invocation,
    problems,
    shell_blocks,
)


def _everything() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for block in shell_blocks(doc):
            found += [(block.where, tokens) for tokens in commands(block.code)]
        found += [
            (where, tokens) for where, code in command_table(doc) for tokens in commands(code)
        ]
    return found


@pytest.mark.long  # ~35 programs' --help, ~90 s of CPU: CI's long step
def test_every_documented_command_and_option_exists() -> None:
    checked: list[tuple[str, list[str], Invocation]] = []
    unknown = []
    for where, tokens in _everything():
        inv = invocation(tokens)
        if isinstance(inv, Invocation):
            checked.append((where, tokens, inv))
        elif isinstance(inv, str) and inv not in EXTERNAL:
            unknown.append(f"{where}: {inv}")
    assert not unknown, f"commands the checker does not know (teach doc_commands.py): {unknown}"
    # The docs show these; if the parser missed them the test would pass on nothing.
    programs = {_program_name(inv) for _, _, inv in checked}
    assert {"leadscore", "prefect", "mlflow", "serve.py", "stack.sh"} <= programs, programs
    assert len(checked) >= 40, len(checked)
    with ThreadPoolExecutor(4) as pool:  # warm the --help cache in parallel
        list(pool.map(lambda c: help_text(c[2].program, c[2].path), checked))
    failures = [
        f"{where}: {' '.join(tokens)}\n    {p}"
        for where, tokens, inv in checked
        for p in problems(inv)
    ]
    assert not failures, "\n".join(failures)


def _program_name(inv: Invocation) -> str:
    return inv.program[-1].rsplit("/", 1)[-1]


def test_the_checker_catches_a_wrong_option_and_subcommand() -> None:
    """The check can fail: an option and a subcommand that do not exist are reported."""
    wrong_flag = invocation(["leadscore", "score", "--config", "x.yaml", "--as-off", "2026-01-01"])
    assert problems(wrong_flag) == ["`leadscore score` has no option --as-off"]
    wrong_sub = invocation(["prefect", "deployment", "runn", "score/nightly-score"])
    assert problems(wrong_sub) and "exits" in problems(wrong_sub)[0]
    assert problems(invocation(["examples/production/stack.sh", "restart"]))


def test_runnable_blocks_are_where_ci_runs_them() -> None:
    """The production doc's runnable blocks: setup blocks, then one teardown at the end."""
    blocks = [b for b in shell_blocks(REPO / "docs" / "production-deployments.md") if b.role]
    assert [b.role for b in blocks][-1] == "teardown"
    assert {b.role for b in blocks[:-1]} == {"setup"} and len(blocks) >= 2
    text = "".join(b.code for b in blocks)
    for needed in (
        "stack.sh up",
        "leadscore generate --leads 5000",
        "nightly-score",
        "stack.sh down",
    ):
        assert needed in text, needed


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("a --x 1 && b -y | c\nd 'e f' # g", [["a", "--x", "1"], ["b", "-y"], ["c"], ["d", "e f"]]),
        ("x --a \\\n    --b\n", [["x", "--a", "--b"]]),
        ("y -d '{\n \"k\": 1}'", [["y", "-d", '{\n "k": 1}']]),
        ('eval "$(s env)"', [["eval", "$(s env)"]]),
        ("K=$(x y --z) # k", [["K=$(x", "y", "--z)"]]),
    ],
)
def test_commands_split_like_the_shell(code: str, expected: list[list[str]]) -> None:
    assert commands(code) == expected


def test_the_readme_project_file_reference_loads_and_names_every_key() -> None:
    """The README's annotated project file is valid and lists every key there is."""
    import typing

    import yaml
    from pydantic import BaseModel

    from leadscore.config import ProjectConfig, config_from_dict

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## The project file") :]
    block = section[section.index("```yaml\n") + 8 :]
    raw = block[: block.index("```")]
    data = yaml.safe_load(raw)
    config_from_dict(data, environ={"DB_PASSWORD": "x"})  # raises on a key that is not one

    def keys(model: type[BaseModel], prefix: str = "") -> set[str]:
        out = set()
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            nested = [a for a in (field.annotation, *typing.get_args(field.annotation))
                      if isinstance(a, type) and issubclass(a, BaseModel)]  # fmt: skip
            if nested and typing.get_origin(field.annotation) not in (dict, list):
                out |= keys(nested[0], f"{prefix}{name}.")
            else:
                out.add(f"{prefix}{name}")
        return out

    def written(node: object, prefix: str = "") -> set[str]:
        out = set()
        for name, value in (node or {}).items():
            out.add(f"{prefix}{name}")
            if isinstance(value, dict):
                out |= written(value, f"{prefix}{name}.")
        return out

    import re

    # A section that is off (`label: null`) shows its keys in its comment ({column: ...}).
    shown = written(data)
    missing = sorted(
        k
        for k in keys(ProjectConfig)
        if k not in shown and not re.search(rf"\b{re.escape(k.rsplit('.', 1)[-1])}:", raw)
    )
    assert not missing, f"keys the README's project file does not show: {missing}"
