"""Benchmark on-demand scoring: `leadscore serve` over HTTP, with in-process references.

    .venv/bin/python benchmarks/bench_serve.py                       # 20k leads, 300 requests
    .venv/bin/python benchmarks/bench_serve.py --leads 5000 --requests 100 \\
        --pg postgresql://postgres@127.0.0.1:5432/test               # also a PostgreSQL source

Steps: generate a CRM into SQLite ending today, train a champion and publish one run
through the real CLI (`--workdir` of an earlier run reuses them), index the lead-id columns
(as a CRM database has them), start `leadscore serve` as a subprocess and, after a warm-up,
time sequential requests over one keep-alive connection:

- `GET /leads/{id}/score`: the lead and its activities read from the database, as of now;
- `POST /score`: the same leads posted as JSON (fields and activities of the lookback);
- the same GET from `--clients` (8) concurrent keep-alive clients: latencies and throughput.

Each sequential line is run `--runs` (3) times; each figure is the median of the runs'.

With `--pg URL` the tables are copied into a new PostgreSQL database (dropped afterwards)
and a second service reads from it. References measured in the same run, in a process of
their own that loads what the service loads, while the services are stopped: on-demand
scoring without HTTP (read + score, score alone, a posted lead), by the compiled one-lead
path the service takes and by the batch's own code (the path before it), and LightGBM's
predict on one precomputed row (a numpy row, and a one-row DataFrame). Reports wall-time p50/p95/p99
and CPU per call (the server's, from /proc; wall time suffers first when other work shares
the cores) as a Markdown table, and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "leadscore.apps.cli"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"step failed: {' '.join(cmd)}")
    return time.perf_counter() - start


def _prepare(workdir: Path, leads: int, seed: int, env: dict[str, str]) -> dict[str, float]:
    """Generate, train and publish one run, unless `workdir` already holds them."""
    if (workdir / "leadscore.yaml").exists() and (workdir / "mlflow.db").exists():
        return {}
    (workdir / "mql_rules.yaml").write_text((ROOT / "models" / "mql_rules.yaml").read_text())
    (workdir / "leadscore.yaml").write_text(
        "source: {uri: 'sqlite:///crm.db'}\npublish: {uri: 'sqlite:///crm.db'}\n"
    )
    today = datetime.now(UTC).date().isoformat()
    steps = {
        "generate": [*CLI, "generate", "--leads", str(leads), "--seed", str(seed)],
        "train": [*CLI, "train", "-c", "leadscore.yaml", "--json"],
        "score": [*CLI, "score", "-c", "leadscore.yaml", "--as-of", today, "--json"],
    }
    steps["generate"] += ["--end", today, "--out", "sqlite:///crm.db", "--json"]
    return {name: _run(cmd, workdir, env) for name, cmd in steps.items()}


def _index(uri: str) -> None:
    """Index the lead-id columns, as any CRM database has them."""
    import sqlalchemy as sa

    from leadscore.io import uris

    engine = uris.create_engine(uri)
    with engine.begin() as conn:
        for table in ("leads", "activities", "outcomes"):
            conn.execute(
                sa.text(f"CREATE INDEX IF NOT EXISTS ix_{table}_lead ON {table} (lead_id)")
            )
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(config: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str, float]:
    """Start `leadscore serve`; returns the process, its URL and the seconds until healthy."""
    import httpx

    port = _free_port()
    cmd = [*CLI, "serve", "-c", str(config), "--port", str(port), "--log-level", "warning"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=config.parent, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"leadscore serve exited:\n{proc.stderr.read()[-4000:]}")
        try:
            httpx.get(f"{url}/health", timeout=5).raise_for_status()
            return proc, url, time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(0.25)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far; Linux /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _time_requests(
    client, pid: int, calls: list[tuple[str, str, dict | None]], warmup: int
) -> tuple[dict, dict[int, int]]:
    """Sequential requests after `warmup` untimed ones: latencies (ms), the server's CPU
    per request (ms; less disturbed by other load on the machine than wall time) and the
    status counts."""
    statuses: dict[int, int] = {}
    for method, path, body in calls[:warmup]:
        client.request(method, path, json=body)
    latencies = []
    cpu = _cpu_seconds(pid)
    for method, path, body in calls[warmup:]:
        start = time.perf_counter()
        response = client.request(method, path, json=body)
        latencies.append((time.perf_counter() - start) * 1000)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    cpu_ms = (_cpu_seconds(pid) - cpu) * 1000 / len(latencies)
    return _stats(latencies, cpu_ms), statuses


def _median_of_runs(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure the median of the runs' (the runs' p95s, say, not a pooled p95)."""
    out = {key: float(np.median([r[key] for r in runs])) for key in runs[0]}
    return {**out, "n": int(sum(r["n"] for r in runs)), "runs": len(runs)}


