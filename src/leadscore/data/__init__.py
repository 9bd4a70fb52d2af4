"""The data a model and the rules see: point-in-time snapshots and labels, features, job
titles, the MQL rule file, and the leakage guard.

Layer 3: imports `config`, `errors` and `io` (the `CRMData` frames), nothing above.
"""
