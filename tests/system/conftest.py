"""System tests: one real Airflow deployment (api-server, scheduler, dag-processor, triggerer) per session.

The cluster has its own AIRFLOW_HOME, LocalExecutor and a fresh PostgreSQL database (SQLite when no
server runs on 127.0.0.1:5432), parses ``tests/system/dags`` and is stopped, process group by process
group, at the end of the session.  Tests here are marked ``system``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.helpers.airflow_cluster import AirflowCluster

DAGS = Path(__file__).parent / "dags"
ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.system)


def make_frame(seed: int, shift: float = 0.0, n: int = 300):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    z = rng.normal(10 + shift, 2.0, n)
    c = rng.choice(["a", "b", "c"] if not shift else ["c", "d"], n)
    label = ((x + 0.3 * (z - 10) + rng.normal(0, 0.5, n)) > 0).astype(int)
    return pd.DataFrame({"x": x, "z": z, "c": c, "label": label})


def land_csv(folder: Path, name: str, frame) -> Path:
    """Write under a hidden temporary name, then rename into place (the completion convention)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, folder / name)
    return folder / name


@pytest.fixture(scope="session")
def system_data(session_dir: Path) -> Path:
    from mlops_provider.core.drift import build_profile

    data = session_dir / "system-data"
    (data / "landing").mkdir(parents=True, exist_ok=True)  # NewBatchTrigger fails on a missing folder
    ref = make_frame(0, n=1000)
    build_profile(ref[["x", "z", "c"]]).save(data / "reference_profile.json")
    ref.to_csv(data / "train.csv", index=False)
    return data


@pytest.fixture(scope="session")
def system_model() -> str:
    return f"system-churn-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def airflow_cluster(session_dir: Path, system_data: Path, system_model: str):
    """The real Airflow components, started once per session; yields an :class:`AirflowCluster`."""
    mlflow_dir = session_dir / "system-mlflow"
    mlflow_dir.mkdir(exist_ok=True)
    conn = json.dumps({"conn_type": "mlflow", "host": f"sqlite:///{mlflow_dir / 'mlflow.db'}"})
    cluster = AirflowCluster(
        session_dir / "system-airflow",
        DAGS,
        extra_env={
            "MLOPS_SYSTEM_DATA": str(system_data),
            "MLOPS_SYSTEM_MODEL": system_model,
            "AIRFLOW_CONN_MLFLOW_DEFAULT": conn,
            "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        },
    )
    cluster.mlflow_uri = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def demo_story(session_dir: Path):
    """The ``make demo`` story, played once for the module that asks (test_demo_story.py); its Airflow
    stays up for that module's UI tests and is stopped after them, not kept through the other modules.

    Yields the story's result (timeline, ...) with ``result["stack"]``: the running deployment
    (scripts/airflow_local.py, simple auth manager with a login), stopped at the end of the session.
    """
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import demo

    # Not quiet: pytest captures the day-by-day log and shows it when the story fails.
    # connection testing on, as a deployment that wants the connection form's Test button enables it
    result = demo.run_story(session_dir / "demo-story", keep=False, quiet=False, hold=True,
                            env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"})
    try:
        yield result
    finally:
        result["stack"].stop()
