"""Training time and peak memory: one fit the way training worked before the backtest vs
the default backtest (4 folds) and refit, on the same generated data, in one run.

    .venv/bin/python benchmarks/backtest.py --leads 100000 --pairs 3

Each measurement is its own process (so its peak resident memory is its own), the two
variants alternate (single, default, single, default, ...) and the ratio is taken pair by
pair, so a machine that slows down during the run moves both sides. Both build the same
training set first (the snapshot features of every labelled date, not timed in the ratio);
then:

- `single`: the recipe before the backtest: the leakage guard, one booster on the train
  cohort stopped on the validation cohort and calibrated on the calibration cohort, the
  logistic baseline and the shift check;
- `default`: `leadscore train`'s training step: the guard, the backtest (each fold a
  cross-fit of two boosters with its baseline), the refit on every labelled snapshot and
  the shift check.

Prints a Markdown table of medians (min-max) and the per-pair ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _data(leads: int, seed: int, folder: Path):
    """The generated CRM, cached as Parquet so every process reads the same tables."""
    import pandas as pd

    from leadscore.io.sources import CRMData
    from leadscore.synthetic import generate_crm

    path = folder / f"crm_{leads}_{seed}"
    if not path.exists():
        crm = generate_crm(leads, seed=seed, end="2026-06-30")
        path.mkdir(parents=True)
        for name in ("leads", "activities", "outcomes"):
            getattr(crm, name).to_parquet(path / f"{name}.parquet")
    tables = {
        n: pd.read_parquet(path / f"{n}.parquet") for n in ("leads", "activities", "outcomes")
    }
    return CRMData(tables["leads"], tables["activities"], tables["outcomes"].dropna(), "generated")


def _single(data, config, crm) -> dict:
    """The training step as it was before the backtest, with today's functions."""
    from leadscore.data.leakage import excluded
    from leadscore.modeling.diagnostics import fit_baseline, shift_check
    from leadscore.modeling.estimator import LeadScoringModel
    from leadscore.scoring import training

    findings = training.leakage_findings(data, config, crm)
    builder = training._builder(config, data, excluded(findings))
    model = LeadScoringModel(builder, config.model).fit(
        data.rows["train"],
        data.labels("train"),
        data.rows["validation"],
        data.labels("validation"),
        data.rows["calibration"],
        data.labels("calibration"),
        data.snapshots["calibration"]["lead_id"].to_numpy(),
    )
    fit = data.splits["train"] | data.splits["validation"]
    fit_baseline(
        model.features,
        data.examples.rows[fit],
        data.examples.labels[fit],
        data.splits["validation"][fit],
        data.rows["test"],
        data.labels("test"),
    )
    shift_check(model.features, data.rows["train"], data.rows["test"])
    p = model.predict_proba(data.rows["test"])
    return {"trees": model.iterations, "mean_p": float(p.mean())}


def _default(data, config, crm) -> dict:
    from leadscore.scoring import training

    result = training.train(data, config, crm)
    return {
        "trees": result.model.iterations,
        "folds": len(result.backtest.folds),
        "newest_fold_auc": result.metrics["model"]["roc_auc"],
    }


def measure(variant: str, leads: int, seed: int, folder: Path) -> dict:
    """One variant in this process: features (not in the ratio), then the training step."""
    from leadscore.config import config_from_dict
    from leadscore.data.rules import load_rules
    from leadscore.scoring import training

    config = config_from_dict({}, environ={})
    rules = load_rules(ROOT / "models" / "mql_rules.yaml")
    crm = _data(leads, seed, folder)
    start = time.perf_counter()
    data = training.build_training_set(crm, config, rules)
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    info = (_single if variant == "single" else _default)(data, config, crm)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    return {
        "variant": variant,
        "seconds": seconds,
        "features_s": features_s,
        "peak_mib": peak,
        "rows": len(data.examples.snapshots),
        **info,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/leadscore-bench"))
    parser.add_argument("--variant", choices=["single", "default"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.leads, args.seed, args.folder)))
        return
    args.folder.mkdir(parents=True, exist_ok=True)
    _data(args.leads, args.seed, args.folder)  # generate once, outside the timings
    runs: dict[str, list[dict]] = {"single": [], "default": []}
    for pair in range(args.pairs):
        for variant in ("single", "default"):
            out = subprocess.run(
                [sys.executable, __file__, "--variant", variant, "--leads", str(args.leads),
                 "--seed", str(args.seed), "--folder", str(args.folder)],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            runs[variant].append(json.loads(out.strip().splitlines()[-1]))
            print(f"pair {pair + 1}: {variant} {runs[variant][-1]['seconds']:.1f} s", flush=True)

    def spread(values: list[float], digits: int = 1) -> str:
        return (
            f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})"
        )

    first = runs["default"][0]
    print(f"\n{args.leads:,} leads, seed {args.seed}: {first['rows']:,} labelled snapshot rows, "
          f"{first['folds']} folds; newest-fold AUC {first['newest_fold_auc']:.4f}\n")  # fmt: skip
    print("| variant | training step s | peak memory MiB | features s (both) |")
    print("| --- | ---: | ---: | ---: |")
    for variant, items in runs.items():
        print(
            f"| {variant} | {spread([r['seconds'] for r in items])} "
            f"| {spread([r['peak_mib'] for r in items], 0)} "
            f"| {spread([r['features_s'] for r in items])} |"
        )
    time_ratio = [d["seconds"] / s["seconds"] for s, d in zip(*runs.values(), strict=True)]
    memory_ratio = [d["peak_mib"] / s["peak_mib"] for s, d in zip(*runs.values(), strict=True)]
    print(f"\ndefault / single, per pair: time {spread(time_ratio, 2)}, "
          f"peak memory {spread(memory_ratio, 2)}")  # fmt: skip


if __name__ == "__main__":
    main()
