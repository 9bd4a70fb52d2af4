"""Prefect tasks shared by the flows: one I/O or compute step each of the library, retries on
I/O only, the run's log lines and progress. The work itself is the library's."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from leadscore.config import ProjectConfig, load_config
from leadscore.data.accounts import check_accounts
from leadscore.data.rules import RuleFileVersion, RuleSet, load_rules
from leadscore.data.rules import read_rule_file as read_rule_file_
from leadscore.errors import ConfigError, DataError, LeadscoreError, TooLittleHistoryError
from leadscore.evaluation import evidence as evidence_module
from leadscore.evaluation import report as report_module
from leadscore.evaluation import review as review_module
from leadscore.evaluation import rules_only
from leadscore.i18n import Words
from leadscore.io import alerts, locking, publish
from leadscore.io.history import ScoreHistory
from leadscore.io.sources import CRMData, load_crm
from leadscore.io.uris import redact_uri
from leadscore.lifecycle import monitoring, promotion, run_page, tracking
from leadscore.lifecycle.registry import Champion, RegisteredModel, Registry, choose_scoring
from leadscore.progress import reporter
from leadscore.scoring import partitions, training
from leadscore.scoring.scorer import Scorer, open_lead_preview


def io_retry_delays(text: str | None) -> list[float]:
    """Seconds before each retry of a reading or publishing step: 2, 5 and 15 unless
    LEADSCORE_IO_RETRY_DELAYS says otherwise ("1,1,30"; "" or "0" for no retry)."""
    if text is None:
        return [2.0, 5.0, 15.0]
    try:
        delays = [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        delays = [-1.0]
    if not all(0 <= d <= 3600 for d in delays):  # NaN fails this too
        raise ConfigError(
            f"LEADSCORE_IO_RETRY_DELAYS={text!r} is not a list of seconds",
            "give seconds between 0 and 3600 separated by commas, e.g. 2,5,15",
        )
    return [] if delays == [0.0] else delays


IO_RETRY_DELAYS = io_retry_delays(os.environ.get("LEADSCORE_IO_RETRY_DELAYS"))
IO_RETRIES = len(IO_RETRY_DELAYS)


def retry_unless_user_error(task, task_run, state) -> bool:
    """Retry transient failures (network, locks), never a user's bad input or config."""
    try:
        state.result()
    except LeadscoreError as exc:
        return exc.transient
    except Exception:
        return True
    return False


io_task = task(
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_unless_user_error,
    cache_policy=NO_CACHE,
)
compute_task = task(cache_policy=NO_CACHE)


def _step(stage: str, work, *args, **kwargs):
    """Run one library step with a progress line of its own."""
    report = reporter()
    report(stage, 0, 1)
    out = work(*args, **kwargs)
    report(stage, 1, 1)
    return out


# -- inputs ----------------------------------------------------------------------------------


@compute_task
def read_config(config_path: str | None) -> ProjectConfig:
    """Load and validate the project file (once, at the edge)."""
    return load_config(config_path)


@compute_task
def read_rules(config: ProjectConfig) -> RuleSet:
    return load_rules(config.rules_path)


@compute_task
def read_rule_file(config: ProjectConfig) -> tuple[RuleSet, RuleFileVersion]:
    """The rules and the version of the file they were read from (its SHA-256 and text)."""
    return read_rule_file_(config.rules_path)


@io_task
def load_source(
    config: ProjectConfig,
    activities_since: pd.Timestamp | None = None,
    activities_until: pd.Timestamp | None = None,
    sample: int | None = None,
    as_of: pd.Timestamp | None = None,
) -> CRMData:
    """Read leads, activities and outcomes from the configured source (or a lead sample),
    as an extract taken `as_of` (else `source.extract_date`) would hold them."""
    crm = _step(
        "loading data",
        load_crm,
        config,
        activities_since=activities_since,
        activities_until=activities_until,
        sample=sample,
        as_of=as_of,
    )
    logger = get_run_logger()
    logger.info(
        "read %s leads, %s activities and %s conversions from %s",
        f"{len(crm.leads):,}",
        f"{len(crm.activities):,}",
        f"{len(crm.outcomes):,}" if not crm.flat else "(a flat export's label)",
        redact_uri(config.source_uri),
    )
    if crm.extract_date is not None:
        logger.info(
            "read as of %s: leads, activities and conversions dated before it (%s leads)",
            crm.extract_date.date(),
            f"{len(crm.leads):,}",
        )
    if crm.sampled_from is not None:
        logger.info(
            "training on a sample of %s of the source's %s leads (snapshots.sample_leads)",
            f"{len(crm.leads):,}",
            f"{crm.sampled_from:,}",
        )
    check_accounts(crm, config)
    for line in crm.checks.summary():
        logger.warning("%s", line)
    return crm


