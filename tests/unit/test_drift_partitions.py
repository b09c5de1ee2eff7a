"""Row-partitioned drift checks: merged partition statistics give exactly the single-pass result."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops_provider.core.drift import DriftInputError, _column_stats, build_profile, check_drift
from mlops_provider.core.drift_partitions import (
    check_drift_merged,
    merge_partitions,
    partition_bounds,
    partition_stats,
)


def frame(seed: int, n: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    x[rng.random(n) < 0.02] = np.nan
    x[:3] = [np.inf, -np.inf, np.nan] if n > 3 else x[:3]
    return pd.DataFrame(
        {
            "x": x,
            "rounded": np.round(rng.normal(10 + shift, 2, n), 1),   # many duplicates: counts form
            "small_int": rng.integers(0, 5 + int(shift), n),        # categorical (<= 10 values)
            "big_int": rng.integers(0, 10_000, n),                  # numerical
            "city": rng.choice(["a", "b", "c"] if not shift else ["b", "c", "d"], n).astype(object),
            "cat": pd.Categorical(rng.choice(["u", "v", "w"], n), categories=["u", "v", "w"]),
            "flag": rng.random(n) < (0.3 + 0.2 * shift),
            "when": pd.date_range("2026-01-01", periods=n, freq="min"),
        }
    )


def parts_of(df: pd.DataFrame, n: int) -> list[dict]:
    # through JSON, as the mapped tasks exchange them (files)
    return [json.loads(json.dumps(partition_stats(df.iloc[a:b]))) for a, b in partition_bounds(len(df), n)]


def test_partition_bounds_cover_all_rows():
    assert partition_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert partition_bounds(2, 5) == [(0, 1), (1, 2)]
    with pytest.raises(DriftInputError):
        partition_bounds(10, 0)


@pytest.mark.parametrize("n_parts", [1, 2, 3, 7])
def test_merged_statistics_equal_a_single_pass(n_parts):
    df = frame(1, 2000, shift=0.5)
    merged, rows, columns = merge_partitions(parts_of(df, n_parts))
    assert rows == len(df) and columns == list(df.columns)
    for name in df.columns:
        one, many = _column_stats(df[name], name), merged[name]
        assert (one.dtype, one.n_rows, one.n_valid, one.column_type, one.n_unique) == (
            many.dtype, many.n_rows, many.n_valid, many.column_type, many.n_unique), name
        if one.is_numeric:
            np.testing.assert_array_equal(one.values, many.values)
            assert (one.counts is None) == (many.counts is None), name
            if one.counts is not None:
                np.testing.assert_array_equal(one.counts, many.counts)
        else:
            assert dict(zip(one.keys, one.counts.tolist(), strict=True)) == dict(
                zip(many.keys, many.counts.tolist(), strict=True)), name


@pytest.mark.parametrize("shift", [0.0, 1.0])
@pytest.mark.parametrize("n_parts", [2, 5])
def test_verdicts_identical_to_check_drift_on_the_whole_batch(shift, n_parts):
    reference = build_profile(frame(0, 3000))
    current = frame(2, 2500, shift=shift)
    single = check_drift(reference, current).to_summary()
    merged = check_drift_merged(reference, parts_of(current, n_parts)).to_summary()
    assert merged == single
    assert single["dataset_drift"] is (shift > 0)


def test_overrides_and_missing_columns_as_in_check_drift():
    reference = build_profile(frame(0, 1000))
    current = frame(3, 800, shift=1.0).drop(columns=["city"]).assign(extra=1.0)
    kwargs = {"column_methods": {"x": "psi"}, "column_thresholds": {"big_int": 0.2}, "drift_share": 0.3}
    assert check_drift_merged(reference, parts_of(current, 3), **kwargs).to_summary() == check_drift(
        reference, current, **kwargs).to_summary()


def test_partitions_with_different_dtypes_are_refused():
    a = partition_stats(pd.DataFrame({"x": [1.0, 2.0]}))
    b = partition_stats(pd.DataFrame({"x": ["a", "b"]}))
    with pytest.raises(DriftInputError, match="different dtypes"):
        merge_partitions([a, b])
