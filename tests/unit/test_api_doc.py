"""docs/api.md against the real signatures: the page cannot drift from the code.

``scripts/api_doc.py`` writes the page from ``inspect``; these tests fail when the page is stale (run the
script to rewrite it), and check on their own, from the page's tables and ``inspect.signature``, that
every public class and pipeline function is there with each of its arguments and defaults, and that the
allowed values the page claims are the ones the parse-time checks enforce.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import api_doc  # noqa: E402

PAGE = (ROOT / "docs" / "api.md").read_text()


def _tables() -> dict[str, dict[str, dict[str, str]]]:
    """``heading -> argument -> column -> cell`` for every table of the page."""
    tables: dict[str, dict[str, dict[str, str]]] = {}
    heading, header = None, None
    for line in PAGE.splitlines():
        if line.startswith("#"):
            heading, header = line.lstrip("#").strip(), None
        elif line.startswith("| ") and heading:
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if header is None:
                header = cells
            else:
                row = dict(zip(header, cells, strict=True))
                tables.setdefault(heading, {})[row["argument"].strip("`")] = row
    return tables


TABLES = _tables()


def test_page_is_what_the_code_generates():
    page = api_doc.render()
    assert PAGE == page, "docs/api.md is stale: run `.venv/bin/python scripts/api_doc.py` and commit it"


def _public_classes() -> list[type]:
    from mlops_provider.get_provider_info import get_provider_info

    info = get_provider_info()
    found = []
    for section in ("operators", "sensors", "triggers", "hooks"):
        for entry in info[section]:
            for name in entry["python-modules"]:
                module = importlib.import_module(name)
                for obj in vars(module).values():
                    if inspect.isclass(obj) and obj.__module__ == name and not obj.__name__.startswith("_"):
                        bases = {k.__name__ for k in obj.__mro__}
                        if bases & {"BaseOperator", "BaseSensorOperator", "BaseTrigger", "BaseHook"}:
                            found.append(obj)
    return found


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda c: c.__name__)
def test_every_argument_type_and_default_is_on_the_page(cls):
    rows = TABLES.get(cls.__name__)
    assert rows is not None, f"{cls.__name__} has no table in docs/api.md"
    params = [p for p in inspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    assert list(rows) == [p.name for p in params]
    for p in params:
        row = rows[p.name]
        expected = "required" if p.default is p.empty else f"`{p.default!r}`"
        assert row["default"] == expected, (cls.__name__, p.name)
        assert row["type"] == (f"`{p.annotation}`" if p.annotation is not p.empty else ""), (cls.__name__, p.name)
        if "templated" in row:
            assert (row["templated"] == "yes") == (p.name in cls.template_fields), (cls.__name__, p.name)


def test_the_level_one_classes_are_all_there():
    for name in ("TrainModelOperator", "RegisterModelOperator", "PromoteModelOperator", "RollbackModelOperator",
                 "BatchPredictOperator", "DataValidationOperator", "DriftCheckOperator", "PromotionGateOperator",
                 "ModelPerformanceOperator", "RetrainingPolicyOperator", "DriftSensor", "NewBatchTrigger",
                 "MlflowHook", "build_dags", "load_pipeline"):
        assert f"### {name}\n" in PAGE, name


def test_pipeline_functions_are_on_the_page():
    import mlops_provider.pipelines as pipelines

    public = getattr(pipelines, "__all__", None) or [
        n for n, o in vars(pipelines).items()
        if inspect.isfunction(o) and o.__module__ == pipelines.__name__ and not n.startswith("_")]
    for name in public:
        func = getattr(pipelines, name)
        if not inspect.isfunction(func):
            continue
        rows = TABLES.get(name)
        assert rows is not None, f"mlops_provider.pipelines.{name} has no table in docs/api.md"
        params = [p for p in inspect.signature(func).parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        assert list(rows) == [p.name for p in params], name


# ---- the allowed values on the page are what the operators refuse, seen from the outside


#: Valid values of the required arguments (only stored at construction: nothing is read or connected).
REQUIRED = {
    "training_data": "/tmp/x.parquet", "target": "y", "estimator": "sklearn.linear_model.LogisticRegression",
    "dataset": "/tmp/x.parquet", "reference": "models:/m@champion", "current": "/tmp/x.parquet",
    "model_name": "m", "eval_dataset": "/tmp/x.parquet", "target_column": "y",
    "gate_spec": {"metrics": [{"name": "roc_auc", "min_value": 0.5}]},
    "labels": "/tmp/l.parquet", "predictions": "/tmp/p.parquet", "location": "/tmp/landing",
    "input_data": "/tmp/x.parquet", "output_uri": "/tmp/out.parquet", "model_uri": "models:/m@champion",
    "registered_model_name": "m", "version": "1", "consumer": "c",
    "predictions_dir": "/tmp/predictions", "quarantine_dir": "/tmp/quarantine", "batches_dir": "/tmp/batches",
}


def _operator_kwargs(cls: type) -> dict:
    """The fewest valid arguments to construct ``cls``: its required ones, from :data:`REQUIRED`."""
    params = inspect.signature(cls.__init__).parameters.values()
    kwargs = {p.name: REQUIRED[p.name] for p in params if p.default is p.empty and p.name in REQUIRED}
    if cls.__name__ == "DataValidationOperator":
        kwargs["expectations"] = [{"type": "expect_column_to_exist", "column": "a"}]
    return {"task_id": "t", **kwargs}


def _choices(cell: str) -> list[str] | None:
    values = re.findall(r"`([^`]+)`", cell)
    return values if values and "number" not in cell and "integer" not in cell else None


def _choice_cases() -> list[tuple[type, str, list[str]]]:
    from airflow.sdk import BaseOperator

    cases = []
    for cls in _public_classes():
        for name, row in (TABLES.get(cls.__name__) or {}).items():
            values = _choices(row.get("allowed", ""))
            if values and issubclass(cls, BaseOperator):
                cases.append((cls, name, values))
    return cases


@pytest.mark.parametrize("cls,name,values", _choice_cases(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_allowed_values_on_the_page_are_what_the_class_refuses(cls, name, values):
    from mlops_provider.exceptions import MlopsConfigurationError

    kwargs = _operator_kwargs(cls)
    with pytest.raises(MlopsConfigurationError) as err:
        cls(**kwargs, **{name: "no-such-value"})
    message = str(err.value)
    assert name in message and "'no-such-value'" in message
    listed = message.split("must be one of", 1)[1].split(";")[0]
    assert [v.strip() for v in listed.replace(" or None", "").split(",")] == values


def _number_cases() -> list[tuple[type, str, str]]:
    from airflow.sdk import BaseOperator

    return [(cls, name, row["allowed"]) for cls in _public_classes() if issubclass(cls, BaseOperator)
            for name, row in (TABLES.get(cls.__name__) or {}).items()
            if re.match(r"(integer|number|finite)", row.get("allowed", ""))]


def _outside(rule: str) -> float:
    """A value the rule refuses: just below its lower bound, else just above its upper bound."""
    bounds = re.search(r"in ([(\[])(-?[\d.]+), (-?[\d.]+)([)\]])", rule)
    if bounds:
        return float(bounds.group(2)) - 1
    low = re.search(r"(>=?) (-?[\d.]+)", rule)
    if low:
        return float(low.group(2)) - 1
    high = re.search(r"(<=?) (-?[\d.]+)", rule)
    return float(high.group(2)) + 1 if high else float("nan")


@pytest.mark.parametrize("cls,name,rule", _number_cases(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_number_rules_on_the_page_are_what_the_class_refuses(cls, name, rule):
    from mlops_provider.exceptions import MlopsConfigurationError

    bad = _outside(rule)
    value = int(bad) if rule.startswith("integer") else bad
    with pytest.raises(MlopsConfigurationError) as err:
        cls(**_operator_kwargs(cls), **{name: value})
    assert name in str(err.value) and repr(value) in str(err.value), str(err.value)
