"""The project file's schema: every section and key, its default and its checks.

Relative paths (SQLite files, folders, the rule file, the artifact location) resolve against
the directory of the project file, so a project folder can be moved as a whole.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

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


def _plain_identifier(value: str) -> str:
    if not value.replace("_", "").isalnum() or value[0].isdigit():
        raise ValueError("must be a plain identifier (letters, digits, underscore)")
    return value


#: A table name written into SQL: letters, digits and underscores only (no injection).
Identifier = Annotated[str, AfterValidator(_plain_identifier)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableNames(_Section):
    leads: str = "leads"
    activities: str | None = "activities"
    outcomes: str | None = "outcomes"


class ColumnNames(_Section):
    #: None: a flat export without an id column; each lead is named by its row (row-1 ...).
    lead_id: str | None = "lead_id"
    #: When the lead was created; None for flat exports without timestamps.
    created_at: str | None = "created_at"
    activity_lead_id: str = "lead_id"
    occurred_at: str = "occurred_at"
    activity_type: str = "activity_type"
    detail: str | None = "detail"
    outcome_lead_id: str = "lead_id"
    converted_at: str | None = "converted_at"


DEFAULT_POSITIVE = ("1", "1.0", "true", "yes", "y", "converted", "won")
DEFAULT_NEGATIVE = ("0", "0.0", "false", "no", "n", "not converted", "lost")


class LabelConfig(_Section):
    """A flat export's outcome: one column of the leads table saying converted or not.

    Values compare as lower-case text. An empty value marks an open lead: it is scored, never
    trained on. Any other value is an error (or quarantined, see `validation.quarantine`).
    """

    column: str
    positive: list[str] = Field(default_factory=lambda: list(DEFAULT_POSITIVE))
    negative: list[str] = Field(default_factory=lambda: list(DEFAULT_NEGATIVE))

    @field_validator("positive", "negative", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v).strip().lower() for v in value]
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> LabelConfig:
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise ValueError(f"value(s) {both} are listed as both positive and negative")
        return self


class AttributeColumns(_Section):
    categorical: list[str] = Field(default_factory=lambda: ["industry", "country", "lead_source"])
    numeric: list[str] = Field(default_factory=lambda: ["employees"])
    #: Numeric columns that may be negative (a change, a margin); in every other numeric
    #: column a negative value is an error (a count, a size, an amount, a duration).
    signed: list[str] = Field(default_factory=list)
    job_title: str | None = "job_title"
    email: str | None = "email"
    #: The column naming each lead's account (company), if the source has one; leads
    #: without a value (and every lead when it is null) are grouped by e-mail domain.
    account: str | None = None


#: Blocks of `source` that map the user's data: written, they replace the default block
#: (what a key left out of them means).
WRITTEN_BLOCKS = {
    "attributes": {
        "categorical": [],
        "numeric": [],
        "signed": [],
        "job_title": None,
        "email": None,
        "account": None,
    },
    "tables": {"activities": None, "outcomes": None},
}


class OutcomeStage(_Section):
    """An outcomes table of opportunities or deals in stages (a CRM's pipeline export): only
    rows whose stage is one of `converted` count as a conversion (values compare as lower-case
    text), dated by `columns.converted_at`; the other rows (open, lost) convert no lead."""

    column: str
    converted: list[str] = Field(min_length=1)

    @field_validator("converted", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v).strip().lower() for v in value]
        return value


class ActivityTypeNames(_Section):
    """An activity log that names each activity's type by an id (Marketo's bulk extract:
    `activityTypeId`), with a table of the names (Marketo's activity types: id, name).
    The names are what the features, the rules and the reasons read; an id the table does
    not name is kept as "type <id>", with a warning."""

    table: str
    id: str = "id"
    name: str = "name"


class GroundTruth(_Section):
    leads: str = "ground_truth_leads"
    shocks: str = "ground_truth_shocks"
    account_shocks: str = "ground_truth_account_shocks"


#: Field separators a CSV file may use (the sniffer tries them in this order).
DELIMITERS = (",", ";", "\t", "|")
#: Thousands separators inside numbers ("": none; "'" as in Switzerland).
THOUSANDS = ("", ",", ".", " ", "'")


def known_time_zone(value: str, key: str) -> str:
    """An IANA time zone name, or the error that says which key holds something else."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{key} {value!r} is not a time zone name (e.g. UTC, Europe/Berlin, Asia/Tokyo)"
        ) from None
    return value


