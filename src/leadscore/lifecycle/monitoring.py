"""Checks on each scoring run: volume, score distribution, input drift and realised quality.

Pure functions over data the caller passes in. A model records the distribution of its
inputs on the rows it was fitted on (`leadscore.modeling.drift`); at scoring the open leads'
rows are compared with it, and :func:`judge_realised` judges the newest published run whose
outcome window has closed. :func:`run_checks` turns all of it into one tidy table of checks,
each ``ok``, ``warn``, ``fail`` or ``skip`` (could not be judged), and plain sentences that
name the input or metric, its value and the threshold - never a lead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import MonitoringConfig, ProjectConfig
from leadscore.errors import LeadscoreError
from leadscore.io import publish
from leadscore.io.sources import CRMData
from leadscore.lifecycle.registry import RegisteredModel, Registry
from leadscore.modeling.drift import DriftReference, psi, score_psi
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.modeling.metrics import classification_metrics
from leadscore.scoring.tiers import TIERS

log = logging.getLogger(__name__)

STATUSES = ("ok", "warn", "fail", "skip")
CHECK_COLUMNS = ("check", "feature", "value", "threshold", "status", "detail")
_DEFAULTS = MonitoringConfig()


@dataclass(frozen=True)
class MonitoringResult:
    """The checks of one scoring run, with the numbers behind them."""

    checks: pd.DataFrame
    distribution: dict[str, float]
    drift: pd.DataFrame
    realised: dict[str, float | int | str] | None

    @property
    def failed(self) -> bool:
        """True when any check failed."""
        return bool((self.checks["status"] == "fail").any())

    @property
    def status(self) -> str:
        """The worst status: fail, warn or ok (skipped checks do not count)."""
        for level in ("fail", "warn"):
            if (self.checks["status"] == level).any():
                return level
        return "ok"

    def messages(self, statuses: tuple[str, ...] = ("fail", "warn")) -> list[str]:
        """One sentence per check with one of `statuses`, failures first."""
        order = {s: i for i, s in enumerate(STATUSES)}
        chosen = self.checks[self.checks["status"].isin(statuses)]
        chosen = chosen.iloc[np.argsort(chosen["status"].map(order).to_numpy(), kind="stable")]
        return [
            f"{s.upper()}: {d}" for s, d in zip(chosen["status"], chosen["detail"], strict=True)
        ]

    def metrics(self) -> dict[str, float]:
        """Flat numbers for a tracking run (MLflow metrics)."""
        out = {f"score_{k}": float(v) for k, v in self.distribution.items()}
        if len(self.drift):
            out["input_psi_max"] = float(self.drift["psi"].max())
        run_level = self.checks[self.checks["feature"].isna()]  # one row per check
        values = dict(zip(run_level["check"], run_level["value"], strict=True))
        for check in ("score_psi", "drifted_inputs", "realised_auc", "realised_ece"):
            if pd.notna(values.get(check, np.nan)):
                out[check] = float(values[check])
        out["failed_checks"] = float((self.checks["status"] == "fail").sum())
        out["warned_checks"] = float((self.checks["status"] == "warn").sum())
        return out


def score_distribution(probabilities: np.ndarray, tiers: np.ndarray) -> dict[str, float]:
    """Count, mean, percentiles, invalid values and the share of each tier of one run."""
    p = np.asarray(probabilities, dtype="float64")
    valid = p[np.isfinite(p) & (p >= 0) & (p <= 1)]
    out: dict[str, float] = {"count": float(len(p)), "invalid": float(len(p) - len(valid))}
    out["distinct"] = float(len(np.unique(valid)))
    out["mean"] = float(valid.mean()) if len(valid) else float("nan")
    quantiles = np.quantile(valid, [0.1, 0.5, 0.9, 0.99]) if len(valid) else np.full(4, np.nan)
    out.update(zip(("p10", "p50", "p90", "p99"), map(float, quantiles), strict=True))
    tier = np.asarray(tiers, dtype=object)
    for name in TIERS:
        out[f"share_{name}"] = float(np.mean(tier == name)) if len(tier) else float("nan")
    return out


def _naive_utc(values: pd.Series) -> pd.Series:
    # Naive stamps are UTC already (sources store UTC); aware ones are converted.
    return pd.to_datetime(values, utc=True).dt.tz_localize(None)


def _same_kind_ids(left: pd.Series, right: pd.Series) -> tuple[pd.Series, pd.Series]:
    # Ids read back from a database may be integers on one side and text on the other.
    numeric = pd.api.types.is_numeric_dtype
    if numeric(left) and numeric(right):
        return left, right
    return left.astype("str"), right.astype("str")


def judge_realised(
    history: pd.DataFrame,
    outcomes: pd.DataFrame,
    as_of: pd.Timestamp | str,
    horizon_days: int,
    min_leads: int = _DEFAULTS.min_realised_leads,
    min_conversions: int = _DEFAULTS.min_realised_conversions,
) -> tuple[dict[str, float | int | str] | None, str]:
    """Realised quality of the newest closed run, or None; with a sentence saying which/why."""
    as_of = _naive_utc(pd.Series([as_of])).iloc[0].normalize()
    horizon = pd.Timedelta(days=horizon_days)
    if history is not None and "model_version" in history:
        # A rules-only run (before the first model) has no probability to judge.
        history = history[history["model_version"].notna().to_numpy()]
    if history is None or history.empty:
        return None, "no published scores of a model yet"
    dates = _naive_utc(history["as_of_date"]).dt.normalize()
    closed = dates[dates <= as_of - horizon]
    if closed.empty:
        return None, (
            f"no published run is {horizon_days} days or more before {as_of.date()} "
            f"(the newest is {dates.max().date()}), so no outcome window has closed yet"
        )
    judged = closed.max()
    run = history[(dates == judged).to_numpy()]
    converted_at = _naive_utc(outcomes["converted_at"])
    inside = ((converted_at >= judged) & (converted_at < judged + horizon)).to_numpy()
    run_ids, outcome_ids = _same_kind_ids(run["lead_id"], outcomes["lead_id"])
    y = run_ids.isin(outcome_ids[inside]).to_numpy(dtype="float64")
    leads, conversions = len(y), int(y.sum())
    where = f"the run of {judged.date()}"
    if leads < min_leads:
        return None, f"{where} scored {leads:,} leads; at least {min_leads:,} are needed"
    if conversions < min_conversions or conversions == leads:
        return None, (
            f"{where} has {conversions:,} conversions among {leads:,} leads; at least "
            f"{min_conversions:,} (and some non-converted leads) are needed"
        )
    p = run["conversion_probability"].to_numpy(dtype="float64")
    model = classification_metrics(y, p, p)
    rules = classification_metrics(y, run["rule_score"].to_numpy(dtype="float64"), None)
    versions = sorted(run["model_version"].astype("str").unique())
    result: dict[str, float | int | str] = {
        "as_of_date": judged.date().isoformat(),
        "model_version": ", ".join(versions),
        "leads": leads,
        "conversions": conversions,
        "conversion_rate": conversions / leads,
        "mean_probability": model["mean_probability"],
        "roc_auc": model["roc_auc"],
        "ece": model["ece"],
        "brier": model["brier"],
        "rule_roc_auc": rules["roc_auc"],
    }
    return result, f"{where} ({leads:,} leads, {conversions:,} conversions)"


def _check(
    check: str, value: float, threshold: float, status: str, detail: str, feature: str | None = None
) -> dict[str, object]:
    return {
        "check": check,
        "feature": feature,
        "value": float(value),
        "threshold": float(threshold),
        "status": status,
        "detail": detail,
    }


def _pct(share: float) -> str:
    return f"{100 * share:.1f} %"


def _row_count_check(count: int, previous: int | None, config: MonitoringConfig) -> dict:
    ratio = config.min_row_ratio
    if previous is None or previous <= 0:
        status = "ok" if count > 0 else "fail"
        return _check(
            "row_count",
            count,
            1,
            status,
            f"the run scored {count:,} open leads (no previous run to compare with; "
            "at least 1 needed)",
        )
    floor = ratio * previous
    if count == 0 or count < floor:
        status, threshold = "fail", floor
        says = f"fewer than {ratio:.0%} of the previous run's {previous:,} (at least {floor:,.0f})"
    elif count > previous / ratio:
        status, threshold = "warn", previous / ratio
        says = f"more than {1 / ratio:.3g} times the previous run's {previous:,}"
    else:
        status, threshold = "ok", floor
        says = f"the previous run scored {previous:,} (at least {floor:,.0f} expected)"
    return _check(
        "row_count", count, threshold, status, f"the run scored {count:,} open leads: {says}"
    )


def _psi_status(value: float, config: MonitoringConfig) -> tuple[str, float]:
    if value >= config.psi_fail:
        return "fail", config.psi_fail
    if value >= config.psi_warn:
        return "warn", config.psi_warn
    return "ok", config.psi_warn


def _score_checks(
    distribution: dict[str, float],
    probabilities: np.ndarray,
    reference_probabilities: np.ndarray | None,
    config: MonitoringConfig,
) -> list[dict]:
    invalid = distribution["invalid"]
    checks = [
        _check(
            "score_range",
            invalid,
            0,
            "fail" if invalid else "ok",
            f"{invalid:,.0f} probabilities are missing or outside [0, 1] (0 allowed)",
        )
    ]
    distinct = distribution["distinct"]
    if distribution["count"] < 2:
        checks.append(
            _check("score_spread", distinct, 2, "skip", "fewer than 2 leads: spread not judged")
        )
    else:
        checks.append(
            _check(
                "score_spread",
                distinct,
                2,
                "fail" if distinct < 2 else "ok",
                f"{distinct:,.0f} distinct probabilities (at least 2 expected; one value for "
                "every lead means the inputs did not reach the model)",
            )
        )
    if reference_probabilities is None or not len(reference_probabilities):
        checks.append(
            _check(
                "score_psi",
                np.nan,
                config.psi_warn,
                "skip",
                "the model has no reference scores (trained before monitoring): score "
                "distribution not compared; retrain to add them",
            )
        )
        return checks
    value = score_psi(reference_probabilities, probabilities, config.psi_bins)
    # A warning at most: the open leads' mix may differ from the test cohort's for good
    # reasons (a campaign, a flat export's unlabelled rows). Input drift and realised
    # quality are what fail a run.
    status = "skip"
    if np.isfinite(value):
        status = "warn" if value >= config.psi_warn else "ok"
    ref_mean = float(np.mean(reference_probabilities))
    checks.append(
        _check(
            "score_psi",
            value,
            config.psi_warn,
            status,
            f"score distribution PSI {value:.3f} against the test cohort (warn at "
            f"{config.psi_warn:g}; never fails on its own); mean probability "
            f"{distribution['mean']:.4f} now vs {ref_mean:.4f} in the test cohort",
        )
    )
    return checks


def _drift_checks(drift: pd.DataFrame, config: MonitoringConfig) -> list[dict]:
    over = drift["psi"] >= config.psi_fail
    drifted = int(over.sum())
    tolerated = drifted <= config.max_drifted_features
    checks = []
    for row in drift.itertuples(index=False):  # one per input, not per lead
        if not np.isfinite(row.psi):
            checks.append(
                _check(
                    "input_psi",
                    np.nan,
                    config.psi_warn,
                    "skip",
                    f"input {row.feature}: no rows to compare",
                    row.feature,
                )
            )
            continue
        status, threshold = _psi_status(row.psi, config)
        note = ""
        if status == "fail" and tolerated:
            status = "warn"
            note = f" (tolerated: max_drifted_features is {config.max_drifted_features})"
        checks.append(
            _check(
                "input_psi",
                row.psi,
                threshold,
                status,
                f"input {row.feature} PSI {row.psi:.3f} against the training rows (warn at "
                f"{config.psi_warn:g}, fail at {config.psi_fail:g}){note}; most changed: "
                f"{row.top_bin} from {_pct(row.reference_share)} to {_pct(row.current_share)} "
                "of leads",
                row.feature,
            )
        )
    names = ", ".join(drift.loc[over, "feature"]) or "none"
    status = "ok" if drifted == 0 else ("warn" if tolerated else "fail")
    checks.append(
        _check(
            "drifted_inputs",
            drifted,
            config.max_drifted_features,
            status,
            f"{drifted} of {len(drift)} inputs have PSI >= {config.psi_fail:g} ({names}); "
            f"at most {config.max_drifted_features} allowed",
        )
    )
    return checks


def _realised_checks(
    realised: dict[str, float | int | str] | None, reason: str, config: MonitoringConfig
) -> list[dict]:
    if realised is None:
        text = f"realised quality not judged: {reason}"
        return [
            _check("realised_auc", np.nan, config.min_realised_auc, "skip", text),
            _check("realised_ece", np.nan, config.max_realised_ece, "skip", text),
        ]
    auc, rule_auc, ece = realised["roc_auc"], realised["rule_roc_auc"], realised["ece"]
    where = f"on {reason}"
    if auc < config.min_realised_auc:
        status, threshold = "fail", config.min_realised_auc
    elif np.isfinite(rule_auc) and auc < rule_auc:
        status, threshold = "warn", rule_auc
    else:
        status, threshold = "ok", config.min_realised_auc
    auc_check = _check(
        "realised_auc",
        auc,
        threshold,
        status,
        f"realised ROC-AUC {auc:.3f} {where} (fail below {config.min_realised_auc:g}, warn "
        f"below the rule score's {rule_auc:.3f} on the same leads)",
    )
    ece_check = _check(
        "realised_ece",
        ece,
        config.max_realised_ece,
        "fail" if ece > config.max_realised_ece else "ok",
        f"realised calibration error (ECE) {ece:.3f} {where} (fail above "
        f"{config.max_realised_ece:g}); mean probability {realised['mean_probability']:.4f}, "
        f"observed conversion rate {realised['conversion_rate']:.4f}",
    )
    return [auc_check, ece_check]


def run_checks(
    probabilities: np.ndarray,
    tiers: np.ndarray,
    config: MonitoringConfig,
    *,
    rows: pd.DataFrame | None = None,
    reference: DriftReference | None = None,
    reference_probabilities: np.ndarray | None = None,
    previous_count: int | None = None,
    history: pd.DataFrame | None = None,
    outcomes: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
    horizon_days: int | None = None,
) -> MonitoringResult:
    """All checks of one scoring run; see the module docstring for what each status means.

    `rows` are the raw snapshot rows that were scored; `reference` and
    `reference_probabilities` come from the model (None for models trained before them:
    those checks are skipped). `history` (published scores) with `outcomes`, `as_of` and
    `horizon_days` judge realised quality; without them it is skipped.
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    distribution = score_distribution(probabilities, tiers)
    columns = ["feature", "kind", "psi", "bins", "top_bin", "reference_share", "current_share"]
    drift = pd.DataFrame(columns=columns)
    if not config.enabled:
        empty = pd.DataFrame(columns=list(CHECK_COLUMNS))
        return MonitoringResult(empty, distribution, drift, None)
    checks = [_row_count_check(len(probabilities), previous_count, config)]
    checks += _score_checks(distribution, probabilities, reference_probabilities, config)
    if reference is None or rows is None:
        why = "the model has no drift reference (trained before monitoring; retrain to add it)"
        if reference is not None:
            why = "no scored rows were given"
        checks.append(_check("drifted_inputs", np.nan, config.max_drifted_features, "skip", why))
    else:
        drift = psi(reference, rows)
        checks += _drift_checks(drift, config)
    realised, reason = None, "no published score history was given"
    if history is not None and outcomes is not None and as_of is not None and horizon_days:
        realised, reason = judge_realised(
            history,
            outcomes,
            as_of,
            horizon_days,
            config.min_realised_leads,
            config.min_realised_conversions,
        )
    checks += _realised_checks(realised, reason, config)
    frame = pd.DataFrame.from_records(checks, columns=list(CHECK_COLUMNS))
    return MonitoringResult(frame, distribution, drift, realised)


