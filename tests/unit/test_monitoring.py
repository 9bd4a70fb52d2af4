"""Monitoring of scoring runs: drift (PSI), score distribution, realised quality, checks."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.config import MonitoringConfig, config_from_dict
from leadscore.errors import ConfigError
from leadscore.lifecycle.monitoring import judge_realised, run_checks, score_distribution
from leadscore.modeling.drift import DriftReference, categorical_reference, numeric_reference, psi
from leadscore.modeling.metrics import expected_calibration_error


def reference_of(rows: pd.DataFrame, bins: int = 10) -> DriftReference:
    """A reference over every column of `rows`: text columns categorical, others numeric."""
    text = [c for c in rows if not pd.api.types.is_numeric_dtype(rows[c])]
    return DriftReference(
        bins=bins,
        rows=len(rows),
        numeric={
            c: numeric_reference(rows[c].to_numpy(float), bins) for c in rows if c not in text
        },
        categorical={c: categorical_reference(rows[c].astype("str"), bins) for c in text},
    )


def sample(n: int, seed: int, employees_scale: float = 1.0, pricing_rate: float = 0.3):
    """Leads like the model's rows: a skewed number, a count with many zeros, a category."""
    rng = np.random.default_rng(seed)
    employees = rng.lognormal(5, 1.5, n) * employees_scale
    employees[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "employees": employees,
            "n_page_pricing_30d": rng.poisson(pricing_rate, n).astype(float),
            "industry": pd.array(
                rng.choice(["software", "retail", "finance", None], n, p=[0.4, 0.3, 0.2, 0.1]),
                dtype="str",
            ),
        }
    )


def test_psi_is_zero_on_its_own_rows_and_small_on_a_fresh_sample() -> None:
    train = sample(20_000, seed=1)
    reference = reference_of(train)
    assert psi(reference, train)["psi"].max() == pytest.approx(0, abs=1e-12)
    assert psi(reference, sample(20_000, seed=2))["psi"].max() < 0.01


def test_psi_names_the_shifted_input_and_its_bin() -> None:
    reference = reference_of(sample(20_000, seed=1))
    drift = psi(reference, sample(5_000, seed=2, employees_scale=20.0)).set_index("feature")
    assert drift["psi"].idxmax() == "employees"
    assert drift.loc["employees", "psi"] > 1.0
    assert drift.drop(index="employees")["psi"].max() < 0.02
    top = drift.loc["employees"]
    assert top["top_bin"].startswith(">")  # the big companies' bin grew
    assert top["reference_share"] == pytest.approx(0.09, abs=0.01)  # 10 % of the 90 % present
    assert top["current_share"] > 0.5


def test_psi_matches_the_formula_on_hand_made_shares() -> None:
    reference = reference_of(pd.DataFrame({"industry": pd.array(["a", "b"] * 50, dtype="str")}))
    rows = pd.DataFrame({"industry": pd.array(["a"] * 80 + ["b"] * 20, dtype="str")})
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert psi(reference, rows)["psi"].iloc[0] == pytest.approx(expected)


def test_a_count_that_is_mostly_zero_keeps_zero_in_a_bin_of_its_own() -> None:
    reference = reference_of(sample(20_000, seed=1, pricing_rate=0.1))  # ~90 % zeros
    assert reference.numeric["n_page_pricing_30d"].labels()[0] == "<= 0"
    drift = psi(reference, sample(5_000, seed=2, pricing_rate=0.7)).set_index("feature")
    assert drift["psi"].idxmax() == "n_page_pricing_30d"
    assert drift.loc["n_page_pricing_30d", "psi"] > 0.25


def test_a_new_category_counts_as_other() -> None:
    train = pd.DataFrame({"industry": pd.array(["software", "retail"] * 500, dtype="str")})
    rows = pd.DataFrame(
        {
            "industry": pd.array(
                ["software"] * 350 + ["retail"] * 350 + ["mining"] * 300, dtype="str"
            )
        }
    )
    drift = psi(reference_of(train), rows).iloc[0]
    assert drift["top_bin"] == "other"
    assert drift["reference_share"] == 0
    assert drift["current_share"] == pytest.approx(0.3)
    assert drift["psi"] > 1.0


