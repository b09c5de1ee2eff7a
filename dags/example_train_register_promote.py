"""Train, register, promote and batch-score a model; and roll the champion back.

``example_train_register_promote`` makes a small synthetic churn dataset (so it runs anywhere), trains
a classifier on it, registers the model as ``challenger``, promotes it to ``champion`` and scores a
batch with the champion.  ``example_rollback_champion`` points ``champion`` back at the previous
champion.  The docs include the operator calls between the ``[START ...]``/``[END ...]`` markers.

Both use the ``mlflow_default`` connection; the DAG params choose the model name and the data folder.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from mlops_provider.operators.prediction import BatchPredictOperator
from mlops_provider.operators.registry import (
    PromoteModelOperator,
    RegisterModelOperator,
    RollbackModelOperator,
)
from mlops_provider.operators.training import TrainModelOperator

PARAMS = {
    "model_name": Param("example-churn", type="string", description="Registered model name"),
    "data_dir": Param("/tmp/mlops-example", type="string", description="Folder for the example data"),
    "seed": Param(7, type="integer", description="Seed of the synthetic data"),
}

with DAG(
    dag_id="example_train_register_promote",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params=PARAMS,
    tags=["mlops", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def make_data(data_dir: str, seed: int) -> dict:
        """Write ``train.parquet`` (labelled) and ``score.parquet`` (unlabelled) to ``data_dir``."""
        import os

        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(int(seed))
        n = 600
        frame = pd.DataFrame(
            {
                "customer_id": np.arange(n),
                "tenure_months": rng.integers(1, 72, n),
                "monthly_charges": rng.normal(70, 20, n).round(2),
                "support_calls": rng.poisson(1.5, n),
            }
        )
        logit = -0.05 * frame["tenure_months"] + 0.03 * frame["monthly_charges"] + 0.5 * frame["support_calls"] - 1.5
        frame["churned"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        os.makedirs(data_dir, exist_ok=True)
        frame.iloc[:500].to_parquet(f"{data_dir}/train.parquet", index=False)
        frame.iloc[500:].drop(columns=["churned"]).to_parquet(f"{data_dir}/score.parquet", index=False)
        return {"train": f"{data_dir}/train.parquet", "score": f"{data_dir}/score.parquet"}

    data = make_data("{{ params.data_dir }}", "{{ params.seed }}")

    # [START howto_operator_train_model]
    train = TrainModelOperator(
        task_id="train",
        training_data="{{ params.data_dir }}/train.parquet",
        target="churned",
        exclude_columns=["customer_id"],
        estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        estimator_params={"max_iter": 50, "learning_rate": 0.1},
        holdout_fraction=0.25,
        seed=42,
        metrics=["accuracy", "f1", "roc_auc", "log_loss"],
        experiment_name="example-churn",
    )
    # [END howto_operator_train_model]

    # [START howto_operator_register_model]
    register = RegisterModelOperator(
        task_id="register",
        model_uri="{{ ti.xcom_pull(task_ids='train')['model_uri'] }}",
        run_id="{{ ti.xcom_pull(task_ids='train')['run_id'] }}",
        registered_model_name="{{ params.model_name }}",
        alias="challenger",
        tags={"dataset_digest": "{{ ti.xcom_pull(task_ids='train')['training_data']['digest'] }}"},
    )
    # [END howto_operator_register_model]

    # [START howto_operator_promote_model]
    promote = PromoteModelOperator(
        task_id="promote",
        registered_model_name="{{ params.model_name }}",
        version="{{ ti.xcom_pull(task_ids='register')['version'] }}",
        # In a level-2 pipeline the promotion gate supplies the champion it compared against:
        # expected_champion_version="{{ ti.xcom_pull(task_ids='gate')['champion_version'] }}",
        reason="example: roc_auc {{ ti.xcom_pull(task_ids='train')['metrics']['roc_auc'] }}",
    )
    # [END howto_operator_promote_model]

    # [START howto_operator_batch_predict]
    score = BatchPredictOperator(
        task_id="batch_predict",
        input_data="{{ params.data_dir }}/score.parquet",
        registered_model_name="{{ params.model_name }}",
        alias="champion",
        id_columns=["customer_id"],
        output_uri="{{ params.data_dir }}/predictions/{{ run_id | replace(':', '_') | replace('+', '_') }}.parquet",
        batch_rows=40,
        experiment_name="example-churn-predictions",
    )
    # [END howto_operator_batch_predict]

    data >> train >> register >> promote >> score


with DAG(
    dag_id="example_rollback_champion",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "model_name": PARAMS["model_name"],
        "reason": Param("manual rollback", type="string"),
    },
    tags=["mlops", "example"],
) as rollback_dag:
    # [START howto_operator_rollback_model]
    rollback = RollbackModelOperator(
        task_id="rollback",
        registered_model_name="{{ params.model_name }}",
        reason="{{ params.reason }} (by {{ run_id }})",
    )
    # [END howto_operator_rollback_model]
