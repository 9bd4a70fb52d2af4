"""Synthetic B2B CRM: leads, activities and outcomes from a hidden, known model.

Each lead has a latent *fit* (from firmographics, title, e-mail domain and source, plus
unobserved noise) and a latent *interest* that jumps at random "research episodes" and
decays geometrically. Interest drives activities (Poisson, with weekday effects) and, with
fit, the daily conversion hazard. Because interest is a linear recurrence with independent
Bernoulli shocks, the probability that a lead converts within H days of a snapshot, given
everything latent up to it, has a closed form: :func:`true_conversion_probability` is the
oracle the model is measured against. Its inputs live in the ground-truth tables, which no
training or scoring code reads.

Scenarios: ``stationary`` (the default) keeps the same mechanism over the whole history.
``drift`` changes it on a calendar day 60% into the history, as real lead data does: the
conversion hazard of every lead doubles from that day on (the base rate moves with the
market), a new lead source appears among the leads created after it, and pricing-page views
stop tracking interest (a redesign shows pricing to every visitor; the interested now read
the product pages). The hazard change is stored per lead in the truth table
(`hazard_drift_day`, `hazard_drift_factor`), so the oracle stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.progress import reporter

HISTORY_DAYS = 730
SCENARIOS = ("stationary", "drift")
#: Drift scenario: the day (a fraction into the history) from which the mechanism changes,
#: the factor on every lead's conversion hazard from then on, the new lead source (its share of
#: the leads created after the day, fit effect and initial interest), and the rate of the
#: pricing-page views everybody gets after the redesign (per day, regardless of interest).
DRIFT_AT = 0.6
DRIFT_HAZARD_FACTOR = 2.0
DRIFT_SOURCE = ("marketplace", 0.2, 0.6, 1.3)
DRIFT_PRICING_RATE = 0.05
#: Sales touches (`generate_crm(sales_touches=True)`): sales answers a lead's first hand-raise
#: (a demo or contact request) after a delay drawn log-uniformly from a minute to five days,
#: by a call or a sales e-mail; a hand-raiser's later conversion survives with probability
#: `response_retention(minutes)`, else the lead buys elsewhere (the known effect).
SALES_TOUCH_TYPES = ("call", "sales_email")
HAND_RAISES = ("demo_request", "contact_request")
RESPONSE_MINUTES = (1.0, 7200.0)
#: Accounts (`generate_crm(accounts=True)`): the corporate leads belong to companies whose
#: sizes are heavy-tailed (about `ACCOUNT_LEADS` leads each on average), share the company's
#: industry, country and size, and share its buying projects: each account starts one on a
#: day with probability `ACCOUNT_SHOCK_PROB` (times a per-account factor), which raises the
#: interest of every one of its people then in the CRM by the account's shock size.
ACCOUNT_LEADS = 5
ACCOUNT_SHOCK_PROB = 0.003
ACCOUNT_SHOCK_GAMMA = (40.0, 0.075)


def response_retention(minutes: np.ndarray | float) -> np.ndarray:
    """The share of a hand-raiser's conversions that a response after `minutes` keeps:
    0.94 after a minute, 0.84 after 5, 0.63 after an hour, 0.34 after a day, 0.2 after 5 days
    (the industry's lore: a lead answered within minutes is many times likelier to buy)."""
    return 1.0 - 0.8 * np.log1p(minutes) / np.log1p(RESPONSE_MINUTES[1])


#: Leads go cold (no activity, no conversion) this many days after creation.
LEAD_LIFETIME_DAYS = 540

PERSONAS = ("buyer", "student", "job_seeker", "competitor", "partner")
PERSONA_SHARE = (0.78, 0.08, 0.06, 0.03, 0.05)

INDUSTRIES = (
    "software",
    "financial_services",
    "manufacturing",
    "healthcare",
    "retail",
    "telecom",
    "public_sector",
    "education",
    "other",
)
INDUSTRY_SHARE = (0.24, 0.14, 0.15, 0.10, 0.10, 0.06, 0.06, 0.05, 0.10)
INDUSTRY_EFFECT = (0.45, 0.35, 0.15, 0.05, -0.1, 0.1, -0.35, -0.6, -0.3)

COUNTRIES = ("US", "JP", "GB", "DE", "FR", "IN", "AU", "CA", "BR")
COUNTRY_SHARE = (0.34, 0.22, 0.10, 0.09, 0.05, 0.08, 0.05, 0.05, 0.02)
COUNTRY_EFFECT = (0.1, 0.05, 0.05, 0.05, 0.0, -0.3, 0.0, 0.05, -0.2)

LEAD_SOURCES = (
    "web_form",
    "organic_search",
    "paid_search",
    "webinar",
    "content_syndication",
    "referral",
    "event",
    "purchased_list",
    "partner",
)
SOURCE_SHARE = (0.18, 0.20, 0.14, 0.10, 0.12, 0.06, 0.07, 0.08, 0.05)
SOURCE_EFFECT = (0.35, 0.1, 0.0, 0.1, -0.4, 0.7, 0.25, -0.9, 0.3)
SOURCE_INITIAL_INTEREST = (1.4, 0.9, 0.9, 1.1, 0.6, 1.2, 1.0, 0.3, 0.9)

# Channels of activity: (activity_type, page category or None).
CHANNELS: tuple[tuple[str, str | None], ...] = (
    ("page_view", "home"),
    ("page_view", "blog"),
    ("page_view", "pricing"),
    ("page_view", "case_studies"),
    ("page_view", "product"),
    ("page_view", "docs"),
    ("page_view", "careers"),
    ("content_download", None),
    ("webinar_registration", None),
    ("email_open", None),
    ("email_click", None),
    ("demo_request", None),
    ("contact_request", None),
)
# Events per day per unit of interest, by persona (rows follow PERSONAS, columns CHANNELS).
_INTEREST_RATES = 0.45 * np.array(
    [
        # home blog price case  prod  docs  car   dl    web   open  click demo  contact
        [0.15, 0.22, 0.22, 0.12, 0.30, 0.12, 0.01, 0.07, 0.03, 0.30, 0.12, 0.035, 0.02],
        [0.10, 0.45, 0.03, 0.05, 0.08, 0.35, 0.12, 0.22, 0.05, 0.20, 0.08, 0.002, 0.004],
        [0.20, 0.10, 0.02, 0.03, 0.10, 0.02, 0.60, 0.03, 0.01, 0.10, 0.03, 0.001, 0.01],
        [0.05, 0.10, 0.45, 0.20, 0.40, 0.30, 0.02, 0.10, 0.05, 0.15, 0.05, 0.002, 0.002],
        [0.10, 0.20, 0.10, 0.10, 0.20, 0.10, 0.01, 0.05, 0.04, 0.20, 0.05, 0.004, 0.02],
    ]
)
# Events per day regardless of interest (newsletters, stray visits).
_BASE_RATES = np.array(
    [0.004, 0.006, 0.001, 0.001, 0.002, 0.001, 0.001, 0.0, 0.0, 0.03, 0.004, 0.0, 0.0]
)
# Channels whose rate also scales with fit: buying intent.
_INTENT_CHANNELS = np.array([c in {2, 3, 11, 12} for c in range(len(CHANNELS))])
_EMAIL_CHANNELS = np.array([c in {9, 10} for c in range(len(CHANNELS))])
_PRICING, _PRODUCT = (
    CHANNELS.index(("page_view", "pricing")),
    CHANNELS.index(("page_view", "product")),
)

PAGE_PATHS = {
    "home": ("/",),
    "blog": (
        "/blog/lead-scoring-101",
        "/blog/mql-vs-sql",
        "/blog/abm-playbook",
        "/blog/2026-trends",
    ),
    "pricing": ("/pricing", "/pricing/enterprise", "/ja/pricing"),
    "case_studies": ("/customers/acme", "/customers/globex", "/case-studies/manufacturing"),
    "product": ("/product", "/product/integrations", "/product/analytics", "/ja/product"),
    "docs": ("/docs/getting-started", "/docs/api", "/docs/security"),
    "careers": ("/careers", "/careers/engineering", "/ja/careers"),
}
ASSETS = ("whitepaper:buyers-guide", "ebook:roi-calculator", "report:state-of-b2b", "checklist:rfp")
WEBINARS = ("webinar:product-tour", "webinar:customer-panel", "webinar:ja-seminar")
CAMPAIGNS = ("newsletter", "nurture", "product-update", "event-invite")

FREE_MAIL_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "yahoo.co.jp",
    "icloud.com",
)
STUDENT_DOMAINS = ("stanford.edu", "mit.edu", "u-tokyo.ac.jp", "ox.ac.uk", "tum.de", "iitb.ac.in")
COMPETITOR_DOMAINS = ("rivalscore.com", "leadmagic.io", "scorely.co")