class FileFormat(_Section):
    """How one file of a folder source is written. "auto": sniffed from the file when it is
    read; `leadscore init` writes what it found, so every run reads the file alike."""

    #: Field separator of a CSV file: "," ";" tab ("\t") or "|".
    delimiter: str = "auto"
    #: Decimal mark of its numbers: "." or "," (much of Europe).
    decimal: str = "auto"
    #: Thousands separator inside its numbers: "" (none), ",", ".", " " or "'".
    thousands: str = "auto"
    #: Its encoding ("auto": source.encoding).
    encoding: str = "auto"
    #: An Excel workbook's sheet: its name, or its position (0: the first).
    sheet: str | int = 0
    #: Dates that are not ISO 8601, like 03/04/2026: true = day first (3 April), false =
    #: month first; null: the order that reads the whole column (month first if both do).
    day_first: bool | None = None
    #: The time zone its timestamps without a UTC offset were written in (an IANA name:
    #: UTC, Europe/Berlin, Asia/Tokyo); null: UTC, and a column mixing times with and
    #: without an offset is refused.
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return value if value is None else known_time_zone(value, "timezone")

    @model_validator(mode="after")
    def _known_marks(self) -> FileFormat:
        if self.delimiter not in ("auto", *DELIMITERS):
            raise ValueError(
                f"delimiter {self.delimiter!r} is not one of , ; | or a tab (\\t), or auto"
            )
        if self.decimal not in ("auto", ".", ","):
            raise ValueError(f"decimal {self.decimal!r} must be '.' or ',' (or auto)")
        if self.thousands not in ("auto", *THOUSANDS):
            raise ValueError(
                f"thousands {self.thousands!r} must be '' (none), ',', '.', ' ' or \"'\" (or auto)"
            )
        if self.decimal != "auto" and self.decimal == self.thousands:
            raise ValueError(f"decimal {self.decimal!r} is also the thousands separator")
        if self.encoding != "auto":
            _codec(self.encoding)
        return self


def _codec(value: str) -> str:
    import codecs

    try:
        return codecs.lookup(value).name
    except LookupError:
        raise ValueError(
            f"unknown encoding {value!r}; use auto, utf-8, cp932 (Japanese Excel), "
            "cp1252 (Western Excel), or another Python codec name"
        ) from None


