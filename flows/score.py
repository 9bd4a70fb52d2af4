"""Scoring flow: champion model + rules on every open lead → published scores."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow

from leadscore import locking, pipeline, registry, runs
from leadscore.config import ProjectConfig

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
    crm = tasks.load_source(config, since, as_of_ts)
    scores, rows = tasks.score_open_leads(crm, champion, rules, config, as_of_ts)
    scored_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    frame = runs.published_frame(scores, champion.entry, scored_at)
    published = tasks.publish_scores(frame, config)
    metrics = registry.run_metrics(champion.entry.run_id)
    summary = runs.scoring_summary(scores, champion.entry, config, as_of_ts, published, metrics)
    # After publishing: a failed check fails the run but never takes the scores back.
    checks = tasks.monitor(scores, rows, champion, crm, config, as_of_ts)
    run_id = tasks.record_monitoring(checks, champion.entry, config, as_of_ts)
    summary["monitoring"] = runs.monitoring_summary(checks, run_id)
    runs.raise_if_monitoring_failed(checks, summary)
    return summary


if __name__ == "__main__":
    score_flow()
