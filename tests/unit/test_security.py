"""Secrets stay out of project files and messages; names from config cannot inject SQL."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from leadscore.config import config_from_dict, load_config
from leadscore.errors import ConfigError, DataError
from leadscore.io.sources import load_crm
from leadscore.io.tables import write_tables


def test_a_password_in_the_project_file_is_refused(tmp_path) -> None:
    path = tmp_path / "leadscore.yaml"
    path.write_text("source:\n  uri: postgresql://scorer:hunter2@db.internal/crm\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "contains a password" in caught.value.problem
    assert "hunter2" not in str(caught.value)
    assert "LEADSCORE_SOURCE_URI" in caught.value.fix


def test_placeholders_come_from_the_environment_or_the_secrets_file(tmp_path) -> None:
    data = {"publish": {"uri": "postgresql://scorer:${DB_PASSWORD}@db.internal/crm"}}
    config = config_from_dict(data, tmp_path, environ={"DB_PASSWORD": "from-env"})
    assert config.publish_uri == "postgresql://scorer:from-env@db.internal/crm"

    secrets = tmp_path / "secrets.env"
    secrets.write_text("# leadscore\nexport DB_PASSWORD='from-file'\n")
    secrets.chmod(0o600)
    env = {"LEADSCORE_SECRETS_FILE": str(secrets)}
    assert "from-file" in config_from_dict(data, tmp_path, environ=env).publish_uri
    # The environment wins over the file.
    both = config_from_dict(data, tmp_path, environ={**env, "DB_PASSWORD": "env-wins"})
    assert "env-wins" in both.publish_uri


def test_a_secrets_file_others_can_read_is_refused(tmp_path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("DB_PASSWORD=x\n")
    secrets.chmod(0o644)
    data = {"source": {"uri": "postgresql://u:${DB_PASSWORD}@h/db"}}
    with pytest.raises(ConfigError, match="readable by other users"):
        config_from_dict(data, tmp_path, environ={"LEADSCORE_SECRETS_FILE": str(secrets)})


def test_an_unset_placeholder_names_the_variable(tmp_path) -> None:
    data = {"source": {"uri": "postgresql://u:${NOPE_PASSWORD}@h/db"}}
    with pytest.raises(ConfigError, match=r"\$\{NOPE_PASSWORD\} is used but not set"):
        config_from_dict(data, tmp_path, environ={})


def test_passwords_never_appear_in_connection_errors(tmp_path) -> None:
    uri = "postgresql://scorer:s3cret-pw@127.0.0.1:9/crm"  # nothing listens on port 9
    config = config_from_dict({}, tmp_path, environ={"LEADSCORE_SOURCE_URI": uri})
    with pytest.raises(DataError) as caught:
        load_crm(config)
    assert "s3cret-pw" not in str(caught.value) and "***" in str(caught.value)


def test_column_names_from_config_cannot_inject_sql(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'crm.db'}"
    leads = pd.DataFrame(
        {"lead_id": [1, 2], "created_at": pd.to_datetime(["2026-01-01", "2026-01-02"])}
    )
    outcomes = pd.DataFrame({"lead_id": [1], "converted_at": pd.to_datetime(["2026-01-05"])})
    write_tables({"leads": leads, "outcomes": outcomes}, uri)
    evil = 'lead_id" FROM leads; DROP TABLE leads; --'
    config = config_from_dict(
        {
            "source": {
                "uri": uri,
                "tables": {"activities": None},
                "columns": {"lead_id": evil},
                "attributes": {"categorical": [], "numeric": [], "job_title": None, "email": None},
            }
        },
        tmp_path,
        environ={},
    )
    with pytest.raises(DataError):
        load_crm(config)
    engine = sa.create_engine(uri)
    with engine.connect() as conn:
        assert "leads" in sa.inspect(conn).get_table_names()
        assert conn.execute(sa.text("SELECT count(*) FROM leads")).scalar() == 2
    engine.dispose()
