"""The embedded stack: a real Airflow 3 deployment (SQLite metadata DB, LocalExecutor) and a SQLite MLflow
store under one working folder, for ``make demo`` and ``mlops-pipelines run`` (:mod:`mlops_provider.cli`).

Standard library only at import time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Imported once by the LocalExecutor's forkserver; every task process inherits them (see AirflowLocal).
#: skops.io first, before Airflow is loaded: its import scans sys.modules for scipy's ufuncs, and Airflow's
#: deprecated-attribute shims would turn that scan into >1000 logged warnings in every model-loading task.
PRELOAD = (
    "pandas", "pyarrow.parquet", "scipy.stats", "sklearn.compose", "sklearn.linear_model", "sklearn.pipeline",
    "sklearn.preprocessing", "sklearn.metrics", "skops.io", "mlflow", "mlflow.sklearn", "mlflow.pyfunc",
    "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store",
    "great_expectations", "airflow.executors.local_executor", "airflow.sdk.execution_time.task_runner",
    "mlops_provider.core.datasets", "mlops_provider.core.drift", "mlops_provider.core.metrics",
    "mlops_provider.core.training", "mlops_provider.core.validation", "mlops_provider.core.registry",
    "mlops_provider.core.gate", "mlops_provider.core.performance", "mlops_provider.core.training_window",
    "mlops_provider.pipelines",
)


def mlflow_store_uri(workdir: str | Path) -> str:
    """The SQLite MLflow store of an embedded stack: ``sqlite:///<workdir>/mlflow/mlflow.db``."""
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow' / 'mlflow.db'}"


def stack_environment(mlflow_uri: str, ui_url: str | None = None, parallelism: int = 3,
                      **extra: str) -> dict[str, str]:
    """
    The environment of every component of an embedded stack: the ``mlflow_default`` connection (with the
    MLflow UI's address when one runs), the parallelism, and ``extra`` (e.g. ``MLOPS_DATA_DIR``).
    """
    connection: dict[str, Any] = {"conn_type": "mlflow", "host": mlflow_uri}
    if ui_url:
        connection["extra"] = {"ui_url": ui_url}
    return {"AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(connection), "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            **extra}


def embedded_stack(workdir: str | Path, dags_folder: str | Path, env: dict[str, str] | None = None,
                   port: int = 8080):
    """
    An :class:`~mlops_provider.local.airflow.AirflowLocal` under ``workdir/airflow`` whose tasks run in
    ``workdir/mlflow`` (the SQLite MLflow store keeps its artifacts beside its database), with the
    forkserver preloading :data:`PRELOAD`.  Call ``init()`` then ``start()``; ``stop()`` ends everything.

    :param port: the api-server's port when it is free, else any free port (``0``: any free port).
    """
    from mlops_provider.local.airflow import AirflowLocal

    workdir = Path(workdir).resolve()
    (workdir / "mlflow").mkdir(parents=True, exist_ok=True)
    return AirflowLocal(home=workdir / "airflow", dags_folder=Path(dags_folder), cwd=workdir / "mlflow",
                        preload=PRELOAD, env=env or {}, port=port)
