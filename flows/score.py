"""Scoring flow: champion model + rules on every open lead → published scores."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
from prefect import flow, unmapped
from prefect.futures import as_completed

from leadscore import interrupts
from leadscore.config import ProjectConfig
from leadscore.errors import ConfigError
from leadscore.io import locking
from leadscore.io.uris import redact_uri
from leadscore.lifecycle import monitoring, run_page, summaries
from leadscore.progress import reporter
from leadscore.scoring import inputs, partitions
from leadscore.scoring.scorer import Scorer

try:  # imported as the `leadscore_flows` package
    from leadscore_flows import tasks
except ImportError:  # loaded by path as a Prefect entrypoint (flows/score.py:score_flow)
    import tasks  # type: ignore[no-redef]


@flow(name="score", log_prints=True)
def score_flow(
    config_path: str | None = None, as_of: str | None = None, rules_only: bool = False
) -> dict[str, Any]:
    """Score open leads as of `as_of` (default: today, UTC) and publish them atomically.

    By the champion model; by the rule file alone with `rules_only` (or `scoring.rules_only`),
    or while there is no model yet.
    """
    config = tasks.read_config(config_path)
    try:
        with tasks.job_lock(config, "score"):
            return _score(config, inputs.parse_as_of(as_of), rules_only)
    except locking.RunLockedError as exc:
        return tasks.skipped("score", exc)


def _scorer(config: ProjectConfig, rules_only: bool):
    """The rule file (and its version), the champion (None: the rules alone) and the Scorer."""
    rules, rule_file = tasks.read_rule_file(config)
    champion = tasks.load_scoring_champion(config, rules_only)
    if champion is None:
        return rule_file, None, Scorer.rules_only(rules, config)
    return rule_file, champion, champion.scorer(rules, config)


def _score(config: ProjectConfig, as_of: pd.Timestamp, rules_only: bool = False) -> dict[str, Any]:
    rule_file, champion, scorer = _scorer(config, rules_only)
    # Only the activities the model and the rules can see are read.
    since = as_of - pd.Timedelta(days=scorer.lookback_days)
    if partitions.partitioned(config):
        run_all = _on_dask(config, scorer, since, as_of)
        scores, rows, crm = partitions.score_partitions(
            scorer, since, as_of, tasks.score_partition, run_all
        )
    else:
        crm = tasks.load_source(config, since, as_of)
        scores, rows = tasks.score_open_leads(crm, scorer, as_of)
    if champion is None:  # no model: nothing to monitor against its training
        published, staged = tasks.publish_scores(scores, None, config, as_of, rule_file)
        summary = summaries.rules_scoring_summary(scores, config, as_of, published)
        summary["rules_file"] = {"name": rule_file.name, "sha256": rule_file.short}
        _send_alerts(config, staged, summary)
        tasks.describe_run(run_page.scoring_page, summary, config, None)
        return summary
    published, staged = tasks.publish_scores(scores, champion.entry, config, as_of, rule_file)
    metrics = tasks.champion_metrics(config, champion.entry)
    summary = summaries.scoring_summary(scores, champion.entry, config, as_of, published, metrics)
    summary["rules_file"] = {"name": rule_file.name, "sha256": rule_file.short}
    _send_alerts(config, staged, summary)
    # After publishing: a failed check fails the run but never takes the scores back.
    checks = tasks.monitor(scores, rows, champion, crm, config, as_of)
    with interrupts.critical("recording the monitoring checks"):
        run_id = tasks.record_monitoring(checks, champion.entry, config, as_of)
    summary["monitoring"] = summaries.monitoring_summary(checks, run_id)
    tasks.describe_run(run_page.scoring_page, summary, config, run_id, checks.checks)
    monitoring.raise_if_monitoring_failed(checks, summary)
    return summary


@flow(name="backfill", log_prints=True)
def backfill_flow(
    config_path: str | None = None,
    start: str | None = None,
    end: str | None = None,
    every_days: int = 7,
    rules_only: bool = False,
    replace: bool = False,
) -> dict[str, Any]:
    """Score past dates, `start` to `end` (default today) every `every_days` days, as the
    nightly run would have on each: leads, activities and conversions known that day only.
    Dates that already have a published run are refused unless `replace` (what was published
    then, with its rule file, is what the monthly review is there to show).

    Each date is published as a run of its own (rule file version included), for the monthly
    review to read; no alerts (those days are gone) and no monitoring. The champion scores
    only dates whose outcomes it never learned from; earlier dates need `rules_only`.
    """
    config = tasks.read_config(config_path)
    if config.flat:
        raise ConfigError(
            "a flat export has no dates to go back to: it is one snapshot of its leads",
            "score it with `leadscore score`",
        )
    dates = backfill_dates(start, end, every_days)
    try:
        with tasks.job_lock(config, "score"):
            return _backfill(config, dates, rules_only, replace)
    except locking.RunLockedError as exc:
        return tasks.skipped("score", exc)


def backfill_dates(start: str | None, end: str | None, every_days: int) -> list[pd.Timestamp]:
    """The as-of dates of a backfill, oldest first (the end date included when it falls on
    the step)."""
    if start is None:
        raise ConfigError("a backfill needs its first date", "give --from YYYY-MM-DD")
    first, last = inputs.parse_as_of(start), inputs.parse_as_of(end)
    if every_days < 1:
        raise ConfigError(f"--every {every_days} is not a number of days", "e.g. --every 7")
    if first > last:
        raise ConfigError(
            f"--from {first.date()} is after --to {last.date()}", "swap the two dates"
        )
    return list(pd.date_range(first, last, freq=f"{every_days}D"))


def _backfill(
    config: ProjectConfig, dates: list[pd.Timestamp], rules_only: bool, replace: bool = False
) -> dict:
    if not replace:
        published = tasks.read_published_dates(config)
        taken = sorted(set(dates) & published)
        if taken:
            raise ConfigError(
                f"{len(taken)} of the {len(dates)} dates already have a published run "
                f"({taken[0].date()}"
                + (f" to {taken[-1].date()})" if len(taken) > 1 else ")")
                + ": backfilling would replace what was scored then, with today's rule file",
                "choose dates without runs, or add --replace to rescore them",
            )
    rule_file, champion, scorer = _scorer(config, rules_only)
    if champion is not None:
        learned = getattr(champion.model, "trained_through_", None)
        if learned is None:
            raise ConfigError(
                f"the champion ({champion.entry.name} v{champion.entry.version}) does not "
                "record the newest outcome it learned from, so a backfill cannot tell which "
                "past dates it may score honestly",
                "retrain it (`leadscore train`), or backfill with --rules-only",
            )
        known = pd.Timestamp(learned) + pd.Timedelta(days=config.horizon_days)
        if dates[0] < known:
            raise ConfigError(
                f"the champion ({champion.entry.name} v{champion.entry.version}) learned "
                f"from outcomes up to {known.date()}, so its scores of {dates[0].date()} "
                "would show rows it was fitted on as results: the review would be flattered",
                f"backfill from {known.date()} on, or add --rules-only for earlier dates, "
                "or train as of the first date (source.extract_date) before backfilling",
            )
    since = dates[0] - pd.Timedelta(days=scorer.lookback_days)
    crm = tasks.load_source(config, since, dates[-1] + pd.Timedelta(days=1))
    report = reporter()
    published = []
    for i, day in enumerate(dates):
        report("backfilling", i, len(dates))
        scores, _ = tasks.score_open_leads(crm.until(day), scorer, day)
        if scores.empty:
            published.append({"as_of": str(day.date()), "published": 0})
            continue
        rows, _ = tasks.publish_scores(
            scores, None if champion is None else champion.entry, config, day, rule_file,
            with_alerts=False,
        )  # fmt: skip
        published.append({"as_of": str(day.date()), "published": rows,
                          "mql": int(scores["is_mql"].sum())})  # fmt: skip
    report("backfilling", len(dates), len(dates))
    return {
        "command": "backfill",
        "mode": "rules-only" if champion is None else "model",
        "model_name": None if champion is None else champion.entry.name,
        "model_version": None if champion is None else champion.entry.version,
        "rules_file": {"name": rule_file.name, "sha256": rule_file.short},
        "from": str(dates[0].date()),
        "to": str(dates[-1].date()),
        "every_days": int((dates[1] - dates[0]).days) if len(dates) > 1 else None,
        "runs": published,
        "uris": {"publish": redact_uri(config.publish_uri)},
    }


def _send_alerts(config: ProjectConfig, staged: int, summary: dict[str, Any]) -> None:
    """Hot leads reach sales now: the run's alerts (and any still queued) are sent."""
    if not config.alerts.sinks:
        return
    summary["alerts"] = {"queued": staged, **tasks.deliver_alerts(config)}


def _on_dask(
    config: ProjectConfig, scorer: Scorer, since: pd.Timestamp, as_of: pd.Timestamp
) -> partitions.RunPartitions | None:
    """With `scale.dask`, the partitions run as tasks of a subflow on the Dask cluster."""
    if config.scale.dask is None:
        return None

    def run_all(parts: list[partitions.Partition]) -> list[partitions.PartitionResult]:
        runner = dask_task_runner(config.scale.dask, len(parts))
        return score_partitions_flow.with_options(task_runner=runner)(parts, scorer, since, as_of)

    return run_all


@flow(name="score-partitions", log_prints=True)
def score_partitions_flow(
    parts: list[partitions.Partition], scorer: Scorer, since: pd.Timestamp, as_of: pd.Timestamp
) -> list[partitions.PartitionResult]:
    """The partitions as concurrent tasks on the flow's task runner (Dask)."""
    futures = tasks.score_partition.map(parts, unmapped(scorer), unmapped(since), unmapped(as_of))
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
