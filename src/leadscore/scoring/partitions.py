"""Lead partitions: score a source bigger than memory, one slice of leads at a time.

The source folder is staged once: every table is streamed in chunks and each row goes to
the partition of its lead, so a lead's row, activities and outcomes always land together.
Each partition is then an ordinary source folder, read, checked and scored by the same
functions as a whole source (`load_crm`, `Scorer.score_partial`). Only what ranks leads
against each other (percentile, tier) and the run's monitoring are done once, over all
partitions, so the published scores equal an unpartitioned run's.

Partitions are independent, which is what lets Dask run them on several machines
(`scale.dask`); on one machine they run one after the other and memory is bounded by the
largest partition.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from leadscore.config import FeatureConfig, ProjectConfig
from leadscore.data.accounts import AccountSpec, account_keys
from leadscore.errors import ConfigError, DataError
from leadscore.io.sources import CRMData, load_crm
from leadscore.io.tables import lead_id_text, table_file
from leadscore.io.uris import check_file_table, is_database_uri, redact_uri
from leadscore.progress import reporter
from leadscore.scoring.inputs import activity_types, check_inputs
from leadscore.scoring.scorer import Scorer, no_open_leads, open_leads

#: Rows read from the source per chunk while staging (bounds the staging memory).
CHUNK_ROWS = 1_000_000


_INTEGER_TEXT = r"^(-?)0*(\d+?)(?:\.0*)?$"


def partition_of(ids: pd.Series | np.ndarray, count: int) -> np.ndarray:
    """The partition (0 … count-1) of each lead id, stable across processes and machines.

    Ids the source may treat as the same lead get the same partition whatever their type:
    42, 42.0, "42", " 42 " and "042" all hash as the integer 42 (exactly: no float on the
    way, whatever the number of digits), other text as its stripped text.
    """
    ids = pd.Series(ids)
    if pd.api.types.is_integer_dtype(ids):
        values = ids.to_numpy(dtype=np.int64)
        hashed = pd.util.hash_array(values)
        big = np.abs(values) >= 10**18  # hashed as their digits, like such long text ids
        if big.any():
            hashed[big] = pd.util.hash_array(values[big].astype(str).astype(object))
        return (hashed % np.uint64(count)).astype(np.int32)
    if pd.api.types.is_float_dtype(ids):
        whole = ids.notna() & (ids % 1 == 0)
        ids = ids.astype(object).where(~whole, ids[whole].map(lambda v: str(int(v))))
    text = ids.astype("str").str.strip()
    parts = text.str.extract(_INTEGER_TEXT)
    digits = (parts[0].fillna("") + parts[1]).where(parts[1].notna())
    number = digits.notna() & (digits.str.len() <= 18)
    hashed = pd.util.hash_array(digits.where(digits.notna(), text).to_numpy(dtype=object))
    if number.any():
        exact = digits[number].astype(np.int64).to_numpy()
        hashed[number.to_numpy()] = pd.util.hash_array(exact)
    return (hashed % np.uint64(count)).astype(np.int32)


@dataclass(frozen=True)
class Partition:
    """One staged slice of the source: a folder with the source's tables for its leads."""

    index: int
    count: int
    folder: str
    #: Rows of the leads table staged here (0: nothing to read or score).
    leads: int = 0


def _tables(config: ProjectConfig) -> dict[str, str]:
    """Table name → its lead id column, for the tables a scoring run reads."""
    t, c = config.source.tables, config.source.columns
    out = {t.leads: c.lead_id}
    if t.activities is not None:
        out[t.activities] = c.activity_lead_id
    if t.outcomes is not None:
        out[t.outcomes] = c.outcome_lead_id
    return out


def staging_folder(config: ProjectConfig, as_of: pd.Timestamp) -> Path:
    """One folder per publish table and as-of date (a run of it holds the publish lock)."""
    name = f"{config.publish.table}-as-of-{as_of.date()}"
    return config.resolve_path(config.scale.staging_dir) / name