# -- training --------------------------------------------------------------------------------


@compute_task
def build_training_set(
    crm: CRMData, config: ProjectConfig, rules: RuleSet
) -> training.TrainingSet | TooLittleHistoryError:
    """The training set, or why the history is too small for a model: then the flow reports
    on the rules alone, which is a run's outcome, not this task's failure."""
    try:
        data = training.build_training_set(crm, config, rules)
    except TooLittleHistoryError as exc:
        get_run_logger().warning("no model can be trained: %s", exc.problem)
        return exc
    labels = data.examples.labels
    get_run_logger().info(
        "%s labelled examples, %s converting (%.1f%%); split: %s",
        f"{len(labels):,}",
        f"{int(labels.sum()):,}",
        100 * float(labels.mean()) if len(labels) else 0.0,
        data.plan.method,
    )
    return data


@compute_task
def fit_model(
    data: training.TrainingSet, config: ProjectConfig, crm: CRMData | None = None
) -> training.TrainingResult:
    result = training.train(data, config, crm=crm)
    model, rules = result.metrics["model"], result.metrics["rules"]
    get_run_logger().info(
        "fitted: test ROC-AUC %.4f (rules %.4f), ECE %.4f, calibration %s",
        model["roc_auc"],
        rules["roc_auc"],
        model["ece"],
        result.model.calibration_method_,
    )
    return result


@io_task
def oracle_auc(config: ProjectConfig, result: training.TrainingResult) -> float | None:
    """AUC of the generator's true probabilities (generated data only; else None)."""
    return tracking.oracle_auc(config, result)


@compute_task
def build_evidence(
    test: pd.DataFrame, fit: pd.DataFrame, rules: RuleSet, config: ProjectConfig
) -> evidence_module.Evidence:
    """Comparison with intervals, rule diagnostics and suggested rules, from the cohorts."""
    build = evidence_module.build_evidence
    return _step("comparing", build, test, fit, rules, config, seed=config.model.seed)


@compute_task
def preview_open_leads(
    crm: CRMData, result: training.TrainingResult, rules: RuleSet, config: ProjectConfig
) -> pd.DataFrame:
    """Open leads at the end of the data, scored by the new model, for its report."""
    return open_lead_preview(crm, Scorer.unregistered(result.model, rules, config))


@io_task
def prepare_tracking(config: ProjectConfig) -> Registry:
    """Reach the tracking store and ensure the experiment (idempotent, so retried)."""
    registry = Registry.of(config)
    registry.experiment_id()
    return registry


@compute_task
def register_model(
    result: training.TrainingResult,
    evidence: evidence_module.Evidence,
    files: dict[str, bytes],
    config: ProjectConfig,
    oracle: float | None,
    registry: Registry,
) -> RegisteredModel:
    """Log the run and register the model; not retried, so a retry never duplicates a version."""
    log = tracking.log_and_register
    return _step("logging to MLflow", log, result, evidence, files, config, oracle, registry)


@compute_task
def judge_challenger(
    result: training.TrainingResult, crm: CRMData, config: ProjectConfig, registry: Registry
) -> tuple[promotion.Verdict, RegisteredModel | None]:
    """The gate: challenger vs champion on this training's newest labelled cohort."""
    champion = registry.champion()
    judge = promotion.judge_challenger
    verdict = _step("promotion gate", judge, result, crm, config, registry, champion)
    said = (
        f"promoted to champion ({verdict.action})"
        if verdict.promote
        else "not promoted: "
        + (f"champion stays version {champion.version}" if champion else "no champion yet")
    )
    # The words the command prints and the README quotes.
    get_run_logger().info("promotion gate: %s (%s)", said, verdict.reason)
    return verdict, champion


@io_task
def apply_verdict(
    verdict: promotion.Verdict,
    challenger: RegisteredModel,
    champion: RegisteredModel | None,
    config: ProjectConfig,
    registry: Registry,
) -> None:
    """Move the champion alias if the gate says so; tag both; record the decision (idempotent)."""
    decided_at = pd.Timestamp.now(tz="UTC").tz_localize(None)
    promotion.apply_verdict(verdict, challenger, champion, config, registry, decided_at)


