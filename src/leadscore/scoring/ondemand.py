"""On-demand scoring of one or a few leads ("speed to lead"), exactly as the nightly batch.

The batch's own code does the work: the leads are read from the source with a lead-id
filter (or built from a posted payload) and go through the batch's `Scorer` (the packaged
champion model, the rule file and the reasons). Only the percentile and
the tier differ, because one lead has no run of its own to be ranked in: it is ranked in a
reference population instead, the latest published run (the leads sales sees), else the
champion's test cohort, else nowhere (percentile None; tiers by probability still apply).
Rules-only (no model): no probability; the percentile ranks the rule score in the latest
published rules-only run, and the tier is by rule points, as in the batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import ProjectConfig, TierConfig
from leadscore.data.accounts import AccountSpec, colleague_ids
from leadscore.errors import ConfigError, DataError, LeadscoreError, ModelError
from leadscore.io import publish

# `blank_placeholders` is the source's own cleaning of text fields (blank strings and the
# configured placeholders become missing): a posted lead must be cleaned the same way.
from leadscore.io.sources import CRMData, blank_placeholders, load_crm
from leadscore.io.tables import lead_id_text
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.scoring.inputs import now
from leadscore.scoring.scorer import Scorer, open_leads
from leadscore.scoring.tiers import TIERS, assign_tiers

log = logging.getLogger(__name__)

#: Most leads one on-demand call scores; more is a job for the batch (`leadscore score`).
MAX_LEADS = 100
MAX_LEAD_ID_LENGTH = 200
#: The id a posted lead goes by inside scoring (it has none of its own; never returned).
POSTED = "posted"


class LeadNotFoundError(DataError):
    """A requested lead id is not in the source's leads table."""


class LeadNotOpenError(DataError):
    """A requested lead is not open at the scoring moment (converted, too old, not created)."""


class PayloadError(DataError):
    """A posted lead cannot be scored as given (unknown field, wrong type, impossible time)."""


@dataclass(frozen=True)
class Population:
    """The probabilities a lead scored on demand is ranked in, sorted ascending."""

    probability: np.ndarray
    #: Lead ids aligned with `probability` (None for the test cohort), and as an index of
    #: their text, to find a lead's own published row.
    lead_id: np.ndarray | None
    lead_key: pd.Index | None
    source: str  # "published" or "test_cohort"
    as_of_date: str | None = None
    model_version: str | None = None

    @cached_property
    def positions(self) -> dict[str, int]:
        """Position of each lead id's text in `probability` (built once, on first use)."""
        keys = [] if self.lead_key is None else self.lead_key
        return {key: i for i, key in enumerate(keys)}

    def describe(self) -> dict[str, Any]:
        """What the percentile and tier are relative to, for responses and logs."""
        return {
            "source": self.source,
            "leads": len(self.probability),
            "as_of_date": self.as_of_date,
            "model_version": self.model_version,
        }


def population_from_published(published: pd.DataFrame, by_rules: bool = False) -> Population | None:
    """The latest published run's probabilities (`by_rules`: the rule scores of a rules-only
    run); None when nothing of the kind was published yet."""
    if published.empty:
        return None
    column = "rule_score" if by_rules else "conversion_probability"
    p = published[column].to_numpy(dtype=float)
    keep = np.isfinite(p) & (published["model_version"].isna() == by_rules).to_numpy()
    if not keep.any():
        return None
    order = np.argsort(p[keep], kind="stable")
    ids = published["lead_id"].to_numpy()[keep][order]
    versions = sorted(published["model_version"].dropna().astype("str").unique())
    return Population(
        probability=p[keep][order],
        lead_id=ids,
        lead_key=pd.Index(lead_id_text(pd.Series(ids))),
        source="published",
        as_of_date=str(pd.Timestamp(published["as_of_date"].max()).date()),
        model_version=",".join(versions) or None,
    )


def population_from_model(model: Any) -> Population | None:
    """The champion's test-cohort probabilities, kept with the model when it was trained."""
    reference = getattr(model, "reference_probabilities_", None)
    if reference is None or len(reference) == 0:
        return None
    return Population(np.sort(np.asarray(reference, dtype=float)), None, None, "test_cohort")


