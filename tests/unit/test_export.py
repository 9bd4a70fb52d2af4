"""CRM write-back files: the latest scores in Salesforce's, HubSpot's or leadscore's columns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from leadscore.apps.cli import app
from leadscore.errors import DataError
from leadscore.io.export import LAYOUTS, SALESFORCE_TEXT, export_scores
from leadscore.io.publish import publish_scores

LONG = "; ".join(
    f"reason number {i} about pricing-page views in the last 30 days" for i in range(9)
)


def _run(day: str, ids: list[int], by_rules: bool = False) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "lead_id": ids,
            "as_of_date": pd.Timestamp(day),
            "conversion_probability": None if by_rules else [0.4123, 0.05][:n] + [0.01] * (n - 2),
            "percentile": 50.0,
            "tier": "A",
            "rule_score": 55.0,
            "is_mql": [True] + [False] * (n - 1),
            "rules_fired": "pricing_page,director",
            "reasons_up": [LONG] + ["job title says director"] * (n - 1),
            "reasons_down": "free e-mail domain",
            "model_name": "rules" if by_rules else "leadscore-conversion",
            "model_version": None if by_rules else "3",
            "mlflow_run_id": None if by_rules else "r",
            "scored_at": pd.Timestamp(day) + pd.Timedelta(hours=2, seconds=41),
        }
    )


@pytest.fixture
def published(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'scores.db'}"
    publish_scores(_run("2026-03-01", [1, 2, 3]), uri)  # lead 3 closes after this run
    publish_scores(_run("2026-03-02", [1, 2]), uri)
    return uri


def _read(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_salesforce_columns_values_and_the_text_limit(published, tmp_path) -> None:
    path = tmp_path / "sf.csv"
    assert export_scores(published, "lead_scores", "salesforce", path) == (2, "2026-03-02")
    rows = _read(path)
    assert list(rows[0]) == list(LAYOUTS["salesforce"])
    first = rows[0]
    assert first["Id"] == "1" and first["Leadscore_Probability__c"] == "41.2"
    assert first["Leadscore_MQL__c"] == "true" and rows[1]["Leadscore_MQL__c"] == "false"
    assert first["Leadscore_Scored_At__c"] == "2026-03-02T02:00:41Z"
    assert first["Leadscore_Model__c"] == "leadscore-conversion v3"
    reasons = first["Leadscore_Reasons__c"]
    assert 0 < len(reasons) <= SALESFORCE_TEXT and LONG.startswith(reasons)
    assert reasons.endswith("30 days")  # cut at a reason's end, never mid-word


def test_hubspot_and_csv_layouts(published, tmp_path) -> None:
    export_scores(published, "lead_scores", "hubspot", tmp_path / "hs.csv")
    hub = _read(tmp_path / "hs.csv")
    assert hub[0]["Record ID"] == "1" and hub[0]["leadscore_reasons"] == LONG
    assert hub[1]["leadscore_tier"] == "A" and hub[1]["leadscore_mql"] == "false"
    export_scores(published, "lead_scores", "csv", tmp_path / "plain.csv")
    plain = _read(tmp_path / "plain.csv")
    assert plain[0]["conversion_probability"] == "0.412300"
    assert plain[0]["rules_fired"] == "pricing_page, director"


def test_only_the_newest_runs_leads_unless_all(published, tmp_path) -> None:
    """Lead 3 was open on 03-01 only: its old score is not written back over the CRM's."""
    export_scores(published, "lead_scores", "csv", tmp_path / "new.csv")
    assert [r["lead_id"] for r in _read(tmp_path / "new.csv")] == ["1", "2"]
    assert export_scores(published, "lead_scores", "csv", tmp_path / "all.csv", True)[0] == 3


def test_rules_only_scores_leave_the_probability_empty(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'scores.db'}"
    publish_scores(_run("2026-03-02", [7, 8], by_rules=True), uri)
    export_scores(uri, "lead_scores", "salesforce", tmp_path / "sf.csv")
    row = _read(tmp_path / "sf.csv")[0]
    assert row["Leadscore_Probability__c"] == "" and row["Leadscore_Model__c"] == "rules"


def test_nothing_published_is_an_error_and_writes_nothing(tmp_path) -> None:
    with pytest.raises(DataError, match="no published scores"):
        export_scores(f"sqlite:///{tmp_path / 'none.db'}", "lead_scores", "csv", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_the_command_names_the_file_after_the_run(published, tmp_path, monkeypatch) -> None:
    project = tmp_path / "leadscore.yaml"
    project.write_text(yaml.safe_dump({"publish": {"uri": published}}))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["export", "--format", "hubspot", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["rows"] == 2 and summary["as_of"] == "2026-03-02"
    assert Path(summary["path"]).name == "leadscore-hubspot-2026-03-02.csv"
    assert Path(summary["path"]).exists() and not list(tmp_path.glob("*latest*"))
