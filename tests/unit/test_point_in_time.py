"""Property: nothing that happens at or after the snapshot changes a feature or a rule score."""

import pandas as pd
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.config import FeatureConfig
from leadscore.data.features import (
    BehaviourSpec,
    derive_attributes,
    index_activities,
    snapshot_rows,
)
from leadscore.data.rules import evaluate_rules, load_rules

AS_OF = pd.Timestamp("2026-03-01")
TYPES = ["page_view", "content_download", "email_open", "demo_request"]
DETAILS = ["/pricing", "/careers", "/blog/x", "whitepaper:y", ""]
SPEC = BehaviourSpec(
    tuple(sorted(TYPES)),
    {"pricing": "/pricing", "careers": "/careers"},
    "page_view",
    (7, 30, 90),
    180,
)
RULES = load_rules(REPO / "models" / "mql_rules.yaml")

events = st.lists(
    st.tuples(
        st.integers(1, 5),
        st.integers(-200 * 24, 200 * 24),  # hours relative to the snapshot
        st.sampled_from(TYPES),
        st.sampled_from(DETAILS),
    ),
    max_size=40,
)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["lead_id", "hours", "activity_type", "detail"])
    frame["occurred_at"] = (AS_OF + pd.to_timedelta(frame["hours"].astype("int64"), "h")).astype(
        "datetime64[us]"
    )
    return frame.drop(columns="hours").astype(
        {"activity_type": "str", "detail": "str", "lead_id": "int64"}
    )


def _scores(leads: pd.DataFrame, activities: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    snaps = pd.DataFrame({"lead_id": leads["lead_id"], "as_of": AS_OF}).astype(
        {"as_of": "datetime64[us]"}
    )
    index = index_activities(activities, SPEC.page_categories, SPEC.page_activity_type)
    rows = snapshot_rows(snaps, leads, index, SPEC, ["industry", "job_title"], "email")
    fields = pd.concat([rows, derive_attributes(rows, "job_title", FeatureConfig())], axis=1)
    return rows, evaluate_rules(RULES, fields, snaps, index)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(past=events, future=events, future_changed=events)
def test_future_activities_change_nothing(tiny_leads, past, future, future_changed) -> None:
    past_frame = _frame([e for e in past if e[1] < 0])
    after = lambda rows: [e for e in rows if e[1] >= 0]  # noqa: E731 - at or after as-of
    base_rows, base_rules = _scores(tiny_leads, pd.concat([past_frame, _frame(after(future))]))
    rows, rules = _scores(tiny_leads, pd.concat([past_frame, _frame(after(future_changed))]))
    pd.testing.assert_frame_equal(base_rows, rows)
    pd.testing.assert_frame_equal(base_rules, rules)
    # ... and the features do see the past: the property is not vacuous.
    only_past_rows, _ = _scores(tiny_leads, past_frame)
    pd.testing.assert_frame_equal(only_past_rows, rows)
    recent = sum(1 for e in past if -90 * 24 <= e[1] < 0)
    assert rows["n_all_90d"].sum() == recent