def load_population(config: ProjectConfig, model: LeadScoringModel | None) -> Population | None:
    """The reference for percentiles and tiers: the latest published run, else the test cohort.

    Without a model (rules-only), the rule scores of the latest published rules-only run.
    """
    try:
        published = publish.read_scores(config.publish_uri, config.publish.table, latest=True)
    except LeadscoreError as exc:
        log.warning(
            "cannot read the published scores (%s); ranking against the test cohort", exc.problem
        )
        published = pd.DataFrame()
    if model is None:
        return population_from_published(published, by_rules=True)
    return population_from_published(published) or population_from_model(model)


def rank_in_population(
    probability: np.ndarray,
    lead_ids: Sequence[Any] | None,
    population: Population | None,
    tiers: TierConfig,
    own: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile and tier of each lead, as if it were added to `population`.

    The batch's ranking within a run: average rank for the percentile; probability down,
    then lead id, for tiers by share or count. So a lead scored at the published as-of date
    gets its published percentile and tier. Its own published row is left out. Without ids
    (a posted lead, or the test cohort) a lead ranks after the leads it ties with. `own`:
    each lead's position in the population, when the caller has looked it up (-1: none).
    """
    p = np.asarray(probability, dtype=float)
    k = len(p)
    tier = np.full(k, None, dtype=object)
    if tiers.by == "probability":  # needs no population
        tier = assign_tiers(p, np.zeros(k, dtype="datetime64[us]"), tiers)
    if population is None:
        return np.full(k, np.nan), tier
    ref = population.probability
    below = np.searchsorted(ref, p, side="left")
    upto = np.searchsorted(ref, p, side="right")
    if own is None:
        own = np.full(k, -1)
        if population.lead_key is not None and lead_ids is not None:
            own = population.lead_key.get_indexer(lead_id_text(pd.Series(list(lead_ids))))
    has = own >= 0
    own_p = np.where(has, ref[np.maximum(own, 0)], np.nan)
    less = below - (has & (own_p < p))
    equal = upto - below - (has & (own_p == p))
    greater = len(ref) - upto - (has & (own_p > p))
    size = len(ref) - has + 1
    percentile = 100 * (less + (equal + 2) / 2) / size
    ahead = greater + equal
    if population.lead_id is not None and lead_ids is not None:
        for i, lead in enumerate(lead_ids):  # a few leads; each looks at its ties only
            ahead[i] = greater[i] + _ids_before(population.lead_id[below[i] : upto[i]], lead)
    if tiers.by != "probability":
        tier = _tier_at(ahead + 1, size, tiers)
    return percentile, tier


def _ids_before(tied: np.ndarray, lead: Any) -> int:
    """How many of `tied` come before `lead` in the batch's order (ids ascending)."""
    if np.issubdtype(tied.dtype, np.integer) and isinstance(lead, int | np.integer):
        return int(np.count_nonzero(tied < lead))
    return int(np.count_nonzero(tied.astype("str") < str(lead)))


def _tier_at(rank: np.ndarray, size: np.ndarray, tiers: TierConfig) -> np.ndarray:
    """Tier of the lead at `rank` (1 = best) among `size`: the rule of `assign_tiers`."""
    cut = np.asarray(tiers.cutoffs, dtype=float)
    position = rank / size - 1e-12 if tiers.by == "share" else rank
    level = np.searchsorted(cut, position, side="left")
    return np.asarray(TIERS, dtype=object)[np.minimum(level, 3)]


def check_lead_ids(lead_ids: Sequence[str]) -> list[str]:
    """The requested ids, de-duplicated in order; too many or malformed ids are refused."""
    wanted = list(dict.fromkeys(str(i) for i in lead_ids))
    if not wanted:
        raise ConfigError("no lead id given", "pass one or more lead ids")
    if len(wanted) > MAX_LEADS:
        raise ConfigError(
            f"{len(wanted):,} lead ids requested; on-demand scoring takes at most {MAX_LEADS}",
            "score many leads with the batch: `leadscore score --config <project file>`",
        )
    bad = [i for i in wanted if not i.strip() or len(i) > MAX_LEAD_ID_LENGTH]
    if bad:
        raise ConfigError(
            f"{len(bad)} lead id(s) are blank or longer than {MAX_LEAD_ID_LENGTH} characters",
            "pass the lead ids as they are in the leads table",
        )
    return wanted


def _accounts(scorer: Scorer) -> AccountSpec | None:
    accounts = scorer.model.features.accounts if scorer.model is not None else None
    return accounts if accounts is not None and accounts.enabled else None


def refuse_account_models(scorer: Scorer) -> None:
    """A posted lead is not in the source, and its account's leads are not read for it
    yet: a model with account features is refused, never scored without them."""
    if _accounts(scorer) is not None:
        raise ModelError(
            "the model scores each lead with what its colleagues did (account features); "
            "a posted lead is scored alone, without its account",
            "score it by id once it is in the source (GET /leads/{id}/score, `leadscore "
            "score --lead-id`), or serve a model trained with accounts.features: false",
        )


def read_leads(scorer: Scorer, lead_ids: Sequence[str], as_of: pd.Timestamp) -> CRMData:
    """Only these leads' rows, and their activities in the lookback of the model and rules;
    with a model of account features, their accounts' other leads too (see
    `colleague_ids`), which are read but not answered for."""
    since = as_of - pd.Timedelta(days=scorer.lookback_days)
    wanted = check_lead_ids(lead_ids)
    window = {"activities_since": since, "activities_until": as_of}
    crm = load_crm(scorer.config, **window, lead_ids=wanted)
    accounts = _accounts(scorer)
    if accounts is None or crm.leads.empty:
        return crm
    features = scorer.model.features
    others = colleague_ids(scorer.config, accounts, features.feature_config, crm.leads)
    if not others:
        return crm
    return load_crm(scorer.config, **window, lead_ids=[*wanted, *others])


def score_leads(
    crm: CRMData,
    lead_ids: Sequence[str],
    scorer: Scorer,
    as_of: pd.Timestamp,
    population: Population | None,
) -> pd.DataFrame:
    """Score the requested leads of `crm` (from :func:`read_leads`) as the batch does.

    Rows come back in the requested order with the batch's columns; percentile and tier
    are relative to `population`. Unknown and closed leads raise, naming every one.
    """
    wanted = check_requested(crm, lead_ids, as_of, scorer.config)
    scores = scorer.score(crm, as_of, whole_source=False)
    scores = scores.iloc[pd.Index(lead_id_text(scores["lead_id"])).get_indexer(wanted)]
    return _ranked(scores.reset_index(drop=True), scorer, population, scores["lead_id"].tolist())


def check_requested(
    crm: CRMData, lead_ids: Sequence[str], as_of: pd.Timestamp, config: ProjectConfig
) -> list[str]:
    """The requested ids, each known and open at `as_of`; unknown and closed leads raise,
    naming every one."""
    wanted = check_lead_ids(lead_ids)
    known = set(lead_id_text(crm.leads["lead_id"]))
    missing = [i for i in wanted if i not in known]
    if missing:
        raise LeadNotFoundError(
            # No source location: the service answers callers who need not know it.
            f"lead(s) {_listed(missing)} not found in table '{config.source.tables.leads}'",
            f"pass ids as they are in column '{config.source.columns.lead_id}' of that table",
        )
    snap = open_leads(crm, as_of, config)
    open_ids = set(lead_id_text(snap["lead_id"]))
    closed = [i for i in wanted if i not in open_ids]
    if closed:
        raise LeadNotOpenError(
            "; ".join(_why_not_open(crm, closed, as_of, config)),
            "only open leads are scored (as in the nightly batch); pick an open lead",
        )
    return wanted


def _ranked(
    scores: pd.DataFrame, scorer: Scorer, population: Population | None, ids: list | None
) -> pd.DataFrame:
    """Percentile and tier in `population`; rules-only tiers are by points, no ranking."""
    column = "rule_score" if scorer.by_rules else "conversion_probability"
    percentile, tier = rank_in_population(
        scores[column].to_numpy(), ids, population, scorer.config.tiers
    )
    if scorer.by_rules:
        tier = scores["tier"].to_numpy()
    return scores.assign(percentile=percentile, tier=tier)


def _listed(ids: Sequence[str], shown: int = 10) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(repr(i) for i in ids[:shown]) + more


def _why_not_open(
    crm: CRMData,
    lead_ids: Sequence[str],
    as_of: pd.Timestamp,
    config: ProjectConfig,
    posted: bool = False,
) -> list[str]:
    """One sentence per lead saying why it is not open at `as_of` (the batch's rules).

    `posted`: the lead came in a request body and has no id of its own to name.
    """
    leads = crm.leads.set_index(lead_id_text(crm.leads["lead_id"]).to_numpy())
    outcomes = crm.outcomes.assign(key=lead_id_text(crm.outcomes["lead_id"]).to_numpy())
    converted = outcomes.groupby("key")["converted_at"].min()
    max_age = config.snapshots.max_lead_age_days
    reasons = []
    for lead in lead_ids:  # an error message for a few leads
        created = leads.loc[lead, "created_at"]
        name = "the posted lead" if posted else f"lead {lead!r}"
        if crm.flat:
            reasons.append(f"{name} has a label: its outcome is known")
        elif lead in converted.index and converted[lead] < as_of:
            reasons.append(f"{name} converted on {converted[lead]:%Y-%m-%d %H:%M} UTC")
        elif pd.isna(created) or created >= as_of:
            reasons.append(
                f"{name} was created at {created:%Y-%m-%d %H:%M} UTC, not before the as-of "
                f"{as_of:%Y-%m-%d %H:%M} UTC"
                if pd.notna(created)
                else f"{name} has no creation time"
            )
        else:
            age = (as_of - created).days
            reasons.append(
                f"{name} was created {age:,} days before {as_of:%Y-%m-%d}; leads older "
                f"than snapshots.max_lead_age_days ({max_age}) are not scored"
            )
    return reasons


def payload_fields(scorer: Scorer) -> dict[str, str]:
    """Fields a posted lead may carry, name -> "text" or "number": the model's inputs (the
    project's mapped attributes when the rules score alone), e-mail."""
    config = scorer.config
    features = config.source.attributes if scorer.model is None else scorer.model.features
    title = features.job_title if scorer.model is None else features.title_column
    fields = {name: "text" for name in features.categorical}
    fields |= {name: "number" for name in features.numeric}
    for name in (title, config.source.attributes.email):
        if name:
            fields[name] = "text"
    return fields


def crm_from_payload(
    attributes: Mapping[str, str | float | None],
    activities: pd.DataFrame,
    created_at: pd.Timestamp | None,
    scorer: Scorer,
) -> CRMData:
    """A posted lead as the source would give it: one open lead and its activities.

    `activities` has `occurred_at` (naive UTC), `activity_type` and `detail`.
    """
    config = scorer.config
    latest = activities["occurred_at"].max() if len(activities) else None
    fields = check_payload(attributes, latest, created_at, scorer)
    leads = pd.DataFrame(
        {
            "lead_id": pd.Series([POSTED], dtype="str"),
            "created_at": pd.Series([created_at], dtype="datetime64[us]"),
        }
    )
    for name, kind in fields.items():
        value = attributes.get(name)
        leads[name] = pd.Series([value], dtype="float64" if kind == "number" else "str")
    text = [name for name, kind in fields.items() if kind == "text"]
    blank_placeholders(leads, text, config.source.missing_values)
    if config.flat:
        leads["converted"] = np.nan  # an empty label: an open lead
    acts = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].iloc[np.zeros(len(activities), dtype=int)].to_numpy(),
            "occurred_at": activities["occurred_at"].astype("datetime64[us]").to_numpy(),
            "activity_type": activities["activity_type"].astype("str").to_numpy(),
            "detail": activities["detail"].astype("str").to_numpy(),
        }
    ).astype({"activity_type": "str", "detail": "str"})
    outcomes = pd.DataFrame(
        {"lead_id": leads["lead_id"].iloc[:0], "converted_at": pd.Series(dtype="datetime64[us]")}
    )
    return CRMData(leads=leads, activities=acts, outcomes=outcomes, source="request")


