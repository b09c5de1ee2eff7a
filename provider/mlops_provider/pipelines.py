"""
Model pipelines as data: one YAML file per model, validated with line-precise errors.

A data scientist changes ``dags/pipelines/<model>.yaml`` (data, features, estimator, validation
contracts, gate thresholds, drift and decay settings, retraining policy), not Python; the DAG files
(``dags/continuous_training.py``, ``dags/drift_monitor.py``, ``dags/cicd_pipeline.py``) build their DAGs
from it with :func:`load_pipeline`.

Every error names the file, the line and the key path::

    dags/pipelines/loan_default.yaml:14: gate.min_value: expected a number, got 'high'
    dags/pipelines/loan_default.yaml:3: data.trainig: unknown key (expected one of: batches, labels, ...)
    dags/pipelines/loan_default.yaml:1: estimator: required key is missing

Every field, its default and its allowed values are documented in ``docs/pipelines.md`` (a test keeps
the page in step with :data:`SCHEMA`).

Cheap to import (PyYAML and the standard library only), so DAG files that call it parse as fast as a
trivial DAG.  :func:`tabular_classifier` is the estimator factory the pipelines use; it imports
scikit-learn only when called (in the training task).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from mlops_provider.exceptions import MlopsConfigurationError


class PipelineSpecError(MlopsConfigurationError):
    """A pipeline YAML file is invalid; ``errors`` lists ``(file, line, key, message)``."""

    def __init__(self, errors: list[tuple[str, int, str, str]]) -> None:
        self.errors = errors
        lines = [f"{path}:{line}: {key}: {message}" for path, line, key, message in errors]
        super().__init__(f"{len(errors)} error(s) in pipeline definition:\n" + "\n".join(lines))


# ---------------------------------------------------------------------- schema
#
# A schema node is ``Field(type, required, default, children)``.  Types: "str", "int", "number",
# "bool", "list[str]", "map" (free-form mapping), "section" (children are the allowed keys).


@dataclass(frozen=True)
class Field:
    type: str
    required: bool = False
    default: Any = None
    children: Mapping[str, Field] | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

SCHEMA: dict[str, Field] = {
    "name": Field("str", True, doc="registered model name (also names the DAGs and the assets)"),
    "description": Field("str", default=""),
    "owner": Field("str", default="mlops"),
    "data": Field(
        "section",
        True,
        children={
            "root": Field("str", True, doc="base folder; ${VAR} and ${VAR:-default} are expanded"),
            "training": Field("str", True, doc="the labelled base training set (relative to root)"),
            "batches": Field("str", True, doc="landing glob of scoring batches"),
            "labels": Field("str", True, doc="landing folder of labels (same file name as the batch)"),
            "predictions": Field("str", default="predictions"),
            "quarantine": Field("str", default="quarantine"),
            "work": Field("str", default="work"),
            "conn_id": Field("str", doc="Airflow connection of an object-store root (e.g. an aws connection for s3://)"),
            "state": Field("str", doc="local (shared) folder of the SQLite ledgers; default <root>/work; "
                                      "required when root is an object store"),
        },
    ),
    "features": Field(
        "section",
        True,
        children={
            "id": Field("str", True),
            "time": Field("str"),
            "numeric": Field("list[str]", default=[]),
            "categorical": Field("list[str]", default=[]),
        },
    ),
    "target": Field("str", True),
    "estimator": Field(
        "section",
        True,
        children={"class": Field("str", True), "params": Field("map", default={})},
    ),
    "validation": Field(
        "section",
        True,
        children={
            "batch_contract": Field("str", True, doc="schema contract of a scoring batch (relative: to the YAML's folder)"),
            "training_contract": Field("str", True, doc="schema contract of the training data"),
            "derive": Field(
                "section",
                default={},
                doc="how `mlops-pipelines derive-contracts` derives the two contracts from `data.training`",
                children={
                    "ranges": Field("bool", default=False, doc="check numeric min/max taken from the reference"),
                    "margin": Field("number", default=0.1, doc="with ranges: fraction of the observed range "
                                    "added on each side"),
                    "max_categories": Field("int", default=50, doc="largest value set recorded for a text column"),
                    "id_columns": Field("list[str]", default=[], doc="more id columns (besides features.id): "
                                        "unique and not null, never a range"),
                },
            ),
        },
    ),
    "gate": Field(
        "section",
        True,
        children={
            "metric": Field("str", default="roc_auc"),
            "min_value": Field("number", True),
            "max_regression": Field("number", default=0.0, doc="allowed drop against the champion"),
            "approval": Field("bool", default=False, doc="level 2: a human approves the promotion"),
        },
    ),
    "drift": Field(
        "section",
        default={},
        children={
            "drift_share": Field("number", default=0.5),
            "columns": Field("list[str]"),
            "predictions": Field("bool", default=True, doc="also check the champion's outputs (prediction drift)"),
        },
    ),
    "performance": Field(
        "section",
        default={},
        children={
            "metric": Field("str", default="accuracy"),
            "tolerance": Field("number", default=0.05),
            "min_rows": Field("int", default=100),
            "scoring_wait_minutes": Field("number", default=30, doc="labels that land before their batch is "
                                          "scored wait this long for the predictions, then fail"),
        },
    ),
    "retraining": Field(
        "section",
        default={},
        children={
            "schedule": Field("str", doc="cron expression or preset; empty: events only"),
            "cooldown_minutes": Field("number", default=60),
            "window": Field("str", default="latest", choices=("latest", "base_plus_latest", "all"),
                            doc="the training window: the latest N accepted batches, the base set plus them, "
                            "or the base set plus every accepted batch"),
            "window_batches": Field("int", default=3, doc="N, for window latest and base_plus_latest"),
            "label_wait_minutes": Field("number", default=30),
        },
    ),
    "retries": Field(
        "section",
        default={},
        doc="crash recovery: Airflow retries of every task of the pipeline's DAGs (their default_args)",
        children={
            "count": Field("int", default=2, doc="retries after the first try (Airflow's retries)"),
            "delay_seconds": Field("number", default=30, doc="wait before the first retry (retry_delay)"),
            "exponential_backoff": Field("bool", default=True, doc="double the wait at each retry"),
            "max_delay_seconds": Field("number", default=600, doc="longest wait between tries (max_retry_delay)"),
        },
    ),
    "tests": Field("list[str]", default=[], doc="component tests CI runs (pytest node ids)"),
}

#: Bounds of ``retries.*`` (inclusive): a key outside them is an error naming file, line and key.
RETRY_BOUNDS: dict[str, tuple[float, float]] = {
    "count": (0, 10),
    "delay_seconds": (1, 3600),
    "max_delay_seconds": (1, 86400),
}

_TYPE_NAMES = {"str": "a string", "int": "an integer", "number": "a number", "bool": "true/false",
               "list[str]": "a list of strings", "map": "a mapping", "section": "a mapping"}


def _check_type(kind: str, node: yaml.Node) -> str | None:
    """``None`` when the YAML node has the right kind, else what was found."""
    if kind in ("map", "section"):
        return None if isinstance(node, yaml.MappingNode) else _found(node)
    if kind == "list[str]":
        if not isinstance(node, yaml.SequenceNode):
            return _found(node)
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode) or item.tag != "tag:yaml.org,2002:str":
                return f"a list with {_found(item)}"
        return None
    if not isinstance(node, yaml.ScalarNode):
        return _found(node)
    tag = node.tag.rsplit(":", 1)[-1]
    ok = {"str": ("str",), "int": ("int",), "number": ("int", "float"), "bool": ("bool",)}[kind]
    return None if tag in ok else _found(node)


def _found(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    return f"{ {'str': 'a string', 'int': 'an integer', 'float': 'a number', 'bool': 'a boolean', 'null': 'null'}.get(tag, tag)} {node.value!r}"


def _validate(path: str, node: yaml.Node, schema: Mapping[str, Field], prefix: str,
              errors: list[tuple[str, int, str, str]]) -> None:
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = str(key_node.value)
        dotted = f"{prefix}{key}"
        line = key_node.start_mark.line + 1
        if key in seen:
            errors.append((path, line, dotted, "duplicate key"))
            continue
        seen.add(key)
        spec = schema.get(key)
        if spec is None:
            errors.append((path, line, dotted, f"unknown key (expected one of: {', '.join(sorted(schema))})"))
            continue
        if isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null") and not spec.required:
            continue
        found = _check_type(spec.type, value_node)
        if found:
            errors.append((path, value_node.start_mark.line + 1, dotted,
                           f"expected {_TYPE_NAMES[spec.type]}, got {found}"))
            continue
        if spec.choices is not None and value_node.value not in spec.choices:
            errors.append((path, value_node.start_mark.line + 1, dotted,
                           f"{value_node.value!r} is not allowed (expected one of: {', '.join(spec.choices)})"))
            continue
        if spec.type == "section" and spec.children:
            _validate(path, value_node, spec.children, f"{dotted}.", errors)
    for key, spec in schema.items():
        if spec.required and key not in seen:
            errors.append((path, node.start_mark.line + 1, f"{prefix}{key}", "required key is missing"))


def _with_defaults(data: dict[str, Any], schema: Mapping[str, Field]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        value = data.get(key)
        if value is None:
            value = spec.default
        if spec.type == "section" and spec.children is not None:
            value = _with_defaults(value or {}, spec.children)
        elif isinstance(value, list | dict):
            value = type(value)(value)
        out[key] = value
    return out


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str) -> str:
    """``${VAR}`` / ``${VAR:-default}`` from the environment (an unset ``${VAR}`` without default stays)."""
    return _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) if m.group(2) is not None else m.group(0)), value)


# ---------------------------------------------------------------------- the spec


@dataclass
class PipelineSpec:
    """A validated pipeline definition (``raw``: the YAML with defaults filled in)."""

    path: str
    raw: dict[str, Any]
    digest: str
    extra_errors: list[str] = field(default_factory=list)
    #: where contracts named by a relative path are looked up when they are not beside the YAML
    contracts_fallback: str | None = None

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def dag_suffix(self) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", self.name)

    @property
    def version(self) -> str:
        """Short content digest: the pipeline version recorded on the models it deploys."""
        return self.digest[:12]

    # data locations -------------------------------------------------------------
    @property
    def root(self) -> str:
        return expand_env(self.raw["data"]["root"])

    def data_path(self, key: str) -> str:
        value = expand_env(self.raw["data"][key])
        return value if os.path.isabs(value) or "://" in value else os.path.join(self.root, value)

    @property
    def conn_id(self) -> str | None:
        """The object store's connection (``data.conn_id``), ``None`` for a local root."""
        return expand_env(self.raw["data"]["conn_id"]) if self.raw["data"].get("conn_id") else None

    @property
    def on_object_store(self) -> bool:
        return "://" in self.root and not self.root.startswith("file://")

    def ref(self, uri: str) -> str | dict[str, Any]:
        """A dataset reference to ``uri`` for the operators: with the root's connection when it has one."""
        return {"uri": uri, "conn_id": self.conn_id} if self.conn_id else uri

    def state_path(self, name: str) -> str:
        """A ledger's path: under ``data.state`` (a local or shared folder), else under ``work``."""
        state = self.raw["data"].get("state")
        return os.path.join(expand_env(state) if state else self.data_path("work"), name)

    def folder_of(self, key: str) -> str:
        """The folder of ``data.<key>`` (the landing folder of a glob such as ``batches``)."""
        return self.data_path(key).rsplit("/", 1)[0] if "*" in self.data_path(key) else self.data_path(key)

    def storage(self, uri: str) -> Any:
        """A path object for ``uri``: ``pathlib.Path`` locally, ``ObjectStoragePath`` (with the connection) on a store."""
        if "://" in uri and not uri.startswith("file://"):
            from airflow.sdk import ObjectStoragePath

            return ObjectStoragePath(uri, conn_id=self.conn_id)
        return Path(uri[len("file://"):] if uri.startswith("file://") else uri)

    @property
    def batches_dir(self) -> str:
        """The folder of the ``data.batches`` glob."""
        return os.path.dirname(self.data_path("batches"))

    def contract_path(self, key: str) -> str:
        """
        The file of contract ``validation.<key>``: an absolute path as it is; a relative one beside the YAML,
        else (when missing there) in :attr:`contracts_fallback`.
        """
        value = self.raw["validation"][key]
        if os.path.isabs(value):
            return value
        beside = os.path.join(os.path.dirname(os.path.abspath(self.path)), value)
        if not os.path.isfile(beside) and self.contracts_fallback:
            fallback = os.path.join(os.path.abspath(self.contracts_fallback), value)
            if os.path.isfile(fallback):
                return fallback
        return beside

    def check_contracts(self) -> dict[str, str]:
        """
        Each contract the definition names (``validation.*``) exists and is a valid suite; ``key -> path``.

        :raises PipelineSpecError: naming, for each missing or invalid contract, the YAML line of its key,
            the file that is missing and where it must go (a relative path is read from the YAML's folder).
        """
        from mlops_provider.core.validation import SuiteDefinitionError, load_suite_file

        errors: list[tuple[str, int, str, str]] = []
        found: dict[str, str] = {}
        for key in ("batch_contract", "training_contract"):
            path = self.contract_path(key)
            line = self._line_of("validation", key)
            if not os.path.isfile(path):
                named = self.raw["validation"][key]
                where = "" if os.path.isabs(named) else (
                    f" (relative paths are read from the folder of {self.path}"
                    + (f", then from {self.contracts_fallback}" if self.contracts_fallback else "") + ")")
                errors.append((self.path, line, f"validation.{key}",
                               f"contract {named!r} is missing: put the suite file at {path}{where}"))
                continue
            try:
                load_suite_file(path)
            except SuiteDefinitionError as err:
                errors.append((self.path, line, f"validation.{key}", f"contract {path} is not a valid suite: {err}"))
                continue
            found[key] = path
        if errors:
            raise PipelineSpecError(errors)
        return found

    def _line_of(self, section: str, key: str) -> int:
        """The line of ``section.key`` in the YAML file (1 when the file cannot be read)."""
        try:
            node = yaml.compose(Path(self.path).read_text(), Loader=yaml.SafeLoader)
        except (OSError, yaml.YAMLError):
            return 1
        for k, v in node.value if isinstance(node, yaml.MappingNode) else []:
            if k.value == section and isinstance(v, yaml.MappingNode):
                return next((kk.start_mark.line + 1 for kk, _ in v.value if kk.value == key), k.start_mark.line + 1)
        return 1

    # model ----------------------------------------------------------------------
    @property
    def feature_columns(self) -> list[str]:
        return list(self.raw["features"]["numeric"]) + list(self.raw["features"]["categorical"])

    @property
    def exclude_columns(self) -> list[str]:
        return [c for c in (self.raw["features"]["id"], self.raw["features"]["time"]) if c]

    def estimator_params(self) -> dict[str, Any]:
        """Params of :func:`tabular_classifier` (the factory named as the training estimator)."""
        return {
            "estimator": self.raw["estimator"]["class"],
            "params": dict(self.raw["estimator"]["params"] or {}),
            "categorical": list(self.raw["features"]["categorical"]),
        }

    def default_args(self) -> dict[str, Any]:
        """
        Airflow ``default_args`` of the pipeline's DAGs: retries with backoff (``retries:`` in the YAML).

        A try that crashed (a worker SIGKILLed, out of memory, lost heartbeat) is retried; errors a retry
        cannot fix (bad data, a rejected gate, a bad definition) fail at once (``AirflowFailException``).
        """
        retries = self.raw["retries"]
        return {
            "retries": int(retries["count"]),
            "retry_delay": timedelta(seconds=float(retries["delay_seconds"])),
            "retry_exponential_backoff": bool(retries["exponential_backoff"]),
            "max_retry_delay": timedelta(seconds=float(retries["max_delay_seconds"])),
        }

    def gate_spec(self) -> dict[str, Any]:
        gate = self.raw["gate"]
        metric = gate["metric"]
        lower_is_better = metric in ("log_loss", "rmse", "mae", "mse", "brier_score")
        thresholds: list[dict[str, Any]] = [
            {"metric": metric, "value": {("upper_bound" if lower_is_better else "lower_bound"): gate["min_value"]}},
            {
                "metric": metric,
                "change": {
                    "direction": "lower_is_better" if lower_is_better else "higher_is_better",
                    "absolute": (1 if lower_is_better else -1) * float(gate["max_regression"]),
                },
            },
        ]
        return {"thresholds": thresholds, "fail_on_empty_slice": False}