_SENIORITIES = ("c_level", "vp", "director", "manager", "individual")
_SENIORITY_SHARE = (0.06, 0.08, 0.16, 0.30, 0.40)
_SENIORITY_EFFECT = (0.45, 0.55, 0.5, 0.2, -0.15)
_DEPARTMENTS = ("marketing", "sales", "it", "engineering", "finance", "hr", "operations")
_DEPARTMENT_SHARE = (0.26, 0.14, 0.18, 0.20, 0.08, 0.06, 0.08)
_DEPARTMENT_EFFECT = (0.45, 0.15, 0.4, 0.3, -0.1, -0.5, -0.1)

_TITLES_EN = {
    ("c_level", "marketing"): ("Chief Marketing Officer", "CMO"),
    ("c_level", "sales"): ("Chief Revenue Officer", "CEO"),
    ("c_level", "it"): ("CIO", "Chief Information Officer"),
    ("c_level", "engineering"): ("CTO", "Chief Technology Officer", "Founder & CTO"),
    ("c_level", "finance"): ("CFO", "Chief Financial Officer"),
    ("c_level", "hr"): ("Chief People Officer", "CEO"),
    ("c_level", "operations"): ("COO", "CEO", "President"),
    ("vp", "marketing"): ("VP Marketing", "Vice President, Demand Generation"),
    ("vp", "sales"): ("VP Sales", "SVP Sales"),
    ("vp", "it"): ("VP IT", "Vice President, Information Technology"),
    ("vp", "engineering"): ("VP Engineering", "VP of Software Engineering"),
    ("vp", "finance"): ("VP Finance",),
    ("vp", "hr"): ("VP Human Resources",),
    ("vp", "operations"): ("VP Operations",),
    ("director", "marketing"): ("Director of Marketing", "Marketing Director", "Head of Growth"),
    ("director", "sales"): ("Sales Director", "Head of Sales"),
    ("director", "it"): ("IT Director", "Director, Information Systems"),
    ("director", "engineering"): ("Director of Engineering", "Head of Data"),
    ("director", "finance"): ("Finance Director",),
    ("director", "hr"): ("HR Director", "Head of Talent"),
    ("director", "operations"): ("Director of Operations",),
    ("manager", "marketing"): ("Marketing Manager", "Demand Gen Manager"),
    ("manager", "sales"): ("Sales Manager", "Account Manager"),
    ("manager", "it"): ("IT Manager",),
    ("manager", "engineering"): ("Engineering Manager", "Lead Data Engineer"),
    ("manager", "finance"): ("Accounting Manager",),
    ("manager", "hr"): ("Recruiting Manager",),
    ("manager", "operations"): ("Operations Manager", "Procurement Manager"),
    ("individual", "marketing"): ("Marketing Specialist", "Content Marketing Associate"),
    ("individual", "sales"): ("Account Executive", "Sales Representative", "SDR"),
    ("individual", "it"): ("IT Administrator", "Systems Analyst"),
    ("individual", "engineering"): ("Software Engineer", "Data Scientist", "Developer"),
    ("individual", "finance"): ("Financial Analyst", "Accountant"),
    ("individual", "hr"): ("HR Coordinator",),
    ("individual", "operations"): ("Operations Analyst",),
}
_SENIORITY_JA = {
    "c_level": ("代表取締役社長", "代表取締役"),
    "vp": ("執行役員", "取締役", "本部長"),
    "director": ("部長",),
    "manager": ("課長", "係長"),
    "individual": ("主任", "担当", "スタッフ"),
}
_DEPARTMENT_JA = {
    "marketing": "マーケティング部",
    "sales": "営業部",
    "it": "情報システム部",
    "engineering": "開発部",
    "finance": "経理部",
    "hr": "人事部",
    "operations": "総務部",
}
_STUDENT_TITLES = ("Student", "MBA Student", "PhD student", "学生", "大学院生")
_PARTNER_TITLES = (
    "Channel Partner Manager",
    "Alliance Manager",
    "Agency Owner",
    "Reseller",
    "Independent Consultant",
    "代理店 パートナー担当",
)
_JOB_SEEKER_TITLES = (
    "Intern",
    "Marketing Intern",
    "Graduate trainee",
    "インターン",
    "Looking for opportunities",
)


