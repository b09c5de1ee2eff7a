"""Data validation with Great Expectations 1.x: suites, runs, summaries, reports and schema contracts.

Pure functions (no Airflow).  Great Expectations, pandas and PyYAML are imported inside the functions
that use them, so importing this module is cheap.

Suites come from one of:

* a list of expectation dicts ``{"type": "expect_column_values_to_not_be_null", "kwargs": {...}}``
  (``"expectation_type"`` is accepted for ``"type"``),
* a JSON or YAML file holding such a list, a GX suite JSON (``{"name": ..., "expectations": [...]}``)
  or a schema contract written by :func:`derive_schema_suite`,
* a callable returning a ``gx.ExpectationSuite`` (or an ``ExpectationSuite`` itself).

Results are summarised into a small JSON-safe dict (:func:`summarize_result`, capped at
:data:`SUMMARY_MAX_BYTES`), rendered to a self-contained HTML page (:func:`render_html_report`) and
kept in full as JSON (:func:`result_to_json`).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

#: Hard cap of the JSON size of :func:`summarize_result`, whatever the number of failures.
SUMMARY_MAX_BYTES = 16 * 1024
#: Number of failed expectations listed in the summary.
MAX_FAILURES = 10
#: Items of a list value (observed values, value sets) kept in summaries and reports.
MAX_LIST_ITEMS = 5
#: Characters of a string value kept in summaries.
MAX_STR_CHARS = 200

SCHEMA_CONTRACT_VERSION = 1

_COLUMN_KWARGS = ("column", "column_A", "column_B")
_COLUMN_LIST_KWARGS = ("column_list",)


class ValidationInputError(ValueError):
    """A suite, suite file, schema contract or batch that cannot be validated (bad input, not bad data)."""


class SuiteDefinitionError(ValidationInputError):
    """An expectation suite definition is malformed; the message names the source and the entry."""


# --------------------------------------------------------------------------- suite definitions


def normalize_expectations(entries: Any, source: str = "expectations") -> list[dict[str, Any]]:
    """
    Check a list of expectation dicts and return them as ``{"type", "kwargs", "meta"}`` dicts.

    :param entries: list of ``{"type"|"expectation_type": str, "kwargs": dict, "meta": dict}``.
    :param source: where the entries come from (a file name), used in error messages.
    :raises SuiteDefinitionError: naming ``source`` and the entry index when an entry is malformed.
    """
    if not isinstance(entries, list | tuple):
        raise SuiteDefinitionError(f"{source}: expected a list of expectations, got {type(entries).__name__}")
    out: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        where = f"{source}: expectation #{index}"
        if not isinstance(entry, Mapping):
            raise SuiteDefinitionError(
                f"{where} must be a mapping, got {type(entry).__name__}: {_short(entry)}"
            )
        etype = entry.get("type", entry.get("expectation_type"))
        if not isinstance(etype, str) or not etype:
            raise SuiteDefinitionError(
                f"{where} has no 'type' (or 'expectation_type') string: {_short(dict(entry))}"
            )
        kwargs = entry.get("kwargs", {})
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, Mapping):
            raise SuiteDefinitionError(
                f"{where} ({etype}): 'kwargs' must be a mapping, got {type(kwargs).__name__}"
            )
        unknown = set(entry) - {"type", "expectation_type", "kwargs", "meta", "notes", "description", "id"}
        if unknown:
            raise SuiteDefinitionError(f"{where} ({etype}): unknown keys {sorted(unknown)}")
        item: dict[str, Any] = {"type": etype, "kwargs": dict(kwargs)}
        if entry.get("meta"):
            item["meta"] = dict(entry["meta"])
        out.append(item)
    return out


@dataclass
class SuiteSource:
    """Expectations read from a file, with the schema contract when the file holds one."""

    name: str
    expectations: list[dict[str, Any]]
    schema: dict[str, Any] | None = None
    path: str | None = None


def load_suite_file(path: str | os.PathLike[str]) -> SuiteSource:
    """
    Read a JSON or YAML suite file.

    Accepted layouts: a list of expectations; a GX suite (``{"name", "expectations"}``); a schema
    contract from :func:`derive_schema_suite` (``{"name", "columns", "expectations"}``).

    :raises SuiteDefinitionError: when the file cannot be read or parsed, or an entry is malformed;
        the message names the file (and the line or entry).
    """
    p = Path(path)
    name = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise SuiteDefinitionError(f"Cannot read suite file {name}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise SuiteDefinitionError(f"Suite file {name} is not UTF-8 text: {err.reason}") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SuiteDefinitionError(
                f"Suite file {name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
            ) from None
    elif p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise SuiteDefinitionError(f"Suite file {name} is not valid YAML{at}: {problem}") from None
    else:
        raise SuiteDefinitionError(f"Suite file {name}: unsupported extension (use .json, .yaml or .yml)")
    return suite_source_from_data(data, source=name, default_name=p.stem)


def suite_source_from_data(data: Any, source: str, default_name: str = "suite") -> SuiteSource:
    """Interpret parsed suite-file content (see :func:`load_suite_file`)."""
    if isinstance(data, list):
        return SuiteSource(default_name, normalize_expectations(data, source), path=source)
    if not isinstance(data, Mapping):
        raise SuiteDefinitionError(
            f"Suite file {source}: expected a list of expectations or a mapping with 'expectations', "
            f"got {type(data).__name__}"
        )
    if "expectations" not in data and "columns" not in data:
        raise SuiteDefinitionError(
            f"Suite file {source}: no 'expectations' entry (keys: {sorted(data)[:10]})"
        )
    name = data.get("name") or data.get("expectation_suite_name") or default_name
    expectations = normalize_expectations(data.get("expectations") or [], source)
    schema = None
    if data.get("columns") is not None:
        schema = _check_schema(data["columns"], source)
        expectations = contract_expectations(schema) + expectations
    return SuiteSource(str(name), expectations, schema=schema, path=source)


def _check_schema(columns: Any, source: str) -> dict[str, Any]:
    if not isinstance(columns, Mapping):
        raise SuiteDefinitionError(f"Suite file {source}: 'columns' must be a mapping of column -> spec")
    for col, spec in columns.items():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("dtype"), str):
            raise SuiteDefinitionError(
                f"Suite file {source}: column {col!r} needs a mapping with a 'dtype' string"
            )
        unknown = set(spec) - {
            "dtype",
            "nullable",
            "min",
            "max",
            "observed_min",
            "observed_max",
            "distinct",
            "values",
            "unique",
        }
        if unknown:
            raise SuiteDefinitionError(
                f"Suite file {source}: column {col!r} has unknown keys {sorted(unknown)}"
            )
        if spec.get("unique") is not None and not isinstance(spec["unique"], bool):
            raise SuiteDefinitionError(f"Suite file {source}: column {col!r}: 'unique' must be true or false")
        if spec.get("values") is not None and not isinstance(spec["values"], list):
            raise SuiteDefinitionError(
                f"Suite file {source}: column {col!r}: 'values' must be a list or null"
            )
        for key in ("min", "max"):
            if spec.get(key) is not None and not isinstance(spec[key], int | float):
                raise SuiteDefinitionError(f"Suite file {source}: column {col!r}: {key!r} must be a number")
    return {str(k): dict(v) for k, v in columns.items()}


def build_suite(
    expectations: Sequence[Mapping[str, Any]] | gx.ExpectationSuite,
    name: str = "suite",
    source: str = "expectations",
) -> gx.ExpectationSuite:
    """
    Build a ``gx.ExpectationSuite`` from expectation dicts (or return a suite as it is).

    :raises SuiteDefinitionError: for a malformed entry or an unknown expectation type, naming the entry.
    """
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    if isinstance(expectations, gx.ExpectationSuite):
        return expectations
    normalized = normalize_expectations(expectations, source)
    suite = gx.ExpectationSuite(name=name)
    for index, entry in enumerate(normalized):
        before = len(suite.expectation_configurations)
        try:
            config = ExpectationConfiguration(
                type=entry["type"], kwargs=entry["kwargs"], meta=entry.get("meta")
            )
            suite.add_expectation_configuration(config)
        except Exception as err:  # GX raises several types for unknown types and bad kwargs
            reason = str(err).replace("Could not add expectation; provided configuration is not valid: ", "")
            if "not found" in reason:
                reason = f"unknown expectation type {entry['type']!r}"
            raise SuiteDefinitionError(
                f"{source}: expectation #{index} ({entry['type']}) is invalid: {_short(reason, 300)}"
            ) from None
        if len(suite.expectation_configurations) == before:
            # GX keeps one expectation per type and column, silently replacing the earlier one
            column = entry["kwargs"].get("column")
            earlier = next((
                i for i, e in enumerate(normalized[:index])
                if e["type"] == entry["type"] and e["kwargs"].get("column") == column
            ), None) if column is not None else None
            raise SuiteDefinitionError(
                f"{source}: expectation #{index} ({entry['type']}"
                f"{f' on {column!r}' if column is not None else ''}) repeats expectation"
                f"{f' #{earlier}' if earlier is not None else ''} of the same type on the same column; Great "
                "Expectations keeps only one of them, so the other would never be checked: merge them into one"
            )
    return suite


def resolve_suite(
    spec: Sequence[Mapping[str, Any]] | str | os.PathLike[str] | Callable[[], Any] | gx.ExpectationSuite,
    name: str | None = None,
) -> tuple[gx.ExpectationSuite, dict[str, Any] | None]:
    """
    Build the suite from any accepted source; returns ``(suite, schema_contract_or_None)``.

    :param spec: list of expectation dicts, path of a JSON/YAML file, callable returning a
        ``gx.ExpectationSuite``, or a suite.
    :param name: suite name (default: the file stem, the callable's suite name, or ``"suite"``).
    """
    import great_expectations as gx

    if isinstance(spec, gx.ExpectationSuite):
        return spec, None
    if isinstance(spec, str | os.PathLike):
        src = load_suite_file(spec)
        return build_suite(src.expectations, name or src.name, source=str(spec)), src.schema
    if callable(spec):
        label = getattr(spec, "__qualname__", repr(spec))
        suite = spec()
        if not isinstance(suite, gx.ExpectationSuite):
            raise SuiteDefinitionError(
                f"Suite callable {label} must return a great_expectations.ExpectationSuite, "
                f"got {type(suite).__name__}"
            )
        return suite, None
    return build_suite(spec, name or "suite"), None


# --------------------------------------------------------------------------- schema contracts


def _plain(value: Any) -> Any:
    """Convert numpy / pandas scalars to plain JSON/YAML-safe Python values."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _dtype_kind(dtype: Any) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
    ):
        return "categorical"
    return "other"


