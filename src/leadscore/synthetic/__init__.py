"""A synthetic B2B CRM with a known truth: the embedded demo, the tests' data, and the scale
benchmarks' histories (`generator`).

Layer 1: imports nothing of leadscore but the foundation; nothing below the apps, the
benchmarks and the tests may read its ground truth but the oracle AUC of a training run.
"""

from leadscore.synthetic.generator import (
    SyntheticCRM,
    generate_crm,
    true_account_probability,
    true_conversion_probability,
)

__all__ = [
    "SyntheticCRM",
    "generate_crm",
    "true_account_probability",
    "true_conversion_probability",
]
