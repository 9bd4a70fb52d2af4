"""A model's life: the MLflow registry and tracking (the only MLflow touchpoint), the
packaged pyfunc, what runs record, the promotion gate, monitoring of scoring runs, and the
JSON summaries.

Layer 7: imports every layer below; only the apps (and the Prefect flows) import it.
"""
