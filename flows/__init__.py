"""Prefect flows: thin orchestration over the `leadscore` package.

Importable as `leadscore_flows` (the CLI runs these very flows) and runnable by path as
Prefect entrypoints, e.g. `flows/score.py:score_flow`.
"""
