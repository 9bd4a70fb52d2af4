"""leadscore: calibrated lead-conversion probabilities next to your MQL rules.

The public Python API; modules behind it are implementation details.
"""

from leadscore.config import ProjectConfig, config_from_dict, load_config
from leadscore.errors import ConfigError, DataError, LeadscoreError, ModelError
from leadscore.evaluation import classification_metrics, expected_calibration_error
from leadscore.model import LeadScoringModel
from leadscore.pipeline import TrainingResult, TrainingSet, build_training_set, score, train
from leadscore.rules import RuleSet, evaluate_rules, load_rules
from leadscore.snapshots import build_snapshots, plan_splits
from leadscore.sources import CRMData, load_crm
from leadscore.synthetic import SyntheticCRM, generate_crm, true_conversion_probability

__all__ = [
    "CRMData",
    "ConfigError",
    "DataError",
    "LeadScoringModel",
    "LeadscoreError",
    "ModelError",
    "ProjectConfig",
    "RuleSet",
    "SyntheticCRM",
    "TrainingResult",
    "TrainingSet",
    "build_snapshots",
    "build_training_set",
    "classification_metrics",
    "config_from_dict",
    "evaluate_rules",
    "expected_calibration_error",
    "generate_crm",
    "load_config",
    "load_crm",
    "load_rules",
    "plan_splits",
    "score",
    "train",
    "true_conversion_probability",
]
__version__ = "0.1.0"
