"""The promotion gate: a retrained model replaces the champion only when it is better.

`judge` is pure: both models' probabilities on the same newest labelled cohort in, a
verdict out. `judge_challenger` and `apply_verdict` are the gate of a training run;
`move_champion` and `rollback` the manual routes. The history of every decision (gate,
manual promotion, rollback) is a table in the publish database; the registry keeps the
aliases and version tags.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sklearn.metrics import roc_auc_score

from leadscore import interrupts
from leadscore.config import ModelConfig, ProjectConfig, PromotionConfig
from leadscore.errors import ConfigError, DataError, LeadscoreError, ModelError
from leadscore.io import uris
from leadscore.io.publish import read_scores
from leadscore.io.sources import CRMData
from leadscore.io.uris import check_identifier, is_transient, redact_uri
from leadscore.lifecycle.registry import CHAMPION, RegisteredModel, Registry
from leadscore.modeling.estimator import hash_leads
from leadscore.modeling.metrics import expected_calibration_error
from leadscore.scoring.backtest import candidate_configs
from leadscore.scoring.training import (
    MIN_CONVERSIONS,
    TrainingResult,
    cohort_probabilities,
    other_recipe_backtest,
    recipe_backtest,
    same_folds,
)

#: Actions that made a version the champion (a rollback undoes the last of them).
CHAMPION_CHANGES = ("first", "promoted", "refreshed", "manual")


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on one challenger, with the numbers behind it."""

    promote: bool
    action: str  # first | promoted | kept
    reason: str
    challenger_auc: float | None = None
    champion_auc: float | None = None
    challenger_ece: float | None = None
    champion_ece: float | None = None
    cohort_rows: int = 0
    cohort_conversions: int = 0
    #: The MQL rules' ROC-AUC on the same rows (the first model's contest).
    rules_auc: float | None = None

    def tags(self) -> dict[str, str]:
        """MLflow version tags: the decision and its numbers."""
        out = {"gate.decision": self.action, "gate.reason": self.reason}
        keys = ("challenger_auc", "champion_auc", "challenger_ece", "champion_ece", "rules_auc")
        for key in keys:
            value = getattr(self, key)
            if value is not None:
                out[f"gate.{key}"] = f"{value:.4f}"
        return out