class SourceConfig(_Section):
    uri: str = "sqlite:///crm.db"
    tables: TableNames = TableNames()
    columns: ColumnNames = ColumnNames()
    attributes: AttributeColumns = AttributeColumns()
    #: Flat exports: the label column (then no outcomes table and no conversion timestamps).
    label: LabelConfig | None = None
    #: An outcomes table with a stage per row: which stages are a conversion.
    outcome_stage: OutcomeStage | None = None
    #: An activity log with type ids: the table that names them.
    activity_types: ActivityTypeNames | None = None
    #: Placeholder values that mean "missing" in any text column (e.g. "Select", "unknown");
    #: empty and blank strings always do.
    missing_values: list[str] = Field(default_factory=list)
    #: Encoding of CSV files: "auto" detects UTF-8, the common multi-byte encodings
    #: (Shift_JIS/cp932, EUC-JP, GB18030, Big5, EUC-KR, UTF-16), else reads Windows-1252.
    encoding: str = "auto"
    #: How each file of a folder source is written, by table name (separator, decimal
    #: mark, thousands separator, encoding, Excel sheet); a file not listed is sniffed.
    files: dict[str, FileFormat] = Field(default_factory=dict)
    #: The day the export was taken: the end of its history (rows dated from that day on
    #: are left out). Unset: the newest lead or activity (not outcome) ends it.
    extract_date: date | None = None
    #: Tables of a generated source's hidden truth; used only to report the oracle AUC.
    ground_truth: GroundTruth | None = None

    @model_validator(mode="before")
    @classmethod
    def _written_blocks_replace(cls, data: Any) -> Any:
        """A mapping block the user writes replaces the default one, it is not merged with
        it: `attributes:` with only `categorical` maps only those columns (no `employees`,
        `job_title` or `email` from the demo's schema), and `tables:` with only `leads`
        has no activities or outcomes tables."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, empty in WRITTEN_BLOCKS.items():
            if isinstance(out.get(key), dict):
                out[key] = {**empty, **out[key]}
        return out

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        return value if value == "auto" else _codec(value)

    @model_validator(mode="after")
    def _ids_by_position_only_when_flat(self) -> SourceConfig:
        if self.columns.lead_id is None and self.label is None:
            raise ValueError(
                "columns.lead_id is null, which only a flat export (with label.column) may "
                "be: activities and outcomes name their leads by id; map the id column"
            )
        return self

    def file_format(self, table: str) -> FileFormat:
        """How the file of `table` is written (its encoding defaulting to `encoding`)."""
        given = self.files.get(table, FileFormat())
        if given.encoding == "auto" and self.encoding != "auto":
            return given.model_copy(update={"encoding": self.encoding})
        return given


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


class BuyingRole(_Section):
    """A buying-group role: filled by a lead of one of these seniorities (from the job
    title) and, when listed, one of these departments (names checked where titles are
    read, `leadscore.data.accounts`)."""

    seniority: list[str]
    department: list[str] = Field(default_factory=list)


def _default_buying_group() -> dict[str, BuyingRole]:
    return {
        "decision_maker": BuyingRole(seniority=["c_level", "vp"]),
        "influencer": BuyingRole(seniority=["director", "manager"]),
        "user": BuyingRole(seniority=["individual"]),
    }


class AccountConfig(_Section):
    """Accounts: the company each lead belongs to (`source.attributes.account`, else the
    corporate e-mail domain) and what its colleagues did, as features of the lead model."""

    #: Account features in the lead model (sources with timed events; never flat exports).
    #: Opt-in while the service and partitioned scoring cannot read a whole account.
    features: bool = False
    #: E-mail domain → the account it belongs to (a subsidiary's or an alias's domain).
    domains: dict[str, str] = Field(default_factory=dict)
    #: A key shared by more leads is a mail provider, a reseller or a catch-all account:
    #: its leads are one-person accounts, with a warning naming it.
    max_leads: int = Field(2000, ge=2)
    #: The window of the per-activity-type counts across an account.
    kind_window_days: int = Field(30, ge=1)
    buying_group: dict[str, BuyingRole] = Field(default_factory=_default_buying_group)


class SnapshotConfig(_Section):
    every_days: int = Field(30, ge=1, description="days between snapshot dates")
    max_lead_age_days: int = Field(365, ge=1, description="older open leads are not scored")
    min_history_days: int = Field(30, ge=0, description="first snapshot this long after data start")
    sample_leads: int | None = Field(
        None,
        ge=1000,
        description="train on a seeded random sample of this many leads, with all their "
        "activities and outcomes (bounds training time and memory on a big history); "
        "scoring always reads every lead",
    )


class SplitConfig(_Section):
    """How examples are split into train / validation / calibration / test.

    `time` (snapshots by date, the `*_days` keys) needs timestamps and is what `auto` picks
    when there are any. Flat exports split by `order_column` (oldest first, the newest
    `test_share` are the test cohort) when one is given, else by a seeded random split.
    """

    method: Literal["auto", "time", "order", "random"] = "auto"
    test_days: int = Field(60, ge=1)
    calibration_days: int = Field(90, ge=1)
    validation_days: int = Field(60, ge=1)
    gap_days: int | None = Field(None, ge=0, description="default: the label horizon")
    #: Flat exports: a column that orders leads by arrival (a sequential number or a date).
    order_column: str | None = None
    seed: int = 0
    test_share: float = Field(0.2, gt=0, lt=0.5)
    calibration_share: float = Field(0.1, gt=0, lt=0.5)
    validation_share: float = Field(0.1, gt=0, lt=0.5)

    @model_validator(mode="after")
    def _shares_leave_training(self) -> SplitConfig:
        if self.test_share + self.calibration_share + self.validation_share > 0.7:
            raise ValueError("test_share + calibration_share + validation_share must be <= 0.7")
        return self


#: Words that, in a column name of a flat export, say the column holds the lead's latest state
#: (as of the export, so after the outcome): "Last Activity", "Lead Quality", "Tags", ...
DEFAULT_STATE_WORDS = (
    "last",
    "latest",
    "status",
    "stage",
    "tag",
    "tags",
    "quality",
    "score",
    "index",
    "rating",
    "grade",
    "profile",
    "owner",
    "disposition",
    "outcome",
    "result",
    "closed",
    "won",
    "lost",
)


class LeakageConfig(_Section):
    """The leakage guard: columns excluded before training unless listed under `keep`."""

    enabled: bool = True
    #: A column whose values alone rank validation leads this well is not a signal, it is
    #: the answer (sales tags). ROC-AUC of the column alone, fitted on train.
    max_single_auc: float = Field(0.9, gt=0.5, le=1)
    #: Share of training conversions carried by values that convert at >= 95 %.
    max_certain_share: float = Field(0.25, gt=0, le=1)
    #: Filled for converted leads at least this many times as often as for the others, and
    #: for fewer than half of the others: typically entered by sales after contact.
    max_fill_ratio: float = Field(2.0, gt=1)
    #: Share of converted leads whose timestamp column lies after their conversion.
    max_after_conversion: float = Field(0.5, gt=0, le=1)
    #: Flat exports have no time to prove a column was known before the outcome; columns
    #: whose names contain these words hold the lead's latest state. Empty list: off.
    state_words: list[str] = Field(default_factory=lambda: list(DEFAULT_STATE_WORDS))
    #: Columns kept even if flagged (you know they are known at scoring time).
    keep: list[str] = Field(default_factory=list)
    #: Columns always excluded.
    exclude: list[str] = Field(default_factory=list)


class ValidationConfig(_Section):
    """What happens to bad rows."""

    #: A CSV file: rows that fail a row check go there (with the reason) and the run goes
    #: on without them. None: any bad row stops the run.
    quarantine: str | None = None


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
    #: A YAML file of LightGBM parameters that replaces `params` (relative to the project
    #: file): what `leadscore tune` writes and points to.
    params_file: str | None = None
    #: lightgbm (boosted trees, `params`) or logistic (an L2 logistic regression on the
    #: same features: imputed, signed-log, standardised, one-hot; C chosen on validation).
    learner: Literal["lightgbm", "logistic"] = "lightgbm"
    #: Monotone constraints of the boosted trees, by model feature name: 1 (the odds never
    #: fall as it grows) or -1. Usually left empty here and declared in
    #: `backtest.monotone`, where the backtest tries them as a candidate.
    monotone: dict[str, Literal[-1, 1]] = Field(default_factory=dict)
    max_trees: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    calibration: Literal["auto", "isotonic", "sigmoid"] = "auto"
    num_threads: int = Field(1, ge=1)
    seed: int = 0


class BacktestConfig(_Section):
    """The rolling-origin backtest that evaluates the recipe, and the refit that follows it.

    Fold 1 is the newest labelled `split.test_days` (the test cohort); each further fold
    steps back `step_days` and is fitted only on snapshots whose outcomes were known
    `gap_days` before it starts, as if training had run then. Flat exports step back by
    `split.test_share` of the leads in arrival order (or take seeded blocks at random).
    """

    folds: int = Field(4, ge=1, le=12)
    #: Days between the folds' test windows (default: split.test_days, so they tile).
    step_days: int | None = Field(None, ge=1)
    #: Refit the champion on every labelled snapshot up to the newest (else the newest
    #: fold's model is registered, as fitted one step earlier).
    refit: bool = True
    #: Lead groups of the cross-fit: each member booster learns from the other groups and
    #: scores its own, so the calibrator sees scores of rows the model never learned from.
    groups: int = Field(2, ge=2, le=5)
    #: Older folds whose fitting part holds less than this share of the labelled examples
    #: are left out (said so in the run), as their models would learn from too little.
    min_fit_share: float = Field(0.25, gt=0, lt=1)
    #: The recipes the backtest compares, each cross-fitted and calibrated the same way:
    #: `project` (the `model` section); `shallow` (its trees cut to 3 leaves, with twice the
    #: rows per leaf, ten times the L2 penalty, half the features per tree and three times
    #: the learning rate: a more regularised fit for data that drifts or is small);
    #: `monotone` (the project's trees under `monotone`; skipped when that is empty);
    #: `logistic` (a logistic regression for the boosters; also the run's baseline).
    #: `shallow` is not in the default: with it the training step took 5.9x a single fit at
    #: 100k leads, and it won only ties on the data sets measured (docs/benchmarks.md).
    candidates: list[Literal["project", "shallow", "monotone", "logistic"]] = Field(
        default_factory=lambda: ["project", "monotone", "logistic"], min_length=1
    )
    #: Monotone constraints the `monotone` candidate tries, by model feature name (numeric
    #: features: counts, recencies, numeric attributes): 1 or -1. E.g.
    #: `{n_page_pricing_30d: 1}`: more pricing views never lower the odds.
    monotone: dict[str, Literal[-1, 1]] = Field(default_factory=dict)
    #: Resamples of leads for the 95 % intervals of each fold's ROC-AUC and PR-AUC.
    interval_samples: int = Field(200, ge=0, le=5000)
    #: What chooses among them, pooled over the folds: log_loss (lower is better; judges
    #: ranking and calibration at once), roc_auc or pr_auc.
    metric: Literal["log_loss", "roc_auc", "pr_auc"] = "log_loss"
    #: A difference no larger than this, in the metric's units, is a tie: the simpler
    #: recipe wins it (logistic, then shallow, then monotone, then project).
    tie_tolerance: float = Field(0.0005, ge=0)


class MlflowConfig(_Section):
    tracking_uri: str = "sqlite:///mlflow.db"
    #: Where a new experiment's artifacts go. A relative folder resolves against the project
    #: file; with a tracking server (http[s]://) a relative folder is ignored and the
    #: server's own artifact store is used (`mlflow server --artifacts-destination`).
    artifact_location: str = "mlartifacts"
    experiment: str = "leadscore"
    registered_model: str = "leadscore-conversion"


class PromotionConfig(_Section):
    """The gate a retrained model passes to become the champion.

    Both models are judged on the newest labelled cohort of the retraining (its test
    cohort): the challenger must beat the champion's ROC-AUC by `min_auc_gain` and its
    expected calibration error may not exceed the champion's by more than
    `max_ece_increase` (differences below ~0.005 are noise at a few thousand leads).
    """

    enabled: bool = True
    min_auc_gain: float = Field(0.005, ge=0, le=0.5)
    max_ece_increase: float = Field(0.005, ge=0, le=0.5)
    #: The promotion history, in the publish database.
    table: Identifier = "model_promotions"


class PublishConfig(_Section):
    """Where scores go (a database): latest per lead, every run, one row per run."""

    uri: str = "sqlite:///crm.db"
    table: Identifier = "lead_scores"
    history_table: Identifier = "lead_score_history"
    runs_table: Identifier = "lead_score_runs"
    #: Every version of the rule file a run was scored with: its SHA-256 and its text.
    rule_files_table: Identifier = "lead_score_rule_files"
    #: Another run of the same project holding the lock: wait this long, then exit cleanly.
    lock_wait_seconds: float = Field(0, ge=0)


class ScoringConfig(_Section):
    """Bounds of a scoring run's as-of date."""

    #: An as-of more than this many days after the newest timestamp in the source is
    #: refused: its behaviour features would be empty (a stale export, or a typo in
    #: --as-of), and its scores would stay in `lead_scores` as the newest.
    max_days_after_data: int = Field(7, ge=0, le=3650)
    #: Publish the rule file's scores alone (rule score, MQL flag, fired rules, tiers by rule
    #: points; no probability, `model_version` null) even when a champion model exists.
    #: Without a champion, and with no model's scores published yet, scoring does so anyway.
    rules_only: bool = False


