"""Every MLflow call: the tracking store and the model registry of one project.

`Registry` holds one tracking store (its registry on the same store), the experiment and
the registered model's name, as `MlflowClient` holds one URI: nothing is configured before
a call. Client calls go through its `MlflowClient`; MLflow's fluent calls (a training run
with its packaged model, loading a pyfunc) read global state, so `Registry` points MLflow
at its store just before each of them.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from leadscore.config import ProjectConfig
from leadscore.data.rules import RuleSet
from leadscore.errors import ModelError
from leadscore.io.publish import read_scores
from leadscore.io.uris import redact_uri
from leadscore.modeling.estimator import LeadScoringModel
from leadscore.scoring.scorer import Scorer

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
        if schema is not None:
            rows = conform_to_schema(rows, schema, set(self.model.features.input_columns))
        out = self.pyfunc.predict(rows)
        return np.asarray(out["conversion_probability"], dtype=float)

    def scorer(self, rules: RuleSet, config: ProjectConfig) -> Scorer:
        """What scores leads with this model, as the registry serves it."""
        return Scorer(self.model, self.predict, rules, config)


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


def conform_to_schema(rows: pd.DataFrame, schema, reads: set[str] | None = None) -> pd.DataFrame:
    """`rows` as the packaged model's input schema asks: its columns, in its types.

    The signature of a model registered before signatures listed only the columns the
    model reads also names columns it never reads (lead id, as-of, columns the leakage guard
    excluded), some as required: those (all but `reads`) are passed as placeholders of their
    type. A string column that is empty for every lead arrives as floats from some readers;
    it is passed as empty text, as MLflow's schema enforcement would otherwise refuse it.
    """
    out = {}
    for spec in schema.inputs:
        kind = str(spec.type)
        if reads is not None and spec.name not in reads:
            out[spec.name] = _placeholder(kind, rows.index)
            continue
        column = rows[spec.name] if spec.name in rows else pd.Series(np.nan, index=rows.index)
        if kind.endswith("string"):
            column = column.astype("str") if column.notna().any() else _empty_text(rows.index)
        elif kind.endswith(("double", "float")):
            column = pd.to_numeric(column, errors="coerce").astype("float64")
        out[spec.name] = column
    return pd.DataFrame(out, index=rows.index)


def _placeholder(kind: str, index: pd.Index) -> pd.Series:
    """A column of `kind` the model does not read (any value of the right type will do)."""
    if kind.endswith(("long", "integer")):
        return pd.Series(0, index=index, dtype="int64")
    if kind.endswith("boolean"):
        return pd.Series(False, index=index)
    if kind.endswith("datetime"):
        return pd.Series(pd.Timestamp(0), index=index, dtype="datetime64[us]")
    if kind.endswith(("double", "float")):
        return pd.Series(np.nan, index=index, dtype="float64")
    return _empty_text(index)


def _empty_text(index: pd.Index) -> pd.Series:
    return pd.Series(pd.array([pd.NA] * len(index), dtype="str"), index=index)


def _requirements() -> list[str]:
    reqs = []
    for name in _MODEL_REQUIREMENTS:
        try:
            reqs.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def resolve_legacy_modules() -> None:
    """Models registered before the package had layers name its old module paths."""
    from leadscore.lifecycle.pyfunc import resolve_legacy_modules as resolve

    resolve()


class Registry:
    """The tracking store, experiment and registered model of one project."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        model_name: str,
        artifact_location: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.model_name = model_name
        self.artifact_location = artifact_location
        self._experiment_id: str | None = None
        self._client = None

    @classmethod
    def of(cls, config: ProjectConfig) -> Registry:
        """The registry a project file names."""
        m = config.mlflow
        return cls(config.tracking_uri, m.experiment, m.registered_model, config.artifact_location)

    def __repr__(self) -> str:
        return f"Registry({redact_uri(self.tracking_uri)!r}, model {self.model_name!r})"

    @property
    def client(self):
        """An `MlflowClient` of this store (tracking and registry)."""
        if self._client is None:
            self._client = _mlflow().MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def _fluent(self):
        """MLflow, pointed at this store, for the calls only its fluent API makes."""
        mlflow = _mlflow()
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return mlflow

    def experiment_id(self) -> str:
        """The experiment's id, created if missing (reaching the store on first use)."""
        if self._experiment_id is not None:
            return self._experiment_id
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        try:
            found = self.client.get_experiment_by_name(self.experiment)
            self._experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(
                    self.experiment, artifact_location=self.artifact_location
                )
            )
        except Exception as exc:
            raise ModelError(
                f"cannot reach the MLflow tracking store {redact_uri(self.tracking_uri)}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                "check mlflow.tracking_uri in the project file (or LEADSCORE_MLFLOW_TRACKING_URI)",
                transient=True,
            ) from None
        return self._experiment_id

    # -- runs ----------------------------------------------------------------------------

    def log_training_run(
        self,
        model: LeadScoringModel,
        params: dict[str, Any],
        metrics: dict[str, float],
        figures: dict[str, Any],
        tables: dict[str, pd.DataFrame],
        tags: dict[str, str],
        files: dict[str, bytes] | None = None,
        children: list[tuple[str, dict[str, Any], dict[str, float]]] | None = None,
    ) -> RegisteredModel:
        """Log one training run, package and register the model as the challenger.

        `files` maps artifact paths (e.g. ``evaluation/test_cohort.parquet``) to their bytes;
        `children` are nested runs (name, params, metrics): one per backtest candidate
        (named "candidate ...") and one per fold.
        """
        experiment_id = self.experiment_id()
        mlflow = self._fluent()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mlflow.start_run(experiment_id=experiment_id) as run:
                mlflow.set_tags(tags)
                mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
                mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
                for name, child_params, child_metrics in children or []:
                    with mlflow.start_run(run_name=name, nested=True, experiment_id=experiment_id):
                        kind = "candidate" if name.startswith("candidate") else "fold"
                        mlflow.set_tags({**tags, "leadscore.kind": f"backtest {kind}"})
                        mlflow.log_params({k: str(v)[:6000] for k, v in child_params.items()})
                        mlflow.log_metrics(
                            {k: float(v) for k, v in child_metrics.items() if np.isfinite(v)}
                        )
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
                version = mlflow.register_model(info.model_uri, self.model_name)
        # Every new version is the challenger until the promotion gate has judged it.
        self.client.set_registered_model_alias(self.model_name, CHALLENGER, version.version)
        return RegisteredModel(
            self.model_name, str(version.version), run.info.run_id, (CHALLENGER,)
        )

    def log_scoring_run(
        self,
        params: dict[str, Any],
        metrics: dict[str, float],
        tables: dict[str, pd.DataFrame],
        tags: dict[str, str],
        folder: str = "monitoring",
    ) -> str:
        """One tracking run per scoring run: its monitoring numbers and checks; its id.
        (Also a rules-only training run: its figures, and its tables under `folder`.)"""
        experiment_id = self.experiment_id()
        client = self.client
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mlflow.entities import Metric, Param

            run = client.create_run(experiment_id, tags=tags)
            run_id = run.info.run_id
            stamp = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[
                    Metric(k, float(v), stamp, 0) for k, v in metrics.items() if np.isfinite(v)
                ],
                params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            )
            for name, frame in tables.items():
                client.log_table(run_id, frame, f"{folder}/{name}.json")
            client.set_terminated(run_id)
        return run_id

    def log_tuning_run(
        self,
        params: dict[str, Any],
        metrics: dict[str, float],
        children: list[tuple[str, dict[str, Any], dict[str, float]]],
        tables: dict[str, pd.DataFrame],
        tags: dict[str, str],
    ) -> str:
        """One tracking run per search, with a nested run per trial; its id."""
        experiment_id = self.experiment_id()
        mlflow = self._fluent()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mlflow.start_run(experiment_id=experiment_id, run_name="tune") as run:
                mlflow.set_tags(tags)
                mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
                mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
                for name, child_params, child_metrics in children:
                    with mlflow.start_run(run_name=name, nested=True, experiment_id=experiment_id):
                        mlflow.set_tags({**tags, "leadscore.kind": "tuning trial"})
                        mlflow.log_params({k: str(v)[:6000] for k, v in child_params.items()})
                        mlflow.log_metrics(
                            {k: float(v) for k, v in child_metrics.items() if np.isfinite(v)}
                        )
                for name, frame in tables.items():
                    mlflow.log_table(frame, f"tables/{name}.json")
        return run.info.run_id

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The metrics a run logged (e.g. the champion's test metrics)."""
        try:
            return dict(self.client.get_run(run_id).data.metrics)
        except _mlflow().exceptions.MlflowException:
            return {}

    def run_params(self, run_id: str) -> dict[str, str]:
        """The parameters a run logged (e.g. the champion's split)."""
        try:
            return dict(self.client.get_run(run_id).data.params)
        except _mlflow().exceptions.MlflowException:
            return {}

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        """Tag a tracking run (e.g. with the promotion gate's verdict)."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value)[:5000])

    def log_run_text(self, run_id: str, text: str, path: str) -> None:
        """Add a text artifact (e.g. the report) to an existing run."""
        self.client.log_text(run_id, text, path)

    def download_run_artifacts(self, run_id: str, path: str, destination: str) -> Path:
        """Download a run's artifact folder; a clear error when the run never logged it."""
        mlflow = _mlflow()
        try:
            local = self.client.download_artifacts(run_id, path, destination)
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

    # -- the registry --------------------------------------------------------------------

    def champion(self) -> RegisteredModel | None:
        """The version behind the champion alias, or None when there is none yet."""
        return self.alias(CHAMPION)

    def alias(self, alias: str) -> RegisteredModel | None:
        """The version behind `alias`, or None when the alias (or the model) does not exist."""
        try:
            mv = self.client.get_model_version_by_alias(self.model_name, alias)
        except Exception as exc:
            if getattr(exc, "error_code", None) in _MISSING:
                return None
            raise ModelError(
                f"cannot read alias '{alias}' of model '{self.model_name}' from the registry "
                f"at {redact_uri(self.tracking_uri)}: {type(exc).__name__}",
                "check that the MLflow tracking server is reachable",
                transient=True,
            ) from None
        return RegisteredModel(self.model_name, str(mv.version), mv.run_id, tuple(mv.aliases))

    def version(self, version: str) -> RegisteredModel:
        """A registered version; a clear error when it does not exist."""
        try:
            mv = self.client.get_model_version(self.model_name, str(version))
        except _mlflow().exceptions.MlflowException:
            raise ModelError(
                f"model '{self.model_name}' has no version {version!r} in the registry at "
                f"{redact_uri(self.tracking_uri)}",
                "list the versions with `leadscore promotions` or in the MLflow UI",
            ) from None
        return RegisteredModel(self.model_name, str(mv.version), mv.run_id, tuple(mv.aliases))

    def set_alias(self, entry: RegisteredModel, alias: str, tags: dict[str, str]) -> None:
        """Point `alias` at `entry` and tag the version with why (the registry's own record)."""
        self.client.set_registered_model_alias(entry.name, alias, entry.version)
        self.tag_version(entry, tags)

    def tag_version(self, entry: RegisteredModel, tags: dict[str, str]) -> None:
        """Tag a model version (e.g. with the promotion gate's verdict)."""
        for key, value in tags.items():
            self.client.set_model_version_tag(entry.name, entry.version, key, str(value)[:5000])

    def load(self, entry: RegisteredModel) -> Champion:
        """Load a registered version (e.g. to judge it on a cohort)."""
        return Champion(entry, *self._load(f"models:/{entry.name}/{entry.version}"))

    def load_champion(self) -> Champion:
        """Load `models:/<name>@champion`; a clear error names the command that fixes a miss."""
        self.experiment_id()  # an unreachable store says so first, whatever is asked of it
        entry = self.champion()
        if entry is None:
            raise ModelError(
                f"no model '{self.model_name}' with alias '{CHAMPION}' in the registry at "
                f"{redact_uri(self.tracking_uri)}",
                "train one first: `leadscore train --config <your project file>`",
            )
        return Champion(entry, *self._load(f"models:/{self.model_name}@{CHAMPION}"))

    def _load(self, uri: str) -> tuple[Any, LeadScoringModel]:
        resolve_legacy_modules()
        mlflow = self._fluent()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pyfunc = mlflow.pyfunc.load_model(uri)
        return pyfunc, pyfunc.unwrap_python_model().model


def load_champion(config: ProjectConfig) -> Champion:
    """The project's champion, loaded: the one place every scoring path loads it from."""
    return Registry.of(config).load_champion()


def choose_scoring(config: ProjectConfig, rules_only: bool = False) -> tuple[Champion | None, str]:
    """What scores tonight: the champion, loaded, or None and why the rule file scores alone
    (see `scoring_entry`)."""
    entry, why = scoring_entry(config, rules_only)
    return (None, why) if entry is None else (Registry.of(config).load_champion(), why)


def scoring_entry(
    config: ProjectConfig, rules_only: bool = False
) -> tuple[RegisteredModel | None, str]:
    """The champion's registry entry (nothing loaded), or None and why the rules score alone.

    Rules alone by choice (`rules_only`, `scoring.rules_only`), or while there is no model
    yet: no champion in the registry and no model's scores published. A missing champion
    where a model's scores were published is an error (a wrong model name or tracking store
    would otherwise replace them with rule scores).
    """
    if rules_only or config.scoring.rules_only:
        return None, "chosen (--rules-only or scoring.rules_only)"
    registry = Registry.of(config)
    registry.experiment_id()  # an unreachable store says so first
    entry = registry.champion()
    if entry is not None:
        return entry, ""
    runs = read_scores(config.publish_uri, config.publish.runs_table)
    by_model = runs[runs["model_version"].notna()] if "model_version" in runs else runs.iloc[:0]
    if len(by_model):
        newest = by_model.sort_values("as_of_date").iloc[-1]
        raise ModelError(
            f"no model '{registry.model_name}' with alias '{CHAMPION}' in the registry at "
            f"{redact_uri(registry.tracking_uri)}, but table '{config.publish.runs_table}' "
            f"holds scores of model '{newest['model_name']}' v{newest['model_version']} (as of "
            f"{pd.Timestamp(newest['as_of_date']).date()}); rule scores would replace them",
            "check mlflow.registered_model and the tracking URI; to publish the rule file's "
            "scores anyway, pass --rules-only (or set scoring.rules_only: true)",
        )
    return None, (
        f"no champion model '{registry.model_name}' yet, so the rule file's scores are "
        "published alone (no probability, model_version empty) until `leadscore train` "
        "promotes one"
    )


def _no_artifacts(run_id: str, path: str) -> ModelError:
    return ModelError(
        f"the champion's run {run_id} has no '{path}' artifacts: it was trained by an older "
        "leadscore",
        "retrain with `leadscore train`; if the champion alias stays on the old version, move "
        "it to the new one (`leadscore promote VERSION --reason ...`)",
    )