def check_payload(
    attributes: Mapping[str, str | float | None],
    newest_activity: pd.Timestamp | None,
    created_at: pd.Timestamp | None,
    scorer: Scorer,
) -> dict[str, str]:
    """Refuse a posted lead the model cannot score as given (unknown or mistyped fields,
    negative values, no creation time, times in the future); its fields by kind."""
    config = scorer.config
    fields = payload_fields(scorer)
    unknown = sorted(set(attributes) - set(fields))
    if unknown:
        raise PayloadError(
            f"unknown attribute(s) {_listed(unknown)}",
            f"send only the lead fields the model reads: {', '.join(fields)}",
        )
    wrong = [
        f"'{name}' must be {'a number' if fields[name] == 'number' else 'text'}"
        for name, value in attributes.items()
        if value is not None and isinstance(value, str) == (fields[name] == "number")
    ]
    if wrong:
        raise PayloadError(f"wrong attribute type: {'; '.join(wrong)}", "fix the values")
    negative = [
        name
        for name, value in attributes.items()
        if fields[name] == "number"
        and value is not None
        and value < 0
        and name not in config.source.attributes.signed
    ]
    if negative:
        raise PayloadError(
            f"negative value of {_listed(negative)}, which cannot be negative",
            "send the value the CRM holds (the batch refuses negative values there too)",
        )
    if created_at is None and not config.flat:
        raise PayloadError(
            "created_at is missing: lead age is a model input",
            "send when the lead was created in the CRM, e.g. 2026-03-01T14:05:00Z",
        )
    latest = now() + pd.Timedelta(days=1)
    late = [name for name, t in (("created_at", created_at),) if t is not None and t > latest]
    if newest_activity is not None and newest_activity > latest:
        late.append("activities.occurred_at")
    if late:
        raise PayloadError(
            f"{', '.join(late)}: timestamps in the future",
            "send UTC times or times with their offset; check the sender's clock",
        )
    return fields


