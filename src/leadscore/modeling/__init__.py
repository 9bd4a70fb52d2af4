"""The model: the calibrated LightGBM estimator, its metrics, its drift reference, the
per-lead reasons (path attributions), and the diagnostics fitted beside it (logistic
baseline, cohort shift).

Layer 4: imports `config`, `errors`, `progress` and `data`; nothing of scoring or above.
"""