def _metrics(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    return float(roc_auc_score(y, p)), expected_calibration_error(y, p)


def judge(
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray | None,
    gate: PromotionConfig,
    champion_version: str | None = None,
) -> Verdict:
    """Promote only on an AUC gain of at least the margin without worse calibration."""
    y = np.asarray(y, dtype=float)
    counts = {"cohort_rows": len(y), "cohort_conversions": int(y.sum())}
    if len(np.unique(y)) < 2:
        raise ModelError(
            "the promotion cohort has only one outcome; the models cannot be compared",
            "train on more history (the newest labelled cohort needs conversions and non-"
            "conversions)",
        )
    c_auc, c_ece = _metrics(y, challenger)
    if champion is None:
        return Verdict(True, "first", "no champion yet", c_auc, None, c_ece, None, **counts)
    k_auc, k_ece = _metrics(y, champion)
    numbers = {"challenger_auc": c_auc, "champion_auc": k_auc}
    numbers |= {"challenger_ece": c_ece, "champion_ece": k_ece}
    who = f"champion v{champion_version}" if champion_version else "the champion"
    if not gate.enabled:
        return Verdict(True, "promoted", "promotion gate disabled", **numbers, **counts)
    gain = c_auc - k_auc
    if gain < gate.min_auc_gain:
        reason = (
            f"ROC-AUC {c_auc:.4f} vs {k_auc:.4f} for {who}: a gain of {gain:+.4f}, "
            f"below the required {gate.min_auc_gain:+.4f}"
        )
        return Verdict(False, "kept", reason, **numbers, **counts)
    if c_ece > k_ece + gate.max_ece_increase:
        reason = (
            f"ROC-AUC gain {gain:+.4f}, but calibration is worse: ECE {c_ece:.4f} vs "
            f"{k_ece:.4f} for {who} (allowed increase {gate.max_ece_increase:.4f})"
        )
        return Verdict(False, "kept", reason, **numbers, **counts)
    reason = (
        f"ROC-AUC {c_auc:.4f} vs {k_auc:.4f} for {who} ({gain:+.4f} >= "
        f"{gate.min_auc_gain:+.4f}); ECE {c_ece:.4f} vs {k_ece:.4f}"
    )
    return Verdict(True, "promoted", reason, **numbers, **counts)


HISTORY_COLUMNS = (
    "decided_at",
    "model_name",
    "version",
    "action",
    "previous_champion",
    "champion_after",
    "reason",
    "challenger_auc",
    "champion_auc",
    "challenger_ece",
    "champion_ece",
    "cohort_rows",
    "cohort_conversions",
)


def _history_table(name: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("decided_at", sa.DateTime, nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("previous_champion", sa.String(64)),
        sa.Column("champion_after", sa.String(64)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("challenger_auc", sa.Float),
        sa.Column("champion_auc", sa.Float),
        sa.Column("challenger_ece", sa.Float),
        sa.Column("champion_ece", sa.Float),
        sa.Column("cohort_rows", sa.Integer),
        sa.Column("cohort_conversions", sa.Integer),
        sa.PrimaryKeyConstraint("decided_at", "model_name", "version", "action"),
    )


def history_row(
    verdict: Verdict | None,
    model_name: str,
    version: str,
    previous: str | None,
    after: str | None,
    decided_at: pd.Timestamp,
    action: str | None = None,
    reason: str | None = None,
) -> dict:
    """One row of the promotion history."""
    base = asdict(verdict) if verdict is not None else {}
    base.pop("promote", None)
    base.pop("rules_auc", None)  # in the reason
    row = {c: base.get(c) for c in HISTORY_COLUMNS}
    row.update(
        decided_at=pd.Timestamp(decided_at).to_pydatetime(),
        model_name=model_name,
        version=str(version),
        previous_champion=previous,
        champion_after=after,
        action=action or base.get("action"),
        reason=reason or base.get("reason"),
    )
    return row


def record(uri: str, table: str, row: dict) -> None:
    """Append a decision to the history (idempotent: a retried write replaces its own row)."""
    check_identifier(table, "promotion.table")
    metadata = sa.MetaData()
    target = _history_table(table, metadata)
    engine = uris.create_engine(uri)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(
                sa.delete(target).where(
                    (target.c.decided_at == row["decided_at"])
                    & (target.c.model_name == row["model_name"])
                    & (target.c.version == row["version"])
                    & (target.c.action == row["action"])
                )
            )
            conn.execute(sa.insert(target), row)
    except sa.exc.SQLAlchemyError as exc:
        raise DataError(
            f"cannot write the promotion history '{table}' in {redact_uri(uri)}: "
            f"{type(exc).__name__}",
            "check publish.uri and that the database accepts writes",
            transient=is_transient(exc),
        ) from None
    finally:
        engine.dispose()


def read_history(uri: str, table: str, model_name: str | None = None) -> pd.DataFrame:
    """The promotion history, oldest first (empty when nothing was decided yet)."""
    frame = read_scores(uri, table)  # one reader for published tables
    if frame.empty or "decided_at" not in frame:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    if model_name is not None:
        frame = frame[frame["model_name"] == model_name]
    return frame.sort_values("decided_at", kind="stable").reset_index(drop=True)


def rollback_target(history: pd.DataFrame, current: str) -> str:
    """The champion before `current` became champion, from the history."""
    made = history[
        history["action"].isin(CHAMPION_CHANGES) & (history["champion_after"] == str(current))
    ]
    if made.empty or pd.isna(made.iloc[-1]["previous_champion"]):
        raise ModelError(
            f"no earlier champion to roll back to: the history has no promotion that made "
            f"version {current} champion over another version",
            "pick a version explicitly with `leadscore promote VERSION --reason ...`",
        )
    return str(made.iloc[-1]["previous_champion"])


def judge_challenger(
    result: TrainingResult,
    crm: CRMData,
    config: ProjectConfig,
    registry: Registry,
    champion: RegisteredModel | None,
) -> Verdict:
    """The gate's verdict on a freshly trained model against the current champion.

    No model is judged on rows it learned from:

    - The same recipe as the champion's: the challenger is the champion's recipe refit on
      newer data ("refreshed"), promoted without a contest (its backtest is the run's).
    - A recipe that differs only in the model's settings: the champion's recipe is fitted
      on this run's backtest folds (or, when it is one of this run's candidates, its fold
      predictions are taken), and both recipes are judged on the same test rows, pooled
      over the folds. A champion recipe that was a candidate and lost the backtest is
      replaced even without the AUC margin: keeping it would keep older data.
    - A recipe of other features (or attribute mapping, leakage settings), drawing the
      same examples and folds: the champion's recipe is rerun on this run's folds, its rows
      rebuilt with its own features and its own leakage guard per fold, and both recipes
      are judged on the same pooled test rows.
    - Otherwise (another horizon, snapshot schedule or split, or a champion from before
      recipes were recorded): both models are judged on the newest fold's rows the
      champion never learned from (dated after its newest learned snapshot; for a flat
      export, leads it did not learn from).
    """
    y = result.data.labels("test")
    challenger_p = result.test_scores["conversion_probability"].to_numpy(dtype=float)
    if champion is None:
        return against_rules(result, config.promotion)
    try:
        loaded = registry.load(champion)
        before, through = getattr(loaded.model, "trained_through_", None), result.trained_through
        # A run as of a past date (`train --as-of`, an older extract) is a what-if: it never
        # replaces a model that learned from newer data.
        if config.promotion.enabled and None not in (before, through) and through < before:
            return Verdict(
                False,
                "kept",
                f"this model learned from snapshots through {through.date()}, older than "
                f"champion v{champion.version} (through {before.date()}); promote by hand "
                "with `leadscore promote VERSION --reason ...` if intended",
            )
        theirs = getattr(loaded.model, "recipe_", None)
        ours = getattr(result.model, "recipe_", None)
        if theirs is not None and theirs == ours:
            return _refreshed(result, loaded.model, champion)
        if theirs is not None and _only_model_differs(theirs, ours):
            return _judge_recipes(result, theirs, config, champion)
        if theirs is not None and set(theirs) == set(ours or {}) and same_folds(theirs, ours):
            return _judge_recipes(result, theirs, config, champion, crm)
        champion_p = cohort_probabilities(loaded.model, result.data, crm, config, "test")
        unseen = unseen_rows(loaded.model, result.data.snapshots["test"], registry, champion)
    except Exception as exc:  # the champion cannot read this data: never promote blindly
        problem = exc.problem if isinstance(exc, LeadscoreError) else type(exc).__name__
        return Verdict(
            False,
            "kept",
            f"champion v{champion.version} cannot score this cohort ({problem}); compare "
            "by hand and promote with `leadscore promote VERSION --reason ...` if intended",
        )
    if unseen.all():
        return judge(y, challenger_p, champion_p, config.promotion, champion.version)
    need = MIN_CONVERSIONS["test"]
    have = int(y[unseen].sum())
    if not config.promotion.enabled:
        return Verdict(True, "promoted", "promotion gate disabled", cohort_rows=len(y))
    if have < need or int((1 - y[unseen]).sum()) < need:
        return Verdict(
            False,
            "kept",
            f"champion v{champion.version} learned from {int((~unseen).sum()):,} of the "
            f"{len(y):,} rows of the newest fold and its recipe differs, so the two cannot be "
            f"compared fairly ({have} conversion(s) among the rows it never saw; {need} needed); "
            "promote by hand with `leadscore promote VERSION --reason ...` if intended",
            cohort_rows=int(unseen.sum()),
            cohort_conversions=have,
        )
    verdict = judge(
        y[unseen], challenger_p[unseen], champion_p[unseen], config.promotion, champion.version
    )
    note = f" (on the {int(unseen.sum()):,} newest-fold rows the champion never learned from)"
    return Verdict(**{**asdict(verdict), "reason": verdict.reason + note})


def against_rules(result: TrainingResult, gate: PromotionConfig) -> Verdict:
    """The first model's contest: without a champion, the MQL rules are what scores (the
    rules-only mode), so the model must rank leads better than they do, by the gate's AUC
    margin, on the same test rows: pooled over the backtest folds when there are several,
    else the newest fold's. Calibration has nothing to be compared with (rule points are no
    probability)."""
    y = result.data.labels("test")
    p = result.test_scores["conversion_probability"].to_numpy(dtype=float)
    rule = result.test_scores["rule_score"].to_numpy(dtype=float)
    if len(np.unique(y)) < 2:
        return judge(y, p, None, gate)  # the clear error
    c_auc, c_ece = _metrics(y, p)
    r_auc = float(roc_auc_score(y, rule))
    rows, conversions, where = len(y), int(y.sum()), "the newest fold's test rows"
    backtest = result.backtest
    if backtest is not None and len(backtest.folds) > 1:
        pooled, rules = backtest.pooled[result.chosen_column], backtest.pooled["rules"]
        c_auc, c_ece, r_auc = pooled["roc_auc"], pooled["ece"], rules["roc_auc"]
        rows, conversions = int(pooled["n"]), int(pooled["conversions"])
        where = f"the test rows of {len(backtest.folds)} backtest folds"
    counts = {"cohort_rows": rows, "cohort_conversions": conversions}
    numbers = {"challenger_auc": c_auc, "challenger_ece": c_ece, "rules_auc": r_auc}
    gain = c_auc - r_auc
    versus = f"ROC-AUC {c_auc:.4f} vs {r_auc:.4f} for the MQL rules on {where} ({gain:+.4f})"
    if not gate.enabled:
        return Verdict(True, "first", f"no champion yet; gate disabled; {versus}", **numbers,
                       **counts)  # fmt: skip
    if gain < gate.min_auc_gain:
        reason = (
            f"no champion yet, and the model ranks leads no better than the rules: {versus}, "
            f"below the required {gate.min_auc_gain:+.4f}; the rules keep scoring "
            "(`leadscore score` publishes them alone); promote by hand with `leadscore "
            "promote VERSION --reason ...` if intended"
        )
        return Verdict(False, "kept", reason, **numbers, **counts)
    return Verdict(True, "first", f"no champion yet; {versus}", **numbers, **counts)


def _only_model_differs(theirs: dict, ours: dict | None) -> bool:
    if ours is None or set(theirs) != set(ours):
        return False
    return all(theirs[k] == ours[k] for k in theirs if k != "model")


def _refreshed(result: TrainingResult, champion_model: Any, champion: RegisteredModel) -> Verdict:
    through = result.trained_through
    before = getattr(champion_model, "trained_through_", None)
    if through is not None and before is not None:
        newer = (
            f"on newer data: learned from snapshots through {through.date()} (champion "
            f"v{champion.version}: {before.date()})"
            if through > before
            else f"on the same history (through {through.date()}, as champion v{champion.version})"
        )
    else:
        ours = getattr(result.model, "fitted_leads_", None)
        theirs = getattr(champion_model, "fitted_leads_", None)
        same = ours is not None and theirs is not None and np.array_equal(ours, theirs)
        newer = (
            f"on the same {len(ours):,} labelled leads as champion v{champion.version}"
            if same
            else "on the newest labelled leads"
        )
    m = result.metrics["model"]
    return Verdict(
        True,
        "refreshed",
        f"the champion's recipe refit {newer}; newest backtest fold ROC-AUC "
        f"{m['roc_auc']:.4f}, ECE {m['ece']:.4f}",
        challenger_auc=float(m["roc_auc"]),
        challenger_ece=float(m["ece"]),
        cohort_rows=int(m["n"]),
        cohort_conversions=int(m["conversions"]),
    )


def _judge_recipes(
    result: TrainingResult,
    theirs: dict[str, Any],
    config: ProjectConfig,
    champion: RegisteredModel,
    crm: CRMData | None = None,
) -> Verdict:
    """Both recipes on this run's folds, judged on the same pooled test rows. `crm` is
    given when the champion's recipe reads other features: its rows are rebuilt."""
    ours = result.backtest.predictions()
    y = ours["converted"].to_numpy(dtype=float)
    champion_model = theirs["model"]
    # The champion's recipe may be one of this run's candidates: its fold predictions are
    # already there (same folds, same features), else it is fitted on them now.
    same = [
        who
        for who, settings in candidate_configs(config).items()
        if crm is None
        and who in ours
        and settings.model_dump(mode="json", exclude={"num_threads", "params_file"})
        == champion_model
    ]
    if same:
        theirs_p = ours[same[0]].to_numpy(dtype=float)
    elif crm is not None:
        rerun = other_recipe_backtest(result, theirs, config, crm)
        theirs_p = rerun.predictions()["model"].to_numpy(float)
    else:
        settings = ModelConfig(**champion_model)
        theirs_p = recipe_backtest(result, settings, config).predictions()["model"].to_numpy(float)
    verdict = judge(
        y,
        ours[result.chosen_column].to_numpy(dtype=float),
        theirs_p,
        config.promotion,
        champion.version,
    )
    if same and not verdict.promote:
        # The champion's recipe competed in this run's backtest and was not chosen: keeping
        # it would keep a model fitted on older data for a recipe that did not win.
        names, pooled = result.backtest.names, result.backtest.pooled
        metric = result.metric
        reason = (
            f"the champion's recipe ({names[same[0]]}) was a candidate of this run and the "
            f"backtest chose {names[result.chosen_column]}: pooled {metric.replace('_', ' ')} "
            f"{pooled[result.chosen_column][metric]:.4f} vs {pooled[same[0]][metric]:.4f} "
            f"(a difference within {result.tie_tolerance} goes to the simpler); "
            f"ROC-AUC {verdict.challenger_auc:.4f} vs {verdict.champion_auc:.4f}"
        )
        verdict = Verdict(**{**asdict(verdict), "promote": True, "action": "promoted",
                             "reason": reason})  # fmt: skip
    own = ", the champion's on its own features," if crm is not None else ""
    note = (
        f" (both recipes fitted on the same {len(result.backtest.folds)} backtest fold(s)"
        f"{own} and judged on their test rows, pooled)"
    )
    return Verdict(**{**asdict(verdict), "reason": verdict.reason + note})


def unseen_rows(
    model: Any,
    snapshots: pd.DataFrame,
    registry: Registry | None = None,
    entry: RegisteredModel | None = None,
) -> np.ndarray:
    """Which examples (lead_id, as_of) a registered model never learned from.

    Dated models learned from snapshots up to `trained_through_`; a flat model from the
    leads in `fitted_leads_`. A model from before these were recorded learned from its
    own train, validation and calibration cohorts: up to the last calibration date its run
    logged (`split_calibration`); without that, every row counts as unseen, as before.
    """
    fitted = getattr(model, "fitted_leads_", None)
    if fitted is not None:
        return ~np.isin(hash_leads(snapshots["lead_id"].to_numpy()), fitted)
    through = getattr(model, "trained_through_", None)
    if through is None and registry is not None and entry is not None:
        through = _logged_fit_end(registry, entry)
    if through is None:
        return np.ones(len(snapshots), dtype=bool)
    as_of = snapshots["as_of"].to_numpy(dtype="datetime64[us]")
    return as_of > np.datetime64(pd.Timestamp(through))


def _logged_fit_end(registry: Registry, entry: RegisteredModel) -> pd.Timestamp | None:
    text = registry.run_params(entry.run_id).get("split_calibration", "")
    found = re.match(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", text)
    return pd.Timestamp(found.group(2)) if found else None


def apply_verdict(
    verdict: Verdict,
    challenger: RegisteredModel,
    champion: RegisteredModel | None,
    config: ProjectConfig,
    registry: Registry,
    decided_at: pd.Timestamp,
) -> None:
    """Move the alias (if promoted), tag the version and the run, record the decision."""
    tags = verdict.tags()
    if verdict.promote:
        registry.set_alias(challenger, CHAMPION, tags)
    else:
        registry.tag_version(challenger, tags)
    registry.tag_run(challenger.run_id, tags)
    previous = champion.version if champion else None
    after = challenger.version if verdict.promote else previous
    row = history_row(verdict, challenger.name, challenger.version, previous, after, decided_at)
    record(config.publish_uri, config.promotion.table, row)


def move_champion(
    config: ProjectConfig, version: str, reason: str, action: str = "manual"
) -> dict[str, Any]:
    """`leadscore promote` / `rollback`: point champion at `version`, with a recorded reason."""
    if not reason.strip():
        raise ConfigError("a promotion needs a reason", 'pass --reason "why"')
    registry = Registry.of(config)
    name = registry.model_name
    target = registry.version(version)
    current = registry.champion()
    if current is not None and current.version == target.version:
        raise ConfigError(
            f"version {target.version} of '{name}' is already the champion", "nothing to do"
        )
    decided_at = pd.Timestamp.now(tz="UTC").tz_localize(None)
    previous = current.version if current else None
    row = history_row(
        None, name, target.version, previous, target.version, decided_at, action, reason
    )
    with interrupts.critical("moving the champion alias and recording it"):
        registry.set_alias(
            target,
            CHAMPION,
            {
                "promotion.action": action,
                "promotion.reason": reason,
                "promotion.at": str(decided_at),
            },
        )
        record(config.publish_uri, config.promotion.table, row)
    return {
        "command": action if action == "rollback" else "promote",
        "model_name": name,
        "champion_version": target.version,
        "previous_champion": previous,
        "reason": reason,
    }


def rollback(config: ProjectConfig, reason: str) -> dict[str, Any]:
    """Make the champion before the current one champion again."""
    name = config.mlflow.registered_model
    current = Registry.of(config).champion()
    if current is None:
        raise ModelError(
            f"model '{name}' has no champion to roll back", "train one: `leadscore train`"
        )
    history = read_history(config.publish_uri, config.promotion.table, name)
    target = rollback_target(history, current.version)
    return move_champion(config, target, reason, action="rollback")