def load_pipeline(path: str | os.PathLike[str], contracts_fallback: str | os.PathLike[str] | None = None) -> PipelineSpec:
    """
    Read and validate one pipeline YAML; raise :class:`PipelineSpecError` with file:line:key errors.

    :param contracts_fallback: where contracts named by a relative path are looked up when they are not
        beside the YAML (level 2 passes the live pipelines folder, so a proposal can be the YAML alone).
    """
    path = str(path)
    text = Path(path).read_text()
    spec = parse_pipeline(text, path)
    spec.contracts_fallback = str(contracts_fallback) if contracts_fallback else None
    return spec


def parse_pipeline(text: str, path: str = "<string>") -> PipelineSpec:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise PipelineSpecError([(path, (mark.line + 1) if mark else 1, "<yaml>", str(err.problem or err))]) from None
    if not isinstance(node, yaml.MappingNode):
        raise PipelineSpecError([(path, 1, "<root>", "a pipeline definition must be a mapping")])
    errors: list[tuple[str, int, str, str]] = []
    _validate(path, node, SCHEMA, "", errors)
    if errors:
        raise PipelineSpecError(errors)
    data = yaml.safe_load(text)
    raw = _with_defaults(data, SCHEMA)
    name_line = next((k.start_mark.line + 1 for k, _ in node.value if k.value == "name"), 1)
    if not _NAME.match(raw["name"]):
        raise PipelineSpecError([(path, name_line, "name", f"{raw['name']!r} is not a valid model name")])
    cats = set(raw["features"]["categorical"])
    overlap = cats & set(raw["features"]["numeric"])
    if overlap:
        raise PipelineSpecError([(path, _line(node, "features"), "features",
                                  f"columns both numeric and categorical: {sorted(overlap)}")])
    if raw["target"] in cats | set(raw["features"]["numeric"]):
        raise PipelineSpecError([(path, _line(node, "target"), "target", "the target is also listed as a feature")])
    if raw["retraining"]["window_batches"] < 1:
        raise PipelineSpecError([(path, _line(node, "retraining"), "retraining.window_batches", "must be >= 1")])
    _check_retries(path, node, raw["retries"])
    root = expand_env(raw["data"]["root"])
    if "://" in root and not root.startswith("file://") and not raw["data"].get("state"):
        raise PipelineSpecError([(path, _line_in(node, "data", "root"), "data.state",
                                  f"required when data.root is an object store ({root}): a local or shared "
                                  "folder for the SQLite ledgers of the watchers and the retraining policy")])
    digest = hashlib.sha256(text.encode()).hexdigest()
    return PipelineSpec(path=path, raw=raw, digest=digest)


