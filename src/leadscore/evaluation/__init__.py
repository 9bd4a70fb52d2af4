"""Marketing's evidence: the model next to the rules on the same cohort (comparison, rule
diagnostics and suggested points), the plots, and the HTML report.

Layer 6: imports `scoring` and below; nothing of lifecycle or the apps.
"""
