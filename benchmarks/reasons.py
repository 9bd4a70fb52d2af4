"""Reasons from path attributions (the default) against exact TreeSHAP, on generated data.

    .venv/bin/python benchmarks/reasons.py                  # 50k leads, seeds 1 and 2, ~4 min
    .venv/bin/python benchmarks/reasons.py --seeds 1 2 3 4 --sample 20000 --timing-rows 50000

For each seed: a CRM from `generate_crm`, a model trained with the default config exactly
as `leadscore train` does (in-process), then on a random sample of `--sample` test rows
both kinds of contributions, compared where reasons are made, at the level of the reason
factors (`reasons.factors`, a factor counting only above `--min-effect` log-odds):

- top-1 up / down: share of leads whose strongest factor raising (lowering) the
  probability is the same (or absent in both);
- top-3 overlap: mean of |A ∩ B| / max(|A|, |B|) over leads, A and B the up to 3
  factors each way that `explain` would name (1 when both are empty), up and down pooled;
- identical texts: share of leads whose `reasons_up` (`reasons_down`, both) from
  `explain` are the very same strings;
- Spearman: median over leads of the rank correlation of the lead's contributions, per
  feature and per factor.

Timing, on `--timing-rows` model-matrix rows (test rows, resampled): LightGBM raw predict
(the floor), path attributions from a built table (and building the table once), and
`pred_contrib`, each the median of `--repeat` runs, with LightGBM's default threads
(`--num-threads`). Peak memory of path attributions is traced (tracemalloc, numpy's
allocations) in a separate run. Prints Markdown tables; writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from leadscore.config import config_from_dict
from leadscore.data.features import FeatureBuilder
from leadscore.data.rules import load_rules
from leadscore.io.sources import CRMData
from leadscore.modeling.attributions import PathAttributions
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.modeling.reasons import explain, factors
from leadscore.scoring import training
from leadscore.synthetic import generate_crm

ROOT = Path(__file__).resolve().parents[1]


def train(leads: int, seed: int, end: str) -> tuple[LeadScoringModel, pd.DataFrame]:
    """The default model on a generated CRM, and the raw rows of its test cohort."""
    crm = generate_crm(leads, seed=seed, end=end)
    data = CRMData(crm.leads, crm.activities, crm.outcomes.dropna(), "generated")
    config = config_from_dict({}, environ={})
    rules = load_rules(ROOT / "models" / "mql_rules.yaml")
    training_set = training.build_training_set(data, config, rules)
    result = training.train(training_set, config)
    return result.model, result.data.rows["test"]


def factor_effects(contrib: pd.DataFrame, builder: FeatureBuilder) -> np.ndarray:
    """Contributions summed per reason factor (rows x factors), as `explain` sums them."""
    groups = factors(builder)
    position = {name: i for i, name in enumerate(contrib.columns)}
    member = np.zeros((len(position), len(groups)))
    for j, group in enumerate(groups):
        member[[position[name] for name in group.features], j] = 1.0
    return contrib.to_numpy(dtype=float) @ member


def top_factors(effect: np.ndarray, k: int, min_effect: float) -> np.ndarray:
    """The k strongest factors per row (as `explain` orders them); -1 below `min_effect`."""
    k = min(k, effect.shape[1])
    idx = np.argsort(-effect, axis=1, kind="stable")[:, :k]
    return np.where(np.take_along_axis(effect, idx, axis=1) > min_effect, idx, -1)


def _row_spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.nanmedian((ra * rb).sum(axis=1) / denom))


def agreement(
    rows: pd.DataFrame,
    path: pd.DataFrame,
    shap: pd.DataFrame,
    builder: FeatureBuilder,
    top: int = 3,
    min_effect: float = 0.02,
) -> dict[str, float]:
    """How far reasons from `path` contributions agree with those from `shap` ones."""
    ep, es = factor_effects(path, builder), factor_effects(shap, builder)
    out: dict[str, float] = {}
    overlaps = []
    for direction, sign in (("up", 1.0), ("down", -1.0)):
        tp, ts = top_factors(sign * ep, top, min_effect), top_factors(sign * es, top, min_effect)
        out[f"top1_{direction}"] = float(np.mean(tp[:, 0] == ts[:, 0]))
        for a, b in zip(tp.tolist(), ts.tolist(), strict=True):
            sa, sb = {f for f in a if f >= 0}, {f for f in b if f >= 0}
            overlaps.append(len(sa & sb) / max(len(sa), len(sb)) if sa or sb else 1.0)
    out["top3_overlap"] = float(np.mean(overlaps))
    rp, rs = explain(rows, path, builder), explain(rows, shap, builder)
    same_up = (rp["reasons_up"] == rs["reasons_up"]).to_numpy()
    same_down = (rp["reasons_down"] == rs["reasons_down"]).to_numpy()
    out["texts_up"] = float(same_up.mean())
    out["texts_down"] = float(same_down.mean())
    out["texts_both"] = float((same_up & same_down).mean())
    out["spearman_features"] = _row_spearman(path.to_numpy(), shap.to_numpy())
    out["spearman_factors"] = _row_spearman(ep, es)
    return out


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timings(
    model: LeadScoringModel, matrix: pd.DataFrame, repeat: int, num_threads: int
) -> dict[str, float]:
    """Rows/s of raw predict, path attributions and pred_contrib on the same matrix, for one
    member booster (each member costs the same)."""
    member = model.members_[0]
    booster, it, n = member.booster.booster_, member.iteration, len(matrix)
    start = time.perf_counter()
    table = PathAttributions.from_booster(booster, it)
    build = time.perf_counter() - start
    raw = _median_seconds(
        lambda: booster.predict(matrix, raw_score=True, num_iteration=it, num_threads=num_threads),
        repeat,
    )
    path = _median_seconds(lambda: table.contributions(matrix, num_threads=num_threads), repeat)
    shap = _median_seconds(
        lambda: booster.predict(
            matrix, pred_contrib=True, num_iteration=it, num_threads=num_threads
        ),
        repeat,
    )
    tracemalloc.start()
    values = table.contributions(matrix, num_threads=num_threads)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "rows": n,
        "table_build_s": build,
        "raw_predict_rows_s": n / raw,
        "path_rows_s": n / path,
        "pred_contrib_rows_s": n / shap,
        "path_peak_mib": peak / 2**20,
        "output_mib": values.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--end", default="2026-06-30")
    parser.add_argument("--sample", type=int, default=5_000, help="test rows compared")
    parser.add_argument("--timing-rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--num-threads", type=int, default=0, help="LightGBM's; 0: default")
    parser.add_argument("--min-effect", type=float, default=0.02)
    args = parser.parse_args()

    results = []
    for seed in args.seeds:
        start = time.perf_counter()
        model, test_rows = train(args.leads, seed, args.end)
        trained_s = time.perf_counter() - start
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(test_rows), min(args.sample, len(test_rows)), replace=False)
        rows = test_rows.iloc[np.sort(pick)]
        path = model.contributions(rows, method="path")
        shap = model.contributions(rows, method="shap")
        agree = agreement(rows, path, shap, model.features, min_effect=args.min_effect)
        # The other node values, LightGBM's internal_value, for comparison.
        x = model.features.transform(rows)
        internal = np.mean(
            [
                PathAttributions.from_booster(
                    m.booster.booster_, m.iteration, node_values="internal"
                ).contributions(x)
                for m in model.members_
            ],
            axis=0,
        )
        internal = pd.DataFrame(internal, columns=path.columns, index=rows.index)
        agree_internal = agreement(rows, internal, shap, model.features, min_effect=args.min_effect)
        bias = np.mean([t.expected_value for t in model.path_attributions()])
        raw = model.log_odds(rows)
        additivity = float(np.max(np.abs(path.sum(axis=1).to_numpy() + bias - raw)))
        matrix = model.features.transform(test_rows)
        matrix = matrix.iloc[rng.integers(0, len(matrix), args.timing_rows)]
        timed = timings(model, matrix, args.repeat, args.num_threads)
        results.append(
            {
                "seed": seed,
                "trees": model.iterations,
                "features": len(model.features.feature_names_),
                "factors": len(factors(model.features)),
                "compared_rows": len(rows),
                "train_s": trained_s,
                "max_additivity_error": additivity,
                **agree,
                "internal": agree_internal,
                **timed,
            }
        )
        print(f"seed {seed}: {model.iterations} trees, {time.perf_counter() - start:.0f} s")

    lines = [
        f"reasons: path attributions vs exact TreeSHAP — {args.leads:,} leads, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; LightGBM threads: {args.num_threads or 'default'}",
        "",
        "| seed | trees | node values | top-1 up | top-1 down | top-3 overlap | texts up "
        "| texts down | texts both | Spearman features | Spearman factors |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        for name, a in (("cover (default)", r), ("internal", r["internal"])):
            lines.append(
                f"| {r['seed']} | {r['trees']} | {name} | {a['top1_up']:.3f} "
                f"| {a['top1_down']:.3f} | {a['top3_overlap']:.3f} | {a['texts_up']:.3f} "
                f"| {a['texts_down']:.3f} | {a['texts_both']:.3f} "
                f"| {a['spearman_features']:.3f} | {a['spearman_factors']:.3f} |"
            )
    worst = max(r["max_additivity_error"] for r in results)
    lines += ["", f"largest |bias + sum of path contributions - raw score|: {worst:.1e}"]
    lines += [
        "",
        "| seed | rows | raw predict rows/s | path rows/s | pred_contrib rows/s "
        "| path / pred_contrib | table build (s) | path peak MiB (output MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['seed']} | {r['rows']:,} | {r['raw_predict_rows_s']:,.0f} "
            f"| {r['path_rows_s']:,.0f} | {r['pred_contrib_rows_s']:,.0f} "
            f"| {r['path_rows_s'] / r['pred_contrib_rows_s']:.0f}x | {r['table_build_s']:.2f} "
            f"| {r['path_peak_mib']:.0f} ({r['output_mib']:.0f}) |"
        )
    print("\n".join(lines))
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = out_dir / f"reasons-{args.leads}-{stamp}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
