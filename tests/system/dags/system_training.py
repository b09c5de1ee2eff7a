"""Training DAG scheduled on drift OR performance decay: policy -> train -> register a challenger."""

from __future__ import annotations

from datetime import timedelta

from _common import DATA, MODEL
from airflow.sdk import DAG, Asset

from mlops_provider.operators.registry import RegisterModelOperator
from mlops_provider.operators.retraining import RetrainingPolicyOperator
from mlops_provider.operators.training import TrainModelOperator

# [START howto_retraining_policy]
drift = Asset(f"mlops://{MODEL}/drift")
decay = Asset(f"mlops://{MODEL}/performance_decay")

with DAG(dag_id="system_training", schedule=(drift | decay), catchup=False, max_active_runs=1,
         tags=["system-test"]):
    policy = RetrainingPolicyOperator(
        task_id="retraining_policy",
        model_name=MODEL,
        cooldown=timedelta(minutes=30),
        ledger_path=f"{DATA}/retraining_ledger.sqlite3",
    )
    train = TrainModelOperator(
        task_id="train",
        training_data=f"{DATA}/train.csv",
        target="label",
        estimator="sklearn.linear_model.LogisticRegression",
        estimator_params={"max_iter": 200},
        exclude_columns=["c"],
        experiment_name=f"{MODEL}-system",
        tags={"mlops.retraining_reasons": "{{ ti.xcom_pull('retraining_policy', key='decision')['kinds'] | join(',') }}"},
    )
    register = RegisterModelOperator(
        task_id="register",
        model_uri="{{ ti.xcom_pull('train')['model_uri'] }}",
        registered_model_name=MODEL,
        alias="challenger",
    )
    policy >> train >> register
# [END howto_retraining_policy]
