"""A validation that fails (``on_failure="fail"``) on the batch named by ``MLOPS_LINEAGE_BAD_BATCH``.

Used by tests/helpers/lineage_run.py, which registers this folder as a second DAG bundle (``dag.test()``
re-parses the bundles to find the DAG).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from mlops_provider.operators.validation import DataValidationOperator

with DAG("lineage_failing_validation", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    DataValidationOperator(
        task_id="validate_broken_batch",
        dataset=os.environ.get("MLOPS_LINEAGE_BAD_BATCH", "/nonexistent.parquet"),
        suite_path=os.environ.get("MLOPS_LINEAGE_CONTRACT", "/nonexistent.yaml"),
        on_failure="fail",
        experiment_name="lineage-validation",
    )
