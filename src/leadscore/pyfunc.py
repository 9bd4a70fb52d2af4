"""The MLflow pyfunc wrapper of the packaged model (imported only where MLflow is used).

Defined at module level so MLflow pickles a reference to this class, not its code.
"""

from __future__ import annotations

import joblib
import mlflow.pyfunc
import pandas as pd

from leadscore.model import LeadScoringModel


class LeadScoringPyfunc(mlflow.pyfunc.PythonModel):
    """Raw snapshot rows → calibrated conversion probability (and the raw booster score)."""

    def load_context(self, context) -> None:
        self.model: LeadScoringModel = joblib.load(context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        raw = self.model.raw_probability(model_input)
        return pd.DataFrame(
            {"conversion_probability": self.model.calibrator_.predict(raw), "raw_score": raw},
            index=model_input.index,
        )