def test_rare_categories_beyond_the_top_bins_share_the_other_bin() -> None:
    values = [f"c{i}" for i in range(6) for _ in range(10 - i)]  # c0 most frequent
    ref = categorical_reference(pd.Series(values, dtype="str"), bins=3)
    assert ref.categories == ("c0", "c1", "c2")
    assert ref.shares[3] == pytest.approx((7 + 6 + 5) / len(values))  # other
    assert ref.shares[4] == 0  # missing


def test_missing_values_are_a_bin_and_an_absent_column_is_all_missing() -> None:
    reference = reference_of(sample(20_000, seed=1))
    rows = sample(5_000, seed=2)
    rows.loc[rows.index[:2_500], "employees"] = np.nan  # ~55 % missing instead of 10 %
    drift = psi(reference, rows.drop(columns=["industry"])).set_index("feature")
    assert drift.loc["employees", "top_bin"] == "missing"
    assert drift.loc["employees", "current_share"] == pytest.approx(0.55, abs=0.02)
    assert drift.loc["industry", "top_bin"] == "missing"  # the model would see no industry
    assert drift.loc["industry", "current_share"] == 1.0
    assert drift.loc["n_page_pricing_30d", "psi"] < 0.01


def test_psi_of_no_rows_is_missing_not_an_error() -> None:
    drift = psi(reference_of(sample(1_000, seed=1)), sample(1_000, seed=1).iloc[:0])
    assert len(drift) == 3
    assert drift["psi"].isna().all()


def test_reference_survives_pickling() -> None:
    reference = reference_of(sample(2_000, seed=1))
    again = pickle.loads(pickle.dumps(reference))
    rows = sample(2_000, seed=4, employees_scale=3.0)
    pd.testing.assert_frame_equal(psi(again, rows), psi(reference, rows))


def test_psi_of_a_wide_frame_is_near_zero_against_itself() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    columns: dict[str, object] = {}
    for i in range(50):
        x = rng.poisson(0.3, n).astype(float) if i % 2 else rng.lognormal(3, 1, n)
        x[rng.random(n) < 0.1] = np.nan
        columns[f"x{i}"] = x
    for i in range(10):
        columns[f"c{i}"] = pd.array(
            rng.choice([f"v{j}" for j in range(30)] + [None], n), dtype="str"
        )
    rows = pd.DataFrame(columns)
    reference = reference_of(rows)
    drift = psi(reference, rows)
    # Timing lives in benchmarks/, not here: this checks the wide frame is handled whole.
    assert len(drift) == 60
    assert (drift["psi"] < 0.01).all()


def test_score_distribution_counts_quantiles_and_tier_shares() -> None:
    p = np.linspace(0, 1, 101)
    tiers = np.array(["A"] * 10 + ["B"] * 20 + ["C"] * 30 + ["D"] * 41)
    out = score_distribution(p, tiers)
    assert out["count"] == 101
    assert out["invalid"] == 0
    assert out["mean"] == pytest.approx(0.5)
    assert (out["p10"], out["p50"], out["p90"], out["p99"]) == pytest.approx((0.1, 0.5, 0.9, 0.99))
    assert out["share_A"] == pytest.approx(10 / 101)
    assert out["share_D"] == pytest.approx(41 / 101)
    bad = score_distribution(np.array([0.2, np.nan, 1.5]), np.array(["A", "B", "C"]))
    assert bad["invalid"] == 2
    assert bad["mean"] == pytest.approx(0.2)


AS_OF = pd.Timestamp("2026-06-30")


HORIZON = 90


def history_run(as_of_date: pd.Timestamp, n: int, seed: int, first_id: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 9, n)
    return pd.DataFrame(
        {
            "lead_id": np.arange(first_id, first_id + n),
            "as_of_date": as_of_date.date(),  # as read back from a DATE column
            "conversion_probability": p,
            "rule_score": rng.integers(0, 100, n).astype(float),
            "is_mql": rng.random(n) < 0.2,
            "model_version": "3",
        }
    )


