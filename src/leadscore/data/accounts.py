"""Accounts: which company each lead belongs to, and what its colleagues did, point in time.

B2B sells to accounts: several people of one company research before one of them becomes
an opportunity. A lead's account is

1. the source's account column (`source.attributes.account`) where it has a value, else
2. its corporate e-mail domain, through `accounts.domains` (subsidiaries, aliases), else
3. nobody's: a free-mail, student or unknown address, or a domain shared by more than
   `accounts.max_leads` leads (a mail provider or a reseller), is a one-person account.

:func:`account_features` adds, for each snapshot (lead, `as_of`), what the lead's
*colleagues* (the other leads of its account) had done strictly before `as_of`: how many
were created, are open and converted in the last `snapshots.max_lead_age_days`, how many
were active in each window and how often by activity type and page category, when the
latest of them was active, how busy the account is against its size and its own pace,
which buying-group roles it had filled. A one-person account has no colleagues: its account
features are missing (NaN), not zero, so "nobody else" and "a company whose other people
did nothing" stay apart. Everything is counted from arrays per snapshot date, whatever
the size of an account: an account's totals minus the lead's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadscore.config import FeatureConfig, ProjectConfig
from leadscore.data.account_spec import AccountSpec, Role
from leadscore.data.features import (
    ActivityIndex,
    BehaviourSpec,
    email_domain,
    email_domain_kind,
    rows_by_date,
)
from leadscore.data.titles import (
    DEPARTMENTS,
    SENIORITY_LEVELS,
    department_from_title,
    seniority_from_title,
)
from leadscore.errors import ConfigError
from leadscore.io.sources import CRMData, account_text
from leadscore.io.tables import lead_id_text, read_table

_DAY_US = 86_400_000_000
#: Where a lead's account comes from, per lead.
KEY_KINDS = ("column", "domain", "own")


def account_spec(config: ProjectConfig, behaviour: BehaviourSpec) -> AccountSpec:
    """The account spec of a training run: on for sources with timed events and an account
    key (an account column or e-mail addresses), unless `accounts.features` is false."""
    accounts, attrs = config.accounts, config.source.attributes
    if config.flat or not accounts.features or (attrs.account is None and attrs.email is None):
        return AccountSpec.none()
    windows = tuple(behaviour.windows_days) or tuple(config.features.windows_days)
    kind_window = accounts.kind_window_days
    return AccountSpec(
        enabled=True,
        column=attrs.account,
        domains={k.lower(): v.lower() for k, v in accounts.domains.items()},
        max_leads=accounts.max_leads,
        windows_days=windows,
        kind_window_days=kind_window,
        activity_types=tuple(behaviour.activity_types),
        page_categories=tuple(behaviour.page_categories),
        roles=_roles(accounts.buying_group),
        recency_cap_days=config.features.recency_cap_days,
        history_days=config.snapshots.max_lead_age_days,
    )


def _roles(group: Mapping) -> tuple[Role, ...]:
    """The buying-group roles of `accounts.buying_group`, their names checked."""
    roles = []
    for name, role in group.items():
        for key, given, known in (
            ("seniority", role.seniority, SENIORITY_LEVELS),
            ("department", role.department, DEPARTMENTS),
        ):
            unknown = [v for v in given if v not in known]
            if unknown:
                raise ConfigError(
                    f"accounts.buying_group.{name}.{key} names {', '.join(unknown)}, which "
                    f"job titles never give",
                    f"use some of {', '.join(known)}",
                )
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ConfigError(
                f"accounts.buying_group has a role named {name!r}",
                "name roles in lower case with letters, digits and _ (decision_maker)",
            )
        roles.append(Role(name, tuple(role.seniority), tuple(role.department)))
    return tuple(roles)


@dataclass(frozen=True)
class AccountKeys:
    """Each lead's account: its key text (e.g. ``domain:acme.com``), its code (-1 for a
    one-person account) and where the key came from."""

    names: np.ndarray
    codes: np.ndarray
    kinds: np.ndarray
    #: Keys that held more than `max_leads` leads and were split into one-person accounts,
    #: with their number of leads.
    crowded: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.codes.max()) + 1 if len(self.codes) else 0


def account_keys(
    leads: pd.DataFrame,
    column: str | None,
    email_column: str | None,
    features: FeatureConfig,
    domains: Mapping[str, str],
    max_leads: int,
) -> AccountKeys:
    """Each lead's account (see the module's docstring for the order)."""
    n = len(leads)
    names = pd.Series(pd.NA, index=leads.index, dtype="str")
    kinds = np.full(n, "own", dtype=object)
    if column is not None and column in leads:
        given = account_text(leads[column], "leads")
        has = given.notna().to_numpy()
        names[has] = "id:" + given[has]
        kinds[has] = "column"
    if email_column is not None and email_column in leads:
        free = names.isna().to_numpy()
        domain = email_domain(leads[email_column][free])
        corporate = email_domain_kind(domain, features).isin(["corporate", "competitor"])
        domain = domain.map(lambda d: domains.get(d, d) if isinstance(d, str) else d)
        usable = (corporate & domain.notna()).to_numpy()
        where = np.flatnonzero(free)[usable]
        names.iloc[where] = ("domain:" + domain[usable]).to_numpy()
        kinds[where] = "domain"
    sizes = names.value_counts()
    crowded = sizes[sizes > max_leads]
    if len(crowded):
        split = names.isin(crowded.index).to_numpy()
        names[split] = pd.NA
        kinds[split] = "own"
    # A key held by one lead in the whole source is still an account (its colleagues may
    # come later): whether it gets any is the future, so only the lead's own fields decide.
    codes, _ = pd.factorize(names, use_na_sentinel=True)
    return AccountKeys(
        names=names.to_numpy(dtype=object),
        codes=codes.astype(np.int64),
        kinds=kinds,
        crowded={str(k): int(v) for k, v in crowded.items()},
    )


@dataclass(frozen=True)
class AccountContext:
    """What account features are counted from, per lead of the source (every lead, not
    only those scored: colleagues count whether or not they are open)."""

    lead_ids: pd.Index
    keys: AccountKeys
    created: np.ndarray  # datetime64[us]
    converted: np.ndarray  # datetime64[us], NaT when never
    role: np.ndarray  # (leads, roles) bool


def account_context(
    leads: pd.DataFrame,
    outcomes: pd.DataFrame,
    spec: AccountSpec,
    features: FeatureConfig,
    title_column: str | None,
    email_column: str | None,
) -> AccountContext:
    """The per-lead arrays :func:`account_features` counts from."""
    keys = account_keys(leads, spec.column, email_column, features, spec.domains, spec.max_leads)
    converted = (
        leads[["lead_id"]]
        .merge(outcomes[["lead_id", "converted_at"]], on="lead_id", how="left")["converted_at"]
        .to_numpy(dtype="datetime64[us]")
        if len(outcomes)
        else np.full(len(leads), np.datetime64("NaT"), dtype="datetime64[us]")
    )
    titles = (
        leads[title_column]
        if title_column and title_column in leads
        else pd.Series(pd.NA, index=leads.index, dtype="str")
    )
    seniority = seniority_from_title(titles).to_numpy(dtype=object)
    department = department_from_title(titles).to_numpy(dtype=object)
    role = np.zeros((len(leads), len(spec.roles)), dtype=bool)
    for r, spec_role in enumerate(spec.roles):
        fills = np.isin(seniority, list(spec_role.seniorities))
        if spec_role.departments:
            fills &= np.isin(department, list(spec_role.departments))
        role[:, r] = fills
    return AccountContext(
        lead_ids=pd.Index(leads["lead_id"].to_numpy()),
        keys=keys,
        created=leads["created_at"].to_numpy(dtype="datetime64[us]"),
        converted=converted,
        role=role,
    )


def _colleagues(values: np.ndarray, account: np.ndarray, accounts: int) -> np.ndarray:
    """Per account, the sum of `values` over its leads (leads of no account left out)."""
    member = account >= 0
    return np.bincount(account[member], weights=values[member], minlength=accounts)


def account_features(
    snapshots: pd.DataFrame,
    context: AccountContext,
    activities: ActivityIndex,
    spec: AccountSpec,
) -> pd.DataFrame:
    """Account columns for each snapshot row, from what the lead's colleagues had done
    strictly before its `as_of` (NaN for a lead with no account)."""
    columns = spec.columns()
    n = len(snapshots)
    if not spec.enabled:
        return pd.DataFrame(index=snapshots.index)
    out = np.full((n, len(columns)), np.nan)
    position = {name: i for i, name in enumerate(columns)}
    account = context.keys.codes
    accounts = context.keys.count
    leads = len(account)
    lead_pos = context.lead_ids.get_indexer(snapshots["lead_id"].to_numpy())
    # The activities' leads as positions in the context (-1: not a lead of the source).
    event_lead = context.lead_ids.get_indexer(activities.lead_keys)[activities.lead_code]
    # Codes into `spec.keys`: activity types first, then page categories.
    kind_of_type = activities.type_codes(list(spec.activity_types))
    category_code = activities.category_codes(list(spec.page_categories))
    n_types = len(spec.activity_types)
    kind_of_category = np.where(category_code >= 0, category_code + n_types, -1)
    n_keys = len(spec.keys)
    as_of_all = snapshots["as_of"].to_numpy(dtype="datetime64[us]")
    for part in rows_by_date(snapshots):
        rows_pos = lead_pos[part]
        has = rows_pos >= 0
        part, rows_pos = part[has], rows_pos[has]
        acct = account[rows_pos]
        grouped = acct >= 0
        part, rows_pos, acct = part[grouped], rows_pos[grouped], acct[grouped]
        if not len(part):
            continue
        t = as_of_all[part[0]]
        # People and conversions of the last `history_days`: counts over all time would
        # only grow with the history, and a model fit on its early years would score
        # today's leads out of the range it learned (monitoring's drift check sees it).
        exists = context.created < t
        since = t - np.timedelta64(spec.history_days, "D")
        known = exists & (context.created >= since)
        converted = exists & (context.converted < t) & (context.converted >= since)
        open_ = known & ~(exists & (context.converted < t))

        def others(per_lead: np.ndarray, acct=acct, rows_pos=rows_pos) -> np.ndarray:
            """Per row, the sum of `per_lead` over the row's colleagues (not the lead)."""
            total = _colleagues(per_lead.astype(float), account, accounts)
            return total[acct] - per_lead[rows_pos]

        out[part, position["account_people"]] = others(known)
        out[part, position["account_open_people"]] = others(open_)
        out[part, position["account_conversions"]] = others(converted)
        if spec.roles:
            filled = np.zeros(len(part))
            for r, role in enumerate(spec.roles):
                holds = known & context.role[:, r]
                count = others(holds)
                out[part, position[f"account_role_{role.name}"]] = count
                filled += (count + holds[rows_pos]) > 0
            out[part, position["account_buying_group"]] = filled / len(spec.roles)

        # Events of the lookback, by the leads of an account.
        span = activities.between(t - np.timedelta64(spec.lookback_days, "D"), t)
        ev_lead = event_lead[span]
        ev_acct = np.where(ev_lead >= 0, account[np.maximum(ev_lead, 0)], -1)
        # A lead created later was nobody the CRM knew at `as_of`, even where its events
        # are older (a visitor's history merged into the lead when it was created).
        keep = (ev_acct >= 0) & exists[np.maximum(ev_lead, 0)]
        ev_lead, ev_acct = ev_lead[keep], ev_acct[keep]
        age = (t - activities.times[span][keep]).astype("timedelta64[us]").astype(np.int64)
        age = age / _DAY_US
        # Each row's own events, to take off its account's totals.
        row_of_lead = np.full(leads, -1, dtype=np.int64)
        row_of_lead[rows_pos] = np.arange(len(part))
        ev_row = row_of_lead[ev_lead]
        own = ev_row >= 0
        for w in spec.windows_days:
            inside = age <= w
            out[part, position[f"account_n_all_{w}d"]] = _colleague_events(
                ev_acct, ev_row, own, inside, acct, accounts, len(part)
            )
            active = np.bincount(ev_lead[inside], minlength=leads) > 0
            people = _colleagues(active.astype(float), account, accounts)
            out[part, position[f"account_active_people_{w}d"]] = people[acct] - active[rows_pos]
        if n_keys:
            inside = age <= spec.kind_window_days
            for kind in (kind_of_type[span][keep], kind_of_category[span][keep]):
                counted = inside & (kind >= 0)
                total = np.bincount(
                    ev_acct[counted] * n_keys + kind[counted], minlength=accounts * n_keys
                ).reshape(accounts, n_keys)
                mine = np.bincount(
                    ev_row[counted & own] * n_keys + kind[counted & own],
                    minlength=len(part) * n_keys,
                ).reshape(len(part), n_keys)
                got = total[acct] - mine
                for k, key in enumerate(spec.keys):
                    column = position[f"account_n_{key}_{spec.kind_window_days}d"]
                    hit = got[:, k]
                    # Each key is counted from one of the two codes; add, never overwrite.
                    current = out[part, column]
                    out[part, column] = np.where(np.isnan(current), hit, current + hit)
        k, base = spec.kind_window_days, spec.trend_base_days
        recent = _colleague_events(ev_acct, ev_row, own, age <= k, acct, accounts, len(part))
        people = out[part, position["account_people"]]
        active = np.bincount(ev_lead[age <= k], minlength=leads) > 0
        active_people = _colleagues(active.astype(float), account, accounts)[acct]
        active_people -= active[rows_pos]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[part, position[f"account_share_active_{k}d"]] = np.where(
                people > 0, active_people / people, np.nan
            )
            out[part, position[f"account_events_per_person_{k}d"]] = np.where(
                people > 0, recent / people, np.nan
            )
        if base > k:
            older = _colleague_events(ev_acct, ev_row, own, age <= base, acct, accounts, len(part))
            older -= recent
            out[part, position[f"account_trend_{k}d_vs_{base}d"]] = (recent / k + 0.1) / (
                older / (base - k) + 0.1
            )
        out[part, position["account_days_since_any"]] = _colleague_recency(
            ev_lead, ev_acct, age, spec.recency_cap_days, acct, rows_pos
        )
    return pd.DataFrame(out, index=snapshots.index, columns=columns)


