"""Accounts: keys from the account column or the corporate domain, and colleagues' features
counted point in time (checked against a plain pandas count, and by a property: nothing
at or after the snapshot, no colleague created or converted later, changes a feature)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.config import FeatureConfig, config_from_dict
from leadscore.data.accounts import (
    AccountSpec,
    Role,
    account_context,
    account_features,
    account_keys,
    account_spec,
    check_accounts,
)
from leadscore.data.features import BehaviourSpec, index_activities
from leadscore.errors import ConfigError
from leadscore.io.sources import CRMData
from leadscore.io.validation import Checks

AS_OF = pd.Timestamp("2026-03-01")
TYPES = ("content_download", "demo_request", "email_open", "page_view")
BEHAVIOUR = BehaviourSpec(TYPES, {"pricing": "/pricing"}, "page_view", (7, 30, 90), 180)
SPEC = AccountSpec(
    enabled=True,
    windows_days=(7, 30, 90),
    kind_window_days=30,
    activity_types=TYPES,
    page_categories=("pricing",),
    roles=(Role("decision_maker", ("c_level", "vp")), Role("user", ("individual",))),
)


def _leads() -> pd.DataFrame:
    """Acme (three people by domain, one of them by its account id), Beta (two by id), a
    free-mail lead and a lead created after the snapshot at Acme."""
    return pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4, 5, 6, 7],
            "created_at": pd.to_datetime(
                [
                    "2026-01-01",
                    "2026-01-05",
                    "2026-02-01",
                    "2026-01-10",
                    "2026-02-10",
                    "2026-01-15",
                    "2026-03-05",
                ]
            ).astype("datetime64[us]"),
            "account_id": pd.array(["ACME", None, None, "B-2", "B-2", None, None], dtype="str"),
            "email": pd.array(
                [
                    "a@acme.com",
                    "b@acme.com",
                    "c@ACME.com",
                    "d@beta.io",
                    "e@beta.io",
                    "f@gmail.com",
                    "g@acme.com",
                ],
                dtype="str",
            ),
            "job_title": pd.array(
                ["VP Sales", "Engineer", None, "CEO", "Analyst", "Director", "CTO"], dtype="str"
            ),
        }
    )


def test_keys_come_from_the_column_else_the_corporate_domain() -> None:
    keys = account_keys(_leads(), "account_id", "email", FeatureConfig(), {}, 2000)
    assert list(keys.names[:5]) == [
        "id:ACME",
        "domain:acme.com",
        "domain:acme.com",
        "id:B-2",
        "id:B-2",
    ]
    assert pd.isna(keys.names[5])
    assert list(keys.kinds[:6]) == ["column", "domain", "domain", "column", "column", "own"]
    assert keys.codes[5] == -1 and keys.codes[1] == keys.codes[2] == keys.codes[6]
    # A mapped domain joins the account of the domain it maps to (a subsidiary's leads
    # go with the parent's); it does not join an account id of the column.
    mapped = account_keys(_leads(), None, "email", FeatureConfig(), {"beta.io": "acme.com"}, 2000)
    assert set(mapped.names[[0, 1, 2, 3, 4, 6]]) == {"domain:acme.com"}
    assert len(set(mapped.codes[[0, 1, 2, 3, 4, 6]])) == 1 and mapped.codes[5] == -1


def test_a_crowded_domain_splits_into_own_accounts_with_a_warning() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": range(6),
            "created_at": pd.Timestamp("2026-01-01"),
            "email": pd.array([f"u{i}@bigisp.net" for i in range(5)] + ["x@acme.com"]),
        }
    )
    config = config_from_dict(
        {
            "source": {"attributes": {"email": "email"}},
            "accounts": {"features": True, "max_leads": 4},
        }
    )
    crm = CRMData(leads, pd.DataFrame(), pd.DataFrame(), "test", Checks())
    keys = check_accounts(crm, config)
    assert keys is not None and (keys.codes[:5] == -1).all()
    assert keys.crowded == {"domain:bigisp.net": 5}
    [warning] = crm.checks.warnings
    assert "'bigisp.net' is shared by 5 leads" in warning.message
    assert "free_mail_domains" in warning.fix and warning.count == 5


def test_roles_must_be_seniorities_titles_give() -> None:
    config = config_from_dict(
        {"accounts": {"features": True, "buying_group": {"boss": {"seniority": ["chief"]}}}}
    )
    with pytest.raises(ConfigError, match="chief"):
        account_spec(config, BEHAVIOUR)


def _events(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["lead_id", "hours", "activity_type", "detail"])
    frame["occurred_at"] = (AS_OF + pd.to_timedelta(frame["hours"].astype("int64"), "h")).astype(
        "datetime64[us]"
    )
    return frame.drop(columns="hours").astype({"activity_type": "str", "detail": "str"})


def _features(leads, outcomes, activities) -> pd.DataFrame:
    snaps = pd.DataFrame({"lead_id": [1, 2, 3, 4, 5, 6], "as_of": AS_OF}).astype(
        {"as_of": "datetime64[us]"}
    )
    context = account_context(leads, outcomes, SPEC, FeatureConfig(), "job_title", "email")
    index = index_activities(activities, BEHAVIOUR.page_categories, "page_view")
    return account_features(snaps, context, index, SPEC)


def test_colleagues_are_counted_as_pandas_counts_them() -> None:
    leads = _leads()
    outcomes = pd.DataFrame(
        {"lead_id": [2, 5], "converted_at": pd.to_datetime(["2026-02-15", "2026-03-10"])}
    )
    acts = _events(
        [
            (1, -5, "page_view", "/pricing"),
            (2, -24 * 10, "page_view", "/pricing"),
            (2, -24 * 40, "email_open", ""),
            (3, -24 * 100, "demo_request", ""),
            (3, 5, "demo_request", ""),  # after the snapshot
            (4, -24 * 2, "content_download", ""),
            (7, -24 * 1, "page_view", "/pricing"),  # its lead comes later: not Acme's yet
            (6, -1, "page_view", "/pricing"),
        ]
    )
    got = _features(leads, outcomes, acts)
    lead1 = got.iloc[0]
    assert lead1["account_people"] == 2  # leads 2 and 3 (7 comes later)
    assert lead1["account_open_people"] == 1 and lead1["account_conversions"] == 1
    assert lead1["account_n_all_30d"] == 1 and lead1["account_n_all_90d"] == 2
    assert lead1["account_active_people_90d"] == 1
    assert lead1["account_n_page_pricing_30d"] == 1 and lead1["account_n_page_view_30d"] == 1
    assert lead1["account_days_since_any"] == pytest.approx(10.0)
    # The engineer is a user; the VP itself fills the other role.
    assert lead1["account_role_user"] == 1 and lead1["account_role_decision_maker"] == 0
    assert lead1["account_buying_group"] == 1.0
    assert got.iloc[1]["account_role_decision_maker"] == 1
    # Lead 2's newest colleague event is lead 1's, 5 hours before.
    assert got.iloc[1]["account_days_since_any"] == pytest.approx(5 / 24)
    # Beta: lead 5's conversion is after the snapshot, so nobody converted yet.
    assert got.iloc[3]["account_conversions"] == 0 and got.iloc[3]["account_people"] == 1
    assert got.iloc[4]["account_n_content_download_30d"] == 1
    # The free-mail lead has no account: missing, not zero.
    assert got.iloc[5].isna().all()


events = st.lists(
    st.tuples(
        st.integers(1, 7),
        st.integers(-200 * 24, 200 * 24),
        st.sampled_from(TYPES),
        st.sampled_from(["/pricing", "/blog", ""]),
    ),
    max_size=40,
)
later = st.lists(st.tuples(st.integers(1, 7), st.integers(0, 300 * 24)), max_size=7)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(past=events, future=events, other_future=events, conversions=later, other=later)
def test_nothing_at_or_after_the_snapshot_changes_an_account_feature(
    past, future, other_future, conversions, other
) -> None:
    leads = _leads()

    def outcomes(rows):
        firsts = {lead: hours for lead, hours in sorted(rows, key=lambda r: r[1])[::-1]}
        return pd.DataFrame(
            {
                "lead_id": list(firsts),
                "converted_at": [AS_OF + pd.Timedelta(hours=h) for h in firsts.values()],
            }
        ).astype({"converted_at": "datetime64[us]"})

    before = [e for e in past if e[1] < 0]
    after = lambda rows: [e for e in rows if e[1] >= 0]  # noqa: E731
    one = _features(leads, outcomes(conversions), _events(before + after(future)))
    two = _features(leads, outcomes(other), _events(before + after(other_future)))
    pd.testing.assert_frame_equal(one, two)
    # Not vacuous: the past is seen (every Acme event in 90 days, by a colleague of lead 1).
    acme_colleagues = {2, 3}
    seen = sum(1 for e in before if e[0] in acme_colleagues and e[1] >= -90 * 24)
    assert one.iloc[0]["account_n_all_90d"] == seen
    assert np.isnan(one.iloc[5]["account_people"])


@pytest.mark.parametrize("language", ["en", "ja"])
def test_account_reasons_are_said_in_words(language) -> None:
    from leadscore.data.features import FeatureBuilder
    from leadscore.modeling.reasons import Phrases

    builder = FeatureBuilder([], [], None, FeatureConfig(), BEHAVIOUR, accounts=SPEC)
    rows = pd.DataFrame({c: [3.0, np.nan] for c in SPEC.columns()})
    rows["account_days_since_any"] = [2.0, np.nan]
    phrases = Phrases(builder, rows, language=language)
    for column in SPEC.columns():
        first, second = phrases.describe(column, np.array([0, 1]))
        assert "account_" not in first and "_" not in first, (column, first)
        assert second == phrases.vocabulary.say("account.none")
        if language == "ja":
            assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in first)
