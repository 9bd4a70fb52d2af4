"""Lead partitions and Dask: the same scores as reading the source whole, with less memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.config import config_from_dict
from leadscore.errors import ConfigError, DataError
from leadscore.scoring import partitions

AS_OF = pd.Timestamp("2026-06-30")


def test_a_lead_has_one_partition_whatever_the_type_of_its_id() -> None:
    same = [
        partitions.partition_of(pd.Series([42, 7, 123456789012]), 16),
        partitions.partition_of(pd.Series([42.0, 7.0, 123456789012.0]), 16),
        partitions.partition_of(pd.Series(["42", " 7", "123456789012 "]), 16),
        partitions.partition_of(pd.Series(["42", "7", "123456789012"], dtype="category"), 16),
    ]
    for other in same[1:]:
        np.testing.assert_array_equal(same[0], other)
    text = partitions.partition_of(pd.Series(["L-1", " L-1", "L-2"]), 16)
    assert text[0] == text[1]


def test_partitions_are_balanced_and_stable() -> None:
    ids = pd.Series([f"lead-{i}" for i in range(20_000)])
    part = partitions.partition_of(ids, 8)
    counts = np.bincount(part, minlength=8)
    assert counts.min() > 0.9 * 2_500 and counts.max() < 1.1 * 2_500
    # A fixed function of the id (not of the process: Dask workers must agree).
    np.testing.assert_array_equal(part, partitions.partition_of(ids.iloc[::-1], 8)[::-1])
    assert partitions.partition_of(pd.Series(["lead-0", "lead-1", "lead-2"]), 8).tolist() == (
        part[:3].tolist()
    )


def test_a_database_source_is_refused_with_the_fix(tmp_path) -> None:
    config = config_from_dict(
        {"source": {"uri": "sqlite:///crm.db"}, "scale": {"partitions": 4}}, tmp_path, "t", {}
    )
    with pytest.raises(ConfigError, match="Parquet"):
        partitions.stage(config, None, AS_OF, tmp_path / "staged")


def test_a_table_name_with_a_path_is_refused_before_staging(tmp_path) -> None:
    (tmp_path / "src").mkdir()
    config = config_from_dict(
        {
            "source": {"uri": str(tmp_path / "src"), "tables": {"activities": "../secret"}},
            "scale": {"partitions": 2},
        },
        tmp_path,
        "t",
        {},
    )
    with pytest.raises(DataError, match="not a plain file name"):
        partitions.stage(config, None, AS_OF, tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


def test_ids_hash_exactly_whatever_their_length() -> None:
    big = 1234567890123456789  # above 2**53: a float would round it
    as_int = partitions.partition_of(pd.Series([big, big + 1]), 997)
    as_text = partitions.partition_of(pd.Series([str(big), f" {big + 1}", ""]), 997)
    np.testing.assert_array_equal(as_int, as_text[:2])
