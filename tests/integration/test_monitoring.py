"""What training leaves with the model for monitoring: the drift reference of its fitting
rows and the test cohort's probabilities."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from leadscore.config import config_from_dict
from leadscore.lifecycle.monitoring import run_checks
from leadscore.modeling.drift import psi
from leadscore.scoring import training


@pytest.fixture(scope="module")
def trained():
    from leadscore.data.rules import load_rules
    from leadscore.io.sources import CRMData
    from leadscore.synthetic import generate_crm

    crm = generate_crm(4_000, seed=3, end="2026-06-30")
    data = CRMData(crm.leads, crm.activities, crm.outcomes.dropna(), "generated")
    config = config_from_dict({"model": {"max_trees": 100}}, environ={})
    training_set = training.build_training_set(
        data, config, load_rules(REPO / "models/mql_rules.yaml")
    )
    return training.train(training_set, config), config


def test_training_attaches_the_references_the_scoring_run_is_checked_against(trained) -> None:
    result, config = trained
    model = result.model
    reference = model.drift_reference_
    features = model.features
    assert set(reference.categorical) == set(features.categorical)
    assert set(reference.numeric) == {*features.numeric, *features.behaviour.columns()}
    # The refit learned from every labelled example: its reference is all of them.
    fitting = result.data.examples.rows
    assert result.refit and reference.rows == len(fitting)
    assert psi(reference, fitting)["psi"].max() < 0.01
    assert psi(reference, result.data.rows["train"])["psi"].max() < config.monitoring.psi_fail
    probabilities = model.reference_probabilities_
    assert probabilities.dtype == np.float64
    assert len(probabilities) == len(result.data.rows["test"])
    assert np.all(np.diff(probabilities) >= 0)
    assert np.allclose(probabilities, np.sort(result.test_scores["conversion_probability"]))
    again = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(
        psi(again.drift_reference_, result.data.rows["test"]),
        psi(reference, result.data.rows["test"]),
    )
    checks = run_checks(
        model.predict_proba(result.data.rows["test"]),
        np.full(len(result.data.rows["test"]), "B"),
        config.monitoring,
        rows=result.data.rows["test"],
        reference=reference,
        reference_probabilities=probabilities,
    )
    # The reference is the newest fold's out-of-sample probabilities; the refit, scoring
    # the same leads (which it learned from), gives nearly the same distribution.
    assert checks_of(checks).loc[("score_psi", ""), "value"] < 0.05
    assert not checks.failed, checks.messages()


def checks_of(result) -> pd.DataFrame:
    return result.checks.set_index(["check", result.checks["feature"].fillna("")])
