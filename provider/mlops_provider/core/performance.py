"""
Live model quality from late-arriving labels, compared with the champion's evaluation metrics.

Pure module: no Airflow; pandas/sklearn are imported inside the functions.  Used by
:class:`~mlops_provider.operators.performance.ModelPerformanceOperator`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Metrics that need class probabilities, which stored predictions do not carry.
_NEEDS_SCORES = {"roc_auc", "average_precision", "log_loss", "brier_score"}
MAX_IDS_IN_SUMMARY = 20


def _error(message: str) -> Exception:
    from mlops_provider.exceptions import DatasetError

    return DatasetError(message)


@dataclass
class JoinResult:
    """Labels joined with predictions by id, and what could not be joined."""

    frame: pd.DataFrame = field(repr=False)
    n_labels: int
    n_predictions: int
    n_joined: int
    unmatched_label_ids: list[Any]
    n_unmatched_labels: int
    n_duplicate_prediction_ids: int
    model_versions: list[str]
    n_missing_labels: int = 0


    def summary(self) -> dict[str, Any]:
        return {
            "n_labels": self.n_labels,
            "n_predictions": self.n_predictions,
            "n_joined": self.n_joined,
            "n_unmatched_labels": self.n_unmatched_labels,
            "unmatched_label_ids": [_jsonable(v) for v in self.unmatched_label_ids[:MAX_IDS_IN_SUMMARY]],
            "n_duplicate_prediction_ids": self.n_duplicate_prediction_ids,
            "model_versions": self.model_versions,
            "n_missing_labels": self.n_missing_labels,
        }


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def join_labels(
    labels: pd.DataFrame,
    predictions: pd.DataFrame,
    id_columns: Sequence[str],
    label_column: str,
    prediction_column: str = "prediction",
    model_version: str | None = None,
) -> JoinResult:
    """
    Inner-join labels with predictions on ``id_columns``; report label ids with no prediction.

    Predictions of other model versions are left out when ``model_version`` is given.  When an id was
    predicted more than once (a batch scored twice), the last prediction counts, and it is reported.
    """
    ids = list(id_columns)
    for name, frame, needed in (
        ("labels", labels, [*ids, label_column]),
        ("predictions", predictions, [*ids, prediction_column]),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise _error(f"The {name} table lacks column(s) {missing} (has {list(frame.columns)[:20]})")
    for column in ids:
        kinds = {_kind(labels[column]), _kind(predictions[column])}
        if "text" in kinds and len(kinds) > 1:
            raise _error(
                f"Id column {column!r} cannot be joined: labels {_describe(column, labels[column])} and "
                f"predictions {_describe(column, predictions[column])} hold different types (text against numbers); "
                "read both with the same type"
            )
    preds = predictions
    if model_version is not None and "model_version" in preds.columns:
        preds = preds[preds["model_version"].astype(str) == str(model_version)]
    dup = int(preds.duplicated(subset=ids, keep="last").sum())
    preds = preds.drop_duplicates(subset=ids, keep="last")
    keep = [*ids, prediction_column] + (["model_version"] if "model_version" in preds.columns else [])
    lab = labels[[*ids, label_column]].rename(columns={label_column: "__label"})
    merged = lab.merge(preds[keep], on=ids, how="left", indicator=True)
    unmatched = merged[merged["_merge"] == "left_only"]
    joined = merged[merged["_merge"] == "both"].drop(columns="_merge")
    n_missing_labels = int(joined["__label"].isna().sum())
    joined = joined[joined["__label"].notna()]
    if len(ids) == 1:
        unmatched_ids = unmatched[ids[0]].tolist()
    else:
        unmatched_ids = [list(map(_jsonable, row)) for row in unmatched[ids].itertuples(index=False)]
    versions = sorted({str(v) for v in joined["model_version"].unique()}) if "model_version" in joined else []
    return JoinResult(
        frame=joined,
        n_labels=len(labels),
        n_predictions=len(predictions),
        n_joined=len(joined),
        unmatched_label_ids=unmatched_ids[: MAX_IDS_IN_SUMMARY * 5],
        n_unmatched_labels=len(unmatched),
        n_duplicate_prediction_ids=dup,
        model_versions=versions,
        n_missing_labels=n_missing_labels,
    )


def _kind(series: pd.Series) -> str:
    """``number``, ``bool`` or ``text`` (anything else: strings, mixed objects, categories)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_numeric_dtype(series):
        return "number"
    present = series.dropna()
    if len(present) and present.map(lambda v: isinstance(v, bool)).all():
        return "bool"
    if len(present) and present.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool)).all():
        return "number"
    return "text"


def _describe(name: str, series: pd.Series) -> str:
    import pandas as pd

    values = pd.unique(series.dropna())[:3]
    return f"{name!r} ({series.dtype}: {', '.join(repr(_jsonable(v)) for v in values)}{', ...' if series.nunique() > 3 else ''})"


