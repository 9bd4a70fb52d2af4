"""Loading the project file: YAML, environment overrides, secrets, sentences for errors."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from leadscore.config.schema import ENV_OVERRIDES, ProjectConfig
from leadscore.errors import ConfigError


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [k for k, f in model.model_fields.items() if not f.exclude]


def _describe(error: dict, source: str) -> str:
    """Turn one pydantic error into a sentence that names the key and the fix."""
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        parent: type[BaseModel] = ProjectConfig
        for part in loc[:-1]:
            field = parent.model_fields.get(part)
            annotation = getattr(field, "annotation", None)
            inner = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not None]
            parent = next(
                (a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), parent
            )
        allowed = _allowed_keys(parent)
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return (
            f"{source}: unknown key '{key}'. {hint}"
            f"Allowed keys here: {', '.join(allowed)}. Remove or rename it."
        )
    if error["type"] == "missing":
        return f"{source}: '{key}' is required. Add it."
    value = error.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
    return f"{source}: '{key}' is invalid{shown}: {error['msg']}. Fix the value."


#: Secrets (database passwords) never go into the project file: they come from the
#: environment or from this file (KEY=VALUE lines, readable by its owner only).
SECRETS_FILE_VAR = "LEADSCORE_SECRETS_FILE"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _refuse_literal_password(uri: str, key: str, source: str, override: str) -> None:
    """A password written into the project file would end up in git and in logs."""
    match = re.match(r"^[a-z0-9+.-]+://[^/@:]*:([^@/]*)@", uri, re.IGNORECASE)
    if match and match.group(1) and not _PLACEHOLDER.fullmatch(match.group(1)):
        raise ConfigError(
            f"{source}: '{key}' contains a password; secrets must not be in the project file",
            f"write it as ${{NAME}} (e.g. postgresql://user:${{LEADSCORE_DB_PASSWORD}}@host/db) "
            f"and set NAME in the environment or in the file named by {SECRETS_FILE_VAR}, "
            f"or set the whole URI in {override}",
        )


def read_secrets(environ: dict[str, str] | os._Environ) -> dict[str, str]:
    """KEY=VALUE pairs from the secrets file named by LEADSCORE_SECRETS_FILE (if set)."""
    name = environ.get(SECRETS_FILE_VAR)
    if not name:
        return {}
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{SECRETS_FILE_VAR} names {path}, which does not exist",
            "create it (KEY=VALUE lines, chmod 600) or unset the variable",
        )
    if path.stat().st_mode & 0o077:
        raise ConfigError(
            f"secrets file {path} is readable by other users",
            f"restrict it: chmod 600 {path}",
        )
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return out


def interpolate(value: str, environ, secrets: dict[str, str], source: str) -> str:
    """Replace ${NAME} with the environment's value, else the secrets file's."""

    def lookup(match: re.Match) -> str:
        name = match.group(1)
        if name in environ:
            return environ[name]
        if name in secrets:
            return secrets[name]
        raise ConfigError(
            f"{source}: ${{{name}}} is used but not set",
            f"export {name}=... or add it to the file named by {SECRETS_FILE_VAR}",
        )

    return _PLACEHOLDER.sub(lookup, value)


def config_from_dict(
    data: dict[str, Any] | None,
    base_dir: Path | None = None,
    source: str = "config",
    environ: dict[str, str] | None = None,
) -> ProjectConfig:
    """Validate a mapping as a project config, applying environment URI overrides."""
    data = dict(data or {})
    env = os.environ if environ is None else environ
    secrets: dict[str, str] | None = None
    for var, (section, key) in ENV_OVERRIDES.items():
        block = data.get(section)
        if not isinstance(block, dict) or not isinstance(block.get(key), str):
            continue
        _refuse_literal_password(block[key], f"{section}.{key}", source, var)
        if "${" in block[key]:
            if secrets is None:
                secrets = read_secrets(env)
            data[section] = {**block, key: interpolate(block[key], env, secrets, source)}
    alerts = data.get("alerts")
    if isinstance(alerts, dict) and isinstance(alerts.get("sinks"), list):
        if secrets is None:
            secrets = read_secrets(env)
        alerts = {**alerts, "sinks": [_sink(s, env, secrets, source) for s in alerts["sinks"]]}
        data["alerts"] = alerts
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            block = dict(data.get(section) or {})
            block[key] = env[var]
            data[section] = block
    model = data.get("model")
    if isinstance(model, dict) and model.get("params_file"):
        params = read_params_file(model["params_file"], base_dir, source)
        data["model"] = {**model, "params": params}
    try:
        return ProjectConfig(**data, base_dir=(base_dir or Path.cwd()).resolve())
    except ValidationError as exc:
        messages = [_describe(e, source) for e in exc.errors()]
        raise ConfigError(
            "\n".join(messages),
            f"edit {source}; the README section 'The project file' lists every key",
        ) from None
    except TypeError as exc:  # e.g. a section given as a list
        raise ConfigError(f"{source}: {exc}") from None


def _sink(sink: Any, environ, secrets: dict[str, str], source: str) -> Any:
    """An alert sink with its ${NAME}s filled in; a secret written out is refused."""
    if not isinstance(sink, dict):
        return sink  # the schema says what is wrong
    out = dict(sink)
    secret = sink.get("secret")
    if isinstance(secret, str) and not _PLACEHOLDER.fullmatch(secret.strip()):
        raise ConfigError(
            f"{source}: alerts.sinks '{sink.get('name')}' has its secret written out",
            "write it as ${NAME} (e.g. ${LEADSCORE_ALERT_SECRET}) and set NAME in the "
            f"environment or in the file named by {SECRETS_FILE_VAR}",
        )
    for key in ("url", "secret"):
        if isinstance(sink.get(key), str) and "${" in sink[key]:
            out[key] = interpolate(sink[key], environ, secrets, source)
    return out


def read_params_file(name: str, base_dir: Path | None, source: str) -> dict[str, Any]:
    """The LightGBM parameters of `model.params_file` (a mapping of names to values)."""
    path = Path(name)
    path = path if path.is_absolute() else (base_dir or Path.cwd()) / path
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{source}: model.params_file {name} does not exist (looked for {path})",
            "run `leadscore tune` to write it, or remove model.params_file",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", "fix the YAML syntax") from None
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ConfigError(
            f"{path} must hold a mapping of LightGBM parameter names to values",
            "e.g. `learning_rate: 0.05` on each line",
        )
    return params


def load_config(path: str | Path | None, environ: dict[str, str] | None = None) -> ProjectConfig:
    """Load and validate a project file; `None` gives the embedded defaults in the cwd."""
    if path is None:
        return config_from_dict({}, Path.cwd(), "defaults", environ)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"project file {path} does not exist",
            "pass --config with the path of your leadscore.yaml, or run `leadscore demo` "
            "to create one",
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", "fix the YAML syntax") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    return config_from_dict(data, path.parent, str(path), environ)


def dump_config(config: ProjectConfig) -> str:
    """The config as YAML (without `base_dir`), to write a project file."""
    return yaml.safe_dump(
        config.model_dump(mode="json", exclude={"base_dir"}), sort_keys=False, allow_unicode=True
    )
