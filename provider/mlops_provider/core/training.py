"""Training core: build an estimator, check the data, split, fit and evaluate.

Pure module: no Airflow and no MLflow.  The operator in ``mlops_provider.operators.training`` glues
it to datasets, MLflow and Airflow.  Every bad input raises a provider exception naming the thing.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_provider.core import metrics as metrics_mod

if TYPE_CHECKING:
    import pandas as pd


def _config_error(message: str) -> Exception:
    from mlops_provider.exceptions import MlopsConfigurationError

    return MlopsConfigurationError(message)


def _data_error(message: str) -> Exception:
    from mlops_provider.exceptions import DatasetError

    return DatasetError(message)


# ---------------------------------------------------------------------- estimator


def estimator_label(estimator: Any) -> str:
    if isinstance(estimator, str):
        return estimator
    return getattr(estimator, "__qualname__", None) or type(estimator).__name__


def import_object(path: str) -> Any:
    """Import ``package.module.Name``; a clear error names the path when it does not resolve."""
    path = str(path).strip()
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise _config_error(f"Unknown estimator path {path!r}: expected 'package.module.ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise _config_error(f"Unknown estimator path {path!r}: cannot import {module_name!r} ({err})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise _config_error(f"Unknown estimator path {path!r}: module {module_name!r} has no {attr!r}") from None


def coerce_params(params: Any) -> dict[str, Any]:
    """Estimator params from a dict or its JSON text (templated values arrive as strings)."""
    if params in (None, ""):
        return {}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as err:
            raise _config_error(f"estimator_params is not valid JSON: {err.msg} in {params[:100]!r}") from None
    if not isinstance(params, dict):
        raise _config_error(f"estimator_params must be a dict, got {type(params).__name__}")
    return dict(params)


def build_estimator(estimator: str | Callable[..., Any], params: Any = None) -> Any:
    """
    Make an unfitted estimator from a dotted class path (or factory) plus params, or from a callable.

    The params are validated now (sklearn's own constraints), so a bad value fails before any training.
    """
    params = coerce_params(params)
    label = estimator_label(estimator)
    target = import_object(estimator) if isinstance(estimator, str) else estimator
    if not callable(target):
        raise _config_error(f"Estimator {label!r} is neither a class nor a callable")
    if not inspect.isclass(target) and hasattr(target, "fit") and not params:
        est = target  # an estimator instance was given directly
    else:
        try:
            est = target(**params)
        except TypeError as err:
            raise _config_error(f"Estimator {label} rejected params {params}: {err}") from None
    if not (hasattr(est, "fit") and hasattr(est, "predict")):
        raise _config_error(f"Estimator {label} returned {type(est).__name__}, which has no fit/predict")
    validate = getattr(est, "_validate_params", None)
    if callable(validate):
        try:
            validate()
        except (ValueError, TypeError) as err:
            raise _config_error(f"Estimator {label} rejected params {params}: {err}") from None
    return est


def loggable_params(estimator: Any, user_params: dict[str, Any], label: str) -> dict[str, str]:
    """
    Params worth logging: the estimator path, the user's params, and the model's hyperparameters.

    For a ``Pipeline`` those are the last step's (not the Pipeline's ``memory``/``verbose``), plus
    ``model`` (the last step's class) and ``preprocessing`` (the steps before it).
    """
    out = {"estimator": label[:500]}
    steps = getattr(estimator, "steps", None)
    model = estimator
    if isinstance(steps, list) and steps:
        model = steps[-1][1]
        out["model"] = f"{type(model).__module__}.{type(model).__qualname__}"[:500]
        out["preprocessing"] = ", ".join(f"{name}: {type(step).__name__}" for name, step in steps[:-1])[:500]
    try:
        top = model.get_params(deep=False)
    except Exception:  # noqa: BLE001 - not an sklearn estimator
        top = {}
    for key, value in {**top, **user_params}.items():
        if isinstance(value, str | int | float | bool) or value is None:
            out[str(key)] = str(value)[:500]
    return dict(list(out.items())[:90])


# ---------------------------------------------------------------------- data


@dataclass
class TrainingSpec:
    """What to learn and how to evaluate it (everything except the estimator and the data)."""

    target: str
    feature_columns: list[str] | None = None
    exclude_columns: list[str] = field(default_factory=list)
    task_type: str | None = None
    holdout_fraction: float = 0.2
    seed: int | None = 42
    time_column: str | None = None
    metrics: list[str] | None = None
    cv_folds: int | None = None

    def validated(self) -> TrainingSpec:
        if not self.target or not str(self.target).strip():
            raise _config_error("target (the label column) is required")
        try:
            frac = float(self.holdout_fraction)
        except (TypeError, ValueError):
            raise _config_error(f"holdout_fraction must be a number, got {self.holdout_fraction!r}") from None
        if not 0.0 < frac < 1.0:
            raise _config_error(f"holdout_fraction must be between 0 and 1 (exclusive), got {frac}")
        self.holdout_fraction = frac
        if self.task_type not in (None, "", *metrics_mod.TASK_TYPES):
            raise _config_error(
                f"task_type must be one of {', '.join(metrics_mod.TASK_TYPES)} or empty, got {self.task_type!r}"
            )
        self.task_type = self.task_type or None
        self.seed = None if self.seed in (None, "") else int(self.seed)
        self.cv_folds = None if self.cv_folds in (None, "", 0, "0") else int(self.cv_folds)
        self.feature_columns = _as_list(self.feature_columns, "feature_columns")
        self.exclude_columns = _as_list(self.exclude_columns, "exclude_columns") or []
        self.metrics = _as_list(self.metrics, "metrics")
        self.time_column = self.time_column or None
        return self


def _as_list(value: Any, name: str) -> list[str] | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise _config_error(f"{name} is not a valid JSON list: {text[:100]!r}") from None
        else:
            value = [v.strip() for v in text.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise _config_error(f"{name} must be a list of names, got {type(value).__name__}")
    return [str(v) for v in value]


def resolve_features(frame: pd.DataFrame, spec: TrainingSpec, where: str) -> list[str]:
    """Feature columns: the given list, or all columns but the target, excluded ids and the time column."""
    columns = [str(c) for c in frame.columns]
    if spec.target not in columns:
        raise _data_error(f"Target column {spec.target!r} is missing from {where}; it has: {', '.join(columns[:30])}")
    if spec.time_column and spec.time_column not in columns:
        raise _data_error(f"Time column {spec.time_column!r} is missing from {where}")
    if spec.feature_columns:
        missing = [c for c in spec.feature_columns if c not in columns]
        if missing:
            raise _data_error(f"Feature column(s) {missing} missing from {where}")
        if spec.target in spec.feature_columns:
            raise _config_error(f"Target column {spec.target!r} is also listed as a feature")
        return list(spec.feature_columns)
    drop = {spec.target, *(spec.exclude_columns or []), *([spec.time_column] if spec.time_column else [])}
    features = [c for c in columns if c not in drop]
    if not features:
        raise _data_error(f"{where} has no feature columns left besides target/excluded columns")
    return features


def check_target(y: pd.Series, task_type: str, where: str) -> int | None:
    """Validate the target for the task type; return the number of classes (classification)."""
    import pandas as pd

    n_missing = int(y.isna().sum())
    if n_missing:
        raise _data_error(f"Target column {y.name!r} has {n_missing} missing value(s) in {where}")
    if task_type == metrics_mod.REGRESSION:
        if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
            raise _data_error(
                f"Target column {y.name!r} is not numeric (dtype {y.dtype}) but the task is regression"
            )
        return None
    n_classes = int(y.nunique())
    if n_classes < 2:
        only = y.iloc[0] if len(y) else None
        raise _data_error(
            f"Target column {y.name!r} has a single class ({only!r}) in {where}; classification needs at least 2"
        )
    return n_classes


def check_features(X: pd.DataFrame, where: str) -> None:
    all_nan = [c for c in X.columns if X[c].isna().all()]
    if all_nan:
        raise _data_error(f"Feature column(s) {all_nan} are entirely missing (all NaN) in {where}")


@dataclass
class TrainingResult:
    """A fitted estimator, its evaluation, and the frames it was trained and evaluated on."""

    estimator: Any
    task_type: str
    n_classes: int | None
    feature_columns: list[str]
    X_train: pd.DataFrame
    y_train: pd.Series
    X_eval: pd.DataFrame
    y_eval: pd.Series
    metrics: dict[str, float]
    cv_metrics: dict[str, float]
    split: str


def split_frame(frame: pd.DataFrame, spec: TrainingSpec, task_type: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Holdout split: by time (most recent fraction evaluates) or random (stratified when it can be)."""
    n_eval = int(round(len(frame) * spec.holdout_fraction))
    if n_eval < 1 or len(frame) - n_eval < 2:
        raise _data_error(
            f"Dataset has {len(frame)} rows: too few to hold out {spec.holdout_fraction:.0%} for evaluation"
        )
    if spec.time_column:
        ordered = frame.sort_values(spec.time_column, kind="mergesort")
        return ordered.iloc[:-n_eval], ordered.iloc[-n_eval:], f"time:{spec.time_column}"
    from sklearn.model_selection import train_test_split

    stratify = None
    if task_type == metrics_mod.CLASSIFICATION:
        counts = frame[spec.target].value_counts()
        if counts.min() >= 2 and n_eval >= len(counts):
            stratify = frame[spec.target]
    train, evaluation = train_test_split(
        frame, test_size=n_eval, random_state=spec.seed, shuffle=True, stratify=stratify
    )
    return train, evaluation, "holdout" + ("-stratified" if stratify is not None else "")


def train_and_evaluate(
    estimator: Any,
    train_frame: pd.DataFrame,
    spec: TrainingSpec,
    eval_frame: pd.DataFrame | None = None,
    estimator_name: str = "estimator",
) -> TrainingResult:
    """Validate the data, split (unless ``eval_frame`` is given), fit, score and optionally cross-validate."""
    spec = spec.validated()
    features = resolve_features(train_frame, spec, "the training data")
    target_all = train_frame[spec.target]
    if target_all.dropna().empty:
        raise _data_error(f"Target column {spec.target!r} has no values in the training data")
    n_missing = int(target_all.isna().sum())
    if n_missing:
        raise _data_error(f"Target column {spec.target!r} has {n_missing} missing value(s) in the training data")
    task_type = spec.task_type or metrics_mod.infer_task_type(target_all)
    if task_type == metrics_mod.REGRESSION:
        check_target(target_all, task_type, "the training data")
    if eval_frame is not None:
        if spec.target not in eval_frame.columns:
            raise _data_error(f"Target column {spec.target!r} is missing from the evaluation data")
        missing = [c for c in features if c not in eval_frame.columns]
        if missing:
            raise _data_error(f"Feature column(s) {missing} missing from the evaluation data")
        train, evaluation, split = train_frame, eval_frame, "evaluation-dataset"
    else:
        train, evaluation, split = split_frame(train_frame, spec, task_type)
    X_train, y_train = train[features], train[spec.target]
    X_eval, y_eval = evaluation[features], evaluation[spec.target]
    n_classes = check_target(y_train, task_type, "the training split")
    if task_type == metrics_mod.REGRESSION:
        check_target(y_eval, task_type, "the evaluation split")
    check_features(X_train, "the training split")

    metric_names = spec.metrics or metrics_mod.default_metrics(task_type, n_classes)
    metric_names = metrics_mod.validate_metric_names(metric_names, n_classes)
    try:
        estimator.fit(X_train, y_train)
    except (ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:400] if str(err).strip() else type(err).__name__
        raise _config_error(f"Estimator {estimator_name} failed to fit: {first}") from None
    scores = metrics_mod.compute_metrics(estimator, X_eval, y_eval, metric_names, n_classes=n_classes)
    cv_scores: dict[str, float] = {}
    if spec.cv_folds:
        from sklearn.base import clone

        cv_scores = metrics_mod.cross_validate_metrics(
            clone(estimator), X_train, y_train, metric_names, spec.cv_folds, spec.seed, task_type, n_classes
        )
    return TrainingResult(
        estimator=estimator, task_type=task_type, n_classes=n_classes, feature_columns=features,
        X_train=X_train, y_train=y_train, X_eval=X_eval, y_eval=y_eval,
        metrics=scores, cv_metrics=cv_scores, split=split,
    )


def reference_sample(X: pd.DataFrame, max_rows: int, seed: int | None) -> pd.DataFrame:
    """A reproducible sample of at most ``max_rows`` training feature rows (drift reference)."""
    if max_rows <= 0 or len(X) <= max_rows:
        return X.reset_index(drop=True)
    return X.sample(n=max_rows, random_state=seed).reset_index(drop=True)


# ---------------------------------------------------------------------- provenance


def git_commit_of(path: str | None) -> str | None:
    """The commit checked out in the git work tree containing ``path`` (read from ``.git``, no subprocess)."""
    if not path:
        return None
    current = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path))
    while True:
        git = os.path.join(current, ".git")
        if os.path.isdir(git):
            return _read_head(git)
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _read_head(git_dir: str) -> str | None:
    try:
        with open(os.path.join(git_dir, "HEAD")) as fh:
            head = fh.read().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        ref_file = os.path.join(git_dir, ref)
        if os.path.exists(ref_file):
            with open(ref_file) as fh:
                return fh.read().strip() or None
        packed = os.path.join(git_dir, "packed-refs")
        if os.path.exists(packed):
            with open(packed) as fh:
                for line in fh:
                    parts = line.strip().split(" ")
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0]
    except OSError:
        return None
    return None


def as_sequence(value: Sequence[str] | str | None) -> list[str]:
    return _as_list(value, "columns") or []
