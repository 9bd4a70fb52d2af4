"""Suggested rule points on a generated history whose true effects are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml
from conftest import REPO

from leadscore.config import config_from_dict
from leadscore.data.rules import RuleSet
from leadscore.evaluation.evidence import FIT_SPLITS
from leadscore.evaluation.tuning import (
    suggest_rules,
)
from leadscore.io.sources import CRMData
from leadscore.scoring import training
from leadscore.synthetic import generate_crm, true_conversion_probability


def test_suggested_points_have_the_sign_of_the_true_effect() -> None:
    """On generated data, compare suggested points with the truth the generator used.

    The true effect of a rule is its coefficient when the oracle's log-odds are regressed on
    all rule hits together; rules where it is clearly positive or negative (|effect| >= 0.3
    log-odds per hit) must get points of that sign. The extra rules cover what the
    generator knows: students, free mail, purchased lists, referrals, company size, demos.
    """
    data = yaml.safe_load((REPO / "models" / "mql_rules.yaml").read_text(encoding="utf-8"))
    data["attribute_rules"] += [
        {"name": "student_domain", "field": "email_domain_kind", "equals": "student", "points": 10},
        {"name": "free_mail", "field": "email_domain_kind", "equals": "free_mail", "points": 5},
        {
            "name": "purchased_list",
            "field": "lead_source",
            "equals": "purchased_list",
            "points": 10,
        },
        {"name": "referral", "field": "lead_source", "equals": "referral", "points": 0},
        {"name": "big_company", "field": "employees", "range": [1000, None], "points": 5},
    ]
    data["behaviour_rules"] += [
        {"name": "demo_request", "activity": "demo_request", "within_days": 30, "points": 5},
        {
            "name": "blog_reader",
            "activity": "page_view",
            "page_category": "blog",
            "within_days": 30,
            "points": 5,
            "cap": 20,
        },
    ]
    rules = RuleSet.model_validate(data)
    crm = generate_crm(20_000, seed=11, end="2026-06-30")
    source = CRMData(crm.leads, crm.activities, crm.outcomes.dropna(), "generated")
    config = config_from_dict({}, environ={})
    training_set = training.build_training_set(source, config, rules)
    snaps = pd.concat([training_set.snapshots[s] for s in FIT_SPLITS], ignore_index=True)
    fit = pd.concat([training_set.rules[s] for s in FIT_SPLITS], ignore_index=True)
    test = training_set.rules["test"]
    suggestion = suggest_rules(
        rules, fit, snaps["converted"].to_numpy(float), test, training_set.labels("test")
    )

    p = np.clip(
        true_conversion_probability(crm.truth_leads, crm.truth_shocks, snaps, 90), 1e-6, 1 - 1e-6
    )
    hits = fit[[f"hits_{n}" for n in rules.names]].to_numpy(float)
    design = np.c_[np.ones(len(hits)), hits]
    true_effect = np.linalg.lstsq(design, np.log(p / (1 - p)), rcond=None)[0][1:]

    points = suggestion.points.set_index("rule")["suggested_points"]
    clear = {n: e for n, e in zip(rules.names, true_effect, strict=True) if abs(e) >= 0.3}
    assert len(clear) >= 6, clear  # the test is not vacuous
    assert {"competitor_domain", "student_domain", "pricing_page", "careers_page"} <= set(clear)
    wrong = {n: (e, points[n]) for n, e in clear.items() if np.sign(points[n]) != np.sign(e)}
    assert not wrong, wrong
