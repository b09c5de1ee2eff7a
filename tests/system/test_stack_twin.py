"""Integration, security and fault tests on the process twin of docker-compose.yml (scripts/stack).

One twin per session (started by the ``stack`` fixture, stopped and its databases dropped at the end):
MLflow server with basic auth on a fresh PostgreSQL database, Airflow api-server, scheduler,
dag-processor, triggerer and two Celery workers (CeleryExecutor) on a fresh PostgreSQL database and
Redis.  DAGs are triggered through Airflow's authenticated REST API.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth as ``postgres``) and Redis on 127.0.0.1:6379: marked
``postgres`` (and ``system``); in CI (``CI`` set) a missing server fails the tests instead of skipping.
The PostgreSQL fault test restarts the machine's server and always starts it again (finally).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from stack_twin import REQUIRED, Stack, free_port, generate_env, redis_ping  # noqa: E402

pytestmark = pytest.mark.postgres

PG_CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect"]
#: the loan-default pipeline with its data root on the twin's S3 server (moto, standing in for MinIO)
S3_MODEL, S3_BUCKET = "loan_s3", "mlops-data"


def _s3(stack: Stack):
    """boto3 on the twin's S3 server, with the credentials of the mlops_data connection (MinIO's root user)."""
    import boto3

    return boto3.client("s3", endpoint_url=stack.minio_url, aws_access_key_id=stack.get("MINIO_ROOT_USER", "mlops"),
                        aws_secret_access_key=stack.get("MINIO_ROOT_PASSWORD"), region_name="us-east-1")
STACK_DAGS = ROOT / "tests" / "system" / "stack_dags"


def _require_services() -> None:
    from tests.helpers.postgres import postgres_available

    missing = [name for name, ok in (("PostgreSQL on 127.0.0.1:5432", postgres_available()),
                                     ("Redis on 127.0.0.1:6379", redis_ping())) if not ok]
    if missing:
        pytest.fail(f"{', '.join(missing)} not reachable (the machine starts them; never skipped)")


def _write_env(path: Path) -> Path:
    """A filled-in copy of .env.example: fresh database names, free ports, random secrets."""
    tag = uuid.uuid4().hex[:8]
    return generate_env(
        path,
        POSTGRES_USER="mlops_stack",
        AIRFLOW_DB_NAME=f"stack_airflow_{tag}",
        MLFLOW_DB_NAME=f"stack_mlflow_{tag}",
        REDIS_DB=str(1 + int(tag, 16) % 15),
        AIRFLOW_API_PORT=str(free_port()),
        MLFLOW_PORT=str(free_port()),
        STACK_MINIO_PORT=str(free_port()),
        MLFLOW_WORKERS="1",
        AIRFLOW_WORKER_CONCURRENCY="2",
        AIRFLOW_TASK_HEARTBEAT_TIMEOUT="30",
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The twin, started once per session: ``scripts/stack`` semantics through its Python API."""
    _require_services()
    base = tmp_path_factory.mktemp("stack")
    dags = base / "dags"
    dags.mkdir()
    for name in ("example_mlflow_hook.py", "example_train_register_promote.py", "continuous_training.py",
                 "drift_monitor.py"):
        shutil.copy(ROOT / "dags" / name, dags / name)
    shutil.copytree(ROOT / "dags" / "pipelines", dags / "pipelines")
    # Events only (no cron) in the twin's copy: unpausing a cron DAG also starts its latest interval,
    # a second run racing the REST-triggered one.
    spec = dags / "pipelines" / "loan_default.yaml"
    text, n = re.subn(r"(?m)^(\s*schedule:\s*)\S.*$", r'\1""', spec.read_text())
    assert n == 1, "dags/pipelines/loan_default.yaml: expected one schedule line"
    # test speed-up: a 5 s first retry delay instead of 30 s (the crash-recovery test measures the rest)
    text, n = re.subn(r"(?m)^(\s*delay_seconds:\s*)\d+", r"\g<1>5", text)
    assert n == 1, "dags/pipelines/loan_default.yaml: expected one retries.delay_seconds line"
    spec.write_text(text)
    # the same pipeline with its data on the object store (moto, standing in for MinIO): root s3://, the
    # compose stack's mlops_data connection, the ledgers on the shared disk
    s3_text, n = re.subn(r"(?m)^  root: .*$", f"  root: s3://{S3_BUCKET}/{S3_MODEL}\n  conn_id: mlops_data\n"
                                               f"  state: {base / 'data' / S3_MODEL / 'state'}", text)
    assert n == 1, "dags/pipelines/loan_default.yaml: expected one data.root line"
    (dags / "pipelines" / f"{S3_MODEL}.yaml").write_text(s3_text.replace("name: loan_default", f"name: {S3_MODEL}"))
    shutil.copy(STACK_DAGS / "stack_faults.py", dags / "stack_faults.py")
    shutil.copy(STACK_DAGS / "stack_drift_scaleout.py", dags / "stack_drift_scaleout.py")
    shutil.copy(STACK_DAGS / "stack_no_provider.py", dags / "stack_no_provider.py")
    # the level-1 pipeline's first training set (the demo's seeded generator)
    sys.path.insert(0, str(ROOT / "scripts"))
    import demo_data

    level1_data = base / "data" / "loan_default"
    demo_data.land(demo_data.training_set(), level1_data / "training", "base.parquet")
    for folder in ("batches", "labels"):  # NewBatchTrigger fails visibly on a missing landing folder
        (level1_data / "landing" / folder).mkdir(parents=True)
    twin = Stack(
        _write_env(base / "stack.env"), base / "state", dags,
        extra_env={  # test speed-ups only (detection of dead tasks, DAG parsing)
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
            "MLOPS_DATA_DIR": str(level1_data),  # root of dags/pipelines/loan_default.yaml
        },
    )
    twin.data_dir = base / "data"
    started = time.monotonic()
    twin.up()
    twin.startup_seconds = time.monotonic() - started
    print(f"\nstack up in {twin.startup_seconds:.0f}s")
    # the object-store pipeline's training set and landing "folders" (a hidden marker: S3 has no empty folder)
    store = _s3(twin)
    with io.BytesIO() as buf:
        demo_data.training_set().to_parquet(buf, index=False)
        store.put_object(Bucket=S3_BUCKET, Key=f"{S3_MODEL}/training/base.parquet", Body=buf.getvalue())
    for folder in ("batches", "labels"):
        store.put_object(Bucket=S3_BUCKET, Key=f"{S3_MODEL}/landing/{folder}/.keep", Body=b"")
    try:
        yield twin
    finally:
        twin.down(volumes=True)


