"""The shared parse-time argument checks (no Airflow run needed)."""

from __future__ import annotations

import pytest

from mlops_provider._args import check_choice, check_number, is_templated, reject_renamed
from mlops_provider.exceptions import MlopsConfigurationError


def test_choice_lists_the_allowed_values():
    with pytest.raises(MlopsConfigurationError, match=r"t1: on_failure must be one of 'fail', 'warn'; got 'fial'"):
        check_choice("t1", "on_failure", "fial", ("fail", "warn"))
    check_choice("t1", "on_failure", "warn", ("fail", "warn"))
    check_choice("t1", "on_failure", "{{ params.policy }}", ("fail", "warn"))
    check_choice("t1", "mode", None, ("a",), optional=True)
    with pytest.raises(MlopsConfigurationError):
        check_choice("t1", "mode", None, ("a",))


@pytest.mark.parametrize(
    ("value", "kwargs"),
    [
        (-0.1, {"low": 0, "high": 1}),
        (1.5, {"low": 0, "high": 1}),
        (0, {"low": 0, "low_open": True}),
        (float("nan"), {}),
        (float("inf"), {}),
        ("0.5", {}),
        (True, {}),
        (2.5, {"integer": True}),
    ],
)
def test_number_refuses_out_of_range_and_non_numbers(value, kwargs):
    with pytest.raises(MlopsConfigurationError, match="drift_share must be"):
        check_number("t1", "drift_share", value, **kwargs)


def test_number_accepts_bounds_templates_and_optional_none():
    check_number("t1", "x", 0, low=0, high=1)
    check_number("t1", "x", 1.0, low=0, high=1)
    check_number("t1", "x", "{{ var.value.x }}", low=0)
    check_number("t1", "x", None, optional=True)
    assert is_templated("{% if x %}a{% endif %}")
    assert not is_templated("plain")


def test_renamed_argument_names_the_new_one():
    with pytest.raises(MlopsConfigurationError, match=r"'on_fail' was renamed to 'on_failure'; pass on_failure='skip'"):
        reject_renamed("gate", {"on_fail": "skip"}, {"on_fail": "on_failure"})
    reject_renamed("gate", {"on_failure": "skip"}, {"on_fail": "on_failure"})
