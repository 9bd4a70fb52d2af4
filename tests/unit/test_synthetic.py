import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.data.snapshots import build_snapshots
from leadscore.synthetic import generate_crm, true_account_probability, true_conversion_probability

#: Checksums of `generate_crm(800, seed=3, end="2026-01-31")`, taken before the scenarios.
STATIONARY_DIGEST = {
    "leads": 768735657,
    "activities": 359825471,
    "outcomes": 910227538,
    # Taken again with its floats to 9 digits (the other four are as before the drift
    # scenario): the unrounded digest differed between two CPUs, not between versions.
    "ground_truth_leads": 439007093,
    "ground_truth_shocks": 99039726,
}


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


@pytest.fixture(scope="module")
def drifting():
    return generate_crm(6000, seed=11, end="2026-06-30", scenario="drift")


def _monte_carlo(crm, snaps: pd.DataFrame, as_of: pd.Timestamp, horizon: int) -> np.ndarray:
    """Given the latent state at the snapshot, simulate many futures (per-day hazard factor
    from the truth table, when the scenario has one)."""
    rng = np.random.default_rng(0)
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
    for k in range(horizon):
        factor = 1.0
        if "hazard_drift_day" in truth:
            day = as_of + pd.Timedelta(days=k)
            factor = np.where(day >= truth["hazard_drift_day"], truth["hazard_drift_factor"], 1.0)
        jumps = rng.random(level.shape) < truth["shock_prob"].to_numpy()[:, None]
        level = decay[:, None] * level + truth["shock_size"].to_numpy()[:, None] * jumps
        daily = (
            truth["base_hazard"].to_numpy()[:, None]
            + truth["hazard_scale"].to_numpy()[:, None] * level
        )
        hazard += np.asarray(factor).reshape(-1, 1) * daily
    return (1 - np.exp(-hazard)).mean(axis=1)


def test_oracle_matches_a_monte_carlo_of_the_future(crm) -> None:
    as_of = crm.end - pd.Timedelta(days=200)
    snaps = build_snapshots(crm.leads, crm.outcomes.dropna(), [as_of], 365, 90).sample(
        200, random_state=1
    )
    closed = true_conversion_probability(crm.truth_leads, crm.truth_shocks, snaps, 90)
    assert np.max(np.abs(_monte_carlo(crm, snaps, as_of, 90) - closed)) < 0.01


@pytest.mark.parametrize("days_before_drift", [45, 0, -30])
def test_drift_oracle_matches_a_monte_carlo_across_the_drift_day(
    drifting, days_before_drift: int
) -> None:
    """Snapshots whose horizon straddles the drift day, starts on it, and lies after it."""
    drift_day = drifting.truth_leads["hazard_drift_day"].iloc[0]
    as_of = drift_day - pd.Timedelta(days=days_before_drift)
    snaps = build_snapshots(drifting.leads, drifting.outcomes.dropna(), [as_of], 365, 90).sample(
        200, random_state=1
    )
    closed = true_conversion_probability(drifting.truth_leads, drifting.truth_shocks, snaps, 90)
    assert np.max(np.abs(_monte_carlo(drifting, snaps, as_of, 90) - closed)) < 0.01


def test_drift_changes_the_base_rate_a_source_and_what_pricing_views_mean(crm, drifting) -> None:
    drift_day = drifting.truth_leads["hazard_drift_day"].iloc[0]
    assert drift_day == drifting.end - pd.Timedelta(days=730 - 438)
    # The oracle is calibrated on both sides of the drift day, and the rate moves.
    rates = []
    for as_of in (drift_day - pd.Timedelta(days=120), drift_day + pd.Timedelta(days=30)):
        snaps = build_snapshots(drifting.leads, drifting.outcomes.dropna(), [as_of], 365, 90)
        p = true_conversion_probability(drifting.truth_leads, drifting.truth_shocks, snaps, 90)
        y = snaps["converted"].to_numpy()
        assert abs(p.mean() - y.mean()) < 4 * np.sqrt(p.mean() * (1 - p.mean()) / len(p))
        rates.append(p.mean())
    assert rates[1] > 1.4 * rates[0]
    # The new source only among leads created from the drift day on.
    new = drifting.leads["lead_source"] == "marketplace"
    assert new.sum() > 100 and (drifting.leads.loc[new, "created_at"] >= drift_day).all()
    assert not (crm.leads["lead_source"] == "marketplace").any()

    # Pricing views in the 30 days before a snapshot tell who converts before the drift
    # day, and barely after it (ROC-AUC of the count alone).
    pricing = drifting.activities[drifting.activities["detail"].str.contains("pricing")]

    def pricing_auc(as_of: pd.Timestamp) -> float:
        snaps = build_snapshots(drifting.leads, drifting.outcomes.dropna(), [as_of], 365, 90)
        recent = pricing[
            (pricing["occurred_at"] < as_of)
            & (pricing["occurred_at"] >= as_of - pd.Timedelta(days=30))
        ]
        views = recent.groupby("lead_id").size().reindex(snaps["lead_id"], fill_value=0)
        return roc_auc_score(snaps["converted"], views.to_numpy())

    before = pricing_auc(drift_day - pd.Timedelta(days=60))
    after = pricing_auc(drift_day + pd.Timedelta(days=90))
    assert before > 0.57 and after < 0.55, (before, after)


