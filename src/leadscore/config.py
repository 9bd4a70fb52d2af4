"""The project file: one YAML document, validated at load, with environment overrides for URIs.

Relative paths (SQLite files, folders, the rule file, the artifact location) resolve against
the directory of the project file, so a project folder can be moved as a whole. Nothing here
runs at import time.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leadscore.errors import ConfigError

#: Environment variables that override URIs in the project file.
ENV_OVERRIDES = {
    "LEADSCORE_SOURCE_URI": ("source", "uri"),
    "LEADSCORE_PUBLISH_URI": ("publish", "uri"),
    "LEADSCORE_MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
}

DEFAULT_PAGE_CATEGORIES = {
    "pricing": r"/pricing",
    "case_studies": r"/customers|/case-studies",
    "product": r"/product",
    "docs": r"/docs",
    "blog": r"/blog",
    "careers": r"/careers|/jobs",
    "home": r"^/$|^/[a-z]{2}/?$",
}
DEFAULT_FREE_MAIL = (
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.jp",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "icloud.com",
    "aol.com",
    "gmx.de",
    "mail.ru",
    "qq.com",
    "163.com",
    "proton.me",
    "protonmail.com",
)
DEFAULT_STUDENT_PATTERNS = (r"\.edu$", r"\.edu\.[a-z]{2}$", r"\.ac\.[a-z]{2}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableNames(_Section):
    leads: str = "leads"
    activities: str | None = "activities"
    outcomes: str | None = "outcomes"


class ColumnNames(_Section):
    lead_id: str = "lead_id"
    created_at: str = "created_at"
    activity_lead_id: str = "lead_id"
    occurred_at: str = "occurred_at"
    activity_type: str = "activity_type"
    detail: str | None = "detail"
    outcome_lead_id: str = "lead_id"
    converted_at: str = "converted_at"


class AttributeColumns(_Section):
    categorical: list[str] = Field(default_factory=lambda: ["industry", "country", "lead_source"])
    numeric: list[str] = Field(default_factory=lambda: ["employees"])
    job_title: str | None = "job_title"
    email: str | None = "email"


class GroundTruth(_Section):
    leads: str = "ground_truth_leads"
    shocks: str = "ground_truth_shocks"


class SourceConfig(_Section):
    uri: str = "sqlite:///crm.db"
    tables: TableNames = TableNames()
    columns: ColumnNames = ColumnNames()
    attributes: AttributeColumns = AttributeColumns()
    #: Tables of a generated source's hidden truth; used only to report the oracle AUC.
    ground_truth: GroundTruth | None = None


class FeatureConfig(_Section):
    windows_days: list[int] = Field(default_factory=lambda: [7, 30, 90])
    page_activity_type: str = "page_view"
    page_categories: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PAGE_CATEGORIES))
    competitor_domains: list[str] = Field(
        default_factory=lambda: ["rivalscore.com", "leadmagic.io", "scorely.co"]
    )
    free_mail_domains: list[str] = Field(default_factory=lambda: list(DEFAULT_FREE_MAIL))
    student_domain_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_STUDENT_PATTERNS)
    )
    recency_cap_days: int = Field(180, ge=1)

    @field_validator("windows_days")
    @classmethod
    def _windows_positive(cls, value: list[int]) -> list[int]:
        if not value or any(w < 1 for w in value):
            raise ValueError("windows_days must be a non-empty list of positive day counts")
        return sorted(set(value))


class SnapshotConfig(_Section):
    every_days: int = Field(30, ge=1, description="days between snapshot dates")
    max_lead_age_days: int = Field(365, ge=1, description="older open leads are not scored")
    min_history_days: int = Field(30, ge=0, description="first snapshot this long after data start")


class SplitConfig(_Section):
    test_days: int = Field(60, ge=1)
    calibration_days: int = Field(90, ge=1)
    validation_days: int = Field(60, ge=1)
    gap_days: int | None = Field(None, ge=0, description="default: the label horizon")


class ModelConfig(_Section):
    params: dict[str, Any] = Field(
        default_factory=lambda: {
            # Shallow trees: conversion odds are close to additive in attributes and
            # engagement, and shallow trees generalise better across cohorts.
            "learning_rate": 0.03,
            "num_leaves": 7,
            "min_child_samples": 200,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
        }
    )
    max_trees: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    calibration: Literal["auto", "isotonic", "sigmoid"] = "auto"
    num_threads: int = Field(1, ge=1)
    seed: int = 0


class MlflowConfig(_Section):
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlartifacts"
    experiment: str = "leadscore"
    registered_model: str = "leadscore-conversion"


class PublishConfig(_Section):
    uri: str = "sqlite:///crm.db"
    table: str = "lead_scores"

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.replace("_", "").isalnum() or value[0].isdigit():
            raise ValueError("table must be a plain identifier (letters, digits, underscore)")
        return value


class TierConfig(_Section):
    """Tiers A-D from the calibrated probability; three cut-offs separate four tiers.

    `by: share` - cumulative shares of each scoring run from the top (0.1, 0.3, 0.6: A is the
    top 10 %, B the next 20 %, ...); `by: count` - cumulative lead counts from the top (a
    sales team's capacity); `by: probability` - descending probability floors (A >= 0.3).
    """

    by: Literal["share", "count", "probability"] = "share"
    cutoffs: list[float] = Field(default_factory=lambda: [0.1, 0.3, 0.6])

    @model_validator(mode="after")
    def _cutoffs_make_sense(self) -> TierConfig:
        c = self.cutoffs
        if len(c) != 3:
            raise ValueError("cutoffs needs exactly three values (they separate tiers A-D)")
        if self.by == "share" and not (0 < c[0] < c[1] < c[2] <= 1):
            raise ValueError("share cut-offs must rise within (0, 1], e.g. [0.1, 0.3, 0.6]")
        if self.by == "count" and not (
            all(float(v).is_integer() for v in c) and 0 < c[0] < c[1] < c[2]
        ):
            raise ValueError("count cut-offs must be rising whole numbers, e.g. [200, 800, 2000]")
        if self.by == "probability" and not (1 > c[0] > c[1] > c[2] > 0):
            raise ValueError("probability cut-offs must fall within (0, 1), e.g. [0.3, 0.15, 0.05]")
        return self


class ReportConfig(_Section):
    """The comparison report for marketing."""

    path: str = "leadscore-report.html"
    title: str = "Lead scoring: the model next to the MQL rules"
    #: Leads sales can work per week; None compares at the rules' own MQL volume only.
    sales_capacity_per_week: int | None = Field(None, ge=1)
    #: MQL share the suggested threshold aims at; None keeps today's MQL share.
    target_mql_rate: float | None = Field(None, gt=0, lt=1)
    #: Tiers counted as the model's "hot" list in the rule-MQL x model 2x2.
    hot_tiers: list[Literal["A", "B", "C"]] = Field(default_factory=lambda: ["A"])
    bootstrap_samples: int = Field(1000, ge=100, le=20_000)
    top_leads: int = Field(20, ge=1, le=500)
    #: Plain words for features in reasons and charts: activity types or `page_<category>`
    #: ("singular|plural", e.g. "pricing-page view|pricing-page views") and lead fields.
    labels: dict[str, str] = Field(default_factory=dict)


class ProjectConfig(_Section):
    """A validated leadscore project."""

    source: SourceConfig = SourceConfig()
    horizon_days: int = Field(90, ge=1, description="label: converted within this many days")
    snapshots: SnapshotConfig = SnapshotConfig()
    split: SplitConfig = SplitConfig()
    features: FeatureConfig = FeatureConfig()
    rules: str = "mql_rules.yaml"
    model: ModelConfig = ModelConfig()
    mlflow: MlflowConfig = MlflowConfig()
    publish: PublishConfig = PublishConfig()
    tiers: TierConfig = TierConfig()
    report: ReportConfig = ReportConfig()
    #: Directory that relative paths resolve against (the project file's folder).
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @model_validator(mode="after")
    def _gap_covers_the_horizon(self) -> ProjectConfig:
        # A shorter gap lets labels of fitting cohorts reach past the first test snapshot.
        if self.split.gap_days is not None and self.split.gap_days < self.horizon_days:
            raise ValueError(
                f"split.gap_days ({self.split.gap_days}) must be at least horizon_days "
                f"({self.horizon_days}), or outcomes after the test snapshot leak into fitting"
            )
        return self

    @property
    def gap_days(self) -> int:
        """Days between the last fitting snapshot and the first test snapshot."""
        return self.horizon_days if self.split.gap_days is None else self.split.gap_days

    def resolve_uri(self, uri: str) -> str:
        """Make a relative `sqlite:///file` or folder path absolute against `base_dir`."""
        return resolve_uri(uri, self.base_dir)

    def resolve_path(self, path: str) -> Path:
        """Resolve a file path against `base_dir`."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def source_uri(self) -> str:
        return self.resolve_uri(self.source.uri)

    @property
    def publish_uri(self) -> str:
        return self.resolve_uri(self.publish.uri)

    @property
    def tracking_uri(self) -> str:
        return self.resolve_uri(self.mlflow.tracking_uri)

    @property
    def artifact_location(self) -> str:
        loc = self.mlflow.artifact_location
        if "://" in loc:
            return loc
        return self.resolve_path(loc).as_uri()

    @property
    def rules_path(self) -> Path:
        return self.resolve_path(self.rules)

    @property
    def report_path(self) -> Path:
        return self.resolve_path(self.report.path)


def resolve_uri(uri: str, base_dir: Path) -> str:
    """Resolve relative SQLite files and local folders against `base_dir`."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rest = uri[len("sqlite:///") :]
        if rest and rest != ":memory:":
            return "sqlite:///" + str((base_dir / rest).resolve())
        return uri
    if "://" not in uri:
        p = Path(uri).expanduser()
        return str(p if p.is_absolute() else (base_dir / p).resolve())
    return uri


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


def config_from_dict(
    data: dict[str, Any] | None,
    base_dir: Path | None = None,
    source: str = "config",
    environ: dict[str, str] | None = None,
) -> ProjectConfig:
    """Validate a mapping as a project config, applying environment URI overrides."""
    data = dict(data or {})
    env = os.environ if environ is None else environ
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            block = dict(data.get(section) or {})
            block[key] = env[var]
            data[section] = block
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