def stage(
    config: ProjectConfig,
    since: pd.Timestamp | None,
    until: pd.Timestamp | None,
    folder: Path,
    accounts: tuple[AccountSpec, FeatureConfig] | None = None,
) -> list[Partition]:
    """Split the source folder into `scale.partitions` folders of Parquet files.

    With `accounts` (a model's account spec and feature settings), the leads of one account
    share a partition, and so do their activities and outcomes: a lead's colleagues are
    scored beside it (see `account_partitions`).

    Only activities in [since - 1 day, until + 1 day) are kept when the source stores
    their time as a timestamp (the exact window is applied when a partition is read).
    Memory holds one chunk of `CHUNK_ROWS` rows, whatever the size of the source.
    """
    progress = reporter()
    uri = config.source_uri
    if is_database_uri(uri):
        raise ConfigError(
            f"scale.partitions / scale.dask need a source folder of Parquet files; "
            f"the source is the database {redact_uri(uri)}",
            "export the tables to Parquet (one file per table) and point source.uri at the "
            "folder, or set scale.partitions: 1 and scale.dask: null",
        )
    if config.flat:
        raise ConfigError(
            "scale.partitions / scale.dask are for sources with an activities table; a flat "
            "export (source.label) is one table, read whole",
            "set scale.partitions: 1 and scale.dask: null",
        )
    source = Path(uri)
    if not source.is_dir():
        raise DataError(
            f"source folder {source} does not exist",
            "set source.uri to a folder of .parquet files (one per table)",
        )
    tables = {check_file_table(t): column for t, column in _tables(config).items()}
    for table in tables:
        if (source / f"{table}.parquet").is_file():
            continue
        csv = source / f"{table}.csv"
        raise DataError(
            # A CSV has no types: read per partition, a column's type (text or number, a
            # date format) could be guessed differently than for the whole file.
            f"scale.partitions / scale.dask need Parquet files; {csv.name} is a CSV"
            if csv.is_file()
            else f"table '{table}' not found: no {table}.parquet in {source}",
            f"convert the table to Parquet once (with DuckDB: COPY (SELECT * FROM "
            f"'{table}.csv') TO '{table}.parquet'), or set scale.partitions: 1",
        )
    count = config.scale.partitions
    if folder.exists():
        shutil.rmtree(folder)
    parts = [folder / f"part-{k:04d}" for k in range(count)]
    for part in parts:
        part.mkdir(parents=True)
    window_column = config.source.columns.occurred_at
    leads = np.zeros(count, dtype=np.int64)
    assign = None
    if accounts is not None:
        leads_file = source / f"{check_file_table(config.source.tables.leads)}.parquet"
        assign = account_partitions(leads_file, config, *accounts, count)
    for step, (table, id_column) in enumerate(tables.items()):
        progress("staging partitions", step, len(tables))
        window = (window_column, since, until) if table == config.source.tables.activities else None
        rows = _stage_parquet(source / f"{table}.parquet", table, id_column, window, parts, assign)
        if table == config.source.tables.leads:
            leads = rows
    progress("staging partitions", len(tables), len(tables))
    names = config.source.activity_types
    if names is not None:  # the table of activity type names is small: each partition has it
        lookup = table_file(source, check_file_table(names.table))
        if lookup is None:
            raise DataError(
                f"table '{names.table}' (source.activity_types.table) not found in {source}",
                "export the activity types into that folder, or correct the table name",
            )
        for part in parts:
            shutil.copy2(lookup, part / lookup.name)
    return [
        Partition(k, count, str(p), int(n))
        for k, (p, n) in enumerate(zip(parts, leads, strict=True))
    ]


def _missing_id(table: str, column: str, found: list[str]) -> DataError:
    return DataError(
        f"table '{table}' has no column '{column}' (it has {', '.join(found)})",
        "map source.columns to the lead id column of that table",
    )


def _stage_parquet(
    path: Path,
    table: str,
    id_column: str,
    window: tuple[str, pd.Timestamp | None, pd.Timestamp | None] | None,
    parts: list[Path],
    assign: Callable[[pd.Series, int], np.ndarray] | None = None,
) -> np.ndarray:
    """Stream one Parquet table into the partitions (by `assign`, default `partition_of`
    of the lead id); returns the rows each received."""
    assign = assign or partition_of
    written = np.zeros(len(parts), dtype=np.int64)
    try:
        dataset = pads.dataset(path, format="parquet")
    except Exception as exc:
        raise DataError(
            f"cannot read {path}: {type(exc).__name__}: {exc}",
            "check that the file is a valid Parquet file",
        ) from None
    schema = dataset.schema
    if id_column not in schema.names:
        raise _missing_id(table, id_column, schema.names)
    expression = None
    if window is not None and window[0] in schema.names:
        column, since, until = window
        kind = schema.field(column).type
        if pa.types.is_timestamp(kind):
            for bound, pad, lower in ((since, -1, True), (until, 1, False)):
                if bound is None:
                    continue
                value = pd.Timestamp(bound) + pd.Timedelta(days=pad)
                if kind.tz is not None and value.tzinfo is None:
                    value = value.tz_localize("UTC")
                scalar = pa.scalar(value.to_pydatetime(), type=kind)
                term = pads.field(column) >= scalar if lower else pads.field(column) < scalar
                expression = term if expression is None else expression & term
    writers = [pq.ParquetWriter(p / f"{table}.parquet", schema) for p in parts]
    try:
        batches = dataset.to_batches(
            filter=expression, batch_size=CHUNK_ROWS, batch_readahead=2, fragment_readahead=1
        )  # a little read-ahead, not the default 16 batches: memory stays at a few chunks
        for batch in batches:
            if batch.num_rows == 0:
                continue
            ids = batch.column(schema.get_field_index(id_column)).to_pandas()
            for k, rows in _split(assign(ids, len(parts))):
                writers[k].write_table(pa.Table.from_batches([batch]).take(rows))
                written[k] += len(rows)
    finally:
        for writer in writers:
            writer.close()
    return written