def _colleague_events(
    ev_acct: np.ndarray,
    ev_row: np.ndarray,
    own: np.ndarray,
    inside: np.ndarray,
    acct: np.ndarray,
    accounts: int,
    rows: int,
) -> np.ndarray:
    """Per row, the events `inside` of its colleagues: its account's minus its own."""
    total = np.bincount(ev_acct[inside], minlength=accounts)
    return total[acct] - np.bincount(ev_row[inside & own], minlength=rows)


def _colleague_recency(
    ev_lead: np.ndarray,
    ev_acct: np.ndarray,
    age: np.ndarray,
    cap: int,
    acct: np.ndarray,
    rows_pos: np.ndarray,
) -> np.ndarray:
    """Days since the latest event of any colleague (within `cap` days), NaN if none: the
    account's newest event, or its second-newest person's when the newest is the lead's."""
    inside = age <= cap
    lead, account, age = ev_lead[inside], ev_acct[inside], age[inside]
    result = np.full(len(acct), np.nan)
    if not len(lead):
        return result
    # The newest event per lead, then the two newest leads per account.
    order = np.lexsort((age, lead))
    first = np.r_[True, lead[order][1:] != lead[order][:-1]]
    lead, account, age = lead[order][first], account[order][first], age[order][first]
    order = np.lexsort((age, account))
    lead, account, age = lead[order], account[order], age[order]
    start = np.r_[True, account[1:] != account[:-1]]
    heads = np.flatnonzero(start)
    second_ok = np.r_[heads[:-1] + 1 < heads[1:], heads[-1] + 1 < len(account)]
    accounts = int(max(account.max(), acct.max())) + 1
    best_lead = np.full(accounts, -1, dtype=np.int64)
    best_age = np.full(accounts, np.nan)
    next_age = np.full(accounts, np.nan)
    best_lead[account[heads]] = lead[heads]
    best_age[account[heads]] = age[heads]
    next_age[account[heads[second_ok]]] = age[heads[second_ok] + 1]
    return np.where(best_lead[acct] == rows_pos, next_age[acct], best_age[acct])