class TierConfig(_Section):
    """Tiers A-D from the calibrated probability; three cut-offs separate four tiers.

    `by: share` - cumulative shares of each scoring run from the top (0.1, 0.3, 0.6: A is the
    top 10 %, B the next 20 %, ...); `by: count` - cumulative lead counts from the top (a
    sales team's capacity); `by: probability` - descending probability floors (A >= 0.3).
    """

    by: Literal["share", "count", "probability"] = "share"
    cutoffs: list[float] = Field(default_factory=lambda: [0.1, 0.3, 0.6])
    #: Rules-only scores (no model): tiers by rule points, three falling floors (A >= the
    #: first). None: A = the MQLs (the rule file's threshold), B from two thirds of it, C
    #: from one third, D below.
    rule_points: list[float] | None = None

    @model_validator(mode="after")
    def _cutoffs_make_sense(self) -> TierConfig:
        r = self.rule_points
        if r is not None and (len(r) != 3 or not r[0] >= r[1] >= r[2]):
            raise ValueError("rule_points needs three falling point floors, e.g. [50, 30, 10]")
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
    #: The pages' title; None: the catalogue's for `language` ("Lead scoring: model vs MQL rules").
    title: str | None = None
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
    #: The language of the report, the monthly review and the reasons' words (en | ja).
    language: Literal["en", "ja"] = "en"

    def heading(self, words) -> str:
        """The title pages show: the project's, else the catalogue's in `words`' language."""
        return self.title or words("report.default_title")


