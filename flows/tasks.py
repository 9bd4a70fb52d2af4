"""Prefect tasks shared by the flows: one I/O or compute step each, retries on I/O only."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from leadscore.config import ProjectConfig, load_config
from leadscore.data.rules import RuleSet, load_rules
from leadscore.errors import LeadscoreError, NoOpenLeadsError
from leadscore.evaluation import evidence as evidence_module
from leadscore.evaluation import report as report_module
from leadscore.io import locking, publish
from leadscore.io.sources import CRMData, load_crm, load_ground_truth
from leadscore.lifecycle import promotion, registry, runs
from leadscore.progress import reporter
from leadscore.scoring import partitions, pipeline

IO_RETRIES = 3
IO_RETRY_DELAYS = [2, 5, 15]


def retry_unless_user_error(task, task_run, state) -> bool:
    """Retry transient failures (network, locks), never a user's bad input or config."""
    try:
        state.result()
    except LeadscoreError as exc:
        return exc.transient
    except Exception:
        return True
    return False


io_task = task(
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_unless_user_error,
    cache_policy=NO_CACHE,
)
compute_task = task(cache_policy=NO_CACHE)


@compute_task
def read_config(config_path: str | None) -> ProjectConfig:
    """Load and validate the project file (once, at the edge)."""
    return load_config(config_path)


@compute_task
def read_rules(config: ProjectConfig) -> RuleSet:
    return load_rules(config.rules_path)


@io_task
def load_source(
    config: ProjectConfig,
    activities_since: pd.Timestamp | None = None,
    activities_until: pd.Timestamp | None = None,
    sample: int | None = None,
) -> CRMData:
    """Read leads, activities and outcomes from the configured source (or a lead sample)."""
    report = reporter()
    report("loading data", 0, 1)
    crm = load_crm(
        config,
        activities_since=activities_since,
        activities_until=activities_until,
        sample=sample,
    )
    report("loading data", 1, 1)
    logger = get_run_logger()
    if crm.sampled_from is not None:
        logger.info(
            "training on a sample of %s of the source's %s leads (snapshots.sample_leads)",
            f"{len(crm.leads):,}",
            f"{crm.sampled_from:,}",
        )
    for line in crm.checks.summary():
        logger.warning("%s", line)
    return crm


@io_task
def load_truth(config: ProjectConfig):
    return load_ground_truth(config)


@compute_task
def build_training_set(crm: CRMData, config: ProjectConfig, rules: RuleSet) -> pipeline.TrainingSet:
    return pipeline.build_training_set(crm, config, rules, progress=reporter())


@compute_task
def fit_model(
    data: pipeline.TrainingSet, config: ProjectConfig, crm: CRMData | None = None
) -> pipeline.TrainingResult:
    return pipeline.train(data, config, progress=reporter(), crm=crm)


@io_task
def prepare_tracking(config: ProjectConfig) -> str:
    """Reach the tracking store and ensure the experiment (idempotent, so retried)."""
    return registry.configure(
        config.tracking_uri, config.mlflow.experiment, config.artifact_location
    )


@compute_task
def build_evidence(
    test: pd.DataFrame, fit: pd.DataFrame, rules: RuleSet, config: ProjectConfig
) -> evidence_module.Evidence:
    """Comparison with intervals, rule diagnostics and suggested rules, from the cohorts."""
    report = reporter()
    report("comparing", 0, 1)
    out = evidence_module.build_evidence(test, fit, rules, config, seed=config.model.seed)
    report("comparing", 1, 1)
    return out


@compute_task
def preview_open_leads(
    crm: CRMData, result: pipeline.TrainingResult, rules: RuleSet, config: ProjectConfig
) -> pd.DataFrame:
    """Open leads at the end of the data, scored by the new model, for its report."""
    as_of = crm.data_end.normalize()
    model = result.model
    try:
        scores = pipeline.score(crm, model, model.predict_proba, rules, config, as_of, reporter())
    except NoOpenLeadsError:
        # No open leads at the end of the data (e.g. an export of closed leads only): the
        # report then has no open-lead lists, which is no reason to fail the training.
        return pd.DataFrame(columns=list(publish.SCORE_COLUMNS))
    return scores.rename(columns={"as_of": "as_of_date"})


@compute_task
def register_model(
    result: pipeline.TrainingResult,
    evidence: evidence_module.Evidence,
    files: dict[str, bytes],
    config: ProjectConfig,
    oracle: float | None,
):
    """Log the run and register the model; not retried, so a retry never duplicates a version."""
    report = reporter()
    report("logging to MLflow", 0, 1)
    entry = runs.log_and_register(result, evidence, files, config, oracle)
    report("logging to MLflow", 1, 1)
    return entry


@compute_task
def judge_challenger(
    result: pipeline.TrainingResult,
    crm: CRMData,
    config: ProjectConfig,
    challenger: registry.RegisteredModel,
) -> tuple[promotion.Verdict, registry.RegisteredModel | None]:
    """The gate: challenger vs champion on this training's newest labelled cohort."""
    report = reporter()
    report("promotion gate", 0, 1)
    champion = registry.champion_version(config.mlflow.registered_model)
    verdict = runs.judge_challenger(result, crm, config, champion)
    report("promotion gate", 1, 1)
    get_run_logger().info("promotion gate: %s (%s)", verdict.action, verdict.reason)
    return verdict, champion


@io_task
def apply_verdict(
    verdict: promotion.Verdict,
    challenger: registry.RegisteredModel,
    champion: registry.RegisteredModel | None,
    config: ProjectConfig,
    decided_at: pd.Timestamp,
) -> None:
    """Move the champion alias if the gate says so; tag both; record the decision (idempotent)."""
    runs.apply_verdict(verdict, challenger, champion, config, decided_at)