def is_id_column(name: str, series: pd.Series) -> bool:
    """An id column by convention: named ``id`` or ``*_id`` (any case), and unique and non-null in the data."""
    lowered = name.lower()
    if not (lowered == "id" or lowered.endswith("_id")):
        return False
    return bool(series.notna().all() and series.is_unique)


def derive_schema_suite(
    reference_df: pd.DataFrame,
    tolerance: float = 0.1,
    max_categories: int = 50,
    name: str = "schema_contract",
    *,
    ranges: bool = False,
    id_columns: Sequence[str] | None = None,
) -> str:
    """
    Derive a schema contract from a reference dataset, as reviewable YAML to keep in version control.

    For each column: dtype, nullability, and the value set of categorical columns with at most
    ``max_categories`` distinct values; with ``ranges=True`` also a numeric range: the observed
    range widened by ``tolerance`` x (max - min) on each side.  Ranges are off by default: a reference
    taken in one season (winter temperatures, months 1-2) would otherwise quarantine every batch of the
    next season; the observed min and max are always written (``observed_min``/``observed_max``, not
    checked) for the reviewer.  Id columns (``id_columns``, plus columns named ``id`` or ``*_id`` that
    are unique and non-null in the reference) get ``unique: true`` and ``nullable: false`` and never a
    range.  The file holds the ``columns`` contract (checked first, schema changes are reported as
    such) and the equivalent ``expectations`` (run by GX).  Load it with :func:`load_suite_file`.

    :param reference_df: the reference data (e.g. the training set).
    :param tolerance: with ``ranges=True``, the fraction of the observed range added below the min and
        above the max (>= 0).
    :param max_categories: largest value set recorded for a categorical column.
    :param name: suite name.
    :param ranges: derive numeric ranges from the reference (default ``False``).
    :param id_columns: columns known to be ids (checked for uniqueness and non-null, never for a range).
    """
    import pandas as pd
    import yaml

    if not isinstance(reference_df, pd.DataFrame):
        raise ValidationInputError(
            f"reference_df must be a pandas DataFrame, got {type(reference_df).__name__}"
        )
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValidationInputError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if max_categories < 0:
        raise ValidationInputError(f"max_categories must be >= 0, got {max_categories!r}")
    if len(reference_df) == 0:
        raise ValidationInputError("reference dataset is empty: cannot derive a schema from 0 rows")

    declared = [str(c) for c in (id_columns or [])]
    absent = sorted(set(declared) - {str(c) for c in reference_df.columns})
    if absent:
        raise ValidationInputError(f"id_columns {absent} are not columns of the reference dataset")
    columns: dict[str, Any] = {}
    ids: list[str] = []
    for col in reference_df.columns:
        series = reference_df[col]
        col = str(col)
        kind = _dtype_kind(series.dtype)
        nulls = int(series.isna().sum())
        spec: dict[str, Any] = {"dtype": str(series.dtype), "nullable": nulls > 0}
        non_null = series.dropna()
        if col in declared or is_id_column(col, series):
            ids.append(col)
            spec = {"dtype": str(series.dtype), "nullable": False, "unique": bool(series.is_unique)}
        elif kind in ("int", "float") and len(non_null):
            lo, hi = _plain(non_null.min()), _plain(non_null.max())
            if ranges:
                margin = tolerance * (hi - lo)
                low, high = lo - margin, hi + margin
                if kind == "int":
                    low, high = math.floor(low), math.ceil(high)
                else:
                    low, high = float(low), float(high)
                spec.update({"min": low, "max": high})
            spec.update({"observed_min": lo, "observed_max": hi})
        elif kind in ("categorical", "bool"):
            n_unique = int(non_null.nunique())
            spec["distinct"] = n_unique
            if n_unique <= max_categories:
                spec["values"] = sorted(
                    (_plain(v) for v in non_null.unique()), key=lambda v: (str(type(v)), str(v))
                )
            else:
                spec["values"] = None  # more than max_categories distinct values: no value set
        columns[col] = spec

    doc = {
        "name": name,
        "contract_version": SCHEMA_CONTRACT_VERSION,
        "derived": {
            "rows": len(reference_df),
            "ranges": ranges,
            "tolerance": tolerance,
            "max_categories": max_categories,
            "id_columns": ids,
            "at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "columns": columns,
        "expectations": [],
    }
    header = (
        f"# Schema contract {name!r}, derived from a reference dataset of {len(reference_df)} rows.\n"
        "# Review it, edit bounds and value sets as needed, and keep it in version control.\n"
        "# 'columns' is the contract: new/missing columns and dtype changes are reported as schema\n"
        "# changes, then Great Expectations checks nullability, uniqueness, min/max and value sets\n"
        "# ('values: null' means no value set is enforced; observed_min/observed_max are not checked:\n"
        "# add min/max to check a range).  Add further expectations under 'expectations'.\n"
    )

    class _NoAliasDumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # value sets are repeated, not anchored
            return True

    body = yaml.dump(
        doc, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True
    )
    return header + body


def contract_expectations(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The GX expectations a schema contract's ``columns`` stands for (one source of truth: the file)."""
    out: list[dict[str, Any]] = [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": list(columns), "exact_match": True},
        }
    ]
    for col, spec in columns.items():
        out.append(
            {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": col, "type_": spec["dtype"]}}
        )
        if spec.get("nullable") is False:
            out.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": col}})
        if spec.get("unique") is True:
            out.append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": col}})
        if spec.get("min") is not None or spec.get("max") is not None:
            out.append(
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": col, "min_value": spec.get("min"), "max_value": spec.get("max")},
                }
            )
        if spec.get("values") is not None:
            out.append(
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": col, "value_set": list(spec["values"])},
                }
            )
    return out


