"""Lineage records: what each operator's ``execute()`` stores on ``self._lineage`` (plain JSON-safe dicts).

A record is ``{"inputs": [item], "outputs": [item], "run": {facet key: payload}}`` where an item is
``{"data": {"uri"|"conn_id"+"sql"}, ...}`` (a dataset reference), ``{"mlflow": namespace, "model": URI}``
(a logged model or a registered model version) or ``{"file": path}``, with optional ``facets`` (dataset
facets) and ``input_facets`` / ``output_facets``.  Names are resolved and OpenLineage objects built only
when the OpenLineage provider asks (:mod:`mlops_provider.lineage.events`), so without the extra a record
costs a few dict operations.  Nothing here imports OpenLineage; pandas only arrives through objects the
operator already loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mlops_provider.lineage.naming import mlflow_namespace, model_version_name

#: Per-column verdicts and gate checks beyond this many are left out of a facet (the count says so).
MAX_ITEMS = 200


def data_item(value: Any, **facets: Any) -> dict[str, Any] | None:
    """An item for a dataset argument (path/URI string, dict or ``DatasetRef``); ``None`` if unusable."""
    from mlops_provider.core.datasets import to_dataset_ref

    if value in (None, ""):
        return None
    try:
        ref = to_dataset_ref(value)
    except Exception:  # noqa: BLE001 - a bad reference fails the task elsewhere, with a clear message
        return None
    data = {k: v for k, v in (("uri", ref.uri), ("conn_id", ref.conn_id), ("sql", ref.sql)) if v}
    return {"data": data, **{k: v for k, v in facets.items() if v}}


def model_item(tracking_uri: str, model_uri: str, **facet: Any) -> dict[str, Any]:
    """An item for an MLflow model (``models:/<name>/<version>``, ``models:/m-<id>``, ``runs:/...``)."""
    payload = {"modelUri": model_uri, **{k: _str(v) for k, v in facet.items() if v not in (None, "")}}
    return {"mlflow": mlflow_namespace(tracking_uri), "model": model_uri, "facets": {"mlops_model": payload}}


def version_item(tracking_uri: str, name: str, version: Any, **facet: Any) -> dict[str, Any]:
    return model_item(
        tracking_uri, model_version_name(name, version), registeredModelName=name, version=version, **facet
    )


def record(
    inputs: Sequence[dict[str, Any] | None] = (),
    outputs: Sequence[dict[str, Any] | None] = (),
    **run: Any,
) -> dict[str, Any]:
    return {
        "inputs": [i for i in inputs if i],
        "outputs": [o for o in outputs if o],
        "run": {k: v for k, v in run.items() if v},
    }


def merge(first: dict[str, Any] | None, second: dict[str, Any]) -> dict[str, Any]:
    """Both records in one (a gate that also promotes: its inputs and decision, and the alias move)."""
    first = first or record()
    return {
        "inputs": [*first["inputs"], *second["inputs"]],
        "outputs": [*first["outputs"], *second["outputs"]],
        "run": {**first["run"], **second["run"]},
    }


# ---------------------------------------------------------------------------------------- operators


def validation(dataset: Any, data: Any, outcome: Any, quarantine: str | None = None) -> dict[str, Any]:
    """The batch with its schema, one assertion per expectation, row and null counts; the quarantine."""
    nulls = data.frame.isna().sum()
    item = data_item(
        dataset,
        facets={"schema": {"fields": [{"name": c, "type": t} for c, t in data.schema.items()]}},
        input_facets={
            "dataQualityAssertions": {"assertions": assertions(outcome)},
            "dataQualityMetrics": {
                "rowCount": int(data.n_rows),
                "columnMetrics": {str(c): {"nullCount": int(n)} for c, n in nulls.items()},
            },
        },
    )
    return record([item], [{"file": quarantine} if quarantine else None])


def assertions(outcome: Any) -> list[dict[str, Any]]:
    """One ``dataQualityAssertions`` entry per expectation (its type, column and success), then the
    schema-contract findings (a missing, new or retyped column is a failed assertion of its column)."""
    out = []
    for res in outcome.result.get("results") or []:
        config = res.get("expectation_config") or {}
        kwargs = config.get("kwargs") or {}
        column = kwargs.get("column")
        if column is None and kwargs.get("column_list"):
            column = ",".join(map(str, kwargs["column_list"]))
        elif column is None and kwargs.get("column_A"):
            column = f"{kwargs['column_A']},{kwargs.get('column_B')}"
        entry = {"assertion": str(config.get("type") or config.get("expectation_type")), "success": bool(res.get("success"))}
        if column is not None:
            entry["column"] = str(column)
        out.append(entry)
    for change in [*outcome.schema_changes, *outcome.missing_columns]:
        entry = {"assertion": f"schema_contract:{change.get('change') or 'missing_column'}", "success": False}
        if change.get("column") is not None:
            entry["column"] = str(change["column"])
        out.append(entry)
    return out


def training_inputs(train_ref: Any, eval_ref: Any) -> dict[str, Any]:
    return record([data_item(train_ref), data_item(eval_ref)])


def training(
    train_ref: Any, eval_ref: Any, tracking_uri: str, *, run_id: str, experiment_id: str, model_uri: str,
    model_id: str | None, estimator: str, params: Mapping[str, Any], metrics: Mapping[str, float],
    problem_type: str,
) -> dict[str, Any]:
    """Training (and evaluation) data in; the logged model out, in the MLflow namespace."""
    model = model_item(tracking_uri, model_uri, runId=run_id, experimentId=experiment_id, modelId=model_id)
    return record(
        [data_item(train_ref), data_item(eval_ref)],
        [model],
        mlops_training={
            "estimator": estimator,
            "problemType": problem_type,
            "hyperparameters": {str(k): _str(v) for k, v in params.items()},
            "metrics": {str(k): float(v) for k, v in metrics.items() if _finite(v)},
            "runId": run_id,
            "experimentId": experiment_id,
        },
    )


def register(tracking_uri: str, source_model_uri: str, registered: Mapping[str, Any]) -> dict[str, Any]:
    """The logged model in, the registered model version out; the alias pointed at it."""
    version = version_item(
        tracking_uri, registered["name"], registered["version"], runId=registered.get("run_id"),
        sourceModelUri=registered.get("model_uri") or source_model_uri,
    )
    move = None
    if registered.get("alias"):
        move = {"action": "register", "registeredModelName": registered["name"], "alias": registered["alias"],
                "toVersion": str(registered["version"]), "changed": bool(registered.get("created"))}
    return record([model_item(tracking_uri, str(source_model_uri))], [version], mlops_aliasMove=move)


def alias_move(tracking_uri: str, result: Mapping[str, Any], reason: str, action: str) -> dict[str, Any]:
    """Promotion or rollback: the version the alias now points at, and the move (from, to, why)."""
    name = result["name"]
    return record(
        [],
        [version_item(tracking_uri, name, result["version"], alias=result["alias"])],
        mlops_aliasMove={
            "action": action,
            "registeredModelName": name,
            "alias": result["alias"],
            "fromVersion": _str(result.get("previous_version")),
            "toVersion": str(result["version"]),
            "changed": bool(result.get("changed", True)),
            "reason": str(reason or ""),
        },
    )


def drift(current: Any, mlflow_conn_id: str, summary: Mapping[str, Any], reference: Any) -> dict[str, Any]:
    """The batch and the reference in (a model version's profile, a dataset or a profile file); verdicts.

    The MLflow connection is read only when the reference is a model version (a drift check of two
    datasets needs no MLflow connection)."""
    ref_item = None
    if getattr(reference, "model_name", None):
        from mlops_provider.hooks.mlflow import MlflowHook

        tracking_uri = MlflowHook(mlflow_conn_id=mlflow_conn_id).tracking_uri
        ref_item = version_item(tracking_uri, reference.model_name, reference.model_version, runId=reference.run_id)
    elif isinstance(getattr(reference, "description", None), str) and reference.description != "profile":
        ref_item = data_item(reference.description)
    columns = summary.get("columns") or {}
    facet = {
        "datasetDrift": bool(summary.get("dataset_drift")),
        "driftShare": summary.get("drift_share"),
        "shareOfDriftedColumns": summary.get("share_of_drifted_columns"),
        "numberOfColumns": summary.get("number_of_columns"),
        "numberOfDriftedColumns": summary.get("number_of_drifted_columns"),
        "reference": getattr(reference, "description", None),
        "columns": [
            {"column": str(name), **{_camel(k): v for k, v in col.items() if v is not None and _finite(v)}}
            for name, col in list(columns.items())[:MAX_ITEMS]
        ],
        "missingColumns": [str(c) for c in summary.get("missing_columns") or []],
        "skippedColumns": [str(c) for c in summary.get("skipped_columns") or []],
    }
    return record([data_item(current), ref_item], [], mlops_drift={k: v for k, v in facet.items() if v is not None})


def gate(
    eval_dataset: Any, tracking_uri: str, model_name: str, challenger: str, champion: str | None, decision: Any
) -> dict[str, Any]:
    """Evaluation data, challenger and champion versions in; the decision and every check."""
    checks = [c.to_dict() for c in decision.checks]
    facet = {
        "passed": bool(decision.passed),
        "verdict": decision.verdict,
        "basis": decision.basis,
        "registeredModelName": model_name,
        "challengerVersion": str(challenger),
        "championVersion": _str(champion),
        "numberOfChecks": len(checks),
        "numberOfFailedChecks": sum(1 for c in checks if not c["passed"]),
        "checks": [
            {k: v for k, v in c.items() if v is not None and v != {} and _finite(v)} for c in checks[:MAX_ITEMS]
        ],
        "notes": [str(n) for n in getattr(decision, "notes", [])],
    }
    return record(
        [
            data_item(eval_dataset),
            version_item(tracking_uri, model_name, challenger, role="challenger"),
            version_item(tracking_uri, model_name, champion, role="champion") if champion else None,
        ],
        [],
        mlops_gateDecision={k: v for k, v in facet.items() if v is not None},
    )


def predict(
    input_data: Any, tracking_uri: str, model_uri: str, name: str | None, version: str | None,
    output_uri: str | None = None, n_rows: int | None = None,
) -> dict[str, Any]:
    """The batch and the model version in; the predictions out (with their row count once written)."""
    model = version_item(tracking_uri, name, version) if name and version else model_item(tracking_uri, model_uri)
    out = None
    if output_uri:
        out = {"file": str(output_uri)}
        if n_rows is not None:
            out["output_facets"] = {"outputStatistics": {"rowCount": int(n_rows)}}
    return record([data_item(input_data), model], [out])


def performance(predictions: Any, labels: Any) -> dict[str, Any]:
    return record([data_item(predictions), data_item(labels)])


# ---------------------------------------------------------------------------------------- helpers


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _finite(value: Any) -> bool:
    return not (isinstance(value, float) and not math.isfinite(value))


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)
