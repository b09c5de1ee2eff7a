"""The first example DAG, run with ``dag.test()`` on a real Airflow metadata DB against real MLflow."""

from __future__ import annotations

from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_example_mlflow_hook_dag_logs_a_run(airflow_db, mlflow_conn):
    from mlflow import MlflowClient

    bag = DagBag(dag_folder=str(DAGS / "example_mlflow_hook.py"))
    assert bag.import_errors == {}
    dag = bag.dags["example_mlflow_hook"]
    dag_run = dag.test()
    assert dag_run.state == "success", dag_run.state

    client = MlflowClient(tracking_uri=mlflow_conn)
    exp = client.get_experiment_by_name("airflow-provider-mlops-hello")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`airflow.run_id` = '{dag_run.run_id}'")
    assert len(runs) == 1 and runs[0].data.metrics["answer"] == 42.0