def _merged(counts: list[dict[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for c in counts:
        for status, n in c.items():
            out[status] = out.get(status, 0) + n
    return out


def _concurrent(
    url: str, auth: dict, pid: int, calls: list, clients: int, warmup: int
) -> tuple[dict, dict[int, int]]:
    """`clients` keep-alive clients sending `calls` at once, each as fast as answered:
    latencies, throughput (requests a second, wall time) and the server's CPU per call."""
    import threading

    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def client(offset: int) -> None:
        mine = [calls[(offset + i) % len(calls)] for i in range(len(calls))]
        with httpx.Client(base_url=url, timeout=60, headers=auth) as http:
            for method, path, body in mine[:warmup]:
                http.request(method, path, json=body)
            ready.wait()
            for method, path, body in mine[warmup:]:
                start = time.perf_counter()
                response = http.request(method, path, json=body)
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    latencies.append(elapsed)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    threads = [threading.Thread(target=client, args=(k * 7,)) for k in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    cpu, start = _cpu_seconds(pid), time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    stats = _stats(latencies, (_cpu_seconds(pid) - cpu) * 1000 / len(latencies))
    return {**stats, "rps": len(latencies) / wall}, statuses


def _payload(crm, lead, since) -> dict:
    """A lead as a form handler would post it: its fields and its recent activities."""
    import pandas as pd

    row = crm.leads.loc[crm.leads["lead_id"] == lead].iloc[0]
    acts = crm.activities[
        (crm.activities["lead_id"] == lead) & (crm.activities["occurred_at"] >= since)
    ]
    attributes = {
        name: None
        if pd.isna(row[name])
        else (float(row[name]) if name == "employees" else row[name])
        for name in ("industry", "country", "lead_source", "employees", "job_title", "email")
    }
    return {
        "created_at": row["created_at"].isoformat() + "Z",
        "attributes": attributes,
        "activities": [
            {
                "occurred_at": t.isoformat() + "Z",
                "activity_type": kind,
                "detail": None if pd.isna(detail) else detail,
            }
            for t, kind, detail in zip(
                acts["occurred_at"], acts["activity_type"], acts["detail"], strict=True
            )
        ],
    }


def _references(config_path: Path, requests_path: Path, repeat: int) -> None:
    """In-process timings (ms) on the same leads: on-demand scoring, and LightGBM on one row.

    Runs in a process of its own (`--reference`) that loads what the service loads, so its
    heap, and the garbage collector's work, are the service's rather than this driver's.
    """
    from leadscore.apps import service
    from leadscore.config import load_config
    from leadscore.scoring import ondemand, single
    from leadscore.scoring.inputs import now
    from leadscore.scoring.scorer import model_rows, open_leads

    asked = json.loads(requests_path.read_text())
    lead_ids, payloads = asked["lead_ids"], asked["payloads"]
    config = load_config(config_path)
    state = service.load_state(config)
    scorer, population = state.scorer, state.population
    moment = now()
    ids = [str(i) for i in lead_ids]
    read = {lead: ondemand.read_leads(scorer, [lead], moment) for lead in ids}
    posted = []
    for body in payloads:  # as the service turns a request into a lead
        lead = service.LeadIn.model_validate(body)
        created = service._utc(lead.created_at)
        activities = service.activities_frame(lead)  # the batch's code takes a frame
        posted.append(ondemand.crm_from_payload(lead.attributes, activities, created, scorer))

    def timed(fn) -> dict[str, float]:
        wall = []
        cpu = time.process_time()
        for i in range(repeat):
            start = time.perf_counter()
            fn(i % len(ids))
            wall.append((time.perf_counter() - start) * 1000)
        return _stats(wall, (time.process_time() - cpu) * 1000 / repeat)

    def read_and_score(i: int) -> None:
        crm = ondemand.read_leads(scorer, [ids[i]], moment)
        ondemand.score_leads(crm, [ids[i]], scorer, moment, population)

    one = state.one
    compiled = one.compiled
    leads = [single.lead_from_crm(read[lead], lead) for lead in ids]
    posted_args = []
    for body in payloads:
        lead = service.LeadIn.model_validate(body)
        acts = [(service._utc(a.occurred_at), a.activity_type, a.detail) for a in lead.activities]
        posted_args.append((lead.attributes, acts, service._utc(lead.created_at)))

    def scored_alone(i: int) -> None:
        lead = leads[i]
        single.as_record(compiled.score(lead, moment), compiled, population, lead.lead_id)

    out = {
        "in-process: read + score one lead, compiled (SQLite)": timed(
            lambda i: one.by_id(ids[i], moment, population)
        ),
        "in-process: score one lead already read, compiled": timed(scored_alone),
        "in-process: score a posted lead, compiled": timed(
            lambda i: one.posted(*posted_args[i], moment, population)
        ),
        "in-process: read + score one lead, the batch's code (SQLite)": timed(read_and_score),
        "in-process: score one lead already read, the batch's code": timed(
            lambda i: ondemand.score_leads(read[ids[i]], [ids[i]], scorer, moment, population)
        ),
        "in-process: score a posted lead, the batch's code": timed(
            lambda i: ondemand.score_payload(posted[i], scorer, moment, population)
        ),
    }
    # LightGBM alone on one precomputed row of the same model.
    model = scorer.model
    crm = read[ids[0]]
    rows, _ = model_rows(crm, model, open_leads(crm, moment, config), config)
    frame = model.features.transform(rows)
    numeric = frame.copy()
    for col in model.features.categorical_features:  # what LightGBM does with a DataFrame
        numeric[col] = numeric[col].cat.codes.replace({-1: np.nan})
    matrix = numeric.to_numpy(dtype=np.float64)
    members = [(m.booster.booster_, m.iteration) for m in model.members_]
    for booster, n_iter in members:
        same = (
            booster.predict(matrix, num_iteration=n_iter),
            booster.predict(frame, num_iteration=n_iter),
        )
        assert np.allclose(*same), "the numpy row must give the DataFrame's prediction"
    out["in-process: raw LightGBM predict, one precomputed row (numpy)"] = timed(
        lambda i: [b.predict(matrix, num_iteration=n) for b, n in members]
    )
    out["in-process: LightGBM predict, one-row DataFrame"] = timed(
        lambda i: booster.predict(frame, num_iteration=n_iter)
    )
    print(json.dumps(out))


def _copy_to_postgres(admin_uri: str, name: str, crm) -> str:
    """A new PostgreSQL database `name` holding the source's tables; returns its URL."""
    import sqlalchemy as sa

    from leadscore.io import uris
    from leadscore.io.tables import write_tables

    admin = uris.create_engine(admin_uri, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = sa.engine.make_url(uris.normalise_uri(admin_uri)).set(database=name)
    uri = url.render_as_string(hide_password=False)
    write_tables({"leads": crm.leads, "activities": crm.activities, "outcomes": crm.outcomes}, uri)
    _index(uri)
    return uri


def _drop_postgres(admin_uri: str, name: str) -> None:
    import sqlalchemy as sa

    from leadscore.io import uris

    admin = uris.create_engine(admin_uri, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _stats(values: list[float], cpu_ms: float) -> dict[str, float]:
    v = np.asarray(values)
    return {
        "n": len(v),
        "p50": float(np.percentile(v, 50)),
        "p95": float(np.percentile(v, 95)),
        "p99": float(np.percentile(v, 99)),
        "mean": float(v.mean()),
        "cpu_ms": cpu_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per endpoint")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--distinct", type=int, default=100, help="distinct open leads asked for")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per endpoint (medians)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, one line")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse an earlier run's project")
    parser.add_argument("--pg", default=None, help="PostgreSQL URL to copy the source into")
    parser.add_argument(
        "--no-index", action="store_true", help="leave the lead-id columns unindexed"
    )
    args = parser.parse_args()

    import httpx
    import pandas as pd

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-bench-serve-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "PREFECT_HOME": str(workdir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    setup = _prepare(workdir, args.leads, args.seed, env)
    sqlite_uri = f"sqlite:///{workdir / 'crm.db'}"
    if not args.no_index:
        _index(sqlite_uri)

    from leadscore.config import load_config
    from leadscore.data.rules import load_rules
    from leadscore.io import publish
    from leadscore.io.sources import load_crm
    from leadscore.lifecycle.registry import load_champion
    from leadscore.scoring.inputs import lookback_days
    from leadscore.scoring.scorer import open_leads

    config = load_config(workdir / "leadscore.yaml")
    published = publish.read_scores(config.publish_uri, config.publish.table, latest=True)
    crm = load_crm(config)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    # Leads of the published run that are still open now (a few convert during the day).
    open_now = set(open_leads(crm, now, config)["lead_id"]) & set(published["lead_id"])
    lead_ids = random.Random(args.seed).sample(sorted(int(i) for i in open_now), args.distinct)
    champion = load_champion(config)
    since = now - pd.Timedelta(days=lookback_days(champion.model, load_rules(config.rules_path)))
    payloads = [_payload(crm, lead, since) for lead in lead_ids]
    total = args.warmup + args.requests
    gets = [("GET", f"/leads/{lead_ids[i % len(lead_ids)]}/score", None) for i in range(total)]
    posts = [("POST", "/score", payloads[i % len(payloads)]) for i in range(total)]

    results: dict[str, dict] = {}
    statuses: dict[str, dict] = {}
    paths: dict[str, str] = {}
    started: dict[str, float] = {}
    pg_name = f"leadscore_bench_{uuid.uuid4().hex[:8]}" if args.pg else None
    sources = [("SQLite", workdir / "leadscore.yaml")]
    try:
        if args.pg:
            pg_uri = _copy_to_postgres(args.pg, pg_name, crm)
            pg_config = workdir / "leadscore-pg.yaml"
            pg_config.write_text(
                f"source: {{uri: '{pg_uri}'}}\npublish: {{uri: 'sqlite:///crm.db'}}\n"
            )
            sources.append(("PostgreSQL", pg_config))
        # A key as a caller has one (the check is part of every timed call); no rate limit.
        made = subprocess.run(
            [*CLI, "keys", "create", "--name", "bench", "--scope", "score", "--rate", "1000000",
             "-c", str(workdir / "leadscore.yaml")],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        auth = {"Authorization": f"Bearer {made.stdout.strip()}"}
        for label, path in sources:
            server, url, seconds = _start(path, env)
            started[label] = seconds
            try:
                with httpx.Client(base_url=url, timeout=60, headers=auth) as client:
                    health = client.get("/health").json()
                    paths[label] = health.get("single_lead", "batch")
                    endpoints = [(f"GET /leads/{{id}}/score ({label})", gets)]
                    if label == "SQLite":
                        endpoints.append(("POST /score (payload)", posts))
                    for key, calls in endpoints:
                        runs = [
                            _time_requests(client, server.pid, calls, args.warmup)
                            for _ in range(args.runs)
                        ]
                        results[key] = _median_of_runs([r[0] for r in runs])
                        statuses[key] = _merged([r[1] for r in runs])
                key = f"GET /leads/{{id}}/score, {args.clients} concurrent clients ({label})"
                results[key], statuses[key] = _concurrent(
                    url, auth, server.pid, gets, args.clients, args.warmup
                )
            finally:
                server.terminate()
                server.wait(timeout=60)
        asked = workdir / "bench_requests.json"
        asked.write_text(json.dumps({"lead_ids": lead_ids, "payloads": payloads}))
        reference = [sys.executable, __file__, "--reference", str(workdir / "leadscore.yaml")]
        proc = subprocess.run(
            [*reference, str(asked), str(args.requests)], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"reference timings failed:\n{proc.stderr[-4000:]}")
        references = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if pg_name is not None:
            _drop_postgres(args.pg, pg_name)
    results.update(references)

    activity_rows = len(crm.activities)
    lines = [
        f"leadscore on-demand benchmark — {args.leads:,} leads ({activity_rows:,} activities), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; lead-id columns {'not ' if args.no_index else ''}indexed; "
        f"sequential lines: {args.runs} runs of {args.requests} timed requests after "
        f"{args.warmup} warm-up, each figure the median of the runs; concurrent line: "
        f"{args.clients} clients x {args.requests} requests; {len(lead_ids)} distinct open "
        f"leads; single-lead path: {json.dumps(paths)}",
        "",
        "| measurement | n | p50 (ms) | p95 (ms) | p99 (ms) | CPU per call (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in results.items():
        digits = 2 if s["p50"] < 10 else 1
        lines.append(
            f"| {name} | {s['n']} | {s['p50']:.{digits}f} | {s['p95']:.{digits}f} "
            f"| {s['p99']:.{digits}f} | {s['cpu_ms']:.{digits}f} |"
        )
    get_p50 = results["GET /leads/{id}/score (SQLite)"]["p50"]
    inproc = results["in-process: read + score one lead, compiled (SQLite)"]["p50"]
    raw = results["in-process: raw LightGBM predict, one precomputed row (numpy)"]["p50"]
    lines += [
        "",
        f"statuses: {json.dumps(statuses)}",
        "service start until healthy: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in started.items())
        + ("; setup: " + ", ".join(f"{k} {v:.0f} s" for k, v in setup.items()) if setup else ""),
        f"GET p50 / in-process read+score p50: {get_p50 / inproc:.2f}x; "
        f"GET p50 / raw predict p50: {get_p50 / raw:.0f}x",
    ]
    batch = results["in-process: read + score one lead, the batch's code (SQLite)"]["p50"]
    lines.append(f"in-process read + score p50, batch's code / compiled: {batch / inproc:.0f}x")
    for name, s in results.items():
        if "rps" in s:
            lines.append(f"throughput, {name}: {s['rps']:.0f} requests/s")
    text = "\n".join(lines)
    print(text)
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out_dir / f"serve-{args.leads}-{stamp}.json").write_text(
        json.dumps(
            {
                "results": results,
                "statuses": statuses,
                "started": started,
                "setup": setup,
                "leads": args.leads,
                "requests": args.requests,
                "indexed": not args.no_index,
                "runs": args.runs,
                "clients": args.clients,
                "single_lead": paths,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--reference":
        _references(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
