"""The smallest useful DAG: log an MLflow run through the ``mlflow_default`` connection.

It is the first DAG ``make demo`` runs, and a template for tasks that need MLflow directly.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

# [START howto_hook_mlflow]
from mlops_provider.hooks.mlflow import MlflowHook


@dag(
    dag_id="example_mlflow_hook",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlops", "example"],
)
def example_mlflow_hook():
    @task
    def log_hello_run(**context) -> dict:
        import mlflow

        hook = MlflowHook(mlflow_conn_id="mlflow_default")
        with hook.mlflow_env():
            mlflow.set_experiment("airflow-provider-mlops-hello")
            with mlflow.start_run(run_name=f"hello-{context['run_id']}") as run:
                mlflow.log_param("dag_id", context["dag"].dag_id)
                mlflow.log_metric("answer", 42.0)
                mlflow.set_tag("airflow.run_id", context["run_id"])
        return {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "url": hook.run_url(run.info.run_id, run.info.experiment_id),
        }

    @task
    def check_run(summary: dict) -> None:
        client = MlflowHook().get_client()
        run = client.get_run(summary["run_id"])
        assert run.data.metrics["answer"] == 42.0, run.data.metrics
        print(f"MLflow run {summary['run_id']} logged: {summary['url'] or 'no UI for this store'}")

    check_run(log_hello_run())


# [END howto_hook_mlflow]

example_mlflow_hook()
