"""Evaluation metrics shared by training and the promotion gate.

Metric names are sklearn scorer names plus a few short aliases.  Every metric is reported with its
natural value and orientation: ``rmse``, ``mae`` and ``log_loss`` are positive numbers where lower is
better (sklearn's ``neg_*`` scorers are negated back, and reported without the ``neg_`` prefix).
Use :func:`greater_is_better` to know which way a metric points.

Pure module: no Airflow, and sklearn/numpy/pandas are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

CLASSIFICATION = "classification"
REGRESSION = "regression"
PROBLEM_TYPES = (CLASSIFICATION, REGRESSION)

#: Integer targets with at most this many distinct values are treated as class labels.
MAX_CLASSES_FOR_INTEGER_TARGET = 20

#: Short names -> (sklearn scorer for binary/regression, sklearn scorer for multiclass).
_ALIASES: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "accuracy"),
    "balanced_accuracy": ("balanced_accuracy", "balanced_accuracy"),
    "f1": ("f1", "f1_macro"),
    "precision": ("precision", "precision_macro"),
    "recall": ("recall", "recall_macro"),
    "roc_auc": ("roc_auc", "roc_auc_ovr"),
    "average_precision": ("average_precision", "average_precision"),
    "log_loss": ("neg_log_loss", "neg_log_loss"),
    "brier_score": ("neg_brier_score", "neg_brier_score"),
    "rmse": ("neg_root_mean_squared_error", "neg_root_mean_squared_error"),
    "mse": ("neg_mean_squared_error", "neg_mean_squared_error"),
    "mae": ("neg_mean_absolute_error", "neg_mean_absolute_error"),
    "mape": ("neg_mean_absolute_percentage_error", "neg_mean_absolute_percentage_error"),
    "medae": ("neg_median_absolute_error", "neg_median_absolute_error"),
    "r2": ("r2", "r2"),
    "explained_variance": ("explained_variance", "explained_variance"),
}

_LOWER_IS_BETTER_PREFIXES = ("neg_",)
_LOWER_IS_BETTER = {"log_loss", "brier_score", "rmse", "mse", "mae", "mape", "medae"}


def _error(message: str) -> Exception:
    from mlops_provider.exceptions import MlopsConfigurationError

    return MlopsConfigurationError(message)


def infer_problem_type(y: Any) -> str:
    """
    The ``problem_type``, ``classification`` or ``regression``, from a target column.

    Booleans, strings and categoricals are labels; floats with fractional values are regression;
    integers (or whole floats) with at most :data:`MAX_CLASSES_FOR_INTEGER_TARGET` distinct values are labels.
    """
    import numpy as np
    import pandas as pd

    s = pd.Series(y).dropna()
    if s.empty:
        raise _error("Cannot infer the problem_type: the target has no non-missing values")
    if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
        return CLASSIFICATION
    values = s.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        return REGRESSION
    if np.all(values == np.round(values)) and s.nunique() <= MAX_CLASSES_FOR_INTEGER_TARGET:
        return CLASSIFICATION
    return REGRESSION



def default_metrics(problem_type: str, n_classes: int | None = None) -> list[str]:
    """Default metric names: accuracy, f1, roc_auc (binary only), log_loss; or rmse, mae, r2."""
    if problem_type == CLASSIFICATION:
        if n_classes is not None and n_classes <= 2:
            return ["accuracy", "f1", "roc_auc", "log_loss"]
        return ["accuracy", "f1", "log_loss"]
    if problem_type == REGRESSION:
        return ["rmse", "mae", "r2"]
    raise _error(f"Unknown problem_type {problem_type!r}; expected one of {', '.join(PROBLEM_TYPES)}")


def metric_key(name: str) -> str:
    """The name a metric is reported under: aliases as they are, ``neg_x`` scorers as ``x``."""
    return name[len("neg_") :] if name.startswith("neg_") else name


def greater_is_better(name: str) -> bool:
    """Whether a higher value of the (reported) metric ``name`` is better."""
    if name in _LOWER_IS_BETTER or name.startswith(_LOWER_IS_BETTER_PREFIXES):
        return False
    key = metric_key(name)
    if key in _LOWER_IS_BETTER:
        return False
    # reported names of sklearn's neg_* scorers: errors and losses
    return not any(word in key for word in ("error", "loss", "deviance"))


def resolve_scorer(name: str, n_classes: int | None = None) -> tuple[str, float]:
    """
    The sklearn scorer name for metric ``name`` and the sign that turns its score into the natural value.

    :raises MlopsConfigurationError: unknown metric name.
    """
    from sklearn.metrics import get_scorer_names

    multiclass = n_classes is not None and n_classes > 2
    if name in _ALIASES:
        scorer = _ALIASES[name][1 if multiclass else 0]
    elif name in get_scorer_names():
        scorer = name
    else:
        known = sorted(set(_ALIASES) | set(get_scorer_names()))
        raise _error(f"Unknown metric {name!r}; use a short name or an sklearn scorer name: {', '.join(known)}")
    sign = -1.0 if scorer.startswith("neg_") else 1.0
    return scorer, sign


def validate_metric_names(metric_names: Sequence[str], n_classes: int | None = None) -> list[str]:
    """Check that every name is known (raises with the first unknown one); return them as a list."""
    if isinstance(metric_names, str):
        metric_names = [metric_names]
    names = list(metric_names)
    for name in names:
        resolve_scorer(name, n_classes)
    return names


def _n_classes_of(estimator: Any) -> int | None:
    classes = getattr(estimator, "classes_", None)
    return len(classes) if classes is not None else None


def resolve_positive_label(classes: Sequence[Any] | None, positive_label: Any = None, target: str = "target") -> Any:
    """
    The class that counts as positive for a binary target, from its sorted ``classes``.

    Default (``positive_label=None``): the last class in sorted order, sklearn's convention
    (``1`` of 0/1, ``True`` of False/True, ``'yes'`` of 'no'/'yes'); set it when that is not the class
    of interest (``'bad'`` of 'bad'/'good', say).  A value given as text matches a class by its text, so
    ``"1"`` from a template matches the integer class ``1``.  Returns ``None`` for regression and
    multiclass targets, where no class is positive.

    :raises MlopsConfigurationError: ``positive_label`` is not a class of a binary target, or is set
        for a regression or multiclass target (it would have no effect).
    """
    if positive_label is not None and str(positive_label) == "":
        positive_label = None
    if classes is None or len(classes) != 2:
        if positive_label is not None:
            what = "a regression target" if classes is None else f"{len(classes)} classes"
            raise _error(
                f"positive_label={positive_label!r} applies to binary classification only, but {target!r} has "
                f"{what}; remove positive_label (multiclass f1/precision/recall are macro averages)"
            )
        return None
    classes = list(classes)
    if positive_label is None:
        return classes[-1]
    for value in classes:
        plain = _plain(value)
        if plain == positive_label and isinstance(plain, bool) == isinstance(positive_label, bool):
            return value
    by_text = [value for value in classes if str(value) == str(positive_label)]
    if len(by_text) == 1:
        return by_text[0]
    raise _error(
        f"positive_label={positive_label!r} is not a class of {target!r}; its classes are "
        f"{', '.join(repr(_plain(c)) for c in classes)}"
    )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (JSON-safe); anything else unchanged."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def compute_metrics(
    estimator: Any, X: pd.DataFrame, y: Any, metric_names: Sequence[str], n_classes: int | None = None,
    positive_label: Any = None,
) -> dict[str, float]:
    """
    Score a fitted estimator on ``X, y``; return ``{reported name: natural value}``.

    For a binary target, ``f1``, ``precision``, ``recall``, ``jaccard``, ``average_precision`` and
    ``brier_score`` count ``positive_label`` as the positive class and ``roc_auc`` ranks by its
    probability (see :func:`resolve_positive_label` for the default).

    A metric the estimator cannot produce (``roc_auc`` without ``predict_proba``, say) raises with the
    metric's name: asking for a metric that cannot be computed is a configuration error.
    """
    import numpy as np

    if n_classes is None:
        n_classes = _n_classes_of(estimator)
    positive = None
    if n_classes is not None:
        classes = getattr(estimator, "classes_", None)
        classes = list(classes) if classes is not None else list(np.unique(np.asarray(y)))
        if n_classes == 2 or positive_label is not None:
            positive = resolve_positive_label(classes, positive_label)
        y = compact_labels(y)
    results: dict[str, float] = {}
    for name in validate_metric_names(metric_names, n_classes):
        scorer_name, sign = resolve_scorer(name, n_classes)
        scorer = _scorer(scorer_name, positive)
        try:
            value = float(scorer(estimator, X, y)) * sign
        except (AttributeError, ValueError, TypeError) as err:
            raise _error(f"Metric {name!r} (sklearn scorer {scorer_name!r}) could not be computed: {err}") from None
        results[metric_key(name)] = value + 0.0  # -0.0 -> 0.0
    return results


def compact_labels(labels: Any) -> Any:
    """
    Integer class labels as ``int8`` when every value fits; anything else unchanged.

    The values are the same, so every metric is the same, but sklearn's metrics spend much of their time
    in ``np.unique`` and label checks over the whole target, which run several times faster on one
    byte per row than on eight (about 35% off accuracy/f1/recall/roc_auc/log_loss at 100k rows).
    """
    import numpy as np

    array = np.asarray(labels)
    if array.dtype.kind not in "iu" or array.dtype.itemsize == 1 or array.size == 0:
        return labels
    low, high = array.min(), array.max()
    if low < np.iinfo(np.int8).min or high > np.iinfo(np.int8).max:
        return labels
    return array.astype(np.int8)


def _roc_auc_of_positive(y_true: Any, y_score: Any, *, pos_label: Any) -> float:
    """ROC AUC with ``pos_label`` as the positive class (``y_score`` is the score of that class)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(y_true) == pos_label, y_score))


