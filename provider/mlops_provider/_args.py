"""Parse-time argument checks shared by every operator, sensor and trigger.

Operators call these from ``__init__`` (house rule 2): a value that is not templated and takes a fixed
set of values, or a number, is checked when the DAG is parsed, and the message lists what is allowed.
Templated values (strings holding ``{{`` or ``{%``) are left for ``execute()``, after rendering.

This module imports nothing heavy; it is safe at parse time.

One concept, one name (house rule 8):

- ``on_failure``: what to do when the check of the task fails.  Values come from :data:`ON_FAILURE`;
  each operator accepts the subset that makes sense for it and lists it in its docstring.
- ``problem_type``: the kind of ML problem, one of :data:`PROBLEM_TYPES`, in arguments, XCom, core
  and docs alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from mlops_provider.exceptions import MlopsConfigurationError

#: Raise a domain exception (a failed task that a retry cannot fix).
FAIL = "fail"
#: Log a warning, record the outcome, and let downstream tasks run.
WARN = "warn"
#: Record the outcome and skip the downstream tasks.
SKIP = "skip"
#: Move the evidence aside (validation only), record it, and skip the downstream tasks.
QUARANTINE = "quarantine"
ON_FAILURE = (FAIL, WARN, SKIP, QUARANTINE)

CLASSIFICATION = "classification"
REGRESSION = "regression"
PROBLEM_TYPES = (CLASSIFICATION, REGRESSION)


def is_templated(value: Any) -> bool:
    """True for a string that Airflow will render (it holds a Jinja expression or statement)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _allowed(values: Iterable[Any]) -> str:
    return ", ".join(repr(v) for v in values)


def check_choice(
    where: str, name: str, value: Any, allowed: Iterable[Any], *, optional: bool = False
) -> None:
    """Refuse ``value`` unless it is one of ``allowed`` (or templated, or ``None`` when ``optional``)."""
    allowed = tuple(allowed)
    if value is None and optional:
        return
    if is_templated(value):
        return
    if value not in allowed:
        extra = " or None" if optional else ""
        raise MlopsConfigurationError(f"{where}: {name} must be one of {_allowed(allowed)}{extra}; got {value!r}")


def check_number(
    where: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> None:
    """Refuse ``value`` unless it is a finite number within the bounds (``low_open``: strictly above)."""
    if value is None and optional:
        return
    if is_templated(value):
        return
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
        raise MlopsConfigurationError(f"{where}: {name} must be {kind}{_range(low, high, low_open, high_open)}; got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise MlopsConfigurationError(f"{where}: {name} must be {kind}{_range(low, high, low_open, high_open)}; got {value!r}")


def _range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {low}"
    if low is None:
        return f" {'<' if high_open else '<='} {high}"
    return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def reject_renamed(where: str, kwargs: Mapping[str, Any], renamed: Mapping[str, str]) -> None:
    """Refuse arguments that were renamed, naming the new name (there are no users of the old ones)."""
    for old, new in renamed.items():
        if old in kwargs:
            raise MlopsConfigurationError(f"{where}: argument {old!r} was renamed to {new!r}; pass {new}={kwargs[old]!r}")
