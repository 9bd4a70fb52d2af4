"""What account features a model has: fixed at fit time and stored with the model (in its
feature builder), so it needs nothing but the standard library (`leadscore.data.accounts`
computes them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Role:
    """A buying-group role: the seniorities (and, if listed, departments) that fill it."""

    name: str
    seniorities: tuple[str, ...]
    departments: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccountSpec:
    """How leads map to accounts and which account features exist; fixed at fit time and
    stored with the model, so scoring groups leads exactly as training did."""

    enabled: bool = False
    column: str | None = None
    domains: Mapping[str, str] = field(default_factory=dict)
    max_leads: int = 2000
    windows_days: tuple[int, ...] = ()
    #: The window of the per-kind counts (activity types and page categories).
    kind_window_days: int = 30
    #: The activity types and page categories counted per kind (the behaviour spec's).
    activity_types: tuple[str, ...] = ()
    page_categories: tuple[str, ...] = ()
    roles: tuple[Role, ...] = ()
    recency_cap_days: int = 180
    #: People and conversions count over this many days before the snapshot.
    history_days: int = 365

    @classmethod
    def none(cls) -> AccountSpec:
        """No account features (a flat export, or `accounts.features: false`)."""
        return cls()

    @property
    def lookback_days(self) -> int:
        if not self.enabled:
            return 0
        return max(max(self.windows_days, default=0), self.recency_cap_days, self.trend_base_days)

    @property
    def keys(self) -> tuple[str, ...]:
        """The kinds counted: activity types, then `page_<category>` (as `BehaviourSpec`)."""
        return (*self.activity_types, *(f"page_{c}" for c in self.page_categories))

    @property
    def trend_base_days(self) -> int:
        """The longer window the recent pace is compared with (the widest window)."""
        return max(self.windows_days, default=0)

    def columns(self) -> list[str]:
        """Names of the account columns, in a stable order."""
        if not self.enabled:
            return []
        cols = ["account_people", "account_open_people", "account_conversions"]
        cols += [f"account_active_people_{w}d" for w in self.windows_days]
        cols += [f"account_n_all_{w}d" for w in self.windows_days]
        cols += [f"account_n_{key}_{self.kind_window_days}d" for key in self.keys]
        cols.append("account_days_since_any")
        # Relative to the account's own size and pace: a big account is always busy, and
        # what a buying project changes is how busy it is against its usual.
        k = self.kind_window_days
        cols += [f"account_share_active_{k}d", f"account_events_per_person_{k}d"]
        if self.trend_base_days > k:
            cols.append(f"account_trend_{k}d_vs_{self.trend_base_days}d")
        cols += [f"account_role_{role.name}" for role in self.roles]
        if self.roles:
            cols.append("account_buying_group")
        return cols