def compare_schema(df: pd.DataFrame, contract: Mapping[str, Any]) -> list[dict[str, Any]]:
    """
    Compare a batch's columns and dtypes with a schema contract's ``columns``.

    :returns: one dict per change, ``{"change": "missing_column"|"new_column"|"dtype_change",
        "column", "expected", "actual"}``; empty when the schema matches.
    """
    changes: list[dict[str, Any]] = []
    actual = {str(c): str(df[c].dtype) for c in df.columns}
    for col, spec in contract.items():
        if col not in actual:
            changes.append(
                {"change": "missing_column", "column": col, "expected": spec.get("dtype"), "actual": None}
            )
        elif actual[col] != spec.get("dtype"):
            changes.append(
                {
                    "change": "dtype_change",
                    "column": col,
                    "expected": spec.get("dtype"),
                    "actual": actual[col],
                }
            )
    for col, dtype in actual.items():
        if col not in contract:
            changes.append({"change": "new_column", "column": col, "expected": None, "actual": dtype})
    return changes


def describe_schema_changes(changes: Iterable[Mapping[str, Any]]) -> str:
    """One line per schema change, e.g. ``dtype of 'age' changed: int64 -> float64``."""
    lines = []
    for c in changes:
        if c["change"] == "missing_column":
            lines.append(f"column {c['column']!r} ({c['expected']}) is missing")
        elif c["change"] == "new_column":
            lines.append(f"new column {c['column']!r} ({c['actual']}) is not in the contract")
        else:
            lines.append(f"dtype of {c['column']!r} changed: {c['expected']} -> {c['actual']}")
    return "; ".join(lines)


