"""OpenLineage events from the provider's operators (issue 16, docs/lineage.md).

The end-to-end test runs the level-1 pipeline (train -> register -> gate -> promote -> score), the drift
monitor on a good and on a broken batch, and a validation that fails, with ``dag.test()`` in a fresh
interpreter whose OpenLineage provider writes every event to a file (the provider's ``file`` transport:
no mock; Airflow's OpenLineage listener fires under ``dag.test()``).  Real MLflow (``sqlite:///`` store),
real GX, real scikit-learn.  Every event is validated against the OpenLineage JSON schema (vendored in
tests/data/openlineage-spec) and every custom facet against the schema shipped in the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "data" / "openlineage-spec"
PKG_SCHEMAS = ROOT / "provider" / "mlops_provider" / "lineage" / "schemas"


# ------------------------------------------------------------------------------------------ naming


def test_file_and_object_store_names_follow_the_openlineage_spec(tmp_path, monkeypatch):
    from mlops_provider.lineage.naming import file_dataset

    monkeypatch.chdir(tmp_path)
    assert file_dataset("data/x.parquet") == ("file", str(tmp_path / "data" / "x.parquet"))
    assert file_dataset("file:///srv/x.parquet") == ("file", "/srv/x.parquet")
    assert file_dataset("/srv/x.parquet") == ("file", "/srv/x.parquet")
    assert file_dataset("s3://bucket/a/b.parquet") == ("s3://bucket", "a/b.parquet")
    assert file_dataset("s3a://bucket/a/b.parquet") == ("s3://bucket", "a/b.parquet")
    assert file_dataset("gs://bucket/a/b.csv") == ("gs://bucket", "a/b.csv")
    assert file_dataset("abfss://box@acct.dfs.core.windows.net/a/b.parquet") == (
        "abfss://box@acct.dfs.core.windows.net", "a/b.parquet")
    assert file_dataset("hdfs://nn:8020/data/b.parquet") == ("hdfs://nn:8020", "/data/b.parquet")


def test_sql_and_mlflow_names_carry_no_credentials():
    import openlineage_sql

    from mlops_provider.lineage.naming import mlflow_namespace, sql_datasets

    def parse(sql, dialect):
        return [{"database": t.database, "schema": t.schema, "name": t.name}
                for t in openlineage_sql.parse([sql], dialect=dialect).in_tables]

    names = sql_datasets("postgres", "db.example", None, "shop", "SELECT * FROM orders o JOIN sales.items i ON o.id = i.id", parse)
    assert names == [("postgres://db.example:5432", "shop.public.orders"), ("postgres://db.example:5432", "shop.sales.items")]
    assert sql_datasets("mysql", "m", 3307, "shop", "SELECT * FROM orders", parse) == [("mysql://m:3307", "shop.orders")]
    assert sql_datasets("postgres", "h", 5432, "d", "not sql at all ((", parse) == []
    assert mlflow_namespace("http://user:secret@mlflow.internal:5000/") == "mlflow://mlflow.internal:5000"
    assert mlflow_namespace("postgresql://u:pw@db:5432/mlflow") == "mlflow:postgresql://db:5432/mlflow"
    assert "pw" not in mlflow_namespace("postgresql://u:pw@db/mlflow")


# ------------------------------------------------------------------------------------------ without the extra


def test_without_openlineage_the_methods_return_none():
    """The OpenLineage client made unimportable: the operator methods answer None and nothing raises."""
    code = (
        "import sys\n"
        "sys.modules['openlineage'] = None\n"
        "from mlops_provider.operators.registry import PromoteModelOperator\n"
        "op = PromoteModelOperator(task_id='p', registered_model_name='m', version='1')\n"
        "assert op.get_openlineage_facets_on_start() is None\n"
        "op._lineage = {'inputs': [], 'outputs': [{'file': '/x'}], 'run': {}}\n"
        "assert op.get_openlineage_facets_on_complete(None) is None\n"
        "assert op.get_openlineage_facets_on_failure(None) is None\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


# ------------------------------------------------------------------------------------------ operators without a DAG run


def test_drift_sensor_reports_the_batch_reference_and_verdicts(tmp_path):
    """DriftSensor in poke mode on a drifted CSV batch against a reference CSV (real drift engine)."""
    import numpy as np
    import pandas as pd

    from mlops_provider.sensors.drift import DriftSensor

    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(0, 1, 400), "c": rng.choice(["a", "b"], 400)}).to_csv(tmp_path / "ref.csv", index=False)
    landing = tmp_path / "landing"
    landing.mkdir()
    pd.DataFrame({"x": rng.normal(3, 1, 400), "c": rng.choice(["c", "d"], 400)}).to_csv(landing / "b1.csv", index=False)
    sensor = DriftSensor(task_id="wait", location=f"{landing}/*.csv", reference=str(tmp_path / "ref.csv"),
                         deferrable=False, mode="poke", consumer="lineage.test")
    assert sensor.get_openlineage_facets_on_start() is None  # nothing known before the check
    assert sensor.poke({"run_id": "manual__lineage"}).is_done
    lineage = sensor.get_openlineage_facets_on_complete(None)
    assert {(d.namespace, d.name) for d in lineage.inputs} == {
        ("file", str(landing / "b1.csv")), ("file", str(tmp_path / "ref.csv"))}
    drift = lineage.run_facets["mlops_drift"]
    assert drift.datasetDrift is True and {c["column"] for c in drift.columns} == {"x", "c"}
    assert all(c["drifted"] for c in drift.columns)


def test_rollback_names_the_versions_and_the_reason():
    from openlineage.client.serde import Serde

    from mlops_provider.lineage import PRODUCER, records
    from mlops_provider.lineage.events import operator_lineage

    result = {"name": "churn", "alias": "champion", "version": "3", "previous_version": "4", "changed": True}
    lineage = operator_lineage(records.alias_move("http://u:pw@mlflow:5000", result, "bad live accuracy", "rollback"))
    (out,) = lineage.outputs
    assert (out.namespace, out.name) == ("mlflow://mlflow:5000", "models:/churn/3")
    move = Serde.to_dict(lineage.run_facets["mlops_aliasMove"])
    assert {k: move[k] for k in ("action", "alias", "fromVersion", "toVersion", "reason")} == {
        "action": "rollback", "alias": "champion", "fromVersion": "4", "toVersion": "3", "reason": "bad live accuracy"}
    assert move["_producer"] == PRODUCER


def test_gate_that_promotes_reports_its_decision_and_the_alias_move(mlflow_conn_sqlite, tmp_path):
    """PromotionGateOperator with ``on_pass="promote"`` on a first model (real MLflow store and models)."""
    import uuid

    from tests.unit.test_gate_operator import _frame, _gate, _logged_models, _register

    eval_path = str(tmp_path / "eval.parquet")
    _frame(seed=1).to_parquet(eval_path)
    name = f"lineage-gate-{uuid.uuid4().hex[:8]}"
    version = _register(name, _logged_models(mlflow_conn_sqlite)["strong"], "challenger")
    op = _gate(name, eval_path)
    assert op.execute({})["promoted"] is True
    lineage = op.get_openlineage_facets_on_complete(None)
    assert {(d.namespace, d.name) for d in lineage.inputs} == {
        ("file", eval_path), (f"mlflow:{mlflow_conn_sqlite}", f"models:/{name}/{version}")}
    assert [(d.name, d.facets["mlops_model"].alias) for d in lineage.outputs] == [(f"models:/{name}/{version}", "champion")]
    decision, move = lineage.run_facets["mlops_gateDecision"], lineage.run_facets["mlops_aliasMove"]
    assert decision.passed and decision.basis == "first_model" and decision.checks
    assert (move.action, move.toVersion, move.fromVersion) == ("promote", version, None)
    assert move.reason == "promotion gate blessed (first_model)"


# ------------------------------------------------------------------------------------------ schemas


def _registry():
    from referencing import Registry, Resource

    resources = []
    for folder in (SPEC, SPEC / "facets", PKG_SCHEMAS):
        for path in sorted(folder.glob("*.json")):
            doc = json.loads(path.read_text())
            resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


def test_custom_facet_schemas_are_valid_and_match_the_facets():
    from jsonschema import Draft202012Validator

    from mlops_provider.lineage import schema_path
    from mlops_provider.lineage.facets import CUSTOM_FACETS

    assert sorted(p.stem for p in PKG_SCHEMAS.glob("*.json")) == sorted(c.__name__ for c in CUSTOM_FACETS.values())
    for key, cls in CUSTOM_FACETS.items():
        url = cls._get_schema()
        doc = json.loads(Path(schema_path(url)).read_text())
        Draft202012Validator.check_schema(doc)
        assert url == f"{doc['$id']}#/$defs/{cls.__name__}"
        assert doc["properties"] == {key: {"$ref": f"#/$defs/{cls.__name__}"}}, key
        assert key.startswith("mlops_")  # the producer prefix of custom facets


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def captured(tmp_path_factory, airflow_db, mlflow_sqlite_uri, session_dir):
    work = tmp_path_factory.mktemp("lineage")
    events = work / "events.jsonl"
    env = os.environ.copy()
    env.update(
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        AIRFLOW__OPENLINEAGE__NAMESPACE="mlops-tests",
        AIRFLOW_CONN_MLFLOW_DEFAULT=json.dumps({"conn_type": "mlflow", "host": mlflow_sqlite_uri}),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    (session_dir / "mlflow-local").mkdir(exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "helpers" / "lineage_run.py"), str(work)],
        cwd=session_dir / "mlflow-local", env=env, capture_output=True, text=True, timeout=1500,
    )
    (work / "run.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    runs = json.loads((work / "runs.json").read_text())
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return {"runs": runs, "events": lines, "work": work, "mlflow": mlflow_sqlite_uri}


def _task_events(captured, dag_prefix: str, task_id: str) -> dict[str, list[dict]]:
    """Events of one task (job ``<dag_id>.<task_id>``) by eventType."""
    out: dict[str, list[dict]] = defaultdict(list)
    for event in captured["events"]:
        dag_id, _, task = event["job"]["name"].partition(".")
        if dag_id.startswith(dag_prefix) and task == task_id:
            out[event["eventType"]].append(event)
    return out


def _one(captured, dag_prefix: str, task_id: str, event_type: str = "COMPLETE", index: int = 0) -> dict:
    events = _task_events(captured, dag_prefix, task_id)[event_type]
    assert events, f"no {event_type} event of {dag_prefix}*.{task_id}"
    return events[index]


def _ids(datasets) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def test_pipeline_runs_as_expected(captured):
    states = captured["runs"]["states"]
    assert states["training"]["promote"] == "success" and states["training"]["batch_score"] == "success", states
    assert states["monitor_day1"]["check_batch.check_drift"] == "success", states
    assert states["monitor_day3"]["check_batch.validate_batch"] == "skipped", states  # quarantined
    assert states["failing"]["validate_broken_batch"] == "failed", states


def test_training_data_model_version_predictions_are_connected(captured):
    ct = "continuous_training__"
    validate = _one(captured, ct, "validate_training_data")
    train = _one(captured, ct, "train")
    register = _one(captured, ct, "register_challenger")
    gate = _one(captured, ct, "gate")
    promote = _one(captured, ct, "promote")
    score = _one(captured, ct, "batch_score")

    # training data: validated, then trained on (same name from both producers)
    train_inputs = _ids(train["inputs"])
    assert _ids(validate["inputs"]) <= train_inputs and len(train_inputs) == 2  # train + eval split files
    assert all(ns == "file" and name.startswith("/") for ns, name in train_inputs)
    # the logged model: output of train, input of register
    (model,) = train["outputs"]
    assert model["namespace"].startswith("mlflow:") and model["name"].startswith("models:/m-")
    assert model["facets"]["mlops_model"]["runId"]
    assert _ids(register["inputs"]) == {(model["namespace"], model["name"])}
    training = train["run"]["facets"]["mlops_training"]
    assert training["estimator"] and training["hyperparameters"] and 0.5 < training["metrics"]["roc_auc"] <= 1
    # the model version: output of register and promote, input of the gate and of scoring
    (version,) = register["outputs"]
    model_name = captured["runs"]["model"]
    assert version["name"] == f"models:/{model_name}/1" and version["namespace"] == model["namespace"]
    assert (version["namespace"], version["name"]) in _ids(gate["inputs"]) & _ids(score["inputs"])
    assert _ids(promote["outputs"]) == {(version["namespace"], version["name"])}
    move = promote["run"]["facets"]["mlops_aliasMove"]
    assert (move["alias"], move["toVersion"], move["action"]) == ("champion", "1", "promote")
    assert "fromVersion" not in move and move["reason"].startswith("gate blessed")
    decision = gate["run"]["facets"]["mlops_gateDecision"]
    assert decision["passed"] is True and decision["checks"] and decision["challengerVersion"] == "1"
    # the eval split is the gate's evaluation data
    assert _ids(gate["inputs"]) & train_inputs
    # predictions: output of scoring, with their row count
    (predictions,) = score["outputs"]
    assert predictions["namespace"] == "file" and predictions["name"].endswith(".parquet")
    assert predictions["outputFacets"]["outputStatistics"]["rowCount"] > 0


def test_batch_validation_drift_are_connected_by_the_batch(captured):
    day1 = captured["runs"]["batches"]["1"]
    dm = "drift_monitor__"
    validate = _one(captured, dm, "check_batch.validate_batch")
    score = _one(captured, dm, "check_batch.score_batch")
    drift = _one(captured, dm, "check_batch.check_drift")
    batch = ("file", day1)
    assert batch in _ids(validate["inputs"]) and batch in _ids(score["inputs"]) and batch in _ids(drift["inputs"])
    (reference,) = [d for d in drift["inputs"] if (d["namespace"], d["name"]) != batch]
    assert reference["namespace"].startswith("mlflow:")
    assert reference["name"] == f"models:/{captured['runs']['model']}/1"  # the champion's training profile
    facet = drift["run"]["facets"]["mlops_drift"]
    assert facet["datasetDrift"] is False and facet["numberOfColumns"] == len(facet["columns"]) > 0
    assert all({"column", "method", "drifted"} <= set(c) for c in facet["columns"])
    (inp,) = [d for d in validate["inputs"] if (d["namespace"], d["name"]) == batch]
    assert {f["name"] for f in inp["facets"]["schema"]["fields"]} >= {"loan_id", "credit_score"}
    metrics = inp["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] > 0 and metrics["columnMetrics"]["credit_score"]["nullCount"] == 0
    assertions = inp["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert assertions and all(a["success"] for a in assertions)


def _failed_columns(event, batch) -> set[str]:
    (inp,) = [d for d in event["inputs"] if d["name"] == batch]
    assertions = inp["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert any(a["success"] for a in assertions)  # the passing expectations are listed too
    return {a["column"] for a in assertions if not a["success"]}


def test_assertions_show_each_failing_column_of_the_bad_batch(captured):
    day3 = captured["runs"]["batches"]["3"]
    # quarantined (task skipped): the assertions and the quarantine location as an output
    quarantined = _one(captured, "drift_monitor__", "check_batch.validate_batch", index=1)
    assert _failed_columns(quarantined, day3) == {"credit_score", "employment_type"}
    (out,) = quarantined["outputs"]
    assert out["namespace"] == "file" and "/quarantine/" in out["name"]
    # failed (on_failure="fail"): a FAIL event with the assertions and Airflow's errorMessage facet
    fail = _one(captured, "lineage_failing_validation", "validate_broken_batch", "FAIL")
    assert _failed_columns(fail, day3) == {"credit_score", "employment_type"}
    error = fail["run"]["facets"]["errorMessage"]
    assert "Data validation failed" in error["message"] and error["programmingLanguage"].lower() == "python"


def test_every_event_validates_against_the_openlineage_schema(captured):
    from jsonschema import Draft202012Validator

    from mlops_provider.lineage import PRODUCER

    registry = _registry()
    core = registry.contents("https://openlineage.io/spec/2-0-2/OpenLineage.json")
    validator = Draft202012Validator(core, registry=registry)
    checked: dict[str, int] = defaultdict(int)
    unknown: set[str] = set()
    assert len(captured["events"]) >= 20
    for event in captured["events"]:
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(event)]
        assert not errors, (event["job"]["name"], event["eventType"], errors[:5])
        for key, facet in _facets(event):
            url = facet["_schemaURL"]
            try:
                registry.resolver().lookup(url)
            except Exception:  # noqa: BLE001 - reported below: every facet must have a known schema
                unknown.add(url)
                continue
            errors = [e.message for e in Draft202012Validator({"$ref": url}, registry=registry).iter_errors(facet)]
            assert not errors, (event["job"]["name"], key, errors[:5])
            if key.startswith("mlops_"):
                assert facet["_producer"] == PRODUCER, facet["_producer"]
            checked[key] += 1
    for key in ("mlops_model", "mlops_training", "mlops_aliasMove", "mlops_drift", "mlops_gateDecision",
                "schema", "dataQualityAssertions", "dataQualityMetrics", "errorMessage"):
        assert checked[key] > 0, (key, dict(checked), unknown)
    # Airflow's own facets name the spec's generic RunFacet as their schema; the rest are spec facets
    assert not unknown, unknown


def _facets(event):
    for key, facet in (event["run"].get("facets") or {}).items():
        yield key, facet
    for key, facet in (event["job"].get("facets") or {}).items():
        yield key, facet
    for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
        for group in ("facets", "inputFacets", "outputFacets"):
            for key, facet in (dataset.get(group) or {}).items():
                yield key, facet