@dataclass(frozen=True)
class SyntheticCRM:
    """Generated tables; `truth_leads` and `truth_shocks` are the hidden ground truth."""

    leads: pd.DataFrame
    activities: pd.DataFrame
    outcomes: pd.DataFrame
    truth_leads: pd.DataFrame
    truth_shocks: pd.DataFrame
    end: pd.Timestamp
    #: With accounts: each account's buying projects (account_id, calendar day).
    truth_account_shocks: pd.DataFrame | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        """All tables by their default names."""
        out = {
            "leads": self.leads,
            "activities": self.activities,
            "outcomes": self.outcomes,
            "ground_truth_leads": self.truth_leads,
            "ground_truth_shocks": self.truth_shocks,
        }
        if self.truth_account_shocks is not None:
            out["ground_truth_account_shocks"] = self.truth_account_shocks
        return out


def _choice(rng: np.random.Generator, options: tuple, shares: tuple, size: int) -> np.ndarray:
    return rng.choice(len(options), size=size, p=np.asarray(shares) / np.sum(shares))


def _pick(rng: np.random.Generator, options: tuple[str, ...], size: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), size)]


def _make_titles(
    rng: np.random.Generator,
    persona: np.ndarray,
    seniority: np.ndarray,
    department: np.ndarray,
    japanese: np.ndarray,
) -> np.ndarray:
    n = len(persona)
    titles = np.empty(n, dtype=object)
    for (sen, dep), options in _TITLES_EN.items():
        mask = (seniority == _SENIORITIES.index(sen)) & (department == _DEPARTMENTS.index(dep))
        titles[mask] = _pick(rng, options, int(mask.sum()))
        ja = mask & japanese
        if sen in ("c_level",):
            titles[ja] = _pick(rng, _SENIORITY_JA[sen], int(ja.sum()))
        else:
            titles[ja] = np.char.add(
                _DEPARTMENT_JA[dep] + " ", _pick(rng, _SENIORITY_JA[sen], int(ja.sum())).astype(str)
            ).astype(object)
    student = persona == PERSONAS.index("student")
    titles[student] = _pick(rng, _STUDENT_TITLES, int(student.sum()))
    partner = persona == PERSONAS.index("partner")
    titles[partner] = _pick(rng, _PARTNER_TITLES, int(partner.sum()))
    seeker = persona == PERSONAS.index("job_seeker")
    titles[seeker] = _pick(rng, _JOB_SEEKER_TITLES, int(seeker.sum()))
    # Forms often leave the title empty.
    titles[rng.random(n) < 0.07] = None
    return titles


