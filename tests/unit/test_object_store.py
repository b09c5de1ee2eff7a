"""Pipeline data on an S3-compatible object store, through a real Airflow ``aws`` connection.

The store is moto's server mode (``moto_server``, a real HTTP server process on 127.0.0.1), which stands
in for the compose stack's MinIO (a Docker image; Docker cannot run here): both speak the S3 API, and
the components reach either one the same way, an ``aws`` connection with ``endpoint_url`` through
Airflow's ``ObjectStoragePath`` (the Amazon provider's ``s3`` file system, s3fs).  Until these tests
only ``memory://`` was exercised.

Covered: the triggerer's watcher (``NewBatchTrigger``) finding batches landed on the store; the
validator reading a batch from it and quarantining a bad one to it; the scorer reading a batch and
writing its predictions to it; training data read back through the same connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid

import numpy as np
import pandas as pd
import pytest

from tests.helpers.object_store import SECRET_KEY, S3Server
from tests.unit.test_prediction import _context, _frame, _operator, model_uri, private_tmp  # noqa: F401
from tests.unit.test_triggers import Driver

CONN_ID = "mlops_data"
BUCKET = "mlops-data"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server (standing in for MinIO), its bucket, and ``AIRFLOW_CONN_MLOPS_DATA`` pointing at it."""
    server = S3Server(tmp_path_factory.mktemp("moto")).start()
    previous = os.environ.get("AIRFLOW_CONN_MLOPS_DATA")
    os.environ["AIRFLOW_CONN_MLOPS_DATA"] = server.connection()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_MLOPS_DATA", None)
        else:
            os.environ["AIRFLOW_CONN_MLOPS_DATA"] = previous
        server.stop()
        assert SECRET_KEY not in server.log_path.read_text(errors="replace")


def _path(key: str):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"s3://{BUCKET}/{key}", conn_id=CONN_ID)


def _land(frame: pd.DataFrame, key: str) -> str:
    """Upload under a hidden temporary name, then move into place (the landing convention on a store)."""
    final = _path(key)
    tmp = final.parent / f".{final.name}.tmp"
    with tmp.open("wb") as fh:
        frame.to_parquet(fh, index=False)
    tmp.fs.mv(tmp.path, final.path)
    return f"s3://{BUCKET}/{key}"


def _read(key: str) -> pd.DataFrame:
    with _path(key).open("rb") as fh:
        return pd.read_parquet(fh)


def test_watcher_fires_for_each_batch_landed_on_the_store(s3, tmp_path):
    """The triggerer's ``NewBatchTrigger`` lists the bucket through the connection: one event per landed batch."""
    from mlops_provider.core.datasets import DatasetRef, load_dataset
    from mlops_provider.triggers.batch import NewBatchTrigger

    prefix = f"loan-{uuid.uuid4().hex[:6]}/landing/batches"
    first = _land(_frame(), f"{prefix}/day-01.parquet")

    async def scenario():
        trigger = NewBatchTrigger(location=f"s3://{BUCKET}/{prefix}/*.parquet", consumer="drift_monitor__loan",
                                  conn_id=CONN_ID, ledger_path=str(tmp_path / "ledger.sqlite3"), poll_interval=0.2)
        run = Driver(trigger)
        one = await run.next_event(timeout=20)
        assert await run.no_event(1.0)  # a batch is announced once
        second = _land(_frame(), f"{prefix}/day-02.parquet")
        two = await run.next_event(timeout=20)
        await run.close()
        return one.payload, two.payload, second

    one, two, second = asyncio.run(scenario())
    assert one["batch_uri"].endswith(first.split("://", 1)[1]) and two["batch_uri"].endswith(second.split("://", 1)[1])
    assert json.dumps(one)  # a small JSON event
    # the batch the event names reads back through the same connection (validator, scorer and drift inputs)
    frame = load_dataset(DatasetRef(uri=first, conn_id=CONN_ID)).frame
    pd.testing.assert_frame_equal(frame, _frame())


