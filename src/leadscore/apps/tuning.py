"""`leadscore tune`: search the LightGBM parameters on the backtest folds and write the
winner into a params file the project file points to (`model.params_file`).

The project file is edited as text, one line, so its comments and layout stay as the user
wrote them: `params_file: <name>` is added under `model:` (or a `model:` section is added),
unless the project already names a params file, which is then the one rewritten.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from leadscore.config import ProjectConfig, load_config
from leadscore.errors import ConfigError

#: The params file `tune` writes when the project names none (beside the project file).
DEFAULT_PARAMS_FILE = "tuned-params.yaml"


def _dump(params: dict[str, Any]) -> str:
    """The parameters as YAML, floats to 6 significant digits (what the file holds)."""
    clean = {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in params.items()}
    return yaml.safe_dump(clean, sort_keys=True)


def params_diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A unified diff of two parameter sets as YAML."""
    return "".join(
        difflib.unified_diff(
            _dump(before).splitlines(True), _dump(after).splitlines(True), "current", "tuned"
        )
    )


def point_to_params_file(text: str, name: str) -> str:
    """The project file's text with `model.params_file: name` (one line added)."""
    lines = text.splitlines(True)
    for i, line in enumerate(lines):
        if re.match(r"^model:\s*(#.*)?$", line.rstrip("\n")):
            # The section's indentation: its first indented line's, else two spaces.
            indent = "  "
            for following in lines[i + 1 :]:
                match = re.match(r"^(\s+)\S", following)
                if match:
                    indent = match.group(1)
                    break
                if following.strip():
                    break
            lines.insert(i + 1, f"{indent}params_file: {name}\n")
            return "".join(lines)
        if re.match(r"^model:\s*\{", line):
            raise ConfigError(
                "the project file writes `model:` as an inline mapping; tune adds one line to it",
                f"write the model section as a block, or add `params_file: {name}` yourself",
            )
    if text and not text.endswith("\n"):
        text += "\n"
    return f"{text}model:\n  params_file: {name}\n"


def write_winner(
    config_path: Path, config: ProjectConfig, params: dict[str, Any]
) -> dict[str, Any]:
    """Write `params` to the project's params file and point the project file to it; check
    that the project then loads with exactly these parameters. What was written, with
    the diffs."""
    name = config.model.params_file or DEFAULT_PARAMS_FILE
    target = Path(name) if Path(name).is_absolute() else config_path.parent / name
    before_text = config_path.read_text(encoding="utf-8")
    after_text = before_text
    if not config.model.params_file:
        # Inline `model.params` stay in the project file; the params file replaces them.
        after_text = point_to_params_file(before_text, name)
    header = (
        "# LightGBM parameters written by `leadscore tune` (the best pooled backtest figure\n"
        "# found); they replace model.params of the project file that names this file.\n"
    )
    previous = target.read_text(encoding="utf-8") if target.exists() else None
    target.write_text(header + _dump(params), encoding="utf-8")
    try:
        config_path.write_text(after_text, encoding="utf-8")
        reloaded = load_config(config_path)
        if reloaded.model.params != yaml.safe_load(_dump(params)):
            raise ConfigError(
                f"{config_path} does not read the tuned parameters back from {target}",
                "check the model section of the project file",
            )
    except Exception:
        config_path.write_text(before_text, encoding="utf-8")
        if previous is None:
            target.unlink(missing_ok=True)
        else:
            target.write_text(previous, encoding="utf-8")
        raise
    project_diff = "".join(
        difflib.unified_diff(
            before_text.splitlines(True),
            after_text.splitlines(True),
            str(config_path),
            str(config_path),
        )
    )
    return {"params_file": str(target), "project_diff": project_diff}