class ReviewConfig(_Section):
    """Marketing's monthly review (`leadscore review --month YYYY-MM`)."""

    #: The review's HTML file; `{month}` becomes the reviewed month (YYYY-MM).
    path: str = "leadscore-review-{month}.html"
    #: Months shown, the reviewed one last.
    months: int = Field(12, ge=1, le=60)
    #: Days on each side of the last rule file change that its before/after compares.
    effect_days: int = Field(90, ge=7, le=730)
    #: Activity types that are sales touches. The SLA section measures the time from a lead
    #: becoming an MQL (or tier A) to the first of them; none in the data: no SLA section.
    touch_types: list[str] = Field(default_factory=lambda: ["call", "sales_email", "meeting"])
    #: Response-time targets: minutes "5m", hours "1h", days "1d", business days "1bd"
    #: (24 hours counted Monday to Friday).
    sla_targets: list[str] = Field(default_factory=lambda: ["5m", "1h", "1bd"])
    #: The sales team's time zone (IANA name): its weekends bound business days, and
    #: `--month previous` is the month before today there.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return known_time_zone(value, "review.timezone")

    @field_validator("sla_targets")
    @classmethod
    def _targets_read(cls, value: list[str]) -> list[str]:
        for text in value:
            response_target(text)
        return value


#: A response-time target: a number and a unit (m, min, h, d, bd).
_RESPONSE_TARGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|bd)\s*$")