class MonitoringFailed(LeadscoreError):
    """A scoring run published its scores, but a monitoring check failed."""

    def __init__(self, problem: str, fix: str, summary: dict[str, Any]) -> None:
        super().__init__(problem, fix)
        self.summary = summary


def monitor_scoring(
    scores: pd.DataFrame,
    rows: pd.DataFrame,
    model: LeadScoringModel,
    crm: CRMData,
    config: ProjectConfig,
    as_of: pd.Timestamp,
) -> MonitoringResult:
    """The monitoring checks of a scoring run, against training and the published history."""
    uri, p = config.publish_uri, config.publish
    previous = publish.read_scores(
        uri, p.runs_table, latest=True, until=as_of - pd.Timedelta(1, "D")
    )
    judged = None
    if not crm.flat:  # realised quality needs conversion times
        cutoff = as_of - pd.Timedelta(days=config.horizon_days)
        judged = publish.read_scores(uri, p.history_table, latest=True, until=cutoff)
    return run_checks(
        scores["conversion_probability"].to_numpy(dtype=float),
        scores["tier"].to_numpy(),
        config.monitoring,
        rows=rows,
        reference=getattr(model, "drift_reference_", None),
        reference_probabilities=getattr(model, "reference_probabilities_", None),
        previous_count=int(previous["leads"].iloc[0]) if len(previous) else None,
        history=judged,
        outcomes=None if crm.flat else crm.outcomes,
        as_of=as_of,
        horizon_days=config.horizon_days,
    )


