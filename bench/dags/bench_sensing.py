"""Sensing benchmark DAGs: N deferrable DriftSensors, and a few poke-mode ones for comparison."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from mlops_provider.sensors.drift import DriftSensor

DATA = os.environ.get("MLOPS_BENCH_DATA", "/tmp/mlops-bench-data")
N_DEFERRED = int(os.environ.get("MLOPS_BENCH_SENSORS", "100"))
N_POKE = int(os.environ.get("MLOPS_BENCH_POKE_SENSORS", "4"))

with DAG(dag_id="bench_sensing_deferrable", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    for i in range(N_DEFERRED):
        DriftSensor(
            task_id=f"sensor_{i:03}",
            location=f"{DATA}/deferred/landing_{i:03}/*.csv",
            reference=f"{DATA}/reference_profile.json",
            poke_interval=1.0,
            timeout=3600,
            deferrable=True,
        )

with DAG(dag_id="bench_sensing_poke", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    for i in range(N_POKE):
        DriftSensor(
            task_id=f"sensor_{i:03}",
            location=f"{DATA}/poke/landing_{i:03}/*.csv",
            reference=f"{DATA}/reference_profile.json",
            poke_interval=1.0,
            timeout=3600,
            deferrable=False,
            mode="poke",
        )
