"""DAGs used by tests/unit/test_training.py (``dag.test()`` needs them in a DAG bundle).

Paths and names come from ``dag_run.conf`` so each test run uses its own data and experiment.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from mlops_provider.operators.prediction import BatchPredictOperator
from mlops_provider.operators.training import TrainModelOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG("test_train_regression_and_score", schedule=None, start_date=START, catchup=False) as regression_dag:
    train = TrainModelOperator(
        task_id="train",
        training_data={"uri": "file://{{ dag_run.conf['data_dir'] }}/train.csv"},
        target="y",
        exclude_columns="id",
        time_column="ts",
        estimator="sklearn.linear_model.Ridge",
        estimator_params='{"alpha": {{ 0.1 }}}',
        holdout_fraction="{{ 0.25 }}",
        cv_folds=3,
        reference_sample_rows=50,
        experiment_name="{{ dag_run.conf['experiment'] }}",
    )
    score = BatchPredictOperator(
        task_id="score",
        input_data="{{ dag_run.conf['data_dir'] }}/score.parquet",
        model_uri="{{ ti.xcom_pull(task_ids='train')['model_uri'] }}",
        id_columns=["id"],
        output_uri="{{ dag_run.conf['data_dir'] }}/out/predictions.parquet",
        batch_rows=50,
        experiment_name="{{ dag_run.conf['experiment'] }}",
    )
    train >> score

with DAG("test_train_bad_inputs", schedule=None, start_date=START, catchup=False) as bad_dag:
    common = {
        "training_data": "{{ dag_run.conf['data_dir'] }}/train.parquet",
        "experiment_name": "{{ dag_run.conf['experiment'] }}",
        "retries": 0,
    }
    TrainModelOperator(task_id="unknown_estimator", target="y", estimator="sklearn.nope.Model", **common)
    TrainModelOperator(
        task_id="missing_target", target="label", estimator="sklearn.linear_model.LogisticRegression", **common
    )
    TrainModelOperator(
        task_id="rejected_params",
        target="y",
        estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        estimator_params={"max_iter": -1},
        **common,
    )
    TrainModelOperator(
        task_id="missing_data",
        target="y",
        estimator="sklearn.linear_model.LogisticRegression",
        **{**common, "training_data": "{{ dag_run.conf['data_dir'] }}/missing.parquet"},
    )
    BatchPredictOperator(
        task_id="missing_alias",
        input_data="{{ dag_run.conf['data_dir'] }}/train.parquet",
        registered_model_name="{{ dag_run.conf['model_name'] }}",
        output_uri="{{ dag_run.conf['data_dir'] }}/never.parquet",
        retries=0,
    )

from mlops_provider.operators.validation import DataValidationOperator  # noqa: E402

with DAG("test_validation_lineage", schedule=None, start_date=START, catchup=False) as lineage_dag:
    validate = DataValidationOperator(
        task_id="validate",
        dataset="{{ dag_run.conf['data_dir'] }}/train.parquet",
        expectations=[
            {"type": "expect_column_to_exist", "kwargs": {"column": "y"}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        ],
        experiment_name="{{ dag_run.conf['experiment'] }}",
    )
    train_validated = TrainModelOperator(
        task_id="train",
        training_data="{{ dag_run.conf['data_dir'] }}/train.parquet",
        target="y",
        estimator="sklearn.linear_model.LogisticRegression",
        experiment_name="{{ dag_run.conf['experiment'] }}",
    )
    train_other_data = TrainModelOperator(
        task_id="train_other_data",
        training_data="{{ dag_run.conf['data_dir'] }}/other.parquet",
        target="y",
        estimator="sklearn.linear_model.LogisticRegression",
        experiment_name="{{ dag_run.conf['experiment'] }}",
    )
    validate >> [train_validated, train_other_data]


# ---------------------------------------------------------------------- issue 13: no silent answers

def make_logistic_regression(C: float = 1.0):
    """A callable estimator (Airflow must not call it as a template field)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C)


with DAG("test_train_string_labels", schedule=None, start_date=START, catchup=False) as string_labels_dag:
    TrainModelOperator(
        task_id="train",
        training_data="{{ dag_run.conf['data_dir'] }}/train.parquet",
        target="y",
        estimator=make_logistic_regression,
        estimator_params={"C": 0.5},
        positive_label="{{ dag_run.conf['positive_label'] }}",
        metrics=["accuracy", "f1", "precision", "recall", "roc_auc", "average_precision"],
        experiment_name="{{ dag_run.conf['experiment'] }}",
        retries=0,
    )

with DAG("test_train_recording", schedule=None, start_date=START, catchup=False) as recording_dag:
    TrainModelOperator(
        task_id="train",
        training_data="{{ dag_run.conf['data_dir'] }}/train.parquet",
        target="y",
        estimator="tests.helpers.estimators.RecordingClassifier",
        estimator_params={
            "kill_file": "{{ dag_run.conf.get('kill_file', '') }}",
            "fail_file": "{{ dag_run.conf.get('fail_file', '') }}",
        },
        experiment_name="{{ dag_run.conf['experiment'] }}",
        retries=1,
        retry_delay=0,
    )
