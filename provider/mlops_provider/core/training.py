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
    problem_type: str | None = None
    holdout_fraction: float = 0.2
    seed: int | None = 42
    time_column: str | None = None
    metrics: list[str] | None = None
    cv_folds: int | None = None
    #: binary classification: the class that counts as positive; default the last class in sorted order
    positive_label: Any = None

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
        if self.problem_type not in (None, "", *metrics_mod.PROBLEM_TYPES):
            raise _config_error(
                f"problem_type must be one of {', '.join(metrics_mod.PROBLEM_TYPES)} or empty, got {self.problem_type!r}"
            )
        self.problem_type = self.problem_type or None
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


def check_target(y: pd.Series, problem_type: str, where: str) -> int | None:
    """Validate the target for the task type; return the number of classes (classification)."""
    import pandas as pd

    n_missing = int(y.isna().sum())
    if n_missing:
        raise _data_error(f"Target column {y.name!r} has {n_missing} missing value(s) in {where}")
    if problem_type == metrics_mod.REGRESSION:
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


#: Examples of bad values quoted per column in feature errors.
MAX_EXAMPLES = 5
#: A text column is treated as a numeric feature with bad values when at least this share of its
#: non-missing values reads as a number (``"1.5"``, ``"3"``) and the rest does not (``"?"``, ``"n/a"``).
NUMERIC_TEXT_SHARE = 0.5


def feature_problems(X: pd.DataFrame) -> list[str]:
    """
    One line per unusable feature column, in column order (empty when all are usable).

    * a datetime column (estimators cannot use timestamps as they are);
    * a column that is entirely missing;
    * infinite values in a numeric column (counted);
    * a text column that is mostly numbers with some values that are not (examples quoted).

    Text columns of categories (mostly non-numeric) are left to the estimator: a ``Pipeline`` with an
    encoder accepts them, and a plain estimator's fit error is explained by :func:`explain_fit_error`.
    """
    import numpy as np
    import pandas as pd

    problems: list[str] = []
    for column in X.columns:
        values = X[column]
        name = repr(column)
        if pd.api.types.is_datetime64_any_dtype(values) or _holds_datetimes(values):
            problems.append(
                f"{name} is a datetime column ({values.dtype}): estimators cannot use timestamps; "
                f"exclude it (exclude_columns=[{name}]), split by it (time_column={name}), "
                "or derive numeric features from it (hour, day of week, age in days) upstream"
            )
            continue
        non_missing = values.dropna()
        if non_missing.empty:
            problems.append(f"{name} is entirely missing (all {len(values)} values are NaN/null)")
            continue
        if pd.api.types.is_bool_dtype(values) or isinstance(values.dtype, pd.CategoricalDtype):
            continue
        if pd.api.types.is_numeric_dtype(values):
            try:
                n_inf = int(np.isinf(non_missing.to_numpy(dtype=float)).sum())
            except (TypeError, ValueError):
                n_inf = 0
            if n_inf:
                problems.append(
                    f"{name} has {n_inf} infinite value(s) (inf/-inf) of {len(values)}; "
                    "replace them (with NaN or a bound) or drop those rows"
                )
            continue
        if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            as_numbers = pd.to_numeric(non_missing, errors="coerce")
            bad = non_missing[as_numbers.isna()]
            if len(bad) and (len(non_missing) - len(bad)) >= NUMERIC_TEXT_SHARE * len(non_missing):
                examples = ", ".join(repr(v) for v in pd.unique(bad.astype(str))[:MAX_EXAMPLES])
                problems.append(
                    f"{name} is numeric but {len(bad)} of {len(non_missing)} value(s) are not numbers "
                    f"(e.g. {examples}); clean them upstream or read them as missing "
                    "(na_values in the CSV reader)"
                )
            elif np.isinf(as_numbers.to_numpy(dtype=float, na_value=np.nan)).any():
                n_inf = int(np.isinf(as_numbers.to_numpy(dtype=float, na_value=np.nan)).sum())
                problems.append(f"{name} has {n_inf} infinite value(s) ('inf'/'-inf'); replace them or drop those rows")
    return problems


def _holds_datetimes(values: pd.Series) -> bool:
    """An object column whose values are dates or timestamps (Python or pandas objects)."""
    import datetime as dt

    import pandas as pd

    if not pd.api.types.is_object_dtype(values):
        return False
    sample = values.dropna().head(100)
    return bool(len(sample)) and all(isinstance(v, dt.date | dt.datetime | pd.Timestamp) for v in sample)


def check_features(X: pd.DataFrame, where: str) -> None:
    """Raise :class:`DatasetError` listing every unusable feature column (see :func:`feature_problems`)."""
    problems = feature_problems(X)
    if problems:
        lines = "\n".join(f"  - feature {p}" for p in problems)
        raise _data_error(f"{len(problems)} feature column(s) cannot be used for training in {where}:\n{lines}")


