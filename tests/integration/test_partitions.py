"""Scoring in lead partitions, one after the other and on a Dask LocalCluster: the same
scores as the whole source, errors that name the partition, and the monitoring sample."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from conftest import DEFAULT_RULES, REPO, invoke_cli, run_cli

from leadscore.config import config_from_dict
from leadscore.data.rules import load_rules
from leadscore.errors import DataError
from leadscore.io.sources import load_crm
from leadscore.io.tables import write_tables
from leadscore.scoring import partitions, training
from leadscore.scoring.inputs import lookback_days
from leadscore.scoring.scorer import Scorer
from leadscore.synthetic import generate_crm

AS_OF = pd.Timestamp("2026-06-30")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A model trained on a generated CRM, written as a Parquet folder and a CSV folder."""
    generated = generate_crm(4_000, seed=11, end=str(AS_OF.date()))
    root = tmp_path_factory.mktemp("partitions")
    tables = {k: generated.tables()[k] for k in ("leads", "activities", "outcomes")}
    tables["outcomes"] = tables["outcomes"].dropna()
    for kind in ("parquet", "csv"):
        write_tables(tables, str(root / kind), kind)
    config = config_from_dict({"source": {"uri": str(root / "parquet")}}, root, "test", {})
    rules = load_rules(REPO / "models" / "mql_rules.yaml")
    crm = load_crm(config)
    result = training.train(training.build_training_set(crm, config, rules), config)
    return root, config, rules, result.model


def _with(config, **scale):
    return config.model_copy(update={"scale": config.scale.model_copy(update=scale)})


def _by_lead(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.assign(lead_id=frame["lead_id"].astype(str))
    return out.sort_values("lead_id").reset_index(drop=True)


def _with_blank_types(source: Path, folder: Path, rows: int) -> Path:
    """A copy of the Parquet source whose last `rows` activities have no type."""
    folder.mkdir()
    acts = pd.read_parquet(source / "activities.parquet")
    acts.loc[acts.index[-rows:], "activity_type"] = None
    acts.to_parquet(folder / "activities.parquet")
    for table in ("leads", "outcomes"):
        (folder / f"{table}.parquet").write_bytes((source / f"{table}.parquet").read_bytes())
    return folder


def _in_partitions(config, rules, model, since, count: int, folder: Path):
    """The library's own partition run, watching each partition as it is scored."""
    config = _with(config, partitions=count, staging_dir=str(folder))
    seen = []

    def score_one(part, scorer, since, as_of):
        result = partitions.score_partition(part, scorer, since, as_of)
        seen.append((part, result))
        return result

    scorer = Scorer.unregistered(model, rules, config)
    combined = partitions.score_partitions(scorer, since, AS_OF, score_one)
    parts, results = [p for p, _ in seen], [r for _, r in seen]
    assert len(parts) == count
    return parts, results, combined


@pytest.mark.parametrize("kind", ["parquet"])
def test_partitioned_scores_equal_the_whole_source(trained, tmp_path, kind, monkeypatch) -> None:
    root, config, rules, model = trained
    config = config.model_copy(
        update={"source": config.source.model_copy(update={"uri": str(root / kind)})}
    )
    since = AS_OF - pd.Timedelta(days=lookback_days(model, rules))
    whole = Scorer.unregistered(model, rules, config).score(
        load_crm(config, activities_since=since, activities_until=AS_OF), AS_OF
    )
    # Small chunks, so staging streams the tables in many pieces as it would a huge file.
    monkeypatch.setattr(partitions, "CHUNK_ROWS", 5_000)
    parts, results, (scores, rows, crm) = _in_partitions(
        config, rules, model, since, 5, tmp_path / "staged"
    )
    assert sorted(r.index for r in results) == list(range(5))
    assert all(len(r.scores) > 0 for r in results)
    pd.testing.assert_frame_equal(
        _by_lead(scores), _by_lead(whole), check_dtype=False, rtol=1e-12, atol=0
    )
    # Every lead's activities went to its own partition and nowhere else.
    seen = set()
    for part in parts:
        acts = pq.read_table(Path(part.folder) / f"activities.{kind}").to_pandas()
        ids = set(acts["lead_id"].astype(str))
        assert not ids & seen
        seen |= ids
        assert set(partitions.partition_of(acts["lead_id"], 5)) <= {part.index}
    # Monitoring gets every partition's outcomes and a row sample of the scored leads.
    assert len(crm.outcomes) == len(load_crm(config).outcomes)
    assert len(rows) == len(scores)


def test_a_bad_row_names_its_partition_and_staged_file(trained, tmp_path) -> None:
    root, config, rules, model = trained
    bad = _with_blank_types(root / "parquet", tmp_path / "bad", 1)
    config = config.model_copy(
        update={"source": config.source.model_copy(update={"uri": str(bad)})}
    )
    with pytest.raises(DataError) as caught:
        _in_partitions(config, rules, model, None, 3, tmp_path / "staged")
    problem = str(caught.value.problem)
    assert "lead partition" in problem and "of 3" in problem
    assert "empty activity type" in problem and str(tmp_path / "staged") in problem


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, prefect_home: str) -> Path:
    """A project on a Parquet folder with a champion trained through the command."""
    root = tmp_path_factory.mktemp("dask")
    tables = generate_crm(3000, seed=5, end=str(AS_OF.date())).tables()
    write_tables({k: tables[k] for k in ("leads", "activities", "outcomes")}, str(root / "crm"))
    (root / "leadscore.yaml").write_text(
        yaml.safe_dump(
            {
                "source": {"uri": "crm"},
                "rules": str(DEFAULT_RULES),
                "mlflow": {"tracking_uri": "sqlite:///mlflow.db"},
                "publish": {"uri": "sqlite:///scores.db"},
                "report": {"bootstrap_samples": 100},
            }
        )
    )
    os.environ["PREFECT_HOME"] = prefect_home
    trained = invoke_cli(["train", "--config", "leadscore.yaml", "--json"], root)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return root