def _line(node: yaml.MappingNode, key: str) -> int:
    return next((k.start_mark.line + 1 for k, _ in node.value if k.value == key), 1)


def _line_in(node: yaml.MappingNode, section: str, key: str) -> int:
    """The line of ``section.key`` (of ``section`` when the key is not written)."""
    for k, v in node.value:
        if k.value == section and isinstance(v, yaml.MappingNode):
            return next((kk.start_mark.line + 1 for kk, _ in v.value if kk.value == key), k.start_mark.line + 1)
    return 1


def _check_retries(path: str, node: yaml.MappingNode, retries: dict[str, Any]) -> None:
    errors = []
    for key, (low, high) in RETRY_BOUNDS.items():
        if not low <= retries[key] <= high:
            errors.append((path, _line_in(node, "retries", key), f"retries.{key}",
                           f"{retries[key]!r} is out of range (allowed: {low:g} to {high:g})"))
    if not errors and retries["max_delay_seconds"] < retries["delay_seconds"]:
        errors.append((path, _line_in(node, "retries", "max_delay_seconds"), "retries.max_delay_seconds",
                       f"{retries['max_delay_seconds']!r} is shorter than retries.delay_seconds "
                       f"({retries['delay_seconds']!r})"))
    if errors:
        raise PipelineSpecError(errors)