@compute_task
def render_report(inputs: report_module.ReportInputs, config: ProjectConfig) -> str:
    progress = reporter()
    progress("writing report", 0, 1)
    html = report_module.render_report(inputs, config)
    progress("writing report", 1, 1)
    return html


@io_task
def log_report(run_id: str, html: str) -> None:
    """Attach the report to the training run (idempotent: the same path is overwritten)."""
    registry.log_run_text(run_id, html, "report/report.html")


@io_task
def champion_entry(config: ProjectConfig) -> registry.RegisteredModel:
    """The champion's registry entry (the model itself is not loaded)."""
    registry.configure(config.tracking_uri, config.mlflow.experiment, config.artifact_location)
    entry = registry.champion_version(config.mlflow.registered_model)
    if entry is None:
        registry.load_champion(config.mlflow.registered_model)  # raises the clear error
    return entry


@io_task
def download_evaluation(entry: registry.RegisteredModel, destination: str) -> dict:
    """The champion run's evaluation frames and rule file."""
    folder = registry.download_run_artifacts(entry.run_id, "evaluation", destination)
    return {
        "test": pd.read_parquet(folder / "test_cohort.parquet"),
        "fit": pd.read_parquet(folder / "fit_cohorts.parquet"),
        "open_leads": pd.read_parquet(folder / "open_leads.parquet"),
        "rules": load_rules(folder / "mql_rules.yaml"),
        # Runs before the leakage guard existed have no checks file.
        "checks": (
            json.loads((folder / "checks.json").read_text(encoding="utf-8"))
            if (folder / "checks.json").is_file()
            else None
        ),
    }


@io_task
def read_published(config: ProjectConfig) -> pd.DataFrame:
    """The latest published scores (empty when nothing was published yet)."""
    return publish.read_scores(config.publish_uri, config.publish.table, latest=True)


@io_task
def write_report(html: str, path: str) -> str:
    return str(report_module.write_report(html, Path(path)))


@io_task
def load_champion(config: ProjectConfig) -> registry.Champion:
    registry.configure(config.tracking_uri, config.mlflow.experiment, config.artifact_location)
    return registry.load_champion(config.mlflow.registered_model)


@compute_task
def score_open_leads(
    crm: CRMData,
    champion: registry.Champion,
    rules: RuleSet,
    config: ProjectConfig,
    as_of: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores of every open lead, and the rows scored (for monitoring)."""
    report = reporter()
    report("scoring", 0, 1)
    out = pipeline.score_with_rows(
        crm, champion.model, champion.predict, rules, config, as_of, progress=report
    )
    report("scoring", 1, 1)
    return out


@io_task
def stage_partitions(
    config: ProjectConfig, since: pd.Timestamp, as_of: pd.Timestamp
) -> list[partitions.Partition]:
    """Split the source folder by lead into `scale.partitions` folders (read once)."""
    folder = partitions.staging_folder(config, as_of)
    return partitions.stage(config, since, as_of, folder, progress=reporter())


@compute_task
def score_partition(
    part: partitions.Partition,
    config: ProjectConfig,
    champion: registry.Champion,
    rules: RuleSet,
    since: pd.Timestamp,
    as_of: pd.Timestamp,
) -> partitions.PartitionResult:
    """Read, check and score one lead partition (on this machine or a Dask worker)."""
    result = partitions.score_partition(
        part, config, champion.model, champion.predict, rules, since, as_of
    )
    logger = get_run_logger()
    for line in result.warnings:
        logger.warning("partition %d: %s", part.index + 1, line)
    logger.info(
        "partition %d of %d: %s open leads scored", part.index + 1, part.count, len(result.scores)
    )
    return result


@compute_task
def monitor(
    scores: pd.DataFrame,
    rows: pd.DataFrame,
    champion: registry.Champion,
    crm: CRMData,
    config: ProjectConfig,
    as_of: pd.Timestamp,
):
    """Row counts, score distribution, input drift and realised quality of this run."""
    report = reporter()
    report("monitoring", 0, 1)
    result = runs.monitor_scoring(scores, rows, champion.model, crm, config, as_of)
    report("monitoring", 1, 1)
    logger = get_run_logger()
    for message in result.messages():
        logger.warning("%s", message)
    return result


@io_task
def record_monitoring(result, entry: registry.RegisteredModel, config: ProjectConfig, as_of):
    """The checks to their table and an MLflow run (idempotent per as-of, so retried)."""
    return runs.record_monitoring(result, entry, config, as_of)


def job_lock(config: ProjectConfig, job: str):
    """One `score` per publish table and one `train` per registered model at a time."""
    target = config.publish.table if job == "score" else config.mlflow.registered_model
    return locking.run_lock(
        config.publish_uri, f"{job}-{target}", config.publish.lock_wait_seconds, config.base_dir
    )


def skipped(job: str, exc: locking.RunLockedError) -> dict:
    """The summary of a run that found another one running."""
    get_run_logger().warning("%s skipped: %s", job, exc.problem)
    return {"command": job, "skipped": exc.problem, "fix": exc.fix}


def score_tables(config: ProjectConfig) -> publish.ScoreTables:
    p = config.publish
    return publish.ScoreTables(latest=p.table, history=p.history_table, runs=p.runs_table)


@io_task
def publish_scores(frame: pd.DataFrame, config: ProjectConfig) -> int:
    report = reporter()
    report("publishing", 0, 1)
    n = publish.publish_scores(frame, config.publish_uri, score_tables(config))
    report("publishing", 1, 1)
    return n
