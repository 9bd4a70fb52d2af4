"""Model quality on generated data: model vs oracle vs rules, across seeds.

    .venv/bin/python benchmarks/quality.py --leads 50000 --seeds 1 2 3

Uses the default config and rule file, the same code as `leadscore train`, in-process.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sklearn.metrics import roc_auc_score

from leadscore.config import config_from_dict
from leadscore.data.rules import load_rules
from leadscore.io.sources import CRMData
from leadscore.scoring import training
from leadscore.synthetic import generate_crm, true_conversion_probability

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--end", default="2026-06-30")
    args = parser.parse_args()
    config = config_from_dict({}, environ={})
    rules = load_rules(ROOT / "models" / "mql_rules.yaml")
    print(
        "| seed | test rows | conversions | model AUC | oracle AUC | gap | rules AUC "
        "| model − rules | model ECE | rules ECE | calibration | seconds |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for seed in args.seeds:
        start = time.perf_counter()
        crm = generate_crm(args.leads, seed=seed, end=args.end)
        data = CRMData(crm.leads, crm.activities, crm.outcomes.dropna(), "generated")
        training_set = training.build_training_set(data, config, rules)
        result = training.train(training_set, config)
        truth = true_conversion_probability(
            crm.truth_leads, crm.truth_shocks, training_set.snapshots["test"], config.horizon_days
        )
        oracle = roc_auc_score(training_set.labels("test"), truth)
        m, r = result.metrics["model"], result.metrics["rules"]
        print(
            f"| {seed} | {int(m['n']):,} | {int(m['conversions']):,} | {m['roc_auc']:.4f} "
            f"| {oracle:.4f} | {oracle - m['roc_auc']:.4f} | {r['roc_auc']:.4f} "
            f"| {m['roc_auc'] - r['roc_auc']:.4f} | {m['ece']:.4f} | {r['ece']:.4f} "
            f"| {result.model.calibration_method_} | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
