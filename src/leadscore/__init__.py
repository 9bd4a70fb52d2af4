"""leadscore: calibrated lead-conversion probabilities next to your MQL rules.

The public Python API; the subpackages behind it hold the layers (see the README's
"Layout"). Names are imported on first use, so `import leadscore` (and the command line's
start) costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_PUBLIC = {
    "CRMData": "leadscore.io.sources",
    "Comparison": "leadscore.evaluation.comparison",
    "ConfigError": "leadscore.errors",
    "DataError": "leadscore.errors",
    "Evidence": "leadscore.evaluation.evidence",
    "LeadScoringModel": "leadscore.modeling.estimator",
    "LeadscoreError": "leadscore.errors",
    "ModelError": "leadscore.errors",
    "ProjectConfig": "leadscore.config",
    "ReportInputs": "leadscore.evaluation.report",
    "RuleSet": "leadscore.data.rules",
    "Scorer": "leadscore.scoring.scorer",
    "SyntheticCRM": "leadscore.synthetic",
    "TrainingResult": "leadscore.scoring.training",
    "TrainingSet": "leadscore.scoring.training",
    "assign_tiers": "leadscore.scoring.tiers",
    "build_evidence": "leadscore.evaluation.evidence",
    "build_snapshots": "leadscore.data.snapshots",
    "build_training_set": "leadscore.scoring.training",
    "classification_metrics": "leadscore.modeling.metrics",
    "cohort_frames": "leadscore.evaluation.evidence",
    "compare": "leadscore.evaluation.comparison",
    "config_from_dict": "leadscore.config",
    "evaluate_rules": "leadscore.data.rules",
    "expected_calibration_error": "leadscore.modeling.metrics",
    "explain": "leadscore.modeling.reasons",
    "generate_crm": "leadscore.synthetic",
    "load_config": "leadscore.config",
    "load_crm": "leadscore.io.sources",
    "load_rules": "leadscore.data.rules",
    "plan_splits": "leadscore.data.snapshots",
    "render_report": "leadscore.evaluation.report",
    "rule_diagnostics": "leadscore.evaluation.tuning",
    "suggest_rules": "leadscore.evaluation.tuning",
    "train": "leadscore.scoring.training",
    "true_conversion_probability": "leadscore.synthetic",
    "write_report": "leadscore.evaluation.report",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module 'leadscore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
