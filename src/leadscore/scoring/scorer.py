"""Scoring: what a model and the rule file say of every open lead, as of a date.

`Scorer` is the one object that scores: the packaged model, its predict as served (the
MLflow pyfunc, so scoring goes through exactly what the registry serves), the rule file
and the project. The batch, the lead partitions, on-demand scoring and the service all
score through it. A scorer without a model scores by the rules alone (no model yet, or by
choice): rule score, MQL flag, fired rules as reasons, tiers by rule points, no probability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.data.accounts import account_context, with_account_features
from leadscore.data.features import (
    ActivityIndex,
    BehaviourSpec,
    index_activities,
    snapshot_rows,
)
from leadscore.data.rules import RuleSet, rule_results
from leadscore.data.snapshots import build_snapshots
from leadscore.errors import DataError, ModelError, NoOpenLeadsError
from leadscore.io.publish import SCORE_COLUMNS
from leadscore.io.sources import CRMData
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.modeling.reasons import SEPARATOR, explain
from leadscore.progress import reporter
from leadscore.scoring.inputs import (
    activity_types,
    attribute_columns,
    check_as_of,
    check_inputs,
    lookback_days,
    model_activity_types,
)
from leadscore.scoring.tiers import assign_rule_tiers, assign_tiers, rule_point_floors

Predict = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class Scorer:
    """The packaged model, its predict as served, the rule file and the project: scores.

    `model` None: the rules alone score (`by_rules`).
    """

    model: LeadScoringModel | None
    predict: Predict | None
    rules: RuleSet
    config: ProjectConfig

    @classmethod
    def unregistered(cls, model: LeadScoringModel, rules: RuleSet, config: ProjectConfig) -> Scorer:
        """A scorer for a model not (yet) packaged: its own predict_proba."""
        return cls(model, model.predict_proba, rules, config)

    @classmethod
    def rules_only(cls, rules: RuleSet, config: ProjectConfig) -> Scorer:
        """A scorer of the rule file alone (before there is a model, or by choice)."""
        return cls(None, None, rules, config)

    @property
    def by_rules(self) -> bool:
        return self.model is None

    @property
    def lookback_days(self) -> int:
        """How far back scoring reads activities: the model's and the rules' longest window."""
        return lookback_days(self.model, self.rules)

    def check(self, crm: CRMData, as_of: pd.Timestamp, whole_source: bool = True) -> None:
        """What training checks of the source and the rules, before anything is scored.

        A whole source (a batch run) also bounds the as-of date: after the newest data by
        more than `scoring.max_days_after_data`, every behaviour feature would be empty.
        `whole_source` False: a few leads read on demand, whose lack of activities says
        nothing.
        """
        if whole_source and not crm.flat:
            check_as_of(as_of, crm.data_end, self.config.scoring.max_days_after_data)
        window = (as_of - pd.Timedelta(days=self.lookback_days), as_of)
        check_inputs(
            self.rules,
            self.config,
            crm.flat,
            activity_types(crm.activities),
            self.known_activity_types,
            whole_source and self.needs_activities,
            window,
        )

    @property
    def known_activity_types(self) -> tuple[str, ...]:
        """Activity types the rules may count though tonight's window lacks them: the
        model's training history's; without a model, the rules' own (the rules-only
        training run checked them against the whole history)."""
        if self.by_rules:
            return tuple(r.activity for r in self.rules.behaviour_rules)
        return model_activity_types(self.model)

    @property
    def needs_activities(self) -> bool:
        """Whether an empty activities window is an error: a model reads behaviour, rules
        only when they count activities."""
        return not self.by_rules or bool(self.rules.behaviour_rules)

    def score(self, crm: CRMData, as_of: pd.Timestamp, whole_source: bool = True) -> pd.DataFrame:
        """Probability, percentile, tier, reasons and rule score of every open lead."""
        return self.score_with_rows(crm, as_of, whole_source)[0]

    def score_with_rows(
        self, crm: CRMData, as_of: pd.Timestamp, whole_source: bool = True
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """`score`, plus the raw rows scored (what monitoring compares with training)."""
        self.check(crm, as_of, whole_source)
        snap = open_leads(crm, as_of, self.config)
        if snap.empty:
            raise no_open_leads(crm.flat, self.config, as_of)
        partial, rows = self.score_partial(crm, snap)
        return self.finish(partial), rows

    def finish(self, partial: pd.DataFrame) -> pd.DataFrame:
        """Percentile and tier of every lead of `partial` (all partitions together)."""
        if self.by_rules:
            floors = rule_point_floors(self.rules.mql_threshold, self.config.tiers)
            return finish_rule_scores(partial, floors)
        return finish_scores(partial, self.config)

    def score_partial(self, crm: CRMData, snap: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Probability, rule score and reasons of the snapshots `snap` (one lead each).

        Everything here is per lead, so a lead partition gets the same values alone as in
        the whole population; percentile and tier, which rank leads against each other, are
        added by `finish_scores` once all partitions are in.
        """
        config = self.config
        if self.by_rules:
            return self._rules_partial(crm, snap)
        rows, activities = model_rows(crm, self.model, snap, config)
        probability = np.asarray(self.predict(rows), dtype=float)
        if not np.all(np.isfinite(probability)) or probability.min() < 0 or probability.max() > 1:
            raise ModelError(
                "the model returned probabilities outside [0, 1]; nothing was published"
            )
        rules_out = rule_results(self.rules, rows, snap, activities, config)
        report = reporter()
        report("reasons", 0, 1)
        contributions = self.model.contributions(rows)
        reasons = explain(
            rows,
            contributions,
            self.model.features,
            config.report.labels,
            language=config.report.language,
        )
        report("reasons", 1, 1)
        partial = pd.DataFrame(
            {
                "lead_id": snap["lead_id"].to_numpy(),
                "as_of": snap["as_of"].to_numpy(),
                "conversion_probability": probability,
                "rule_score": rules_out["rule_score"].to_numpy(),
                "is_mql": rules_out["is_mql"].to_numpy(),
                "rules_fired": rules_out["rules_fired"].to_numpy(),
                "reasons_up": reasons["reasons_up"].to_numpy(),
                "reasons_down": reasons["reasons_down"].to_numpy(),
            }
        )
        return partial, rows

    def _rules_partial(self, crm: CRMData, snap: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The rules' verdict on `snap`: points, MQL flag, fired rules, and as reasons the
        rules that gave points (no probability: there is no model)."""
        rows, activities = rule_rows(crm, snap, self.config)
        out = rule_results(self.rules, rows, snap, activities, self.config)
        up, down = rule_reasons(out)
        partial = pd.DataFrame(
            {
                "lead_id": snap["lead_id"].to_numpy(),
                "as_of": snap["as_of"].to_numpy(),
                "conversion_probability": np.full(len(snap), np.nan),
                "rule_score": out["rule_score"].to_numpy(),
                "is_mql": out["is_mql"].to_numpy(),
                "rules_fired": out["rules_fired"].to_numpy(),
                "reasons_up": up,
                "reasons_down": down,
            }
        )
        return partial, rows


def rule_rows(
    crm: CRMData, snap: pd.DataFrame, config: ProjectConfig
) -> tuple[pd.DataFrame, ActivityIndex]:
    """The lead fields the rules test for snapshots `snap` (the project's attribute columns),
    and the indexed activities behaviour rules count."""
    features = config.features
    columns = attribute_columns(config)
    missing = [c for c in columns if c not in crm.leads.columns]
    if missing:
        raise DataError(
            f"table '{config.source.tables.leads}' lacks the mapped column(s) {', '.join(missing)}",
            "map existing columns under source.attributes",
        )
    activities = index_activities(
        crm.activities, features.page_categories, features.page_activity_type
    )
    rows = snapshot_rows(
        snap, crm.leads, activities, BehaviourSpec.none(), columns, config.source.attributes.email
    )
    return rows, activities


def rule_reasons(results: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per lead, the rules that added points ("webinar +20", most points first) and those
    that took points off, joined like a model's reasons."""
    points = results[[c for c in results.columns if c.startswith("points_")]]
    names = [c.removeprefix("points_") for c in points.columns]
    values = points.to_numpy(dtype=float)
    up = np.full(len(results), "", dtype=object)
    down = np.full(len(results), "", dtype=object)
    for i in np.flatnonzero((values != 0).any(axis=1)) if len(names) else []:
        row = values[i]
        order = np.argsort(-np.abs(row), kind="stable")
        ups = [f"{names[j]} {row[j]:+g}" for j in order if row[j] > 0]
        downs = [f"{names[j]} {row[j]:+g}" for j in order if row[j] < 0]
        up[i], down[i] = SEPARATOR.join(ups), SEPARATOR.join(downs)
    return up, down


def finish_rule_scores(partial: pd.DataFrame, floors: list[float]) -> pd.DataFrame:
    """Rules-only scores: percentile by rule points within the run, tiers by point floors."""
    points = partial["rule_score"].to_numpy(dtype=float)
    out = partial.reset_index(drop=True)
    percentile = pd.Series(points).rank(pct=True, method="average").to_numpy() * 100
    out.insert(3, "percentile", percentile)
    out.insert(4, "tier", assign_rule_tiers(points, floors))
    return out


def open_leads(crm: CRMData, as_of: pd.Timestamp, config: ProjectConfig) -> pd.DataFrame:
    """Snapshots of every open lead as of `as_of` (no label).

    In a flat export the open leads are the rows with an empty label.
    """
    if crm.flat:
        open_ = crm.leads[crm.leads["converted"].isna()]
        return pd.DataFrame(
            {
                "lead_id": open_["lead_id"].to_numpy(),
                "as_of": pd.Series(as_of, index=range(len(open_))).astype("datetime64[us]"),
            }
        )
    return build_snapshots(crm.leads, crm.outcomes, [as_of], config.snapshots.max_lead_age_days)


def model_rows(
    crm: CRMData, model: LeadScoringModel, snap: pd.DataFrame, config: ProjectConfig
) -> tuple[pd.DataFrame, ActivityIndex]:
    """The raw rows `model` scores for snapshots `snap`, built with the model's own spec.

    A model is scored on its own inputs, not today's config: a column it was trained on
    must be in the source. Returns the rows and the indexed activities (for the rules).
    """
    spec = model.features.behaviour
    columns = [*model.features.categorical, *model.features.numeric]
    columns += [model.features.title_column] if model.features.title_column else []
    missing = [c for c in columns if c not in crm.leads.columns]
    if missing:
        raise DataError(
            f"the model was trained with lead column(s) {', '.join(missing)}, which the source "
            "no longer provides",
            "map them again under source.attributes, or retrain with `leadscore train`",
        )
    accounts = model.features.accounts
    if accounts is not None and accounts.column is not None and accounts.column not in crm.leads:
        raise DataError(
            f"the model groups leads into accounts by the column '{accounts.column}', which "
            "the source no longer provides",
            "map it again as source.attributes.account, or retrain with `leadscore train`",
        )
    activities = index_activities(crm.activities, spec.page_categories, spec.page_activity_type)
    email = config.source.attributes.email
    rows = snapshot_rows(snap, crm.leads, activities, spec, list(dict.fromkeys(columns)), email)
    if accounts is not None and accounts.enabled:
        features = model.features
        context = account_context(
            crm.leads, crm.outcomes, accounts, features.feature_config, features.title_column, email
        )
        rows = with_account_features(rows, snap, context, activities, accounts)
    return rows, activities


def no_open_leads(flat: bool, config: ProjectConfig, as_of: pd.Timestamp) -> NoOpenLeadsError:
    """The error of a scoring run that found no lead to score."""
    if flat:
        return NoOpenLeadsError(
            f"no open leads: every row of '{config.source.tables.leads}' has a label",
            f"leave {config.source.label.column} empty for the leads to score",
        )
    return NoOpenLeadsError(
        f"no open leads as of {as_of.date()}: none created in the "
        f"{config.snapshots.max_lead_age_days} days before it that had not converted",
        "pass --as-of with a date inside the data, or check the leads table",
    )


def finish_scores(partial: pd.DataFrame, config: ProjectConfig) -> pd.DataFrame:
    """Percentile and tier of every lead, ranked against all the leads in `partial`."""
    probability = partial["conversion_probability"].to_numpy(dtype=float)
    percentile = pd.Series(probability).rank(pct=True, method="average").to_numpy() * 100
    tier = assign_tiers(
        probability, partial["as_of"].to_numpy(), config.tiers, partial["lead_id"].to_numpy()
    )
    out = partial.reset_index(drop=True)
    out.insert(3, "percentile", percentile)
    out.insert(4, "tier", tier)
    return out


def open_lead_preview(crm: CRMData, scorer: Scorer) -> pd.DataFrame:
    """The open leads at the end of the data, scored (a training run's report shows them).

    An export of closed leads only has none: the report then has no open-lead lists, which
    is no reason to fail the training.
    """
    try:
        scores = scorer.score(crm, crm.data_end.normalize())
    except NoOpenLeadsError:
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    return scores.rename(columns={"as_of": "as_of_date"})