def response_target(text: str) -> tuple[float, bool]:
    """Minutes of a response-time target ("5m", "1h", "1d", "1bd"), and whether they count
    business time only (bd: Monday to Friday)."""
    found = _RESPONSE_TARGET.match(str(text))
    if not found:
        raise ValueError(
            f"'{text}' is not a response time; write minutes, hours, days or business days, "
            'e.g. "5m", "1h", "1d", "1bd"'
        )
    unit = found.group(2)
    per = {"m": 1.0, "min": 1.0, "h": 60.0, "d": 1440.0, "bd": 1440.0}[unit]
    return float(found.group(1)) * per, unit == "bd"


class MonitoringConfig(_Section):
    """Checks on every scoring run: volume, score distribution, input drift, realised quality.

    Each check is ok, warn, fail or skip (could not be judged: no previous run, a model
    trained before references were kept, or no scored run whose outcome window has closed).
    """

    enabled: bool = True
    #: Quantile bins per numeric input (fewer when values tie); also the number of top
    #: categories kept per categorical input (the rest is "other"; missing is its own bin).
    psi_bins: int = Field(10, ge=2, le=50)
    #: Population stability index of an input against the training rows: the usual reading
    #: is < 0.1 stable, 0.1-0.25 worth a look, > 0.25 a real shift.
    psi_warn: float = Field(0.1, gt=0)
    psi_fail: float = Field(0.25, gt=0)
    #: Inputs allowed above psi_fail (they warn) before the run fails. 0: any input shifted
    #: that far fails: the model was fitted on a clearly different population of it.
    max_drifted_features: int = Field(0, ge=0)
    #: Fail when a run scores fewer open leads than this share of the previous run (a broken
    #: extract); warn when it scores more than the inverse (duplicates, a bulk import).
    min_row_ratio: float = Field(0.5, gt=0, lt=1)
    #: Realised quality of the newest published run whose outcome window has closed.
    min_realised_auc: float = Field(0.6, gt=0.5, le=1)
    max_realised_ece: float = Field(0.05, gt=0, lt=1)
    #: Judge realised quality only on at least this many leads and conversions: with 200
    #: leads a perfectly calibrated model shows an ECE above 0.05 in up to a third of runs
    #: (10 % base rate), with 1,000 in none of 300 simulated runs.
    min_realised_leads: int = Field(1000, ge=1)
    min_realised_conversions: int = Field(30, ge=1)
    #: Database table (next to publish.table) that keeps one row per check and run.
    table: Identifier = "score_monitoring"

    @model_validator(mode="after")
    def _warn_below_fail(self) -> MonitoringConfig:
        if self.psi_warn >= self.psi_fail:
            raise ValueError(f"psi_warn ({self.psi_warn}) must be below psi_fail ({self.psi_fail})")
        return self