def test_validator_quarantines_a_bad_batch_to_the_store(s3, mlflow_conn_sqlite):
    """A batch read from the store fails its contract; batch and report are copied to the store's quarantine."""
    from airflow.sdk.exceptions import AirflowSkipException

    from mlops_provider.operators.validation import DataValidationOperator

    run = uuid.uuid4().hex[:6]
    bad = _frame()
    bad.loc[:4, "n"] = 99
    uri = _land(bad, f"loan-{run}/landing/batches/day-03.parquet")
    op = DataValidationOperator(
        task_id="validate_batch", dataset={"uri": uri, "conn_id": CONN_ID},
        expectations=[{"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 0,
                                                                               "max_value": 10}}],
        on_failure="quarantine", quarantine_location=f"s3://{BUCKET}/loan-{run}/quarantine",
        quarantine_conn_id=CONN_ID, experiment_name=f"store-validation-{run}",
    )
    pushed: dict = {}
    ti = type("TI", (), {"map_index": -1, "xcom_push": lambda self, key, value: pushed.__setitem__(key, value)})()
    with pytest.raises(AirflowSkipException, match="quarantined"):
        op.execute({"ti": ti, "run_id": f"manual__{run}"})
    target = pushed["return_value"]["quarantine_location"]
    assert target.startswith(f"s3://{BUCKET}/loan-{run}/quarantine/")
    key = target.split(f"s3://{BUCKET}/", 1)[1]
    names = sorted(p.name for p in _path(key).iterdir())
    assert names == ["batch.parquet", "report.html", "result.json", "summary.json"], names
    pd.testing.assert_frame_equal(_read(f"{key}/batch.parquet"), bad)
    assert _path(uri.split(f"s3://{BUCKET}/", 1)[1]).exists()  # the source batch stays


def test_scorer_reads_a_batch_and_writes_predictions_to_the_store(s3, model_uri, private_tmp):  # noqa: F811
    """``BatchPredictOperator``: input and output on the store, both through the connection; nothing left locally."""
    run = uuid.uuid4().hex[:6]
    batch = _land(_frame(), f"loan-{run}/landing/batches/day-01.parquet")
    out = f"s3://{BUCKET}/loan-{run}/predictions/day-01.parquet"
    result = _operator(input_data={"uri": batch, "conn_id": CONN_ID}, output_uri=out, output_conn_id=CONN_ID,
                       model_uri=model_uri).execute(_context())
    assert result["n_rows"] == 100 and len(json.dumps(result)) < 4096
    predictions = _read(f"loan-{run}/predictions/day-01.parquet")
    assert len(predictions) == 100 and list(predictions["id"]) == list(range(100))
    assert os.listdir(private_tmp) == []


def test_training_data_written_and_read_back_through_the_connection(s3):
    """A training window on the store (what ``assemble_training_data`` would write) loads with its digest."""
    from mlops_provider.core.datasets import DatasetRef, load_dataset

    run = uuid.uuid4().hex[:6]
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=50), "y": rng.integers(0, 2, 50)})
    uri = _land(frame, f"loan-{run}/work/training/train.parquet")
    loaded = load_dataset(DatasetRef(uri=uri, conn_id=CONN_ID))
    pd.testing.assert_frame_equal(loaded.frame, frame)
    assert loaded.digest and loaded.n_rows == 50


# ---------------------------------------------------------------------- the loan-default story on the store


