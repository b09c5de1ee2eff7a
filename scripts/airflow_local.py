"""The local Airflow launcher moved into the package: :mod:`mlops_provider.local.airflow` (kept importable here)."""

from mlops_provider.local.airflow import (  # noqa: F401
    BIN,
    COMPONENTS,
    AirflowApiError,
    AirflowLocal,
    free_port,
    stop_process_groups,
)