def with_account_features(
    rows: pd.DataFrame,
    snapshots: pd.DataFrame,
    context: AccountContext | None,
    activities: ActivityIndex,
    spec: AccountSpec | None,
) -> pd.DataFrame:
    """`rows` (from `snapshot_rows`) with the account columns of `spec` added."""
    if spec is None or not spec.enabled or context is None:
        return rows
    return pd.concat([rows, account_features(snapshots, context, activities, spec)], axis=1)


def check_accounts(crm: CRMData, config: ProjectConfig) -> AccountKeys | None:
    """Warn (in `crm.checks`) about account keys too crowded to be one company; the keys,
    or None when the project groups no leads into accounts."""
    attrs, accounts = config.source.attributes, config.accounts
    if crm.flat or not accounts.features or (attrs.account is None and attrs.email is None):
        return None
    domains = {k.lower(): v.lower() for k, v in accounts.domains.items()}
    leads = crm.leads
    keys = account_keys(
        leads, attrs.account, attrs.email, config.features, domains, accounts.max_leads
    )
    table = config.source.tables.leads
    for key, size in sorted(keys.crowded.items(), key=lambda kv: -kv[1])[:10]:
        kind, _, name = key.partition(":")
        if kind == "domain":
            column = attrs.email
            said = f"the e-mail domain {name!r} is shared by {size:,} leads"
            fix = (
                "a mail provider or an ISP: add it to features.free_mail_domains; one "
                "company: raise accounts.max_leads; or name each lead's company in an "
                "account column (source.attributes.account)"
            )
            mask = email_domain(leads[attrs.email]).map(lambda d: domains.get(d, d)).eq(name)
        else:
            column = attrs.account
            said = f"the account {name!r} holds {size:,} leads"
            fix = (
                "a catch-all account (unknown company, a reseller): leave those leads' "
                "account empty, so their e-mail domain groups them; one company: raise "
                "accounts.max_leads"
            )
            mask = account_text(leads[attrs.account], table).eq(name)
        crm.checks.warn(
            table,
            column,
            f"{said}, more than accounts.max_leads ({accounts.max_leads:,}): too many to be "
            "one buying company, so each of them counts as an account of its own",
            fix,
            mask.fillna(False).to_numpy(dtype=bool),
        )
    return keys