def test_the_stationary_default_is_unchanged_by_the_scenarios() -> None:
    """A checksum of a small default CRM, taken before the drift scenario existed."""
    crm = generate_crm(800, seed=3, end="2026-01-31")
    assert generate_crm(800, seed=3, end="2026-01-31", scenario="stationary").activities.equals(
        crm.activities
    )
    assert "hazard_drift_day" not in crm.truth_leads
    digest = {
        name: int(pd.util.hash_pandas_object(_exact(frame), index=False).sum() % 1_000_000_007)
        for name, frame in crm.tables().items()
    }
    assert digest == STATIONARY_DIGEST


def _exact(frame: pd.DataFrame) -> pd.DataFrame:
    """The truth tables' floats to 9 significant digits: numpy's exp and log differ in the
    last bit between CPUs (SIMD paths), and the digest must not."""
    floats = frame.select_dtypes("float64").columns
    return frame.assign(**{c: frame[c].map(lambda v: float(f"{v:.9g}")) for c in floats})


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario 'drfit'"):
        generate_crm(10, scenario="drfit")


@pytest.fixture(scope="module")
def with_accounts():
    return generate_crm(4000, seed=13, end="2026-06-30", accounts=True)


def _account_monte_carlo(crm, snaps: pd.DataFrame, horizon: int, paths: int = 4000):
    """Each lead's interest replayed day by day from the truth tables, then many futures in
    which an account's project reaches all its open leads at once: P(lead converts) and
    P(some lead of the account converts), independent of the oracle's algebra."""
    rng = np.random.default_rng(0)
    as_of = snaps["as_of"].iloc[0]
    truth = crm.truth_leads.set_index("lead_id").loc[snaps["lead_id"]]
    s = (as_of - truth["created_day"]).dt.days.to_numpy()
    decay = truth["decay"].to_numpy()
    level = truth["initial_interest"].to_numpy().copy()
    own = crm.truth_shocks.groupby("lead_id")["day_index"].agg(set)
    projects = crm.truth_account_shocks.groupby("account_id")["day"].agg(set)
    created = truth["created_day"].to_numpy()
    for d in range(1, int(s.max())):
        for i, lead in enumerate(truth.index):
            if d > s[i] - 1:
                continue
            level[i] *= decay[i]
            if d in own.get(lead, ()):
                level[i] += truth["shock_size"].iloc[i]
            account = truth["account_id"].iloc[i]
            day = pd.Timestamp(created[i]) + pd.Timedelta(days=d)
            if isinstance(account, str) and day in projects.get(account, ()):
                level[i] += truth["account_shock_size"].iloc[i]
    accounts = truth["account_id"].fillna(
        "lead:" + truth.index.astype(str).to_series(index=truth.index)
    )
    codes, names = pd.factorize(accounts)
    q = pd.Series(truth["account_shock_prob"].to_numpy()).groupby(codes).first().to_numpy()
    b = pd.Series(truth["account_shock_size"].to_numpy()).groupby(codes).first().to_numpy()
    c, p, a = (truth[k].to_numpy()[:, None] for k in ("hazard_scale", "shock_prob", "shock_size"))
    x = np.repeat(level[:, None], paths, axis=1)
    hazard = np.zeros_like(x)
    for _ in range(horizon):
        project = rng.random((len(names), paths)) < q[:, None]
        x = decay[:, None] * x + a * (rng.random(x.shape) < p) + (b[:, None] * project)[codes]
        hazard += truth["base_hazard"].to_numpy()[:, None] + c * x
    lead = (1 - np.exp(-hazard)).mean(axis=1)
    survive = np.exp(-np.vstack([np.bincount(codes, hazard[:, k], minlength=len(names))
                                 for k in range(paths)]).T)  # fmt: skip
    return lead, pd.Series(1 - survive.mean(axis=1), index=names)


