"""leadscore: calibrated lead-conversion probabilities next to your MQL rules.

The public Python API; modules behind it are implementation details.
"""

from leadscore.config import ProjectConfig, config_from_dict, load_config
from leadscore.data.rules import RuleSet, evaluate_rules, load_rules
from leadscore.data.snapshots import build_snapshots, plan_splits
from leadscore.errors import ConfigError, DataError, LeadscoreError, ModelError
from leadscore.evaluation.comparison import Comparison, compare
from leadscore.evaluation.evidence import Evidence, build_evidence, cohort_frames
from leadscore.evaluation.report import ReportInputs, render_report, write_report
from leadscore.evaluation.tuning import rule_diagnostics, suggest_rules
from leadscore.io.sources import CRMData, load_crm
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.modeling.metrics import classification_metrics, expected_calibration_error
from leadscore.modeling.reasons import explain
from leadscore.scoring.scorer import Scorer
from leadscore.scoring.tiers import assign_tiers
from leadscore.scoring.training import TrainingResult, TrainingSet, build_training_set, train
from leadscore.synthetic import SyntheticCRM, generate_crm, true_conversion_probability

__all__ = [
    "CRMData",
    "Comparison",
    "ConfigError",
    "DataError",
    "Evidence",
    "LeadScoringModel",
    "LeadscoreError",
    "ModelError",
    "ProjectConfig",
    "ReportInputs",
    "RuleSet",
    "Scorer",
    "SyntheticCRM",
    "TrainingResult",
    "TrainingSet",
    "assign_tiers",
    "build_evidence",
    "build_snapshots",
    "build_training_set",
    "classification_metrics",
    "cohort_frames",
    "compare",
    "config_from_dict",
    "evaluate_rules",
    "expected_calibration_error",
    "explain",
    "generate_crm",
    "load_config",
    "load_crm",
    "load_rules",
    "plan_splits",
    "render_report",
    "rule_diagnostics",
    "suggest_rules",
    "train",
    "true_conversion_probability",
    "write_report",
]
__version__ = "0.1.0"