# --------------------------------------------------------------------------- running


def referenced_columns(suite: gx.ExpectationSuite) -> list[tuple[int, str, str]]:
    """``(index, expectation type, column)`` for every column an expectation of the suite reads."""
    out = []
    for index, config in enumerate(suite.expectation_configurations):
        kwargs = config.kwargs or {}
        for key in _COLUMN_KWARGS:
            if isinstance(kwargs.get(key), str):
                out.append((index, config.type, kwargs[key]))
        for key in _COLUMN_LIST_KWARGS:
            if isinstance(kwargs.get(key), list | tuple):
                out.extend((index, config.type, str(c)) for c in kwargs[key])
    return out


@dataclass
class ValidationOutcome:
    """Everything one validation produced: the full GX result (JSON dict) and the schema check."""

    result: dict[str, Any]
    suite_name: str
    schema_changes: list[dict[str, Any]] = field(default_factory=list)
    missing_columns: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return bool(self.result.get("success")) and not self.schema_changes and not self.missing_columns


def _quiet_context(context: Any) -> None:
    """Turn off GX's tqdm progress bars (they flood task logs)."""
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    except Exception:  # an older/newer layout: progress bars are cosmetic
        pass


def run_validation(
    df: pd.DataFrame,
    suite: gx.ExpectationSuite | None = None,
    *,
    schema: Mapping[str, Any] | None = None,
    context_root_dir: str | os.PathLike[str] | None = None,
    checkpoint_name: str | None = None,
    result_format: str | dict[str, Any] = "SUMMARY",
) -> ValidationOutcome:
    """
    Validate a DataFrame, by default in a fresh ephemeral GX context (no GX project needed).

    With ``context_root_dir`` and ``checkpoint_name``, runs the checkpoint of an existing file
    context instead, passing ``df`` as the ``dataframe`` batch parameter (the checkpoint's
    validation definitions must use a pandas dataframe asset).

    :param schema: a schema contract's ``columns``; compared before the expectations run.
    :raises ValidationInputError: empty batch, missing suite, unknown checkpoint.
    """
    import time

    import great_expectations as gx
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValidationInputError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ValidationInputError(
            f"the batch is empty (0 rows, columns: {_short([str(c) for c in df.columns])})"
        )
    started = time.perf_counter()
    schema_changes = compare_schema(df, schema) if schema else []
    data_columns = {str(c) for c in df.columns}

    if checkpoint_name:
        if not context_root_dir:
            raise ValidationInputError("checkpoint_name needs context_root_dir (the GX project directory)")
        context = gx.get_context(mode="file", project_root_dir=str(context_root_dir))
        _quiet_context(context)
        try:
            checkpoint = context.checkpoints.get(checkpoint_name)
        except Exception as err:
            raise ValidationInputError(
                f"GX project {context_root_dir}: no checkpoint {checkpoint_name!r} ({_short(str(err), 200)})"
            ) from None
        cp_result = checkpoint.run(batch_parameters={"dataframe": df})
        results = [r.to_json_dict() for r in cp_result.run_results.values()]
        for r in results:
            try:
                ids = [c.id for c in context.suites.get(r.get("suite_name")).expectation_configurations]
            except Exception:  # a suite the context cannot give back: keep GX's order
                continue
            r["results"] = in_suite_order(r.get("results", []), ids)
        merged = _merge_results(results)
        suite_name = ",".join(sorted({r.get("suite_name") or "?" for r in results})) or checkpoint_name
        missing: list[dict[str, Any]] = []
        for r in results:
            for i, res in enumerate(r.get("results", [])):
                col = (res.get("expectation_config") or {}).get("kwargs", {}).get("column")
                if isinstance(col, str) and col not in data_columns:
                    missing.append(
                        {"expectation": i, "type": res["expectation_config"]["type"], "column": col}
                    )
        return ValidationOutcome(merged, suite_name, schema_changes, missing, time.perf_counter() - started)

    if suite is None:
        raise ValidationInputError("no expectation suite given (and no checkpoint_name)")
    missing = [
        {"expectation": i, "type": t, "column": c}
        for i, t, c in referenced_columns(suite)
        if c not in data_columns
    ]
    context = gx.get_context(mode="ephemeral")
    _quiet_context(context)
    try:  # GX re-serialises every expectation on a copy: avoid it when the suite is fresh
        suite_copy = context.suites.add(suite)
    except Exception:  # the suite belongs to another context: validate a copy
        suite_copy = context.suites.add(
            gx.ExpectationSuite(
                name=suite.name or "suite",
                expectations=list(suite.expectation_configurations),
                meta=suite.meta,
            )
        )
    source = context.data_sources.add_pandas("batch")
    asset = source.add_dataframe_asset("dataframe")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole dataframe")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="validation", data=batch_definition, suite=suite_copy)
    )
    result = definition.run(batch_parameters={"dataframe": df}, result_format=result_format).to_json_dict()
    result["results"] = in_suite_order(result.get("results", []), [c.id for c in suite_copy.expectation_configurations])
    return ValidationOutcome(result, suite_copy.name, schema_changes, missing, time.perf_counter() - started)