@pytest.fixture(scope="module")
def s3_world(s3, tmp_path_factory, airflow_db, mlflow_sqlite_uri, session_dir):
    """``dags/pipelines/loan_default.yaml`` with its data root on the store: ``root: s3://...`` + ``conn_id``."""
    import shutil

    import demo_data

    from tests.unit.test_example_dags import DAGS

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("s3-world")
    tag = uuid.uuid4().hex[:6]
    model = f"loan_s3_{tag}"
    pipelines = root / "pipelines"
    shutil.copytree(DAGS / "pipelines" / "contracts", pipelines / "contracts")
    text = (DAGS / "pipelines" / "loan_default.yaml").read_text().replace("name: loan_default", f"name: {model}")
    text, n = re.subn(r"(?m)^  root: .*$", f"  root: s3://{BUCKET}/{model}\n  conn_id: {CONN_ID}\n"
                                           f"  state: {root / 'state'}   # the ledgers (SQLite) stay on a local disk", text)
    assert n == 1
    (pipelines / f"{model}.yaml").write_text(text)
    with _path(f"{model}/training/base.parquet").open("wb") as fh:
        demo_data.training_set().to_parquet(fh, index=False)
    mp.setenv("MLOPS_RETRAIN_SCHEDULE", "")
    # dag.test() re-parses dags/, whose DAG files build every pipeline of MLOPS_PIPELINES_DIR
    mp.setenv("MLOPS_PIPELINES_DIR", str(pipelines))
    mp.setenv("MLOPS_PROPOSALS_DIR", str(root / "proposed"))
    (session_dir / "mlflow-local").mkdir(exist_ok=True)
    mp.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", f'{{"conn_type": "mlflow", "host": "{mlflow_sqlite_uri}"}}')
    cwd = os.getcwd()
    os.chdir(session_dir / "mlflow-local")
    from mlops_provider import pipeline_dags as factory
    from mlops_provider.pipelines import load_pipeline

    spec = load_pipeline(pipelines / f"{model}.yaml")
    yield {"model": model, "spec": spec, "factory": factory, "mlflow": mlflow_sqlite_uri}
    os.chdir(cwd)
    mp.undo()


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def test_loan_default_story_with_its_data_on_the_store(s3_world):
    """
    The pipeline DAGs, run in-process (``dag.test()``, real MLflow store, real GX and Evidently) with every file
    on the store: first training from the store's training set, batches landed there (day 1 stable, day 3
    broken, day 4 drifted) validated, quarantined to the store, scored into the store's predictions and
    drift-checked; day 4's labels checked for decay; the retraining window read back from the store, a new
    version trained and promoted, and the batch scoring written to the store.  No local data folder exists.
    """
    import demo_data
    from mlflow import MlflowClient

    factory, spec, model = s3_world["factory"], s3_world["spec"], s3_world["model"]
    client = MlflowClient(tracking_uri=s3_world["mlflow"], registry_uri=s3_world["mlflow"])
    assert spec.on_object_store and spec.conn_id == CONN_ID
    run = factory.build_continuous_training(spec).test()
    assert run.state == "success" and _states(run)["promote"] == "success", _states(run)
    assert str(client.get_model_version_by_alias(model, "champion").version) == "1"

    monitor, performance = factory.build_drift_monitor(spec), factory.build_performance_monitor(spec)
    drifts = {}
    for day in (1, 3, 4):
        features, labels = demo_data.batch(day)
        name = demo_data.batch_name(day)
        batch = _land(features, f"{model}/landing/batches/{name}")
        states = _states(monitor.test(run_conf={"batch_uri": batch}))
        if day == 3:  # broken: quarantined on the store, never scored nor drift-checked
            assert states["check_batch.validate_batch"] == "skipped" and states["check_batch.score_batch"] == "skipped"
            assert not _path(f"{model}/predictions/{name}").exists()
            assert [p.name for p in _path(f"{model}/quarantine").rglob("batch.parquet")], "nothing quarantined"
            continue
        assert states["check_batch.check_drift"] == "success", states
        assert len(_read(f"{model}/predictions/{name}")) == len(features)
        drifts[day] = states
        _land(labels, f"{model}/landing/labels/{name}")
        perf = performance.test(run_conf={"labels_uri": f"s3://{BUCKET}/{model}/landing/labels/{name}"})
        assert _states(perf)["check_labels.check_decay"] == "success", _states(perf)

    # retraining: the window is the latest accepted batch (day 4) with its labels, read from the store
    run = factory.build_continuous_training(spec).test()
    states = _states(run)
    assert run.state == "success", states
    window = run.get_task_instance("assemble_training_data").xcom_pull(task_ids="assemble_training_data")
    assert window["source"] == [demo_data.batch_name(4)] and window["train"].startswith(f"s3://{BUCKET}/{model}/work/")
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{model}'"))
    assert versions == [1, 2], versions
    trained = client.get_run(client.get_model_version(model, "2").run_id)
    assert trained.data.tags["mlops.window"] == demo_data.batch_name(4), trained.data.tags
    if states["promote"] == "success":
        assert str(client.get_model_version_by_alias(model, "champion").version) == "2"
    scores = list(_path(f"{model}/work/scores").iterdir())
    assert len(scores) == 2, scores  # the batch scoring of both training runs, on the store
    print(f"\nstory on the store: promote {states['promote']}; files: "
          f"{sorted(str(p).split(model, 1)[1] for p in _path(model).rglob('*.parquet'))[:12]}")


# ---------------------------------------------------------------------- the pipeline operators and sensors on the store