def _score(project: Path, scale: dict, publish: str, env: dict[str, str] | None) -> pd.DataFrame:
    """Score through the real process with `env`, else through the command in-process."""
    config = yaml.safe_load((project / "leadscore.yaml").read_text())
    config["scale"] = scale
    config["publish"]["uri"] = f"sqlite:///{publish}"
    path = project / f"{publish}.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["score", "--config", path.name, "--as-of", str(AS_OF.date()), "--json"]
    out = run_cli(args, env, project) if env is not None else invoke_cli(args, project)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["rows"]["published"] == summary["rows"]["scored"] > 0
    engine = sa.create_engine(f"sqlite:///{project / publish}")
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(sa.text("SELECT * FROM lead_scores"), conn)
    finally:
        engine.dispose()
    assert not (project / ".leadscore-partitions" / f"as-of-{AS_OF.date()}").exists()
    return frame.drop(columns=["scored_at"])


@pytest.mark.long  # a Dask LocalCluster: CI's long step
def test_dask_local_cluster_publishes_the_single_machine_scores(project, cli_env) -> None:
    """The real process starts a LocalCluster (worker processes): the same scores as the
    whole source and as partitions scored one after the other."""
    whole = _score(project, {}, "whole.db", None)
    env = {**cli_env, "DASK_LOGGING__DISTRIBUTED": "warning"}
    on_dask = _score(project, {"partitions": 3, "dask": "local"}, "dask.db", env)
    local = _score(project, {"partitions": 3}, "local.db", None)
    assert len(whole) > 100
    for other in (on_dask, local):
        pd.testing.assert_frame_equal(
            _by_lead(other), _by_lead(whole), check_dtype=False, rtol=1e-12, atol=0
        )


def test_quarantine_mode_sets_bad_rows_aside_per_partition(trained, tmp_path) -> None:
    root, config, rules, model = trained
    bad = _with_blank_types(root / "parquet", tmp_path / "bad", 3)
    config = config.model_copy(
        update={
            "source": config.source.model_copy(update={"uri": str(bad)}),
            "validation": config.validation.model_copy(
                update={"quarantine": str(tmp_path / "bad_rows.csv")}
            ),
        }
    )
    _, _, (scores, _, _) = _in_partitions(config, rules, model, None, 3, tmp_path / "st")
    set_aside = sorted(tmp_path.glob("bad_rows.part-*.activities.csv"))
    assert set_aside, list(tmp_path.iterdir())
    assert sum(len(pd.read_csv(f)) for f in set_aside) == 3
    assert len(scores) > 0


def test_monitoring_gets_a_bounded_sample_from_every_partition(trained, tmp_path) -> None:
    _, config, rules, model = trained
    config = _with(config, monitoring_rows=1000)
    _, results, (scores, rows, _) = _in_partitions(config, rules, model, None, 4, tmp_path / "s")
    assert len(scores) > 1000  # more open leads than the sample
    assert 0 < len(rows) <= 1000
    assert all(0 < len(r.rows) <= 250 for r in results)


def test_a_csv_source_is_refused_with_the_conversion(trained, tmp_path) -> None:
    root, config, _, _ = trained
    config = _with(
        config.model_copy(
            update={"source": config.source.model_copy(update={"uri": str(root / "csv")})}
        ),
        partitions=3,
    )
    with pytest.raises(DataError, match="need Parquet") as caught:
        partitions.stage(config, None, AS_OF, tmp_path / "staged")
    assert "COPY" in caught.value.fix
    assert not (tmp_path / "staged").exists()


def test_more_partitions_than_leads_score_like_the_whole_source(trained, tmp_path) -> None:
    root, config, rules, model = trained
    small = tmp_path / "small"
    small.mkdir()
    leads = pd.read_parquet(root / "parquet" / "leads.parquet")
    for table in ("leads", "activities", "outcomes"):
        frame = pd.read_parquet(root / "parquet" / f"{table}.parquet")
        frame[frame["lead_id"].isin(leads["lead_id"].tail(40))].to_parquet(
            small / f"{table}.parquet"
        )
    config = config.model_copy(
        update={"source": config.source.model_copy(update={"uri": str(small)})}
    )
    whole = Scorer.unregistered(model, rules, config).score(load_crm(config), AS_OF)
    parts, _, (scores, _, _) = _in_partitions(config, rules, model, None, 64, tmp_path / "s")
    assert sum(p.leads == 0 for p in parts) >= 64 - 40  # empty ones are skipped, not errors
    assert sum(p.leads for p in parts) == 40 and len(whole) > 0
    pd.testing.assert_frame_equal(
        _by_lead(scores), _by_lead(whole), check_dtype=False, rtol=1e-12, atol=0
    )