def _same_lead(ids: pd.Series) -> pd.Series:
    """Ids as `partition_of` matches them: 42, 42.0, "42" and " 042 " are one lead."""
    text = lead_id_text(pd.Series(ids)).str.strip()
    parts = text.str.extract(_INTEGER_TEXT)
    digits = (parts[0].fillna("") + parts[1]).where(parts[1].notna())
    return digits.where(digits.notna(), text)


def account_partitions(
    leads_file: Path,
    config: ProjectConfig,
    spec: AccountSpec,
    features: FeatureConfig,
    count: int,
) -> Callable[[pd.Series, int], np.ndarray]:
    """Partition by account: each lead goes where its account key hashes (a lead of no
    account where its id does), read once from the leads file's key columns; rows of
    any table then follow their lead's partition (rows of no lead go by their id)."""
    attrs = config.source.attributes
    id_column = config.source.columns.lead_id
    names = pq.read_schema(leads_file).names
    columns = [c for c in dict.fromkeys([id_column, spec.column, attrs.email]) if c in names]
    leads = pq.read_table(leads_file, columns=columns).to_pandas()
    # A crowded key's leads stay together too (no max_leads here), so each partition sees
    # it crowded exactly when the whole source does, and gives them no account alike.
    keys = account_keys(leads, spec.column, attrs.email, features, spec.domains, 2**62)
    grouped = keys.codes >= 0
    where = partition_of(leads[id_column], count)
    where[grouped] = partition_of(pd.Series(keys.names[grouped], dtype="str"), count)
    lookup = pd.Series(where, index=pd.Index(_same_lead(leads[id_column])))
    lookup = lookup[~lookup.index.duplicated()]

    def assign(ids: pd.Series, parts: int) -> np.ndarray:
        found = lookup.reindex(_same_lead(pd.Series(ids))).to_numpy(dtype=float)
        own = np.isnan(found)
        out = np.where(own, 0, found).astype(np.int32)
        if own.any():
            out[own] = partition_of(pd.Series(ids)[own], parts)
        return out

    return assign


