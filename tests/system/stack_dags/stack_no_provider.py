"""A DAG for the "worker that cannot import the provider" tests (tests/system/test_stack_twin.py).

It imports the provider at the top, as every DAG of the project does.  Its one task goes to the Celery
queue ``no_provider``, which only the test's extra worker consumes: a worker started from an
environment without the provider (every package of the project's virtualenv but the provider).
The twin's own dag-processor has the provider, so the DAG is parsed and the task is scheduled;
the test shows what that worker does with it.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from mlops_provider.hooks.mlflow import MlflowHook

with DAG(
    dag_id="stack_no_provider",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["stack-test"],
):

    @task(queue="no_provider", retries=0)
    def check_mlflow() -> dict:
        ok, message = MlflowHook().test_connection()
        return {"ok": ok, "message": message}

    check_mlflow()