def test_pipeline_window_labels_contract_and_live_batch_read_through_the_connection(s3, tmp_path):
    """
    The factory's operators and sensors with ``data.root: s3://...`` + ``data.conn_id``: the training window
    is planned, waited for and written on the store; a label file's batch is found scored, quarantined (a
    store batch has no ``source/`` copy: its ``result.json`` names it) or pending; the data contract reads
    the latest landed batch; the post-deployment check finds and joins the first labelled live batch.
    """
    import time

    from airflow.sdk.exceptions import AirflowSkipException

    from mlops_provider.core.pipeline_ci import first_labelled_batch_after, labelled_frame
    from mlops_provider.core.validation import derive_schema_suite, write_quarantine
    from mlops_provider.operators.pipeline import DataContractCheckOperator
    from mlops_provider.pipelines import load_pipeline
    from mlops_provider.sensors.pipeline import LabelsScoredSensor, TrainingWindowSensor
    from tests.unit.test_pipeline_operators import PIPELINE
    from tests.unit.test_pipeline_operators import _frame as _rides

    prefix = f"rides-{uuid.uuid4().hex[:6]}"
    root = f"s3://{BUCKET}/{prefix}"
    base = _rides(1, 100)
    with _path(f"{prefix}/training/base.parquet").open("wb") as fh:
        base.to_parquet(fh, index=False)
    folder = tmp_path / "pipelines"
    (folder / "contracts").mkdir(parents=True)
    (folder / "contracts" / "training.yaml").write_text(derive_schema_suite(base, name="training"))
    (folder / "contracts" / "batch.yaml").write_text(derive_schema_suite(base.drop(columns=["long_ride"]), name="batch"))
    text = PIPELINE.format(root=root, window="base_plus_latest", n=2).replace(
        f"  root: {root}\n", f"  root: {root}\n  conn_id: {CONN_ID}\n  state: {tmp_path / 'state'}\n")
    path = folder / "rides.yaml"
    path.write_text(text)
    spec = load_pipeline(path)
    assert spec.on_object_store and spec.conn_id == CONN_ID

    days = {day: (f"day-{day:02d}.parquet", _rides(1000 * day, seed=day)) for day in (1, 2, 3, 4)}
    for day, (name, frame) in days.items():
        _land(frame.drop(columns=["long_ride"]), f"{prefix}/landing/batches/{name}")
        if day in (1, 2):  # accepted: scored by the monitor
            _land(frame[["ride_id"]].assign(prediction=0), f"{prefix}/predictions/{name}")
    _land(days[1][1][["ride_id", "long_ride"]], f"{prefix}/landing/labels/{days[1][0]}")
    write_quarantine(  # what DataValidationOperator(on_failure="quarantine", quarantine_conn_id=...) writes
        f"{root}/quarantine/drift_monitor__rides/validate_batch/run-3", days[3][1], report_html="<p>bad</p>",
        result_json=json.dumps({"success": False, "details": {"dataset": f"{root}/landing/batches/{days[3][0]}"}}),
        summary={"success": False}, source_uri=f"{root}/landing/batches/{days[3][0]}",
        fs=_path(f"{prefix}/quarantine").fs,
    )

    # the training window: base + the two latest accepted batches; day 2's labels are missing at first
    window_sensor = TrainingWindowSensor(task_id="window", pipeline=str(path))
    assert window_sensor.poke({"run_id": "manual__1"}).is_done is False
    _land(days[2][1][["ride_id", "long_ride"]], f"{prefix}/landing/labels/{days[2][0]}")
    done = window_sensor.poke({"run_id": "manual__1"})
    window = done.xcom_value
    assert done.is_done and window["source"] == ["base", days[1][0], days[2][0]], window
    assert window["train"] == f"{root}/work/training/manual__1/train.parquet"
    assert window["eval"] == f"{root}/work/training/manual__1/eval.parquet"
    assert window["score_input"] == f"{root}/landing/batches/{days[2][0]}"
    train, evaluation = _read(f"{prefix}/work/training/manual__1/train.parquet"), _read(
        f"{prefix}/work/training/manual__1/eval.parquet")
    assert len(train) + len(evaluation) == window["n_rows"] == 200 and train["long_ride"].notna().all()

    # a label file's batch: scored, quarantined on the store, landed but not scored
    dirs = {"predictions_dir": spec.data_path("predictions"), "quarantine_dir": spec.data_path("quarantine"),
            "batches_dir": spec.batches_dir, "conn_id": spec.conn_id, "scoring_wait": 600}
    labels = f"{root}/landing/labels/{days[1][0]}"
    scored = LabelsScoredSensor(task_id="m1", labels=labels, **dirs).poke({})
    assert scored.is_done and scored.xcom_value == {
        "labels": labels, "predictions": f"{root}/predictions/{days[1][0]}", "state": "scored"}
    with pytest.raises(AirflowSkipException, match=f"{days[3][0]} was quarantined .*run-3/batch.parquet"):
        LabelsScoredSensor(task_id="m3", labels=f"{root}/landing/labels/{days[3][0]}", **dirs).poke({})
    assert LabelsScoredSensor(task_id="m4", labels=f"{root}/landing/labels/{days[4][0]}", **dirs).poke({}).is_done is False

    # CI's data contract reads the base set and the latest landed batch from the store
    checked = DataContractCheckOperator(task_id="contract", pipeline=str(path)).execute({})["checked"]
    assert checked == {"training_contract": f"{root}/training/base.parquet",
                       "batch_contract": f"{root}/landing/batches/{days[4][0]}"}

    # the post-deployment check: the first labelled live batch after the deployment (object mtimes)
    labels_dir = spec.data_path("labels")
    assert first_labelled_batch_after(labels_dir, spec.batches_dir, 0.0, spec.storage) == days[1][0]
    assert first_labelled_batch_after(labels_dir, spec.batches_dir, time.time() + 3600, spec.storage) is None
    joined = labelled_frame(spec.batches_dir, labels_dir, days[2][0], "ride_id", spec.storage)
    assert len(joined) == 50 and {"temperature", "long_ride"} <= set(joined.columns)