def check_comparable(
    y_true: pd.Series, y_pred: pd.Series, label_column: str, prediction_column: str, problem_type: str
) -> None:
    """
    Refuse labels that cannot be compared with the predictions, naming both columns and their types.

    Classification: labels and predictions must be of one kind (numbers/booleans, or text) and, when
    either holds more than one value, share at least one (``'yes'/'no'`` against ``0/1``, or ``'Yes'``
    against ``'yes'``, compares nothing).
    Regression: both must be finite numbers.  Missing predictions are refused in both cases.

    :raises DatasetError: with the columns, their dtypes and example values.
    """
    import numpy as np
    import pandas as pd

    both = f"labels {_describe(label_column, y_true)} and predictions {_describe(prediction_column, y_pred)}"
    n_missing = int(y_pred.isna().sum())
    if n_missing:
        raise _error(f"{n_missing} of {len(y_pred)} joined predictions in {prediction_column!r} are missing (NaN); {both}")
    kinds = {_kind(y_true), _kind(y_pred)}
    if problem_type == "regression":
        for name, s in ((label_column, y_true), (prediction_column, y_pred)):
            numbers = pd.to_numeric(s, errors="coerce")
            bad = s[numbers.isna()]
            if len(bad):
                raise _error(
                    f"Regression needs numbers, but {name!r} ({s.dtype}) has {len(bad)} non-numeric value(s), "
                    f"e.g. {', '.join(repr(_jsonable(v)) for v in pd.unique(bad)[:3])}; {both}"
                )
            n_inf = int(np.isinf(numbers.to_numpy(dtype=float)).sum())
            if n_inf:
                raise _error(f"{name!r} has {n_inf} infinite value(s); {both}")
        return
    if "text" in kinds and len(kinds) > 1:
        raise _error(
            f"Labels cannot be compared with the predictions: {both} are of different types "
            "(text against numbers); store the labels with the values the model predicts"
        )
    labels, predicted = set(pd.unique(y_true)), set(pd.unique(y_pred))
    # one label value against one other predicted value can be a real (bad) score; more cannot
    if not labels & predicted and max(len(labels), len(predicted)) > 1:
        raise _error(
            f"Labels cannot be compared with the predictions: {both} share no value; "
            "store the labels with the values the model predicts"
        )


def live_metrics(
    y_true: Any, y_pred: Any, metric_names: Sequence[str], n_classes: int | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """
    Metrics of stored predictions against labels: ``({name: value}, {skipped name: why})``.

    Names and orientation are those of :mod:`mlops_provider.core.metrics` (``rmse`` is positive, lower
    is better).  Metrics that need probabilities are skipped: stored predictions are labels/values.
    """
    from sklearn.metrics import get_scorer

    from mlops_provider.core.metrics import metric_key, resolve_scorer

    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name in metric_names:
        key = metric_key(name)
        if key in _NEEDS_SCORES:
            skipped[key] = "needs predicted probabilities; stored predictions hold labels only"
            continue
        try:
            scorer_name, _sign = resolve_scorer(name, n_classes)
            scorer = get_scorer(scorer_name)
            # the raw metric function gives the natural value (the scorer's sign is applied outside it)
            value = float(scorer._score_func(y_true, y_pred, **scorer._kwargs))
        except (ValueError, TypeError, AttributeError) as err:
            skipped[key] = f"cannot compute: {str(err)[:200]}"
            continue
        values[key] = value + 0.0
    return values, skipped


@dataclass
class MetricComparison:
    metric: str
    champion: float
    live: float
    greater_is_better: bool
    degradation: float  # > 0 means worse than the champion, in the metric's unit
    relative_degradation: float | None
    decayed: bool

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for k in ("champion", "live", "degradation", "relative_degradation"):
            if isinstance(data[k], float):
                data[k] = round(data[k], 6)
        return data


def compare_with_champion(
    live: Mapping[str, float],
    champion: Mapping[str, float],
    tolerance: float = 0.05,
    absolute_tolerance: float | None = None,
) -> list[MetricComparison]:
    """
    Compare live metrics with the champion's evaluation metrics.

    A metric has decayed when it is worse than the champion's by more than ``tolerance`` relative to
    the champion's value (``0.05`` = 5 %), or by more than ``absolute_tolerance`` in its own unit when
    that is given (which is the better choice for metrics near zero).
    """
    from mlops_provider.core.metrics import greater_is_better

    out: list[MetricComparison] = []
    for name, value in live.items():
        if name not in champion:
            continue
        ref = float(champion[name])
        higher = greater_is_better(name)
        degradation = (ref - value) if higher else (value - ref)
        relative = degradation / abs(ref) if ref not in (0.0,) and math.isfinite(ref) else None
        if absolute_tolerance is not None:
            decayed = degradation > absolute_tolerance
        else:
            decayed = relative is not None and relative > tolerance
        out.append(MetricComparison(name, ref, value, higher, degradation, relative, decayed))
    return out
