"""Prefect tasks shared by the flows: one I/O or compute step each, retries on I/O only."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from leadscore import pipeline, publish, registry, runs
from leadscore.config import ProjectConfig, load_config
from leadscore.errors import LeadscoreError
from leadscore.progress import reporter
from leadscore.rules import RuleSet, load_rules
from leadscore.sources import CRMData, load_crm, load_ground_truth

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
) -> CRMData:
    """Read leads, activities and outcomes from the configured source."""
    report = reporter()
    report("loading data", 0, 1)
    crm = load_crm(config, activities_since=activities_since, activities_until=activities_until)
    report("loading data", 1, 1)
    return crm


@io_task
def load_truth(config: ProjectConfig):
    return load_ground_truth(config)


@compute_task
def build_training_set(crm: CRMData, config: ProjectConfig, rules: RuleSet) -> pipeline.TrainingSet:
    return pipeline.build_training_set(crm, config, rules, progress=reporter())


@compute_task
def fit_model(data: pipeline.TrainingSet, config: ProjectConfig) -> pipeline.TrainingResult:
    return pipeline.train(data, config, progress=reporter())


@io_task
def prepare_tracking(config: ProjectConfig) -> str:
    """Reach the tracking store and ensure the experiment (idempotent, so retried)."""
    return registry.configure(
        config.tracking_uri, config.mlflow.experiment, config.artifact_location
    )


@compute_task
def register_model(result: pipeline.TrainingResult, config: ProjectConfig, oracle: float | None):
    """Log the run and register the model; not retried, so a retry never duplicates a version."""
    report = reporter()
    report("logging to MLflow", 0, 1)
    entry = runs.log_and_register(result, config, oracle)
    report("logging to MLflow", 1, 1)
    return entry


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
) -> pd.DataFrame:
    report = reporter()
    report("scoring", 0, 1)
    scores = pipeline.score(crm, champion.model, champion.predict, rules, config, as_of)
    report("scoring", 1, 1)
    return scores


@io_task
def publish_scores(frame: pd.DataFrame, config: ProjectConfig) -> int:
    report = reporter()
    report("publishing", 0, 1)
    n = publish.publish_scores(frame, config.publish_uri, config.publish.table)
    report("publishing", 1, 1)
    return n