class ServiceConfig(_Section):
    """Who may call `leadscore serve`, and what it records of them."""

    #: `keys`: every call but /health needs an API key (`leadscore keys create`) with the
    #: scope of what it asks for; `off`: no check (a service only this machine can reach).
    auth: Literal["keys", "off"] = "keys"
    #: The keys, in the publish database.
    keys_table: Identifier = "api_keys"
    #: Requests per minute a new key may make (each key keeps its own, `--rate`).
    rate_per_minute: int = Field(600, ge=1, le=1_000_000)
    #: One JSON line per call (time, key id and name, method, route, status, milliseconds;
    #: never a payload or a lead id), relative to the project file; null: none.
    audit_log: str | None = "leadscore-audit.log"
    #: How often the service asks the registry which version the champion alias names; a
    #: newly promoted model is served from then on, without a restart (0: never).
    champion_poll_seconds: float = Field(30.0, ge=0, le=86_400)
    #: Activities posted to `POST /events`, in the publish database; every read of the
    #: source adds them to its activities (null: no events are taken or read).
    events_table: Identifier | None = "lead_events"


class AlertSink(_Section):
    """One place hot-lead alerts go: a webhook that takes a JSON POST."""

    #: How `leadscore alerts` names it; part of each outbox row's key.
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: The webhook's address; `${NAME}` takes it from the environment (a Slack webhook's
    #: address is itself a secret). Only its scheme and host are ever shown.
    url: str = Field(pattern=r"^https?://")
    #: `json`: leadscore's payload; `slack`: a Slack-compatible `{"text": ...}` message.
    format: Literal["json", "slack"] = "json"
    #: The HMAC-SHA256 key the receiver verifies the signature with, always as `${NAME}`.
    secret: str | None = None


class AlertConfig(_Section):
    """Alerts when a lead turns hot, written with the scores and delivered from an outbox."""

    #: Where alerts go (none: no alerts), e.g.
    #: [{name: crm, url: "${CRM_HOOK_URL}", format: json, secret: "${ALERT_SECRET}"}]
    sinks: list[AlertSink] = []
    #: What makes a lead hot: entering tier A, becoming an MQL by the rules, or its
    #: probability rising by `rise` or more since the previous scoring run.
    triggers: list[Literal["tier_a", "mql", "rise"]] = ["tier_a", "mql", "rise"]
    rise: float = Field(0.10, gt=0, le=1)
    #: The outbox, in the publish database.
    table: Identifier = "score_alerts"
    #: A delivery that fails is tried again after these waits (the last one repeats) ...
    backoff_seconds: list[float] = Field([10, 60, 300, 1800, 7200], min_length=1)
    #: ... until this many attempts have failed: then it is `failed` (`leadscore alerts`).
    max_attempts: int = Field(8, ge=1, le=1000)
    #: How long a scoring run keeps retrying before it leaves the rest to
    #: `leadscore alerts --deliver` (a cron or a service every few minutes).
    deliver_seconds: float = Field(30, ge=0)
    timeout_seconds: float = Field(10, gt=0)
    #: A delivery whose process died mid-send is sent again after this long (at least once).
    claim_timeout_seconds: float = Field(300, gt=0)
    #: The words of the alerts (en | ja); unset in the project file: `report.language`.
    language: Literal["en", "ja"] = "en"

    @model_validator(mode="after")
    def _unique_sinks(self) -> AlertConfig:
        names = [s.name for s in self.sinks]
        if len(set(names)) < len(names):
            raise ValueError(f"alert sink names must differ: {names}")
        return self


class ScaleConfig(_Section):
    """Scoring in lead partitions: bounded memory on one machine, or spread over Dask.

    With more than one partition the source folder is staged once, split by lead, and each
    partition is read, checked and scored on its own; percentiles and tiers are ranked over
    all leads afterwards, so the published scores equal an unpartitioned run's.
    """

    partitions: int = Field(
        1, ge=1, le=4096, description="lead partitions for scoring (1 = read the source whole)"
    )
    dask: str | None = Field(
        None,
        description="run the scoring partitions and the backtest folds of training on Dask: "
        '"local" (a LocalCluster) or a scheduler address such as tcp://10.0.0.5:8786',
    )
    staging_dir: str = Field(
        ".leadscore-partitions",
        description="where partitions are staged; Dask workers must see the same path",
    )
    monitoring_rows: int = Field(
        200_000, ge=1000, description="rows sampled across partitions for the drift checks"
    )