def outcomes_for(
    run: pd.DataFrame, day: pd.Timestamp, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Conversions drawn from the run's probabilities inside the window, plus edge cases."""
    rng = np.random.default_rng(seed)
    converts = rng.random(len(run)) < run["conversion_probability"].to_numpy()
    offset = pd.to_timedelta(rng.integers(0, HORIZON * 24 * 3600, len(run)), unit="s")
    converted_at = pd.Series(pd.NaT, index=run.index, dtype="datetime64[us]")
    converted_at[converts] = (day + offset)[converts]
    ids = run["lead_id"].to_numpy()
    # Edge cases on the first leads: exactly at the window's start is in; exactly at its end,
    # or later, is out.
    converted_at.iloc[0] = day
    converted_at.iloc[1] = day + pd.Timedelta(days=HORIZON)
    converted_at.iloc[2] = day + pd.Timedelta(days=HORIZON) - pd.Timedelta(seconds=1)
    converted_at.iloc[3] = day + pd.Timedelta(days=HORIZON + 30)
    labels = converted_at.notna().to_numpy() & (converted_at < day + pd.Timedelta(days=HORIZON))
    return pd.DataFrame({"lead_id": ids, "converted_at": converted_at}), labels.astype(float)


def test_realised_performance_judges_the_newest_closed_run_by_the_horizon_window() -> None:
    closed = AS_OF - pd.Timedelta(days=HORIZON)  # exactly one horizon ago: closed
    older = AS_OF - pd.Timedelta(days=HORIZON + 30)
    recent = AS_OF - pd.Timedelta(days=HORIZON - 1)  # window still open: never judged
    run = history_run(closed, 3_000, seed=1)
    history = pd.concat(
        [history_run(older, 3_000, seed=2), run, history_run(recent, 3_000, seed=3)]
    )
    outcomes, labels = outcomes_for(run, closed, seed=4)
    out = judge_realised(history, outcomes, AS_OF, HORIZON, min_leads=100)[0]
    assert out is not None
    assert out["as_of_date"] == closed.date().isoformat()
    assert labels[:4].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert out["leads"] == 3_000
    assert out["conversions"] == int(labels.sum())
    p = run["conversion_probability"].to_numpy()
    assert out["roc_auc"] == pytest.approx(roc_auc_score(labels, p))
    assert out["rule_roc_auc"] == pytest.approx(roc_auc_score(labels, run["rule_score"]))
    assert out["ece"] == pytest.approx(expected_calibration_error(labels, p))
    assert out["brier"] == pytest.approx(np.mean((p - labels) ** 2), rel=1e-6)
    assert out["mean_probability"] == pytest.approx(p.mean())
    assert out["model_version"] == "3"


def test_a_run_less_than_a_horizon_ago_is_not_judged() -> None:
    recent = AS_OF - pd.Timedelta(days=HORIZON - 1)
    run = history_run(recent, 3_000, seed=1)
    outcomes, _ = outcomes_for(run, recent, seed=2)
    assert judge_realised(run, outcomes, AS_OF, HORIZON, min_leads=100)[0] is None
    _, reason = judge_realised(run, outcomes, AS_OF, HORIZON, min_leads=100)
    assert "no outcome window has closed" in reason


def test_too_few_leads_or_conversions_are_not_judged() -> None:
    day = AS_OF - pd.Timedelta(days=HORIZON)
    run = history_run(day, 300, seed=1)
    outcomes, labels = outcomes_for(run, day, seed=2)
    assert judge_realised(run, outcomes, AS_OF, HORIZON, min_leads=301)[0] is None
    result, reason = judge_realised(run, outcomes, AS_OF, HORIZON, min_leads=301)
    assert result is None and "300 leads" in reason and "301" in reason
    need = int(labels.sum()) + 1
    result, reason = judge_realised(run, outcomes, AS_OF, HORIZON, 100, need)
    assert result is None and "conversions" in reason
    assert judge_realised(run, outcomes, AS_OF, HORIZON, 100, need - 1)[0] is not None


def test_realised_performance_matches_ids_and_time_zones_across_sources() -> None:
    day = AS_OF - pd.Timedelta(days=HORIZON)
    run = history_run(day, 2_000, seed=1)
    outcomes, labels = outcomes_for(run, day, seed=2)
    # The database gives text ids and dates as text; the source gives aware timestamps.
    run = run.assign(lead_id=run["lead_id"].astype(str), as_of_date=str(day.date()))
    outcomes = outcomes.assign(converted_at=outcomes["converted_at"].dt.tz_localize("UTC"))
    out = judge_realised(run, outcomes, AS_OF, HORIZON, min_leads=100)[0]
    assert out is not None and out["conversions"] == int(labels.sum())


def checks_of(result) -> pd.DataFrame:
    return result.checks.set_index(["check", result.checks["feature"].fillna("")])


def test_psi_thresholds_give_ok_warn_and_fail() -> None:
    reference = reference_of(sample(20_000, seed=1))
    probabilities = np.random.default_rng(0).beta(1, 9, 5_000)
    tiers = np.full(5_000, "D")
    config = MonitoringConfig()
    same = run_checks(probabilities, tiers, config, rows=sample(5_000, 2), reference=reference)
    assert not same.failed
    assert set(same.checks.loc[same.checks["check"] == "input_psi", "status"]) == {"ok"}

    moved = sample(5_000, seed=2, employees_scale=1.8)  # a moderate shift: PSI 0.1-0.25
    value = psi(reference, moved).set_index("feature").loc["employees", "psi"]
    assert 0.1 <= value < 0.25
    warned = checks_of(run_checks(probabilities, tiers, config, rows=moved, reference=reference))
    assert warned.loc[("input_psi", "employees"), "status"] == "warn"
    assert warned.loc[("input_psi", "employees"), "threshold"] == 0.1
    assert warned.loc[("drifted_inputs", ""), "status"] == "ok"

    shifted = sample(5_000, seed=2, employees_scale=20.0)
    failed = run_checks(probabilities, tiers, config, rows=shifted, reference=reference)
    table = checks_of(failed)
    assert failed.failed and failed.status == "fail"
    assert table.loc[("input_psi", "employees"), "status"] == "fail"
    assert table.loc[("input_psi", "employees"), "threshold"] == 0.25
    assert table.loc[("drifted_inputs", ""), ["value", "status"]].tolist() == [1.0, "fail"]
    message = next(m for m in failed.messages() if "input employees" in m)
    assert message.startswith("FAIL: ") and "fail at 0.25" in message
    assert f"{table.loc[('input_psi', 'employees'), 'value']:.3f}" in message

    tolerant = MonitoringConfig(max_drifted_features=1)
    tolerated = run_checks(probabilities, tiers, tolerant, rows=shifted, reference=reference)
    assert not tolerated.failed
    assert checks_of(tolerated).loc[("input_psi", "employees"), "status"] == "warn"
    assert checks_of(tolerated).loc[("drifted_inputs", ""), "status"] == "warn"


def test_row_count_against_the_previous_run() -> None:
    config = MonitoringConfig(min_row_ratio=0.5)
    p = np.linspace(0.01, 0.5, 100)
    tiers = np.full(100, "C")

    def status(previous: int | None, n: int = 100) -> str:
        result = run_checks(p[:n], tiers[:n], config, previous_count=previous)
        return checks_of(result).loc[("row_count", ""), "status"]

    assert status(150) == "ok"
    assert status(200) == "ok"  # exactly half is still enough
    assert status(201) == "fail"
    assert status(50) == "ok"
    assert status(49) == "warn"  # more than twice the previous run
    assert status(None) == "ok"
    assert status(None, n=0) == "fail"


def test_broken_scores_fail_and_a_model_without_references_is_skipped() -> None:
    config = MonitoringConfig()
    tiers = np.full(4, "A")
    constant = checks_of(run_checks(np.full(4, 0.1), tiers, config))
    assert constant.loc[("score_spread", ""), "status"] == "fail"
    assert constant.loc[("score_range", ""), "status"] == "ok"
    assert constant.loc[("score_psi", ""), "status"] == "skip"
    assert constant.loc[("drifted_inputs", ""), "status"] == "skip"
    assert constant.loc[("realised_auc", ""), "status"] == "skip"
    outside = checks_of(run_checks(np.array([0.1, 0.2, 1.2, np.nan]), tiers, config))
    assert outside.loc[("score_range", ""), ["value", "status"]].tolist() == [2.0, "fail"]


def test_score_psi_compares_with_the_test_cohort() -> None:
    rng = np.random.default_rng(0)
    reference_probabilities = np.sort(rng.beta(1, 9, 10_000))
    config = MonitoringConfig()
    tiers = np.full(5_000, "B")
    alike = run_checks(
        rng.beta(1, 9, 5_000), tiers, config, reference_probabilities=reference_probabilities
    )
    assert checks_of(alike).loc[("score_psi", ""), "status"] == "ok"
    hotter = run_checks(
        rng.beta(3, 7, 5_000), tiers, config, reference_probabilities=reference_probabilities
    )
    # A shifted score distribution warns but never fails the run on its own.
    assert checks_of(hotter).loc[("score_psi", ""), "status"] == "warn"
    assert not hotter.failed
    assert any("score distribution PSI" in m for m in hotter.messages())


def realised_inputs(seed: int, scramble: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A closed run whose probabilities are mixed with noise by `scramble` (1 = pure noise)."""
    day = AS_OF - pd.Timedelta(days=HORIZON)
    run = history_run(day, 4_000, seed=seed)
    outcomes, _ = outcomes_for(run, day, seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    p = run["conversion_probability"].to_numpy()
    shuffled = np.where(rng.random(len(p)) < scramble, rng.permutation(p), p)
    return run.assign(conversion_probability=shuffled), outcomes


def test_realised_auc_and_ece_thresholds() -> None:
    config = MonitoringConfig(min_realised_leads=1_000, min_realised_conversions=30)
    tiers = np.full(10, "A")
    p = np.linspace(0.01, 0.5, 10)

    def judged(history: pd.DataFrame, outcomes: pd.DataFrame, **overrides) -> pd.DataFrame:
        cfg = config.model_copy(update=overrides)
        result = run_checks(
            p, tiers, cfg, history=history, outcomes=outcomes, as_of=AS_OF, horizon_days=HORIZON
        )
        return checks_of(result)

    good = judged(*realised_inputs(1, scramble=0.0))
    assert good.loc[("realised_auc", ""), "status"] == "ok"
    assert good.loc[("realised_ece", ""), "status"] == "ok"
    auc = good.loc[("realised_auc", ""), "value"]
    assert (
        judged(*realised_inputs(1, 0.0), min_realised_auc=auc + 0.01).loc[
            ("realised_auc", ""), "status"
        ]
        == "fail"
    )
    ece = good.loc[("realised_ece", ""), "value"]
    assert (
        judged(*realised_inputs(1, 0.0), max_realised_ece=ece - 0.001).loc[
            ("realised_ece", ""), "status"
        ]
        == "fail"
    )
    # A model no better than noise: below the floor, and below the rule score is only a warn.
    noise = judged(*realised_inputs(1, scramble=1.0))
    assert noise.loc[("realised_auc", ""), "status"] == "fail"
    history, outcomes = realised_inputs(1, scramble=0.0)
    day = history["as_of_date"].iloc[0]
    converted = outcomes.dropna()["lead_id"]
    history = history.assign(rule_score=history["lead_id"].isin(converted).astype(float))
    beaten = judged(history, outcomes)
    assert beaten.loc[("realised_auc", ""), "status"] == "warn"  # the rules were perfect
    assert beaten.loc[("realised_auc", ""), "threshold"] > 0.99  # the rules' AUC
    assert str(day) in beaten.loc[("realised_auc", ""), "detail"]


def test_too_few_realised_leads_are_skipped_with_the_reason() -> None:
    history, outcomes = realised_inputs(1, scramble=0.0)  # 4,000 leads
    config = MonitoringConfig(min_realised_leads=5_000)
    result = run_checks(
        np.linspace(0.01, 0.5, 10),
        np.full(10, "A"),
        config,
        history=history,
        outcomes=outcomes,
        as_of=AS_OF,
        horizon_days=HORIZON,
    )
    row = checks_of(result).loc[("realised_auc", "")]
    assert row["status"] == "skip"
    assert "4,000 leads" in row["detail"] and "5,000" in row["detail"]
    assert result.realised is None
    assert not result.failed


def test_messages_name_inputs_and_never_leads() -> None:
    reference = reference_of(sample(20_000, seed=1))
    rows = sample(5_000, seed=2, employees_scale=20.0)
    rows["lead_id"] = np.arange(7_777_000, 7_782_000)
    rows["email"] = "jane.doe@acme.example"
    history, outcomes = realised_inputs(1, scramble=1.0)
    history = history.assign(lead_id=history["lead_id"] + 8_888_000)
    outcomes = outcomes.assign(lead_id=outcomes["lead_id"] + 8_888_000)
    result = run_checks(
        np.random.default_rng(0).beta(1, 9, 5_000),
        np.full(5_000, "D"),
        MonitoringConfig(),
        rows=rows,
        reference=reference,
        previous_count=20_000,
        history=history,
        outcomes=outcomes,
        as_of=AS_OF,
        horizon_days=HORIZON,
    )
    failed = result.messages(("fail",))
    assert len(failed) == 5  # row count, employees, drifted inputs, realised AUC and ECE
    assert any("5,000 open leads" in m and "20,000" in m for m in failed)
    assert any("input employees" in m for m in failed)
    assert any("realised ROC-AUC" in m and "below 0.6" in m for m in failed)
    assert any("realised calibration error" in m and "above 0.05" in m for m in failed)
    text = " ".join(result.messages(("ok", "warn", "fail", "skip")))
    for leaked in ("7777", "7,777", "8888", "8,888", "jane", "acme"):
        assert leaked not in text
    assert result.messages()[: len(failed)] == failed  # failures come first
    assert result.metrics()["drifted_inputs"] == 1.0
    assert result.metrics()["failed_checks"] == 5.0


def test_disabled_monitoring_checks_nothing() -> None:
    result = run_checks(np.full(3, 0.1), np.full(3, "A"), MonitoringConfig(enabled=False))
    assert result.checks.empty and not result.failed and result.messages() == []


def test_monitoring_config_defaults_and_validation() -> None:
    config = config_from_dict({}, environ={})
    assert config.monitoring.psi_warn < config.monitoring.psi_fail
    assert config.monitoring.table == "score_monitoring"
    custom = config_from_dict({"monitoring": {"psi_bins": 5, "table": "drift"}}, environ={})
    assert custom.monitoring.psi_bins == 5
    for bad in ({"psi_warn": 0.3}, {"table": "drop table;"}, {"psi_bin": 5}):
        with pytest.raises(ConfigError, match="monitoring"):
            config_from_dict({"monitoring": bad}, environ={})


def test_a_run_with_many_failed_checks_says_so_in_a_few_lines() -> None:
    """Eighty drifted inputs: the message lists a few, counts the rest, one line each."""
    from leadscore.errors import LeadscoreError
    from leadscore.lifecycle.monitoring import MAX_FAILURES_SHOWN, raise_if_monitoring_failed

    columns = {f"input_{i:02d}": np.random.default_rng(i).normal(0, 1, 4_000) for i in range(80)}
    reference = reference_of(pd.DataFrame(columns))
    moved = pd.DataFrame({name: values + 3 for name, values in columns.items()})
    result = run_checks(
        np.random.default_rng(0).beta(1, 9, 4_000), np.full(4_000, "D"), MonitoringConfig(),
        rows=moved, reference=reference,
    )  # fmt: skip
    assert len(result.messages(("fail",))) == 81  # 80 inputs and the drifted-inputs count
    summary = {"as_of": "2026-03-01", "rows": {"published": 4_000},
               "monitoring_table": "score_monitoring", "monitoring": {"run_id": "r1"}}  # fmt: skip
    with pytest.raises(LeadscoreError) as raised:
        raise_if_monitoring_failed(result, summary)
    lines = raised.value.problem.splitlines()
    assert lines[0].startswith("monitoring failed for the run as of 2026-03-01")
    assert "4,000 scores were published" in lines[0]
    assert len(lines) == 1 + MAX_FAILURES_SHOWN + 1
    assert lines[-1] == f"  - and {81 - MAX_FAILURES_SHOWN} more failed check(s)"
    assert max(len(line) for line in lines) < 400
