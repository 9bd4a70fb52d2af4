"""Accounts in the pipeline: a model trained with account features scores every open lead
with its colleagues' activity in the batch; the paths that read one lead or one partition
of leads refuse it (they cannot see a whole account yet) instead of scoring without it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    DEFAULT_RULES,
    invoke_json,
    open_lead_ids,
    trained_project,
    without_keys,
    write_project,
)
from typer.testing import CliRunner

from leadscore.config import load_config
from leadscore.io import publish
from leadscore.io.sources import load_crm
from leadscore.io.tables import write_tables
from leadscore.lifecycle.registry import load_champion
from leadscore.scoring.scorer import model_rows
from leadscore.synthetic import generate_crm

TODAY = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()


def _accounts_project(folder: Path, _: object):
    tables = generate_crm(3000, seed=31, end=str(TODAY.date()), accounts=True).tables()
    tables = {k: tables[k] for k in ("leads", "activities", "outcomes")}
    tables["outcomes"] = tables["outcomes"].dropna()
    write_tables(tables, str(folder / "data"), "parquet")
    config = {
        "source": {
            "uri": "data",
            "attributes": {
                "categorical": ["industry", "country", "lead_source"],
                "numeric": ["employees"],
                "job_title": "job_title",
                "email": "email",
                "account": "account_id",
            },
        },
        "accounts": {"features": True},
        "rules": "rules.yaml",
        "report": {"bootstrap_samples": 100},
    }
    path = write_project(folder, config, DEFAULT_RULES.read_text(encoding="utf-8"))
    project = type("Project", (), {})()
    project.path, project.open_ids = path, open_lead_ids(tables, TODAY)
    return project


@pytest.fixture(scope="module")
def runner(prefect_home: str) -> CliRunner:
    os.environ["PREFECT_HOME"] = prefect_home
    return CliRunner()


@pytest.fixture(scope="module")
def trained(runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("accounts")
    with trained_project(runner, "parquet", _accounts_project, folder) as trained:
        yield trained


def test_the_batch_scores_every_open_lead_with_its_account(trained, runner) -> None:
    project, _ = trained
    config = load_config(project.path)
    champion = load_champion(config)
    features = champion.model.features
    assert features.accounts is not None and features.accounts.enabled
    assert "account_active_people_30d" in features.feature_names_
    assert "account_active_people_30d" in champion.pyfunc.metadata.get_input_schema().input_names()

    code, _, output = invoke_json(
        runner, ["score", "-c", str(project.path), "--as-of", str(TODAY.date())]
    )
    assert code in (0, 3), output[-3000:]
    published = publish.read_scores(config.publish_uri, config.publish.table, latest=True)
    assert set(published["lead_id"].astype(str)) == project.open_ids
    # Account factors are said in words, never by their column names.
    reasons = " ; ".join(published["reasons_up"].fillna("")) + " ; ".join(
        published["reasons_down"].fillna("")
    )
    assert "account_" not in reasons and "account people" not in reasons

    # The colleagues are live in scoring: a lead read without them scores differently.
    crm = load_crm(config)
    snap = pd.DataFrame({"lead_id": crm.leads["lead_id"], "as_of": TODAY}).astype(
        {"as_of": "datetime64[us]"}
    )
    snap = snap[snap["lead_id"].astype(str).isin(project.open_ids)].head(300)
    rows, _ = model_rows(crm, champion.model, snap, config)
    alone = crm.leads[crm.leads["lead_id"].isin(snap["lead_id"])]
    lonely = type(crm)(alone, crm.activities, crm.outcomes, crm.source)
    rows_alone, _ = model_rows(lonely, champion.model, snap, config)
    grouped = rows["account_people"].notna()
    assert grouped.mean() > 0.3
    assert (rows.loc[grouped, "account_people"] > rows_alone.loc[grouped, "account_people"]).any()
    together = champion.model.predict_proba(rows)
    apart = champion.model.predict_proba(rows_alone)
    assert not np.allclose(together, apart)


def test_one_lead_and_partitions_refuse_an_account_model(trained, runner, tmp_path) -> None:
    project, _ = trained
    path = str(project.path)
    config = load_config(project.path)
    lead = sorted(project.open_ids)[0]
    at = ["--as-of", str(TODAY.date())]
    code, _, output = invoke_json(runner, ["score", "-c", path, "--lead-id", lead, *at])
    assert code != 0 and "account features" in output and "leadscore score" in output

    from fastapi.testclient import TestClient

    from leadscore.apps import service

    with TestClient(
        service.create_app(without_keys(config), reference_refresh_seconds=0)
    ) as client:
        answer = client.get(f"/leads/{lead}/score", params={"as_of": TODAY.isoformat() + "Z"})
    assert answer.status_code >= 400 and "account features" in answer.text

    text = Path(path).read_text(encoding="utf-8") + "scale:\n  partitions: 3\n"
    partitioned = Path(path).with_name("partitioned.yaml")
    partitioned.write_text(text, encoding="utf-8")
    code, _, output = invoke_json(runner, ["score", "-c", str(partitioned), *at])
    assert code != 0 and "account's people would be split apart" in output
