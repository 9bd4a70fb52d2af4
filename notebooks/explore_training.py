# %% [markdown]
# # Explore a training run
#
# A jupytext percent script (open it in Jupyter with jupytext, or run it as plain Python).
# Everything here is the package's public API: no logic is copied into the notebook.
# Set `LEADSCORE_NOTEBOOK_LEADS` to change the size of the generated CRM.

# %%
import os
from importlib.resources import files

import leadscore as ls
from leadscore.evaluation import plots
from leadscore.io.sources import CRMData

n_leads = int(os.environ.get("LEADSCORE_NOTEBOOK_LEADS", "20000"))
crm = ls.generate_crm(n_leads, seed=7, end="2026-06-30")
data = CRMData(crm.leads, crm.activities, crm.outcomes.dropna(), "generated")
config = ls.config_from_dict({}, environ={})
rules = ls.load_rules(str(files("leadscore").joinpath("defaults/mql_rules.yaml")))
print(f"{len(crm.leads):,} leads, {len(crm.activities):,} activities")

# %% [markdown]
# ## Point-in-time examples and the time split

# %%
training = ls.build_training_set(data, config, rules)
for split, text in training.plan.describe().items():
    print(f"{split:<12} {text}")
training.counts()

# %% [markdown]
# ## Train, calibrate, and compare with the rules on the newest cohort

# %%
result = ls.train(training, config)
oracle = ls.true_conversion_probability(
    crm.truth_leads, crm.truth_shocks, training.snapshots["test"], config.horizon_days
)
from sklearn.metrics import roc_auc_score

print("oracle AUC", round(roc_auc_score(training.labels("test"), oracle), 4))
{who: {k: round(v, 4) for k, v in m.items()} for who, m in result.metrics.items()}

# %% [markdown]
# ## Calibration and what the model uses

# %%
test = result.test_scores
fig = plots.calibration_figure(
    test["converted"].to_numpy(),
    {
        "model": test["conversion_probability"].to_numpy(),
        "rules (mapped)": test["rule_probability"].to_numpy(),
    },
    "Calibration on the newest labelled cohort",
)
fig2 = plots.importance_figure(result.model.feature_importance())
result.model.feature_importance().head(15)
