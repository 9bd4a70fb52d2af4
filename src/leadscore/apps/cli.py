"""The `leadscore` command: init, generate, train, score, report, demo. Presentation only."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from leadscore.errors import LeadscoreError

app = typer.Typer(
    help="Predictive lead scoring: calibrated conversion probabilities next to your MQL rules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)  # commands it prints must copy as one line


def _show_version(value: bool) -> None:
    if value:
        out.print(f"leadscore {_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Predictive lead scoring: calibrated conversion probabilities next to your MQL rules."""


ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Project file (leadscore.yaml).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")]

#: The project file a command reads when --config is not given and the working folder has
#: one (else the file LEADSCORE_CONFIG names).
DEFAULT_PROJECT = "leadscore.yaml"


def project_file(config: Path | None) -> Path:
    """The project file of a command: --config, else ./leadscore.yaml, else the file
    LEADSCORE_CONFIG names (said on stderr: the variable is often set for deployments in a
    shell used for other projects too).

    None of them is an error, not the embedded defaults: a command run in the wrong folder
    would otherwise read a `crm.db` that is not there, or show an empty history as if it
    were the project's."""
    from leadscore.errors import ConfigError

    if config is not None:
        return config
    if Path(DEFAULT_PROJECT).is_file():
        return Path(DEFAULT_PROJECT)
    if os.environ.get("LEADSCORE_CONFIG"):
        path = Path(os.environ["LEADSCORE_CONFIG"])
        err.print(f"project file: {path} (from LEADSCORE_CONFIG)", highlight=False)
        return path
    raise ConfigError(
        f"no project file: no --config given, no {DEFAULT_PROJECT} in {Path.cwd()} and "
        "LEADSCORE_CONFIG is not set",
        "run `leadscore init <your export folder or database URL>` to write one, pass "
        "--config <file>, or try `leadscore demo`",
    )


VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs.")]


class Scenario(StrEnum):
    stationary = "stationary"
    drift = "drift"


class Language(StrEnum):
    en = "en"
    ja = "ja"


ScenarioOption = Annotated[
    Scenario,
    typer.Option(
        help="stationary, or drift: from 60% into the history the conversion rate doubles, a "
        "new lead source appears and pricing views stop tracking interest.",
    ),
]


