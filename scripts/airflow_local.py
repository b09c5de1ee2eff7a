"""Run the real Airflow 3 components (api-server, scheduler, dag-processor, triggerer) as local processes.

Used by ``make demo``.  Everything lives under one folder (``AIRFLOW_HOME``, SQLite metadata DB,
logs); :meth:`AirflowLocal.stop` terminates each component's whole process group, so nothing is
left running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]


class AirflowLocal:
    """An Airflow 3 deployment made of local processes on a SQLite metadata DB and LocalExecutor."""

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        env: dict[str, str] | None = None,
        port: int = 8080,
        cwd: Path | None = None,
        preload: tuple[str, ...] = (),
    ) -> None:
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.port = free_port(port)
        self.cwd = Path(cwd or home).resolve()
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # The scheduler loop and asset-triggered runs: no idle second between loops.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
            "AIRFLOW__API_AUTH__JWT_SECRET": "local-demo-jwt-secret-" + "x" * 48,
            "AIRFLOW__API__SECRET_KEY": "local-demo-secret-key",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Own log-server ports, so two local deployments (or a test run) can coexist.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port(8793)),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port(8794)),
        }
        if preload:
            # LocalExecutor workers start from a forkserver that imported ``preload`` once; every task
            # process is forked from a worker, so it inherits pandas/scikit-learn/MLflow/GX instead of
            # importing them again (3-6 s per task on a small machine).  Airflow 3.3 settings.
            self.env["AIRFLOW__SCHEDULER__MP_START_METHOD"] = "forkserver"
            self.env["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] = ",".join(preload)
        if env:
            self.env.update(env)

    # ------------------------------------------------------------------ lifecycle

    def airflow(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "airflow"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            cwd=self.cwd,
        )

    def init(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        self.airflow("db", "migrate")

    def start(self, components: tuple[str, ...] = COMPONENTS) -> None:
        for name in components:
            log = open(self.home / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
            self.procs[name] = subprocess.Popen(
                [str(BIN / "airflow"), name],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.wait_healthy()

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()

    def __enter__(self) -> AirflowLocal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ REST API

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.home / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=3) as resp:
                    health = json.load(resp)
                if health.get("scheduler", {}).get("status") == "healthy":
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow at {self.url} not healthy within {timeout}s")

    @property
    def password(self) -> str:
        """The admin password the simple auth manager generated on first start."""
        path = self.home / "simple_auth_manager_passwords.json.generated"
        return json.loads(path.read_text())["admin"]

    def token(self) -> str:
        if getattr(self, "_token", None):
            return self._token
        req = urllib.request.Request(
            f"{self.url}/auth/token",
            data=json.dumps({"username": "admin", "password": self.password}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            self._token = json.load(resp)["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None, attempts: int = 3) -> dict:
        """Call the REST API; a slow SQLite-backed server gets a few patient attempts on read timeouts."""
        for attempt in range(attempts):
            try:
                return self._api_once(method, path, body)
            except (TimeoutError, urllib.error.URLError) as err:
                if isinstance(err, urllib.error.HTTPError) or attempt == attempts - 1 or method != "GET":
                    raise
                time.sleep(2)
        raise AssertionError("unreachable")

    def _api_once(self, method: str, path: str, body: dict | None) -> dict:
        req = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token()}"},
            method=method,
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)

    def wait_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed ``dag_id``; fail fast on its import error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                self.api("GET", f"/dags/{dag_id}")
                return
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    raise
            errors = self.api("GET", "/importErrors").get("import_errors", [])
            if errors:
                raise RuntimeError(f"DAG import errors: {errors}")
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} not parsed within {timeout}s")

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 0.5) -> str:
        deadline = time.monotonic() + timeout
        state = "queued"
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(poll)
        raise TimeoutError(f"run {run_id} of {dag_id} still {state} after {timeout}s")

    def wait_task(self, dag_id: str, run_id: str, task_id: str, timeout: float = 600, poll: float = 0.5) -> str:
        """Wait until ``task_id`` of a run is finished (any terminal state, including skipped); return it."""
        deadline = time.monotonic() + timeout
        terminal = ("success", "failed", "skipped", "upstream_failed", "removed")
        state = None
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.task_states(dag_id, run_id).get(task_id)
            if state in terminal:
                return state
            if self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"] in ("success", "failed"):
                return str(state)
            time.sleep(poll)
        raise TimeoutError(f"{task_id} of {run_id} ({dag_id}) still {state} after {timeout}s")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns?order_by=start_date&limit=100")["dag_runs"]

    # ------------------------------------------------------------------ helpers for event-driven runs

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> object:
        """An XCom value (``None`` when the task pushed none, e.g. it was skipped)."""
        try:
            entry = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise
        value = entry.get("value")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                import ast

                try:
                    return ast.literal_eval(value)
                except (ValueError, SyntaxError):
                    return value
        return value

    def run_ids(self, dag_id: str) -> list[str]:
        return [run["dag_run_id"] for run in self.runs(dag_id)]

    def wait_new_run(self, dag_id: str, known: list[str], timeout: float = 120) -> str | None:
        """The id of a run of ``dag_id`` not in ``known`` (e.g. created by an Asset event), or ``None``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            new = [r for r in self.run_ids(dag_id) if r not in known]
            if new:
                return new[0]
            time.sleep(0.5)
        return None
