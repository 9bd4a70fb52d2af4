"""Training flow: source → point-in-time examples → calibrated model → MLflow registry."""

from __future__ import annotations

from typing import Any

from prefect import flow

from leadscore import runs

try:  # imported as the `leadscore_flows` package
    from leadscore_flows import tasks
except ImportError:  # loaded by path as a Prefect entrypoint (flows/train.py:train_flow)
    import tasks  # type: ignore[no-redef]


@flow(name="train", log_prints=True)
def train_flow(config_path: str | None = None) -> dict[str, Any]:
    """Train, evaluate against the rules on the newest cohort, register; returns the summary."""
    config = tasks.read_config(config_path)
    rules = tasks.read_rules(config)
    crm = tasks.load_source(config)
    data = tasks.build_training_set(crm, config, rules)
    result = tasks.fit_model(data, config)
    truth = tasks.load_truth(config)
    oracle = runs.oracle_auc(truth, result, config.horizon_days)
    tasks.prepare_tracking(config)
    registered = tasks.register_model(result, config, oracle)
    return runs.training_summary(result, registered, config, oracle)


if __name__ == "__main__":
    train_flow()
