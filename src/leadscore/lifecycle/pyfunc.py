"""The MLflow pyfunc wrapper of the packaged model (imported only where MLflow is used).

Defined at module level so MLflow pickles a reference to this class, not its code.
"""

from __future__ import annotations

import importlib
import sys

import joblib
import mlflow.pyfunc
import pandas as pd

from leadscore.modeling.estimator import LeadScoringModel

#: Where the classes of a packaged model lived before the package was split into layers
#: (models registered until December 2026 are pickled under these names) → where they
#: live now. Registered models keep scoring without a retrain.
LEGACY_MODULES = {
    "leadscore.pyfunc": "leadscore.lifecycle.pyfunc",
    "leadscore.model": "leadscore.modeling.estimator",
    "leadscore.features": "leadscore.data.features",
    "leadscore.monitoring": "leadscore.modeling.drift",
    "leadscore.attributions": "leadscore.modeling.attributions",
}


def resolve_legacy_modules() -> None:
    """Let pickles that name the old module paths find their classes (idempotent)."""
    for old, new in LEGACY_MODULES.items():
        if old not in sys.modules:
            sys.modules[old] = importlib.import_module(new)


class LeadScoringPyfunc(mlflow.pyfunc.PythonModel):
    """Raw snapshot rows → calibrated conversion probability (and the raw booster score)."""

    def load_context(self, context) -> None:
        resolve_legacy_modules()
        self.model: LeadScoringModel = joblib.load(context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        probability, raw = self.model.scores(model_input)
        return pd.DataFrame(
            {"conversion_probability": probability, "raw_score": raw},
            index=model_input.index,
        )
