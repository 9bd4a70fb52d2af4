"""Accounts in the pipeline: a model trained with account features scores every open lead
with its colleagues' activity, in the batch, in partitions and on demand by id (which
reads the lead's account, by account column or by e-mail domain), on a Parquet folder and
on PostgreSQL. A posted lead, which is not in the source, is refused rather than scored
without its account."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    DEFAULT_RULES,
    assert_same_as_batch,
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


@dataclass
class Project:
    path: Path
    open_ids: set[str]
    tables: dict[str, pd.DataFrame]


def _tables(seed: int) -> dict[str, pd.DataFrame]:
    tables = generate_crm(3000, seed=seed, end=str(TODAY.date()), accounts=True).tables()
    tables = {k: tables[k] for k in ("leads", "activities", "outcomes")}
    tables["outcomes"] = tables["outcomes"].dropna()
    return tables


def _config(uri: str, account: str | None, **extra) -> dict:
    return {
        "source": {
            "uri": uri,
            "attributes": {
                "categorical": ["industry", "country", "lead_source"],
                "numeric": ["employees"],
                "job_title": "job_title",
                "email": "email",
                "account": account,
            },
        },
        "accounts": {"features": True},
        "rules": "rules.yaml",
        "report": {"bootstrap_samples": 100},
        **extra,
    }


def _parquet_by_account_column(folder: Path, _: object) -> Project:
    tables = _tables(31)
    write_tables(tables, str(folder / "data"), "parquet")
    path = write_project(
        folder, _config("data", "account_id"), DEFAULT_RULES.read_text(encoding="utf-8")
    )
    return Project(path, open_lead_ids(tables, TODAY), tables)


def _postgresql_by_domain(folder: Path, pg: str) -> Project:
    tables = _tables(32)
    write_tables(tables, pg)
    config = _config(pg, None, publish={"uri": pg})
    path = write_project(folder, config, DEFAULT_RULES.read_text(encoding="utf-8"))
    return Project(path, open_lead_ids(tables, TODAY), tables)


SOURCES = {"parquet": _parquet_by_account_column, "postgresql": _postgresql_by_domain}


@pytest.fixture(scope="module")
def runner(prefect_home: str) -> CliRunner:
    os.environ["PREFECT_HOME"] = prefect_home
    return CliRunner()


@pytest.fixture(scope="module", params=list(SOURCES))
def trained(request, runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"accounts-{request.param}")
    with trained_project(runner, request.param, SOURCES[request.param], folder) as trained:
        yield trained


def _published(config) -> pd.DataFrame:
    published = publish.read_scores(config.publish_uri, config.publish.table, latest=True)
    return published.assign(lead_id=published["lead_id"].astype(str)).set_index("lead_id")


def test_train_score_and_one_lead_by_id_with_its_account(trained, runner) -> None:
    project, _ = trained
    path = str(project.path)
    config = load_config(project.path)
    champion = load_champion(config)
    features = champion.model.features
    assert features.accounts is not None and features.accounts.enabled
    assert "account_active_people_30d" in features.feature_names_
    assert "account_active_people_30d" in champion.pyfunc.metadata.get_input_schema().input_names()

    at = ["--as-of", str(TODAY.date())]
    code, _, output = invoke_json(runner, ["score", "-c", path, *at])
    assert code in (0, 3), output[-3000:]
    published = _published(config)
    assert set(published.index) == project.open_ids
    # Account factors are said in words, never by their column names.
    reasons = " ; ".join([*published["reasons_up"].fillna(""), *published["reasons_down"]])
    assert "account_" not in reasons and "account people" not in reasons

    # The colleagues are live in scoring: the same leads read alone score differently.
    crm = load_crm(config)
    snap = pd.DataFrame({"lead_id": crm.leads["lead_id"], "as_of": TODAY}).astype(
        {"as_of": "datetime64[us]"}
    )
    snap = snap[snap["lead_id"].astype(str).isin(project.open_ids)].head(300)
    rows, _ = model_rows(crm, champion.model, snap, config)
    alone = crm.leads[crm.leads["lead_id"].isin(snap["lead_id"])]
    rows_alone, _ = model_rows(
        type(crm)(alone, crm.activities, crm.outcomes, crm.source), champion.model, snap, config
    )
    grouped = rows["account_people"].notna()
    assert grouped.mean() > 0.3
    assert (rows.loc[grouped, "account_people"] > rows_alone.loc[grouped, "account_people"]).any()
    assert not np.allclose(
        champion.model.predict_proba(rows), champion.model.predict_proba(rows_alone)
    )

    # On demand by id, by the CLI and by the service: the batch's numbers, its account read.
    colleagues = published.index[published.index.isin(snap.loc[grouped.to_numpy(), "lead_id"]
                                                       .astype(str))]  # fmt: skip
    lead = str(published.loc[colleagues, "conversion_probability"].idxmax())
    code, answer, output = invoke_json(runner, ["score", "-c", path, "--lead-id", lead, *at])
    assert code == 0, output[-3000:]
    (one,) = answer["leads"]
    assert one["conversion_probability"] == pytest.approx(
        published.loc[lead, "conversion_probability"], abs=1e-9
    )

    from fastapi.testclient import TestClient

    from leadscore.apps import service

    rng = np.random.default_rng(0)
    others = rng.choice(colleagues.to_numpy(), size=min(6, len(colleagues)), replace=False)
    with TestClient(
        service.create_app(without_keys(config), reference_refresh_seconds=0)
    ) as client:
        assert client.get("/health").json()["single_lead"] == "batch"
        answers = {
            key: client.get(f"/leads/{key}/score", params={"as_of": TODAY.isoformat() + "Z"})
            for key in dict.fromkeys([lead, *others])
        }
        posted = client.post(
            "/score",
            json={
                "attributes": {"email": "someone@company1.example", "industry": "software"},
                "created_at": (TODAY - pd.Timedelta(days=3)).isoformat() + "Z",
                "activities": [],
                "as_of": TODAY.isoformat() + "Z",
            },
        )
    for key, response in answers.items():
        assert response.status_code == 200, response.text
        assert_same_as_batch(response.json(), published.loc[key], published.loc[key])
    assert posted.status_code >= 400 and "without its account" in posted.text


@pytest.mark.parametrize("trained", ["parquet"], indirect=True)  # partitions read files
def test_partitions_keep_an_account_together(trained, runner, tmp_path) -> None:
    project, _ = trained
    config = load_config(project.path)
    published = _published(config)
    at = ["--as-of", str(TODAY.date())]
    text = project.path.read_text(encoding="utf-8")
    text += f"scale:\n  partitions: 3\npublish:\n  uri: sqlite:///{tmp_path / 'p.db'}\n"
    partitioned = project.path.with_name("partitioned.yaml")
    partitioned.write_text(text, encoding="utf-8")
    code, _, output = invoke_json(runner, ["score", "-c", str(partitioned), *at])
    assert code in (0, 3), output[-3000:]
    again = _published(load_config(partitioned))
    assert config.publish_uri != load_config(partitioned).publish_uri
    assert set(again.index) == set(published.index)
    np.testing.assert_allclose(
        again.loc[published.index, "conversion_probability"],
        published["conversion_probability"],
        atol=1e-9,
    )
