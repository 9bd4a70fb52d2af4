"""`leadscore tune`: a search of the LightGBM parameters on the backtest's own folds.

Each trial is the project's recipe with other parameters, fitted and judged on exactly the
folds `train` uses (the same examples, leakage guard per fold, cross-fit and calibration),
and scored by the pooled `backtest.metric`. The first trial is the project's current
parameters, so the search can only report a winner that beat them on these folds; a
winner must beat them by more than `backtest.tie_tolerance`. The sampler is Optuna's TPE,
seeded with `model.seed`.

The winner was chosen on these folds, so its figure is optimistic: the next `train`
backtests it against the other candidates like any recipe.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.errors import ConfigError
from leadscore.io.sources import CRMData
from leadscore.progress import reporter
from leadscore.scoring.backtest import run_backtest
from leadscore.scoring.training import TrainingSet, backtest_folds, fold_builders

#: The parameters searched, with their ranges: (low, high, log scale, integer).
SPACE: dict[str, tuple[float, float, bool, bool]] = {
    "learning_rate": (0.01, 0.2, True, False),
    "num_leaves": (3, 63, True, True),
    "min_child_samples": (10, 1000, True, True),
    "reg_lambda": (1e-3, 100.0, True, False),
    "colsample_bytree": (0.3, 1.0, False, False),
    "subsample": (0.5, 1.0, False, False),
}


@dataclass
class Trial:
    """One searched parameter set and its pooled backtest figures."""

    number: int
    params: dict[str, Any]
    metrics: dict[str, float]
    seconds: float


@dataclass
class Search:
    """Every trial (the first: the current parameters), the winner and what chose it."""

    trials: list[Trial]
    metric: str
    folds: int
    budget_seconds: float
    seconds: float

    @property
    def current(self) -> Trial:
        return self.trials[0]

    def _loss(self, trial: Trial) -> float:
        value = trial.metrics[self.metric]
        return value if self.metric == "log_loss" else -value

    @property
    def best(self) -> Trial:
        return min(self.trials, key=self._loss)

    def improvement(self) -> float:
        """How much the best beats the current parameters, in the metric's units (>= 0)."""
        return self._loss(self.current) - self._loss(self.best)

    def table(self) -> pd.DataFrame:
        """One row per trial: number, parameters, pooled figures, seconds."""
        return pd.DataFrame.from_records(
            [
                {"trial": t.number, **t.params, **t.metrics, "seconds": round(t.seconds, 1)}
                for t in self.trials
            ]
        )


def parse_budget(text: str) -> float:
    """Seconds of a budget such as 90s, 10m, 1.5h (a bare number is minutes)."""
    value = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    scale = units.get(value[-1:])
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 60)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"--budget {text!r} is not a duration", "give e.g. 90s, 10m or 1h (a number: minutes)"
        )
    return seconds


def _suggest(trial) -> dict[str, Any]:
    out = {}
    for name, (low, high, log, integer) in SPACE.items():
        if integer:
            out[name] = trial.suggest_int(name, int(low), int(high), log=log)
        else:
            out[name] = trial.suggest_float(name, low, high, log=log)
    return out


def search(
    data: TrainingSet,
    config: ProjectConfig,
    budget_seconds: float,
    trials: int | None = None,
    crm: CRMData | None = None,
) -> Search:
    """Search the LightGBM parameters on the backtest folds for `budget_seconds` (no new
    trial starts after it; one that runs keeps running) or `trials` trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    progress = reporter()
    _, make_builder = fold_builders(data, config, crm)
    folds, _, _ = backtest_folds(data, config)
    metric = config.backtest.metric
    # Intervals are not needed to rank trials; the parameters not searched stay as they are.
    quiet = config.model_copy(
        update={"backtest": config.backtest.model_copy(update={"interval_samples": 0})}
    )
    done: list[Trial] = []
    start = time.perf_counter()

    def objective(trial) -> float:
        began = time.perf_counter()
        suggested = _suggest(trial)
        # The first trial is the current parameters exactly, searched or not.
        params = (
            dict(config.model.params) if trial.number == 0 else {**config.model.params, **suggested}
        )
        model = config.model.model_copy(
            update={"params": params, "learner": "lightgbm", "monotone": {}}
        )
        backtest, _ = run_backtest(
            data.examples, folds, make_builder, quiet.model_copy(update={"model": model}),
            candidates=("project",),
        )  # fmt: skip
        pooled = backtest.pooled["model"]
        figures = {k: float(pooled[k]) for k in ("log_loss", "roc_auc", "pr_auc", "brier", "ece")}
        done.append(Trial(trial.number, params, figures, time.perf_counter() - began))
        elapsed = time.perf_counter() - start
        progress("tuning", min(int(elapsed), int(budget_seconds)), int(budget_seconds))
        return figures[metric]

    sampler = optuna.samplers.TPESampler(seed=config.model.seed)
    direction = "minimize" if metric == "log_loss" else "maximize"
    study = optuna.create_study(direction=direction, sampler=sampler)
    current = {k: config.model.params[k] for k in SPACE if k in config.model.params}
    study.enqueue_trial(current, skip_if_exists=True)
    progress("tuning", 0, int(budget_seconds))
    with warnings.catch_warnings():
        # The current parameters may lie outside the searched ranges: trial 0 uses them as
        # they are, which is what Optuna warns about.
        warnings.filterwarnings("ignore", message="Fixed parameter", category=UserWarning)
        study.optimize(objective, n_trials=trials, timeout=budget_seconds)
    progress("tuning", int(budget_seconds), int(budget_seconds))
    return Search(done, metric, len(folds), budget_seconds, time.perf_counter() - start)
