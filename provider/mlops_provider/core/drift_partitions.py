"""Drift checks partitioned by rows: per-partition column statistics, merged exactly, then one check.

The drift engine (:mod:`mlops_provider.core.drift`) compares *sufficient statistics*: for a numeric
column the sorted finite values (or unique values and counts), for a categorical column the category
counts.  Both merge exactly: concatenating and re-counting partitions gives the same arrays as one
pass over all rows.  So a large batch can be profiled by N tasks in parallel (dynamic task mapping
over row ranges, across Celery workers), merged by one task, and checked with verdicts and scores
identical to :func:`mlops_provider.core.drift.check_drift` on the whole batch (a unit test compares
the two summaries for equality).

Pure numpy/pandas; nothing here imports Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_provider.core import drift

if TYPE_CHECKING:
    import pandas as pd

PARTITION_FORMAT = "mlops-drift-partition"


def partition_bounds(n_rows: int, n_partitions: int) -> list[tuple[int, int]]:
    """``n_partitions`` contiguous ``[start, stop)`` row ranges covering ``n_rows`` (sizes differ by at most 1)."""
    if n_rows < 0 or n_partitions < 1:
        raise drift.DriftInputError(f"Cannot split {n_rows} rows into {n_partitions} partitions")
    n_partitions = max(1, min(n_partitions, n_rows or 1))
    base, extra = divmod(n_rows, n_partitions)
    bounds, start = [], 0
    for i in range(n_partitions):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _first_last_str(series: pd.Series) -> tuple[bool | None, bool | None]:
    """Whether the first / last non-missing value is a ``str`` (``None`` when there is none)."""
    raw = series.to_numpy()
    first = next((v for v in raw if not drift._is_missing(v)), None)
    last = next((v for v in raw[::-1] if not drift._is_missing(v)), None)
    return (None if first is None else isinstance(first, str)), (None if last is None else isinstance(last, str))


def partition_stats(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> dict[str, Any]:
    """Statistics of one row partition: ``{"rows", "columns": [...], "stats": {name: ColumnStats dict}}``."""
    labels = drift._check_frame(frame, "partition")
    names = list(labels) if columns is None else [str(c) for c in columns if str(c) in labels]
    stats: dict[str, Any] = {}
    for name in names:
        series = frame[labels[name]]
        col = drift._column_stats(series, name)
        entry = col.to_dict()
        entry.pop("std", None)  # recomputed on the merged values
        entry.pop("texts", None)  # text drift needs all rows in order: not done on partitions
        if series.dtype.name == "object":
            entry["first_is_str"], entry["last_is_str"] = _first_last_str(series)
        stats[name] = entry
    return {"format": PARTITION_FORMAT, "rows": len(frame), "columns": list(labels), "stats": stats}


def save_partition(part: Mapping[str, Any], path: str | Path) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(part, separators=(",", ":")))
    return str(path)


def load_partition(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if data.get("format") != PARTITION_FORMAT:
        raise drift.ProfileError(f"{path} is not a drift partition file")
    return data


def merge_column(name: str, parts: list[Mapping[str, Any]]) -> drift.ColumnStats:
    """Merge the statistics of one column over partitions (in row order) exactly."""
    import numpy as np

    if not parts:
        raise drift.DriftInputError(f"No partitions to merge for column {name!r}")
    dtypes = {p["dtype"] for p in parts}
    if len(dtypes) > 1:
        raise drift.DriftInputError(f"Column {name!r} has different dtypes in different partitions: {sorted(dtypes)}")
    dtype = parts[0]["dtype"]
    n_rows = sum(int(p["n_rows"]) for p in parts)
    n_valid = sum(int(p["n_valid"]) for p in parts)
    if "values" in parts[0]:
        uniques, counts = [], []
        for p in parts:
            values = drift._decode_array(p["values"])
            if p.get("counts") is None:
                u, c = drift._unique_counts_sorted(values)
            else:
                u, c = values, drift._decode_array(p["counts"])
            uniques.append(u)
            counts.append(np.asarray(c, dtype=np.int64))
        all_values = np.concatenate(uniques) if uniques else np.zeros(0)
        all_counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        order = np.argsort(all_values, kind="stable")
        sorted_values, sorted_counts = all_values[order], all_counts[order]
        u, starts = (sorted_values, np.zeros(0, np.int64))
        if len(sorted_values):
            flags = np.concatenate(([True], sorted_values[1:] != sorted_values[:-1]))
            starts = np.flatnonzero(flags)
            u = sorted_values[starts]
            c = np.add.reduceat(sorted_counts, starts).astype(np.int64)
        else:
            c = np.zeros(0, np.int64)
        n_unique = len(u)
        stats = drift.ColumnStats(name, dtype, n_rows, n_valid, "", n_unique=n_unique)
        if n_unique * 2 <= n_valid:  # the representation a single pass picks
            stats.values, stats.counts = u, c
        else:
            stats.values = np.repeat(u, c)
        stats.column_type = drift._evidently_column_type(dtype, n_unique, n_valid, False)
        return stats
    merged: dict[Any, int] = {}
    for p in parts:
        for key, count in zip(p["keys"], p["counts"], strict=True):
            merged[key] = merged.get(key, 0) + int(count)
    first_last_str = False
    if dtype == "object":
        firsts = [p.get("first_is_str") for p in parts if p.get("first_is_str") is not None]
        lasts = [p.get("last_is_str") for p in parts if p.get("last_is_str") is not None]
        first_last_str = bool(firsts and lasts and firsts[0] and lasts[-1])
    if not merged:  # columns the engine does not count (datetime, unknown): only the valid count
        col_type = drift._evidently_column_type(dtype, 0, n_valid, first_last_str)
        return drift.ColumnStats(name, dtype, n_rows, n_valid, col_type, keys=[], counts=np.zeros(0, np.int64))
    keys = list(merged)
    counts = np.asarray([merged[k] for k in keys], dtype=np.int64)
    col_type = drift._evidently_column_type(dtype, len(keys), n_valid, first_last_str)
    return drift.ColumnStats(name, dtype, n_rows, n_valid, col_type, keys=keys, counts=counts)


def merge_partitions(parts: list[Mapping[str, Any]]) -> tuple[dict[str, drift.ColumnStats], int, list[str]]:
    """(merged column statistics, total rows, column order) of partitions given in row order."""
    if not parts:
        raise drift.DriftInputError("No partitions to merge")
    columns = list(parts[0]["columns"])
    for p in parts[1:]:
        if list(p["columns"]) != columns:
            raise drift.DriftInputError("Partitions have different columns")
    names = list(parts[0]["stats"])
    merged = {name: merge_column(name, [p["stats"][name] for p in parts]) for name in names}
    return merged, sum(int(p["rows"]) for p in parts), columns


def check_drift_merged(
    reference: drift.ReferenceProfile,
    parts: list[Mapping[str, Any]],
    column_methods: Mapping[str, str] | None = None,
    column_thresholds: Mapping[str, float] | None = None,
    drift_share: float = 0.5,
) -> drift.DriftResult:
    """:func:`~mlops_provider.core.drift.check_drift` of the whole batch, from its partitions' statistics."""
    methods, thresholds = drift._validate_overrides(column_methods, column_thresholds, drift_share)
    current, current_rows, current_columns = merge_partitions(parts)
    if current_rows == 0:
        raise drift.DriftInputError("The current batch has no rows; there is nothing to check for drift")
    result = drift.DriftResult(
        columns={},
        drift_share=float(drift_share),
        reference_rows=reference.n_rows,
        current_rows=current_rows,
        sampled=reference.sampled,
        reference_source_rows=reference.source_rows,
    )
    drift._check_columns(
        result,
        [n for n in reference.columns if not drift.is_output_column(n)],  # outputs: prediction drift only
        {n: (lambda s=s: s) for n, s in reference.columns.items()},
        list(current),  # the columns with statistics; a reference column without them is missing
        {n: (lambda s=s: s) for n, s in current.items()},
        methods,
        thresholds,
        workers=1,
    )
    result.extra_columns = [c for c in current_columns if c not in reference.columns]
    return result
