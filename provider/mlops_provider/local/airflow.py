"""Run the real Airflow 3 components (api-server, scheduler, dag-processor, triggerer) as local processes.

The one launcher of the project: ``mlops-pipelines run`` (:mod:`mlops_provider.cli`) and ``make demo``
(scripts/demo.py) use it as it is, the system tests and ``bench/sensing.py`` through
``tests/helpers/airflow_cluster.py`` (a fresh PostgreSQL database, an all-admins API).  Standard library only.  Everything lives under one folder (``AIRFLOW_HOME``, metadata DB when SQLite,
logs); every component runs in its own process group, and :meth:`AirflowLocal.stop` ends each group
(SIGTERM, then SIGKILL), so nothing is left running.
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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Components that report to ``/api/v2/monitor/health``, by their key there.
_HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


def free_port(preferred: int = 0) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port (``0``: any)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_groups(procs: Iterable[subprocess.Popen], timeout: float = 30.0) -> None:
    """SIGTERM every process group at once, wait up to ``timeout``, then SIGKILL what is left: no orphans."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children of a component that exited on SIGTERM, too
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class AirflowApiError(RuntimeError):
    """An HTTP error answer of the REST API, with its status ``code`` and the start of its body."""

    def __init__(self, method: str, path: str, code: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {code}: {body[:500]}")
        self.code = code


class AirflowLocal:
    """
    An Airflow 3 deployment made of local processes and LocalExecutor.

    :param home: ``AIRFLOW_HOME`` (created); component logs go to ``home/logs/<component>.log``.
    :param dags_folder: the DAGs the dag-processor parses.
    :param env: more environment for every component (connections, configuration); wins over the defaults.
    :param port: preferred api-server port (``0``: any free port).
    :param cwd: working directory of the components (default ``home``).
    :param preload: modules the LocalExecutor's forkserver imports once (see below).
    :param all_admins: the simple auth manager's all-admins mode (no login, for tests); otherwise user
        ``admin`` with a generated password and token-authenticated API calls.
    :param parallelism: ``[core] parallelism``.

    The metadata database is SQLite in ``home`` unless ``env`` sets ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``.
    ``AIRFLOW__*`` and ``AIRFLOW_CONN_*`` variables of the calling process are not passed on, so the
    deployment is the same whatever the caller's environment holds.
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        env: dict[str, str] | None = None,
        port: int = 8080,
        cwd: Path | None = None,
        preload: tuple[str, ...] = (),
        all_admins: bool = False,
        parallelism: int = 4,
    ) -> None:
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.port = free_port(port)
        self.cwd = Path(cwd or home).resolve()
        self.all_admins = all_admins
        self.procs: dict[str, subprocess.Popen] = {}
        self._token: str | None = None
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        self.env = {
            **inherited,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # The scheduler loop and asset-triggered runs: no idle second between loops.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
            "AIRFLOW__API_AUTH__JWT_SECRET": "local-only-jwt-secret-" + "x" * 48,
            "AIRFLOW__API__SECRET_KEY": "local-only-secret-key",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Own log-server ports, so two local deployments (or a test run) can coexist.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port(8793)),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port(8794)),
            "GIT_PYTHON_REFRESH": "quiet",
            "PYTHONUNBUFFERED": "1",
        }
        if all_admins:
            self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
        else:
            self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"
        if preload:
            # LocalExecutor workers start from a forkserver that imported ``preload`` once; every task
            # process is forked from a worker, so it inherits pandas/scikit-learn/MLflow/GX instead of
            # importing them again (3-6 s per task on a small machine).  Airflow 3.3 settings.
            self.env["AIRFLOW__SCHEDULER__MP_START_METHOD"] = "forkserver"
            self.env["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] = ",".join(preload)
        if env:
            self.env.update(env)

    # ------------------------------------------------------------------ lifecycle

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``airflow *args`` in the deployment's environment; raise with its output if it fails."""
        proc = subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout,
            cwd=self.cwd, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc

    def init(self) -> None:
        """Create ``home`` and migrate the metadata database."""
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate")

    def start(self, components: tuple[str, ...] = COMPONENTS, timeout: float = 240) -> None:
        """Start ``components`` and wait until they are healthy; stop them all if one does not come up."""
        try:
            for name in components:
                self._spawn(name)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str) -> None:
        log = open(self.log_path(name), "ab")  # noqa: SIM115 - owned by the process
        self.procs[name] = subprocess.Popen(
            [str(BIN / "airflow"), name], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
            start_new_session=True,
        )

    def stop(self) -> None:
        """Stop every component: the ones that start work first, the api-server (tasks report to it) last."""
        api = self.procs.pop("api-server", None)
        stop_process_groups(self.procs.values())
        if api is not None:
            stop_process_groups([api])
        self.procs.clear()

    def stop_component(self, name: str) -> None:
        """Stop one component (SIGTERM, then SIGKILL of its process group)."""
        stop_process_groups([self.procs.pop(name)])

    def start_component(self, name: str) -> None:
        self._spawn(name)
        self.wait_healthy()

    def __enter__(self) -> AirflowLocal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def tail(self, name: str, chars: int = 4000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.tail(name, 3000)}")

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as resp:
            return json.load(resp)

    def wait_healthy(self, timeout: float = 240) -> None:
        """Wait until every started component that reports health is healthy; fail if one exits."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                last = self.health()
                keys = [_HEALTH_KEYS[name] for name in self.procs if name in _HEALTH_KEYS]
                if all(last.get(key, {}).get("status") == "healthy" for key in keys):
                    return
            except (urllib.error.URLError, OSError, ValueError) as err:  # not up yet
                last = err
            time.sleep(1)
        raise TimeoutError(f"Airflow at {self.url} not healthy within {timeout}s: {last}")

    # ------------------------------------------------------------------ REST API

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password(self) -> str:
        """
        The admin password the simple auth manager generated on first start.

        The api-server can answer health checks before its auth manager has written the file (seen on a
        loaded machine): wait for it a while, then name the file and the api-server's log.
        """
        path = self.home / "simple_auth_manager_passwords.json.generated"
        deadline = time.monotonic() + 120
        while True:
            try:
                return json.loads(path.read_text())["admin"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no admin password in {path}; api-server log:\n{self.tail('api-server', 3000)}") from None
                self._check_alive()
                time.sleep(1)

    def token(self) -> str:
        if self._token is None:
            req = urllib.request.Request(
                f"{self.url}/auth/token",
                data=json.dumps({"username": "admin", "password": self.password}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                self._token = json.load(resp)["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None, attempts: int = 3) -> Any:
        """
        Call ``/api/v2<path>``; HTTP errors raise :class:`AirflowApiError`.

        A slow SQLite-backed server gets a few patient attempts on read timeouts (GET only).
        """
        for attempt in range(attempts):
            try:
                return self._api_once(method, path, body)
            except (TimeoutError, urllib.error.URLError) as err:
                if isinstance(err, urllib.error.HTTPError) or attempt == attempts - 1 or method != "GET":
                    raise
                time.sleep(2)
        raise AssertionError("unreachable")

    def _api_once(self, method: str, path: str, body: dict | None) -> Any:
        headers = {"Content-Type": "application/json"}
        if not self.all_admins:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            method=method,
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as err:
            raise AirflowApiError(method, path, err.code, err.read().decode(errors="replace")) from None
        return json.loads(text) if text else None

    #: :meth:`wait_dag` stops at the first import error (the demo: a broken DAG file should not cost minutes).
    fail_on_import_errors = True

    def wait_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed ``dag_id``; the import errors are named on failure."""
        deadline = time.monotonic() + timeout
        errors: list = []
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                self.api("GET", f"/dags/{dag_id}")
                return
            except AirflowApiError as err:
                if err.code != 404:
                    raise
            errors = self.api("GET", "/importErrors").get("import_errors", [])
            if errors and self.fail_on_import_errors:
                raise RuntimeError(f"DAG import errors: {errors}")
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} not parsed within {timeout}s; import errors: {errors}")

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 0.5) -> str:
        """Wait until the run is finished; return its state (``success`` or ``failed``)."""
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

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's runs, oldest first (by ``run_after``)."""
        return self.api("GET", f"/dags/{dag_id}/dagRuns?limit=100&order_by=run_after")["dag_runs"]

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

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int | None = None) -> Any:
        """An XCom value, deserialized (``None`` when the task pushed none, e.g. it was skipped)."""
        index = "" if map_index is None else f"&map_index={map_index}"
        try:
            entry = self.api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}?deserialize=true{index}",
            )
        except AirflowApiError as err:
            if err.code == 404:
                return None
            raise
        return entry.get("value")

    def audit_log(self, event: str) -> list[dict[str, Any]]:
        from urllib.parse import quote

        return self.api("GET", f"/eventLogs?event={quote(event)}&limit=1000")["event_logs"]