def _make_leads(
    rng: np.random.Generator,
    n: int,
    end: pd.Timestamp,
    drift_day: int | None = None,
    history_days: int = HISTORY_DAYS,
    accounts: np.random.Generator | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Lead attributes plus the latent parameters that drive them.

    With `drift_day`, a share of the leads created from that day on come from a new source.
    With `accounts` (their own random stream, so the rest of the data draws as without),
    corporate leads belong to accounts that share firmographics (see `ACCOUNT_LEADS`).
    """
    persona = _choice(rng, PERSONAS, PERSONA_SHARE, n)
    is_buyer = persona == 0
    # Lead volume grows over the two years: density proportional to 1 + 0.6 t / T.
    u = rng.random(n)
    a = 0.6
    t = (-1 + np.sqrt(1 + a * (2 + a) * u)) / a  # inverse CDF on [0, 1]
    created_day = np.minimum((t * history_days).astype(np.int64), history_days - 1)
    created_frac = np.clip(rng.normal(0.55, 0.15, n), 0.0, 0.999)

    industry = _choice(rng, INDUSTRIES, INDUSTRY_SHARE, n)
    industry[persona == 1] = INDUSTRIES.index("education")
    country = _choice(rng, COUNTRIES, COUNTRY_SHARE, n)
    japanese = (country == COUNTRIES.index("JP")) & (rng.random(n) < 0.75)
    employees = np.round(np.exp(rng.normal(5.6, 1.7, n))).clip(1, 300_000)
    employees[rng.random(n) < 0.12] = np.nan
    employees[persona == 1] = np.nan

    seniority = _choice(rng, _SENIORITIES, _SENIORITY_SHARE, n)
    department = _choice(rng, _DEPARTMENTS, _DEPARTMENT_SHARE, n)
    source = _choice(rng, LEAD_SOURCES, SOURCE_SHARE, n)
    source[(persona == 2) & (rng.random(n) < 0.6)] = LEAD_SOURCES.index("organic_search")
    sources, source_effect = LEAD_SOURCES, np.asarray(SOURCE_EFFECT)
    source_interest = np.asarray(SOURCE_INITIAL_INTEREST)
    if drift_day is not None:
        name, share, effect, interest = DRIFT_SOURCE
        sources = (*LEAD_SOURCES, name)
        source_effect = np.append(source_effect, effect)
        source_interest = np.append(source_interest, interest)
        source[(created_day >= drift_day) & (rng.random(n) < share)] = len(LEAD_SOURCES)

    # E-mail domain kind follows the persona.
    kind = np.where(rng.random(n) < 0.8, 0, 1)  # 0 corporate, 1 free mail
    kind[persona == 1] = np.where(rng.random(int((persona == 1).sum())) < 0.8, 2, 1)
    kind[persona == 2] = np.where(rng.random(int((persona == 2).sum())) < 0.85, 1, 0)
    kind[persona == 3] = 3
    company_id = rng.integers(0, max(n // 6, 50), n)
    account = np.full(n, -1)
    if accounts is not None:
        n_accounts = max(n // ACCOUNT_LEADS, 50)
        weight = accounts.lognormal(0.0, 1.0, n_accounts)
        company_id = accounts.choice(n_accounts, size=n, p=weight / weight.sum())
        account = np.where(kind == 0, company_id, -1)
        # One company, one industry, country and size for all its people.
        firm_industry = _choice(accounts, INDUSTRIES, INDUSTRY_SHARE, n_accounts)
        firm_country = _choice(accounts, COUNTRIES, COUNTRY_SHARE, n_accounts)
        firm_size = np.round(np.exp(accounts.normal(5.6, 1.7, n_accounts))).clip(1, 300_000)
        member = account >= 0
        industry[member] = firm_industry[account[member]]
        country[member] = firm_country[account[member]]
        employees[member] = firm_size[account[member]]
        japanese = (country == COUNTRIES.index("JP")) & (accounts.random(n) < 0.75)
    domain = np.char.add(np.char.add("company", company_id.astype(str)), ".example").astype(object)
    domain[kind == 1] = _pick(rng, FREE_MAIL_DOMAINS, int((kind == 1).sum()))
    domain[kind == 2] = _pick(rng, STUDENT_DOMAINS, int((kind == 2).sum()))
    domain[kind == 3] = _pick(rng, COMPETITOR_DOMAINS, int((kind == 3).sum()))
    lead_id = np.arange(1, n + 1)
    email = np.char.add(np.char.add("lead", lead_id.astype(str)), "@").astype(object) + domain

    # Fit: the log of the conversion hazard scale.
    log_emp = np.log(np.nan_to_num(employees, nan=150.0))
    size_effect = -0.08 * (log_emp - 6.5) ** 2 + 0.3
    fit = (
        np.asarray(INDUSTRY_EFFECT)[industry]
        + np.asarray(COUNTRY_EFFECT)[country]
        + source_effect[source]
        + np.asarray(_SENIORITY_EFFECT)[seniority]
        + np.asarray(_DEPARTMENT_EFFECT)[department]
        + size_effect
        + np.where(kind == 1, -0.5, 0.0)
        + np.where(is_buyer, 0.0, -3.2)
        + rng.normal(0.0, 0.1, n)
    )
    titles = _make_titles(rng, persona, seniority, department, japanese)
    # A missing title hides seniority; treat it as neutral for fit only through the noise.
    leads = pd.DataFrame(
        {
            "lead_id": lead_id,
            "created_at": end
            - pd.to_timedelta(history_days, "D")
            + pd.to_timedelta(created_day + created_frac, "D").round("s"),
            "email": email.astype(str),
            "job_title": pd.array(titles, dtype="str"),
            "industry": np.asarray(INDUSTRIES, dtype=object)[industry],
            "employees": employees,
            "country": np.asarray(COUNTRIES, dtype=object)[country],
            "lead_source": np.asarray(sources, dtype=object)[source],
        }
    )
    leads["industry"] = leads["industry"].mask(rng.random(n) < 0.05)
    if accounts is not None:
        named = pd.Series(account).map(lambda a: f"A{a:05d}" if a >= 0 else None)
        leads.insert(1, "account_id", pd.array(named, dtype="str"))
    latent = {
        "account": account,
        "persona": persona,
        "created_day": created_day,
        "created_frac": created_frac,
        "fit": fit,
        "source": source,
        "source_interest": source_interest,
    }
    return leads, latent


def _latent_dynamics(rng: np.random.Generator, latent: dict, n: int) -> dict:
    persona = latent["persona"]
    half_life = rng.uniform(15.0, 18.0, n)
    decay = np.exp(-np.log(2.0) / half_life)
    # How often a lead starts a research episode and how strong it is: mostly traits of the
    # persona, so that what the oracle knows beyond the data is small but not nothing.
    shock_prob = 0.004 * np.exp(rng.normal(0.0, 0.1, n)) * np.where(persona == 1, 1.8, 1.0)
    shock_size = rng.gamma(100.0, 0.04, n)
    initial = latent["source_interest"][latent["source"]] * rng.gamma(3.0, 1 / 3.0, n)
    # Hazard per unit interest; scaled so an average open lead converts at ~7% in 90 days.
    hazard_scale = np.exp(latent["fit"]) * 0.0016
    base_hazard = np.full(n, 2e-5)
    return {
        "decay": decay,
        "shock_prob": shock_prob,
        "shock_size": shock_size,
        "initial_interest": initial,
        "hazard_scale": hazard_scale,
        "base_hazard": base_hazard,
    }


def _simulate_chunk(
    rng: np.random.Generator,
    idx: np.ndarray,
    latent: dict,
    dyn: dict,
    end_offset_day: int,
    drift_day: int | None = None,
    account_add: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Simulate interest, conversions and activities for the leads in `idx`.

    With `drift_day` (a day of the history), the drift scenario's changes apply from it on.
    `account_add`: (leads, days) interest their accounts' buying projects add on each day of
    their lives.
    """
    n = len(idx)
    days = LEAD_LIFETIME_DAYS
    created = latent["created_day"][idx]
    # Days of the lead's life that fall before the end of the history.
    observed = np.minimum(days, end_offset_day - created)
    shocks = rng.random((n, days), dtype=np.float32) < dyn["shock_prob"][idx, None]
    shocks[:, 0] = False
    interest = np.empty((n, days), dtype=np.float32)
    interest[:, 0] = dyn["initial_interest"][idx]
    decay = dyn["decay"][idx].astype(np.float32)
    size = dyn["shock_size"][idx].astype(np.float32)
    for d in range(1, days):
        interest[:, d] = decay * interest[:, d - 1] + size * shocks[:, d]
        if account_add is not None:
            interest[:, d] += account_add[:, d]
    hazard = dyn["base_hazard"][idx, None] + dyn["hazard_scale"][idx, None] * interest
    if drift_day is not None:
        drifted = (created[:, None] + np.arange(days)[None, :]) >= drift_day
        hazard = np.where(drifted, hazard * np.float32(DRIFT_HAZARD_FACTOR), hazard)
    cumulative = np.cumsum(hazard, axis=1)
    threshold = rng.exponential(1.0, n)
    crossed = cumulative >= threshold[:, None]
    converts = crossed.any(axis=1)
    conversion_day = np.where(converts, crossed.argmax(axis=1), days)
    # Nothing happens on the creation day before the lead exists.
    created_frac = latent["created_frac"][idx]
    conversion_frac = rng.random(n)
    conversion_frac = np.where(
        conversion_day == 0, created_frac + conversion_frac * (1 - created_frac), conversion_frac
    )
    # Activity stops at conversion (the lead becomes an opportunity) or the end of history.
    alive_until = np.minimum(conversion_day + 1, observed)
    alive = np.arange(days)[None, :] < alive_until[:, None]

    persona = latent["persona"][idx]
    fit_factor = 0.4 + 1.2 / (1.0 + np.exp(-(latent["fit"][idx] + 0.2)))
    weekday = (created[:, None] + np.arange(days)[None, :] + 3) % 7  # day 0 of history: Thursday
    weekday_factor = np.where(weekday >= 5, 0.25, 1.0).astype(np.float32)
    unsub_day = rng.geometric(0.0015, n)

    channel_interest = _INTEREST_RATES[persona] * np.where(
        _INTENT_CHANNELS[None, :], fit_factor[:, None], 1.0
    )
    total_interest_rate = channel_interest.sum(axis=1).astype(np.float32)
    total_base_rate = np.float32(_BASE_RATES.sum())
    rate = (total_base_rate + total_interest_rate[:, None] * interest) * weekday_factor * alive
    counts = rng.poisson(rate)
    lead_pos, day = np.nonzero(counts)
    repeats = counts[lead_pos, day]
    lead_pos = np.repeat(lead_pos, repeats)
    day = np.repeat(day, repeats)
    # Split each event into a channel proportional to the channel rates on that day.
    weights = _BASE_RATES[None, :] + channel_interest[lead_pos] * interest[lead_pos, day][:, None]
    emails_off = day > unsub_day[lead_pos]
    weights[emails_off[:, None] & _EMAIL_CHANNELS[None, :]] = 0.0
    cumulative_w = np.cumsum(weights, axis=1)
    draw = rng.random(len(lead_pos)) * cumulative_w[:, -1]
    channel = (draw[:, None] > cumulative_w).sum(axis=1)
    if drift_day is not None:
        # After the redesign the interested read the product pages, and everybody alive
        # sees pricing now and then, whatever their interest or fit.
        after = created[lead_pos] + day >= drift_day
        channel[after & (channel == _PRICING)] = _PRODUCT
        drifted_alive = alive & (created[:, None] + np.arange(days)[None, :] >= drift_day)
        extra = rng.poisson(DRIFT_PRICING_RATE * weekday_factor * drifted_alive)
        extra_pos, extra_day = np.nonzero(extra)
        repeats = extra[extra_pos, extra_day]
        extra_pos, extra_day = np.repeat(extra_pos, repeats), np.repeat(extra_day, repeats)
        lead_pos = np.concatenate([lead_pos, extra_pos])
        day = np.concatenate([day, extra_day])
        channel = np.concatenate([channel, np.full(len(extra_pos), _PRICING)])
    # Time of day: business hours, after the lead's creation on day 0 and before the
    # conversion on the conversion day.
    u = np.clip(rng.normal(0.55, 0.13, len(lead_pos)), 0.0, 0.999)
    lo = np.where(day == 0, created_frac[lead_pos], 0.0)
    hi = np.where(day == conversion_day[lead_pos], conversion_frac[lead_pos], 1.0)
    frac = lo + u * (hi - lo)
    events = [lead_pos, day, channel, frac]

    # Unsubscribes within the observed life.
    unsub = unsub_day < alive_until
    events_unsub = (np.nonzero(unsub)[0], unsub_day[unsub])
    # Ground-truth shocks (relative day indices).
    shock_lead, shock_day = np.nonzero(shocks & (np.arange(days)[None, :] < observed[:, None]))
    conversion_day = np.where(conversion_day < observed, conversion_day, -1)
    return (
        events + list(events_unsub),
        conversion_day + np.where(conversion_day >= 0, conversion_frac, 0.0),
        shock_lead,
        shock_day,
    )


def generate_crm(
    n_leads: int = 20_000,
    seed: int = 7,
    end: str | pd.Timestamp | None = None,
    scenario: str = "stationary",
    history_days: int = HISTORY_DAYS,
    sales_touches: bool = False,
    accounts: bool = False,
) -> SyntheticCRM:
    """Generate a seeded, deterministic synthetic CRM ending at `end` (default: today, UTC).

    `scenario`: ``stationary`` (the default) or ``drift`` (see the module's docstring).
    `history_days`: how far back the history goes (leads are created over all of it).
    `sales_touches`: sales answers hand-raises, and slow answers lose conversions (see
    `response_retention`); the truth table then says, per lead, when it raised its hand, how
    fast sales answered and whether that lost the deal. No exact oracle then: the effect
    depends on answers still to come (`true_conversion_probability` refuses such data).
    `accounts`: corporate leads belong to accounts (an `account_id` column) that share
    firmographics and buying projects (see `ACCOUNT_LEADS`); the oracles stay exact, for
    leads and for accounts (`true_account_probability`). Without it, the data is as before.
    """
    report = reporter()
    if n_leads < 1:
        raise ValueError(f"n_leads must be at least 1, got {n_leads}")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    if history_days < 30:
        raise ValueError(f"history_days must be at least 30, got {history_days}")
    drift_day = int(DRIFT_AT * history_days) if scenario == "drift" else None
    end_ts = (
        pd.Timestamp(end) if end is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    ).normalize()
    start = end_ts - pd.Timedelta(days=history_days)
    rng = np.random.default_rng(seed)
    account_rng = np.random.default_rng([seed, 15485863]) if accounts else None
    leads, latent = _make_leads(rng, n_leads, end_ts, drift_day, history_days, account_rng)
    dyn = _latent_dynamics(rng, latent, n_leads)
    projects = None
    if account_rng is not None:
        projects = _account_projects(account_rng, latent["account"], history_days)
        member = latent["account"] >= 0
        dyn["account_shock_prob"] = np.where(member, projects["prob"][latent["account"]], 0.0)
        dyn["account_shock_size"] = np.where(member, projects["size"][latent["account"]], 0.0)

    chunk = 10_000
    act_parts, conv_at, shock_parts = [], np.full(n_leads, np.nan), []
    for start_i in range(0, n_leads, chunk):
        idx = np.arange(start_i, min(start_i + chunk, n_leads))
        chunk_rng = np.random.default_rng([seed, start_i])
        add = None if projects is None else _account_interest(projects, latent, idx)
        events, conv, s_lead, s_day = _simulate_chunk(
            chunk_rng, idx, latent, dyn, history_days, drift_day, add
        )
        lead_pos, day, channel, frac, u_lead, u_day = events
        act_parts.append(
            (idx[lead_pos], day + frac, channel, idx[u_lead], u_day + chunk_rng.random(len(u_day)))
        )
        conv_at[idx] = np.where(conv >= 0, conv, np.nan)
        shock_parts.append((idx[s_lead], s_day))
        report("generating", min(start_i + chunk, n_leads), n_leads)

    activities = _activities_frame(rng, act_parts, latent, start, history_days)
    created_abs = latent["created_day"]
    converted_at = start + pd.to_timedelta(created_abs + conv_at, "D")
    outcomes = pd.DataFrame(
        {"lead_id": leads["lead_id"].to_numpy(), "converted_at": converted_at.round("s")}
    )
    truth_leads = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].to_numpy(),
            "persona": np.asarray(PERSONAS, dtype=object)[latent["persona"]],
            "created_day": (start + pd.to_timedelta(created_abs, "D")),
            "fit": latent["fit"],
            **{k: v for k, v in dyn.items()},
        }
    )
    if drift_day is not None:
        truth_leads["hazard_drift_day"] = start + pd.Timedelta(days=drift_day)
        truth_leads["hazard_drift_factor"] = DRIFT_HAZARD_FACTOR
    if sales_touches:
        activities, outcomes, touch_truth = _sales_touches(
            np.random.default_rng([seed, 7919]), activities, outcomes, end_ts
        )
        truth_leads = truth_leads.merge(touch_truth, on="lead_id", how="left")
        truth_leads["lost_to_slow_response"] = (
            truth_leads["lost_to_slow_response"].astype("boolean").fillna(False).astype(bool)
        )
    s_lead = np.concatenate([p[0] for p in shock_parts])
    s_day = np.concatenate([p[1] for p in shock_parts])
    truth_shocks = pd.DataFrame({"lead_id": s_lead + 1, "day_index": s_day.astype(np.int32)})
    account_shocks = None
    if projects is not None:
        truth_leads.insert(1, "account_id", leads["account_id"].to_numpy())
        account_shocks = pd.DataFrame(
            {
                "account_id": pd.array([f"A{a:05d}" for a in projects["account"]], dtype="str"),
                "day": start + pd.to_timedelta(projects["day"], "D"),
            }
        )
    return SyntheticCRM(
        leads, activities, outcomes, truth_leads, truth_shocks, end_ts, account_shocks
    )