def in_suite_order(results: list[dict[str, Any]], ids: Sequence[str | None]) -> list[dict[str, Any]]:
    """
    GX results in the order of the suite's expectations (GX groups them by metric, not by suite order).

    Results are matched by expectation id; a result without a known id keeps its place after the others.
    """
    position = {i: n for n, i in enumerate(ids) if i is not None}
    keyed = [
        (position.get((r.get("expectation_config") or {}).get("id"), len(position) + k), r)
        for k, r in enumerate(results)
    ]
    return [r for _, r in sorted(keyed, key=lambda item: item[0])]


def _merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    if len(results) == 1:
        return results[0]
    merged_results: list[Any] = []
    for r in results:
        merged_results.extend(r.get("results", []))
    evaluated = len(merged_results)
    ok = sum(1 for r in merged_results if r.get("success"))
    return {
        "success": all(r.get("success") for r in results),
        "results": merged_results,
        "statistics": {
            "evaluated_expectations": evaluated,
            "successful_expectations": ok,
            "unsuccessful_expectations": evaluated - ok,
            "success_percent": (100.0 * ok / evaluated) if evaluated else None,
        },
        "meta": {"validations": [r.get("meta", {}) for r in results]},
    }


# --------------------------------------------------------------------------- summaries and reports


def _short(value: Any, limit: int = MAX_STR_CHARS) -> Any:
    """A JSON-safe, size-bounded copy of ``value`` (lists cut to a few items, strings cut)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"... ({len(value)} chars)"
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        head = [_short(v, limit // 2 or 1) for v in items[:MAX_LIST_ITEMS]]
        if len(items) > MAX_LIST_ITEMS:
            head.append(f"... ({len(items)} items)")
        return head
    if isinstance(value, Mapping):
        keys = list(value)[: MAX_LIST_ITEMS * 2]
        out = {str(k): _short(value[k], limit // 2 or 1) for k in keys}
        if len(value) > len(keys):
            out["..."] = f"{len(value)} keys"
        return out
    return _short(str(_plain(value)), limit)


#: Expectations on the set of columns of the table: their failures name the missing and extra columns.
COLUMN_SET_EXPECTATIONS = ("expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list")


def _column_set_difference(config: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"missing_columns", "extra_columns", "order_differs"}`` of a failed column-set expectation."""
    kwargs = config.get("kwargs") or {}
    expected = kwargs.get("column_set") if "column_set" in kwargs else kwargs.get("column_list")
    observed = result.get("observed_value")
    if not isinstance(expected, list | tuple) or not isinstance(observed, list | tuple):
        return None
    expected_names, observed_names = [str(c) for c in expected], [str(c) for c in observed]
    missing = [c for c in expected_names if c not in observed_names]
    extra = [c for c in observed_names if c not in expected_names]
    if config.get("type") == "expect_table_columns_to_match_set" and kwargs.get("exact_match") is False:
        extra = []  # extra columns are allowed then
    order = not missing and not extra and config.get("type") == "expect_table_columns_to_match_ordered_list"
    return {"missing_columns": missing, "extra_columns": extra, "order_differs": order}


