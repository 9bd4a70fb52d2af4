"""`leadscore tune`'s files: the budget, the one-line edit of the project file, the params
file the project then reads, and nothing left half-written when that fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from leadscore.apps.tuning import params_diff, point_to_params_file, write_winner
from leadscore.config import load_config
from leadscore.errors import ConfigError
from leadscore.scoring.search import parse_budget


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("1.5h", 5400), ("2", 120), (" 5M ", 300)]
)
def test_budgets(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "-3m", "ten minutes", "nanm", "0s"])
def test_a_budget_that_is_not_a_duration_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="not a duration"):
        parse_budget(text)


def test_the_project_file_gains_one_line_and_keeps_its_comments() -> None:
    text = (
        "# my project\nhorizon_days: 60\nmodel:   # the model\n    max_trees: 500\nrules: r.yaml\n"
    )
    edited = point_to_params_file(text, "tuned-params.yaml")
    assert edited.splitlines() == [
        "# my project",
        "horizon_days: 60",
        "model:   # the model",
        "    params_file: tuned-params.yaml",
        "    max_trees: 500",
        "rules: r.yaml",
    ]
    assert point_to_params_file("horizon_days: 60", "p.yaml") == (
        "horizon_days: 60\nmodel:\n  params_file: p.yaml\n"
    )
    with pytest.raises(ConfigError, match="inline mapping"):
        point_to_params_file("model: {max_trees: 5}\n", "p.yaml")


def test_the_winner_is_written_and_read_back(tmp_path: Path) -> None:
    project = tmp_path / "leadscore.yaml"
    project.write_text("# keep me\nmodel:\n  max_trees: 300\n  params:\n    num_leaves: 7\n")
    config = load_config(project)
    winner = {"learning_rate": 0.05, "num_leaves": 15, "reg_lambda": 2.5}
    written = write_winner(project, config, winner)
    assert Path(written["params_file"]) == tmp_path / "tuned-params.yaml"
    assert "+  params_file: tuned-params.yaml" in written["project_diff"]
    assert project.read_text().startswith("# keep me\n")
    again = load_config(project)
    assert again.model.params == winner and again.model.max_trees == 300
    # A second winner rewrites the same file and leaves the project file alone.
    second = write_winner(project, again, {**winner, "num_leaves": 31})
    assert second["project_diff"] == "" and load_config(project).model.params["num_leaves"] == 31
    assert "-num_leaves: 15" in params_diff(winner, {**winner, "num_leaves": 31})


def test_a_project_that_cannot_read_the_winner_back_is_restored(tmp_path: Path) -> None:
    """A second `model:` key wins in YAML, so the line added under the first is never read:
    both files are written, the check fails, and both are put back."""
    project = tmp_path / "leadscore.yaml"
    original = "model:\n  max_trees: 300\nhorizon_days: 60\nmodel:\n  max_trees: 200\n"
    project.write_text(original)
    with pytest.raises(ConfigError, match="does not read the tuned parameters back"):
        write_winner(project, load_config(project), {"num_leaves": 15})
    assert project.read_text() == original
    assert not (tmp_path / "tuned-params.yaml").exists()


def test_a_missing_or_malformed_params_file_is_a_clear_error(tmp_path: Path) -> None:
    project = tmp_path / "leadscore.yaml"
    project.write_text("model:\n  params_file: p.yaml\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(project)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping of LightGBM parameter"):
        load_config(project)