#: Binary scorers that depend on which class is positive: (function, response method, greater is better).
_POSITIVE_CLASS_SCORERS = {
    "f1": ("f1_score", "predict", True),
    "precision": ("precision_score", "predict", True),
    "recall": ("recall_score", "predict", True),
    "jaccard": ("jaccard_score", "predict", True),
    "average_precision": ("average_precision_score", ("decision_function", "predict_proba"), True),
    "roc_auc": (None, ("predict_proba", "decision_function"), True),
    "neg_brier_score": ("brier_score_loss", "predict_proba", False),
}


def _scorer(scorer_name: str, positive_label: Any = None) -> Any:
    """
    sklearn's scorer, with the binary positive class set, and binary ``roc_auc`` ranking by
    ``predict_proba`` when the model has it.

    sklearn's ``roc_auc`` scorer prefers ``decision_function``; probabilities are a monotone transform
    of it for sklearn's classifiers, so the AUC is the same (up to ties where probabilities saturate),
    and ``predict_proba`` is computed anyway for ``log_loss``: one prediction pass fewer per model.
    This is also how MLflow's evaluator computes it.  Training and the gate both use this function,
    so their numbers stay comparable.
    """
    import sklearn.metrics
    from sklearn.metrics import get_scorer, make_scorer, roc_auc_score

    if positive_label is not None and scorer_name in _POSITIVE_CLASS_SCORERS:
        func_name, response, greater = _POSITIVE_CLASS_SCORERS[scorer_name]
        func = _roc_auc_of_positive if func_name is None else getattr(sklearn.metrics, func_name)
        return make_scorer(func, greater_is_better=greater, response_method=response, pos_label=positive_label)
    if scorer_name == "roc_auc":
        return make_scorer(roc_auc_score, response_method=("predict_proba", "decision_function"))
    return get_scorer(scorer_name)


