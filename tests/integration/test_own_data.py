"""A user's own exports through the documented command (in-process): the real X Education
export, and a flat export that trains, scores and reports end to end."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import (
    FLAT_CONFIG,
    FLAT_RULES,
    REPO,
    X_EDUCATION,
    invoke_cli,
    mlflow_client,
    write_flat_export,
)

from leadscore.lifecycle import run_page

#: real exports trained end to end: CI's long step.
pytestmark = pytest.mark.long

#: Columns the data's publisher documents as filled in after the lead exists.
POST_OUTCOME = {
    "Tags",
    "Lead Quality",
    "Last Activity",
    "Last Notable Activity",
    "Lead Profile",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
}


@pytest.fixture(scope="module", autouse=True)
def _prefect_home(prefect_home: str) -> None:
    os.environ["PREFECT_HOME"] = prefect_home


def test_x_education_trains_through_the_example_config(tmp_path: Path) -> None:
    if not X_EDUCATION.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{X_EDUCATION} is missing in CI; the real-data test must run there")
        pytest.skip(f"real data not here ({X_EDUCATION}); see ../shared/data/README.md")
    # The example as shipped, copied beside a link to the data so the run writes nothing
    # into the repository.
    project = tmp_path / "repo" / "examples" / "x_education"
    shutil.copytree(REPO / "examples" / "x_education", project)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(X_EDUCATION.parent)
    config = project / "leadscore.yaml"
    result = invoke_cli(["train", "--config", str(config), "--json"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)

    assert summary["split_method"] == "order"
    excluded = set(summary["leakage"]["excluded"])
    # The guard finds every documented post-outcome column without being told their names,
    # and keeps the columns known when the lead arrives.
    assert excluded >= POST_OUTCOME
    assert {"Lead Origin", "Lead Source", "Total Time Spent on Website"}.isdisjoint(excluded)
    assert summary["model"]["roc_auc"] >= 0.89
    # The baseline is reported beside the model and the rules, on the same test leads.
    assert 0.8 < summary["baseline"]["roc_auc"] < summary["model"]["roc_auc"] + 0.02
    assert summary["rules"]["roc_auc"] < summary["model"]["roc_auc"]
    assert summary["shift"]["auc"] is not None

    client = mlflow_client(summary["uris"]["tracking"])
    run = client.get_run(summary["run_id"])
    assert set(run.data.params["leakage_excluded"].split(",")) == excluded
    assert run.data.metrics["test_baseline_roc_auc"] == pytest.approx(
        summary["baseline"]["roc_auc"], abs=1e-6
    )
    report = tmp_path / "report"
    client.download_artifacts(summary["run_id"], "report", str(tmp_path))
    html = (report / "report.html").read_text(encoding="utf-8")
    assert 'id="leakage"' in html and "Lead Quality" in html and "Tags" in html
    assert "Shift between the training and test cohorts" in html


def test_flat_export_trains_scores_and_reports(tmp_path: Path) -> None:
    write_flat_export(tmp_path / "data", leads=3000)
    config = yaml.safe_load(yaml.safe_dump(FLAT_CONFIG))
    config["publish"] = {"uri": "sqlite:///scores.db"}
    (tmp_path / "rules.yaml").write_text(FLAT_RULES)
    path = tmp_path / "leadscore.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))

    trained = invoke_cli(["train", "--config", str(path), "--json"], tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads(trained.stdout)
    assert summary["leakage"]["excluded"] == ["Sales Status"]
    assert summary["model"]["roc_auc"] > summary["rules"]["roc_auc"]
    assert "Lead Number" in summary["splits"]["test"]

    scored = invoke_cli(["score", "--config", str(path), "--json"], tmp_path)
    assert scored.returncode == 0, scored.stderr[-3000:]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'scores.db'}")
    scores = pd.read_sql_table("lead_scores", engine)
    engine.dispose()
    export = pd.read_csv(tmp_path / "data" / "export.csv")
    open_ids = set(export.loc[export["Converted"].isna(), "Lead Id"])
    # Exactly the rows with an empty label are scored, with reasons and no e-mail anywhere.
    assert set(scores["lead_id"]) == open_ids
    assert scores["conversion_probability"].between(0, 1).all()
    assert not scores.astype(str).apply(lambda c: c.str.contains("@")).any().any()
    assert not scores["reasons_up"].str.contains("Sales Status").any()

    reported = invoke_cli(["report", "--config", str(path), "--json"], tmp_path)
    assert reported.returncode == 0, reported.stderr[-3000:]
    html = Path(json.loads(reported.stdout)["path"]).read_text(encoding="utf-8")
    assert "Sales Status" in html and "flat export" in html
    assert "Lead Number" in html

    # Each run's page in the Prefect UI is built from its summary, with its numbers.
    pages = (
        run_page.training_page(summary),
        run_page.scoring_page(json.loads(scored.stdout)),
        run_page.report_page(json.loads(reported.stdout)),
    )
    assert f"v{summary['model_version']}" in pages[0].headline
    assert "Sales Status" in pages[0].markdown  # left out as a leak, and said so
    assert f"{len(open_ids):,} open leads published" in pages[1].headline
    assert json.loads(reported.stdout)["path"] in pages[2].markdown
