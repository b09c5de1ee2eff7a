"""Check a batch for drift against the champion's reference profile; retrain when it drifts.

``example_drift_check`` compares the batch at ``params.current`` with the reference profile of
``models:/<model>@champion`` (stored on the champion's run at ``drift/profile.bin``; built from the
training-feature sample ``reference/features.parquet`` on first use).  Drift metrics go to an MLflow
monitoring run; when drift is found the task logs a warning (``on_failure="warn"``), succeeds and emits
an Asset event on ``mlops://<model>/drift``, which schedules ``example_retrain_on_drift``.  The
``drift_found`` short-circuit lets ``notify_drift`` run only when there is drift.  ``example_drift_gate``
shows ``on_failure="skip"``: a drifted batch goes no further.  The docs include the code between the
``[START ...]``/``[END ...]`` markers.

The model name comes from ``EXAMPLE_DRIFT_MODEL`` (default ``example-churn``, the model of
``example_train_register_promote``): it names the Asset, so it is fixed when the DAG is parsed.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Asset, Param, task

from mlops_provider.operators.drift import DriftCheckOperator, drift_asset_uri

MODEL_NAME = os.environ.get("EXAMPLE_DRIFT_MODEL", "example-churn")

with DAG(
    dag_id="example_drift_check",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "current": Param("/tmp/mlops-example/score.parquet", type="string", description="Batch to check")
    },
    tags=["mlops", "example", "drift"],
    doc_md=__doc__,
) as dag:
    # [START howto_operator_drift_check]
    check = DriftCheckOperator(
        task_id="check_drift",
        reference=f"models:/{MODEL_NAME}@champion",  # the champion's stored reference profile
        current="{{ params.current }}",  # any dataset reference: path, URI, {"conn_id", "sql"}
        on_failure="warn",  # on drift: warn, record, emit the drift event, succeed ("fail", "skip")
        html_report=True,  # Evidently's HTML report of a sample, linked as "Drift report"
        report_sample_rows=5_000,
    )
    # [END howto_operator_drift_check]

    # [START howto_run_only_on_drift]
    @task.short_circuit
    def drift_found(summary: dict) -> bool:
        """Lets the downstream tasks run only when the batch drifted."""
        return summary["dataset_drift"]

    @task
    def notify_drift(summary: dict) -> list[str]:
        print(f"{summary['number_of_drifted_columns']} columns drifted: {summary['drifted_columns']}")
        return summary["drifted_columns"]

    drift_found(check.output) >> notify_drift(check.output)
    # [END howto_run_only_on_drift]


with DAG(
    dag_id="example_drift_gate",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "current": Param("/tmp/mlops-example/score.parquet", type="string", description="Batch to check")
    },
    tags=["mlops", "example", "drift"],
) as gate_dag:
    # [START howto_drift_skip]
    gate = DriftCheckOperator(
        task_id="check_drift",
        reference=f"models:/{MODEL_NAME}@champion",
        current="{{ params.current }}",
        on_failure="skip",  # a drifted batch is recorded and emits the event, but goes no further
    )

    @task
    def use_batch(summary: dict) -> int:
        """Runs only on a batch without drift."""
        return summary["current_rows"]

    use_batch(gate.output)
    # [END howto_drift_skip]


# [START howto_drift_asset_schedule]
with DAG(
    dag_id="example_retrain_on_drift",
    schedule=[Asset(drift_asset_uri(MODEL_NAME))],  # mlops://<model>/drift, emitted only on drift
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlops", "example", "drift"],
) as retrain_dag:

    @task
    def read_drift_event(**context) -> dict:
        """The drift summary travels in the Asset event's ``extra``."""
        events = context["triggering_asset_events"][Asset(drift_asset_uri(MODEL_NAME))]
        return dict(events[-1].extra) if events else {}

    read_drift_event()
# [END howto_drift_asset_schedule]
