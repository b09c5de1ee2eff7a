"""A real Airflow 3 deployment in subprocesses: api-server, scheduler, dag-processor, triggerer.

Isolated ``AIRFLOW_HOME``, LocalExecutor, a fresh PostgreSQL database (tests/helpers/postgres.py) or
SQLite when no server is available.  Every component runs in its own process group and is stopped
with SIGTERM then SIGKILL of the group, so no ``airflow`` process outlives the cluster.

The api-server is needed as well: in Airflow 3 the task processes talk to the Execution API.
Used by ``tests/system/conftest.py`` and by ``bench/sensing.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers.servers import VENV_BIN, free_port, stop_process_group, wait_http

COMPONENTS = ("scheduler", "dag-processor", "triggerer")


class AirflowCluster:
    """
    :param home: AIRFLOW_HOME (created).
    :param dags_folder: the DAGs the dag-processor parses.
    :param use_postgres: a fresh PostgreSQL database (dropped on stop) instead of SQLite.
    :param extra_env: more environment for every component (connections, config).
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        *,
        use_postgres: bool | None = None,
        extra_env: dict[str, str] | None = None,
        parallelism: int = 16,
    ) -> None:
        self.home = Path(home)
        self.dags_folder = Path(dags_folder)
        self.extra_env = extra_env or {}
        self.parallelism = parallelism
        if use_postgres is None:
            from tests.helpers.postgres import postgres_available

            use_postgres = postgres_available()
        self.use_postgres = use_postgres
        self.db_name: str | None = None
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        if self.use_postgres:
            from tests.helpers.postgres import sqlalchemy_url

            db = sqlalchemy_url(self.db_name or "")
        else:
            db = f"sqlite:///{self.home / 'airflow.db'}"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": "system-tests-only-jwt-secret-0123456789abcdef",
                "AIRFLOW__API__SECRET_KEY": "system-tests-only-secret",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "GIT_PYTHON_REFRESH": "quiet",
                "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "airflow"), *args], env=self.env(), capture_output=True, text=True, timeout=timeout,
            check=False,
        )

    def start(self, timeout: float = 240) -> AirflowCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        if self.use_postgres:
            from tests.helpers.postgres import create_database

            self.db_name = create_database("mlops_system")
        proc = self._run("db", "migrate")
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        try:
            self._spawn("api-server", "api-server", "--port", str(self.port), "--host", "127.0.0.1")
            for name in COMPONENTS:
                self._spawn(name, name)
            wait_http(f"{self.url}/api/v2/monitor/health", timeout=timeout, proc=self.procs["api-server"],
                      log=self.log_path("api-server"))
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def log_path(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.log_path(name), "ab")  # noqa: SIM115 - owned by the process
        self.procs[name] = subprocess.Popen(
            [str(VENV_BIN / "airflow"), *args], stdout=log, stderr=subprocess.STDOUT, env=self.env(),
            cwd=self.home, start_new_session=True,
        )

    def health(self) -> dict[str, Any]:
        return self.api("GET", "/api/v2/monitor/health")

    def wait_healthy(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            try:
                last = self.health()
                if all(last.get(k.replace("-", "_"), {}).get("status") == "healthy" for k in COMPONENTS):
                    return
            except Exception as err:  # noqa: BLE001 - not up yet
                last = err
            time.sleep(1)
        raise TimeoutError(f"Airflow not healthy after {timeout}s: {last}")

    def tail(self, name: str, chars: int = 4000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # ------------------------------------------------------------------ REST API (all-admins mode)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"{method} {path} -> {err.code}: {err.read().decode()[:500]}") from None
        return json.loads(text) if text else None

    def wait_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                dag = self.api("GET", f"/api/v2/dags/{dag_id}")
                if dag and not dag.get("is_paused"):
                    return
                if dag and dag.get("is_paused"):
                    self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            except RuntimeError:
                pass
            time.sleep(1)
        import_errors = self.api("GET", "/api/v2/importErrors")
        raise TimeoutError(f"DAG {dag_id} not parsed within {timeout}s; import errors: {import_errors}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=run_after")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}?deserialize=true"
        )
        return entry.get("value")

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300, poll: float = 1.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(poll)
        raise TimeoutError(f"{dag_id}/{run_id} still {run.get('state')} after {timeout}s")

    def audit_log(self, event: str) -> list[dict[str, Any]]:
        from urllib.parse import quote

        return self.api("GET", f"/api/v2/eventLogs?event={quote(event)}&limit=1000")["event_logs"]

    def stop_component(self, name: str) -> None:
        """Stop one component: SIGTERM, then SIGKILL of its process group."""
        stop_process_group(self.procs.pop(name))

    def start_component(self, name: str) -> None:
        self._spawn(name, name)
        self.wait_healthy()

    # ------------------------------------------------------------------ stop

    def stop(self) -> None:
        # triggerer and scheduler first (they start work), the api-server last (tasks report to it)
        for name in ("triggerer", "scheduler", "dag-processor", "api-server"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process_group(proc)
        if self.use_postgres and self.db_name:
            from tests.helpers.postgres import drop_database

            try:
                drop_database(self.db_name)
            except Exception:  # noqa: BLE001 - best effort
                pass
            self.db_name = None

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
