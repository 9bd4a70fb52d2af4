"""Training and scoring: training sets and the trained model, the `Scorer` of the batch, of
lead partitions, of on-demand leads and of the service, tiers, and the checks training and
scoring share.

Layer 5: imports `modeling`, `data`, `io`, `config` and the foundation; nothing of
evaluation, lifecycle or the apps.
"""