class ProjectConfig(_Section):
    """A validated leadscore project."""

    source: SourceConfig = SourceConfig()
    horizon_days: int = Field(90, ge=1, description="label: converted within this many days")
    snapshots: SnapshotConfig = SnapshotConfig()
    split: SplitConfig = SplitConfig()
    features: FeatureConfig = FeatureConfig()
    accounts: AccountConfig = AccountConfig()
    rules: str = "mql_rules.yaml"
    model: ModelConfig = ModelConfig()
    backtest: BacktestConfig = BacktestConfig()
    mlflow: MlflowConfig = MlflowConfig()
    promotion: PromotionConfig = PromotionConfig()
    publish: PublishConfig = PublishConfig()
    scoring: ScoringConfig = ScoringConfig()
    tiers: TierConfig = TierConfig()
    report: ReportConfig = ReportConfig()
    review: ReviewConfig = ReviewConfig()
    leakage: LeakageConfig = LeakageConfig()
    validation: ValidationConfig = ValidationConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    alerts: AlertConfig = AlertConfig()
    service: ServiceConfig = ServiceConfig()
    scale: ScaleConfig = ScaleConfig()
    #: Directory that relative paths resolve against (the project file's folder).
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _alerts_speak_the_reports_language(cls, data: Any) -> Any:
        """Alerts are written in `report.language` unless `alerts.language` says otherwise."""
        if not isinstance(data, dict) or not isinstance(data.get("report"), dict):
            return data
        language = data["report"].get("language")
        alerts = data.get("alerts")
        if language is None or not isinstance(alerts, dict | None):
            return data
        if alerts is None or "language" not in alerts:
            return {**data, "alerts": {**(alerts or {}), "language": language}}
        return data

    @model_validator(mode="after")
    def _gap_covers_the_horizon(self) -> ProjectConfig:
        # A shorter gap lets labels of fitting cohorts reach past the first test snapshot.
        if self.split.gap_days is not None and self.split.gap_days < self.horizon_days:
            raise ValueError(
                f"split.gap_days ({self.split.gap_days}) must be at least horizon_days "
                f"({self.horizon_days}), or outcomes after the test snapshot leak into fitting"
            )
        return self

    @model_validator(mode="after")
    def _flat_or_timed(self) -> ProjectConfig:
        src, split = self.source, self.split
        if src.label is not None:
            if src.tables.outcomes is not None:
                raise ValueError(
                    "source.label (a label column) and source.tables.outcomes (conversion "
                    "timestamps) exclude each other: set tables.outcomes to null, or drop label"
                )
            if src.tables.activities is not None:
                raise ValueError(
                    "source.label (a flat export) cannot use an activities table: without "
                    "conversion times, activities after the outcome would leak into features. "
                    "Set source.tables.activities to null, or give conversion timestamps"
                )
            if split.method == "time":
                raise ValueError(
                    "split.method 'time' needs conversion timestamps; a label column splits by "
                    "'order' (split.order_column) or 'random'"
                )
        else:
            missing = [k for k in ("created_at", "converted_at") if getattr(src.columns, k) is None]
            if missing:
                raise ValueError(
                    f"source.columns.{missing[0]} is null: without timestamps, give a label "
                    "column under source.label (a flat export)"
                )
            if split.method in ("order", "random"):
                raise ValueError(
                    f"split.method '{split.method}' is for flat exports (source.label); "
                    "timestamped data splits by time"
                )
        if split.method == "order" and split.order_column is None:
            raise ValueError("split.method 'order' needs split.order_column")
        return self

    @property
    def flat(self) -> bool:
        """A flat export: one example per lead, a label column, no snapshots."""
        return self.source.label is not None

    @property
    def split_method(self) -> str:
        """The split actually used: time, order or random."""
        if self.split.method != "auto":
            return self.split.method
        if not self.flat:
            return "time"
        return "order" if self.split.order_column else "random"

    @property
    def quarantine_path(self) -> Path | None:
        q = self.validation.quarantine
        return None if q is None else self.resolve_path(q)

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
    def artifact_location(self) -> str | None:
        loc = self.mlflow.artifact_location
        if "://" in loc:
            return loc
        if self.tracking_uri.startswith(("http://", "https://")):
            return None  # the tracking server proxies artifacts to its own store
        return self.resolve_path(loc).as_uri()

    @property
    def rules_path(self) -> Path:
        return self.resolve_path(self.rules)

    @property
    def report_path(self) -> Path:
        return self.resolve_path(self.report.path)

    def review_path(self, month: str) -> Path:
        """The review of `month` (YYYY-MM)."""
        return self.resolve_path(self.review.path.replace("{month}", month))


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