def _split(partition: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(partition, row positions in source order) for every partition with rows."""
    order = np.argsort(partition, kind="stable")
    keys = partition[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    for start, end in zip(starts, ends, strict=True):
        yield int(keys[start]), order[start:end]


@dataclass
class PartitionResult:
    """What one partition sends back: its leads' scores, a row sample, its outcomes."""

    index: int
    scores: pd.DataFrame
    rows: pd.DataFrame
    outcomes: pd.DataFrame
    flat: bool
    warnings: list[str] = field(default_factory=list)
    #: The activity types in this partition's rows (the source is checked as a whole).
    activity_types: tuple[str, ...] = ()


def partition_config(config: ProjectConfig, part: Partition) -> ProjectConfig:
    """The project, reading this partition's folder (quarantined rows kept per partition)."""
    update: dict = {"source": config.source.model_copy(update={"uri": part.folder})}
    if config.validation.quarantine is not None:
        path = config.quarantine_path  # bad_rows.csv → bad_rows.part-0003.leads.csv, …
        quarantine = path.with_name(f"{path.stem}.part-{part.index:04d}{path.suffix}")
        update["validation"] = config.validation.model_copy(update={"quarantine": str(quarantine)})
    return config.model_copy(update=update)


def score_partition(
    part: Partition, scorer: Scorer, since: pd.Timestamp | None, as_of: pd.Timestamp
) -> PartitionResult:
    """Read, check and score one partition, exactly as a whole source would be."""
    config = scorer.config
    if part.leads == 0:  # more partitions than leads, or an unlucky hash: nothing here
        return PartitionResult(
            part.index,
            pd.DataFrame(columns=SCORE_PARTIAL_COLUMNS),
            pd.DataFrame(),
            pd.DataFrame(),
            config.flat,
        )
    local = partition_config(config, part)
    try:
        crm = load_crm(local, activities_since=since, activities_until=as_of)
    except DataError as exc:
        # Row numbers count rows of the staged partition file, kept for inspection.
        raise DataError(
            f"lead partition {part.index + 1} of {part.count} ({part.folder}): {exc.problem}",
            exc.fix,
            transient=exc.transient,
        ) from None
    snap = open_leads(crm, as_of, config)
    if snap.empty:
        scores = pd.DataFrame(columns=SCORE_PARTIAL_COLUMNS)
        rows = pd.DataFrame()
    else:
        scores, rows = scorer.score_partial(crm, snap)
        share = max(1, -(-config.scale.monitoring_rows // part.count))  # at least one row
        if len(rows) > share:
            keep = np.sort(
                np.random.default_rng(part.index).choice(len(rows), share, replace=False)
            )
            rows = rows.iloc[keep].reset_index(drop=True)
    return PartitionResult(
        index=part.index,
        scores=scores,
        rows=rows,
        outcomes=crm.outcomes,
        flat=crm.flat,
        warnings=crm.checks.summary(),
        activity_types=activity_types(crm.activities),
    )


SCORE_PARTIAL_COLUMNS = [
    "lead_id",
    "as_of",
    "conversion_probability",
    "rule_score",
    "is_mql",
    "rules_fired",
    "reasons_up",
    "reasons_down",
]


def combine(
    results: list[PartitionResult], scorer: Scorer, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame, CRMData]:
    """All partitions' scores with percentiles and tiers over all leads, the monitoring row
    sample, and the outcomes (for monitoring's realised quality) as a CRMData.

    The source is checked as a whole first, as an unpartitioned run checks it (an empty
    activities window, rules on activity types the data never had)."""
    config = scorer.config
    results = sorted(results, key=lambda r: r.index)
    flat = any(r.flat for r in results)
    types = tuple(sorted({t for r in results for t in r.activity_types}))
    window = (as_of - pd.Timedelta(days=scorer.lookback_days), as_of)
    check_inputs(
        scorer.rules,
        config,
        flat,
        types,
        scorer.known_activity_types,
        scorer.needs_activities,
        window,
    )
    filled = [r.scores for r in results if len(r.scores)]
    if not filled:
        raise no_open_leads(flat, config, as_of)
    partial = pd.concat(filled, ignore_index=True)
    scores = scorer.finish(partial)
    rows = pd.concat([r.rows for r in results if len(r.rows)] or [pd.DataFrame()])
    rows = rows.reset_index(drop=True)
    outcomes = pd.concat([r.outcomes for r in results if len(r.outcomes.columns)])
    outcomes = outcomes.reset_index(drop=True)
    leads = pd.DataFrame({"lead_id": scores["lead_id"]})
    if flat:
        leads["converted"] = np.nan
    empty = pd.DataFrame(
        {"lead_id": pd.Series(dtype="str"), "occurred_at": pd.Series(dtype="datetime64[us]")}
    )
    crm = CRMData(
        leads=leads, activities=empty, outcomes=outcomes, source=redact_uri(config.source_uri)
    )
    return scores, rows, crm


def partitioned(config: ProjectConfig) -> bool:
    """Does this project score its source in lead partitions (or on Dask)?"""
    return config.scale.partitions > 1 or config.scale.dask is not None


RunPartitions = Callable[[list[Partition]], list[PartitionResult]]
ScoreOne = Callable[[Partition, Scorer, pd.Timestamp, pd.Timestamp], PartitionResult]


def score_partitions(
    scorer: Scorer,
    since: pd.Timestamp,
    as_of: pd.Timestamp,
    score_one: ScoreOne | None = None,
    run_all: RunPartitions | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, CRMData]:
    """Stage the source by lead, score every partition, rank all leads together.

    By default the partitions are scored one after the other on this machine, so memory
    holds one partition, each with `score_one` (`score_partition`, or a flow's task of
    it); `run_all` scores them all at once instead (e.g. as tasks on a Dask cluster). The
    staged folder is kept when a partition fails (its error names the staged file) and
    removed with `remove_staging` once the scores are published.
    """
    config = scorer.config
    model = scorer.model
    accounts = model.features.accounts if model is not None else None
    by_account = (
        (accounts, model.features.feature_config)
        if accounts is not None and accounts.enabled
        else None
    )
    parts = stage(config, since, as_of, staging_folder(config, as_of), by_account)
    if run_all is not None:
        results = run_all(parts)
    else:
        score_one = score_one or score_partition
        report = reporter()
        results = []
        for n, part in enumerate(parts):
            report("scoring partitions", n, len(parts))
            results.append(score_one(part, scorer, since, as_of))
        report("scoring partitions", len(parts), len(parts))
    return combine(results, scorer, as_of)


def remove_staging(config: ProjectConfig, as_of: pd.Timestamp) -> None:
    """The staged partitions of a run whose scores are published."""
    shutil.rmtree(staging_folder(config, as_of), ignore_errors=True)