def _failure_record(res: Mapping[str, Any], index: int, data_columns: set[str] | None) -> dict[str, Any]:
    """One failed expectation; ``index`` is its position in the suite."""
    config = res.get("expectation_config") or {}
    kwargs = dict(config.get("kwargs") or {})
    kwargs.pop("batch_id", None)
    column = kwargs.pop("column", None)
    if column is None and "column_list" in kwargs:
        column = kwargs.pop("column_list")
    elif column is None and "column_A" in kwargs:
        column = [kwargs.pop("column_A"), kwargs.pop("column_B", None)]
    result = res.get("result") or {}
    record: dict[str, Any] = {
        "expectation_type": config.get("type") or config.get("expectation_type"),
        "column": _short(column),
        "observed_value": None,
        "unexpected_count": result.get("unexpected_count"),
        "unexpected_percent": _round(result.get("unexpected_percent")),
        "expected": _short(kwargs),
        "expectation": index,
    }
    if record["expectation_type"] in COLUMN_SET_EXPECTATIONS:
        difference = _column_set_difference(config, result)
        if difference is not None:
            record.update(
                missing_columns=_short(difference["missing_columns"]),
                extra_columns=_short(difference["extra_columns"]),
                order_differs=difference["order_differs"],
            )
    if "observed_value" in result:
        record["observed_value"] = _short(result["observed_value"])
    elif result.get("partial_unexpected_counts"):
        record["observed_value"] = _short(
            {"unexpected_values": [c.get("value") for c in result["partial_unexpected_counts"]]}
        )
    elif result.get("partial_unexpected_list"):
        record["observed_value"] = _short({"unexpected_values": result["partial_unexpected_list"]})
    exc = res.get("exception_info") or {}
    messages = _exception_messages(exc)
    if messages:
        if isinstance(column, str) and data_columns is not None and column not in data_columns:
            record["error"] = f"column {column!r} is not in the data"
        else:
            record["error"] = _short(messages[0])
    return record


def _exception_messages(exc: Mapping[str, Any]) -> list[str]:
    if not exc:
        return []
    if "raised_exception" in exc:
        return [exc.get("exception_message") or "exception"] if exc.get("raised_exception") else []
    return [
        v.get("exception_message") or "exception"
        for v in exc.values()
        if isinstance(v, Mapping) and v.get("raised_exception")
    ]


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) and math.isfinite(value) else value