def cross_validate_metrics(
    estimator: Any, X: pd.DataFrame, y: Any, metric_names: Sequence[str], folds: int, seed: int | None = None,
    problem_type: str = CLASSIFICATION, n_classes: int | None = None, positive_label: Any = None,
) -> dict[str, float]:
    """
    ``cv_<name>_mean`` and ``cv_<name>_std`` over ``folds`` folds (stratified for classification).

    ``positive_label``: the positive class of a binary target, already resolved
    (:func:`resolve_positive_label`); the folds' metrics use it as :func:`compute_metrics` does.
    """
    from sklearn.model_selection import KFold, StratifiedKFold, cross_validate

    if int(folds) < 2:
        raise _error(f"cv_folds must be at least 2, got {folds!r}")
    names = validate_metric_names(metric_names, n_classes)
    scoring = {metric_key(n): _scorer(resolve_scorer(n, n_classes)[0], positive_label) for n in names}
    signs = {metric_key(n): resolve_scorer(n, n_classes)[1] for n in names}
    splitter_cls = StratifiedKFold if problem_type == CLASSIFICATION else KFold
    cv = splitter_cls(n_splits=int(folds), shuffle=True, random_state=seed)
    try:
        scores = cross_validate(estimator, X, y, scoring=scoring, cv=cv, error_score="raise")
    except ValueError as err:
        raise _error(f"Cross-validation with {folds} folds failed: {str(err).splitlines()[0][:300]}") from None
    out: dict[str, float] = {}
    for key, sign in signs.items():
        values = scores[f"test_{key}"] * sign
        out[f"cv_{key}_mean"] = float(values.mean()) + 0.0
        out[f"cv_{key}_std"] = float(values.std())
    return out
