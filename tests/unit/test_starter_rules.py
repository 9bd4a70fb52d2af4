"""The starter rule file `init` writes from the data: rules the history supports, each with
its evidence, valid for the first `train`; an empty valid file where nothing qualifies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from leadscore.apps.profiling import init_project
from leadscore.apps.starter_rules import starter_rules_text, suggest
from leadscore.config import load_config
from leadscore.data.rules import RuleSet, load_rules
from leadscore.io.sources import load_crm
from leadscore.io.tables import write_tables
from leadscore.scoring import training
from leadscore.synthetic import generate_crm


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("generated")
    crm = generate_crm(3000, seed=3, end="2026-06-30")
    write_tables(crm.tables(), str(folder), "parquet")
    out, _ = init_project(str(folder), folder / "leadscore.yaml")
    return out


def test_suggestions_are_what_the_history_shows(project: Path) -> None:
    config = load_config(project)
    found, basis = suggest(config)
    assert found and "training cohort" in basis
    crm = load_crm(config)
    data = training.build_training_set(crm, config, RuleSet(mql_threshold=50))
    train = data.examples.select(data.splits["train"])
    y = train.labels
    for s in found:
        assert s.lift >= 1.5 or s.lift <= 1 / 1.5
        assert s.rate == pytest.approx(y[s.hits].mean()) and s.base == pytest.approx(y.mean())
        assert (s.points > 0) == (s.lift > 1)
    # The generator's known effects: asking for a demo or contact goes with conversion;
    # students convert (almost) never.
    names = {s.rule["name"]: s for s in found}
    assert names.keys() & {"demo_request", "contact_request"}
    assert all(names[n].points > 0 for n in names.keys() & {"demo_request", "contact_request"})
    assert any(s.points < 0 for s in found)


def test_the_starter_file_loads_and_names_only_what_the_data_has(project: Path) -> None:
    config = load_config(project)
    path = project.parent / "starter.yaml"
    path.write_text(starter_rules_text(config), encoding="utf-8")
    rules = load_rules(path)
    text = path.read_text(encoding="utf-8")
    assert text.count("# suggestion: converted at") == len(rules.names) > 0
    crm = load_crm(config)
    types = set(crm.activities["activity_type"].astype(str))
    assert {r.activity for r in rules.behaviour_rules} <= types
    # The rules run where training runs them: the training set builds with them.
    data = training.build_training_set(crm, config, rules)
    share = data.examples.rules["is_mql"].mean()
    assert 0 < share < 0.5


#: A valid rule file with no rules.
EMPTY = {"mql_threshold": 50, "attribute_rules": [], "behaviour_rules": []}


def _starter_of(frame: pd.DataFrame, folder: Path) -> str:
    """The starter rule file of a flat export of `frame`, as `init` would write it."""
    (folder / "data").mkdir()
    frame.to_csv(folder / "data" / "export.csv", index=False)
    out, _ = init_project(str(folder / "data"), folder / "leadscore.yaml")
    return starter_rules_text(load_config(out))


def test_nothing_to_suggest_gives_an_empty_valid_file(tmp_path: Path) -> None:
    """A label that is a coin flip: no value goes with it."""
    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame(
        {
            "Lead Id": [f"L{i}" for i in range(n)],
            "Colour": rng.choice(["red", "green", "blue"], n),
            "Converted": rng.choice(["Yes", "No"], n),
        }
    )
    text = _starter_of(frame, tmp_path)
    assert "no value or activity went with conversion clearly enough" in text
    assert yaml.safe_load(text) == EMPTY


def test_a_history_too_small_to_suggest_from_gives_a_valid_file(tmp_path: Path) -> None:
    """The reason (a data problem over several lines) is said in comments, line by line."""
    frame = pd.DataFrame(
        {"Lead Id": [f"L{i}" for i in range(30)], "Colour": ["red", "blue"] * 15,
         "Converted": ["Yes"] + ["No"] * 29}
    )  # fmt: skip
    text = _starter_of(frame, tmp_path)
    assert "no rules suggested" in text
    assert yaml.safe_load(text) == EMPTY


def test_values_in_any_script_make_valid_unique_rule_names(tmp_path: Path) -> None:
    """A rule file allows ASCII names only: values such as ソフトウェア and 製造 both leave
    the name "industry", so the second becomes industry_2, and the file loads."""
    rng = np.random.default_rng(1)
    n = 3000
    industry = rng.choice(["ソフトウェア", "製造", "other"], n, p=[0.15, 0.15, 0.7])
    rate = np.where(industry == "other", 0.05, 0.45)
    frame = pd.DataFrame(
        {
            "Lead Id": [f"L{i}" for i in range(n)],
            "Industry": industry,
            "Converted": np.where(rng.random(n) < rate, "Yes", "No"),
        }
    )
    path = tmp_path / "rules.yaml"
    path.write_text(_starter_of(frame, tmp_path), encoding="utf-8")
    rules = load_rules(path)
    assert {"industry", "industry_2"} <= set(rules.names)
    assert len(set(rules.names)) == len(rules.names)
