"""Prediction drift: a model's outputs on a batch against its outputs on its own evaluation data.

Labels arrive late; the distribution of the model's outputs moves first.  At training time the
model's outputs on its evaluation split are stored with the version (``reference/outputs.parquet``
and ``reference/outputs.json`` on its run); when the version's drift profile is built they become
ordinary profiled columns under reserved names:

* :data:`PREDICTION_COLUMN` (``__prediction__``): what ``predict`` returns, the class (categorical)
  of a classifier or the score (numerical) of a regressor;
* :data:`PROBA_COLUMN` (``__proba__``): a binary classifier's probability of its positive class
  (numerical);
* ``__proba__:<class>`` (:data:`~mlops_provider.core.drift.PROBA_CLASS_PREFIX`): a multiclass
  classifier's probability of each class (numerical), one column per class, as Evidently checks each
  probability column of a multiclass model.

The profile's ``metadata["outputs"]`` (:class:`OutputSpec`) says which columns are outputs, their
types and how to recompute them.  A check scores the batch with the same model version and the same
function (:func:`model_outputs`), and tests each output column with Evidently 0.7's default test for
its type (the column type is fixed by the output, not inferred: a class is categorical even with 12
integer labels, a probability numerical): ``ks``/``chisquare``/``z`` up to 1000 reference rows,
``wasserstein``/``jensenshannon`` above, as for features (:func:`mlops_provider.core.drift.default_method`).
Prediction drift is declared when at least one output column drifted; it is reported apart from
feature drift and never changes the feature verdict.

Pure module: no Airflow; numpy/pandas are imported inside functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_provider.core.drift import (
    CAT,
    NUM,
    OUTPUT_COLUMNS,
    PREDICTION_COLUMN,
    PROBA_CLASS_PREFIX,
    PROBA_COLUMN,
    ColumnDrift,
    ColumnStats,
    DriftInputError,
    DriftResult,
    ReferenceProfile,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "OUTPUT_COLUMNS",
    "OUTPUTS_METADATA_KEY",
    "PREDICTION_COLUMN",
    "PROBA_COLUMN",
    "OutputSpec",
    "PredictionDriftResult",
    "add_outputs",
    "check_prediction_drift",
    "has_outputs",
    "model_outputs",
    "output_spec_for",
]

#: Key of the outputs section in ``ReferenceProfile.metadata``.
OUTPUTS_METADATA_KEY = "outputs"
CLASSIFICATION, REGRESSION = "classification", "regression"


@dataclass
class OutputSpec:
    """What a model's outputs are and how to recompute them (stored in the profile's metadata).

    :param problem_type: ``classification`` or ``regression``.
    :param positive_label: the class whose probability :data:`PROBA_COLUMN` holds (binary classifiers).
    :param class_index: its column in ``predict_proba`` (``None``: no probability output).
    :param classes: a multiclass classifier's classes, in ``predict_proba``'s column order: one
        probability output ``__proba__:<class>`` per class (``None``: binary, regression, or no
        ``predict_proba``).
    """

    problem_type: str
    positive_label: Any = None
    class_index: int | None = None
    classes: list[Any] | None = None

    @property
    def has_probabilities(self) -> bool:
        return self.class_index is not None or bool(self.classes)

    def proba_columns(self) -> dict[str, int]:
        """Probability output column -> its column in ``predict_proba``."""
        if self.classes:
            return {f"{PROBA_CLASS_PREFIX}{c}": i for i, c in enumerate(self.classes)}
        return {PROBA_COLUMN: self.class_index} if self.class_index is not None else {}

    def types(self) -> dict[str, str]:
        """Output column -> drift column type (``cat``/``num``), in report order."""
        out = {PREDICTION_COLUMN: CAT if self.problem_type == CLASSIFICATION else NUM}
        out.update(dict.fromkeys(self.proba_columns(), NUM))
        return out

    def label(self, column: str) -> str:
        """How an output column is named in summaries: ``class``, ``score``, ``probability of 1``."""
        if column == PROBA_COLUMN:
            return f"probability of {self.positive_label!r}"
        if column.startswith(PROBA_CLASS_PREFIX):
            index = self.proba_columns().get(column)
            return f"probability of {self.classes[index]!r}" if index is not None and self.classes else column
        return "class" if self.problem_type == CLASSIFICATION else "score"

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem_type": self.problem_type,
            "positive_label": _json_scalar(self.positive_label),
            "class_index": self.class_index,
            "classes": None if self.classes is None else [_json_scalar(c) for c in self.classes],
            "columns": self.types(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputSpec:
        try:
            problem = str(data["problem_type"])
            index = data.get("class_index")
            classes = data.get("classes")
            if classes is not None and (not isinstance(classes, list) or len(classes) < 3):
                raise ValueError(f"classes must be a list of 3 or more classes, got {classes!r}")
            spec = cls(problem, data.get("positive_label"), None if index is None else int(index),
                       None if classes is None else list(classes))
        except (KeyError, TypeError, ValueError) as err:
            raise DriftInputError(f"The stored outputs description is malformed: {err!r}") from None
        if problem not in (CLASSIFICATION, REGRESSION):
            raise DriftInputError(f"The stored outputs description has problem_type {problem!r}")
        return spec


def _json_scalar(value: Any) -> Any:
    item = getattr(value, "item", None)
    value = item() if callable(item) else value
    return value if isinstance(value, str | bool | int | float) or value is None else str(value)


def output_spec_for(model: Any, problem_type: str, positive_label: Any = None) -> OutputSpec:
    """
    The outputs of ``model``: the class (and, for a binary classifier with ``predict_proba``, the
    probability of ``positive_label``, default the last class in ``classes_`` as training does; for a
    multiclass one, the probability of each class), or the score.
    """
    if problem_type not in (CLASSIFICATION, REGRESSION):
        raise DriftInputError(f"problem_type must be {CLASSIFICATION!r} or {REGRESSION!r}, got {problem_type!r}")
    if problem_type == REGRESSION:
        return OutputSpec(REGRESSION)
    classes = getattr(model, "classes_", None)
    classes = [] if classes is None else list(classes)
    if len(classes) < 2 or not callable(getattr(model, "predict_proba", None)):
        return OutputSpec(CLASSIFICATION)  # no probabilities: the class only
    if len(classes) > 2:
        if positive_label is not None:
            raise DriftInputError(
                f"positive_label {positive_label!r} applies to binary classifiers; the model has {len(classes)} classes"
            )
        return OutputSpec(CLASSIFICATION, classes=[_json_scalar(c) for c in classes])
    index = len(classes) - 1
    if positive_label is not None:
        matches = [i for i, c in enumerate(classes) if c == positive_label or str(c) == str(positive_label)]
        if not matches:
            raise DriftInputError(f"positive_label {positive_label!r} is not one of the model's classes {classes}")
        index = matches[0]
    return OutputSpec(CLASSIFICATION, _json_scalar(classes[index]), index)


def model_outputs(model: Any, X: pd.DataFrame, spec: OutputSpec) -> pd.DataFrame:
    """The output columns of ``model`` on ``X`` (one row per row of ``X``), as ``spec`` describes them."""
    import numpy as np
    import pandas as pd

    predicted = model.predict(X)
    if isinstance(predicted, pd.DataFrame):
        predicted = predicted.iloc[:, 0]
    arr = np.asarray(predicted)
    if arr.ndim > 1:
        if arr.shape[1] != 1:
            raise DriftInputError(f"predict returned {arr.shape[1]} columns; prediction drift needs one output per row")
        arr = arr[:, 0]
    out = pd.DataFrame({PREDICTION_COLUMN: arr})
    columns = spec.proba_columns()
    if columns:
        proba = np.asarray(model.predict_proba(X))
        if spec.classes:
            found = [_json_scalar(c) for c in getattr(model, "classes_", [])]
            if proba.ndim != 2 or proba.shape[1] != len(spec.classes) or (found and found != list(spec.classes)):
                raise DriftInputError(
                    f"predict_proba returned shape {getattr(proba, 'shape', None)} for classes {found}; the stored "
                    f"outputs hold one probability per class of {list(spec.classes)}"
                )
        elif proba.ndim != 2 or proba.shape[1] <= spec.class_index:
            raise DriftInputError(
                f"predict_proba returned shape {proba.shape}; expected a column {spec.class_index} "
                f"(the probability of {spec.positive_label!r})"
            )
        for name, index in columns.items():
            out[name] = proba[:, index].astype(np.float64)
    return out


def _stats(series: pd.Series, name: str, column_type: str) -> ColumnStats:
    """Column statistics with the type fixed by the output (never inferred from the values)."""
    from mlops_provider.core.drift import _column_stats

    stats = _column_stats(series, name)
    if column_type == NUM and not stats.is_numeric:
        raise DriftInputError(f"Output {name!r} should be numerical but holds {series.dtype} values")
    return dataclasses.replace(stats, column_type=column_type)


def add_outputs(
    profile: ReferenceProfile, outputs: pd.DataFrame, spec: OutputSpec, source: str | None = None
) -> ReferenceProfile:
    """Add the reference outputs (the model's outputs on its evaluation data) to ``profile``, in place.

    They become ordinary profiled columns under :data:`OUTPUT_COLUMNS` (feature checks leave them out),
    and ``profile.metadata["outputs"]`` describes them.
    """
    if len(outputs) == 0:
        raise DriftInputError("The reference outputs have no rows")
    types = spec.types()
    missing = [c for c in types if c not in outputs.columns]
    if missing:
        raise DriftInputError(f"The reference outputs lack column(s) {missing} (they have {list(outputs.columns)})")
    for name, column_type in types.items():
        profile.columns[name] = _stats(outputs[name], name, column_type)
    profile.metadata[OUTPUTS_METADATA_KEY] = {**spec.to_dict(), "rows": len(outputs), "source": source}
    return profile


def has_outputs(profile: Any) -> bool:
    """Whether ``profile`` holds the reference outputs of its model."""
    return (
        isinstance(profile, ReferenceProfile)
        and isinstance(profile.metadata.get(OUTPUTS_METADATA_KEY), Mapping)
        and PREDICTION_COLUMN in profile.columns
    )


@dataclass
class PredictionDriftResult:
    """Outcome of a prediction drift check; one :class:`~mlops_provider.core.drift.ColumnDrift` per output."""

    columns: dict[str, ColumnDrift]
    spec: OutputSpec
    reference_rows: int
    current_rows: int
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def drifted_outputs(self) -> list[str]:
        return [name for name, col in self.columns.items() if col.drifted]

    @property
    def drift(self) -> bool:
        """Prediction drift: at least one output column drifted."""
        return bool(self.drifted_outputs)

    def describe(self, name: str) -> str:
        col = self.columns[name]
        what = self.spec.label(name)
        if col.score is None:
            return f"{what} ({col.note or 'not tested'})"
        return f"{what} ({col.method} {col.score:.4g}, threshold {col.threshold})"

    def verdict_line(self) -> str:
        """``"PREDICTION DRIFT (1 of 2 outputs drifted: class (z 0.001, ...)); ..."``."""
        tested = ", ".join(self.describe(n) for n in self.columns)
        head = "PREDICTION DRIFT" if self.drift else "no prediction drift"
        line = f"{head} ({len(self.drifted_outputs)} of {len(self.columns)} outputs drifted: {tested})"
        if self.skipped:
            line += "; not tested: " + ", ".join(f"{n} ({why})" for n, why in self.skipped.items())
        return line

    def to_summary(self) -> dict[str, Any]:
        return {
            "status": "checked",
            "drift": self.drift,
            "drifted_outputs": self.drifted_outputs,
            "outputs": {
                name: {"output": self.spec.label(name), **col.to_dict()} for name, col in self.columns.items()
            },
            "skipped_outputs": dict(self.skipped),
            "problem_type": self.spec.problem_type,
            "positive_label": _json_scalar(self.spec.positive_label),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }


def check_prediction_drift(
    reference: ReferenceProfile | pd.DataFrame,
    current_outputs: pd.DataFrame,
    *,
    spec: OutputSpec | None = None,
    column_methods: Mapping[str, str] | None = None,
    column_thresholds: Mapping[str, float] | None = None,
) -> PredictionDriftResult:
    """
    Compare the model's outputs on a batch with its reference outputs, one output column at a time.

    :param reference: a profile holding the outputs (:func:`add_outputs`), or a DataFrame of the
        reference outputs (then ``spec`` is required).
    :param current_outputs: :func:`model_outputs` of the same model version on the batch.
    :param spec: what the outputs are (default: the profile's ``metadata["outputs"]``).
    :param column_methods: per-output method override (keys :data:`OUTPUT_COLUMNS`), as for features.
    :param column_thresholds: per-output threshold override.
    :raises DriftInputError: no outputs in the reference, an output missing from the batch, no output
        that could be tested.
    """
    import pandas as pd

    from mlops_provider.core.drift import _check_column, _validate_overrides

    methods, thresholds = _validate_overrides(column_methods, column_thresholds, 0.5)
    if isinstance(reference, ReferenceProfile):
        if not has_outputs(reference):
            raise DriftInputError(
                "The reference profile holds no model outputs (it was built from features only); "
                "prediction drift needs the outputs stored with the model version"
            )
        spec = spec or OutputSpec.from_dict(reference.metadata[OUTPUTS_METADATA_KEY])
        types = spec.types()
        missing_ref = [c for c in types if c not in reference.columns]
        if missing_ref:
            raise DriftInputError(f"The reference profile lacks output column(s) {missing_ref}")
        ref_stats = {c: dataclasses.replace(reference.columns[c], column_type=t) for c, t in types.items()}
    elif isinstance(reference, pd.DataFrame):
        if spec is None:
            raise DriftInputError("spec is required when the reference outputs are a DataFrame")
        types = spec.types()
        missing_ref = [c for c in types if c not in reference.columns]
        if missing_ref:
            raise DriftInputError(f"The reference outputs lack column(s) {missing_ref}")
        ref_stats = {c: _stats(reference[c], c, t) for c, t in types.items()}
    else:
        raise DriftInputError(
            f"reference must be a ReferenceProfile or a pandas DataFrame, got {type(reference).__name__}"
        )
    unknown = sorted((set(methods) | set(thresholds)) - set(types))
    if unknown:
        raise DriftInputError(f"Method/threshold overrides name outputs the model does not have: {unknown}")
    missing_cur = [c for c in types if c not in current_outputs.columns]
    if missing_cur:
        raise DriftInputError(f"The batch's outputs lack column(s) {missing_cur}")
    if len(current_outputs) == 0:
        raise DriftInputError("The batch has no rows; there are no outputs to check")
    part = DriftResult(columns={}, drift_share=0.5, reference_rows=0, current_rows=0)
    for name, column_type in types.items():
        cur = _stats(current_outputs[name], name, column_type)
        _check_column(part, name, ref_stats[name], cur, methods.get(name), thresholds.get(name))
    if not part.columns:
        raise DriftInputError(
            "No output could be tested for prediction drift: "
            + "; ".join(f"{n}: {why}" for n, why in part.skipped_columns.items())
        )
    return PredictionDriftResult(
        columns=part.columns,
        spec=spec,
        reference_rows=max(s.n_rows for s in ref_stats.values()),
        current_rows=len(current_outputs),
        skipped=dict(part.skipped_columns),
    )
