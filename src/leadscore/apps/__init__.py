"""Entry points: the `leadscore` command, the HTTP service, and `init` (profiling an
export into a project file).

Layer 8, the top: may import every layer; no layer imports it.
"""
