"""End to end with the real scheduler, dag-processor and triggerer.

A drifted batch is dropped in the landing folder -> NewBatchTrigger (AssetWatcher) fires -> the
monitoring DAG runs and emits ``mlops://<model>/drift`` -> the training DAG runs (retraining policy,
train, register) -> a new challenger version is registered in MLflow, tagged with the reasons.
"""

from __future__ import annotations

import time

from .conftest import land_csv, make_frame


def _wait_runs(cluster, dag_id, n, timeout=300):
    deadline = time.monotonic() + timeout
    runs = []
    while time.monotonic() < deadline:
        runs = [r for r in cluster.runs(dag_id) if r["state"] in ("success", "failed")]
        if len(runs) >= n:
            return runs
        time.sleep(1)
    raise TimeoutError(f"{dag_id}: {len(runs)} finished runs after {timeout}s; all: {cluster.runs(dag_id)}")


def test_drifted_batch_registers_a_challenger(airflow_cluster, system_data, system_model):
    cluster = airflow_cluster
    cluster.wait_dag("system_monitoring")
    cluster.wait_dag("system_training")
    time.sleep(5)  # let the triggerer pick up the watcher of the freshly parsed DAG
    landing = system_data / "landing"
    (landing / "batch=partial").mkdir(parents=True, exist_ok=True)
    (landing / "batch=partial" / "part-0.csv").write_text("x,z,c\n1,2,a\n")  # no _SUCCESS: never picked up
    started = time.monotonic()
    land_csv(landing, "batch_drifted.csv", make_frame(7, shift=3.0)[["x", "z", "c"]])

    (mon,) = _wait_runs(cluster, "system_monitoring", 1)
    assert mon["state"] == "success" and mon["run_type"] == "asset_triggered"
    verdicts = cluster.xcom("system_monitoring", mon["dag_run_id"], "check_new_batches")
    assert [v["batch_uri"] for v in verdicts] == [str(landing / "batch_drifted.csv")]
    assert verdicts[0]["dataset_drift"] is True

    (train,) = _wait_runs(cluster, "system_training", 1, timeout=400)
    elapsed = time.monotonic() - started
    tis = {ti["task_id"]: ti["state"] for ti in cluster.task_instances("system_training", train["dag_run_id"])}
    assert train["state"] == "success", (tis, cluster.tail("scheduler"))
    decision = cluster.xcom("system_training", train["dag_run_id"], "retraining_policy")
    assert decision["retrain"] is True and decision["kinds"] == ["drift"]
    assert decision["reasons"][0]["details"]["batch_uri"] == str(landing / "batch_drifted.csv")
    registered = cluster.xcom("system_training", train["dag_run_id"], "register")
    print(f"\nbatch landed -> challenger registered in {elapsed:.0f}s: {registered}")

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cluster.mlflow_uri, registry_uri=cluster.mlflow_uri)
    version = client.get_model_version_by_alias(system_model, "challenger")
    assert str(version.version) == str(registered["version"])
    run = client.get_run(version.run_id)
    assert run.data.tags.get("mlops.retraining_reasons") == "drift"

    # the same batch never fires twice: no second monitoring run
    time.sleep(4)
    assert len(cluster.runs("system_monitoring")) == 1
