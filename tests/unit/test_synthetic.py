import numpy as np
import pandas as pd
import pytest

from leadscore.data.snapshots import build_snapshots
from leadscore.synthetic import generate_crm, true_conversion_probability


@pytest.fixture(scope="module")
def crm():
    return generate_crm(6000, seed=11, end="2026-06-30")


def test_same_seed_same_data() -> None:
    a = generate_crm(500, seed=3, end="2026-01-31")
    b = generate_crm(500, seed=3, end="2026-01-31")
    for name, frame in a.tables().items():
        pd.testing.assert_frame_equal(frame, b.tables()[name])
    c = generate_crm(500, seed=4, end="2026-01-31")
    assert not a.activities.equals(c.activities)


def test_tables_and_ranges(crm) -> None:
    assert crm.leads["lead_id"].is_unique
    assert crm.leads["created_at"].max() < crm.end
    assert crm.activities["occurred_at"].max() < crm.end
    assert set(crm.activities["lead_id"]) <= set(crm.leads["lead_id"])
    conv = crm.outcomes.dropna()
    created = crm.leads.set_index("lead_id").loc[conv["lead_id"], "created_at"].to_numpy()
    assert (conv["converted_at"].to_numpy() >= created).all()
    kinds = set(crm.activities["activity_type"])
    assert {
        "page_view",
        "content_download",
        "webinar_registration",
        "webinar_attendance",
        "email_open",
        "email_click",
        "email_unsubscribe",
        "demo_request",
        "contact_request",
    } <= kinds
    titles = crm.leads["job_title"].dropna()
    assert titles.str.contains("部長|課長").any() and titles.str.contains("Director|VP").any()
    # The hidden truth never leaks into the tables a model reads.
    for frame in (crm.leads, crm.activities, crm.outcomes):
        assert not {"persona", "fit", "hazard_scale"} & set(frame.columns)


def test_students_job_seekers_and_competitors_rarely_convert(crm) -> None:
    converted = crm.outcomes.set_index("lead_id")["converted_at"].notna()
    persona = crm.truth_leads.set_index("lead_id")["persona"]
    rates = converted.groupby(persona).mean()
    for who in ("student", "job_seeker", "competitor"):
        assert rates[who] < rates["buyer"] / 4


def test_oracle_is_calibrated(crm) -> None:
    """The closed-form truth matches observed conversion rates (what makes it an oracle)."""
    dates = [crm.end - pd.Timedelta(days=d) for d in (120, 180, 240, 300)]
    snaps = build_snapshots(crm.leads, crm.outcomes.dropna(), dates, 365, 90)
    p = true_conversion_probability(crm.truth_leads, crm.truth_shocks, snaps, 90)
    y = snaps["converted"].to_numpy()
    se = np.sqrt(p.mean() * (1 - p.mean()) / len(p))
    assert abs(p.mean() - y.mean()) < 4 * se + 0.003
    top = p >= np.quantile(p, 0.9)
    assert abs(p[top].mean() - y[top].mean()) < 0.03


def test_nothing_happens_before_a_lead_exists(crm) -> None:
    created = crm.leads.set_index("lead_id")["created_at"]
    acts = crm.activities
    assert (acts["occurred_at"].to_numpy() >= created.loc[acts["lead_id"]].to_numpy()).all()


def test_oracle_matches_a_monte_carlo_of_the_future(crm) -> None:
    """Given the latent state at the snapshot, simulate many futures; compare per example."""
    rng = np.random.default_rng(0)
    as_of = crm.end - pd.Timedelta(days=200)
    snaps = build_snapshots(crm.leads, crm.outcomes.dropna(), [as_of], 365, 90).sample(
        200, random_state=1
    )
    closed = true_conversion_probability(crm.truth_leads, crm.truth_shocks, snaps, 90)
    truth = crm.truth_leads.set_index("lead_id").loc[snaps["lead_id"]]
    s = (as_of - truth["created_day"]).dt.days.to_numpy()
    decay = truth["decay"].to_numpy()
    interest = truth["initial_interest"].to_numpy() * decay ** (s - 1)
    shocks = crm.truth_shocks.merge(
        pd.DataFrame({"lead_id": snaps["lead_id"].to_numpy(), "pos": range(len(s))})
    )
    shocks = shocks[shocks["day_index"] <= s[shocks["pos"]] - 1]
    pos = shocks["pos"].to_numpy()
    interest += np.bincount(
        pos,
        truth["shock_size"].to_numpy()[pos]
        * decay[pos] ** (s[pos] - 1 - shocks["day_index"].to_numpy()),
        minlength=len(s),
    )
    paths = 4000
    level = np.repeat(interest[:, None], paths, axis=1)
    hazard = np.zeros_like(level)
    for _ in range(90):
        jumps = rng.random(level.shape) < truth["shock_prob"].to_numpy()[:, None]
        level = decay[:, None] * level + truth["shock_size"].to_numpy()[:, None] * jumps
        hazard += (
            truth["base_hazard"].to_numpy()[:, None]
            + truth["hazard_scale"].to_numpy()[:, None] * level
        )
    monte_carlo = (1 - np.exp(-hazard)).mean(axis=1)
    assert np.max(np.abs(monte_carlo - closed)) < 0.01
