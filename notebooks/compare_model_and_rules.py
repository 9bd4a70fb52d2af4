# %% [markdown]
# # The model next to the MQL rules
#
# Marketing's question, with the package's Python API: is the model better than the MQL
# rules, by how much, for which leads, and how should the rules change? Every number here
# comes from `leadscore` functions (the same ones behind `leadscore report`); nothing is
# re-implemented in the notebook. A jupytext percent script: open it in Jupyter with
# jupytext, or run it as plain Python. `LEADSCORE_NOTEBOOK_LEADS` sets the data size.

# %%
import os
import tempfile
from importlib.resources import files
from pathlib import Path

import pandas as pd

import leadscore as ls
from leadscore.io.sources import CRMData

n_leads = int(os.environ.get("LEADSCORE_NOTEBOOK_LEADS", "20000"))
crm = ls.generate_crm(n_leads, seed=7, end="2026-06-30")
data = CRMData(crm.leads, crm.activities, crm.outcomes.dropna(), "generated")
config = ls.config_from_dict(
    {"report": {"sales_capacity_per_week": max(10, n_leads // 200)}}, environ={}
)
rules = ls.load_rules(str(files("leadscore").joinpath("defaults/mql_rules.yaml")))
training = ls.build_training_set(data, config, rules)
result = ls.train(training, config)

# %% [markdown]
# ## Both scores on the newest labelled cohort, with bootstrap intervals
# Leads are resampled (not rows), and both scores on the same resample, so the interval of
# the difference is paired.

# %%
test, fit = ls.cohort_frames(result)
evidence = ls.build_evidence(test, fit, rules, config)
comparison = evidence.comparison
print(comparison.headline())
pd.DataFrame({k: v.as_dict() for k, v in comparison.intervals.items()}).T.round(4)

# %% [markdown]
# ## Gains and lift by decile, and conversions at sales capacity

# %%
gains = comparison.gains["model"].merge(
    comparison.gains["rules"], on="bin", suffixes=("_model", "_rules")
)
print("at capacity:", comparison.captured_at_capacity)
gains[
    [
        "bin",
        "lift_model",
        "lift_rules",
        "cumulative_capture_share_model",
        "cumulative_capture_share_rules",
    ]
].round(3)

# %% [markdown]
# ## Rule MQL x the model's hot list, and the tiers

# %%
comparison.quadrants

# %%
comparison.tiers.round(4)

# %% [markdown]
# ## What each rule is worth, and the suggested rule file

# %%
evidence.rules.round(3)

# %%
print(evidence.suggestion.effect.round(3).to_string())
print(evidence.suggested_rules_yaml)

# %% [markdown]
# ## Open leads today: probabilities, tiers and reasons

# %%
as_of = data.data_end.normalize()
model = result.model
open_leads = ls.Scorer.unregistered(model, rules, config).score(data, as_of)
missed = open_leads[~open_leads["is_mql"]].nlargest(5, "conversion_probability")
missed[["lead_id", "conversion_probability", "tier", "rule_score", "reasons_up", "reasons_down"]]

# %% [markdown]
# ## The same as a report for marketing

# %%
report = ls.render_report(
    ls.ReportInputs(
        evidence=evidence,
        open_leads=open_leads.rename(columns={"as_of": "as_of_date"}),
        model_name="notebook",
        model_version="-",
        run_id="-",
        source="generated",
        rules_file="mql_rules.yaml",
    ),
    config,
)
path = ls.write_report(report, Path(tempfile.mkdtemp()) / "report.html")
print(f"{path} ({len(report):,} characters)")