def score_payload(
    crm: CRMData, scorer: Scorer, as_of: pd.Timestamp, population: Population | None
) -> pd.DataFrame:
    """Score a posted lead (from :func:`crm_from_payload`) as the batch would score it."""
    refuse_account_models(scorer)
    config = scorer.config
    if open_leads(crm, as_of, config).empty:
        raise PayloadError(
            "; ".join(
                _why_not_open(crm, lead_id_text(crm.leads["lead_id"]), as_of, config, posted=True)
            ),
            "created_at must lie before as_of (and within snapshots.max_lead_age_days)",
        )
    scores = scorer.score(crm, as_of, whole_source=False)
    return _ranked(scores, scorer, population, None).assign(lead_id=None)


def as_records(scores: pd.DataFrame) -> list[dict[str, Any]]:
    """Scores as JSON-ready dicts: fired rules and reasons as lists, None for unknowns."""

    def number(value: Any) -> float | None:
        return None if value is None or not math.isfinite(value) else float(value)

    def split(text: Any, separator: str) -> list[str]:
        return [] if not isinstance(text, str) or not text else text.split(separator)

    return [
        {
            "lead_id": row.lead_id.item() if isinstance(row.lead_id, np.generic) else row.lead_id,
            "as_of": pd.Timestamp(row.as_of).isoformat() + "Z",
            "conversion_probability": number(row.conversion_probability),
            "percentile": number(row.percentile),
            "tier": row.tier,
            "rule_score": float(row.rule_score),
            "is_mql": bool(row.is_mql),
            "rules_fired": split(row.rules_fired, ","),
            "reasons_up": split(row.reasons_up, "; "),
            "reasons_down": split(row.reasons_down, "; "),
        }
        for row in scores.itertuples(index=False)  # a few leads
    ]
