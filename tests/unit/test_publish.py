import pandas as pd
import pytest
import sqlalchemy as sa

from leadscore.errors import DataError
from leadscore.io.publish import publish_scores, read_scores


def _scores(as_of: str, n: int = 4, p: float = 0.2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": range(1, n + 1),
            "as_of_date": pd.Timestamp(as_of),
            "conversion_probability": p,
            "percentile": 50.0,
            "tier": "B",
            "rule_score": 10.0,
            "is_mql": False,
            "rules_fired": "pricing_page",
            "reasons_up": "4 pricing-page views in the last 30 days",
            "reasons_down": "free e-mail domain",
            "model_name": "m",
            "model_version": "1",
            "mlflow_run_id": "r",
            "scored_at": pd.Timestamp("2026-03-01 02:00"),
        }
    )


def _day(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    return frame[frame["as_of_date"] == pd.Timestamp(day)]


def test_rerun_replaces_rows_of_the_same_as_of(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 's.db'}"
    publish_scores(_scores("2026-03-01"), uri)
    publish_scores(_scores("2026-03-02", n=2), uri)
    publish_scores(_scores("2026-03-01", n=3, p=0.3), uri)
    history = read_scores(uri, "lead_score_history")
    assert len(history) == 5
    day1 = _day(history, "2026-03-01")
    assert len(day1) == 3 and (day1["conversion_probability"] == 0.3).all()
    runs = read_scores(uri, "lead_score_runs")
    assert sorted(zip(runs["as_of_date"].dt.day, runs["leads"], strict=True)) == [(1, 3), (2, 2)]


def test_latest_table_holds_each_leads_newest_score(tmp_path) -> None:
    """Leads 1-2 were scored on the 2nd; lead 3 only on the 1st; a backfill changes neither."""
    uri = f"sqlite:///{tmp_path / 's.db'}"
    publish_scores(_scores("2026-03-01", n=3, p=0.1), uri)
    publish_scores(_scores("2026-03-02", n=2, p=0.2), uri)
    latest = read_scores(uri).set_index("lead_id").sort_index()
    assert latest["conversion_probability"].tolist() == [0.2, 0.2, 0.1]
    assert latest["as_of_date"].dt.day.tolist() == [2, 2, 1]
    publish_scores(_scores("2026-03-01", n=3, p=0.05), uri)  # a rerun of the older date
    latest = read_scores(uri).set_index("lead_id").sort_index()
    assert latest["conversion_probability"].tolist() == [0.2, 0.2, 0.05]
    assert len(read_scores(uri, "lead_score_history")) == 5
    assert read_scores(uri, latest=True)["lead_id"].tolist() == [1, 2]
    until = read_scores(uri, "lead_score_history", latest=True, until=pd.Timestamp("2026-03-01"))
    assert sorted(until["lead_id"]) == [1, 2, 3]


def test_bad_scores_never_replace_good_ones(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 's.db'}"
    publish_scores(_scores("2026-03-01"), uri)
    bad = _scores("2026-03-01", p=0.5)
    bad.loc[2, "conversion_probability"] = float("nan")
    with pytest.raises(DataError, match="outside"):
        publish_scores(bad, uri)
    dupes = pd.concat([_scores("2026-03-01"), _scores("2026-03-01")])
    with pytest.raises(DataError, match="duplicate"):
        publish_scores(dupes, uri)
    got = read_scores(uri)
    assert len(got) == 4 and (got["conversion_probability"] == 0.2).all()


def test_failure_mid_transaction_rolls_back(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 's.db'}"
    publish_scores(_scores("2026-03-01"), uri)
    engine = sa.create_engine(uri)
    with engine.begin() as conn:  # a trigger makes the 3rd insert fail after the delete ran
        conn.execute(
            sa.text(
                "CREATE TRIGGER boom BEFORE INSERT ON lead_scores WHEN NEW.lead_id = 3 "
                "BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        )
    engine.dispose()
    with pytest.raises(DataError, match="nothing was published"):
        publish_scores(_scores("2026-03-01", p=0.9), uri)
    got = read_scores(uri)
    assert len(got) == 4 and (got["conversion_probability"] == 0.2).all()


def test_publish_needs_a_database(tmp_path) -> None:
    with pytest.raises(DataError, match="not a database URL"):
        publish_scores(_scores("2026-03-01"), str(tmp_path))


def test_an_older_table_gets_the_new_columns(tmp_path) -> None:
    """A table published by a release without tiers and reasons is extended, not refused."""
    uri = f"sqlite:///{tmp_path / 's.db'}"
    old = _scores("2026-03-01").drop(columns=["tier", "reasons_up", "reasons_down"])
    old["as_of_date"] = old["as_of_date"].dt.date
    engine = sa.create_engine(uri)
    with engine.begin() as conn:
        old.to_sql("lead_scores", conn, index=False)
    engine.dispose()
    publish_scores(_scores("2026-03-02"), uri)
    history = read_scores(uri, "lead_score_history")
    assert len(history) == 8  # the old table's rows became history
    assert len(_day(history, "2026-03-01")) == 4
    got = read_scores(uri)
    assert len(got) == 4 and (got["as_of_date"] == pd.Timestamp("2026-03-02")).all()
    assert (got["tier"] == "B").all()
    assert (got["reasons_up"] == "4 pricing-page views in the last 30 days").all()


def test_tiers_outside_a_to_d_are_refused(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 's.db'}"
    bad = _scores("2026-03-01")
    bad.loc[1, "tier"] = "E"
    with pytest.raises(DataError, match="tiers"):
        publish_scores(bad, uri)
    assert read_scores(uri).empty


def test_a_foreign_table_is_refused_untouched(tmp_path) -> None:
    """The column check runs before any ALTER: SQLite commits DDL even on rollback."""
    uri = f"sqlite:///{tmp_path / 's.db'}"
    engine = sa.create_engine(uri)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE lead_scores (lead_id INTEGER, as_of_date DATE, x TEXT)"))
    with pytest.raises(DataError, match="exists without column"):
        publish_scores(_scores("2026-03-01"), uri)
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("lead_scores")}
    engine.dispose()
    assert columns == {"lead_id", "as_of_date", "x"}


def test_reading_before_anything_was_published(tmp_path) -> None:
    missing = tmp_path / "none.db"
    assert read_scores(f"sqlite:///{missing}", latest=True).empty
    assert not missing.exists()
    with pytest.raises(DataError, match="not a database URL"):
        read_scores(str(tmp_path))


def test_a_future_as_of_is_refused_and_a_stale_source_too() -> None:
    from leadscore.errors import ConfigError
    from leadscore.scoring.inputs import check_as_of, parse_as_of

    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    assert parse_as_of(None) == today
    assert parse_as_of(str(today.date())) == today
    with pytest.raises(ConfigError, match="lies in the future"):
        parse_as_of(str((today + pd.Timedelta(days=1)).date()))
    # Scoring the day after the newest data sees all of it; a week of quiet is allowed.
    newest = pd.Timestamp("2026-03-31 17:00")
    check_as_of(pd.Timestamp("2026-04-01"), newest, 7)
    check_as_of(pd.Timestamp("2026-04-08"), newest, 7)
    with pytest.raises(DataError, match=r"follows 8 days without any data .*2026-03-31") as raised:
        check_as_of(pd.Timestamp("2026-04-09"), newest, 7)
    assert "scoring.max_days_after_data" in raised.value.fix


def _future(days: int) -> str:
    return str((pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(days=days)).date())


def test_rows_dated_in_the_future_give_way_to_a_run_for_today(tmp_path) -> None:
    """Scores an unbounded --as-of once published stay no longer than the next run."""
    uri = f"sqlite:///{tmp_path / 's.db'}"
    yesterday, today = _future(-1), _future(0)
    publish_scores(_scores(yesterday, n=4, p=0.1), uri)
    publish_scores(_scores(_future(200), n=3, p=0.9), uri)  # as an older release allowed
    assert read_scores(uri)["conversion_probability"].max() == 0.9
    publish_scores(_scores(today, n=2, p=0.2), uri)
    latest = read_scores(uri).set_index("lead_id").sort_index()
    # Leads 1-2 scored today; 3 gets back its newest score that is not in the future; 4 kept.
    assert latest["conversion_probability"].tolist() == [0.2, 0.2, 0.1, 0.1]
    assert (latest["as_of_date"] <= pd.Timestamp(today)).all()
    assert read_scores(uri, latest=True)["lead_id"].tolist() == [1, 2]


def test_prune_removes_a_wrong_run_everywhere_in_one_go(tmp_path) -> None:
    from leadscore.io.publish import ScoreTables, prune_scores

    uri = f"sqlite:///{tmp_path / 's.db'}"
    publish_scores(_scores("2026-03-01", n=3, p=0.1), uri)
    publish_scores(_scores("2026-03-02", n=2, p=0.2), uri)
    publish_scores(_scores("2026-03-05", n=1, p=0.5), uri)
    tables = ScoreTables()
    dry = prune_scores(uri, tables, pd.Timestamp("2026-03-01"), dry_run=True)
    assert len(read_scores(uri, "lead_score_history")) == 6  # nothing changed
    counts = prune_scores(uri, tables, pd.Timestamp("2026-03-01"))
    assert counts == dry
    assert counts == {
        "lead_score_history": 3,
        "lead_score_runs": 2,
        "lead_scores": 2,
        "restored": 2,
    }
    latest = read_scores(uri).set_index("lead_id").sort_index()
    assert latest["conversion_probability"].tolist() == [0.1, 0.1, 0.1]
    assert read_scores(uri, "lead_score_runs")["as_of_date"].dt.day.tolist() == [1]
    assert len(read_scores(uri, "lead_score_history")) == 3


def test_scores_prune_command(tmp_path) -> None:
    import yaml
    from typer.testing import CliRunner

    from leadscore.apps.cli import app

    publish_scores(_scores("2026-03-01", n=3), f"sqlite:///{tmp_path / 'crm.db'}")
    publish_scores(_scores("2026-03-02", n=3), f"sqlite:///{tmp_path / 'crm.db'}")
    config = tmp_path / "leadscore.yaml"
    config.write_text(yaml.safe_dump({"publish": {"uri": "sqlite:///crm.db"}}))
    runner = CliRunner()
    shown = runner.invoke(app, ["scores", "prune", "-c", str(config), "--after", "2026-03-01",
                                "--dry-run"])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "would remove the runs dated after 2026-03-01: 3 from lead_score_history" in shown.output
    done = runner.invoke(app, ["scores", "prune", "-c", str(config), "--after", "2026-03-01"])
    assert done.exit_code == 0, done.output
    assert read_scores(f"sqlite:///{tmp_path / 'crm.db'}")["as_of_date"].dt.day.tolist() == [1] * 3
    bad = runner.invoke(app, ["scores", "prune", "-c", str(config), "--after", "soon"])
    assert bad.exit_code == 2 and "is not a date" in bad.output


def test_each_run_records_its_rule_file_version(tmp_path) -> None:
    """The runs table holds the SHA-256 of the rule file each run used; the rule files
    table its text, once per version; a runs table made before gains the column."""
    from leadscore.io.publish import RuleFile, publish_with_alerts, read_rule_versions

    uri = f"sqlite:///{tmp_path / 'scores.db'}"
    engine = sa.create_engine(uri)
    with engine.begin() as conn:  # a runs table as leadscore made it before versions
        conn.execute(sa.text(
            "CREATE TABLE lead_score_runs (as_of_date DATE PRIMARY KEY, model_name VARCHAR(255) "
            "NOT NULL, model_version VARCHAR(64), mlflow_run_id VARCHAR(64), leads INTEGER NOT "
            "NULL, scored_at DATETIME NOT NULL, published_at DATETIME NOT NULL)"
        ))  # fmt: skip
        conn.execute(sa.text(
            "INSERT INTO lead_score_runs VALUES ('2026-02-27', 'm', '1', 'r', 4, "
            "'2026-02-27 01:00:00', '2026-02-27 01:00:00')"
        ))  # fmt: skip
    engine.dispose()
    first = RuleFile("mql_rules.yaml", "a" * 64, "mql_threshold: 50\n")
    second = RuleFile("mql_rules.yaml", "b" * 64, "mql_threshold: 60\n")
    publish_with_alerts(_scores("2026-03-01"), uri, rule_file=first)
    publish_with_alerts(_scores("2026-03-02"), uri, rule_file=first)
    publish_with_alerts(_scores("2026-03-03"), uri, rule_file=second)
    publish_with_alerts(_scores("2026-03-03"), uri, rule_file=second)  # a rerun
    versions = read_rule_versions(uri)
    assert [str(d)[:10] for d in versions["as_of_date"]] == [
        "2026-02-27", "2026-03-01", "2026-03-02", "2026-03-03"
    ]  # fmt: skip
    assert versions["rules_sha256"].tolist()[1:] == ["a" * 64, "a" * 64, "b" * 64]
    assert pd.isna(versions["rules_sha256"].iloc[0])  # published before versions
    assert versions["rules_text"].tolist()[1:] == [first.text, first.text, second.text]
    engine = sa.create_engine(uri)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM lead_score_rule_files")).scalar()
    engine.dispose()
    assert count == 2