def _account_projects(rng: np.random.Generator, account: np.ndarray, history_days: int) -> dict:
    """Each account's buying projects: a Bernoulli day process (as a lead's research
    episodes), drawn as a count per account and that many distinct days, over the history
    and the lifetime of its last leads (the oracle integrates the future the same way)."""
    n_accounts = int(account.max()) + 1 if (account >= 0).any() else 0
    prob = ACCOUNT_SHOCK_PROB * np.exp(rng.normal(0.0, 0.3, n_accounts))
    size = rng.gamma(*ACCOUNT_SHOCK_GAMMA, n_accounts)
    span = history_days + LEAD_LIFETIME_DAYS
    count = rng.binomial(span, prob)
    days = [np.sort(rng.choice(span, k, replace=False)) for k in count]
    return {
        "prob": prob,
        "size": size,
        "account": np.repeat(np.arange(n_accounts), count),
        "day": np.concatenate(days) if days else np.zeros(0, dtype=np.int64),
    }


def _account_interest(projects: dict, latent: dict, idx: np.ndarray) -> np.ndarray:
    """(leads of `idx`, lifetime days): the interest the account's projects add each day of
    a lead's life (none on its first day, as its own episodes)."""
    add = np.zeros((len(idx), LEAD_LIFETIME_DAYS), dtype=np.float32)
    account = latent["account"][idx]
    member = np.flatnonzero(account >= 0)
    if not len(member):
        return add
    per_account = pd.Series(projects["day"]).groupby(projects["account"]).agg(list)
    created = latent["created_day"][idx]
    for pos in member:
        days = np.asarray(per_account.get(account[pos], []), dtype=np.int64) - created[pos]
        days = days[(days >= 1) & (days < LEAD_LIFETIME_DAYS)]
        add[pos, days] += np.float32(projects["size"][account[pos]])
    return add