def explain_fit_error(err: BaseException, X: pd.DataFrame) -> str:
    """The first line of a fit error, plus the columns that explain it (missing values, text)."""
    import pandas as pd

    text = str(err).strip()
    first = text.splitlines()[0][:400] if text else type(err).__name__
    hints: list[str] = []
    if "NaN" in text:
        counts = {c: int(n) for c, n in X.isna().sum().items() if n}
        if counts:
            listed = ", ".join(f"{c!r} ({n})" for c, n in list(counts.items())[:10])
            hints.append(
                f"column(s) with missing values: {listed}; impute them (a Pipeline with SimpleImputer) "
                "or use an estimator that accepts NaN (HistGradientBoosting*)"
            )
    if "convert" in text or "string" in text:
        text_columns = [
            c for c in X.columns
            if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))
        ]
        if text_columns:
            hints.append(
                f"non-numeric column(s) {text_columns[:10]}: encode them (a Pipeline with OneHotEncoder "
                "or OrdinalEncoder) or exclude them (exclude_columns)"
            )
    return first + ("; " + "; ".join(hints) if hints else "")


@dataclass
class TrainingResult:
    """A fitted estimator, its evaluation, and the frames it was trained and evaluated on."""

    estimator: Any
    problem_type: str
    n_classes: int | None
    feature_columns: list[str]
    X_train: pd.DataFrame
    y_train: pd.Series
    X_eval: pd.DataFrame
    y_eval: pd.Series
    metrics: dict[str, float]
    cv_metrics: dict[str, float]
    split: str
    #: the class f1/precision/recall/average_precision count as positive (binary classification only)
    positive_label: Any = None


def split_frame(frame: pd.DataFrame, spec: TrainingSpec, problem_type: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
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
    if problem_type == metrics_mod.CLASSIFICATION:
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
    problem_type = spec.problem_type or metrics_mod.infer_problem_type(target_all)
    if problem_type == metrics_mod.REGRESSION:
        check_target(target_all, problem_type, "the training data")
    check_features(train_frame[features], "the training data")
    if eval_frame is not None:
        if spec.target not in eval_frame.columns:
            raise _data_error(f"Target column {spec.target!r} is missing from the evaluation data")
        missing = [c for c in features if c not in eval_frame.columns]
        if missing:
            raise _data_error(f"Feature column(s) {missing} missing from the evaluation data")
        train, evaluation, split = train_frame, eval_frame, "evaluation-dataset"
    else:
        train, evaluation, split = split_frame(train_frame, spec, problem_type)
    X_train, y_train = train[features], train[spec.target]
    X_eval, y_eval = evaluation[features], evaluation[spec.target]
    n_classes = check_target(y_train, problem_type, "the training split")
    if problem_type == metrics_mod.REGRESSION:
        check_target(y_eval, problem_type, "the evaluation split")
    if eval_frame is not None:
        check_features(X_eval, "the evaluation data")
    empty = [c for c in X_train.columns if X_train[c].isna().all()]
    if empty:
        raise _data_error(f"Feature column(s) {empty} are entirely missing (all NaN) in the training split")
    positive = metrics_mod.resolve_positive_label(
        _classes(y_train) if problem_type == metrics_mod.CLASSIFICATION else None, spec.positive_label, spec.target
    )

    metric_names = spec.metrics or metrics_mod.default_metrics(problem_type, n_classes)
    metric_names = metrics_mod.validate_metric_names(metric_names, n_classes)
    try:
        estimator.fit(X_train, y_train)
    except (ValueError, TypeError) as err:
        raise _config_error(f"Estimator {estimator_name} failed to fit: {explain_fit_error(err, X_train)}") from None
    scores = metrics_mod.compute_metrics(
        estimator, X_eval, y_eval, metric_names, n_classes=n_classes, positive_label=positive
    )
    cv_scores: dict[str, float] = {}
    if spec.cv_folds:
        from sklearn.base import clone

        cv_scores = metrics_mod.cross_validate_metrics(
            clone(estimator), X_train, y_train, metric_names, spec.cv_folds, spec.seed, problem_type, n_classes,
            positive_label=positive,
        )
    return TrainingResult(
        estimator=estimator, problem_type=problem_type, n_classes=n_classes, feature_columns=features,
        X_train=X_train, y_train=y_train, X_eval=X_eval, y_eval=y_eval,
        metrics=scores, cv_metrics=cv_scores, split=split, positive_label=positive,
    )


def _classes(y: pd.Series) -> list[Any]:
    """The class labels in sklearn's order (``np.unique``: sorted)."""
    import numpy as np

    return list(np.unique(y.to_numpy()))


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
        if os.path.isfile(git):  # a linked worktree or submodule: ".git" names the git directory
            return _read_head(_linked_git_dir(git, current))
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _linked_git_dir(git_file: str, work_tree: str) -> str:
    try:
        with open(git_file) as fh:
            text = fh.read().strip()
    except OSError:
        return git_file
    path = text.split(":", 1)[1].strip() if text.startswith("gitdir:") else text
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(work_tree, path))


def _read_head(git_dir: str) -> str | None:
    try:
        with open(os.path.join(git_dir, "HEAD")) as fh:
            head = fh.read().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        common = os.path.join(git_dir, "commondir")  # refs of a linked worktree live in the main git dir
        if os.path.isfile(common):
            with open(common) as fh:
                shared = fh.read().strip()
            git_dir = shared if os.path.isabs(shared) else os.path.normpath(os.path.join(git_dir, shared))
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
