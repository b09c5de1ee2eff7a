"""Validate batches with Great Expectations before training: a schema contract, a quarantine, lineage.

``example_data_validation`` writes a reference dataset, a good batch and a bad batch to
``$MLOPS_EXAMPLE_DATA_DIR`` (default ``/tmp/mlops-example/validation``) and derives a schema
contract from the reference (in a real project the contract is derived once, reviewed and committed).
The good batch is validated against the contract (``on_failure="fail"``); the bad batch against an
inline suite with ``on_failure="quarantine"``: it is copied to ``quarantine/`` with its report, its
training task is skipped and the DAG run carries on.  ``record_lineage`` shows how a training task
finds the validation run that passed on the same data digest.  The docs include the code between the
``[START ...]``/``[END ...]`` markers.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, task

from mlops_provider.operators.validation import LINEAGE_XCOM_KEY, DataValidationOperator

DATA_DIR = os.environ.get("MLOPS_EXAMPLE_DATA_DIR", "/tmp/mlops-example/validation")

with DAG(
    dag_id="example_data_validation",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlops", "example", "validation"],
    doc_md=__doc__,
) as dag:

    @task
    def prepare_data(data_dir: str) -> str:
        """Write example batches and derive a schema contract from the reference data."""
        import numpy as np
        import pandas as pd

        from mlops_provider.core.validation import derive_schema_suite

        os.makedirs(data_dir, exist_ok=True)
        rng = np.random.default_rng(7)

        def customers(n: int) -> pd.DataFrame:
            return pd.DataFrame(
                {
                    "customer_id": np.arange(n),
                    "tenure_months": rng.integers(1, 72, n),
                    "monthly_charges": rng.normal(70, 20, n).clip(5, 200).round(2),
                    "plan": rng.choice(["basic", "plus", "pro"], n),
                }
            )

        reference = customers(5_000)
        reference.to_parquet(f"{data_dir}/reference.parquet", index=False)
        customers(1_000).to_parquet(f"{data_dir}/good.parquet", index=False)
        bad = customers(1_000)
        bad.loc[:49, "monthly_charges"] = -1.0  # a broken upstream job
        bad.loc[:9, "plan"] = "legacy"
        bad.to_parquet(f"{data_dir}/bad.parquet", index=False)

        # [START howto_schema_contract]
        contract = derive_schema_suite(reference, tolerance=0.1, max_categories=20, name="customers", ranges=True)
        with open(f"{data_dir}/customers_contract.yaml", "w") as fh:
            fh.write(contract)  # review it and commit it next to the DAG
        # [END howto_schema_contract]
        return data_dir

    prepared = prepare_data(DATA_DIR)

    # [START howto_operator_data_validation]
    validate_good = DataValidationOperator(
        task_id="validate_good_batch",
        dataset=f"{DATA_DIR}/good.parquet",  # any dataset reference; read only when the task runs
        suite_path=f"{DATA_DIR}/customers_contract.yaml",  # schema contract or GX suite (JSON/YAML)
        on_failure="fail",  # raise DataValidationFailed: what failed, by how much, where the report is
    )
    # [END howto_operator_data_validation]

    # [START howto_operator_data_validation_quarantine]
    validate_bad = DataValidationOperator(
        task_id="validate_bad_batch",
        dataset=f"{DATA_DIR}/bad.parquet",
        expectations=[
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}},
            {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "customer_id"}},
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "monthly_charges", "min_value": 0, "max_value": 500},
            },
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "plan", "value_set": ["basic", "plus", "pro"]},
            },
        ],
        on_failure="quarantine",  # copy batch + report aside, skip this batch's downstream tasks
        quarantine_location=f"{DATA_DIR}/quarantine",
    )
    # [END howto_operator_data_validation_quarantine]

    @task
    def train_on_bad_batch() -> None:
        raise RuntimeError("never runs: the batch was quarantined")

    # [START howto_validation_lineage]
    @task
    def record_lineage(dataset: str, ti=None) -> str:
        """What a training task does: find the validation run that passed on the data it trains on."""
        from mlops_provider.core.datasets import load_dataset
        from mlops_provider.core.validation import matching_validation_run

        data = load_dataset(dataset)
        lineage = ti.xcom_pull(task_ids="validate_good_batch", key=LINEAGE_XCOM_KEY)
        run_id = matching_validation_run(lineage, data.digest)
        if run_id is None:
            raise ValueError(f"no passing validation of {dataset} with digest {data.digest}")
        # a training run would now set the tag  mlops.validation_run_id = run_id
        print(f"training data {data.digest[:12]} was validated by MLflow run {run_id}")
        return run_id

    # [END howto_validation_lineage]

    prepared >> [validate_good, validate_bad]
    validate_bad >> train_on_bad_batch()
    validate_good >> record_lineage(f"{DATA_DIR}/good.parquet")