# -- rules only (no model yet) ---------------------------------------------------------------


@compute_task
def rules_evidence(
    crm: CRMData, config: ProjectConfig, rules: RuleSet, why: str, refusal: LeadscoreError
) -> rules_only.RulesEvidence:
    """The rules on every labelled example of the history (nothing is fitted); `why`: why
    there is no model. A history without both outcomes tells nothing of the rules either:
    `refusal` is raised."""
    history = training.rules_history(crm, config, rules)
    if history["converted"].nunique() < 2:
        raise refusal
    evidence = _step("judging the rules", rules_only.rules_evidence, history, rules, config,
                     why, seed=config.model.seed)  # fmt: skip
    get_run_logger().info(
        "rules only: %s labelled examples, %s conversions; rule ROC-AUC %s; MQLs convert at %s",
        f"{evidence.examples:,}",
        f"{evidence.conversions:,}",
        "n/a" if evidence.roc_auc is None else f"{evidence.roc_auc.estimate:.3f}",
        f"{evidence.mql_conversion_rate:.1%}",
    )
    return evidence


@io_task
def log_rules_only_run(
    registry: Registry, evidence: rules_only.RulesEvidence, config: ProjectConfig
) -> str:
    """A training run with no model: the rules' figures and per-rule table; its id."""
    params = {
        "mode": "rules-only",
        "rules_file": config.rules_path.name,
        "rules_sha256": hashlib.sha256(config.rules_path.read_bytes()).hexdigest(),
        "horizon_days": config.horizon_days,
        "history_period": evidence.period,
    }
    tags = {"leadscore.kind": "training", "leadscore.mode": "rules-only"}
    tables = {"rules": evidence.rules, "tiers": evidence.tiers}
    return registry.log_scoring_run(params, evidence.metrics(), tables, tags, folder="rules")


@compute_task
def render_rules_report(
    evidence: rules_only.RulesEvidence, config: ProjectConfig, run_id: str | None
) -> str:
    render = rules_only.render_rules_report
    source = redact_uri(config.source_uri)
    return _step("writing report", render, evidence, config, config.rules_path.name, source, run_id)


# -- reports ---------------------------------------------------------------------------------


@compute_task
def render_report(inputs: report_module.ReportInputs, config: ProjectConfig) -> str:
    return _step("writing report", report_module.render_report, inputs, config)


@io_task
def log_report(registry: Registry, run_id: str, html: str) -> None:
    """Attach the report to the training run (idempotent: the same path is overwritten)."""
    registry.log_run_text(run_id, html, "report/report.html")


@io_task
def champion_entry(config: ProjectConfig, allow_none: bool = False) -> RegisteredModel | None:
    """The champion's registry entry (the model itself is not loaded); `allow_none`: None
    when there is no champion yet, else the clear error."""
    registry = Registry.of(config)
    registry.experiment_id()  # an unreachable store says so first
    entry = registry.champion()
    if entry is None and not allow_none:
        registry.load_champion()  # raises the clear error
    return entry


@io_task
def champion_metrics(config: ProjectConfig, entry: RegisteredModel) -> dict[str, float]:
    """The test metrics the champion's training run logged."""
    return Registry.of(config).run_metrics(entry.run_id)


@io_task
def read_evaluation(config: ProjectConfig, entry: RegisteredModel) -> tracking.SavedEvaluation:
    """The champion run's evaluation files."""
    with tempfile.TemporaryDirectory() as tmp:
        return tracking.read_evaluation(Registry.of(config), entry, tmp)


@io_task
def read_published(config: ProjectConfig) -> pd.DataFrame:
    """The latest published scores (empty when nothing was published yet)."""
    return publish.read_scores(config.publish_uri, config.publish.table, latest=True)


@io_task
def read_previous_published(config: ProjectConfig, as_of) -> pd.DataFrame:
    """The published run before `as_of` (empty when there is none)."""
    day = pd.Timestamp(as_of).normalize() - pd.Timedelta(days=1)
    return publish.read_scores(config.publish_uri, config.publish.history_table, latest=True,
                               until=day)  # fmt: skip


@io_task
def read_published_dates(config: ProjectConfig) -> set[pd.Timestamp]:
    """The as-of dates that have a published run."""
    runs = publish.read_scores(config.publish_uri, config.publish.runs_table)
    return set(pd.to_datetime(runs["as_of_date"]).dt.normalize()) if len(runs) else set()


