"""All MLflow calls: tracking runs, the packaged model, the registry and its aliases."""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from leadscore.errors import ModelError
from leadscore.model import LeadScoringModel
from leadscore.sources import redact_uri

CHAMPION = "champion"
#: Packages the served model needs; pinned to what trained it (skips MLflow's slow inference).
_MODEL_REQUIREMENTS = (
    "lightgbm",
    "scikit-learn",
    "pandas",
    "numpy",
    "mlflow",
    "pyyaml",
    "pydantic",
)


def _mlflow():  # imported lazily: mlflow is slow to import and has import-time settings
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


@dataclass(frozen=True)
class RegisteredModel:
    """A model version as the registry knows it."""

    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Champion:
    """The loaded champion: its registry entry, the pyfunc and the unwrapped model."""

    entry: RegisteredModel
    pyfunc: Any
    model: LeadScoringModel

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities through the packaged pyfunc, as served."""
        out = self.pyfunc.predict(rows)
        return np.asarray(out["conversion_probability"], dtype=float)


def configure(tracking_uri: str, experiment: str, artifact_location: str) -> str:
    """Point MLflow at the tracking store and ensure the experiment; returns its id."""
    mlflow = _mlflow()
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            return mlflow.create_experiment(experiment, artifact_location=artifact_location)
        return found.experiment_id
    except Exception as exc:
        raise ModelError(
            f"cannot reach the MLflow tracking store {redact_uri(tracking_uri)}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "check mlflow.tracking_uri in the project file (or LEADSCORE_MLFLOW_TRACKING_URI)",
            transient=True,
        ) from None


def _requirements() -> list[str]:
    reqs = []
    for name in _MODEL_REQUIREMENTS:
        try:
            reqs.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def log_training_run(
    experiment_id: str,
    registered_model: str,
    model: LeadScoringModel,
    params: dict[str, Any],
    metrics: dict[str, float],
    figures: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    signature_rows: pd.DataFrame,
    tags: dict[str, str],
    files: dict[str, bytes] | None = None,
) -> RegisteredModel:
    """Log one training run, package and register the model; alias it champion if none.

    `files` maps artifact paths (e.g. ``evaluation/test_cohort.parquet``) to their bytes.
    """
    mlflow = _mlflow()
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.set_tags(tags)
            mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
            for name, fig in figures.items():
                mlflow.log_figure(fig, f"plots/{name}.png")
            for name, frame in tables.items():
                mlflow.log_table(frame, f"tables/{name}.json")
            if files:
                with tempfile.TemporaryDirectory() as tmp:
                    for relative, content in files.items():
                        target = Path(tmp) / relative
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(content)
                    mlflow.log_artifacts(tmp)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "lead_scoring_model.joblib"
                joblib.dump(model, path)
                # The signature records column names and types only, never values: no
                # personal data goes into the model's metadata.
                sample = signature_rows.head(200)
                output = pd.DataFrame({"conversion_probability": [0.5], "raw_score": [0.5]})
                from leadscore.pyfunc import LeadScoringPyfunc

                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=LeadScoringPyfunc(),
                    artifacts={"model": str(path)},
                    signature=infer_signature(sample, output),
                    pip_requirements=_requirements(),
                )
            version = mlflow.register_model(info.model_uri, registered_model)
    client = mlflow.MlflowClient()
    aliases: tuple[str, ...] = ()
    if champion_version(registered_model) is None:
        client.set_registered_model_alias(registered_model, CHAMPION, version.version)
        client.set_model_version_tag(
            registered_model, version.version, "promoted_because", "first model"
        )
        aliases = (CHAMPION,)
    return RegisteredModel(registered_model, str(version.version), run.info.run_id, aliases)


def champion_version(name: str) -> RegisteredModel | None:
    """The version behind the champion alias, or None when there is none yet."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    return RegisteredModel(name, str(mv.version), mv.run_id, tuple(mv.aliases))


def load_champion(name: str) -> Champion:
    """Load `models:/<name>@champion`; a clear error names the command that fixes a miss."""
    mlflow = _mlflow()
    entry = champion_version(name)
    if entry is None:
        raise ModelError(
            f"no model '{name}' with alias '{CHAMPION}' in the registry at "
            f"{redact_uri(mlflow.get_tracking_uri())}",
            "train one first: `leadscore train --config <your project file>`",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    return Champion(entry, pyfunc, pyfunc.unwrap_python_model().model)


def run_metrics(run_id: str) -> dict[str, float]:
    """The metrics a run logged (e.g. the champion's test metrics)."""
    mlflow = _mlflow()
    try:
        return dict(mlflow.MlflowClient().get_run(run_id).data.metrics)
    except mlflow.exceptions.MlflowException:
        return {}


def log_run_text(run_id: str, text: str, path: str) -> None:
    """Add a text artifact (e.g. the report) to an existing run."""
    _mlflow().MlflowClient().log_text(run_id, text, path)


def _no_artifacts(run_id: str, path: str) -> ModelError:
    return ModelError(
        f"the champion's run {run_id} has no '{path}' artifacts: it was trained by an older "
        "leadscore",
        "retrain with `leadscore train`; if the champion alias stays on the old version, move "
        "it to the new one (MLflow UI, or MlflowClient().set_registered_model_alias(name, "
        "'champion', version))",
    )


def download_run_artifacts(run_id: str, path: str, destination: str) -> Path:
    """Download a run's artifact folder; a clear error when the run never logged it."""
    mlflow = _mlflow()
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=destination
        )
    except FileNotFoundError:
        raise _no_artifacts(run_id, path) from None
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
            raise _no_artifacts(run_id, path) from None
        raise ModelError(
            f"cannot download the '{path}' artifacts of run {run_id}: {type(exc).__name__}",
            "check that the MLflow tracking server and its artifact store are reachable",
            transient=True,
        ) from None
    folder = Path(local)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise _no_artifacts(run_id, path)
    return folder
