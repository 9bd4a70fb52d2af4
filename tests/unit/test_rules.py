from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

from leadscore.config import FeatureConfig
from leadscore.data.features import derive_attributes, email_domain, index_activities
from leadscore.data.rules import RuleSet, evaluate_rules, load_rules
from leadscore.errors import ConfigError

AS_OF = pd.Timestamp("2026-03-01")
CATEGORIES = {"pricing": "/pricing", "careers": "/careers"}


def _fields(leads: pd.DataFrame) -> pd.DataFrame:
    rows = leads.assign(email_domain=email_domain(leads["email"]))
    return pd.concat([rows, derive_attributes(rows, "job_title", FeatureConfig())], axis=1)


def _evaluate(rules: RuleSet, leads, activities) -> pd.DataFrame:
    snaps = pd.DataFrame({"lead_id": leads["lead_id"], "as_of": AS_OF}).astype(
        {"as_of": "datetime64[us]"}
    )
    index = index_activities(activities, CATEGORIES, "page_view")
    out = evaluate_rules(rules, _fields(leads), snaps, index)
    return out.set_index(leads["lead_id"])


def test_default_rule_file_is_the_classic_agreement() -> None:
    rules = load_rules(REPO / "models" / "mql_rules.yaml")
    points = {r.name: r.points for r in [*rules.attribute_rules, *rules.behaviour_rules]}
    assert points == {
        "director_or_above": 20,
        "competitor_domain": -50,
        "content_download": 30,
        "pricing_page": 10,
        "careers_page": -10,
    }
    assert rules.mql_threshold == 50
    packaged = REPO / "src" / "leadscore" / "defaults" / "mql_rules.yaml"
    assert packaged.read_text() == (REPO / "models" / "mql_rules.yaml").read_text()


def test_default_rules_on_tiny_leads(tiny_leads, tiny_activities) -> None:
    out = _evaluate(load_rules(REPO / "models" / "mql_rules.yaml"), tiny_leads, tiny_activities)
    # Lead 1: VP (+20), 1 download (+30), 2 pricing views in 30 days (+20) = 70, an MQL.
    assert out.loc[1, "rule_score"] == 70
    assert bool(out.loc[1, "is_mql"])
    assert out.loc[1, "rules_fired"] == "director_or_above,content_download,pricing_page"
    # Lead 2: 部長 (+20), careers view (-10) = 10.
    assert out.loc[2, "rule_score"] == 10
    # Lead 4: competitor (-50); lead 5: student with 3 downloads, capped at 60.
    assert out.loc[4, "rule_score"] == -50
    assert out.loc[5, "rule_score"] == 60
    assert out.loc[3, "rules_fired"] == ""


def test_operators_contains_range_equals(tiny_leads, tiny_activities) -> None:
    rules = RuleSet.model_validate(
        {
            "mql_threshold": 5,
            "attribute_rules": [
                {"name": "mid_size", "field": "employees", "range": [100, 1000], "points": 3},
                {
                    "name": "engineer",
                    "field": "job_title",
                    "contains": ["engineer", "エンジニア"],
                    "points": 2,
                },
                {"name": "japan", "field": "country", "equals": "jp", "points": 1},
                {
                    "name": "source",
                    "field": "lead_source",
                    "in": ["event", "referral"],
                    "points": 4,
                },
            ],
        }
    )
    out = _evaluate(rules, tiny_leads, tiny_activities)
    assert out["rule_score"].tolist() == [3, 5, 4, 2, 0]
    assert out["is_mql"].tolist() == [False, True, False, False, False]


def test_rule_file_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "mql_threshold: 50\nattribute_rules:\n  - name: x\n    field: country\n    points: 5\n"
    )
    with pytest.raises(ConfigError, match="exactly one of equals, in, contains, range"):
        load_rules(bad)
    bad.write_text(
        "mql_threshold: 50\nbehaviour_rules:\n  - name: x\n    activity: page_view\n"
        "    within_days: 0\n    points: 5\n"
    )
    with pytest.raises(ConfigError, match="within_days"):
        load_rules(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_rules(tmp_path / "missing.yaml")


def test_unknown_field_or_category_is_a_config_error(tiny_leads, tiny_activities) -> None:
    rules = RuleSet.model_validate(
        {
            "mql_threshold": 1,
            "attribute_rules": [{"name": "x", "field": "budget", "equals": 1, "points": 1}],
        }
    )
    with pytest.raises(ConfigError, match="budget"):
        _evaluate(rules, tiny_leads, tiny_activities)
    rules = RuleSet.model_validate(
        {
            "mql_threshold": 1,
            "behaviour_rules": [
                {
                    "name": "x",
                    "activity": "page_view",
                    "page_category": "docs",
                    "within_days": 5,
                    "points": 1,
                }
            ],
        }
    )
    with pytest.raises(ConfigError, match="docs"):
        _evaluate(rules, tiny_leads, tiny_activities)


def test_numeric_equality_and_unknown_activity(tiny_leads, tiny_activities) -> None:
    from leadscore.data.rules import check_activities

    rules = RuleSet.model_validate(
        {
            "mql_threshold": 1,
            "attribute_rules": [{"name": "x", "field": "employees", "in": [250, 12], "points": 1}],
        }
    )
    assert _evaluate(rules, tiny_leads, tiny_activities)["rule_score"].tolist() == [1, 0, 1, 0, 0]
    typo = RuleSet.model_validate(
        {
            "mql_threshold": 1,
            "behaviour_rules": [
                {"name": "dl", "activity": "content_downlaod", "within_days": 9, "points": 1}
            ],
        }
    )
    with pytest.raises(ConfigError, match="content_downlaod"):
        check_activities(typo, ["content_download", "page_view"])
