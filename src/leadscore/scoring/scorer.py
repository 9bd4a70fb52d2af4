"""Scoring: what a model and the rule file say of every open lead, as of a date.

`Scorer` is the one object that scores: the packaged model, its predict as served (the
MLflow pyfunc, so scoring goes through exactly what the registry serves), the rule file
and the project. The batch, the lead partitions, on-demand scoring and the service all
score through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.data.features import ActivityIndex, index_activities, snapshot_rows
from leadscore.data.rules import RuleSet, rule_results
from leadscore.data.snapshots import build_snapshots
from leadscore.errors import DataError, ModelError, NoOpenLeadsError
from leadscore.io.publish import SCORE_COLUMNS
from leadscore.io.sources import CRMData
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.modeling.reasons import explain
from leadscore.progress import reporter
from leadscore.scoring.inputs import (
    activity_types,
    check_as_of,
    check_inputs,
    lookback_days,
    model_activity_types,
)
from leadscore.scoring.tiers import assign_tiers

Predict = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class Scorer:
    """The packaged model, its predict as served, the rule file and the project: scores."""

    model: LeadScoringModel
    predict: Predict
    rules: RuleSet
    config: ProjectConfig

    @classmethod
    def unregistered(cls, model: LeadScoringModel, rules: RuleSet, config: ProjectConfig) -> Scorer:
        """A scorer for a model not (yet) packaged: its own predict_proba."""
        return cls(model, model.predict_proba, rules, config)

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
            model_activity_types(self.model),
            whole_source,
            window,
        )

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
        return finish_scores(partial, self.config), rows

    def score_partial(self, crm: CRMData, snap: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Probability, rule score and reasons of the snapshots `snap` (one lead each).

        Everything here is per lead, so a lead partition gets the same values alone as in
        the whole population; percentile and tier, which rank leads against each other, are
        added by `finish_scores` once all partitions are in.
        """
        config = self.config
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
        reasons = explain(rows, contributions, self.model.features, config.report.labels)
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
    activities = index_activities(crm.activities, spec.page_categories, spec.page_activity_type)
    rows = snapshot_rows(
        snap,
        crm.leads,
        activities,
        spec,
        list(dict.fromkeys(columns)),
        config.source.attributes.email,
    )
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
