"""Deferrable DriftSensors under the real triggerer: each defers, resumes for a batch, defers again..."""

from __future__ import annotations

from datetime import datetime

from _common import CYCLES, N_SENSORS, REFERENCE_PROFILE
from airflow.sdk import DAG

from mlops_provider.sensors.drift import DriftSensor

with DAG(
    dag_id="system_drift_sensor_cycles",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["system-test"],
):
    for i in range(N_SENSORS):
        # [START howto_drift_sensor]
        DriftSensor(
            task_id=f"sensor_{i}",
            location=f"{CYCLES}/landing_{i}/*.csv",
            reference=REFERENCE_PROFILE,
            poke_interval=0.5,
            timeout=900,
        )
        # [END howto_drift_sensor]