def colleague_ids(config: ProjectConfig, spec: AccountSpec, features: FeatureConfig,
                  leads: pd.DataFrame) -> list[str]:  # fmt: skip
    """Ids (as text) of the other leads of these leads' accounts, read from the source by
    account column or e-mail domain: what on-demand scoring reads besides the leads."""
    source, attrs = config.source, config.source.attributes
    keys = account_keys(leads, spec.column, attrs.email, features, spec.domains, spec.max_leads)
    names = {n for n in keys.names if isinstance(n, str)}
    accounts = sorted(n.removeprefix("id:") for n in names if n.startswith("id:"))
    domains = {n.removeprefix("domain:") for n in names if n.startswith("domain:")}
    # The addresses of a mapped domain are at the domains that map to it.
    domains |= {k for k, v in spec.domains.items() if v in domains}
    id_column = source.columns.lead_id
    columns = [id_column, *[c for c in (spec.column, attrs.email) if c]]
    read = {
        "uri": config.source_uri,
        "table": source.tables.leads,
        "columns": columns,
        "text": [c for c in (id_column, spec.column) if c],
        "encoding": source.encoding,
        "file_format": source.file_format(source.tables.leads),
    }
    found = []
    if accounts and spec.column is not None:
        found.append(read_table(**read, lead_filter=(spec.column, accounts)))
    if domains and attrs.email is not None:
        found.append(read_table(**read, domain_filter=(attrs.email, sorted(domains))))
    if not found:
        return []
    rows = pd.concat(found, ignore_index=True)
    rows = rows.rename(columns={id_column: "lead_id"}).drop_duplicates("lead_id")
    # Keyed as the batch keys them (a domain's LIKE may match a few more). Of a crowded
    # key, max_leads + 1 leads are enough for the context to see it crowded, as the batch
    # does, and to give its leads no account.
    every = account_keys(rows, spec.column, attrs.email, features, spec.domains, 2**62)
    key = pd.Series(every.names, index=rows.index)
    ours = key[key.isin(names)]
    ours = ours[ours.groupby(ours).cumcount() <= spec.max_leads]
    asked = set(lead_id_text(leads["lead_id"]))
    return [i for i in lead_id_text(rows.loc[ours.index, "lead_id"]) if i not in asked]
