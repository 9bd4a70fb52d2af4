r"""Serve `nightly-score`, `weekly-train` and `monthly-review` from one process: no work pool,
no worker.

    python flows/serve.py --config /srv/leadscore/leadscore.yaml \
        --score-cron "0 2 * * *" --train-cron "0 3 * * 1" --timezone Europe/Berlin

Options default to the environment variables the `prefect.yaml` deployments use
(LEADSCORE_CONFIG, LEADSCORE_SCORE_CRON, LEADSCORE_TRAIN_CRON, LEADSCORE_TIMEZONE).
Database passwords belong in this process's environment (LEADSCORE_SOURCE_URI,
LEADSCORE_PUBLISH_URI, LEADSCORE_MLFLOW_TRACKING_URI), never on the command line.
The monthly review runs at 06:00 on the 1st (`--review-cron`), of the month that ended.
Ctrl-C stops serving and pauses the schedules.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from leadscore_flows.review import review_flow
from leadscore_flows.score import score_flow
from leadscore_flows.train import train_flow
from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

#: At most one run of each deployment at a time; a run that would overlap is cancelled.
ONE_AT_A_TIME = ConcurrencyLimitConfig(
    limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options, defaulting to the LEADSCORE_* environment variables."""
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        default=env("LEADSCORE_CONFIG"),
        required=not env("LEADSCORE_CONFIG"),
        help="the project file (leadscore.yaml); default $LEADSCORE_CONFIG",
    )
    parser.add_argument(
        "--score-cron",
        default=env("LEADSCORE_SCORE_CRON", "0 2 * * *"),
        help="when to score, as cron (default $LEADSCORE_SCORE_CRON or '0 2 * * *')",
    )
    parser.add_argument(
        "--train-cron",
        default=env("LEADSCORE_TRAIN_CRON", "0 3 * * 1"),
        help="when to retrain, as cron (default $LEADSCORE_TRAIN_CRON or '0 3 * * 1')",
    )
    parser.add_argument(
        "--review-cron",
        default="0 6 1 * *",
        help="when to write the monthly review of the month before, as cron ('0 6 1 * *')",
    )
    parser.add_argument(
        "--timezone",
        default=env("LEADSCORE_TIMEZONE", "UTC"),
        help="IANA time zone of the crons (default $LEADSCORE_TIMEZONE or UTC)",
    )
    return parser.parse_args(argv)


def build_deployments(args: argparse.Namespace) -> list[RunnerDeployment]:
    """The deployments, with the same names and parameters as in prefect.yaml."""
    parameters = {"config_path": str(Path(args.config).expanduser().resolve())}
    return [
        score_flow.to_deployment(
            name="nightly-score",
            schedules=[Cron(args.score_cron, timezone=args.timezone)],
            parameters=parameters,
            concurrency_limit=ONE_AT_A_TIME,
        ),
        train_flow.to_deployment(
            name="weekly-train",
            schedules=[Cron(args.train_cron, timezone=args.timezone)],
            parameters=parameters,
            concurrency_limit=ONE_AT_A_TIME,
        ),
        review_flow.to_deployment(
            name="monthly-review",
            schedules=[Cron(args.review_cron, timezone=args.timezone)],
            parameters={**parameters, "month": "previous"},
            concurrency_limit=ONE_AT_A_TIME,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    """Register the deployments and run their scheduled runs until interrupted."""
    # A process started in the background by a non-interactive shell (`... &`, nohup, many
    # CI runners) inherits SIGINT ignored; Ctrl-C or `kill -INT` must still stop serving
    # and pause the schedules.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    serve(*build_deployments(parse_args(argv)))


if __name__ == "__main__":
    main()
