"""Model quality on generated data: model vs oracle vs rules, across seeds.

    .venv/bin/python benchmarks/quality.py --leads 50000 --seeds 1 2 3
    .venv/bin/python benchmarks/quality.py --leads 50000 --seeds 1 --scenario drift

Uses the default config and rule file, the same code as `leadscore train`, in-process. The
model's figures are the newest backtest fold's (the recipe fitted one step earlier). In the
same run, on the same test rows, the recipe before the backtest ("stale": one booster fitted
on the train cohort only, stopped on validation, calibrated on calibration) is measured too,
with its fitting time.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from sklearn.metrics import roc_auc_score

from leadscore.config import config_from_dict
from leadscore.data.rules import load_rules
from leadscore.io.sources import CRMData
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.modeling.metrics import expected_calibration_error
from leadscore.scoring import training
from leadscore.synthetic import generate_crm, true_conversion_probability

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--end", default="2026-06-30")
    parser.add_argument("--scenario", default="stationary", choices=["stationary", "drift"])
    args = parser.parse_args()
    config = config_from_dict({}, environ={})
    rules = load_rules(ROOT / "models" / "mql_rules.yaml")
    print(f"scenario {args.scenario}, {args.leads:,} leads")
    print(
        "| seed | test rows | conversions | model AUC | oracle AUC | gap | model ECE "
        "| stale AUC | stale ECE | rules AUC | pooled model AUC | folds | chosen | train s "
        "| stale fit s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| --- | ---: | ---: |")  # fmt: skip
    for seed in args.seeds:
        crm = generate_crm(args.leads, seed=seed, end=args.end, scenario=args.scenario)
        data = CRMData(crm.leads, crm.activities, crm.outcomes.dropna(), "generated")
        training_set = training.build_training_set(data, config, rules)
        start = time.perf_counter()
        result = training.train(training_set, config)
        train_s = time.perf_counter() - start
        y = training_set.labels("test")
        truth = true_conversion_probability(
            crm.truth_leads, crm.truth_shocks, training_set.snapshots["test"], config.horizon_days
        )
        oracle = roc_auc_score(y, truth)
        stale, stale_s = _stale(result, training_set, config)
        p_stale = stale.predict_proba(training_set.rows["test"])
        m, r = result.metrics["model"], result.metrics["rules"]
        pooled = result.backtest.pooled[result.chosen_column]
        chosen = result.backtest.names[result.chosen_column]
        print(
            f"| {seed} | {int(m['n']):,} | {int(m['conversions']):,} | {m['roc_auc']:.4f} "
            f"| {oracle:.4f} | {oracle - m['roc_auc']:.4f} | {m['ece']:.4f} "
            f"| {roc_auc_score(y, p_stale):.4f} | {expected_calibration_error(y, p_stale):.4f} "
            f"| {r['roc_auc']:.4f} | {pooled['roc_auc']:.4f} | {len(result.backtest.folds)} "
            f"| {chosen} | {train_s:.0f} | {stale_s:.0f} |",
            flush=True,
        )


def _stale(
    result: training.TrainingResult, data: training.TrainingSet, config
) -> tuple[LeadScoringModel, float]:
    """The recipe before the backtest: train cohort only, one booster, on the same features."""
    builder = replace(result.fold_models[1].features, categories_={}, feature_names_=[])
    start = time.perf_counter()
    model = LeadScoringModel(builder, config.model).fit(
        data.rows["train"],
        data.labels("train"),
        data.rows["validation"],
        data.labels("validation"),
        data.rows["calibration"],
        data.labels("calibration"),
        data.snapshots["calibration"]["lead_id"].to_numpy(),
    )
    return model, time.perf_counter() - start


if __name__ == "__main__":
    main()