@pytest.fixture
def mlflow_client(stack, monkeypatch):
    """An MlflowClient through the provider's hook, with the connection the Airflow components get."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", stack.component_env("airflow-worker")["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    from mlops_provider.hooks.mlflow import MlflowHook

    return MlflowHook().get_client()


# --------------------------------------------------------------------------------------------- helpers


def _wait_ti(stack: Stack, dag_id: str, run_id: str, task_id: str, state: str = "running", timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ti in stack.task_instances(dag_id, run_id):
            if ti["task_id"] == task_id and ti["state"] == state:
                return ti
        run_state = stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
        if run_state in ("success", "failed"):
            raise AssertionError(f"{dag_id}/{run_id} ended {run_state} before {task_id} was {state}")
        time.sleep(0.5)
    raise TimeoutError(f"{task_id} of {run_id} not {state} within {timeout}s")


def _ti(stack: Stack, dag_id: str, run_id: str, task_id: str) -> dict:
    return next(t for t in stack.task_instances(dag_id, run_id) if t["task_id"] == task_id)


def _workers_that_ran(stack: Stack, dag_id: str, run_id: str) -> dict[str, set[str]]:
    """worker key -> task ids of this run it executed (from the Celery workers' own logs)."""
    ran: dict[str, set[str]] = {}
    for log in sorted((stack.state_dir / "logs").glob("airflow-worker-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "Executing workload in Celery" in line and f"dag_id={dag_id}/" in line and run_id in line:
                task = line.split("task_id=", 1)[1].split("/", 1)[0]
                ran.setdefault(log.stem, set()).add(task)
    return ran


def _versions(client, name: str) -> list:
    return list(client.search_model_versions(f"name='{name}'"))


def _history(client, name: str) -> list[dict]:
    from mlops_provider.core.registry import read_history

    return read_history(client.get_registered_model(name))


def _trigger_loop(stack: Stack, model: str, **params) -> str:
    stack.wait_dag("stack_fault_loop")
    data = stack.data_dir / model
    return stack.trigger("stack_fault_loop", {"model_name": model, "data_dir": str(data), **params})


# --------------------------------------------------------------------------------------------- integration


def test_dags_triggered_over_rest_run_across_celery_workers(stack, mlflow_client):
    """The example DAGs run to success through the REST API, on both Celery workers; the champion is in PostgreSQL."""
    model = f"stack-churn-{uuid.uuid4().hex[:6]}"
    stack.wait_dag("example_mlflow_hook")
    stack.wait_dag("example_train_register_promote")
    hello = stack.trigger("example_mlflow_hook")
    loop = stack.trigger("example_train_register_promote", {"model_name": model, "data_dir": str(stack.data_dir / model)})
    states = {dag: stack.wait_run(dag, run, timeout=900) for dag, run in
              (("example_mlflow_hook", hello), ("example_train_register_promote", loop))}
    assert states == {"example_mlflow_hook": "success", "example_train_register_promote": "success"}, (
        states, stack.task_instances("example_train_register_promote", loop))

    ran = _workers_that_ran(stack, "example_train_register_promote", loop)
    for worker, tasks in _workers_that_ran(stack, "example_mlflow_hook", hello).items():
        ran.setdefault(worker, set()).update(tasks)
    assert set(ran) == {"airflow-worker-1", "airflow-worker-2"}, ran  # both workers executed tasks

    champion = mlflow_client.get_model_version_by_alias(model, "champion")
    assert champion.version == "1"
    assert len(_versions(mlflow_client, model)) == 1
    # ...and it is in MLflow's PostgreSQL database, not in some local file store
    db = stack.get("MLFLOW_DB_NAME")
    rows = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qAt", "-c",
         f"select version from registered_model_aliases where name = '{model}' and alias = 'champion'"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()
    assert rows == ["1"]


def test_level1_continuous_training_runs_on_the_stack(stack, mlflow_client):
    """``continuous_training__loan_default`` (policy, validation, train, register, gate, promote, score) succeeds."""
    dag_id = "continuous_training__loan_default"
    stack.wait_dag(dag_id)
    run_id = stack.trigger(dag_id)
    state = stack.wait_run(dag_id, run_id, timeout=900)
    tis = {t["task_id"]: t["state"] for t in stack.task_instances(dag_id, run_id)}
    assert state == "success", tis
    assert tis.get("promote") == "success", tis
    # Unpausing also starts the cron schedule's latest interval, so a scheduled run may promote too:
    # the champion is the target of the last promotion, and this run's promotion is in the history.
    champion = mlflow_client.get_model_version_by_alias("loan_default", "champion")
    history = [h for h in _history(mlflow_client, "loan_default") if h["action"] == "promote"]
    assert history and history[-1]["to"] == champion.version, history
    assert any(run_id in h["by"] for h in history), history
    print(f"\nlevel-1 run: {tis}; workers: {_workers_that_ran(stack, dag_id, run_id)}")


def _s3_keys(stack: Stack, prefix: str) -> list[str]:
    found = _s3(stack).list_objects_v2(Bucket=S3_BUCKET, Prefix=f"{S3_MODEL}/{prefix}").get("Contents", [])
    return sorted(obj["Key"][len(S3_MODEL) + 1:] for obj in found)


def _s3_land(stack: Stack, frame, key: str) -> str:
    """Upload under a hidden name, then copy into place and delete the temporary (landing on a store)."""
    store, final = _s3(stack), f"{S3_MODEL}/{key}"
    tmp = final.rsplit("/", 1)[0] + "/." + final.rsplit("/", 1)[1] + ".tmp"
    with io.BytesIO() as buf:
        frame.to_parquet(buf, index=False)
        store.put_object(Bucket=S3_BUCKET, Key=tmp, Body=buf.getvalue())
    store.copy_object(Bucket=S3_BUCKET, Key=final, CopySource={"Bucket": S3_BUCKET, "Key": tmp})
    store.delete_object(Bucket=S3_BUCKET, Key=tmp)
    return f"s3://{S3_BUCKET}/{final}"


def test_loan_default_story_with_its_data_on_the_object_store(stack, mlflow_client):
    """
    ``loan_s3``: the loan-default pipeline whose data root is ``s3://mlops-data/loan_s3`` on the twin's S3
    server (moto's server mode, standing in for compose's MinIO), reached through the ``mlops_data`` ``aws``
    connection that every component gets, as in compose.  First training from the bucket's training set;
    then the broken day 3 and the drifted day 4 land in the bucket: the triggerer's watcher lists the bucket
    and starts ``drift_monitor__loan_s3`` on the Celery workers, which quarantines day 3 into the bucket,
    scores day 4 into the bucket's predictions and finds drift; the drift event retrains from the window read
    back from the bucket (day 4 with its labels), registers version 2, gates and scores it into the bucket.
    """
    import demo_data

    training, monitor = f"continuous_training__{S3_MODEL}", f"drift_monitor__{S3_MODEL}"
    started = time.monotonic()
    stack.wait_dag(training)
    first = stack.trigger(training)
    assert stack.wait_run(training, first, timeout=900) == "success", stack.task_instances(training, first)
    assert _champion(mlflow_client, S3_MODEL) == "1"
    assert len([k for k in _s3_keys(stack, "work/scores/") if k.endswith(".parquet")]) == 1
    known_monitor, known_training = _run_ids(stack, monitor), _run_ids(stack, training)
    stack.wait_dag(monitor)

    for day in (3, 4):
        features, labels = demo_data.batch(day)
        name = demo_data.batch_name(day)
        _s3_land(stack, features, f"landing/batches/{name}")
        _s3_land(stack, labels, f"landing/labels/{name}")

    deadline = time.monotonic() + 900
    retrain = None
    while retrain is None or stack.api("GET", f"/dags/{training}/dagRuns/{retrain}")["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, (_s3_keys(stack, ""), stack.tail("airflow-triggerer"))
        if retrain is None:
            new = [r for r in stack.api("GET", f"/dags/{training}/dagRuns?limit=100")["dag_runs"]
                   if r["dag_run_id"] not in known_training]
            retrain = new[0]["dag_run_id"] if new else None
        time.sleep(3)
    runs = [r for r in stack.api("GET", f"/dags/{monitor}/dagRuns?limit=100")["dag_runs"]
            if r["dag_run_id"] not in known_monitor]
    assert runs and all(r["run_type"] == "asset_triggered" for r in runs), runs
    for run in runs:
        assert stack.wait_run(monitor, run["dag_run_id"], timeout=300) == "success"
        for event in _upstream_events(stack, monitor, run["dag_run_id"]):
            assert event["extra"]["from_trigger"] is True
            assert event["extra"]["payload"]["batch_uri"].startswith(f"s3://{S3_BUCKET}/{S3_MODEL}/landing/batches/")
    keys = _s3_keys(stack, "")
    assert "predictions/day-04.parquet" in keys and "predictions/day-03.parquet" not in keys, keys
    quarantined = [k for k in keys if k.startswith("quarantine/") and k.endswith("/batch.parquet")]
    assert len(quarantined) == 1, keys  # day 3, copied aside with its report

    state = stack.api("GET", f"/dags/{training}/dagRuns/{retrain}")["state"]
    tis = {t["task_id"]: t["state"] for t in stack.task_instances(training, retrain)}
    assert state == "success", tis
    # day 4's partner channel shifts the features, and with them the model's outputs: the policy names every
    # kind the monitor's check reported (prediction drift is its own event since #18)
    verdicts = [_xcom(stack, monitor, run["dag_run_id"], "check_batch.check_drift", map_index=t["map_index"])
                for run in runs for t in stack.task_instances(monitor, run["dag_run_id"])
                if t["task_id"] == "check_batch.check_drift" and t["state"] == "success"]
    expected = ["drift"] + (["prediction_drift"] if any(
        (v.get("prediction_drift") or {}).get("drift") for v in verdicts if v) else [])
    assert _xcom(stack, training, retrain, "retraining_policy")["kinds"] == expected, verdicts
    window = _xcom(stack, training, retrain, "assemble_training_data")
    assert window["source"] == ["day-04.parquet"] and window["train"].startswith(f"s3://{S3_BUCKET}/{S3_MODEL}/work/")
    versions = sorted(int(v.version) for v in _versions(mlflow_client, S3_MODEL))
    assert versions == [1, 2], versions
    if tis["promote"] == "success":
        assert _champion(mlflow_client, S3_MODEL) == "2"
    assert len([k for k in _s3_keys(stack, "work/scores/") if k.endswith(".parquet")]) == 2
    print(f"\nstory on the object store: {time.monotonic() - started:.0f}s; retraining {tis}; "
          f"{len(keys)} objects in s3://{S3_BUCKET}/{S3_MODEL}/")


def _run_ids(stack: Stack, dag_id: str) -> set[str]:
    return {r["dag_run_id"] for r in stack.api("GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]}


def _wait_new_run(stack: Stack, dag_id: str, known: set[str], timeout: float = 180) -> dict:
    """The first run of ``dag_id`` whose id is not in ``known`` (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in stack.api("GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
                if r["dag_run_id"] not in known]
        if runs:
            return runs[0]
        time.sleep(1)
    raise TimeoutError(f"no new run of {dag_id} within {timeout}s; triggerer log:\n{stack.tail('airflow-triggerer')}")


def _champion(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, "champion").version
    except MlflowException:
        return None


def _upstream_events(stack: Stack, dag_id: str, run_id: str) -> list[dict]:
    from urllib.parse import quote

    return stack.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/upstreamAssetEvents")["asset_events"]


def _xcom(stack: Stack, dag_id: str, run_id: str, task_id: str, map_index: int | None = None):
    from urllib.parse import quote

    index = "" if map_index is None else f"&map_index={map_index}"
    return stack.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/"
                            f"xcomEntries/return_value?deserialize=true{index}")["value"]


def test_drift_event_starts_retraining_across_processes(stack, mlflow_client):
    """
    A drifted batch lands -> the triggerer's NewBatchTrigger -> drift_monitor (Celery) emits ``mlops://loan_default/drift``
    -> the scheduler starts continuous_training from that asset event -> it runs on the Celery workers and registers
    a new version in MLflow on PostgreSQL.
    """
    import demo_data

    model, monitor, training = "loan_default", "drift_monitor__loan_default", "continuous_training__loan_default"
    stack.wait_dag(training)
    if _champion(mlflow_client, model) is None:
        # run alone: the drift check compares with the champion's training profile, so make one first
        assert stack.wait_run(training, stack.trigger(training), timeout=600) == "success"
    champion_before = _champion(mlflow_client, model)
    versions_before = {v.version for v in _versions(mlflow_client, model)}
    known_monitor, known_training = _run_ids(stack, monitor), _run_ids(stack, training)
    stack.wait_dag(monitor)  # unpaused now; performance_monitor__loan_default stays paused (no decay runs)

    # day 4 of the demo: a partner channel's applicants (covariate drift); labels "arrive" with it
    features, labels = demo_data.batch(4)
    name = demo_data.batch_name(4)
    batch = demo_data.land(features, stack.data_dir / "loan_default" / "landing" / "batches", name)
    demo_data.land(labels, stack.data_dir / "loan_default" / "landing" / "labels", name)

    mon = _wait_new_run(stack, monitor, known_monitor, timeout=180)
    assert mon["run_type"] == "asset_triggered", mon
    (batch_event,) = _upstream_events(stack, monitor, mon["dag_run_id"])
    assert batch_event["extra"]["from_trigger"] is True  # the triggerer's watcher, not a poke in a worker
    assert batch_event["extra"]["payload"]["batch_uri"].endswith(str(batch)), batch_event
    assert stack.wait_run(monitor, mon["dag_run_id"], timeout=300) == "success", stack.task_instances(
        monitor, mon["dag_run_id"])
    # one batch: the run's check_batch group has one mapped instance
    verdict = _xcom(stack, monitor, mon["dag_run_id"], "check_batch.check_drift", map_index=0)
    assert verdict["dataset_drift"] is True, verdict

    run = _wait_new_run(stack, training, known_training, timeout=180)
    assert run["run_type"] == "asset_triggered", run
    events = _upstream_events(stack, training, run["dag_run_id"])
    # the drift event, and the prediction-drift event when the check found the model's outputs shifted too
    kinds = ["drift"] + (["prediction_drift"] if (verdict.get("prediction_drift") or {}).get("drift") else [])
    assert [(e["uri"], e["source_dag_id"], e["source_task_id"], e["source_run_id"]) for e in events] == [
        (f"mlops://{model}/{kind}", monitor, "check_batch.check_drift", mon["dag_run_id"]) for kind in kinds], events
    state = stack.wait_run(training, run["dag_run_id"], timeout=600)
    tis = stack.task_instances(training, run["dag_run_id"])
    assert state == "success", {t["task_id"]: t["state"] for t in tis}
    assert _xcom(stack, training, run["dag_run_id"], "retraining_policy")["kinds"] == kinds

    # every task of both runs was executed by a Celery worker of the twin (the workers' own logs)
    for dag_id, run_id in ((monitor, mon["dag_run_id"]), (training, run["dag_run_id"])):
        ran = _workers_that_ran(stack, dag_id, run_id)
        executed = {t["task_id"] for t in stack.task_instances(dag_id, run_id) if t["state"] in ("success", "failed")}
        assert set().union(*ran.values()) == executed, (dag_id, ran, executed)
        assert set(ran) <= {"airflow-worker-1", "airflow-worker-2"}, ran
        assert all(t["hostname"] and t["pid"] for t in stack.task_instances(dag_id, run_id) if t["task_id"] in executed)

    # a new version in MLflow's PostgreSQL store, trained because of the drift
    registered = _xcom(stack, training, run["dag_run_id"], "register_challenger")
    new = str(registered["version"])
    assert new not in versions_before
    # trained on the drifted batch (the training window is the latest accepted batch)
    assert mlflow_client.get_run(mlflow_client.get_model_version(model, new).run_id).data.tags["mlops.window"] == name
    rows = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", stack.get("MLFLOW_DB_NAME"), "-qAt", "-c",
         f"select version from model_versions where name = '{model}' order by version"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()
    assert new in rows
    promote = next(t for t in tis if t["task_id"] == "promote")
    champion = mlflow_client.get_model_version_by_alias(model, "champion").version
    # the gate decides: promoted (the champion moves to the new version) or rejected (promote skipped)
    assert (promote["state"], champion) in (("success", new), ("skipped", champion_before)), (promote, champion)
    print(f"\ndrift -> retraining on Celery: {_workers_that_ran(stack, training, run['dag_run_id'])}; "
          f"v{new} registered, promote {promote['state']}, champion v{champion_before} -> v{champion}")


def test_drift_check_partitioned_over_mapped_tasks_merges_exactly(stack):
    """Row partitions profiled by mapped tasks on both workers; the merged verdict equals one pass."""
    import pandas as pd

    from bench.scale import make_data  # a namespace package: the repository root is on sys.path
    from mlops_provider.core.drift import ReferenceProfile, check_drift

    reference, current = make_data(stack.data_dir / "scaleout", rows=200_000, partitions=4)
    single = check_drift(ReferenceProfile.load(reference), pd.read_parquet(current)).to_summary()
    stack.wait_dag("stack_drift_scaleout")
    run_id = stack.trigger("stack_drift_scaleout", {
        "reference_profile": str(reference), "current": str(current), "partitions": 4,
        "work_dir": str(stack.data_dir / "scaleout" / "parts")})
    assert stack.wait_run("stack_drift_scaleout", run_id, timeout=600) == "success", stack.task_instances(
        "stack_drift_scaleout", run_id)
    merged = stack.api("GET", f"/dags/stack_drift_scaleout/dagRuns/{run_id}/taskInstances/merge_and_check/"
                              "xcomEntries/return_value?deserialize=true")["value"]
    assert merged["partitions"] == 4 and merged["current_rows"] == 200_000
    assert merged["dataset_drift"] == single["dataset_drift"]
    assert merged["drifted_columns"] == single["drifted_columns"]
    # Statistics merge exactly (tests/unit/test_drift_partitions.py compares them bit for bit, and the
    # summaries in one process); across processes the chi-square/JS scores of string columns may
    # differ in the last bit: core.drift._aligned_counts orders categories by a ``set`` of strings,
    # whose order follows the process's hash seed.  Verdicts are identical.
    expected = {name: col["score"] for name, col in single["columns"].items()}
    assert merged["scores"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    mapped = [t for t in stack.task_instances("stack_drift_scaleout", run_id) if t["task_id"] == "profile_partition"]
    assert len(mapped) == 4
    ran = _workers_that_ran(stack, "stack_drift_scaleout", run_id)
    assert set(ran) == {"airflow-worker-1", "airflow-worker-2"}, ran


# --------------------------------------------------------------------------------------------- security


def _secrets(stack: Stack) -> dict[str, str]:
    """Every secret of the stack's env file (passwords, Fernet key, JWT and session secrets), by name."""
    found = {key: stack.get(key) for key in REQUIRED if key != "POSTGRES_USER"}
    assert all(len(value) >= 8 for value in found.values()), "a secret too short to grep for"
    return found


def test_no_secret_in_task_logs_xcom_or_mlflow_tags(stack, mlflow_client):
    """Grep every task log (files and REST), every XCom and every MLflow run's tags/params for the secrets."""
    if not list((stack.airflow_home / "logs").rglob("attempt=*.log")):
        stack.wait_dag("example_mlflow_hook")
        assert stack.wait_run("example_mlflow_hook", stack.trigger("example_mlflow_hook")) == "success"
    secrets_ = _secrets(stack)
    task_logs = list((stack.airflow_home / "logs").rglob("attempt=*.log"))
    assert task_logs
    for path in task_logs:
        text = path.read_text(errors="replace")
        for key, value in secrets_.items():
            assert value not in text, f"{key} appears in task log {path}"

    checked = 0
    for dag_id in ("example_mlflow_hook", "example_train_register_promote"):
        for run in stack.api("GET", f"/dags/{dag_id}/dagRuns?limit=20")["dag_runs"]:
            for ti in stack.task_instances(dag_id, run["dag_run_id"]):
                if ti["state"] != "success":
                    continue
                log = stack.task_log(dag_id, run["dag_run_id"], ti["task_id"], ti["try_number"])
                xcom = json.dumps(stack.api("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances/"
                                                   f"{ti['task_id']}/xcomEntries?limit=50"))
                for key, value in secrets_.items():
                    assert value not in log, f"{key} in the REST log of {ti['task_id']}"
                    assert value not in xcom, f"{key} in the XCom of {ti['task_id']}"
                checked += 1
    assert checked >= 2

    experiments = mlflow_client.search_experiments()
    runs = mlflow_client.search_runs([e.experiment_id for e in experiments], max_results=500)
    assert runs
    for run in runs:
        text = json.dumps({"tags": run.data.tags, "params": run.data.params})
        for key, value in secrets_.items():
            assert value not in text, f"{key} in tags/params of MLflow run {run.info.run_id}"


def _listening(stack: Stack) -> dict[str, set[str]]:
    """Listening TCP addresses (``ss``) of every process in the twin's process groups, by component."""
    groups = {proc.pid: key for key, proc in stack.procs.items()}
    owner: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # pgrp
            owner[int(stat.parent.name)] = groups[int(fields[2])]
    found: dict[str, set[str]] = {}
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30, check=True).stdout
    for line in out.splitlines():
        local = line.split()[3]
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in owner:
                found.setdefault(owner[pid], set()).add(local)
    return found


def test_every_component_listens_on_loopback_only(stack):
    """``ss`` on the running twin: API server, MLflow and the scheduler's health check on 127.0.0.1, no log server."""
    found = _listening(stack)
    addresses = {addr for addrs in found.values() for addr in addrs}
    assert addresses and all(a.startswith("127.0.0.1:") for a in addresses), found
    assert f"127.0.0.1:{stack.api_port}" in found["airflow-apiserver"]
    assert f"127.0.0.1:{stack.mlflow_port}" in found["mlflow"]
    health = stack.component_env("airflow-scheduler")["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"]
    assert f"127.0.0.1:{health}" in found["airflow-scheduler"], found
    # the log servers are not started on loopback (--skip-serve-logs): the workers and triggerer listen nowhere
    assert not {k for k in found if k.startswith(("airflow-worker", "airflow-triggerer"))}, found


def test_mlflow_basic_auth_with_the_hook(stack, monkeypatch):
    """The MLflow server of the stack refuses anonymous and wrong credentials; the hook's connection works."""
    from mlops_provider.hooks.mlflow import MlflowHook

    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30)
    assert anonymous.value.code == 401

    good = json.loads(stack.component_env("airflow-worker")["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(good))
    ok, message = MlflowHook().test_connection()
    assert ok, message

    wrong = {**good, "password": "not-the-password", "extra": {"max_retries": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(wrong))
    ok, message = MlflowHook().test_connection()
    assert not ok and "rejected the credentials" in message, message
    assert "not-the-password" not in message


def test_airflow_api_is_protected(stack):
    req = urllib.request.Request(f"{stack.url}/api/v2/dags")
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(req, timeout=30)
    assert anonymous.value.code in (401, 403)
    bad = urllib.request.Request(
        f"{stack.url}/auth/token", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"username": stack.get("AIRFLOW_ADMIN_USERNAME", "admin"), "password": "wrong-password"}).encode(),
    )
    with pytest.raises(urllib.error.HTTPError) as wrong:
        urllib.request.urlopen(bad, timeout=30)
    assert wrong.value.code in (401, 403)
    assert stack.api("GET", "/dags?limit=1")["total_entries"] >= 1  # with the admin's token


# --------------------------------------------------------------------------------------------- bad input: no provider


@pytest.fixture(scope="session")
def python_without_provider(tmp_path_factory) -> Path:
    """
    The interpreter of an environment with every package of this virtualenv except the provider.

    What an Airflow image built without the provider has: a fresh virtualenv whose site-packages links
    every entry of ours but the provider's (its ``.dist-info`` and its editable-install ``.pth``).
    """
    import sysconfig
    from importlib.metadata import distribution

    dest = tmp_path_factory.mktemp("env-without-provider")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True, capture_output=True,
                   timeout=120)
    ours = Path(sysconfig.get_paths()["purelib"])
    theirs = dest / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    provider = {str(f).split("/")[0] for f in distribution("airflow-provider-mlops").files}
    assert provider, "the provider's installed files"
    for entry in ours.iterdir():
        if entry.name not in provider:
            (theirs / entry.name).symlink_to(entry)
    python = dest / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util, airflow.sdk, airflow.providers.celery; "
                            "print(importlib.util.find_spec('mlops_provider'))"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "None", probe  # Airflow and Celery yes, provider no
    return python


def _wait_for(what: str, check, stack: Stack, key: str, timeout: float):
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` (with the log of ``key``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if stack.procs[key].poll() is not None:
            raise AssertionError(f"{key} exited ({stack.procs[key].returncode}) before {what}:\n{stack.tail(key)}")
        time.sleep(1)
    raise TimeoutError(f"{what}: not within {timeout}s; {key}:\n{stack.tail(key)}")


def test_dag_processor_without_the_provider_reports_an_import_error(stack, python_without_provider, tmp_path):
    """A dag-processor that cannot import the provider records the DAG file as an import error naming the module."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    # another file name than the twin's copy: the import-errors API hides an error of a file name that has DAGs
    shutil.copy(STACK_DAGS / "stack_no_provider.py", bundle / "needs_the_provider.py")
    key = "airflow-dag-processor-no-provider"
    stack.spawn_extra(
        key, "airflow-dag-processor", args=("--bundle-name", "no-provider"), python=python_without_provider,
        # its own bundle only, so it does not touch the twin's DAGs (a processor given --bundle-name
        # leaves the other bundles alone)
        env={"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([{
            "name": "no-provider", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(bundle)}}])},
    )
    try:
        errors = _wait_for(
            "an import error of the no-provider bundle",
            lambda: stack.api("GET", "/importErrors?bundle_name=no-provider")["import_errors"], stack, key, 120)
    finally:
        stack.remove(key)
    assert [e["filename"] for e in errors] == ["needs_the_provider.py"], errors
    assert "ModuleNotFoundError: No module named 'mlops_provider'" in errors[0]["stack_trace"], errors[0]
    # the twin's own DAGs are untouched
    assert stack.api("GET", "/importErrors?bundle_name=dags-folder")["total_entries"] == 0
    assert stack.api("GET", "/dags/stack_no_provider")["is_stale"] is False


def test_worker_without_the_provider_fails_the_task_with_the_import_error(stack, python_without_provider):
    """
    A Celery worker that cannot import the provider gets a task of a DAG that needs it: the task fails, bounded,
    with ``No module named 'mlops_provider'`` in its log, instead of hanging in ``queued``.

    Airflow 3.3.2 (task_runner.parse): a DAG file the worker cannot import is "Dag not found during start up";
    the task is rescheduled (``[workers] missing_dag_retries``, default 3, not counted as tries) every
    ``missing_dag_retry_delay`` seconds (default 60; 5 on this worker to keep the test short), then failed.
    """
    key = "airflow-worker-no-provider"
    stack.spawn_extra(
        key, "airflow-worker", python=python_without_provider,
        args=("--queues", "no_provider", "--concurrency", "1", "--celery-hostname", "noprovider@%h"),
        env={"AIRFLOW__WORKERS__MISSING_DAG_RETRY_DELAY": "5"},
    )
    try:
        _wait_for("the worker ready", lambda: re.search(r"noprovider@\S+ ready", stack.log_since_start(key)),
                  stack, key, 120)
        stack.wait_dag("stack_no_provider")
        run_id = stack.trigger("stack_no_provider")
        state = stack.wait_run("stack_no_provider", run_id, timeout=240)
    finally:
        stack.remove(key)
    ti = _ti(stack, "stack_no_provider", run_id, "check_mlflow")
    assert state == "failed" and ti["state"] == "failed", ti
    assert ti["queue"] == "no_provider" and ti["try_number"] == 1, ti
    log = stack.task_log("stack_no_provider", run_id, "check_mlflow", 1)
    assert "No module named 'mlops_provider'" in log, log[-3000:]
    assert "Dag not found during start up" in log and "Startup reschedule limit exceeded" in log, log[-3000:]
    # only the worker without the provider was given the task, once per start-up attempt (1 + 3 reschedules)
    ran = _workers_that_ran(stack, "stack_no_provider", run_id)
    assert ran == {key: {"check_mlflow"}}, ran
    attempts = [line for line in stack.log_path(key).read_text(errors="replace").splitlines()
                if "Executing workload in Celery" in line and run_id in line]
    assert len(attempts) == 4, attempts


# --------------------------------------------------------------------------------------------- faults


def test_mlflow_server_killed_during_training(stack, mlflow_client):
    """MLflow dies while ``train`` runs and comes back: the task retries and succeeds, one model version."""
    model = f"stack-mlflow-kill-{uuid.uuid4().hex[:6]}"
    run_id = _trigger_loop(stack, model)
    _wait_ti(stack, "stack_fault_loop", run_id, "train", "running")
    stack.kill("mlflow")
    try:
        time.sleep(15)  # longer than the connection's HTTP retries (3 retries, backoff 1 s: about 7 s)
    finally:
        stack.restart("mlflow")
        stack.wait_healthy(180)
    assert stack.wait_run("stack_fault_loop", run_id, timeout=600) == "success", stack.task_instances("stack_fault_loop", run_id)
    train = _ti(stack, "stack_fault_loop", run_id, "train")
    assert train["try_number"] >= 2, train  # the first try failed while MLflow was down
    first = stack.task_log("stack_fault_loop", run_id, "train", 1)
    assert "Cannot reach MLflow tracking server" in first or "Connection refused" in first
    assert len(_versions(mlflow_client, model)) == 1
    assert mlflow_client.get_model_version_by_alias(model, "champion").version == "1"


def _worker_of(stack: Stack, pid: int) -> str:
    """The twin's worker whose process tree holds ``pid``."""
    workers = {proc.pid: key for key, proc in stack.procs.items() if key.startswith("airflow-worker")}
    current = pid
    while current > 1:
        if current in workers:
            return workers[current]
        with open(f"/proc/{current}/stat") as fh:
            current = int(fh.read().rsplit(") ", 1)[1].split()[1])
    raise AssertionError(f"pid {pid} is not under a Celery worker of the stack")


def test_celery_worker_killed_mid_task(stack, mlflow_client):
    """The worker dies right after ``register`` registered the version: the retry adds no second version."""
    model = f"stack-worker-kill-{uuid.uuid4().hex[:6]}"
    marker = stack.data_dir / f"{model}.marker"
    run_id = _trigger_loop(stack, model, hold_after_register=600, marker=str(marker))
    deadline = time.monotonic() + 400
    while not marker.exists():
        assert time.monotonic() < deadline, stack.task_instances("stack_fault_loop", run_id)
        time.sleep(0.5)
    info = json.loads(marker.read_text())
    worker = _worker_of(stack, info["pid"])
    stack.kill(worker)  # SIGKILL of the worker's process group: the worker and its task
    try:
        os.kill(info["pid"], signal.SIGKILL)  # in case the task runs in a process group of its own
    except ProcessLookupError:
        pass
    stack.restart(worker)  # compose's restart: always
    assert stack.wait_run("stack_fault_loop", run_id, timeout=600) == "success", stack.task_instances("stack_fault_loop", run_id)
    register = _ti(stack, "stack_fault_loop", run_id, "register")
    assert register["try_number"] >= 2, register
    versions = _versions(mlflow_client, model)
    assert [v.version for v in versions] == [info["version"]]  # no duplicate version
    promotions = [h for h in _history(mlflow_client, model) if h["action"] == "promote"]
    assert len(promotions) == 1 and promotions[0]["to"] == info["version"], promotions


def _wait_running_try(stack: Stack, dag_id: str, run_id: str, task_id: str, try_number: int,
                      timeout: float = 300) -> dict:
    """The task instance once its try ``try_number`` runs in a worker (state running, its pid known)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ti = _ti(stack, dag_id, run_id, task_id) if any(
            t["task_id"] == task_id for t in stack.task_instances(dag_id, run_id)) else {}
        if ti.get("state") == "running" and ti.get("try_number") == try_number and ti.get("pid"):
            return ti
        if ti.get("state") in ("success", "failed", "upstream_failed") and ti.get("try_number", 0) >= try_number:
            raise AssertionError(f"{task_id} try {try_number} ended {ti['state']} before it was seen running: {ti}")
        time.sleep(0.3)
    raise TimeoutError(f"{task_id} try {try_number} of {run_id} not running within {timeout}s: "
                       f"{stack.task_instances(dag_id, run_id)}")


def _worker_group(stack: Stack, pid: int) -> str:
    """The worker (key in ``pids.json``) whose process group, or process tree, holds ``pid``."""
    workers = {p: key for key, p in stack.running_pids().items() if key.startswith("airflow-worker")}
    current = pid
    while current > 1:
        with open(f"/proc/{current}/stat") as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()
        if int(fields[2]) in workers:  # the process group
            return workers[int(fields[2])]
        current = int(fields[1])
    raise AssertionError(f"pid {pid} is not in a Celery worker's process group: {workers}")


def test_worker_crashes_during_train_and_register_are_retried(stack, mlflow_client):
    """
    The level-1 pipeline survives its workers crashing.  ``scripts/stack supervise`` runs (compose's
    ``restart: always``); the whole process group of the worker running ``train`` is SIGKILLed while its
    MLflow run is open, then that of the worker running ``register_challenger``.  Each try is failed by the
    scheduler's heartbeat timeout (30 s here) and retried (the pipeline's default ``retries:``, first delay
    5 s in the twin's copy of the YAML) on the other worker or the restarted one; the run succeeds with
    exactly one new version, the champion moved once, and no MLflow run of the run left RUNNING: the retry
    of ``train`` marked the killed try's run FAILED.
    """
    from mlops_provider.operators.training import SUPERSEDED_TAG

    dag_id, model = "continuous_training__loan_default", "loan_default"
    stack.wait_dag(dag_id)
    versions_before = {v.version for v in _versions(mlflow_client, model)} if _champion(mlflow_client, model) else set()
    cli = [str(ROOT / "scripts" / "stack"), "--env-file", str(stack.env_file), "--state-dir", str(stack.state_dir),
           "--dags-folder", str(stack.dags_folder)]
    supervisor = subprocess.Popen([*cli, "supervise", "--interval", "1"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
    started_ms = int(time.time() * 1000)
    recovery: dict[str, dict] = {}
    try:
        run_id = stack.trigger(dag_id)
        experiment = None
        for task_id in ("train", "register_challenger"):
            ti = _wait_running_try(stack, dag_id, run_id, task_id, 1, timeout=600)
            if task_id == "train":  # kill while the try's MLflow run is open: the retry must end it
                deadline = time.monotonic() + 300
                while True:
                    experiment = experiment or mlflow_client.get_experiment_by_name(f"{model}-training")
                    open_runs = mlflow_client.search_runs(
                        [experiment.experiment_id],
                        f"tags.`mlops.run_id` = '{run_id}' and tags.`mlops.task_id` = 'train' "
                        "and attributes.status = 'RUNNING'") if experiment else []
                    if open_runs:
                        break
                    assert time.monotonic() < deadline, "train's MLflow run never seen RUNNING"
                    assert _ti(stack, dag_id, run_id, task_id)["state"] == "running", "train ended before the kill"
                    time.sleep(0.3)
                killed_run = open_runs[0].info.run_id
            worker = _worker_group(stack, ti["pid"])
            pgid = stack.running_pids()[worker]
            killed_at = time.monotonic()
            os.killpg(pgid, signal.SIGKILL)  # the worker, its pool, the task supervisor and the task
            retry = _wait_running_try(stack, dag_id, run_id, task_id, 2, timeout=300)
            running_after = time.monotonic() - killed_at
            done = _wait_ti(stack, dag_id, run_id, task_id, "success", timeout=600)
            recovery[task_id] = {
                "killed": worker, "retried_on": _worker_group(stack, retry["pid"]) if _alive_pid(retry["pid"]) else "?",
                "retry_running_s": round(running_after, 1), "retry_success_s": round(time.monotonic() - killed_at, 1),
                "try_number": done["try_number"],
            }
        state = stack.wait_run(dag_id, run_id, timeout=900)
    finally:
        supervisor.terminate()  # the supervisor only; the components it restarted stay tracked in pids.json
        supervisor.wait(timeout=30)
    output = supervisor.stdout.read()
    tis = {t["task_id"]: (t["state"], t["try_number"]) for t in stack.task_instances(dag_id, run_id)}
    assert state == "success", tis
    assert tis["train"] == ("success", 2) and tis["register_challenger"] == ("success", 2), tis
    assert tis["promote"] == ("success", 1), tis  # the gate blessed the new version (loan_default passes it)
    assert "restarting it" in output, output  # the supervisor brought the killed workers back
    assert {k for k in stack.running_pids() if k.startswith("airflow-worker")} == {"airflow-worker-1", "airflow-worker-2"}

    new = [v for v in _versions(mlflow_client, model) if v.version not in versions_before]
    assert len(new) == 1, [(v.version, v.run_id) for v in new]  # exactly one new version
    promotions = [h for h in _history(mlflow_client, model) if h["action"] == "promote" and run_id in h["by"]]
    assert [p["to"] for p in promotions] == [new[0].version], promotions  # the champion moved once
    assert _champion(mlflow_client, model) == new[0].version

    killed = mlflow_client.get_run(killed_run)
    assert killed.info.status == "FAILED" and killed.data.tags[SUPERSEDED_TAG] == "2", killed.info
    assert new[0].run_id != killed_run  # the version is the retry's model
    experiments = [e.experiment_id for e in mlflow_client.search_experiments()]
    left = mlflow_client.search_runs(experiments, f"attributes.start_time >= {started_ms} and attributes.status = 'RUNNING'")
    assert not left, [(r.info.run_id, r.data.tags.get("mlflow.runName")) for r in left]
    print(f"\ncrash recovery: {recovery}")


def _alive_pid(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_two_runs_promoting_at_once(stack, mlflow_client):
    """Two runs promote different versions, both decided on 'no champion': one wins, the loser fails with the CAS error."""
    model = f"stack-race-{uuid.uuid4().hex[:6]}"
    mlflow_client.create_registered_model(model)
    exp = mlflow_client.create_experiment(f"{model}-exp")
    for _ in range(2):
        run = mlflow_client.create_run(exp)
        mlflow_client.create_model_version(model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    try:
        stack.api("POST", "/pools", {"name": "mlops_promotions", "slots": 1, "include_deferred": False})
    except urllib.error.HTTPError as err:
        if err.code != 409:
            raise
    stack.wait_dag("stack_promote")
    runs = {version: stack.trigger("stack_promote", {"model_name": model, "version": version, "expected": "none"})
            for version in ("1", "2")}
    states = {version: stack.wait_run("stack_promote", run_id, timeout=300) for version, run_id in runs.items()}
    assert sorted(states.values()) == ["failed", "success"], states
    winner = next(v for v, s in states.items() if s == "success")
    loser = next(v for v, s in states.items() if s == "failed")
    assert mlflow_client.get_model_version_by_alias(model, "champion").version == winner
    promotions = [h for h in _history(mlflow_client, model) if h["action"] == "promote"]
    assert [p["to"] for p in promotions] == [winner]
    ti = _ti(stack, "stack_promote", runs[loser], "promote")
    assert ti["try_number"] == 1  # ChampionMovedError is not retried
    log = stack.task_log("stack_promote", runs[loser], "promote", 1)
    assert "ChampionMovedError" in log and "nothing was changed" in log, log[-3000:]


def _pg_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[0]


def test_postgresql_restarted_during_a_run(stack, mlflow_client):
    """PostgreSQL (Airflow's and MLflow's databases) restarts mid-run: the run completes or fails clearly, nothing half-promoted."""
    from tests.helpers.postgres import postgres_available

    model = f"stack-pg-restart-{uuid.uuid4().hex[:6]}"
    run_id = _trigger_loop(stack, model)
    _wait_ti(stack, "stack_fault_loop", run_id, "train", "running")
    version = _pg_version()
    try:
        subprocess.run([*PG_CLUSTER, version, "main", "restart", "-m", "fast"], check=True, capture_output=True,
                       timeout=120)
    finally:
        if not postgres_available():
            subprocess.run([*PG_CLUSTER, version, "main", "start"], check=False, capture_output=True, timeout=120)
    assert postgres_available()
    # compose's restart: always, for a component that exits; a component may exit a few seconds after the
    # restart (when it next touches the database), so keep restarting while the run goes on
    restarted: list[str] = []
    deadline = time.monotonic() + 600
    while True:
        restarted += stack.ensure_running()
        state = stack.api("GET", f"/dags/stack_fault_loop/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"run {run_id} still {state} after 600s"
        time.sleep(2)
    tis = {t["task_id"]: t for t in stack.task_instances("stack_fault_loop", run_id)}
    versions = _versions(mlflow_client, model)
    if state == "success":
        assert len(versions) == 1
        assert mlflow_client.get_model_version_by_alias(model, "champion").version == versions[0].version
    else:
        failed = [t for t in tis.values() if t["state"] == "failed"]
        assert failed, tis
        log = stack.task_log("stack_fault_loop", run_id, failed[0]["task_id"], failed[0]["try_number"])
        assert "error" in log.lower(), log[-2000:]
        aliases = mlflow_client.get_registered_model(model).aliases if versions else {}
        if "champion" in aliases:  # a champion was set only with its history entry
            assert [h["to"] for h in _history(mlflow_client, model) if h["action"] == "promote"] == [aliases["champion"]]
    tries = {task: ti["try_number"] for task, ti in tis.items()}
    restarted += stack.ensure_running()
    print(f"\nPostgreSQL restart: run {state}; tries {tries}; components restarted: {restarted}")
    stack.wait_healthy(300)


# --------------------------------------------------------------------------------------------- restart, then down


def _group_members(pgids: set[int]) -> set[int]:
    """Every live process whose process group is one of ``pgids``."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids and fields[0] != "Z":
            members.add(int(stat.parent.name))
    return members


def test_restart_and_supervise_from_new_processes_then_down_stops_everything(stack):
    """
    ``scripts/stack restart airflow-triggerer`` (a new process) keeps every other component in ``pids.json``;
    ``scripts/stack supervise`` restarts a worker that was SIGKILLed; ``scripts/stack down`` (another new
    process) then stops every process group, none is orphaned, and the supervisor exits by itself.

    Stops the session's twin: the last test that needs it running (the one after it only reads log files).
    """
    cli = [str(ROOT / "scripts" / "stack"), "--env-file", str(stack.env_file), "--state-dir", str(stack.state_dir),
           "--dags-folder", str(stack.dags_folder)]
    before = stack.running_pids()
    assert set(stack.component_keys()) <= set(before), before
    old = before["airflow-triggerer"]

    restarted = subprocess.run([*cli, "restart", "airflow-triggerer"], capture_output=True, text=True, timeout=400)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    after = json.loads((stack.state_dir / "pids.json").read_text())
    assert set(after) == set(before), (before, after)  # nothing dropped: the old code kept only the triggerer
    assert after["airflow-triggerer"] != old and not _group_members({old})
    assert {k: v for k, v in after.items() if k != "airflow-triggerer"} == {
        k: v for k, v in before.items() if k != "airflow-triggerer"}
    assert _group_members({after["airflow-triggerer"]})  # the new one runs

    # supervise: compose's restart: always
    supervisor = subprocess.Popen([*cli, "supervise", "--interval", "1"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
    try:
        killed = after["airflow-worker-2"]
        os.killpg(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = stack.running_pids()
            if now.get("airflow-worker-2") not in (None, killed):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the supervisor did not restart airflow-worker-2: {stack.running_pids()}")
        supervised = stack.running_pids()
        assert set(supervised) == set(after), supervised
        assert {k: v for k, v in supervised.items() if k != "airflow-worker-2"} == {
            k: v for k, v in after.items() if k != "airflow-worker-2"}
        members = _group_members(set(supervised.values()))
        assert len(members) > len(supervised), members  # the groups hold children too (pools, gunicorn...)

        down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
        output, _ = supervisor.communicate(timeout=30)  # it exits by itself once the stack is down
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    assert supervisor.returncode == 0 and "restarted ['airflow-worker-2']" in output, output
    left = _group_members(set(supervised.values()) | set(after.values()))
    assert not left, f"orphaned after down: {left}"
    assert not (stack.state_dir / "pids.json").exists()
    print(f"\nrestart and supervise kept {len(supervised)} components tracked; down stopped {len(members)} processes")


# --------------------------------------------------------------------------------------------- last: the components' own logs


def test_no_secret_in_component_logs(stack):
    """
    Grep every component's stdout/stderr log (``<state>/logs/*.log``) for every secret of the env file.

    Last in the file, so the logs hold the whole session: start-up, every DAG run, the faults (MLflow and a
    worker killed, PostgreSQL restarted) and the extra processes of the bad-input tests.
    """
    logs = {path.stem: path.read_text(errors="replace") for path in sorted((stack.state_dir / "logs").glob("*.log"))}
    expected = {"mlflow", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                "airflow-triggerer", "airflow-worker-1", "airflow-worker-2"}
    assert expected <= set(logs), sorted(logs)
    assert all(logs[name] for name in expected), [name for name in expected if not logs[name]]
    leaks = [f"{key} in {name}.log" for name, text in logs.items() for key, value in _secrets(stack).items()
             if value in text]
    assert not leaks, leaks
    print(f"\nno secret in {len(logs)} component logs ({sum(map(len, logs.values())) / 1e6:.1f} MB): {sorted(logs)}")