def record_monitoring(
    result: MonitoringResult,
    entry: RegisteredModel,
    config: ProjectConfig,
    as_of: pd.Timestamp,
) -> str:
    """Checks to the monitoring table and a tracking run; returns the run id."""
    checked_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    table = result.checks.assign(
        as_of_date=as_of, model_version=entry.version, checked_at=checked_at
    )
    publish.publish_checks(table, config.publish_uri, config.monitoring.table)
    tables = {"checks": result.checks}
    if len(result.drift):
        tables["input_psi"] = result.drift
    # The rule file this run was scored with, as its publishing recorded it.
    versions = publish.read_rule_versions(config.publish_uri, publish.ScoreTables.of(config))
    day = versions[pd.to_datetime(versions["as_of_date"]) == as_of.normalize()]
    rules_sha256 = str(day["rules_sha256"].iloc[0]) if len(day) else ""
    params = {"as_of": str(as_of.date()), "model_version": entry.version}
    params |= {"status": result.status, "rules_sha256": rules_sha256}
    return Registry.of(config).log_scoring_run(
        params,
        {**result.metrics(), "leads_scored": float(result.distribution.get("count", 0))},
        tables,
        {
            "leadscore.kind": "scoring",
            "leadscore.status": result.status,
            "leadscore.model_version": entry.version,
        },
    )


#: Failed checks listed in the message; the rest are counted (all are in the table).
MAX_FAILURES_SHOWN = 8


def raise_if_monitoring_failed(result: MonitoringResult, summary: dict) -> None:
    """After publishing: a failed check fails the run (Prefect state, exit code)."""
    if result.failed:
        failures = result.messages(("fail",))
        shown = failures[:MAX_FAILURES_SHOWN]
        more = len(failures) - len(shown)
        raise MonitoringFailed(
            f"monitoring failed for the run as of {summary['as_of']} (its "
            f"{summary['rows']['published']:,} scores were published):\n"
            + "\n".join(f"  - {line}" for line in shown)
            + (f"\n  - and {more} more failed check(s)" if more else ""),
            "look at the checks (table "
            f"'{summary['monitoring_table']}', MLflow run {summary['monitoring']['run_id']}); "
            "retrain if the inputs moved, or adjust the monitoring thresholds in the project file",
            summary,
        )
