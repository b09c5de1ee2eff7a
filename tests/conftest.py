"""Session-wide test setup: an isolated AIRFLOW_HOME with a real metadata DB, and real MLflow servers.

Shared servers start once per session (see the fixtures below), never per test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Airflow reads its configuration at import time: isolate it before anything imports airflow.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlops-tests-"))
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_SESSION_DIR / 'airflow' / 'airflow.db'}"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "false"
for _key in [k for k in os.environ if k.startswith(("MLFLOW_TRACKING_", "AIRFLOW_CONN_"))]:
    os.environ.pop(_key)
(_SESSION_DIR / "airflow").mkdir(parents=True, exist_ok=True)

from tests.helpers.servers import MLFLOW_ADMIN_PASSWORD, MlflowServer  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def airflow_db(session_dir: Path) -> str:
    """A migrated Airflow metadata database (SQLite) for ``dag.test()``; created once per session."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture(scope="session")
def mlflow_server(session_dir: Path):
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend store, shared by the session."""
    server = MlflowServer(session_dir / "mlflow-server").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_auth_server(session_dir: Path):
    """A real ``mlflow server`` with MLflow's basic-auth app (user ``admin``, :data:`MLFLOW_ADMIN_PASSWORD`)."""
    server = MlflowServer(session_dir / "mlflow-auth", admin_password=MLFLOW_ADMIN_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def mlflow_conn_auth(mlflow_auth_server, monkeypatch) -> str:
    """Connection ``mlflow_default`` with basic auth to the session's auth server; returns the tracking URI."""
    conn = {"conn_type": "mlflow", "host": mlflow_auth_server.url, "login": "admin",
            "password": MLFLOW_ADMIN_PASSWORD, "extra": {"auth": "basic", "max_retries": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    return mlflow_auth_server.url


@pytest.fixture(scope="session")
def mlflow_sqlite_uri(session_dir: Path) -> str:
    """A ``sqlite:///`` MLflow store (no server), shared by the session."""
    return f"sqlite:///{session_dir / 'mlflow-local' / 'mlflow.db'}"


def _conn_json(uri: str, **extra) -> str:
    return json.dumps({"conn_type": "mlflow", "host": uri, "extra": extra})


@pytest.fixture
def mlflow_conn_server(mlflow_server, monkeypatch) -> str:
    """Connection ``mlflow_default`` pointing at the shared MLflow server; returns the tracking URI."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", _conn_json(mlflow_server.url, max_retries=2))
    return mlflow_server.url


@pytest.fixture
def mlflow_conn_sqlite(mlflow_sqlite_uri, session_dir, monkeypatch) -> str:
    """Connection ``mlflow_default`` pointing at the shared ``sqlite:///`` store; returns the URI."""
    (session_dir / "mlflow-local").mkdir(exist_ok=True)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", _conn_json(mlflow_sqlite_uri))
    monkeypatch.chdir(session_dir / "mlflow-local")  # local artifacts land beside the store
    return mlflow_sqlite_uri


@pytest.fixture(params=["server", "sqlite"])
def mlflow_conn(request) -> str:
    """Run a test against both a real ``mlflow server`` and a ``sqlite:///`` store."""
    return request.getfixturevalue(f"mlflow_conn_{request.param}")
