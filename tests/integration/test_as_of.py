"""Training as of a past date: `train --as-of D` learns exactly what training on an
extract taken on D (the same data cut at D by hand, with `source.extract_date: D`) learns;
conversions after D are unseen, even for leads created before it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import DEFAULT_RULES, invoke_cli

from leadscore.config import config_from_dict, load_config
from leadscore.data.rules import load_rules
from leadscore.io.sources import CRMData, load_crm
from leadscore.io.tables import write_tables
from leadscore.scoring import training
from leadscore.synthetic import generate_crm

#: trainings as of past dates (minutes): CI's long step.
pytestmark = pytest.mark.long

AS_OF = pd.Timestamp("2026-04-15")
SETTINGS = {"backtest": {"folds": 2}, "model": {"max_trees": 200}}


@pytest.fixture(scope="module", autouse=True)
def _prefect_home(prefect_home: str) -> None:
    os.environ["PREFECT_HOME"] = prefect_home


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CRMData]:
    """The whole history, and an extract of it taken on AS_OF, cut by hand."""
    crm = generate_crm(3000, seed=5, end="2026-06-30")
    whole = tmp_path_factory.mktemp("whole")
    write_tables(crm.tables(), str(whole), "parquet")
    leads = crm.leads[crm.leads["created_at"] < AS_OF]
    activities = crm.activities[
        (crm.activities["occurred_at"] < AS_OF) & crm.activities["lead_id"].isin(leads["lead_id"])
    ]
    outcomes = crm.outcomes.dropna(subset=["converted_at"])
    outcomes = outcomes[
        (outcomes["converted_at"] < AS_OF) & outcomes["lead_id"].isin(leads["lead_id"])
    ]
    cut = tmp_path_factory.mktemp("cut")
    write_tables(
        {"leads": leads, "activities": activities, "outcomes": outcomes}, str(cut), "parquet"
    )
    return whole, cut, crm


def _config(uri: Path, **source):
    return config_from_dict(
        {"source": {"uri": str(uri), **source}, **SETTINGS}, base_dir=uri, environ={}
    )


def _trained(config, crm: CRMData) -> training.TrainingResult:
    rules = load_rules(DEFAULT_RULES)
    return training.train(training.build_training_set(crm, config, rules), config, crm)


def test_as_of_learns_what_an_extract_taken_that_day_learns(sources) -> None:
    whole, cut, generated = sources
    as_of = load_crm(_config(whole), as_of=AS_OF)
    extract = load_crm(_config(cut, extract_date=str(AS_OF.date())))
    assert as_of.data_end == extract.data_end == AS_OF
    # Leads created before the day whose conversion came later: unconverted as of the day.
    late = generated.outcomes.dropna(subset=["converted_at"])
    late = late[(late["converted_at"] >= AS_OF) & late["lead_id"].isin(as_of.leads["lead_id"])]
    assert len(late) > 0 and not as_of.outcomes["lead_id"].isin(late["lead_id"]).any()

    a, b = _trained(_config(whole), as_of), _trained(_config(cut), extract)
    pd.testing.assert_frame_equal(a.data.examples.snapshots, b.data.examples.snapshots)
    assert a.trained_through == b.trained_through <= AS_OF - pd.Timedelta(days=90)
    assert a.backtest.pooled == b.backtest.pooled
    rows = b.data.rows["test"]
    np.testing.assert_allclose(a.model.predict_proba(rows), b.model.predict_proba(rows), atol=1e-12)
    # Without the cut the history (and so the model) is another one.
    assert len(load_crm(_config(whole)).leads) > len(as_of.leads)


def test_train_as_of_on_the_command_line(sources, tmp_path) -> None:
    whole, _, _ = sources
    project = tmp_path / "leadscore.yaml"
    project.write_text(
        yaml.safe_dump({"source": {"uri": str(whole)}, "rules": str(DEFAULT_RULES), **SETTINGS})
    )
    result = invoke_cli(
        ["train", "--config", str(project), "--as-of", str(AS_OF.date()), "--json"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert pd.Timestamp(summary["data_end"]) == AS_OF
    assert pd.Timestamp(summary["trained_through"]) <= AS_OF - pd.Timedelta(days=90)
    future = invoke_cli(["train", "--config", str(project), "--as-of", "2999-01-01"], tmp_path)
    assert future.returncode == 2 and "future" in future.stderr
    assert load_config(project).source.extract_date is None


def test_the_history_ends_with_the_newest_lead_or_activity_not_outcome() -> None:
    """Deals still being won months after the last lead came in do not stretch the history
    into months without new leads."""
    leads = pd.DataFrame(
        {"lead_id": ["a", "b"], "created_at": pd.to_datetime(["2026-01-01", "2026-02-01"])}
    )
    activities = pd.DataFrame(
        {
            "lead_id": ["a"],
            "occurred_at": pd.to_datetime(["2026-02-10"]),
            "activity_type": ["web_visit"],
            "detail": [None],
        }
    )
    outcomes = pd.DataFrame({"lead_id": ["b"], "converted_at": pd.to_datetime(["2026-08-01"])})
    crm = CRMData(leads, activities, outcomes, "test")
    assert crm.data_end == pd.Timestamp("2026-02-10")
    assert crm.until(pd.Timestamp("2026-02-05")).data_end == pd.Timestamp("2026-02-05")


def test_a_flat_export_is_not_read_as_of_a_date(tmp_path) -> None:
    """Its labels say who converted by the export, not by the date: refused, not cut."""
    from conftest import FLAT_CONFIG, write_flat_export

    from leadscore.errors import ConfigError

    write_flat_export(tmp_path / "data", leads=300)
    (tmp_path / "leadscore.yaml").write_text(yaml.safe_dump(FLAT_CONFIG))
    config = load_config(tmp_path / "leadscore.yaml")
    with pytest.raises(ConfigError, match="labels say who converted by the day it was exported"):
        load_crm(config, as_of=pd.Timestamp("2026-01-01"))
