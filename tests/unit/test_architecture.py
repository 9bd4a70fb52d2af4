"""The package's layers: every import points down (or within a layer), never up.

A reader opening `src/leadscore/` sees the layers as folders; this test keeps the folders
honest. It reads the imports of every module with `ast` (also those inside functions, which
the command line uses to start fast), so it needs no import of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "leadscore"

#: Lowest first. A module may import its own layer and the layers below it.
LAYERS = [
    {"errors", "progress", "interrupts", "i18n"},
    {"config", "synthetic"},
    {"io"},
    {"data"},
    {"modeling"},
    {"scoring"},
    {"evaluation"},
    {"lifecycle"},
    {"apps"},
]


def _layer(dotted: str) -> int:
    """The layer of `leadscore.<part>...` by its first part."""
    part = dotted.split(".")[1]
    for level, names in enumerate(LAYERS):
        if part in names:
            return level
    raise AssertionError(f"{dotted}: {part!r} belongs to no layer; add it to LAYERS")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported leadscore module) of every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("leadscore.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "leadscore":  # from leadscore import errors, ...
                found += [(node.lineno, f"leadscore.{a.name}") for a in node.names]
            elif node.module.startswith("leadscore."):
                found.append((node.lineno, node.module))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def test_every_module_sits_in_a_layer() -> None:
    for path in MODULES:
        _layer("leadscore." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    own = _layer("leadscore." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    upward = [
        f"line {line}: {module} (layer {_layer(module)}) from layer {own}"
        for line, module in _imports(path)
        if _layer(module) > own
    ]
    assert not upward, f"{path.relative_to(PACKAGE)} imports a higher layer: {upward}"


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The walk sees imports inside functions too (a test that could not fail is worse)."""
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from leadscore.apps import cli\n    import leadscore.io.uris\n"
    )
    assert [m for _, m in _imports(module)] == ["leadscore.apps", "leadscore.io.uris"]
    assert _layer("leadscore.apps") > _layer("leadscore.data.rules")
