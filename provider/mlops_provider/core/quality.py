"""Per-batch data quality figures logged by the drift monitor, one MLflow step per batch.

:func:`batch_quality` measures a batch against its drift reference; :func:`quality_metrics` names the
figures as MLflow metrics:

==========================================  =====================================================
``quality.rows``                            rows in the batch
``quality.null_share.<column>``             share of missing values (NaN/None/NaT) in the column
``quality.unseen_categories.<column>``      distinct values of a categorical column the reference
                                            never had
``quality.unseen_categories_total``         their sum over the categorical columns
``quality.share_of_drifted_columns``        the feature drift check's share of drifted columns
``quality.prediction_drift``                1 when the model's outputs drifted, 0 when not (only
                                            when prediction drift was checked)
==========================================  =====================================================

Pure module: no Airflow; numpy/pandas are imported inside functions.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlops_provider.core.drift import DriftResult, ReferenceProfile

#: Prefix of every quality metric.
PREFIX = "quality."


def metric_key(text: str) -> str:
    """An MLflow metric name: characters MLflow refuses become ``_`` (at most 250 characters)."""
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", text)[:250]


def _reference_keys(reference: Any, name: str) -> set[Any] | None:
    """The category values the reference holds for ``name`` (``None`` when it has no such column)."""
    from mlops_provider.core.drift import ReferenceProfile, _column_stats, _py_scalar

    if isinstance(reference, ReferenceProfile):
        stats = reference.columns.get(name)
    else:
        labels = {str(c): c for c in getattr(reference, "columns", [])}
        stats = _column_stats(reference[labels[name]], name) if name in labels else None
    if stats is None:
        return None
    keys, _ = stats.category_counts()
    return {_py_scalar(k) for k in (keys if isinstance(keys, list) else keys.tolist())}


def batch_quality(
    frame: pd.DataFrame,
    reference: ReferenceProfile | pd.DataFrame,
    result: DriftResult,
    prediction_drift: bool | None = None,
) -> dict[str, Any]:
    """
    Quality figures of one batch: rows, null share per column, unseen categories per categorical column
    (the columns the drift check typed categorical; values compared with the reference's), and the share
    of drifted columns.

    :param frame: the batch (the columns that were checked).
    :param reference: the drift reference (profile or DataFrame).
    :param result: the feature drift check of the batch.
    :param prediction_drift: the prediction drift verdict, when it was checked.
    """
    from mlops_provider.core.drift import CAT, _py_scalar

    labels = {str(c): c for c in frame.columns}
    n_rows = len(frame)
    null_share = {
        name: (float(frame[label].isna().sum()) / n_rows if n_rows else 0.0) for name, label in labels.items()
    }
    unseen: dict[str, int] = {}
    for name, col in result.columns.items():
        if col.column_type != CAT or name not in labels:
            continue
        known = _reference_keys(reference, name)
        if known is None:
            continue
        values = frame[labels[name]].dropna().unique()
        unseen[name] = sum(1 for v in values if _py_scalar(v) not in known)
    out: dict[str, Any] = {
        "rows": n_rows,
        "null_share": null_share,
        "unseen_categories": unseen,
        "share_of_drifted_columns": result.share_of_drifted_columns,
    }
    if prediction_drift is not None:
        out["prediction_drift"] = bool(prediction_drift)
    return out


def quality_metrics(quality: dict[str, Any]) -> dict[str, float]:
    """The figures of :func:`batch_quality` as MLflow metric name -> value (see the module's table)."""
    metrics = {f"{PREFIX}rows": float(quality["rows"])}
    for name, share in quality["null_share"].items():
        metrics[metric_key(f"{PREFIX}null_share.{name}")] = float(share)
    for name, count in quality["unseen_categories"].items():
        metrics[metric_key(f"{PREFIX}unseen_categories.{name}")] = float(count)
    metrics[f"{PREFIX}unseen_categories_total"] = float(sum(quality["unseen_categories"].values()))
    metrics[f"{PREFIX}share_of_drifted_columns"] = float(quality["share_of_drifted_columns"])
    if "prediction_drift" in quality:
        metrics[f"{PREFIX}prediction_drift"] = float(quality["prediction_drift"])
    return metrics
