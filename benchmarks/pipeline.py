"""Benchmark generate / train / score / report through the real CLI, with in-run references.

    python3 run.py bench                      # 100k leads, 3 repeats of generate and score
    python3 run.py bench --leads 20000 --repeat 5
    python3 run.py bench --leads 215000 --database postgresql://postgres@127.0.0.1/bench \
        --no-report                           # the nightly run on PostgreSQL, ~100k open leads

Each step runs as its own process (as a user runs it) and is measured by wall time and peak
resident memory (from the kernel's rusage of that process). References measured in the same
run, on the same data and machine:

- `raw_predict`: LightGBM `predict` alone on the precomputed scoring matrix of all open leads;
- `features`: building that matrix (snapshot rows + feature transform) alone;
- `pred_contrib`: LightGBM's exact TreeSHAP contributions on that matrix (what reasons need).

Reports medians, and ratios of the scoring step to the references. Results are printed as
a Markdown table and written as JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from leadscore.lifecycle.registry import load_champion

ROOT = Path(__file__).resolve().parents[1]


def member_predict(model, matrix, **kwargs) -> list:
    """LightGBM's own predict with every member booster: the raw work the model does."""
    return [
        m.booster.booster_.predict(matrix, num_iteration=m.iteration, **kwargs)
        for m in model.members_
    ]


def _measure(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run `cmd`; return wall seconds and its stdout; stop the benchmark if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"step failed: {' '.join(cmd)}")
    return wall, proc.stdout


