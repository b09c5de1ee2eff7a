"""The human-approval example DAG (``dags/example_gate_approval.py``) under the real scheduler and triggerer.

The DAG is the example file itself (``tests/system/dags/example_gate_approval.py`` is a symlink to it).
The test registers a champion and a better challenger in the cluster's MLflow store, triggers the DAG
through the REST API, waits for the approval request (Airflow 3's human-in-the-loop), answers it through
the same API the UI uses, and checks that the challenger became champion and that the decision was
recorded on the model version.
"""

from __future__ import annotations

import time
import uuid

DAG_ID = "example_gate_approval"


def _register_two_versions(tracking_uri: str, name: str, eval_path) -> None:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    n = 4000
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(4)})
    frame["churned"] = (frame["x0"] + 0.8 * frame["x1"] + rng.normal(scale=0.6, size=n) > 0).astype(int)
    frame["region"] = rng.choice(["north", "south", "east"], n)
    frame["segment"] = rng.choice(["retail", "business"], n)
    frame.iloc[3000:].to_parquet(eval_path)
    train = frame.iloc[:3000]

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    mlflow.set_experiment(f"approval-{name}")
    versions = []
    for features in (["x2", "x3"], ["x0", "x1", "x2", "x3"]):  # a weak champion, a strong challenger
        model = LogisticRegression().fit(train[features], train["churned"])
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", input_example=train[features].head(3))
        versions.append(mlflow.register_model(info.model_uri, name).version)
    client.set_registered_model_alias(name, "champion", versions[0])
    client.set_registered_model_alias(name, "challenger", versions[1])


def test_approval_dag_promotes_after_a_human_approves(airflow_cluster, session_dir):
    from mlflow import MlflowClient

    name = f"approval-{uuid.uuid4().hex[:6]}"
    eval_path = session_dir / f"{name}-eval.parquet"
    _register_two_versions(airflow_cluster.mlflow_uri, name, eval_path)

    airflow_cluster.wait_dag(DAG_ID)
    run_id = airflow_cluster.trigger(
        DAG_ID, {"model_name": name, "eval_dataset": str(eval_path), "target": "churned"}
    )
    hitl_path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approval/-1/hitlDetails"
    deadline = time.monotonic() + 300
    detail = None
    states: dict = {}
    while time.monotonic() < deadline:
        try:
            states = {ti["task_id"]: ti["state"] for ti in airflow_cluster.task_instances(DAG_ID, run_id)}
        except RuntimeError as err:  # a busy metadata DB can answer 500 while the run progresses
            print(f"retrying after: {err}")
            time.sleep(2)
            continue
        assert states.get("gate") not in ("failed", "upstream_failed", "skipped"), states
        if states.get("approval") in ("deferred", "awaiting_input"):  # 3.3 shows HITL waits as awaiting_input
            try:
                detail = airflow_cluster.api("GET", hitl_path)
                break
            except RuntimeError:
                pass
        time.sleep(2)
    assert detail is not None, f"no approval request appeared: {states}"
    # The approver sees the gate summary in the request.
    assert f"Promote {name} v2 to champion?" == detail["subject"]
    assert "BLESSED" in detail["body"].upper() and "| challenger | 2 |" in detail["body"]
    assert detail["options"] == ["Approve", "Reject"]

    # Airflow 3.3.2 race: a response that lands before the scheduler has processed the executor's
    # "success" event of the parked task process gets the re-queued task marked FAILED ("finished with
    # state success, but the task instance's state attribute is queued"). Seen here when answering
    # within half a second; a human never does, so answer once the scheduler has recorded the park.
    parked = f"TaskInstance Finished: dag_id={DAG_ID}, task_id=approval, run_id={run_id}"
    deadline = time.monotonic() + 120
    while parked not in airflow_cluster.log_path("scheduler").read_text(errors="replace"):
        assert time.monotonic() < deadline, f"the scheduler never recorded the parked approval task: {states}"
        time.sleep(1)
    airflow_cluster.api("PATCH", hitl_path, {"chosen_options": ["Approve"], "params_input": {}})
    state = airflow_cluster.wait_run(DAG_ID, run_id, timeout=300)
    states = airflow_cluster.task_states(DAG_ID, run_id)
    assert state == "success", states
    assert states == {"gate": "success", "approval": "success", "promote": "success", "record_decision": "success"}

    client = MlflowClient(tracking_uri=airflow_cluster.mlflow_uri)
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    assert str(client.get_model_version_by_alias(name, "previous-champion").version) == "1"
    tags = client.get_model_version(name, "2").tags
    assert tags["approval.decision"] == "approved"
    assert tags["approval.by"] not in ("", "timeout default")
    assert tags["gate.passed"] == "true"
