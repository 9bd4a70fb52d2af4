"""The scale benchmark: a nightly run of ~1M open leads, its training, and references.

    .venv/bin/python benchmarks/scale.py                       # 2 x 1M generated leads
    .venv/bin/python benchmarks/scale.py --leads 100000 --copies 1 --repeat 1   # a quick look
    .venv/bin/python benchmarks/scale.py --workdir /big/disk --keep-data --partitions 1 4

Steps, each its own process (as a user runs it), measured by wall time and the kernel's
peak resident set of that process:

1. generate: `leadscore generate --format parquet` of `--leads` leads, `--copies` times
   with different seeds; copies are appended with their lead ids offset (one CRM of
   copies x leads: the generator holds its whole CRM in memory, appending does not);
2. train: `leadscore train` on the history, on a sample of `--sample-leads` leads
   (`snapshots.sample_leads`; 0 = all), or on a separate CRM of `--train-leads`;
3. score: `leadscore score` of every open lead as of the end of the data, with reasons,
   published to SQLite, once per `--partitions` setting (1 = the source read whole); the
   time of each Prefect task is read from the run's log;
4. references, in one process on the same data: reading the lookback window, snapshots +
   behaviour/attribute features (`model_rows`), a plain DuckDB SQL computing the same
   window counts on the same in-memory activities (per activity type x window, and
   recency), the same behaviour features written as one plain SQL query (checked equal),
   LightGBM raw predict on the precomputed feature matrix, path reasons, and
   exact TreeSHAP (`pred_contrib`) on a sample, extrapolated.

Medians over `--repeat` runs of steps 3 and 4 (generation and training once each unless
`--repeat-all`). Prints Markdown; writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from leadscore.lifecycle.registry import load_champion
from leadscore.scoring.inputs import lookback_days
from leadscore.scoring.scorer import model_rows, open_leads

ROOT = Path(__file__).resolve().parents[1]
END = "2026-06-30"
TASK_DONE = re.compile(
    r"^(\d\d):(\d\d):(\d\d)\.(\d+) \| INFO +\| Task run '([a-z_]+)-[0-9a-z]+' - Finished"
)


def member_predict(model, matrix, **kwargs) -> list:
    """LightGBM's own predict with every member booster: the raw work the model does."""
    return [
        m.booster.booster_.predict(matrix, num_iteration=m.iteration, **kwargs)
        for m in model.members_
    ]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, str]:
    """Run `cmd`; its stdout and stderr; stop the benchmark if it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"step failed: {' '.join(cmd)}")
    return proc.stdout, proc.stderr


def _measured(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str, str]:
    """`cmd` through this script's --child mode, so the peak RSS is that process's alone."""
    wrapper = [sys.executable, __file__, "--child", "--", *cmd]
    out, err = _run(wrapper, cwd, env)
    report = json.loads(out.strip().splitlines()[-1])
    return report["wall"], report["peak_mib"], report["stdout"], err


def _child(cmd: list[str]) -> None:
    import resource

    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(proc.returncode)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"wall": wall, "peak_mib": peak_kib / 1024, "stdout": proc.stdout}))


def summary(out: str) -> dict:
    """The JSON summary a command printed last on stdout (libraries may print before it)."""
    start = 0 if out.startswith("{") else out.rfind("\n{") + 1
    return json.loads(out[start:])


def task_seconds(log: str) -> dict[str, float]:
    """Seconds per Prefect task, from the gaps between `Finished` lines of a -v run."""
    out: dict[str, float] = {}
    previous = None
    for line in log.splitlines():
        match = TASK_DONE.match(line)
        if not match:
            continue
        h, m, s, frac, name = match.groups()
        stamp = int(h) * 3600 + int(m) * 60 + int(s) + float(f"0.{frac}")
        if previous is not None:
            out[name] = out.get(name, 0.0) + max(0.0, stamp - previous)
        previous = stamp
    return out


def append_copies(parts: list[Path], target: Path, offset: int) -> None:
    """One CRM from several generated ones: lead ids of copy k shifted by k x offset."""
    import duckdb

    target.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET memory_limit = '4GB'")  # spills to disk beyond: any size appends
    for table in ("leads", "activities", "outcomes"):
        selects = [
            f"SELECT * REPLACE (lead_id + {k * offset} AS lead_id) "
            f"FROM read_parquet('{part / (table + '.parquet')}')"
            for k, part in enumerate(parts)
        ]
        con.execute(
            f"COPY ({' UNION ALL '.join(selects)}) TO '{target / (table + '.parquet')}' "
            "(FORMAT parquet, ROW_GROUP_SIZE 1000000)"
        )
    con.close()


def _reference(config_path: str, as_of: str, contrib_rows: int) -> None:
    """Time the scoring work piece by piece, in-process, with the champion model."""
    import duckdb
    import numpy as np
    import pandas as pd

    from leadscore.config import load_config
    from leadscore.data.features import behaviour_features, index_activities
    from leadscore.data.rules import load_rules
    from leadscore.io.sources import load_crm
    from leadscore.modeling.reasons import explain

    config = load_config(config_path)
    model = load_champion(config).model
    rules = load_rules(config.rules_path)
    at = pd.Timestamp(as_of)
    since = at - pd.Timedelta(days=lookback_days(model, rules))
    times: dict[str, float] = {}

    start = time.perf_counter()
    crm = load_crm(config, activities_since=since, activities_until=at)
    times["read_window"] = time.perf_counter() - start
    start = time.perf_counter()
    snap = open_leads(crm, at, config)
    rows, _ = model_rows(crm, model, snap, config)
    times["snapshots_and_features"] = time.perf_counter() - start
    spec = model.features.behaviour
    start = time.perf_counter()
    index = index_activities(crm.activities, spec.page_categories, spec.page_activity_type)
    behaviour_features(snap, index, crm.leads, spec)
    times["behaviour_features"] = time.perf_counter() - start

    # The plain-SQL reference: the same events, counted per type and window, and recency.
    types = [str(t) for t in crm.activities["activity_type"].astype("str").unique()]
    windows = list(spec.windows_days)
    counts = ", ".join(
        f"count(*) FILTER (WHERE activity_type = '{t}' AND occurred_at >= "
        f"TIMESTAMP '{at}' - INTERVAL {w} DAY) AS \"{t}_{w}\""
        for t in types
        for w in windows
    )
    sql = (
        f"SELECT lead_id, {counts}, "
        f"date_diff('day', max(occurred_at), TIMESTAMP '{at}') AS recency "
        f"FROM acts SEMI JOIN snap USING (lead_id) WHERE occurred_at >= TIMESTAMP '{since}' "
        f"AND occurred_at < TIMESTAMP '{at}' GROUP BY lead_id"
    )
    con = duckdb.connect()
    con.register("acts", crm.activities)  # the same events the features get
    con.register("snap", snap[["lead_id"]])
    start = time.perf_counter()
    reference = con.execute(sql).df()
    times["duckdb_reference"] = time.perf_counter() - start
    start = time.perf_counter()
    start_of_window = at - pd.Timedelta(days=spec.lookback_days)
    same = con.execute(same_features_sql(spec, at, start_of_window)).df()
    times["duckdb_same_features"] = time.perf_counter() - start
    con.close()
    ours = behaviour_features(snap, index, crm.leads, spec).set_index(snap["lead_id"].to_numpy())
    mine = same.set_index("lead_id").reindex(ours.index)
    common = [c for c in mine.columns if c in ours.columns]
    difference = float(
        np.nanmax(np.abs(mine[common].fillna(0) - ours[common].fillna(0)).to_numpy())
    )
    if difference > 1e-6 or len(common) < len(ours.columns) - 2:  # all but trend, lead age
        raise SystemExit(
            f"the same-features SQL differs from leadscore's features by {difference} "
            f"({len(common)} of {len(ours.columns)} columns): it is no reference"
        )

    matrix = model.features.transform(rows)
    start = time.perf_counter()
    member_predict(model, matrix)
    times["raw_predict"] = time.perf_counter() - start
    start = time.perf_counter()
    explain(rows, model.contributions(rows), model.features, config.report.labels)
    times["path_reasons"] = time.perf_counter() - start
    sample = matrix.iloc[: min(contrib_rows, len(matrix))]
    start = time.perf_counter()
    member_predict(model, sample, pred_contrib=True)
    per_row = (time.perf_counter() - start) / max(1, len(sample))
    times["pred_contrib_extrapolated"] = per_row * len(matrix)
    print(
        json.dumps(
            {
                "seconds": times,
                "open_leads": len(snap),
                "window_events": len(crm.activities),
                "reference_leads": len(reference),
                "features": int(matrix.shape[1]),
                "trees": model.iterations,
                "pred_contrib_sample": len(sample),
                "checksum": float(np.nansum(reference.select_dtypes("number").to_numpy())),
                "same_features_max_difference": difference,
                "same_features_columns": len(common),
            }
        )
    )


def same_features_sql(spec, at, since) -> str:
    """The behaviour features as one plain SQL query over the raw activities: per activity
    type and page category the window counts, recency and decayed count, and per lead the
    totals, recency, decayed count, active days and trend counts (what a data engineer
    would write without leadscore)."""
    from leadscore.data.features import (
        DECAY_HALF_LIFE_DAYS,
        TREND_PREVIOUS_DAYS,
        TREND_RECENT_DAYS,
    )

    cases = " ".join(
        f"WHEN regexp_matches(detail, '{pattern}', 'i') THEN 'page_{name}'"
        for name, pattern in spec.page_categories.items()
    )
    page = spec.page_activity_type
    categories = {f"page_{name}" for name in spec.page_categories}
    cap = spec.recency_cap_days
    out = []
    for key in spec.keys():  # noqa: SIM118 - a spec, not a dict
        test = f"cat = '{key}'" if key in categories else f"typ = '{key}'"
        out += [
            f'count(*) FILTER ({test} AND age <= {w}) AS "n_{key}_{w}d"' for w in spec.windows_days
        ]
        out.append(f'min(age) FILTER ({test} AND age <= {cap}) AS "days_since_{key}"')
        out.append(f'coalesce(sum(w) FILTER ({test}), 0) AS "decayed_{key}"')
    out += [f'count(*) FILTER (age <= {w}) AS "n_all_{w}d"' for w in spec.windows_days]
    widest = max(spec.windows_days)
    out += [
        "sum(w) AS decayed_all",
        f'count(DISTINCT day) FILTER (age <= {widest}) AS "active_days_{widest}d"',
        f"min(age) FILTER (age <= {cap}) AS days_since_any",
        f"count(*) FILTER (age <= {TREND_RECENT_DAYS}) AS recent",
        f"count(*) FILTER (age > {TREND_RECENT_DAYS} AND "
        f"age <= {TREND_RECENT_DAYS + TREND_PREVIOUS_DAYS}) AS previous",
    ]
    return (
        "WITH e AS (SELECT lead_id, activity_type::VARCHAR AS typ, "
        f"CASE WHEN activity_type::VARCHAR = '{page}' THEN (CASE {cases} END) END AS cat, "
        "CAST(occurred_at AS DATE) AS day, "
        f"epoch_us(TIMESTAMP '{at}' - occurred_at) / 86400e6 AS age, "
        f"pow(0.5, epoch_us(TIMESTAMP '{at}' - occurred_at) / 86400e6 / {DECAY_HALF_LIFE_DAYS}) AS w "
        f"FROM acts SEMI JOIN snap USING (lead_id) WHERE occurred_at >= TIMESTAMP '{since}' "
        f"AND occurred_at < TIMESTAMP '{at}') "
        f"SELECT lead_id, {', '.join(out)} FROM e GROUP BY lead_id"
    )


def _project(
    workdir: Path,
    name: str,
    source: Path,
    partitions: int,
    threads: int,
    dask: str | None,
    sample_leads: int | None = None,
) -> Path:
    import yaml

    config = {
        "source": {"uri": str(source)},
        "rules": str(ROOT / "models" / "mql_rules.yaml"),
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "artifact_location": "mlartifacts"},
        "publish": {"uri": f"sqlite:///{name}-scores.db"},
        "model": {"num_threads": threads},
        "scale": {"partitions": partitions, "dask": dask},
        "snapshots": {"sample_leads": sample_leads},
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=1_000_000, help="leads per generated copy")
    parser.add_argument("--copies", type=int, default=2, help="generated CRMs appended")
    parser.add_argument(
        "--train-leads", type=int, default=0, help="train on a separate CRM of this many leads"
    )
    parser.add_argument(
        "--sample-leads",
        type=int,
        default=300_000,
        help="snapshots.sample_leads of the training run (0: every lead)",
    )
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--dask", default=None, help='also score on Dask: "local" or address')
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--contrib-rows", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep-data", action="store_true", help="reuse/keep generated data")
    parser.add_argument(
        "--no-train", action="store_true", help="score with the champion already in --workdir"
    )
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "PREFECT_HOME": str(workdir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DASK_LOGGING__DISTRIBUTED": "warning",
    }
    cli = [sys.executable, "-m", "leadscore.apps.cli"]
    steps: dict[str, list[tuple[float, float]]] = {}

    def record(step: str, wall: float, peak: float) -> None:
        steps.setdefault(step, []).append((wall, peak))
        print(f"  {step}: {wall:.1f} s, peak {peak:.0f} MiB", flush=True)

    crm = workdir / "crm"
    if not (args.keep_data and (crm / "activities.parquet").is_file()):
        parts = []
        for k in range(args.copies):
            part = workdir / f"crm-{k}" if args.copies > 1 else crm
            cmd = [*cli, "generate", "--out", str(part), "--leads", str(args.leads)]
            cmd += ["--seed", str(k + 1), "--end", END, "--format", "parquet", "--json"]
            record("generate", *_measured(cmd, workdir, env)[:2])
            parts.append(part)
        if args.copies > 1:
            start = time.perf_counter()
            append_copies(parts, crm, offset=10 * args.leads)
            record("append copies (DuckDB)", time.perf_counter() - start, float("nan"))
            for part in parts:
                shutil.rmtree(part)
    train_source = crm
    if args.train_leads:
        train_source = workdir / "train-crm"
        if not (args.keep_data and (train_source / "leads.parquet").is_file()):
            cmd = [*cli, "generate", "--out", str(train_source), "--leads", str(args.train_leads)]
            cmd += ["--seed", "99", "--end", END, "--format", "parquet"]
            _measured(cmd, workdir, env)
    sample = args.sample_leads or None
    train_config = _project(workdir, "train", train_source, 1, args.threads, None, sample)
    trained: dict = {}
    if not args.no_train:
        cmd = [*cli, "train", "-c", train_config.name, "--json"]
        wall, peak, out, _ = _measured(cmd, workdir, env)
        record("train", wall, peak)
        trained = summary(out)

    scored: dict[str, dict] = {}
    tasks: dict[str, list[dict[str, float]]] = {}
    settings = [(p, None) for p in args.partitions]
    if args.dask:
        settings.append((max(args.partitions), args.dask))
    for _ in range(args.repeat):
        for partitions, dask in settings:
            name = f"score-p{partitions}" + ("-dask" if dask else "")
            config = _project(workdir, name, crm, partitions, args.threads, dask)
            cmd = [*cli, "score", "-c", config.name, "--as-of", END, "--json", "-v"]
            wall, peak, out, err = _measured(cmd, workdir, env)
            record(name, wall, peak)
            scored[name] = summary(out)
            tasks.setdefault(name, []).append(task_seconds(err))
    refs = []
    ref_config = _project(workdir, "reference", crm, 1, args.threads, None)
    for _ in range(args.repeat):
        cmd = [sys.executable, __file__, "--reference", ref_config.name, END]
        out, _ = _run([*cmd, str(args.contrib_rows)], workdir, env)
        refs.append(json.loads(out.strip().splitlines()[-1]))

    ref = {k: _median([r["seconds"][k] for r in refs]) for k in refs[0]["seconds"]}
    med = {k: (_median([w for w, _ in v]), max(p for _, p in v)) for k, v in steps.items()}
    first = refs[0]
    lines = [
        f"leadscore scale benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
        f"{args.copies} x {args.leads:,} leads; {first['open_leads']:,} open leads and "
        f"{first['window_events']:,} events in the lookback as of {END}",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}; model {first['trees']} trees x "
        f"{first['features']} features, num_threads {args.threads}",
        "",
        "| step | median wall (s) | peak RSS (MiB) | runs |",
        "| --- | ---: | ---: | ---: |",
    ]
    for step, (wall, peak) in med.items():
        lines.append(f"| {step} | {wall:.1f} | {peak:.0f} | {len(steps[step])} |")
    lines += ["", "| reference (in-process, same data) | median (s) |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in ref.items()]
    lines += [
        "",
        "behaviour features (with coding the activities) / plain DuckDB SQL: "
        f"{ref['behaviour_features'] / ref['duckdb_reference']:.2f}x the window counts "
        "(count per type x window, recency), "
        f"{ref['behaviour_features'] / ref['duckdb_same_features']:.2f}x the same "
        f"{first['same_features_columns']} features (largest difference "
        f"{first['same_features_max_difference']:.1e})",
        f"snapshots and all features / window-count SQL: "
        f"{ref['snapshots_and_features'] / ref['duckdb_reference']:.2f}x",
    ]
    for name, runs in tasks.items():
        keys = sorted({k for r in runs for k in r})
        per_task = {k: _median([r.get(k, 0.0) for r in runs]) for k in keys}
        lines.append(
            f"{name}: {med[name][0] / ref['raw_predict']:.0f}x raw predict; tasks (median s): "
            + ", ".join(f"{k} {v:.1f}" for k, v in per_task.items() if v >= 0.5)
        )
    if trained:
        lines.append(
            f"train: {trained['rows']['train_rows']:,} training examples; test AUC model "
            f"{trained['model']['roc_auc']:.4f}, rules {trained['rules']['roc_auc']:.4f}"
        )
    text = "\n".join(lines)
    print(text)
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out_dir / f"scale-{args.copies}x{args.leads}-{stamp}.json").write_text(
        json.dumps(
            {"steps": steps, "references": refs, "tasks": tasks, "train": trained, "text": text},
            indent=2,
        )
    )
    if not args.keep_data and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[3:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--reference":
        _reference(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