def _timed_child(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run `cmd` through this script's --child mode, which reports the child's own peak RSS."""
    wrapper = [sys.executable, __file__, "--child", "--", *cmd]
    _, out = _measure(wrapper, cwd, env)
    report = json.loads(out.strip().splitlines()[-1])
    return report["wall"], report["peak_mib"], report["stdout"]


def _child(cmd: list[str]) -> None:
    import resource

    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(proc.returncode)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"wall": wall, "peak_mib": peak_kib / 1024, "stdout": proc.stdout}))


def _reference(config_path: str, as_of: str) -> None:
    """Time feature building and raw LightGBM predict on the champion's scoring matrix."""
    import pandas as pd

    from leadscore.config import load_config
    from leadscore.data.features import index_activities, snapshot_rows
    from leadscore.io.sources import load_crm
    from leadscore.scoring.scorer import open_leads

    config = load_config(config_path)
    champion = load_champion(config)
    model = champion.model
    crm = load_crm(config)
    snaps = open_leads(crm, pd.Timestamp(as_of), config)
    spec = model.features.behaviour
    attrs = config.source.attributes
    columns = [*model.features.categorical, *model.features.numeric, attrs.job_title]
    start = time.perf_counter()
    index = index_activities(crm.activities, spec.page_categories, spec.page_activity_type)
    rows = snapshot_rows(snaps, crm.leads, index, spec, columns, attrs.email)
    matrix = model.features.transform(rows)
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    member_predict(model, matrix)
    predict_s = time.perf_counter() - start
    # The reasons' cost floor: exact TreeSHAP contributions for every open lead.
    start = time.perf_counter()
    member_predict(model, matrix, pred_contrib=True)
    contrib_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "features": features_s,
                "raw_predict": predict_s,
                "pred_contrib": contrib_s,
                "rows": len(matrix),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument(
        "--repeat", type=int, default=3, help="repeats of generate, score, references"
    )
    parser.add_argument("--train-repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--database",
        default="sqlite:///crm.db",
        help="where the CRM is generated, read from and scores published (SQLAlchemy URL)",
    )
    parser.add_argument("--no-report", action="store_true", help="skip the report step")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "PREFECT_HOME": str(workdir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    cli = [sys.executable, "-m", "leadscore.apps.cli"]
    end = "2026-06-30"
    (workdir / "mql_rules.yaml").write_text((ROOT / "models" / "mql_rules.yaml").read_text())
    (workdir / "leadscore.yaml").write_text(
        f"source: {{uri: '{args.database}', ground_truth: {{}}}}\n"
        f"publish: {{uri: '{args.database}'}}\n"
    )
    results: dict[str, list[tuple[float, float]]] = {
        "generate": [],
        "train": [],
        "score": [],
        "report": [],
    }
    for _ in range(args.repeat):
        results["generate"].append(
            _timed_child(
                [
                    *cli,
                    "generate",
                    "--leads",
                    str(args.leads),
                    "--seed",
                    str(args.seed),
                    "--end",
                    end,
                    "--out",
                    args.database,
                    "--json",
                ],
                workdir,
                env,
            )[:2]
        )
    summary = {}
    for _ in range(args.train_repeat):
        wall, peak, out = _timed_child(
            [*cli, "train", "-c", "leadscore.yaml", "--json"], workdir, env
        )
        results["train"].append((wall, peak))
        summary = json.loads(out)
    scored = {}
    for _ in range(args.repeat):
        wall, peak, out = _timed_child(
            [*cli, "score", "-c", "leadscore.yaml", "--as-of", end, "--json"], workdir, env
        )
        results["score"].append((wall, peak))
        scored = json.loads(out)
    for _ in range(0 if args.no_report else args.repeat):
        wall, peak, _ = _timed_child(
            [*cli, "report", "-c", "leadscore.yaml", "--out", "report.html", "--json"], workdir, env
        )
        results["report"].append((wall, peak))
    refs = []
    for _ in range(args.repeat):
        _, _, out = _timed_child(
            [sys.executable, __file__, "--reference", "leadscore.yaml", end], workdir, env
        )
        refs.append(json.loads(out.strip().splitlines()[-1]))

    med = {
        k: (statistics.median(w for w, _ in v), max(p for _, p in v))
        for k, v in results.items()
        if v
    }
    ref_features = statistics.median(r["features"] for r in refs)
    ref_predict = statistics.median(r["raw_predict"] for r in refs)
    ref_contrib = statistics.median(r["pred_contrib"] for r in refs)
    rows = refs[0]["rows"]
    lines = [
        f"leadscore benchmark — {args.leads:,} leads, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"database {args.database.split('://')[0]}",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| step | median wall (s) | peak RSS (MiB) | runs |",
        "| --- | ---: | ---: | ---: |",
    ]
    for step, (wall, peak) in med.items():
        lines.append(f"| {step} | {wall:.1f} | {peak:.0f} | {len(results[step])} |")
    lines += [
        f"| reference: features for {rows:,} open leads (in-process) | {ref_features:.2f} | | {len(refs)} |",
        f"| reference: raw LightGBM predict, {rows:,} rows | {ref_predict:.3f} | | {len(refs)} |",
        f"| reference: LightGBM pred_contrib (TreeSHAP), {rows:,} rows | {ref_contrib:.2f} | | {len(refs)} |",
        "",
        f"score / raw predict: {med['score'][0] / ref_predict:.0f}x; "
        f"score / (features + raw predict + pred_contrib): "
        f"{med['score'][0] / (ref_features + ref_predict + ref_contrib):.1f}x",
        f"test AUC model {summary['model']['roc_auc']:.4f}, rules {summary['rules']['roc_auc']:.4f}, "
        f"oracle {summary['oracle_auc']:.4f}; {summary['rows']['train_rows']:,} training "
        f"examples; {scored['rows']['published']:,} scores published",
    ]
    text = "\n".join(lines)
    print(text)
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out_dir / f"pipeline-{args.leads}-{stamp}.json").write_text(
        json.dumps(
            {
                "median": med,
                "runs": results,
                "references": refs,
                "train": summary,
                "score": scored,
                "leads": args.leads,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[3:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--reference":
        _reference(sys.argv[2], sys.argv[3])
    else:
        main()
