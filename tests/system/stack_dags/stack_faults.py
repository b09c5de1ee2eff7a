"""DAGs the stack fault tests (tests/system/test_stack_twin.py) run on the process twin.

``stack_fault_loop``: make data -> train -> register (challenger) -> promote (champion), every task
with retries, on the provider's operators.  ``hold_after_register`` makes the first try of
``register`` write a marker (with its process group) and sleep after the version is registered, so a
test can kill the Celery worker at exactly that point and check the retry does not duplicate it.

``stack_promote``: one compare-and-set promotion (``expected`` champion version) in the pool
``mlops_promotions``; two runs at once race for the champion alias.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, task

from mlops_provider.operators.registry import PromoteModelOperator, RegisterModelOperator
from mlops_provider.operators.training import TrainModelOperator

RETRIES = {"retries": 6, "retry_delay": timedelta(seconds=8)}


class HoldingRegisterOperator(RegisterModelOperator):
    """RegisterModelOperator that, on its first try, holds after registering (for a worker kill)."""

    def execute(self, context):
        result = super().execute(context)
        hold = int(context["params"].get("hold_after_register") or 0)
        marker = context["params"].get("marker") or ""
        if hold and marker and context["ti"].try_number == 1:
            with open(marker, "w") as fh:
                json.dump({"pgid": os.getpgid(0), "pid": os.getpid(), "version": result["version"]}, fh)
            time.sleep(hold)
        return result


with DAG(
    dag_id="stack_fault_loop",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "model_name": Param("stack-fault", type="string"),
        "data_dir": Param("/tmp/stack-fault", type="string"),
        "hold_after_register": Param(0, type="integer"),
        "marker": Param("", type="string"),
    },
    default_args=RETRIES,
    tags=["stack-test"],
):

    @task
    def make_data(data_dir: str) -> str:
        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(3)
        n = 400
        frame = pd.DataFrame({"x": rng.normal(0, 1, n), "z": rng.normal(5, 2, n)})
        frame["label"] = ((frame["x"] + 0.2 * frame["z"] + rng.normal(0, 0.5, n)) > 1).astype(int)
        os.makedirs(data_dir, exist_ok=True)
        frame.to_csv(f"{data_dir}/train.csv", index=False)
        return f"{data_dir}/train.csv"

    train = TrainModelOperator(
        task_id="train",
        training_data="{{ ti.xcom_pull(task_ids='make_data') }}",
        target="label",
        estimator="sklearn.linear_model.LogisticRegression",
        estimator_params={"max_iter": 200},
        experiment_name="stack-faults",
    )
    register = HoldingRegisterOperator(
        task_id="register",
        model_uri="{{ ti.xcom_pull(task_ids='train')['model_uri'] }}",
        run_id="{{ ti.xcom_pull(task_ids='train')['run_id'] }}",
        registered_model_name="{{ params.model_name }}",
        alias="challenger",
    )
    promote = PromoteModelOperator(
        task_id="promote",
        registered_model_name="{{ params.model_name }}",
        version="{{ ti.xcom_pull(task_ids='register')['version'] }}",
        expected_champion_version="none",
        reason="stack fault test",
    )
    make_data("{{ params.data_dir }}") >> train >> register >> promote


with DAG(
    dag_id="stack_promote",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "model_name": Param("stack-race", type="string"),
        "version": Param("1", type="string"),
        "expected": Param("none", type="string"),
    },
    tags=["stack-test"],
):
    PromoteModelOperator(
        task_id="promote",
        registered_model_name="{{ params.model_name }}",
        version="{{ params.version }}",
        expected_champion_version="{{ params.expected }}",
        reason="race test {{ run_id }}",
        pool="mlops_promotions",
        retries=2,
        retry_delay=timedelta(seconds=2),
    )