@io_task
def write_report(html: str, path: str) -> str:
    return str(report_module.write_report(html, path))


# -- scoring ---------------------------------------------------------------------------------


@io_task
def load_scoring_champion(config: ProjectConfig, rules_only: bool = False) -> Champion | None:
    """The champion to score with, or None: the rule file scores alone (see
    `scoring.choose_scoring`), with a log line that says why."""
    champion, why = choose_scoring(config, rules_only)
    if champion is None:
        get_run_logger().warning("rules-only scoring: %s", why)
    else:
        entry = champion.entry
        get_run_logger().info("scoring with %s v%s (champion)", entry.name, entry.version)
    return champion


@compute_task
def score_open_leads(
    crm: CRMData, scorer: Scorer, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores of every open lead, and the rows scored (for monitoring)."""
    scores, rows = _step("scoring", scorer.score_with_rows, crm, as_of)
    tiers = scores["tier"].value_counts()
    get_run_logger().info(
        "scored %s open leads as of %s: %s MQLs by the rules; tiers %s",
        f"{len(scores):,}",
        as_of.date(),
        f"{int(scores['is_mql'].sum()):,}",
        ", ".join(f"{t} {int(tiers.get(t, 0)):,}" for t in ("A", "B", "C", "D")),
    )
    return scores, rows


@compute_task
def score_partition(
    part: partitions.Partition, scorer: Scorer, since: pd.Timestamp, as_of: pd.Timestamp
) -> partitions.PartitionResult:
    """Read, check and score one lead partition (on this machine or a Dask worker)."""
    result = partitions.score_partition(part, scorer, since, as_of)
    logger = get_run_logger()
    for line in result.warnings:
        logger.warning("partition %d: %s", part.index + 1, line)
    logger.info(
        "partition %d of %d: %s open leads scored", part.index + 1, part.count, len(result.scores)
    )
    return result


@compute_task
def monitor(
    scores: pd.DataFrame,
    rows: pd.DataFrame,
    champion: Champion,
    crm: CRMData,
    config: ProjectConfig,
    as_of: pd.Timestamp,
) -> monitoring.MonitoringResult:
    """Row counts, score distribution, input drift and realised quality of this run."""
    check = monitoring.monitor_scoring
    result = _step("monitoring", check, scores, rows, champion.model, crm, config, as_of)
    logger = get_run_logger()
    for message in result.messages():
        logger.warning("%s", message)
    return result


@io_task
def record_monitoring(
    result: monitoring.MonitoringResult,
    entry: RegisteredModel,
    config: ProjectConfig,
    as_of: pd.Timestamp,
) -> str:
    """The checks to their table and an MLflow run (idempotent per as-of, so retried)."""
    return monitoring.record_monitoring(result, entry, config, as_of)


@io_task
def publish_scores(
    scores: pd.DataFrame,
    entry: RegisteredModel | None,
    config: ProjectConfig,
    as_of: pd.Timestamp,
    rule_file: RuleFileVersion | None = None,
    with_alerts: bool = True,
) -> tuple[int, int]:
    """Publish in one transaction, with the run's hot-lead alerts in the outbox (unless
    `with_alerts` is False: a backfill of past dates alerts nobody) and the rule file's version;
    then the run's staged partitions (if any) go. Returns the leads published and alert
    rows."""
    if entry is None:  # rules-only: no model
        frame = publish.published_frame(scores, publish.RULES_ONLY_MODEL, None, None)
    else:
        frame = publish.published_frame(scores, entry.name, entry.version, entry.run_id)
    version = (
        None
        if rule_file is None
        else publish.RuleFile(rule_file.name, rule_file.sha256, rule_file.text)
    )
    published, staged = _step("publishing", publish.publish_with_alerts, frame,
                              config.publish_uri, publish.ScoreTables.of(config),
                              config.alerts if with_alerts else None, version)  # fmt: skip
    logger = get_run_logger()
    logger.info(
        "published %s rows to %s in %s (one transaction)",
        f"{published:,}",
        config.publish.table,
        redact_uri(config.publish_uri),
    )
    if config.alerts.sinks and with_alerts:
        logger.info(
            "%s hot-lead alerts queued in %s (%s sinks)",
            f"{staged:,}",
            config.alerts.table,
            len(config.alerts.sinks),
        )
    partitions.remove_staging(config, as_of)
    return published, staged


@compute_task
def deliver_alerts(config: ProjectConfig) -> dict:
    """Send the queued alerts, retrying for up to `alerts.deliver_seconds`; what is left
    waits in the outbox for `leadscore alerts --deliver`. Never fails the scoring run."""
    logger = get_run_logger()
    try:
        done = _step("sending alerts", alerts.deliver, config.publish_uri, config.alerts,
                     config.alerts.deliver_seconds)  # fmt: skip
    except LeadscoreError as exc:
        logger.warning("alerts not sent: %s (they stay in the outbox)", exc)
        return {"sent": 0, "failed": 0, "pending": None, "errors": {"outbox": str(exc)}}
    logger.info(
        "alerts: %s sent, %s failed, %s still pending", done.sent, done.failed, done.pending
    )
    for sink, error in done.errors.items():
        logger.warning("alert sink %s: %s", sink, error)
    return done.as_dict()


# -- one run at a time -----------------------------------------------------------------------


def job_lock(config: ProjectConfig, job: str):
    """One `score` per publish table and one `train` per registered model at a time."""
    target = config.publish.table if job == "score" else config.mlflow.registered_model
    return locking.run_lock(
        config.publish_uri, f"{job}-{target}", config.publish.lock_wait_seconds, config.base_dir
    )


def describe_run(
    page: Callable[..., run_page.RunPage],
    summary: dict,
    config: ProjectConfig,
    run_id: str | None,
    *extra,
) -> None:
    """The run's page in the Prefect UI: `page(summary, *extra)` (its markdown, tables and
    a link to its MLflow run) as artifacts of the flow run, and its story in one log line.
    Neither fails a run that did its work (the API may be gone by now)."""
    from prefect.artifacts import (
        create_link_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )

    logger = get_run_logger()
    try:
        page = page(summary, *extra)
        logger.info("%s", page.headline)
        create_markdown_artifact(page.markdown, key=page.key, description=page.headline)
        for name, rows in page.tables.items():
            if rows:
                create_table_artifact(rows, key=f"{page.key}-{name}", description=name)
        link = None
        if run_id and config.tracking_uri.startswith(("http://", "https://")):
            import mlflow

            run = mlflow.MlflowClient(tracking_uri=config.tracking_uri).get_run(run_id)
            link = run_page.mlflow_run_link(
                redact_uri(config.tracking_uri), run.info.experiment_id, run_id
            )
        if link is not None:
            create_link_artifact(link, link_text="the MLflow run", key=f"{page.key}-mlflow")
    except Exception as exc:  # the page is a courtesy: the run is done
        logger.warning("could not attach the run's summary to its Prefect page: %s", exc)


def skipped(job: str, exc: locking.RunLockedError) -> dict:
    """The summary of a run that found another one running."""
    get_run_logger().warning("%s skipped: %s", job, exc.problem)
    return {"command": job, "skipped": exc.problem, "fix": exc.fix}


# -- the monthly review ----------------------------------------------------------------------


@io_task
def build_review(config: ProjectConfig, crm: CRMData, month: str | None) -> review_module.Review:
    """The review of `month` (YYYY-MM; default: the month of the newest published run) from
    the published score history and the source's outcomes."""
    tables = publish.ScoreTables.of(config)
    with ScoreHistory(config.publish_uri, tables) as history:
        span = history.span()
        if span is None:
            raise DataError(
                f"table '{tables.history}' holds no published score yet",
                "run `leadscore score` (nightly, or with --as-of for past dates) first",
            )
        # "previous": the month before today where the sales team is (review.timezone).
        today = pd.Timestamp.now(tz=config.review.timezone).tz_localize(None)
        period = review_module.parse_month(month, today) if month else span[1].to_period("M")
        versions = publish.read_rule_versions(config.publish_uri, tables)
        return review_module.build_review(
            history,
            crm.outcomes,
            versions,
            period,
            config.horizon_days,
            crm.data_end,
            months=config.review.months,
            effect_days=config.review.effect_days,
            target_rate=config.report.target_mql_rate,
            progress=reporter(),
            leads=crm.leads,
            activities=crm.activities,
            config=config,
        )


@compute_task
def render_review(review: review_module.Review, config: ProjectConfig) -> str:
    return review_module.render_review(
        review,
        title=config.report.heading(Words(config.report.language)),
        language=config.report.language,
        source=redact_uri(config.source_uri),
        publish=redact_uri(config.publish_uri),
    )