def _sales_touches(
    rng: np.random.Generator, activities: pd.DataFrame, outcomes: pd.DataFrame, end: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Sales answers each lead's first hand-raise; slow answers lose some conversions."""
    hands = activities[activities["activity_type"].isin(HAND_RAISES)]
    first = hands.groupby("lead_id")["occurred_at"].min()
    n = len(first)
    low, high = np.log(RESPONSE_MINUTES[0]), np.log(RESPONSE_MINUTES[1])
    minutes = np.exp(rng.uniform(low, high, n))
    retention = response_retention(minutes)
    converted = outcomes.set_index("lead_id")["converted_at"].reindex(first.index)
    after = converted.notna().to_numpy() & (converted > first).to_numpy()
    lost = after & (rng.random(n) > retention)
    touch_at = first + pd.to_timedelta(minutes, "m")
    # Sales reaches the lead while it is still in play: before it converts (or, lost, buys
    # elsewhere at that moment and goes quiet) and before the history ends.
    until = converted.fillna(end).to_numpy()
    touched = (touch_at.to_numpy() < until) & (touch_at.to_numpy() < end.to_datetime64())
    kind = np.where(rng.random(n) < 0.6, SALES_TOUCH_TYPES[0], SALES_TOUCH_TYPES[1])
    touches = pd.DataFrame(
        {
            "lead_id": first.index.to_numpy()[touched],
            "occurred_at": touch_at.to_numpy()[touched],
            "activity_type": pd.array(kind[touched], dtype="str"),
            "detail": pd.array(np.full(int(touched.sum()), "sales"), dtype="str"),
        }
    )
    touches["occurred_at"] = touches["occurred_at"].dt.round("s")
    merged = pd.concat([activities.drop(columns="activity_id"), touches], ignore_index=True)
    merged = merged.sort_values(["occurred_at", "lead_id"], kind="stable").reset_index(drop=True)
    merged.insert(0, "activity_id", np.arange(1, len(merged) + 1))
    outcomes = outcomes.copy()
    lost_ids = first.index.to_numpy()[lost]
    outcomes.loc[outcomes["lead_id"].isin(lost_ids), "converted_at"] = pd.NaT
    truth = pd.DataFrame(
        {
            "lead_id": first.index.to_numpy(),
            "hand_raise_at": first.to_numpy(),
            "response_minutes": minutes,
            "retention": retention,
            "lost_to_slow_response": lost,
        }
    )
    return merged, outcomes, truth


def _activities_frame(
    rng: np.random.Generator,
    parts: list,
    latent: dict,
    start: pd.Timestamp,
    history_days: int = HISTORY_DAYS,
) -> pd.DataFrame:
    lead_idx = np.concatenate([p[0] for p in parts])
    rel_day = np.concatenate([p[1] for p in parts])
    channel = np.concatenate([p[2] for p in parts])
    u_lead = np.concatenate([p[3] for p in parts])
    u_day = np.concatenate([p[4] for p in parts])

    activity_type = np.asarray([c[0] for c in CHANNELS], dtype=object)[channel]
    category = np.asarray([c[1] or "" for c in CHANNELS], dtype=object)[channel]
    detail = np.full(len(channel), "", dtype=object)
    for cat, paths in PAGE_PATHS.items():
        mask = category == cat
        detail[mask] = _pick(rng, paths, int(mask.sum()))
    for name, options in (
        ("content_download", ASSETS),
        ("webinar_registration", WEBINARS),
        ("email_open", CAMPAIGNS),
        ("email_click", CAMPAIGNS),
    ):
        mask = activity_type == name
        detail[mask] = _pick(rng, options, int(mask.sum()))
    detail[activity_type == "demo_request"] = "form:demo"
    detail[activity_type == "contact_request"] = "form:contact"

    # Half of the webinar registrants attend, on the webinar day a few days later.
    reg = np.nonzero(activity_type == "webinar_registration")[0]
    attends = reg[rng.random(len(reg)) < 0.5]
    att_day = rel_day[attends] + rng.integers(2, 10, len(attends))
    lifetime_end = np.minimum(LEAD_LIFETIME_DAYS, history_days - latent["created_day"])

    frames_lead = [lead_idx, lead_idx[attends], u_lead]
    frames_day = [rel_day, att_day, u_day.astype(float)]
    frames_type = [activity_type, np.full(len(attends), "webinar_attendance", dtype=object)]
    frames_type.append(np.full(len(u_lead), "email_unsubscribe", dtype=object))
    frames_detail = [detail, detail[attends], _pick(rng, CAMPAIGNS, len(u_lead))]

    all_lead = np.concatenate(frames_lead)
    all_day = np.concatenate(frames_day)
    keep = all_day < lifetime_end[all_lead]
    abs_day = latent["created_day"][all_lead] + all_day
    order = np.lexsort((all_lead, abs_day))
    order = order[keep[order]]
    occurred = start + pd.to_timedelta(abs_day[order], "D").round("s")
    return pd.DataFrame(
        {
            "activity_id": np.arange(1, len(order) + 1),
            "lead_id": all_lead[order] + 1,
            "occurred_at": occurred,
            "activity_type": pd.array(np.concatenate(frames_type)[order], dtype="str"),
            "detail": pd.array(np.concatenate(frames_detail)[order], dtype="str"),
        }
    )


def true_conversion_probability(
    truth_leads: pd.DataFrame,
    truth_shocks: pd.DataFrame,
    examples: pd.DataFrame,
    horizon_days: int,
    account_shocks: pd.DataFrame | None = None,
) -> np.ndarray:
    """The oracle: P(convert within `horizon_days` of `as_of` | all latent state before it).

    `examples` has columns `lead_id` and `as_of` (a midnight timestamp after the lead's
    creation). Exact under the generator's model: future shocks are integrated out. With
    accounts, pass `account_shocks` (`SyntheticCRM.truth_account_shocks`).
    """
    log_survival, _ = _log_survival(
        truth_leads, truth_shocks, examples, horizon_days, account_shocks
    )
    return 1.0 - np.exp(log_survival)


def true_account_probability(
    truth_leads: pd.DataFrame,
    truth_shocks: pd.DataFrame,
    account_shocks: pd.DataFrame,
    examples: pd.DataFrame,
    horizon_days: int,
) -> pd.DataFrame:
    """The account oracle: P(at least one of the account's open leads converts within
    `horizon_days` of `as_of` | all latent state before it).

    `examples` are lead snapshots (lead_id, as_of: the leads open that day, e.g. from
    `build_snapshots`); returns one row per account and as_of (account_id, as_of, leads,
    probability). A lead without an account is an account of its own (account_id: its
    "lead:<id>"). The account's people share its future projects, so their conversions are
    not independent: the shared term is integrated once per account, exactly.
    """
    if "account_id" not in truth_leads:
        raise ValueError(
            "this history was generated without accounts (generate --accounts): every lead is "
            "its own account, and true_conversion_probability is its probability"
        )
    truth = truth_leads.set_index("lead_id")
    account = truth["account_id"].reindex(examples["lead_id"].to_numpy())
    own = "lead:" + examples["lead_id"].astype(str).to_numpy()
    key = np.where(account.isna().to_numpy(), own, account.astype(str).to_numpy())
    groups = pd.DataFrame({"account_id": key, "as_of": examples["as_of"].to_numpy()})
    codes, uniques = pd.MultiIndex.from_frame(groups).factorize()
    log_survival, shared = _log_survival(
        truth_leads, truth_shocks, examples, horizon_days, account_shocks, codes, len(uniques)
    )
    total = np.bincount(codes, log_survival, minlength=len(uniques)) + shared
    out = uniques.set_names(["account_id", "as_of"]).to_frame(index=False)
    out["leads"] = np.bincount(codes, minlength=len(uniques))
    out["probability"] = 1.0 - np.exp(total)
    return out


def _log_survival(
    truth_leads: pd.DataFrame,
    truth_shocks: pd.DataFrame,
    examples: pd.DataFrame,
    horizon_days: int,
    account_shocks: pd.DataFrame | None = None,
    groups: np.ndarray | None = None,
    n_groups: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Log P(no conversion in the window) per example; with `groups` (an account code per
    example), the accounts' shared future projects go into a per-group term instead of
    each lead's (their leads' survivals then multiply with it)."""
    if "lost_to_slow_response" in truth_leads:
        raise ValueError(
            "this history was generated with sales touches: whether a lead converts depends "
            "on how fast sales will answer, so there is no exact oracle (generate without "
            "--sales-touches to compare with one)"
        )
    with_accounts = "account_shock_prob" in truth_leads
    if with_accounts and account_shocks is None:
        raise ValueError(
            "this history was generated with accounts: pass its truth_account_shocks (the "
            "accounts' buying projects are part of every lead's state)"
        )
    truth = truth_leads.set_index("lead_id")
    rows = truth.loc[examples["lead_id"].to_numpy()]
    created = rows["created_day"].to_numpy().astype("datetime64[D]")
    as_of = examples["as_of"].to_numpy().astype("datetime64[D]")
    s = (as_of - created).astype(np.int64)  # first unseen relative day
    if (s < 1).any():
        raise ValueError("every example's as_of must be after the lead's creation day")
    decay = rows["decay"].to_numpy()
    # Interest on the last known day s-1.
    interest = rows["initial_interest"].to_numpy() * decay ** (s - 1)
    ex = pd.DataFrame({"lead_id": examples["lead_id"].to_numpy(), "s": s, "pos": np.arange(len(s))})
    joined = ex.merge(truth_shocks, on="lead_id", how="inner")
    joined = joined[joined["day_index"] <= joined["s"] - 1]
    if len(joined):
        contrib = truth.loc[joined["lead_id"].to_numpy(), "shock_size"].to_numpy() * decay[
            joined["pos"].to_numpy()
        ] ** (joined["s"].to_numpy() - 1 - joined["day_index"].to_numpy())
        interest = interest + np.bincount(joined["pos"].to_numpy(), contrib, minlength=len(s))
    q = b = np.zeros(len(s))
    if with_accounts:
        q = rows["account_shock_prob"].to_numpy(dtype=float)
        b = rows["account_shock_size"].to_numpy(dtype=float)
        # The account's projects since the lead's first day, up to the day before as_of.
        mine = ex.assign(account_id=rows["account_id"].to_numpy(), created=created)
        mine = mine[pd.notna(mine["account_id"])]
        hits = mine.merge(account_shocks, on="account_id", how="inner")
        day = hits["day"].to_numpy().astype("datetime64[D]")
        rel = (day - hits["created"].to_numpy().astype("datetime64[D]")).astype(np.int64)
        keep = (rel >= 1) & (rel <= hits["s"].to_numpy() - 1)
        pos, rel = hits["pos"].to_numpy()[keep], rel[keep]
        interest = interest + np.bincount(
            pos, b[pos] * decay[pos] ** (s[pos] - 1 - rel), minlength=len(s)
        )
    window = np.clip(np.minimum(horizon_days, LEAD_LIFETIME_DAYS - s), 0, None)
    c = rows["hazard_scale"].to_numpy()
    p = rows["shock_prob"].to_numpy()
    a = rows["shock_size"].to_numpy()
    # The hazard's calendar factor on each day k of the window (k = 0 is day s): 1 in the
    # stationary scenario, the drift factor from the drift day on in the drift one.
    if "hazard_drift_day" in rows:
        drift = rows["hazard_drift_day"].to_numpy().astype("datetime64[D]")
        drift_rel = (drift - created).astype(np.int64) - s  # first drifted day of the window
        factor = rows["hazard_drift_factor"].to_numpy(dtype=float)
    else:
        drift_rel, factor = np.full(len(s), horizon_days + 1), np.ones(len(s))
    if groups is not None:
        group_q = np.zeros(n_groups)
        group_b = np.zeros(n_groups)
        group_q[groups] = q  # one account: one project process
        group_b[groups] = b

    # G_j = sum over the window's days k >= j of factor_k * decay^(k-j): what a unit of
    # interest on day j adds to the cumulative hazard. Backwards: G_j = f_j + decay G_(j+1).
    log_survival = np.zeros(len(s))
    shared = np.zeros(n_groups)
    g = np.zeros(len(s))
    for j in range(horizon_days - 1, -1, -1):
        active = j < window
        f = np.where(j >= drift_rel, factor, 1.0)
        g = np.where(active, f + decay * g, 0.0)
        log_survival -= np.where(active, rows["base_hazard"].to_numpy() * f, 0.0)
        term = np.log1p(-p + p * np.exp(-c * a * g))
        log_survival += np.where(active, term, 0.0)
        if with_accounts and groups is None:
            log_survival += np.where(active, np.log1p(-q + q * np.exp(-c * b * g)), 0.0)
        elif with_accounts:
            # A project of the account on day s+j reaches each of its open leads at once.
            load = np.bincount(groups, c * g, minlength=n_groups)
            shared += np.log1p(-group_q + group_q * np.exp(-group_b * load))
    log_survival -= c * interest * decay * g
    return log_survival, shared