def prefect_environment(verbose: bool) -> None:
    """Settings for the embedded Prefect engine; the user's own settings win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    if not verbose:
        # Prefect's own level is set in _quiet_prefect_console, once it is known whether
        # a Prefect server keeps this run's page.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        # MLflow draws a bar on stderr while it downloads a model from a tracking server.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        logging.getLogger("mlflow").setLevel(logging.ERROR)


def _check_prefect_api() -> None:
    """Fail fast, with the fix, when the flows would have no Prefect API to talk to.

    With `PREFECT_API_URL` set (environment or active Prefect profile) the flows use that
    server; without it Prefect starts a temporary local server in every process (seconds
    per command). A configured server that does not answer would otherwise surface as a
    long traceback from inside the flow engine. Same check as Prefect's own at flow start.
    """
    from prefect.client.base import ServerType
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    from leadscore.io.uris import redact_uri

    url = PREFECT_API_URL.value()
    if not url:
        if PREFECT_SERVER_EPHEMERAL_ENABLED.value():
            return  # Prefect starts its temporary local server
        raise LeadscoreError(
            "no Prefect API: PREFECT_API_URL is not set and Prefect's temporary server is "
            "disabled (PREFECT_SERVER_EPHEMERAL_ENABLED=false)",
            "set PREFECT_API_URL to a running Prefect server (`prefect server start`), or "
            "allow the temporary server with PREFECT_SERVER_EPHEMERAL_ENABLED=true",
        )
    with get_client(sync_client=True) as client:
        if client.server_type == ServerType.CLOUD:
            return  # Prefect Cloud: Prefect itself skips this check
        problem = client.api_healthcheck()
    if problem is None:
        return
    response = getattr(problem, "response", None)
    text = str(problem).splitlines()[0] if str(problem) else ""
    reason = (
        f"HTTP {response.status_code}"
        if response is not None
        else f"{type(problem).__name__}" + (f": {text}" if text else "")
    )
    where = (
        "the environment"
        if os.environ.get("PREFECT_API_URL")
        else "your Prefect profile (`prefect config view` shows it)"
    )
    how = (
        "`unset PREFECT_API_URL`"
        if os.environ.get("PREFECT_API_URL")
        else "`prefect config unset PREFECT_API_URL`"
    )
    raise LeadscoreError(
        f"the Prefect API at PREFECT_API_URL={redact_uri(url)} (set in {where}) does not "
        f"answer ({reason})",
        f"start that server (`prefect server start`) or correct PREFECT_API_URL; remove it "
        f"with {how} to let Prefect start a temporary local server for each command instead "
        "(slower)",
        transient=True,
    )


def _quiet_prefect_console(verbose: bool) -> None:
    """Keep Prefect's log lines off the terminal (the progress and the summary say it).

    With a Prefect server configured they still reach the run's page at INFO, as a
    worker's runs do: what each step did, with numbers. Prefect's temporary per-command
    server is gone when the command ends, so there only warnings are logged.
    """
    if verbose:
        return
    from prefect.logging.handlers import PrefectConsoleHandler
    from prefect.settings import PREFECT_API_URL

    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL)
    if "PREFECT_LOGGING_LEVEL" not in os.environ:
        level = logging.INFO if PREFECT_API_URL.value() else logging.WARNING
        logging.getLogger("prefect").setLevel(level)


@contextmanager
def _progress(enabled: bool):
    """A Rich progress display on stderr fed by the library's progress hook."""
    from leadscore.progress import reporting

    if not enabled:
        yield
        return
    progress = Progress(
        TextColumn("[bold]{task.description:<20}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    with progress, reporting(report):
        yield


#: Exit codes: 2 = nothing was done (bad input, setup); 3 = scores were published but a
#: monitoring check failed.
EXIT_USER_ERROR, EXIT_MONITORING = 2, 3


def _fail(exc: LeadscoreError, as_json: bool = False) -> None:
    summary = getattr(exc, "summary", None)
    if summary is not None and as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    label = "monitoring failed" if summary is not None else "error"
    err.print(f"[bold red]{label}:[/] {exc.problem}", highlight=False)
    if exc.fix:
        err.print(f"[bold]fix:[/] {exc.fix}", highlight=False)
    raise typer.Exit(EXIT_MONITORING if summary is not None else EXIT_USER_ERROR)


def _run_flow(name: str, verbose: bool, **params: Any) -> dict[str, Any]:
    from leadscore.config import load_config

    # Validate the project file before starting the engine: config errors fail in
    # milliseconds. The flow loads it again as its first task.
    params["config_path"] = str(project_file(params.get("config_path")))
    load_config(params["config_path"])
    if params.get("as_of") is not None:
        from leadscore.scoring.inputs import parse_as_of

        parse_as_of(params["as_of"])
    prefect_environment(verbose)
    _check_prefect_api()
    import leadscore_flows.report as report_module
    import leadscore_flows.review as review_module
    import leadscore_flows.score as score_module
    import leadscore_flows.train as train_module

    _quiet_prefect_console(verbose)
    flow = {
        "train": train_module.train_flow,
        "score": score_module.score_flow,
        "report": report_module.report_flow,
        "review": review_module.review_flow,
        "backfill": score_module.backfill_flow,
    }[name]
    return flow(**params)


def _emit(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    if summary.get("skipped"):
        # Another run holds the lock: nothing was done, which is not a failure.
        err.print(f"[bold yellow]skipped:[/] {summary['skipped']}", highlight=False)
        if summary.get("fix"):
            err.print(f"[bold]fix:[/] {summary['fix']}", highlight=False)
        raise typer.Exit(0)


def _fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


@app.command()
def generate(
    out_uri: Annotated[
        str,
        typer.Option(
            "--out",
            help="sqlite:///file.db (default), postgresql://user@host/db (the tables go "
            "into that database), or a folder for Parquet or CSV files.",
        ),
    ] = "sqlite:///crm.db",
    leads: Annotated[int, typer.Option("--leads", "-n", min=1, help="Number of leads.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    end: Annotated[
        str | None, typer.Option(help="Last day of history (default: today, UTC).")
    ] = None,
    file_format: Annotated[
        str, typer.Option("--format", help="parquet or csv for folders.")
    ] = "parquet",
    scenario: ScenarioOption = Scenario.stationary,
    days: Annotated[
        int, typer.Option("--days", min=30, help="Days of history, ending at --end.")
    ] = 730,
    sales_touches: Annotated[
        bool,
        typer.Option(
            "--sales-touches",
            help="Sales answers hand-raises (call, sales_email) after a random delay, and slow "
            "answers lose conversions (a known effect for `leadscore review`'s SLA section).",
        ),
    ] = False,
    accounts: Annotated[
        bool,
        typer.Option(
            "--accounts",
            help="Corporate leads belong to accounts (an account_id column; about 5 leads each, "
            "heavy-tailed) that share firmographics and buying projects; exact lead and "
            "account oracles in the ground truth.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Generate a synthetic B2B CRM (leads, activities, outcomes, hidden ground truth)."""
    summary = _generate(
        out_uri, leads, seed, end, file_format, not as_json, scenario.value, days, sales_touches,
        accounts,
    )  # fmt: skip
    _emit(summary, as_json)
    if not as_json:
        err.print(
            f"wrote {summary['rows']['leads']:,} leads and {summary['rows']['activities']:,} "
            f"activities to {summary['uri']} in {summary['seconds']:.1f} s"
        )


def _generate(
    uri: str,
    leads: int,
    seed: int,
    end: str | None,
    file_format: str,
    progress: bool,
    scenario: str = "stationary",
    days: int = 730,
    sales_touches: bool = False,
    accounts: bool = False,
) -> dict:
    from leadscore.config import resolve_uri
    from leadscore.io.tables import write_tables
    from leadscore.progress import reporter
    from leadscore.synthetic import generate_crm

    uri = resolve_uri(uri, Path.cwd())
    start = time.perf_counter()
    with _progress(progress):
        report = reporter()
        crm = generate_crm(
            leads, seed=seed, end=end, scenario=scenario, history_days=days,
            sales_touches=sales_touches, accounts=accounts,
        )  # fmt: skip
        report("writing", 0, 1)
        write_tables(crm.tables(), uri, file_format)
        report("writing", 1, 1)
    return {
        "command": "generate",
        "uri": uri,
        "seed": seed,
        "scenario": scenario,
        "days": days,
        "sales_touches": sales_touches,
        "accounts": accounts,
        "end": str(crm.end.date()),
        "rows": {
            **({"accounts": int(crm.leads["account_id"].nunique())} if accounts else {}),
            "leads": len(crm.leads),
            "activities": len(crm.activities),
            "conversions": int(crm.outcomes["converted_at"].notna().sum()),
        },
        "seconds": round(time.perf_counter() - start, 2),
    }


def _auc_range(record: dict[str, Any]) -> str:
    low, high = record.get("roc_auc_low"), record.get("roc_auc_high")
    return "" if low is None or high is None else f"{_fmt(low)}-{_fmt(high)}"


def _short(scorer: str) -> str:
    """A candidate's name in a narrow column: the variants without the lightgbm_ prefix."""
    return scorer.removeprefix("lightgbm_")


def _print_backtest(backtest: dict[str, Any] | None) -> None:
    if not backtest:
        return
    table = Table(title="Backtest: the recipe on each fold, fitted only on what was known before")
    table.add_column("fold", min_width=6)
    table.add_column("test period", ratio=1, min_width=10, overflow="fold")
    chosen = backtest.get("chosen", backtest.get("learner", "lightgbm"))
    scorers = backtest.get("scorers") or ["lightgbm", "logistic", "rules"]
    # The chosen recipe first, with its 95 % interval; then the other candidates and rules.
    others = [who for who in scorers if who != chosen]
    table.add_column(f"{_short(chosen)}*\nAUC", justify="right", no_wrap=True)
    table.add_column("95 %\ninterval", justify="right", no_wrap=True)
    for who in others:
        table.add_column(f"{_short(who)}\nAUC", justify="right", no_wrap=True, min_width=5)
    table.add_column(f"{_short(chosen)}*\nECE", justify="right", no_wrap=True, min_width=6)
    rows: dict[str, dict[str, Any]] = {}
    for record in backtest["folds"]:
        rows.setdefault(record["fold"], {"record": record})[record["scorer"]] = record
    for fold, row in rows.items():
        first = row["record"]
        table.add_row(
            fold,
            first["test_period"].replace("..", "..\n", 1),
            _fmt(row[chosen]["roc_auc"]),
            _auc_range(row[chosen]),
            *(_fmt(row[who]["roc_auc"]) if who in row else "" for who in others),
            _fmt(row[chosen]["ece"], 4),
        )
    err.print(table)
    if backtest.get("leaderboard"):
        metric = backtest.get("metric", "log_loss")
        board = sorted(backtest["leaderboard"], key=lambda r: r[metric] or 0.0,
                       reverse=metric != "log_loss")  # fmt: skip
        figures = ", ".join(f"{r['candidate']} {_fmt(r[metric], 4)}" for r in board)
        line = f"chosen recipe (*): {chosen}, by pooled {metric} ({figures}; a difference "
        err.print(line + "within backtest.tie_tolerance goes to the simpler)", highlight=False)
    for note in backtest["left_out"]:
        err.print(f"backtest: {note}", highlight=False)
    if backtest["refit"] and backtest["trained_through"]:
        err.print(
            f"registered model: the recipe refit on every labelled snapshot through "
            f"{backtest['trained_through']} (outcomes counted through "
            f"{backtest['outcomes_through']})",
            highlight=False,
        )


def _print_training(summary: dict[str, Any]) -> None:
    if summary.get("mode") == "rules-only":
        _print_rules_only(summary)
        return
    _print_checks(summary)
    table = Table(
        title=f"Newest backtest fold: {summary['splits']['test']} (the same recipe fitted one "
        "step earlier, never on these leads)"
    )
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("baseline (logistic)", justify="right")
    table.add_column("rules", justify="right")
    m, b, r = summary["model"], summary["baseline"], summary["rules"]
    for label, key, digits in (
        ("ROC-AUC", "roc_auc", 3),
        ("PR-AUC", "pr_auc", 3),
        ("Brier", "brier", 4),
        ("ECE", "ece", 4),
        ("top-decile lift", "top_decile_lift", 2),
        ("conversions in top decile", "top_decile_captured", 0),
    ):
        table.add_row(label, _fmt(m[key], digits), _fmt(b[key], digits), _fmt(r[key], digits))
    if summary.get("oracle_auc") is not None:
        table.add_row("oracle ROC-AUC (true probabilities)", _fmt(summary["oracle_auc"]), "", "")
    err.print(table)
    _print_backtest(summary.get("backtest"))
    _print_comparison(summary["comparison"])
    err.print(
        f"registered [bold]{summary['model_name']}[/] version {summary['model_version']}; "
        f"test rows {summary['rows']['test_rows']:,}, calibration: {summary['calibration']}"
    )
    gate = summary.get("promotion")
    if gate:
        verdict = (
            "[bold green]promoted to champion[/]"
            if gate["promoted"]
            else "[bold yellow]not promoted[/]: "
            + (
                f"champion stays version {gate['champion_version']}"
                if gate["champion_version"]
                else "no champion yet"
            )
        )
        err.print(f"promotion gate: {verdict} ({gate['reason']})", highlight=False)


def _print_rules_only(summary: dict[str, Any]) -> None:
    """A training run that found too little history: the rules' figures and what's next."""
    for warning in summary.get("warnings", []):
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    h, r = summary["history"], summary["rules"]
    err.print(f"[bold yellow]no model trained:[/] {summary['why']}", highlight=False)
    interval = r["roc_auc_interval"]
    auc = "—" if r["roc_auc"] is None else f"{r['roc_auc']:.3f}"
    if interval is not None:
        auc += f" [{_fmt(interval[0])}, {_fmt(interval[1])}]"
    err.print(
        f"rules only, on {h['examples']:,} labelled examples ({h['period']}; {h['conversions']:,} "
        f"conversions from {h['converting_leads']:,} leads): rule-score ROC-AUC {auc}; "
        f"{r['mqls']:,} MQLs convert at {_pct(r['mql_conversion_rate'])}, the rest at "
        f"{_pct(r['other_conversion_rate'])}",
        highlight=False,
    )
    err.print(
        f"`leadscore score` publishes the rules' scores (no probability, model_version empty) "
        f"until a model is promoted; `leadscore report` writes the rules' report (MLflow run "
        f"{summary['run_id']})",
        highlight=False,
    )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _print_checks(summary: dict[str, Any]) -> None:
    """Split, leakage guard and shift check: what the user must know before the numbers."""
    method = summary["split_method"]
    words = {
        "time": "by time (snapshots)",
        "order": "by arrival order (oldest train, newest test)",
        "random": "at random (seeded): the test AUC cannot show drift over time",
    }
    for warning in summary.get("warnings", []):
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    err.print(f"split {words.get(method, method)}", highlight=False)
    leakage = summary["leakage"]
    for finding in leakage["findings"]:
        verdict = "[bold red]excluded[/]" if finding["excluded"] else "[yellow]kept[/]"
        err.print(
            f"leakage guard: {verdict} '{finding['column']}': {finding['evidence']}",
            highlight=False,
        )
    if not leakage["findings"]:
        err.print("leakage guard: no column looks filled in after the outcome")
    shift = summary["shift"]
    if shift["auc"] is not None:
        lean = ", ".join(f"{t['feature']} ({t['share']:.0%})" for t in shift["top"])
        err.print(
            f"shift check: training vs test cohort told apart at ROC-AUC {shift['auc']:.3f}"
            + (f"; by {lean}" if lean else ""),
            highlight=False,
        )


def _interval(block: dict[str, Any]) -> str:
    if block.get("estimate") is None:
        return "—"
    return f"{block['estimate']:.3f} [{block['low']:.3f}, {block['high']:.3f}]"


def _print_comparison(comparison: dict[str, Any]) -> None:
    auc = comparison["roc_auc"]
    err.print(
        f"ROC-AUC with 95% intervals: model {_interval(auc['model'])}, rules "
        f"{_interval(auc['rules'])}, difference {_interval(auc['difference'])}"
    )
    err.print(f"[bold]{comparison['headline']}[/]", highlight=False)


@app.command()
def init(
    source: Annotated[
        str,
        typer.Argument(
            help="Your export: a folder of .csv/.tsv/.xlsx/.jsonl/.parquet files, one such "
            "file, or a database URL (sqlite:///crm.db, postgresql://host/db)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Project file to write.")] = Path(
        "leadscore.yaml"
    ),
    table: Annotated[
        list[str] | None,
        typer.Option("--table", "-t", help="Profile only this table (repeatable)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Profile an export and write a starting project file with comments (no training)."""
    from leadscore.apps.profiling import init_project, project_todos, summary_lines
    from leadscore.config import load_config

    try:
        path, profiles = init_project(source, out, table or None, force=force)
        config = load_config(path)
        rules = config.rules_path
        wrote_rules = not rules.exists()
        if wrote_rules:
            from leadscore.apps.starter_rules import starter_rules_text

            rules.write_text(starter_rules_text(config), encoding="utf-8")
    except LeadscoreError as exc:
        _fail(exc)
    todos = project_todos(profiles)
    summary = {
        "command": "init",
        "config": str(path),
        "rules": str(rules) if wrote_rules else None,
        "flat": config.flat,
        "split_method": config.split_method,
        "tables": {name: p.rows for name, p in profiles.items()},
        "undecided": todos,
    }
    _emit(summary, as_json)
    if not as_json:
        for line in summary_lines(profiles):
            err.print(line, highlight=False)
        err.print(f"wrote [bold]{path}[/]" + (f" and {rules.name}" if wrote_rules else ""))
        for item in todos:
            err.print(f"[yellow]TODO:[/] {item}", highlight=False)
        err.print(f"next: review it, then `leadscore train --config {path}`", highlight=False)


@app.command()
def train(
    config: ConfigOption = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Train as if it were this date: nothing dated from it on is read (leads, "
            "activities, conversions), as source.extract_date does.",
        ),
    ] = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Train, calibrate and register a conversion model (Prefect flow `train`)."""
    try:
        with _progress(not as_json):
            summary = _run_flow(
                "train", verbose, config_path=str(config) if config else None, as_of=as_of
            )
    except LeadscoreError as exc:
        _fail(exc)
    _emit(summary, as_json)
    if not as_json:
        _print_training(summary)


@app.command()
def tune(
    config: ConfigOption = None,
    budget: Annotated[
        str, typer.Option(help="How long to search: 90s, 10m, 1h (no trial starts after it).")
    ] = "10m",
    trials: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many trials (the first: yours).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the winner and its diff; write nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Search the LightGBM parameters on the backtest folds; write the winner to a params
    file the project file points to (model.params_file), with the diff."""
    try:
        with _progress(not as_json):
            summary = _tune(project_file(config), budget, trials, dry_run)
    except LeadscoreError as exc:
        _fail(exc, as_json)
    _emit(summary, as_json)
    if not as_json:
        _print_tuning(summary)


def _tune(config_path: Path | None, budget: str, trials: int | None, dry_run: bool) -> dict:
    from leadscore.apps.tuning import params_diff, write_winner
    from leadscore.config import load_config
    from leadscore.data.rules import load_rules
    from leadscore.io.sources import load_crm
    from leadscore.lifecycle.registry import Registry
    from leadscore.scoring.search import parse_budget, search
    from leadscore.scoring.training import build_training_set

    seconds = parse_budget(budget)
    if config_path is None or not Path(config_path).is_file():
        raise LeadscoreError(
            "tune needs a project file to write the winner to",
            "pass --config leadscore.yaml (`leadscore init` or `leadscore demo` writes one)",
        )
    config = load_config(config_path)
    if config.model.learner != "lightgbm":
        raise LeadscoreError(
            "tune searches LightGBM parameters, and model.learner is logistic",
            "set model.learner: lightgbm (the backtest still compares it with logistic)",
        )
    rules = load_rules(config.rules_path)
    crm = load_crm(config, sample=config.snapshots.sample_leads)
    data = build_training_set(crm, config, rules)
    found = search(data, config, seconds, trials, crm)
    best, current = found.best, found.current
    gain = found.improvement()
    better = best.number != current.number and gain > config.backtest.tie_tolerance
    summary: dict[str, Any] = {
        "metric": found.metric,
        "folds": found.folds,
        "trials": len(found.trials),
        "seconds": round(found.seconds, 1),
        "current": {"params": current.params, "metrics": current.metrics},
        "best": {"trial": best.number, "params": best.params, "metrics": best.metrics},
        "improvement": gain,
        "written": None,
        "diff": params_diff(current.params, best.params) if better else "",
    }
    table = found.table()
    children = [
        (f"trial {t.number}", {**t.params, "trial": t.number}, t.metrics) for t in found.trials
    ]
    summary["run_id"] = Registry.of(config).log_tuning_run(
        {"metric": found.metric, "folds": found.folds, "trials": len(found.trials),
         "budget_seconds": seconds, "best_trial": best.number, "improved": better},
        {f"best_{k}": v for k, v in best.metrics.items()}
        | {f"current_{k}": v for k, v in current.metrics.items()},
        children,
        {"trials": table},
        {"leadscore.kind": "tuning"},
    )  # fmt: skip
    if better and not dry_run:
        summary["written"] = write_winner(Path(config_path), config, best.params)
    return summary


def _print_tuning(summary: dict[str, Any]) -> None:
    metric = summary["metric"]
    current, best = summary["current"]["metrics"], summary["best"]["metrics"]
    err.print(
        f"{summary['trials']} trial(s) in {summary['seconds']:.0f} s, each the project's recipe "
        f"on the same {summary['folds']} backtest fold(s); pooled {metric}: yours "
        f"{_fmt(current[metric], 4)}, best {_fmt(best[metric], 4)} (trial "
        f"{summary['best']['trial']}; ROC-AUC {_fmt(current['roc_auc'])} -> "
        f"{_fmt(best['roc_auc'])})",
        highlight=False,
    )
    if not summary["diff"]:
        err.print(
            "your parameters stay: no trial beat them by more than backtest.tie_tolerance",
            highlight=False,
        )
        return
    err.print(summary["diff"], highlight=False, markup=False)
    written = summary["written"]
    if written is None:
        err.print("--dry-run: nothing written", highlight=False)
        return
    err.print(f"wrote {written['params_file']}", highlight=False)
    if written["project_diff"]:
        err.print(written["project_diff"], highlight=False, markup=False)
    err.print(
        "the winner was chosen on these folds, so its figure is optimistic; the next "
        "`leadscore train` backtests it against the other candidates",
        highlight=False,
    )


@app.command()
def score(
    config: ConfigOption = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Score as of this date (default: today); with --lead-id a date or a time "
            "(default: now, UTC).",
        ),
    ] = None,
    lead_id: Annotated[
        list[str] | None,
        typer.Option(
            "--lead-id",
            help="Score only this lead, on demand, and publish nothing (repeatable).",
        ),
    ] = None,
    rules_only: Annotated[
        bool,
        typer.Option(
            "--rules-only",
            help="Publish the rule file's scores alone (rule score, MQL flag, tiers by rule "
            "points; no probability), even when a champion model exists.",
        ),
    ] = False,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Score every open lead with the champion model and publish (Prefect flow `score`).

    Without a model yet (or with --rules-only) the rule file scores alone. With --lead-id:
    score just those leads now, the same way, without Prefect or publishing.
    """
    if lead_id:
        _score_on_demand(config, lead_id, as_of, as_json, rules_only)
        return
    try:
        with _progress(not as_json):
            summary = _run_flow(
                "score",
                verbose,
                config_path=str(config) if config else None,
                as_of=as_of,
                rules_only=rules_only,
            )
    except LeadscoreError as exc:
        _fail(exc, as_json)
    _emit(summary, as_json)
    if not as_json:
        by = (
            f"by the rules alone ({summary['rules']}; no model yet or --rules-only: no "
            "probability, model_version empty)"
            if summary.get("mode") == "rules-only"
            else f"with {summary['model_name']} v{summary['model_version']}"
        )
        err.print(
            f"published {summary['rows']['published']:,} scores as of {summary['as_of']} "
            f"({summary['rows']['mql']:,} rule MQLs) to table {summary['uris']['table']} in "
            f"{summary['uris']['publish']} {by}"
        )
        checks = summary["monitoring"]
        err.print(f"monitoring: {checks['status']}", highlight=False)
        for message in checks["messages"]:
            err.print(f"  {message}", highlight=False)
        sent = summary.get("alerts")
        if sent:
            err.print(
                f"hot-lead alerts: {sent['queued']} new; {sent['sent']} sent, "
                f"{sent['failed']} failed, {sent['pending']} waiting (leadscore alerts)",
                highlight=False,
            )
            for sink, error in sent["errors"].items():
                err.print(f"  [yellow]sink {sink}:[/] {error}", highlight=False)


@app.command()
def report(
    config: ConfigOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file (default: report.path).")
    ] = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Write the marketing report for the champion model (Prefect flow `report`)."""
    try:
        with _progress(not as_json):
            summary = _run_flow(
                "report",
                verbose,
                config_path=str(config) if config else None,
                out=str(out.resolve()) if out else None,
            )
    except LeadscoreError as exc:
        _fail(exc)
    _emit(summary, as_json)
    if not as_json and summary.get("mode") == "rules-only":
        err.print(summary["headline"], highlight=False)
        err.print(
            "no champion model yet: report on the rules alone written to "
            f"[bold]{summary['path']}[/]"
        )
    elif not as_json:
        _print_comparison(summary["comparison"])
        err.print(
            f"report for {summary['model_name']} v{summary['model_version']} written to "
            f"[bold]{summary['path']}[/] (open leads from {summary['open_leads']['from']})"
        )


@app.command()
def backfill(
    config: ConfigOption = None,
    start: Annotated[
        str, typer.Option("--from", help="The first past date to score (YYYY-MM-DD).")
    ] = ...,  # type: ignore[assignment]
    end: Annotated[str | None, typer.Option("--to", help="The last date (default: today).")] = None,
    every: Annotated[int, typer.Option("--every", help="Days between the dates.", min=1)] = 7,
    rules_only: Annotated[
        bool,
        typer.Option("--rules-only", help="Score with the rule file alone, even with a champion."),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Rescore dates that already have a published run."),
    ] = False,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Score past dates as the nightly run would have (Prefect flow `backfill`), one run per
    date, so that `leadscore review` has months to show. No alerts, no monitoring."""
    try:
        with _progress(not as_json):
            summary = _run_flow(
                "backfill",
                verbose,
                config_path=str(config) if config else None,
                start=start,
                end=end,
                every_days=every,
                rules_only=rules_only,
                replace=replace,
            )
    except LeadscoreError as exc:
        _fail(exc, as_json)
    _emit(summary, as_json)
    if not as_json:
        runs = summary["runs"]
        rows = sum(r["published"] for r in runs)
        by = (
            f"by the rules alone ({summary['rules_file']['name']})"
            if summary["mode"] == "rules-only"
            else f"with {summary['model_name']} v{summary['model_version']}"
        )
        err.print(
            f"backfilled {len(runs)} runs from {summary['from']} to {summary['to']} "
            f"({rows:,} scores) {by}, rule file {summary['rules_file']['sha256']}",
            highlight=False,
        )


@app.command()
def review(
    config: ConfigOption = None,
    month: Annotated[
        str | None,
        typer.Option(
            "--month",
            "-m",
            help="The month to review, YYYY-MM, or 'previous' (the calendar month before "
            "today); default: the month of the newest published run.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file (default: review.path).")
    ] = None,
    language: Annotated[
        Language | None,
        typer.Option("--language", help="en or ja (default: report.language)."),
    ] = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Write marketing's monthly review (Prefect flow `review`): the MQL -> conversion KPI of
    the rules and of tier A for 12 months, the rule file's versions and what the last change
    did, the rules' diagnostics and the sales SLA. Reads the published history; publishes
    nothing."""
    if month is not None:
        from leadscore.evaluation.review import parse_month

        try:
            parse_month(month)
        except LeadscoreError as exc:
            _fail(exc, as_json)
    try:
        with _progress(not as_json):
            summary = _run_flow(
                "review",
                verbose,
                config_path=str(config) if config else None,
                month=month,
                out=str(out.resolve()) if out else None,
                language=language.value if language else None,
            )
    except LeadscoreError as exc:
        _fail(exc, as_json)
    _emit(summary, as_json)
    if not as_json:
        _print_review(summary)


def _print_review(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"MQL -> conversion by month (outcomes known until "
                  f"{summary['outcomes_until']}; * provisional)")  # fmt: skip
    table.add_column("month", no_wrap=True)
    for head in ("MQLs", "MQL→conv", "tier A", "A→conv", "AUC rules", "AUC model"):
        table.add_column(head, justify="right", no_wrap=True)
    table.add_column("rules", no_wrap=True)
    for m in summary["months"]:
        table.add_row(
            m["month"] + ("*" if m["provisional"] else ""),
            f"{m['rule_mqls'] or 0:,.0f}",
            _pct(m["rule_mql_rate"]),
            f"{m['tier_as'] or 0:,.0f}",
            _pct(m["tier_a_rate"]),
            _fmt(m["rule_roc_auc"]),
            _fmt(m["model_roc_auc"]),
            m["rule_versions"][:8],
        )
    err.print(table)
    effect = summary.get("effect")
    if effect and effect["days"] and effect["difference"][0] is not None:
        before, after = effect["sides"]
        d, low, high = effect["difference"]
        err.print(
            f"rule file change of {effect['changed_on']}: MQL -> conversion "
            f"{_pct(before['rate'])} in the {effect['days']} days before, {_pct(after['rate'])} "
            f"after ({d * 100:+.1f} points, 95% interval {low * 100:+.1f} to {high * 100:+.1f})",
            highlight=False,
        )
    sla = summary.get("sla")
    for name, group in (sla or {}).get("groups", {}).items():
        shares = ", ".join(f"{w['target']} {_pct(w['share'])}" for w in group["within"])
        d, low, high = group["answered_within_hour_minus_later"]
        effect = (
            f"; converted within the hour minus later {d * 100:+.1f} points "
            f"({low * 100:+.1f} to {high * 100:+.1f})"
            if d is not None
            else ""
        )
        who = "rule MQLs" if name == "rules" else "tier A"
        err.print(f"sales SLA, {who} of closed months ({group['leads']:,}): answered within "
                  f"{shares}{effect}", highlight=False)  # fmt: skip
    err.print(f"review of {summary['month']} written to [bold]{summary['path']}[/]")


ReasonOption = Annotated[
    str, typer.Option("--reason", "-r", help="Why (recorded in the registry and the history).")
]


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered model version to make champion.")],
    reason: ReasonOption,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make VERSION the champion by hand, bypassing the gate, with a recorded reason."""
    _move_champion(config, as_json, version=version, reason=reason)


@app.command()
def rollback(
    reason: ReasonOption, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Make the previous champion champion again, with a recorded reason."""
    _move_champion(config, as_json, version=None, reason=reason)


def _move_champion(config: Path | None, as_json: bool, version: str | None, reason: str) -> None:
    from leadscore.config import load_config
    from leadscore.lifecycle import promotion

    prefect_environment(verbose=False)
    try:
        project = load_config(project_file(config))
        if version is None:
            summary = promotion.rollback(project, reason)
        else:
            summary = promotion.move_champion(project, version, reason)
    except LeadscoreError as exc:
        _fail(exc)
    _emit(summary, as_json)
    if not as_json:
        err.print(
            f"{summary['model_name']}: champion is now version {summary['champion_version']} "
            f"(was {summary['previous_champion'] or 'none'}); reason recorded",
            highlight=False,
        )


scores_app = typer.Typer(help="Published scores: remove a wrong run.", no_args_is_help=True)
app.add_typer(scores_app, name="scores")
keys_app = typer.Typer(
    help="API keys of `leadscore serve`: create, list, revoke.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


def _key_store(config: Path | None):
    from leadscore.config import load_config
    from leadscore.io.keys import KeyStore

    project = load_config(project_file(config))
    return project, KeyStore(project.publish_uri, project.service.keys_table)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses it (e.g. crm-webhook).")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="score, events or admin; repeat for several."),
    ],
    rate: Annotated[
        int | None,
        typer.Option("--rate", min=1, help="Calls per minute (default: service.rate_per_minute)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    try:
        project, store = _key_store(config)
        try:
            key = store.create(name, scope, rate or project.service.rate_per_minute)
        finally:
            store.close()
    except LeadscoreError as exc:
        _fail(exc)
    sys.stdout.write(key + "\n")
    err.print(
        f"key '{name}' with scope {', '.join(sorted(set(scope)))}: shown this once; keep it in "
        "the caller's secret store and send it as `Authorization: Bearer <key>`",
        highlight=False,
    )


@keys_app.command("list")
def keys_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Every key: id, name, scopes, rate, created, revoked, last used (never the key)."""
    try:
        _, store = _key_store(config)
        try:
            keys = store.list()
        finally:
            store.close()
    except LeadscoreError as exc:
        _fail(exc)
    if as_json:
        _emit({"command": "keys list", "keys": keys.to_dict("records")}, True)
        return
    table = Table(title="API keys")
    for column in keys.columns:
        table.add_column(column, overflow="fold")
    for row in keys.itertuples(index=False):
        table.add_row(*["" if _blank(v) else str(v)[:19] for v in row])
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`) or the key.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a key: the service refuses it from its next call on."""
    try:
        _, store = _key_store(config)
        try:
            revoked = store.revoke(key_id)
        finally:
            store.close()
    except LeadscoreError as exc:
        _fail(exc)
    if not revoked:
        err.print(f"no active key with id {key_id} (`leadscore keys list`)", highlight=False)
        raise typer.Exit(EXIT_USER_ERROR)
    err.print(f"revoked key {key_id}", highlight=False)


def _blank(value: Any) -> bool:
    """None, NaN or NaT: an empty cell."""
    import pandas as pd

    return value is None or bool(pd.isna(value))


@scores_app.command("prune")
def prune_scores(
    after: Annotated[
        str,
        typer.Option("--after", help="Remove every run with an as-of date after this date."),
    ],
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove runs dated after --after from the latest scores, history, runs and monitoring.

    One transaction; a lead whose latest score goes gets its newest remaining one back.
    """
    from leadscore.config import load_config
    from leadscore.errors import ConfigError
    from leadscore.io import publish

    try:
        project = load_config(project_file(config))
        try:
            day = _parse_date(after)
        except ValueError:
            raise ConfigError(
                f"--after {after!r} is not a date", "use YYYY-MM-DD, e.g. 2026-03-01"
            ) from None
        p = project.publish
        tables = publish.ScoreTables(latest=p.table, history=p.history_table, runs=p.runs_table)
        counts = publish.prune_scores(
            project.publish_uri, tables, day, project.monitoring.table, dry_run=dry_run
        )
    except LeadscoreError as exc:
        _fail(exc)
    summary = {"command": "scores prune", "after": str(day.date()), "dry_run": dry_run}
    summary["rows"] = counts
    _emit(summary, as_json)
    if not as_json:
        verb = "would remove" if dry_run else "removed"
        removed = ", ".join(
            f"{n:,} from {table}" for table, n in counts.items() if table != "restored"
        )
        err.print(
            f"{verb} the runs dated after {day.date()}: {removed}; "
            f"{counts['restored']:,} lead(s) {'would get' if dry_run else 'got'} their newest "
            "earlier score back in the latest table",
            highlight=False,
        )


def _parse_date(text: str):
    """A date given on the command line (pandas is imported only when needed)."""
    import pandas as pd

    stamp = pd.Timestamp(text)
    if pd.isna(stamp):
        raise ValueError(text)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


@app.command()
def promotions(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The promotion history: every gate decision, manual promotion and rollback."""
    from leadscore.config import load_config
    from leadscore.lifecycle import promotion

    try:
        project = load_config(project_file(config))
        history = promotion.read_history(
            project.publish_uri, project.promotion.table, project.mlflow.registered_model
        )
    except LeadscoreError as exc:
        _fail(exc)
    if as_json:
        _emit({"command": "promotions", "history": history.to_dict("records")}, True)
        return
    table = Table(title=f"Promotion history of {project.mlflow.registered_model}")
    for column in ("decided_at", "version", "action", "champion_after", "reason"):
        table.add_column(column, overflow="fold")
    for row in history.itertuples():
        table.add_row(
            str(row.decided_at)[:19],
            str(row.version),
            str(row.action),
            str(row.champion_after),
            str(row.reason),
        )
    out.print(table)


class ExportFormat(StrEnum):
    salesforce = "salesforce"
    hubspot = "hubspot"
    csv = "csv"


@app.command()
def export(
    config: ConfigOption = None,
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", help="Column layout: salesforce, hubspot or csv."),
    ] = ExportFormat.csv,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="File to write (default: leadscore-<format>-<as-of>.csv)."
        ),
    ] = None,
    every_lead: Annotated[
        bool,
        typer.Option("--all", help="Every lead's newest score, not only the newest run's leads."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the latest scores as a file your CRM imports (README: CRM write-back files)."""
    from leadscore.config import load_config
    from leadscore.io import export as writer

    try:
        project = load_config(project_file(config))
        target = out_path or Path(f"leadscore-{fmt.value}-latest.csv")
        rows, newest = writer.export_scores(
            project.publish_uri, project.publish.table, fmt.value, target, every_lead
        )
        if out_path is None:  # named after the run it holds
            named = target.with_name(f"leadscore-{fmt.value}-{newest}.csv")
            target = target.replace(named)
    except LeadscoreError as exc:
        _fail(exc, as_json)
    summary = {"command": "export", "format": fmt.value, "rows": rows, "as_of": newest,
               "path": str(target.resolve())}  # fmt: skip
    _emit(summary, as_json)
    if not as_json:
        err.print(f"wrote {rows:,} scores as of {newest} for {fmt.value} to {target}")


@app.command()
def alerts(
    config: ConfigOption = None,
    deliver: Annotated[
        bool, typer.Option("--deliver", help="Send the alerts that are due now (for a cron).")
    ] = False,
    retry: Annotated[
        bool, typer.Option("--retry", help="Queue the failed alerts again and send them.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="Newest alerts to list.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Hot-lead alerts: pending, sent and failed; send what is due, or retry the failed."""
    from leadscore.config import load_config
    from leadscore.errors import ConfigError
    from leadscore.io import alerts as outbox

    summary: dict[str, Any] = {"command": "alerts"}
    try:
        project = load_config(project_file(config))
        uri, table = project.publish_uri, project.alerts.table
        if retry:
            summary["requeued"] = outbox.retry_failed(uri, table)
        if deliver or retry:
            if not project.alerts.sinks:
                raise ConfigError(
                    "alerts.sinks is empty: there is nowhere to send alerts",
                    "add a sink to the project file (README: Hot-lead alerts)",
                )
            summary["delivery"] = outbox.deliver(uri, project.alerts).as_dict()
        counts, rows = outbox.read_outbox(uri, table, limit)
    except LeadscoreError as exc:
        _fail(exc)
    summary["counts"] = counts
    summary["alerts"] = rows.to_dict("records")
    if as_json:
        _emit(summary, True)
    else:
        if "requeued" in summary:
            out.print(f"queued {summary['requeued']} failed alerts again")
        if "delivery" in summary:
            done = summary["delivery"]
            out.print(
                f"sent {done['sent']}, failed {done['failed']}, still pending {done['pending']}"
            )
            for sink, error in done["errors"].items():
                err.print(f"[yellow]sink {sink}:[/] {error}", highlight=False)
        table_view = Table(
            title=f"Alerts in {table}: "
            + ", ".join(f"{n} {status}" for status, n in counts.items())
        )
        for column in ("created_at", "lead_id", "sink", "status", "attempts", "changes", "error"):
            table_view.add_column(column, overflow="fold")
        for row in rows.itertuples():
            table_view.add_row(
                str(row.created_at)[:19],
                str(row.lead_id),
                str(row.sink),
                str(row.status),
                str(row.attempts),
                str(row.changes),
                "" if row.last_error is None else str(row.last_error),
            )
        out.print(table_view)
    if counts["failed"] and (deliver or retry):
        raise typer.Exit(EXIT_MONITORING)


@app.command()
def demo(
    leads: Annotated[
        int, typer.Option("--leads", "-n", min=500, help="Leads to generate.")
    ] = 20_000,
    workdir: Annotated[
        Path, typer.Option("--workdir", "-w", help="Where data, MLflow and scores go.")
    ] = Path("leadscore-demo"),
    seed: Annotated[int, typer.Option(help="Random seed of the generated CRM.")] = 7,
    scenario: ScenarioOption = Scenario.stationary,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Generate a CRM, train, and score open leads: the whole story on embedded defaults."""
    from leadscore.config import config_from_dict, dump_config

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "leadscore.yaml"
    rules_path = workdir / "mql_rules.yaml"
    try:
        rules_path.write_text(_default_rules_text(), encoding="utf-8")
        cfg = config_from_dict(
            {
                "source": {"uri": "sqlite:///crm.db", "ground_truth": {}},
                "rules": "mql_rules.yaml",
                "publish": {"uri": "sqlite:///crm.db"},
                "mlflow": {
                    "tracking_uri": "sqlite:///mlflow.db",
                    "artifact_location": "mlartifacts",
                },
                "report": {"path": "report.html", "sales_capacity_per_week": 150},
            },
            base_dir=workdir,
            environ={},
        )
        config_path.write_text(
            "# leadscore project file written by `leadscore demo`; edit and rerun\n"
            "# `leadscore train -c leadscore.yaml` and `leadscore score -c leadscore.yaml`.\n"
            + dump_config(cfg),
            encoding="utf-8",
        )
        if not as_json:
            err.print(f"[bold]1/4[/] generating {leads:,} leads into {workdir / 'crm.db'}")
        generated = _generate(
            f"sqlite:///{workdir / 'crm.db'}",
            leads,
            seed,
            None,
            "parquet",
            not as_json,
            scenario.value,
        )
        if not as_json:
            err.print(
                f"[bold]2/4[/] training (Prefect flow `train`, MLflow at {workdir / 'mlflow.db'})"
            )
        with _progress(not as_json):
            trained = _run_flow("train", verbose, config_path=str(config_path))
        if not as_json:
            _print_training(trained)
            err.print("[bold]3/4[/] scoring open leads (Prefect flow `score`)")
        with _progress(not as_json):
            scored = _run_flow(
                "score", verbose, config_path=str(config_path), as_of=generated["end"]
            )
        if not as_json:
            err.print("[bold]4/4[/] writing the report for marketing (Prefect flow `report`)")
        with _progress(not as_json):
            reported = _run_flow("report", verbose, config_path=str(config_path))
    except LeadscoreError as exc:
        _fail(exc)
    summary = {
        "command": "demo",
        "model": trained["model"],
        "rules": trained["rules"],
        "oracle_auc": trained["oracle_auc"],
        "rows": {
            **trained["rows"],
            "generated_leads": generated["rows"]["leads"],
            "generated_activities": generated["rows"]["activities"],
            "scored": scored["rows"]["scored"],
            "published": scored["rows"]["published"],
            "scored_mql": scored["rows"]["mql"],
        },
        "comparison": trained["comparison"],
        "tiers": scored["tiers"],
        "model_name": trained["model_name"],
        "model_version": trained["model_version"],
        "run_id": trained["run_id"],
        "as_of": scored["as_of"],
        "config": str(config_path),
        "report": reported["path"],
        "uris": {
            **trained["uris"],
            "publish": scored["uris"]["publish"],
            "table": scored["uris"]["table"],
        },
    }
    _emit(summary, as_json)
    if not as_json:
        _print_demo(summary, workdir)


def _score_on_demand(
    config: Path | None,
    lead_ids: list[str],
    as_of: str | None,
    as_json: bool,
    rules_only: bool = False,
) -> None:
    """`score --lead-id`: the leads read by id, scored like the batch, ranked in the latest run."""
    from leadscore.config import load_config
    from leadscore.data.rules import load_rules
    from leadscore.io.publish import RULES_ONLY_MODEL
    from leadscore.lifecycle.registry import choose_scoring
    from leadscore.scoring import ondemand
    from leadscore.scoring.inputs import parse_as_of
    from leadscore.scoring.scorer import Scorer

    prefect_environment(verbose=False)
    try:
        project = load_config(project_file(config))
        moment = parse_as_of(as_of, moment=True)
        ondemand.check_lead_ids(lead_ids)
        champion, why = choose_scoring(project, rules_only)
        rules = load_rules(project.rules_path)
        if champion is None:
            err.print(f"rules-only scoring: {why}", highlight=False)
            scorer = Scorer.rules_only(rules, project)
        else:
            scorer = champion.scorer(rules, project)
        crm = ondemand.read_leads(scorer, lead_ids, moment)
        population = ondemand.load_population(project, scorer.model)
        scores = ondemand.score_leads(crm, lead_ids, scorer, moment, population)
    except LeadscoreError as exc:
        _fail(exc)
    summary = {
        "command": "score",
        "as_of": moment.isoformat() + "Z",
        "model_name": RULES_ONLY_MODEL if champion is None else champion.entry.name,
        "model_version": None if champion is None else champion.entry.version,
        "reference": population.describe() if population is not None else None,
        "leads": ondemand.as_records(scores),
    }
    _emit(summary, as_json)
    if not as_json:
        _print_on_demand(summary)


def _print_on_demand(summary: dict[str, Any]) -> None:
    ref = summary["reference"]
    among = (
        "no reference population: nothing published and no test cohort with the model"
        if ref is None
        else f"percentile among {ref['leads']:,} leads of "
        + (
            f"the run published for {ref['as_of_date']}"
            if ref["source"] == "published"
            else "the model's test cohort"
        )
    )
    by_rules = summary["model_version"] is None
    for lead in summary["leads"]:
        percentile = "—" if lead["percentile"] is None else f"{lead['percentile']:.1f}"
        probability = "—" if by_rules else f"{lead['conversion_probability']:.3f}"
        out.print(
            f"[bold]lead {lead['lead_id']}[/]: probability {probability}, "
            f"percentile {percentile}, tier {lead['tier'] or '—'}",
            highlight=False,
            soft_wrap=True,
        )
        fired = ", ".join(lead["rules_fired"]) or "none"
        mql = "MQL" if lead["is_mql"] else "not an MQL"
        rules = f"  rules: score {lead['rule_score']:g}, {mql} (fired: {fired})"
        out.print(rules, markup=False, soft_wrap=True)
        for label, reasons in (("up:  ", lead["reasons_up"]), ("down:", lead["reasons_down"])):
            out.print(f"  {label} {'; '.join(reasons) or '—'}", markup=False, soft_wrap=True)
    who = (
        "by the rules alone (tier by rule points)"
        if by_rules
        else f"with {summary['model_name']} v{summary['model_version']}"
    )
    err.print(
        f"as of {summary['as_of']} {who}; {among}; nothing published",
        highlight=False,
    )


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    log_level: Annotated[
        str, typer.Option("--log-level", help="critical, error, warning, info or debug.")
    ] = "info",
    rules_only: Annotated[
        bool,
        typer.Option("--rules-only", help="Serve the rule file's scores alone (no probability)."),
    ] = False,
) -> None:
    """Serve on-demand scores over HTTP: GET /leads/{id}/score, POST /score, GET /health."""
    from leadscore.apps import service
    from leadscore.config import load_config

    prefect_environment(verbose=False)
    try:
        project = load_config(project_file(config))
        service.check_champion(project, rules_only)
    except LeadscoreError as exc:
        _fail(exc)
    service.serve(project, host, port, log_level.lower(), rules_only)


def _print_demo(summary: dict[str, Any], workdir: Path) -> None:
    m, r = summary["model"], summary["rules"]
    test_conv = summary["rows"]["test_conversions"]
    table = Table(title="Model vs MQL rules on the newest labelled cohort")
    table.add_column("")
    table.add_column("model", justify="right")
    table.add_column("rules", justify="right")
    table.add_row("ROC-AUC", _fmt(m["roc_auc"]), _fmt(r["roc_auc"]))
    table.add_row("PR-AUC", _fmt(m["pr_auc"]), _fmt(r["pr_auc"]))
    table.add_row(
        f"conversions in top decile (of {test_conv:,})",
        _fmt(m["top_decile_captured"], 0),
        _fmt(r["top_decile_captured"], 0),
    )
    out.print(table)
    out.print(
        f"scores: table [bold]{summary['uris']['table']}[/] in {workdir / 'crm.db'} "
        f"({summary['rows']['published']:,} open leads as of {summary['as_of']})"
    )
    out.print(f"[bold]{summary['comparison']['headline']}[/]", highlight=False)
    out.print(f"report for marketing: [bold]{summary['report']}[/] (open it in a browser)")
    out.print(f"project file: {summary['config']}")
    tracking = summary["uris"]["tracking"]
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    out.print(f"browse the run: [bold]{mlflow_cli} ui --backend-store-uri {tracking}[/]")


def _default_rules_text() -> str:
    from importlib.resources import files

    return files("leadscore").joinpath("defaults/mql_rules.yaml").read_text(encoding="utf-8")


#: Exit code of an unexpected failure (a bug, or a fault leadscore does not know yet).
EXIT_UNEXPECTED = 1
#: Values that may be lead data inside an error message: quoted text, e-mail addresses,
#: UUIDs and other long hex tokens, numbers of three digits or more.
_DATA_LIKE = re.compile(
    r"'[^']*'|\"[^\"]*\"|\S+@\S+|\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b"
    r"|\b[0-9a-fA-F]*\d[0-9a-fA-F]{7,}\b|\b\d{3,}\b"
)


def crash_log_folder() -> Path:
    """Where the full traceback of an unexpected failure is written (the user's own)."""
    if os.environ.get("LEADSCORE_LOG_DIR"):
        return Path(os.environ["LEADSCORE_LOG_DIR"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "leadscore"


def _short_message(exc: BaseException) -> str:
    """The first line of the message, with anything that may be lead data masked."""
    lines = str(exc).strip().splitlines()
    text = _DATA_LIKE.sub("…", lines[0] if lines else "")
    return text if len(text) <= 160 else text[:159] + "…"


def _where(exc: BaseException) -> str:
    """The innermost frame of leadscore's own code the error passed through."""
    import traceback

    own = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "leadscore" in Path(frame.filename).parts
        or "leadscore_flows" in Path(frame.filename).parts
        or Path(frame.filename).parent.name == "flows"
    ]
    if not own:
        return ""
    frame = own[-1]
    return f" in {Path(frame.filename).name}:{frame.lineno} ({frame.name})"


def report_crash(exc: BaseException, command: str) -> Path | None:
    """Write the full traceback to a private log file; print one line that holds no data.

    A traceback can carry lead data (MLflow, for one, puts the whole input frame into its
    message), so the terminal only gets the type, a masked first line and the file's path.
    """
    import traceback

    path: Path | None = None
    try:
        folder = crash_log_folder()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = folder / f"crash-{stamp}-{os.getpid()}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as log:
            log.write(f"leadscore {_version()} {command}\n")
            log.write("".join(traceback.format_exception(exc)))
    except OSError:
        path = None
    err.print(
        f"[bold red]unexpected error:[/] {type(exc).__name__}{_where(exc)}: {_short_message(exc)}",
        highlight=False,
    )
    if path is not None:
        err.print(f"full traceback: {path}", highlight=False)
    err.print(
        "this is a bug or a fault leadscore does not handle yet: please report it (the "
        "command, the line above and the log file, after checking that the file holds no "
        "data you cannot share) in the leadscore repository's issue tracker",
        highlight=False,
    )
    return path


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("leadscore")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _stop_on_signal(signum: int, waited: list[str]) -> None:
    """SIGINT/SIGTERM: one line, no child process left, exit 130/143 (called on a thread)."""
    import signal as signals

    from leadscore import interrupts

    name = signals.Signals(signum).name
    tty = sys.stderr.isatty()
    # Raw writes: the progress display may hold the console's lock on another thread.
    if tty:
        os.write(2, b"\x1b[?25h\n")  # the progress display hides the cursor
    left = interrupts.stop_children()
    finished = f" after finishing {' and '.join(waited)}" if waited else ""
    line = (
        f"interrupted by {name}: stopped{finished}; nothing half-done was kept (scores are "
        "published in one transaction, a registered model always has its gate decision)"
    )
    if left:
        line += f"; {left} child process(es) had to be killed"
    os.write(2, (line + "\n").encode("utf-8", "replace"))
    os._exit(interrupts.EXIT_CODES[signum])


def main() -> None:
    """Console entry point: an unexpected failure ends in one line, not a traceback."""
    from leadscore import interrupts

    if sys.argv[1:2] != ["serve"]:  # the service stops gracefully by uvicorn's own handling
        interrupts.install(_stop_on_signal)
    try:
        app()
    except Exception as exc:
        report_crash(exc, " ".join(sys.argv[1:2]))
        sys.exit(EXIT_UNEXPECTED)


if __name__ == "__main__":
    main()
