from pathlib import Path

import pytest

from leadscore.config import config_from_dict, dump_config, load_config
from leadscore.errors import ConfigError


def test_defaults_are_valid_and_resolve_relative_to_the_project(tmp_path: Path) -> None:
    cfg = config_from_dict({}, base_dir=tmp_path, environ={})
    assert cfg.source_uri == f"sqlite:///{tmp_path.resolve()}/crm.db"
    assert cfg.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert cfg.artifact_location == (tmp_path / "mlartifacts").resolve().as_uri()
    assert cfg.gap_days == cfg.horizon_days


def test_unknown_key_names_the_key_and_suggests_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"snapshots": {"every_day": 7}}, environ={})
    message = str(info.value)
    assert "snapshots.every_day" in message
    assert "did you mean 'every_days'" in message


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'horizon'.*horizon_days"):
        config_from_dict({"horizon": 30}, environ={})


def test_invalid_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match="'horizon_days' is invalid"):
        config_from_dict({"horizon_days": 0}, environ={})


def test_environment_overrides_uris(tmp_path: Path) -> None:
    env = {
        "LEADSCORE_SOURCE_URI": "postgresql://db/crm",
        "LEADSCORE_MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "LEADSCORE_PUBLISH_URI": "sqlite:////abs/scores.db",
    }
    cfg = config_from_dict({"source": {"uri": "sqlite:///x.db"}}, base_dir=tmp_path, environ=env)
    assert cfg.source_uri == "postgresql://db/crm"
    assert cfg.tracking_uri == "http://mlflow:5000"
    assert cfg.publish_uri == "sqlite:////abs/scores.db"


def test_load_config_round_trip(tmp_path: Path) -> None:
    cfg = config_from_dict({"horizon_days": 60}, base_dir=tmp_path, environ={})
    path = tmp_path / "leadscore.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path, environ={})
    assert again.horizon_days == 60
    assert again.base_dir == tmp_path.resolve()


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_publish_table_must_be_an_identifier() -> None:
    with pytest.raises(ConfigError, match=r"publish\.table"):
        config_from_dict({"publish": {"table": "scores; drop table leads"}}, environ={})


def test_gap_shorter_than_the_horizon_is_refused() -> None:
    with pytest.raises(ConfigError, match="gap_days"):
        config_from_dict({"horizon_days": 90, "split": {"gap_days": 30}}, environ={})


def test_a_block_the_user_writes_replaces_the_default_one() -> None:
    """`attributes:` with only `categorical` maps only those columns: nothing of the demo's
    schema (employees, job_title, email) is merged in; `tables:` with only `leads` has no
    activities or outcomes. Blocks not written keep their defaults."""
    from leadscore.config import config_from_dict

    written = config_from_dict(
        {"source": {"attributes": {"categorical": ["Industry"]}, "tables": {"leads": "export"}}},
        environ={},
    ).source
    assert written.attributes.categorical == ["Industry"]
    assert written.attributes.numeric == [] and written.attributes.signed == []
    assert written.attributes.job_title is None and written.attributes.email is None
    assert (written.tables.leads, written.tables.activities, written.tables.outcomes) == (
        "export",
        None,
        None,
    )
    default = config_from_dict({}, environ={}).source
    assert default.attributes.numeric == ["employees"] and default.attributes.email == "email"
    assert default.tables.outcomes == "outcomes"


def test_leads_named_by_row_only_in_a_flat_export() -> None:
    from leadscore.config import config_from_dict
    from leadscore.errors import ConfigError

    flat = {
        "columns": {"lead_id": None},
        "label": {"column": "Converted"},
        "tables": {"leads": "export"},
    }
    assert config_from_dict({"source": flat}, environ={}).source.columns.lead_id is None
    with pytest.raises(ConfigError, match="only a flat export"):
        config_from_dict({"source": {"columns": {"lead_id": None}}}, environ={})
