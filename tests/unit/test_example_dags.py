"""Every DAG file in dags/ loads; the pipeline DAGs (level 1, monitoring, level 2) run with ``dag.test()``.

Real components: a real Airflow metadata DB (``airflow_db``), a real MLflow ``sqlite:///`` store, real
GX validation and scikit-learn training on the demo data of ``scripts/demo_data.py``.  Each module run
uses its own copy of ``dags/pipelines/loan_default.yaml`` with a unique model name (the MLflow store is
shared by the session).  The example DAGs with their own test files are only checked for loading here.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(DAGS))


def test_every_dag_file_loads_without_import_errors():
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    for dag_id in (
        "continuous_training__loan_default",
        "drift_monitor__loan_default",
        "performance_monitor__loan_default",
        "cicd_pipeline__loan_default",
        "example_train_register_promote",
        "example_drift_check",
        "example_data_validation",
        "example_gate_approval",
    ):
        assert dag_id in bag.dag_ids, dag_id


@pytest.fixture(scope="module")
def world(tmp_path_factory, airflow_db, mlflow_sqlite_uri, session_dir):
    """A data root with the base training set, and a pipeline folder holding a uniquely named copy."""
    import os

    import demo_data

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("pipeline-world")
    model = f"loan_default_{uuid.uuid4().hex[:6]}"
    pipelines = root / "pipelines"
    shutil.copytree(DAGS / "pipelines" / "contracts", pipelines / "contracts")
    text = (DAGS / "pipelines" / "loan_default.yaml").read_text().replace("name: loan_default", f"name: {model}")
    (pipelines / f"{model}.yaml").write_text(text)
    demo_data.land(demo_data.training_set(), root / "data" / "training", "base.parquet")
    mp.setenv("MLOPS_DATA_DIR", str(root / "data"))
    mp.setenv("MLOPS_PIPELINES_DIR", str(pipelines))
    mp.setenv("MLOPS_PROPOSALS_DIR", str(root / "proposed"))
    mp.setenv("MLOPS_RETRAIN_SCHEDULE", "")
    (session_dir / "mlflow-local").mkdir(exist_ok=True)
    mp.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", f'{{"conn_type": "mlflow", "host": "{mlflow_sqlite_uri}"}}')
    cwd = os.getcwd()
    os.chdir(session_dir / "mlflow-local")
    from mlops_provider import pipeline_dags as pipeline_factory
    from mlops_provider.pipelines import load_pipeline

    spec = load_pipeline(pipelines / f"{model}.yaml")
    yield {"root": root, "data": root / "data", "model": model, "spec": spec, "factory": pipeline_factory,
           "pipelines": pipelines, "mlflow": mlflow_sqlite_uri}
    os.chdir(cwd)
    mp.undo()


def _champion(world) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=world["mlflow"], registry_uri=world["mlflow"])
    return str(client.get_model_version_by_alias(world["model"], "champion").version)


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def test_level1_training_then_monitoring_of_good_and_broken_batches(world):
    import demo_data

    factory, spec, data = world["factory"], world["spec"], world["data"]
    run = factory.build_continuous_training(spec).test()
    assert run.state == "success", _states(run)
    assert _states(run)["promote"] == "success"
    assert _champion(world) == "1"

    monitor = factory.build_drift_monitor(spec)
    performance = factory.build_performance_monitor(spec)
    for day in (1, 3):
        features, labels = demo_data.batch(day)
        name = demo_data.batch_name(day)
        batch = demo_data.land(features, data / "landing" / "batches", name)
        run = monitor.test(run_conf={"batch_uri": str(batch)})
        states = _states(run)
        label_file = demo_data.land(labels, data / "landing" / "labels", name)
        perf = performance.test(run_conf={"labels_uri": str(label_file)})
        if day == 1:
            assert run.state == "success" and states["check_batch.check_drift"] == "success", states
            assert (data / "predictions" / name).exists()
            assert _states(perf)["check_labels.check_decay"] == "success"
        else:  # the broken batch: quarantined, never scored nor drift-checked
            assert states["check_batch.validate_batch"] == "skipped", states
            assert states["check_batch.score_batch"] == "skipped", states
            assert not (data / "predictions" / name).exists()
            assert list((data / "quarantine").rglob("*.parquet"))
            assert _states(perf)["check_labels.match_predictions"] == "skipped"  # quarantined, not waiting


def test_ci_checks_run_as_a_worker_runs_them(world, monkeypatch):
    """The task supervisor blocks the metadata DB in the task process; the CI subprocesses still work."""
    blocked = "airflow-db-not-allowed:///"  # what airflow.sdk.execution_time.supervisor.block_orm_access sets
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", blocked)
    monkeypatch.setenv("AIRFLOW__CORE__SQL_ALCHEMY_CONN", blocked)
    from mlops_provider.core.pipeline_ci import check_dag_integrity

    found = check_dag_integrity(world["spec"], ROOT)
    assert found["errors"] == {}
    assert f"drift_monitor__{world['model']}" in found["dags"]


def _propose(world, old: str, new: str) -> Path:
    text = (world["pipelines"] / f"{world['model']}.yaml").read_text()
    assert old in text
    path = world["root"] / "proposed" / f"{world['model']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path.parent / "contracts").exists():  # a proposal holds its YAML and its contracts
        shutil.copytree(world["pipelines"] / "contracts", path.parent / "contracts")
    path.write_text(text.replace(old, new, 1))
    return path


def _land_after_deploy(world, day: int, live_before: str) -> threading.Thread:
    """The next live batch (and its labels) lands once the candidate definition went live."""
    import demo_data

    live = world["pipelines"] / f"{world['model']}.yaml"

    def land():
        deadline = time.monotonic() + 600
        while live.read_text() == live_before and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.1)  # strictly after deployed_at (mtime resolution)
        features, labels = demo_data.batch(day)
        name = f"post-deploy-{day:02d}-{uuid.uuid4().hex[:4]}.parquet"
        demo_data.land(labels, world["data"] / "landing" / "labels", name)
        demo_data.land(features, world["data"] / "landing" / "batches", name)

    thread = threading.Thread(target=land, daemon=True)
    thread.start()
    return thread


def test_level2_deploys_a_changed_pipeline_and_rolls_back_a_bad_one(world):
    from mlflow import MlflowClient

    from mlops_provider.pipelines import load_pipeline

    factory, spec = world["factory"], world["spec"]
    live = world["pipelines"] / f"{world['model']}.yaml"
    client = MlflowClient(tracking_uri=world["mlflow"], registry_uri=world["mlflow"])
    # train candidates on the base set (as before any batch was accepted), so the gate compares like with like
    shutil.rmtree(world["data"] / "predictions", ignore_errors=True)
    before = _champion(world)
    cicd = factory.build_cicd(spec, tests_root=ROOT)

    # a bad YAML: CI fails at load_candidate, nothing is trained or deployed
    _propose(world, "  min_value: 0.70", "  min_value: high")
    run = cicd.test(run_conf={"pipeline_path": str(world["root"] / "proposed" / f"{world['model']}.yaml")})
    states = _states(run)
    assert run.state == "failed" and states["ci.load_candidate"] == "failed", states
    assert states["cd.train"] in ("upstream_failed", None), states
    assert _champion(world) == before

    # a good change (regularisation): deployed, version recorded, post-deployment check on a stable day passes
    good = _propose(world, "C: 1.0", "C: 0.5")
    good_version = load_pipeline(good).version
    live_before = live.read_text()
    lander = _land_after_deploy(world, 2, live_before)
    run = cicd.test(run_conf={"pipeline_path": str(good)})
    lander.join(timeout=5)
    states = _states(run)
    assert run.state == "success", states
    assert states["cd.promote"] == "success" and states["cd.rollback"] == "skipped", states
    deployed = _champion(world)
    assert deployed != before
    assert client.get_model_version(world["model"], deployed).tags["mlops.pipeline_version"] == good_version
    good_text = good.read_text()
    assert live.read_text() == good_text

    # a change that passes the gate but fails live (the concept-drift day): rolled back automatically
    bad = _propose(world, "C: 0.5", "C: 0.25")
    lander = _land_after_deploy(world, 6, live.read_text())
    run = cicd.test(run_conf={"pipeline_path": str(bad)})
    lander.join(timeout=5)
    states = _states(run)
    assert run.state == "failed", states
    assert states["cd.rollback"] == "success" and states["cd.restore_definition"] == "failed", states
    assert _champion(world) == deployed  # the previous champion is back
    assert live.read_text() == good_text  # and so is the previous definition


def _watcher_event(payload, from_trigger=True):
    from types import SimpleNamespace

    return SimpleNamespace(extra={"from_trigger": from_trigger, "payload": payload})


def test_a_run_takes_every_pending_batch_once(tmp_path):
    """Merged arrivals and events Airflow left unscheduled: the ledger decides, each batch in one run."""
    from mlops_provider.core.batches import BatchLedger, discover_batches
    from mlops_provider.core.pending import pending_batches

    landing = tmp_path / "landing"
    landing.mkdir()
    for i in range(4):
        (landing / f"b{i}.parquet").write_bytes(b"x" * (i + 1))
    ledger_path = str(tmp_path / "ledger.sqlite3")
    ledger = BatchLedger(ledger_path)
    batches = discover_batches(str(landing / "*.parquet"))
    for batch in batches:  # what NewBatchTrigger does before yielding each event
        assert ledger.claim("watcher", batch)
    # run 1 was handed the events of b0 and b1 only; b2 and b3 were claimed by the watcher too
    triggered = [{"status": "success", "batch_uri": b.uri, "batch_id": b.batch_id} for b in batches[:2]]
    first = pending_batches(ledger_path, "watcher", triggered, "run-1")
    assert [b["name"] for b in first] == ["b0.parquet", "b1.parquet", "b2.parquet", "b3.parquet"]
    # run 2, created for the events of b2 and b3, finds them taken: it checks nothing
    triggered = [{"status": "success", "batch_uri": b.uri, "batch_id": b.batch_id} for b in batches[2:]]
    assert pending_batches(ledger_path, "watcher", triggered, "run-2") == []
    assert {row["info"]["run_id"] for row in ledger.history("watcher.taken")} == {"run-1"}


def test_a_malformed_watcher_event_fails_the_task():
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_provider.operators import pipeline as factory

    good = _watcher_event({"status": "success", "batch_uri": "/l/b.parquet", "batch_id": "x"})
    api = _watcher_event(None, from_trigger=False)  # posted through the API: not a landed file, ignored
    assert factory.triggering_files({"triggering_asset_events": {"a": [good, api]}}) == ["/l/b.parquet"]
    for payload in ({"status": "error", "message": "boom"}, {"status": "success"}, "not a dict", None):
        with pytest.raises(AirflowFailException, match="malformed watcher event"):
            factory.triggering_payloads({"triggering_asset_events": {"a": [good, _watcher_event(payload)]}})