def test_account_oracles_match_a_monte_carlo_of_the_future(with_accounts) -> None:
    """Accounts share buying projects: the lead oracle integrates them out per lead, the
    account oracle once per account (its leads' conversions are not independent)."""
    crm = with_accounts
    as_of = crm.end - pd.Timedelta(days=200)
    snaps = build_snapshots(crm.leads, crm.outcomes.dropna(), [as_of], 365, 90)
    busy = crm.truth_leads.set_index("lead_id").loc[snaps["lead_id"], "account_id"]
    counts = busy.value_counts()
    chosen = set(counts[counts >= 3].index[:25]) | set(counts[counts == 1].index[:10])
    snaps = snaps[busy.isin(chosen).to_numpy()].reset_index(drop=True)
    assert snaps["lead_id"].nunique() >= 80
    lead_mc, account_mc = _account_monte_carlo(crm, snaps, 90)
    shocks = crm.truth_account_shocks
    lead = true_conversion_probability(crm.truth_leads, crm.truth_shocks, snaps, 90, shocks)
    assert np.max(np.abs(lead_mc - lead)) < 0.01
    accounts = true_account_probability(crm.truth_leads, crm.truth_shocks, shocks, snaps, 90)
    closed = accounts.set_index("account_id")["probability"]
    assert np.max(np.abs(account_mc.loc[closed.index] - closed)) < 0.015
    # Shared projects make an account's people convert together: treating them as
    # independent, 1 - prod(1 - p_i), overstates the account's chance.
    members = busy[busy.isin(chosen).to_numpy()].to_numpy()
    independent = pd.Series(lead).groupby(members).apply(lambda p: 1 - np.prod(1 - p))
    several = counts[counts >= 3].index.intersection(closed.index)
    assert (closed.loc[several] <= independent.loc[several] + 1e-12).all()
    assert (closed.loc[several] < independent.loc[several] - 0.005).mean() > 0.5


def test_accounts_share_firmographics_and_leave_the_default_alone(with_accounts) -> None:
    leads = with_accounts.leads
    members = leads.dropna(subset=["account_id"])
    assert members["email"].str.endswith(".example").all()
    firm = members.groupby("account_id")[["country", "employees"]].nunique(dropna=False)
    assert (firm <= 1).all().all()
    sizes = members.groupby("account_id").size()
    assert sizes.max() >= 10 and (sizes == 1).any()  # heavy-tailed, as real accounts
    plain = generate_crm(300, seed=13, end="2026-06-30")
    assert "account_id" not in plain.leads
    with pytest.raises(ValueError, match="without accounts"):
        true_account_probability(plain.truth_leads, plain.truth_shocks, None, plain.leads, 90)
    with pytest.raises(ValueError, match="truth_account_shocks"):
        true_conversion_probability(
            with_accounts.truth_leads, with_accounts.truth_shocks,
            build_snapshots(leads, with_accounts.outcomes.dropna(),
                            [with_accounts.end - pd.Timedelta(days=100)], 365, 90), 90,
        )  # fmt: skip


def test_the_truth_with_accounts_reads_back_from_a_database(with_accounts, tmp_path) -> None:
    """What `train` reads to report the oracle: the accounts' projects come along, and the
    oracle from the database is the one from the generator's frames."""
    from leadscore.config import config_from_dict
    from leadscore.io.sources import load_ground_truth
    from leadscore.io.tables import write_tables

    write_tables(with_accounts.tables(), f"sqlite:///{tmp_path / 'crm.db'}")
    config = config_from_dict(
        {"source": {"uri": f"sqlite:///{tmp_path / 'crm.db'}", "ground_truth": {}}}, environ={}
    )
    leads, shocks, projects = load_ground_truth(config)
    assert projects is not None and len(projects) == len(with_accounts.truth_account_shocks)
    as_of = with_accounts.end - pd.Timedelta(days=150)
    snaps = build_snapshots(with_accounts.leads, with_accounts.outcomes.dropna(), [as_of], 365, 90)
    direct = true_conversion_probability(
        with_accounts.truth_leads, with_accounts.truth_shocks, snaps, 90,
        with_accounts.truth_account_shocks,
    )  # fmt: skip
    read = true_conversion_probability(leads, shocks, snaps, 90, projects)
    np.testing.assert_allclose(read, direct, atol=1e-9)
