"""Marketing's comparison on generated data: intervals, captured conversions, suggested rules.

    .venv/bin/python benchmarks/comparison.py --leads 50000 --seeds 1 2 3 --capacity 250

Default config and rule file, the same functions as `leadscore train` / `leadscore report`,
in-process. Prints one Markdown row per seed (the table in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from leadscore.config import config_from_dict
from leadscore.data.rules import load_rules
from leadscore.evaluation.evidence import build_evidence, cohort_frames
from leadscore.io.sources import CRMData
from leadscore.scoring import training
from leadscore.synthetic import generate_crm

ROOT = Path(__file__).resolve().parents[1]


def _iv(interval) -> str:
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--end", default="2026-06-30")
    parser.add_argument("--capacity", type=int, default=250, help="sales leads per week")
    args = parser.parse_args()
    config = config_from_dict({"report": {"sales_capacity_per_week": args.capacity}}, environ={})
    rules = load_rules(ROOT / "models" / "mql_rules.yaml")
    print(
        "| seed | model ROC-AUC | rules ROC-AUC | difference | model PR-AUC | rules PR-AUC "
        "| MQLs per snapshot | converting leads | found by model | found by rules "
        "| at capacity (model / rules) "
        "| ECE model / rules | MQL→conv. now / suggested | seconds |"
    )
    print(
        "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |"
    )
    for seed in args.seeds:
        start = time.perf_counter()
        crm = generate_crm(args.leads, seed=seed, end=args.end)
        data = CRMData(crm.leads, crm.activities, crm.outcomes.dropna(), "generated")
        result = training.train(training.build_training_set(data, config, rules), config)
        test, fit = cohort_frames(result)
        ev = build_evidence(test, fit, rules, config)
        c = ev.comparison
        iv = c.intervals
        effect = ev.suggestion.effect.set_index("rules")["mql_conversion_rate"]
        cap = c.captured_at_capacity or {"model": float("nan"), "rules": float("nan")}
        print(
            f"| {seed} | {_iv(iv['roc_auc_model'])} | {_iv(iv['roc_auc_rules'])} "
            f"| {_iv(iv['roc_auc_difference'])} | {_iv(iv['pr_auc_model'])} "
            f"| {_iv(iv['pr_auc_rules'])} | {c.mql_per_date:,.0f} | {c.converting_leads:,} "
            f"| {c.captured_at_mql_volume['model']:,.0f} | {c.captured_at_mql_volume['rules']:,.0f} "
            f"| {cap['model']:,.0f} / {cap['rules']:,.0f} "
            f"| {c.metrics['model']['ece']:.4f} / {c.metrics['rules']['ece']:.4f} "
            f"| {effect['current rules']:.1%} / {effect['suggested rules']:.1%} "
            f"| {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
