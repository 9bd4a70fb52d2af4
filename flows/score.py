"""Scoring flow: champion model + rules on every open lead → published scores."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pandas as pd
from prefect import flow, unmapped
from prefect.futures import as_completed

from leadscore import interrupts
from leadscore.config import ProjectConfig
from leadscore.data.rules import RuleSet
from leadscore.io import locking
from leadscore.io.sources import CRMData
from leadscore.io.uris import redact_uri
from leadscore.lifecycle import registry, runs
from leadscore.progress import reporter
from leadscore.scoring import partitions, pipeline

try:  # imported as the `leadscore_flows` package
    from leadscore_flows import tasks
except ImportError:  # loaded by path as a Prefect entrypoint (flows/score.py:score_flow)
    import tasks  # type: ignore[no-redef]


@flow(name="score", log_prints=True)
def score_flow(config_path: str | None = None, as_of: str | None = None) -> dict[str, Any]:
    """Score open leads as of `as_of` (default: today, UTC) and publish them atomically."""
    config = tasks.read_config(config_path)
    try:
        with tasks.job_lock(config, "score"):
            return _score(config, as_of)
    except locking.RunLockedError as exc:
        return tasks.skipped("score", exc)


def _score(config: ProjectConfig, as_of: str | None) -> dict[str, Any]:
    as_of_ts = pipeline.parse_as_of(as_of)
    rules = tasks.read_rules(config)
    champion = tasks.load_champion(config)
    # Only the activities the model and the rules can see are read.
    since = as_of_ts - pd.Timedelta(days=pipeline.lookback_days(champion.model, rules))
    partitioned = config.scale.partitions > 1 or config.scale.dask is not None
    if partitioned:
        scores, rows, crm = _score_in_partitions(config, champion, rules, since, as_of_ts)
    else:
        crm = tasks.load_source(config, since, as_of_ts)
        scores, rows = tasks.score_open_leads(crm, champion, rules, config, as_of_ts)
    scored_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    frame = runs.published_frame(scores, champion.entry, scored_at)
    published = tasks.publish_scores(frame, config)
    if partitioned:  # kept after a failure, for the rows its error names
        shutil.rmtree(partitions.staging_folder(config, as_of_ts), ignore_errors=True)
    metrics = registry.run_metrics(champion.entry.run_id)
    summary = runs.scoring_summary(scores, champion.entry, config, as_of_ts, published, metrics)
    # After publishing: a failed check fails the run but never takes the scores back.
    checks = tasks.monitor(scores, rows, champion, crm, config, as_of_ts)
    with interrupts.critical("recording the monitoring checks"):
        run_id = tasks.record_monitoring(checks, champion.entry, config, as_of_ts)
    summary["monitoring"] = runs.monitoring_summary(checks, run_id)
    runs.raise_if_monitoring_failed(checks, summary)
    return summary


def _score_in_partitions(
    config: ProjectConfig,
    champion: registry.Champion,
    rules: RuleSet,
    since: pd.Timestamp,
    as_of: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame, CRMData]:
    """Stage the source by lead, score each partition, rank all leads together."""
    parts = tasks.stage_partitions(config, since, as_of)
    if config.scale.dask is not None:
        runner = dask_task_runner(config.scale.dask, len(parts))
        results = score_partitions_flow.with_options(task_runner=runner)(
            parts, config, champion, rules, since, as_of
        )
    else:  # one at a time: memory holds one partition
        report = reporter()
        results = []
        for n, part in enumerate(parts):
            report("scoring partitions", n, len(parts))
            results.append(tasks.score_partition(part, config, champion, rules, since, as_of))
        report("scoring partitions", len(parts), len(parts))
    return partitions.combine(
        results, config, as_of, redact_uri(config.source_uri), rules, champion.model
    )


@flow(name="score-partitions", log_prints=True)
def score_partitions_flow(
    parts: list[partitions.Partition],
    config: ProjectConfig,
    champion: registry.Champion,
    rules: RuleSet,
    since: pd.Timestamp,
    as_of: pd.Timestamp,
) -> list[partitions.PartitionResult]:
    """The partitions as concurrent tasks on the flow's task runner (Dask)."""
    futures = tasks.score_partition.map(
        parts,
        unmapped(config),
        unmapped(champion),
        unmapped(rules),
        unmapped(since),
        unmapped(as_of),
    )
    report = reporter()
    report("scoring partitions", 0, len(futures))
    for done, _ in enumerate(as_completed(list(futures)), start=1):
        report("scoring partitions", done, len(futures))
    return [future.result() for future in futures]


def dask_task_runner(address: str, partitions_count: int):
    """A prefect-dask runner on the cluster at `address`, or a LocalCluster for "local"."""
    from prefect_dask import DaskTaskRunner

    if address == "local":
        workers = max(1, min(partitions_count, os.cpu_count() or 1))
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True}
        )
    return DaskTaskRunner(address=address)


if __name__ == "__main__":
    score_flow()