def failed_results(result: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    return [(i, r) for i, r in enumerate(result.get("results", [])) if not r.get("success")]


def summarize_result(
    outcome: ValidationOutcome,
    data_columns: Iterable[str] | None = None,
    max_failures: int = MAX_FAILURES,
    max_bytes: int = SUMMARY_MAX_BYTES,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """
    A small JSON-safe summary: success, statistics, schema changes and the first failures.

    Whatever the number of failures or the size of their values, ``len(json.dumps(summary))`` stays
    under ``max_bytes`` (value lists are truncated, then failures dropped, and
    ``failures_truncated`` says so).
    """
    result = outcome.result
    cols = {str(c) for c in data_columns} if data_columns is not None else None
    failed = failed_results(result)
    stats = {k: _round(v) for k, v in (result.get("statistics") or {}).items()}
    summary: dict[str, Any] = {
        "success": outcome.success,
        "suite": _short(outcome.suite_name),
        "statistics": stats,
        "schema_changes": [_short(c) for c in outcome.schema_changes[:max_failures]],
        "schema_changes_total": len(outcome.schema_changes),
        "missing_columns": sorted({m["column"] for m in outcome.missing_columns})[:max_failures],
        "failures": [_failure_record(r, i, cols) for i, r in failed[:max_failures]],
        "failures_total": len(failed),
        "failures_truncated": len(failed) > max_failures,
        "seconds": round(outcome.seconds, 3),
    }
    if extra:
        summary.update({k: _short(v) for k, v in extra.items()})
    summary = json.loads(json.dumps(summary, default=str))
    while len(json.dumps(summary)) > max_bytes and summary["failures"]:
        summary["failures"].pop()
        summary["failures_truncated"] = True
    while len(json.dumps(summary)) > max_bytes and summary["schema_changes"]:
        summary["schema_changes"].pop()
    return summary


def _where(f: Mapping[str, Any]) -> str:
    column = f.get("column")
    if f.get("expectation_type") in COLUMN_SET_EXPECTATIONS or column is None:
        return " on the table"
    if isinstance(column, list):
        return f" on columns {', '.join(repr(c) for c in column)}"
    return f" on {column!r}"


def _column_set_text(f: Mapping[str, Any]) -> str:
    missing, extra = f.get("missing_columns") or [], f.get("extra_columns") or []
    parts = []
    if missing:
        parts.append(f"missing column(s) {', '.join(repr(c) for c in missing)}")
    if extra:
        parts.append(f"extra column(s) {', '.join(repr(c) for c in extra)}")
    if f.get("order_differs"):
        parts.append(f"same columns in another order: {json.dumps(f.get('observed_value'), default=str)[:160]}")
    return ", ".join(parts) or f"observed {json.dumps(f.get('observed_value'), default=str)[:160]}"


def describe_failures(summary: Mapping[str, Any], limit: int = 5) -> str:
    """
    Human-readable lines: which expectations failed, in the suite's order, on which column, and by how much.

    One line per failure (``#<position in the suite> <expectation> on <column>: ...``) up to ``limit``,
    then the count of the rest.  A column-set expectation names the missing and extra columns.
    """
    lines = []
    if summary.get("schema_changes"):
        lines.append("schema change: " + describe_schema_changes(summary["schema_changes"]))
    for f in summary.get("failures", [])[:limit]:
        where = _where(f)
        number = f"#{f['expectation']} " if isinstance(f.get("expectation"), int) else ""
        if f.get("error"):
            how = f"error: {f['error']}"
        elif "missing_columns" in f:
            how = _column_set_text(f)
        else:
            parts = []
            if f.get("unexpected_count") is not None:
                parts.append(f"{f['unexpected_count']} unexpected ({f.get('unexpected_percent')}%)")
            if f.get("observed_value") is not None:
                parts.append(f"observed {json.dumps(f['observed_value'], default=str)[:160]}")
            if f.get("expected"):
                parts.append(f"expected {json.dumps(f['expected'], default=str)[:160]}")
            how = ", ".join(parts) or "failed"
        lines.append(f"{number}{f['expectation_type']}{where}: {how}")
    more = summary.get("failures_total", 0) - min(limit, len(summary.get("failures", [])))
    if more > 0:
        lines.append(f"... and {more} more failed expectation(s), listed in the report")
    return "\n".join(lines)


def result_to_json(outcome: ValidationOutcome, extra: Mapping[str, Any] | None = None) -> str:
    """The full validation result (plus schema check) as JSON text, for an artifact."""
    doc = {
        "suite": outcome.suite_name,
        "success": outcome.success,
        "schema_changes": outcome.schema_changes,
        "missing_columns": outcome.missing_columns,
        **(dict(extra) if extra else {}),
        "result": outcome.result,
    }
    return json.dumps(doc, default=str, indent=1)


def render_html_report(
    outcome: ValidationOutcome,
    title: str = "Data validation report",
    data_columns: Iterable[str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> str:
    """A self-contained HTML page: verdict, statistics, schema changes and every expectation."""
    esc = html.escape
    cols = {str(c) for c in data_columns} if data_columns is not None else None
    result = outcome.result
    stats = result.get("statistics") or {}
    ok = outcome.success
    rows = []
    for i, res in enumerate(result.get("results", [])):
        rec = _failure_record(res, i, cols)
        status = "pass" if res.get("success") else "FAIL"
        observed = rec.get("error") or rec.get("observed_value")
        rows.append(
            f"<tr class='{'ok' if res.get('success') else 'bad'}'><td>{i}</td><td>{status}</td>"
            f"<td>{esc(str(rec['expectation_type']))}</td><td>{esc(json.dumps(rec['column'], default=str))}</td>"
            f"<td>{esc(json.dumps(rec['expected'], default=str))}</td>"
            f"<td>{esc(json.dumps(observed, default=str))}</td>"
            f"<td>{'' if rec['unexpected_count'] is None else rec['unexpected_count']}</td>"
            f"<td>{'' if rec['unexpected_percent'] is None else rec['unexpected_percent']}</td></tr>"
        )
    schema_html = ""
    if outcome.schema_changes:
        items = "".join(f"<li>{esc(describe_schema_changes([c]))}</li>" for c in outcome.schema_changes)
        schema_html = f"<h2>Schema changes</h2><ul class='bad'>{items}</ul>"
    missing_html = ""
    if outcome.missing_columns:
        items = "".join(
            f"<li>expectation #{m['expectation']} ({esc(m['type'])}) reads column {esc(repr(m['column']))}, "
            "which is not in the data</li>"
            for m in outcome.missing_columns
        )
        missing_html = f"<h2>Columns missing from the data</h2><ul class='bad'>{items}</ul>"
    detail_rows = "".join(
        f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in (details or {}).items()
    )
    stat_rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in stats.items())
    verdict = "PASSED" if ok else "FAILED"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;font-size:90%;max-width:40em;
overflow-wrap:anywhere}} tr.bad td{{background:#fde8e8}} tr.ok td{{background:#eefaf0}}
.verdict{{font-size:150%;font-weight:bold;color:{"#1a7f37" if ok else "#b42318"}}} ul.bad{{color:#b42318}}
</style></head><body>
<h1>{esc(title)}</h1>
<p class="verdict">{verdict}</p>
<table>{detail_rows}<tr><th>suite</th><td>{esc(outcome.suite_name)}</td></tr></table>
<h2>Statistics</h2><table>{stat_rows}</table>
{schema_html}{missing_html}
<h2>Expectations</h2>
<table><tr><th>#</th><th>status</th><th>expectation</th><th>column</th><th>expected</th><th>observed</th>
<th>unexpected count</th><th>unexpected %</th></tr>
{"".join(rows)}
</table>
<p>Value lists are shortened to {MAX_LIST_ITEMS} items here; the full result is in result.json.</p>
</body></html>
"""


# --------------------------------------------------------------------------- quarantine


def write_quarantine(
    location: str,
    frame: pd.DataFrame,
    *,
    report_html: str,
    result_json: str,
    summary: Mapping[str, Any],
    source_uri: str | None = None,
    fs: Any | None = None,
) -> str:
    """
    Copy a failing batch and its report to ``location`` (a local path or an fsspec URL).

    ``fs``: the fsspec file system to write with (e.g. one built from an Airflow connection); by default
    the one fsspec resolves from ``location``.

    Writes ``batch.parquet`` (the batch as validated), ``report.html``, ``result.json`` and
    ``summary.json``; when the source is a local file it is also copied byte for byte under
    ``source/``.  The source is never modified or deleted.  Returns ``location``.
    """
    import fsspec

    if fs is None:
        fs, root = fsspec.core.url_to_fs(location)
    else:
        root = fs._strip_protocol(location)
    fs.makedirs(root, exist_ok=True)
    sep = "/"
    with fs.open(root.rstrip(sep) + sep + "batch.parquet", "wb") as fh:
        frame.to_parquet(fh, index=False)
    for name, text in (
        ("report.html", report_html),
        ("result.json", result_json),
        ("summary.json", json.dumps(dict(summary), indent=1, default=str)),
    ):
        with fs.open(root.rstrip(sep) + sep + name, "w", encoding="utf-8") as fh:
            fh.write(text)
    local = _local_path(source_uri)
    if local is not None and local.is_file():
        fs.makedirs(root.rstrip(sep) + sep + "source", exist_ok=True)
        fs.put_file(str(local), root.rstrip(sep) + sep + "source" + sep + local.name)
    return location


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" in uri:
        return None
    return Path(uri)


# --------------------------------------------------------------------------- lineage


def matching_validation_run(records: Any, digest: str) -> str | None:
    """
    The id of a passing validation run on data with ``digest``, from lineage XCom records.

    ``records`` is one record or a list of records (``xcom_pull`` of several tasks) of the shape
    pushed by ``DataValidationOperator`` under XCom key ``validation_lineage``:
    ``{"validation_run_id", "data_digest", "success", ...}``.  Returns ``None`` when no record
    passed on the same digest, so a training task never claims a validation of other data.
    """
    if records is None:
        return None
    if isinstance(records, Mapping):
        records = [records]
    for record in records:
        if (
            isinstance(record, Mapping)
            and record.get("success") is True
            and record.get("data_digest") == digest
            and record.get("validation_run_id")
        ):
            return str(record["validation_run_id"])
    return None
