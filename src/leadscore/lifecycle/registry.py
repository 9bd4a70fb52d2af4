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
from leadscore.io.uris import redact_uri
from leadscore.modeling.estimator import LeadScoringModel

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Registry error codes that mean "no such model or alias" rather than "cannot reach it".
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
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


_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # With a tracking server MLflow prints "View run … at: <url>" to stdout, which would
    # corrupt `--json` output; the CLI prints the run id itself.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def _mlflow():  # imported lazily: mlflow is slow to import and has import-time settings
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow's own HTTP retries default to 7 with doubling backoff (minutes against a dead
    # server); the flows retry whole tasks with backoff, so keep each attempt short.
    for var, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(var, value)
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
        schema = self.pyfunc.metadata.get_input_schema()
        out = self.pyfunc.predict(rows if schema is None else conform_to_schema(rows, schema))
        return np.asarray(out["conversion_probability"], dtype=float)


def model_signature(model: LeadScoringModel):
    """The packaged model's signature: exactly the columns the model reads, all optional.

    Names and types only, never values (no personal data in the model's metadata). Every
    column is optional because any attribute may be empty for an open lead, and typed from
    the model rather than inferred from a sample, whose types depend on which rows it had.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema(
        [ColSpec(kind, name, required=False) for name, kind in model.features.input_columns.items()]
    )
    outputs = Schema([ColSpec("double", "conversion_probability"), ColSpec("double", "raw_score")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def conform_to_schema(rows: pd.DataFrame, schema) -> pd.DataFrame:
    """`rows` as the packaged model's input schema asks: its columns, in its types.

    A column the schema names but the rows lack is passed empty: a model registered before
    signatures listed only the columns it reads still names the ones the leakage guard
    excluded, which scoring never reads (a column the model does read is checked for
    earlier, with a clear error). A string column that is empty for every lead arrives as
    floats from some readers; it is passed as empty text, as MLflow's schema enforcement
    would otherwise refuse it.
    """
    out = {}
    for spec in schema.inputs:
        kind = str(spec.type)
        column = rows[spec.name] if spec.name in rows else pd.Series(np.nan, index=rows.index)
        if kind.endswith("string"):
            column = column.astype("str") if column.notna().any() else _empty_text(rows.index)
        elif kind.endswith(("double", "float")):
            column = pd.to_numeric(column, errors="coerce").astype("float64")
        out[spec.name] = column
    return pd.DataFrame(out, index=rows.index)


def _empty_text(index: pd.Index) -> pd.Series:
    return pd.Series(pd.array([pd.NA] * len(index), dtype="str"), index=index)


def configure(tracking_uri: str, experiment: str, artifact_location: str | None) -> str:
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
    tags: dict[str, str],
    files: dict[str, bytes] | None = None,
) -> RegisteredModel:
    """Log one training run, package and register the model as the challenger.

    `files` maps artifact paths (e.g. ``evaluation/test_cohort.parquet``) to their bytes.
    """
    mlflow = _mlflow()

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
                from leadscore.lifecycle.pyfunc import LeadScoringPyfunc

                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=LeadScoringPyfunc(),
                    artifacts={"model": str(path)},
                    signature=model_signature(model),
                    pip_requirements=_requirements(),
                )
            version = mlflow.register_model(info.model_uri, registered_model)
    # Every new version is the challenger until the promotion gate has judged it.
    mlflow.MlflowClient().set_registered_model_alias(registered_model, CHALLENGER, version.version)
    return RegisteredModel(registered_model, str(version.version), run.info.run_id, (CHALLENGER,))


def champion_version(name: str) -> RegisteredModel | None:
    """The version behind the champion alias, or None when there is none yet."""
    return alias_version(name, CHAMPION)


def alias_version(name: str, alias: str) -> RegisteredModel | None:
    """The version behind `alias`, or None when the alias (or the model) does not exist."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except Exception as exc:
        if getattr(exc, "error_code", None) in _MISSING:
            return None
        raise ModelError(
            f"cannot read alias '{alias}' of model '{name}' from the registry at "
            f"{redact_uri(mlflow.get_tracking_uri())}: {type(exc).__name__}",
            "check that the MLflow tracking server is reachable",
            transient=True,
        ) from None
    return RegisteredModel(name, str(mv.version), mv.run_id, tuple(mv.aliases))


def model_version(name: str, version: str) -> RegisteredModel:
    """A registered version; a clear error when it does not exist."""
    mlflow = _mlflow()
    try:
        mv = mlflow.MlflowClient().get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException:
        raise ModelError(
            f"model '{name}' has no version {version!r} in the registry at "
            f"{redact_uri(mlflow.get_tracking_uri())}",
            "list the versions with `leadscore promotions` or in the MLflow UI",
        ) from None
    return RegisteredModel(name, str(mv.version), mv.run_id, tuple(mv.aliases))


def set_alias(entry: RegisteredModel, alias: str, tags: dict[str, str]) -> None:
    """Point `alias` at `entry` and tag the version with why (the registry's own record)."""
    client = _mlflow().MlflowClient()
    client.set_registered_model_alias(entry.name, alias, entry.version)
    for key, value in tags.items():
        client.set_model_version_tag(entry.name, entry.version, key, str(value)[:5000])


def tag_version(entry: RegisteredModel, tags: dict[str, str]) -> None:
    """Tag a model version (e.g. with the promotion gate's verdict)."""
    client = _mlflow().MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(entry.name, entry.version, key, str(value)[:5000])


def resolve_legacy_modules() -> None:
    """Models registered before the package had layers name its old module paths."""
    from leadscore.lifecycle.pyfunc import resolve_legacy_modules as resolve

    resolve()


def load_version(entry: RegisteredModel) -> Champion:
    """Load a specific registered version (e.g. to judge it on a cohort)."""
    mlflow = _mlflow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resolve_legacy_modules()
        pyfunc = mlflow.pyfunc.load_model(f"models:/{entry.name}/{entry.version}")
    return Champion(entry, pyfunc, pyfunc.unwrap_python_model().model)


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
        resolve_legacy_modules()
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    return Champion(entry, pyfunc, pyfunc.unwrap_python_model().model)


def run_metrics(run_id: str) -> dict[str, float]:
    """The metrics a run logged (e.g. the champion's test metrics)."""
    mlflow = _mlflow()
    try:
        return dict(mlflow.MlflowClient().get_run(run_id).data.metrics)
    except mlflow.exceptions.MlflowException:
        return {}


def log_scoring_run(
    experiment_id: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tables: dict[str, pd.DataFrame],
    tags: dict[str, str],
) -> str:
    """One tracking run per scoring run: its monitoring numbers and checks; returns its id."""
    mlflow = _mlflow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
            mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
            for name, frame in tables.items():
                mlflow.log_table(frame, f"monitoring/{name}.json")
    return run.info.run_id


def tag_run(run_id: str, tags: dict[str, str]) -> None:
    """Tag a tracking run (e.g. with the promotion gate's verdict, shown in the run list)."""
    client = _mlflow().MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value)[:5000])


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