def build_dags(
    folder: str | os.PathLike[str],
    namespace: dict[str, Any] | None = None,
    *,
    kinds: tuple[str, ...] | list[str] = ("continuous_training", "drift_monitor", "performance_monitor", "cicd_pipeline"),
    tests_root: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """
    Build the MLOps DAGs of every pipeline YAML in ``folder`` into ``namespace`` (a DAG file's ``globals()``).

    Parse-safe (no heavy import); see :func:`mlops_provider.pipeline_dags.build_dags` for the parameters.
    """
    from mlops_provider.pipeline_dags import build_dags as _build_dags

    return _build_dags(folder, namespace, kinds=kinds, tests_root=tests_root)


def discover_pipelines(folder: str | os.PathLike[str]) -> list[PipelineSpec]:
    """Every valid ``*.yaml`` pipeline in ``folder`` (sorted); an invalid file raises (an import error)."""
    return [load_pipeline(p) for p in sorted(Path(folder).glob("*.yaml"))]


# ---------------------------------------------------------------------- estimator factory


def tabular_classifier(estimator: str, params: dict[str, Any] | None = None, categorical: list[str] | None = None) -> Any:
    """
    ``one-hot(categorical) + standard-scale(numeric) -> estimator``, as one scikit-learn ``Pipeline``.

    Named as ``TrainModelOperator(estimator="mlops_provider.pipelines.tabular_classifier", ...)``; the
    fitted pipeline holds only scikit-learn classes, so serving it needs no provider code.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from mlops_provider.core.training import build_estimator

    model = build_estimator(estimator, params or {})
    cats = list(categorical or [])
    pre = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore"), cats)],
        remainder=StandardScaler(),
        verbose_feature_names_out=False,
    )
    return Pipeline([("prepare", pre), ("model", model)])
