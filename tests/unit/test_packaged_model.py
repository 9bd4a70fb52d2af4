"""The packaged model: its input signature, the rows scoring passes it, and models
registered by earlier versions of leadscore."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.lifecycle.registry import conform_to_schema


def _schema(*specs: tuple[str, str, bool]):
    from mlflow.types import ColSpec, Schema

    return Schema([ColSpec(kind, name, required=required) for kind, name, required in specs])


def _enforce(rows: pd.DataFrame, schema) -> pd.DataFrame:
    from mlflow.models.utils import _enforce_schema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _enforce_schema(rows, schema)


def test_rows_are_passed_as_the_signature_asks() -> None:
    """What MLflow's own schema enforcement refuses, conformed rows pass."""
    schema = _schema(
        ("string", "industry", False),
        ("double", "employees", False),
        ("string", "campaign", False),
    )
    rows = pd.DataFrame(
        {
            "lead_id": ["a", "b"],
            "industry": pd.array(["software", None], dtype="str"),
            "employees": ["12", None],  # text from a reader that did not type the column
            "campaign": [np.nan, np.nan],  # empty for every open lead: floats
        }
    )
    with pytest.raises(Exception, match="employees"):
        _enforce(rows, schema)
    with pytest.raises(Exception, match="campaign"):
        _enforce(rows.assign(employees=[12.0, None]), schema)
    conformed = conform_to_schema(rows, schema)
    assert list(conformed.columns) == ["industry", "employees", "campaign"]
    assert conformed["employees"].tolist()[0] == 12.0 and np.isnan(conformed["employees"][1])
    assert conformed["campaign"].isna().all()
    enforced = _enforce(conformed, schema)
    assert enforced["industry"].tolist()[0] == "software"


def test_a_signature_that_names_left_out_columns_still_scores() -> None:
    """Models registered before signatures listed only what the model reads name the
    columns the leakage guard excluded, as required: scoring passes them empty."""
    schema = _schema(("string", "industry", True), ("string", "Tags", True), ("double", "x", True))
    rows = pd.DataFrame({"industry": pd.array(["retail"], dtype="str")})
    with pytest.raises(Exception, match="missing inputs"):
        _enforce(rows, schema)
    enforced = _enforce(conform_to_schema(rows, schema), schema)
    assert enforced["Tags"].isna().all() and enforced["x"].isna().all()


def test_the_signature_is_the_builders_inputs(fitted_builder) -> None:
    from leadscore.lifecycle.registry import model_signature

    class Packaged:
        features = fitted_builder

    signature = model_signature(Packaged())
    inputs = {spec.name: (str(spec.type), spec.required) for spec in signature.inputs.inputs}
    assert set(inputs) == set(fitted_builder.input_columns)
    assert all(not required for _, required in inputs.values())
    assert inputs["employees"][0].endswith("double") and inputs["industry"][0].endswith("string")
    # The title and the e-mail domain are read (to derive seniority and the domain kind).
    assert {"job_title", "email_domain", "n_all_7d"} <= set(inputs)


@pytest.fixture
def fitted_builder(tiny_leads, tiny_activities):
    from leadscore.config import FeatureConfig
    from leadscore.data.features import FeatureBuilder, behaviour_spec

    config = FeatureConfig()
    spec = behaviour_spec(tiny_activities, config)
    return FeatureBuilder(
        categorical=["industry", "country"],
        numeric=["employees"],
        title_column="job_title",
        feature_config=config,
        behaviour=spec,
    )


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_a_model_registered_before_the_package_had_layers_still_scores(tmp_path) -> None:
    """Its pickles name leadscore.model, leadscore.features, leadscore.pyfunc, ...: the
    nightly run of a user who upgrades keeps scoring, with the same numbers."""
    import mlflow
    import yaml
    from conftest import FLAT_CONFIG, FLAT_RULES, write_flat_export

    from leadscore.config import load_config
    from leadscore.data.rules import load_rules
    from leadscore.io.sources import load_crm
    from leadscore.lifecycle.registry import Champion, RegisteredModel, resolve_legacy_modules

    write_flat_export(tmp_path / "data", leads=1500)  # the rows the fixture was scored on
    (tmp_path / "rules.yaml").write_text(FLAT_RULES)
    (tmp_path / "leadscore.yaml").write_text(yaml.safe_dump(FLAT_CONFIG))
    config = load_config(tmp_path / "leadscore.yaml")
    resolve_legacy_modules()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = mlflow.pyfunc.load_model(str(FIXTURES / "model_0_1"))
    champion = Champion(
        RegisteredModel("m", "1", "r", ()), loaded, loaded.unwrap_python_model().model
    )
    scorer = champion.scorer(load_rules(config.rules_path), config)
    scores = scorer.score(load_crm(config), pd.Timestamp("2026-12-04"))
    expected = pd.read_csv(FIXTURES / "model_0_1_expected.csv").fillna("")
    got = scores.set_index("lead_id").loc[expected["lead_id"]]
    np.testing.assert_allclose(
        got["conversion_probability"], expected["conversion_probability"], rtol=0, atol=1e-12
    )
    assert got["reasons_up"].tolist() == expected["reasons_up"].tolist()
    assert got["reasons_down"].tolist() == expected["reasons_down"].tolist()
