"""Rules-only scores: tiers by rule points, the rules as reasons, what may be published, the
tables of an older release opened up for them, and the first model's contest with the rules."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from leadscore.config import PromotionConfig, TierConfig
from leadscore.errors import DataError
from leadscore.io.publish import RULES_ONLY_MODEL, publish_scores, read_scores
from leadscore.lifecycle.promotion import against_rules
from leadscore.scoring.scorer import rule_reasons
from leadscore.scoring.tiers import assign_rule_tiers, rule_point_floors


def test_rule_tiers_start_at_the_mql_threshold_or_at_the_configured_floors() -> None:
    assert rule_point_floors(50, TierConfig()) == [50, 33, 17]
    assert rule_point_floors(40, TierConfig(rule_points=[60, 40, 10])) == [60, 40, 10]
    assert rule_point_floors(0, TierConfig()) == [0, 0, 0]  # A = MQL, the rest D
    points = np.array([75, 50, 49, 33, 32.5, 17, 16, 0, -50])
    assert "".join(assign_rule_tiers(points, [50, 33, 17])) == "AABBCCDDD"
    with pytest.raises(ValueError, match="falling"):
        TierConfig(rule_points=[10, 40, 60])


def test_the_rules_that_fired_are_the_reasons_most_points_first() -> None:
    results = pd.DataFrame(
        {
            "rule_score": [50.0, -40.0, 0.0],
            "points_director": [20.0, 0.0, 0.0],
            "points_pricing": [30.0, 10.0, 0.0],
            "points_competitor": [0.0, -50.0, 0.0],
        }
    )
    up, down = rule_reasons(results)
    assert list(up) == ["pricing +30; director +20", "pricing +10", ""]
    assert list(down) == ["", "competitor -50", ""]


def _rules_scores(as_of: str, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": range(1, n + 1),
            "as_of_date": pd.Timestamp(as_of),
            "conversion_probability": np.nan,
            "percentile": 50.0,
            "tier": "A",
            "rule_score": 60.0,
            "is_mql": True,
            "rules_fired": "pricing_page",
            "reasons_up": "pricing_page +60",
            "reasons_down": "",
            "model_name": RULES_ONLY_MODEL,
            "model_version": None,
            "mlflow_run_id": None,
            "scored_at": pd.Timestamp("2026-03-01 02:00"),
        }
    )


def test_a_run_is_scored_by_a_model_or_by_the_rules_never_both(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 's.db'}"
    mixed = _rules_scores("2026-03-01")
    mixed.loc[0, ["model_version", "mlflow_run_id", "conversion_probability"]] = ["1", "r", 0.2]
    with pytest.raises(DataError, match="never both"):
        publish_scores(mixed, uri)
    claimed = _rules_scores("2026-03-01").assign(conversion_probability=0.3)
    with pytest.raises(DataError, match="carry probabilities"):
        publish_scores(claimed, uri)
    assert read_scores(uri).empty  # nothing was published


OLD_SCHEMA = """
CREATE TABLE {name} (
    lead_id BIGINT NOT NULL, as_of_date DATE NOT NULL, conversion_probability FLOAT NOT NULL,
    percentile FLOAT NOT NULL, tier VARCHAR(1), rule_score FLOAT NOT NULL,
    is_mql BOOLEAN NOT NULL, rules_fired TEXT NOT NULL, reasons_up TEXT, reasons_down TEXT,
    model_name VARCHAR(255) NOT NULL, model_version VARCHAR(64) NOT NULL,
    mlflow_run_id VARCHAR(64) NOT NULL, scored_at TIMESTAMP NOT NULL, PRIMARY KEY ({key})
)"""
OLD_RUNS = """
CREATE TABLE lead_score_runs (
    as_of_date DATE NOT NULL PRIMARY KEY, model_name VARCHAR(255) NOT NULL,
    model_version VARCHAR(64) NOT NULL, mlflow_run_id VARCHAR(64) NOT NULL,
    leads INTEGER NOT NULL, scored_at TIMESTAMP NOT NULL, published_at TIMESTAMP NOT NULL
)"""


def _model_scores(as_of: str) -> pd.DataFrame:
    frame = _rules_scores(as_of, n=4)
    return frame.assign(conversion_probability=0.2, model_name="m", model_version="3",
                        mlflow_run_id="run", tier="B")  # fmt: skip


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_tables_of_an_older_release_take_rules_only_runs(database, tmp_path, request) -> None:
    """Tables made when every row needed a model accept a rules-only run: the model's
    columns may then be empty; the rows already there stay as they were."""
    uri = (
        f"sqlite:///{tmp_path / 's.db'}"
        if database == "sqlite"
        else request.getfixturevalue("pg_uri")
    )
    engine = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(OLD_SCHEMA.format(name="lead_scores", key="lead_id")))
        conn.execute(
            sa.text(OLD_SCHEMA.format(name="lead_score_history", key="lead_id, as_of_date"))
        )
        conn.execute(sa.text(OLD_RUNS))
    engine.dispose()
    publish_scores(_model_scores("2026-03-01"), uri)
    if database == "sqlite":  # what a user may have added: an index, a view
        engine = sa.create_engine(uri)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE INDEX ix_tier ON lead_scores (tier)"))
            conn.execute(
                sa.text("CREATE VIEW hot AS SELECT lead_id FROM lead_scores WHERE tier='A'")
            )
        engine.dispose()
    publish_scores(_rules_scores("2026-03-02", n=2), uri)
    if database == "sqlite":  # made again with the table
        engine = sa.create_engine(uri)
        with engine.connect() as conn:
            assert [i["name"] for i in sa.inspect(conn).get_indexes("lead_scores")] == ["ix_tier"]
            assert conn.execute(sa.text("SELECT count(*) FROM hot")).scalar() == 2
        engine.dispose()

    history = read_scores(uri, "lead_score_history").sort_values(["as_of_date", "lead_id"])
    assert history["model_version"].fillna("-").tolist() == ["3"] * 4 + ["-"] * 2
    assert history["conversion_probability"].isna().tolist() == [False] * 4 + [True] * 2
    latest = read_scores(uri).set_index("lead_id").sort_index()
    assert latest["model_name"].tolist() == [RULES_ONLY_MODEL] * 2 + ["m"] * 2
    runs = read_scores(uri, "lead_score_runs").sort_values("as_of_date")
    assert runs["model_version"].fillna("-").tolist() == ["3", "-"]
    engine = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        columns = {c["name"]: c["nullable"] for c in sa.inspect(conn).get_columns("lead_scores")}
    engine.dispose()
    assert columns["model_version"] and columns["conversion_probability"]
    assert not columns["rule_score"]  # the rest keeps its constraints
    # A model run after it is published as before.
    publish_scores(_model_scores("2026-03-03"), uri)
    assert read_scores(uri)["model_version"].eq("3").all()


def _result(y, p, rules, backtest=None) -> SimpleNamespace:
    y = np.asarray(y, dtype=float)
    return SimpleNamespace(
        data=SimpleNamespace(labels=lambda split: y),
        test_scores=pd.DataFrame({"conversion_probability": p, "rule_score": rules}),
        backtest=backtest,
        chosen_column="model",
    )


def test_the_first_model_must_rank_leads_better_than_the_rules() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.2).astype(float)
    signal = y + rng.normal(0, 1.0, len(y))
    good = 1 / (1 + np.exp(-(signal * 2 - 2)))  # ranks by the signal
    rules = np.round(signal * 10 + rng.normal(0, 20, len(y)))  # a noisier ranking
    gate = PromotionConfig()
    first = against_rules(_result(y, good, rules), gate)
    assert first.promote and first.action == "first" and first.rules_auc < first.challenger_auc
    assert "MQL rules" in first.reason and first.tags()["gate.rules_auc"]
    # A model no better than the rules is not promoted: the rules keep scoring.
    noisy = 1 / (1 + np.exp(-rng.normal(0, 1, len(y))))
    kept = against_rules(_result(y, noisy, rules), gate)
    assert not kept.promote and kept.action == "kept" and "rules keep scoring" in kept.reason
    assert against_rules(_result(y, noisy, rules), PromotionConfig(enabled=False)).promote


def test_realised_quality_judges_model_runs_only() -> None:
    """Right after the first model, the newest run old enough to judge is a rules-only one:
    it has no probability, and is not judged (it was failing every night)."""
    from leadscore.lifecycle.monitoring import judge_realised

    rules_run = _rules_scores("2026-01-01", n=3000).assign(as_of_date=pd.Timestamp("2026-01-01"))
    outcomes = pd.DataFrame({"lead_id": range(1, 601), "converted_at": pd.Timestamp("2026-02-01")})
    result, why = judge_realised(rules_run, outcomes, "2026-06-01", 90)
    assert result is None and "no published scores of a model" in why


def test_rules_only_scoring_accepts_a_quiet_window(tmp_path) -> None:
    """No content download in tonight's lookback is no typo in the rule file; and rules that
    count no activity need no activities at all."""
    from leadscore.config import config_from_dict
    from leadscore.data.rules import RuleSet, load_rules
    from leadscore.io.sources import load_crm
    from leadscore.io.tables import write_tables
    from leadscore.scoring.scorer import Scorer
    from leadscore.synthetic import generate_crm

    tables = generate_crm(300, seed=3, end="2026-03-31").tables()
    acts = tables["activities"]
    tables["activities"] = acts[acts["activity_type"] != "content_download"]
    write_tables(
        {k: tables[k] for k in ("leads", "activities", "outcomes")}, str(tmp_path), "parquet"
    )
    config = config_from_dict({"source": {"uri": str(tmp_path)}}, environ={})
    crm = load_crm(config)
    as_of = pd.Timestamp("2026-03-31")
    Scorer.rules_only(load_rules("models/mql_rules.yaml"), config).check(crm, as_of)
    quiet = crm.activities.iloc[:0]
    attributes_only = RuleSet(mql_threshold=10, attribute_rules=[])
    Scorer.rules_only(attributes_only, config).check(
        type(crm)(crm.leads, quiet, crm.outcomes, crm.source), as_of
    )
