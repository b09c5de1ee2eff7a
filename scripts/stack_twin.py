"""The process twin of ``docker-compose.yml``: the same components, from the same env file, as local processes.

Docker cannot run on the CI machine, so ``scripts/stack up`` starts what ``docker compose up`` starts,
configured by the same ``.env``:

* ``postgres`` and ``redis`` are the machine's servers (127.0.0.1:5432, trust auth as ``postgres``;
  127.0.0.1:6379): the twin creates the stack's role and its two databases there with the SQL the
  postgres container runs (``deploy/postgres/init-databases.sql``);
* ``mlflow``: ``mlflow server`` with the basic-auth app, PostgreSQL backend store, served artifacts;
* ``airflow-init`` (``deploy/airflow-init.sh``, as in compose), then ``airflow-apiserver``,
  ``airflow-scheduler``, ``airflow-dag-processor``, ``airflow-triggerer`` and two
  ``airflow-worker`` replicas (``airflow celery worker``), with CeleryExecutor.

:data:`COMPONENTS` holds every service's command and environment *exactly as written in
docker-compose.yml* (``${VAR}`` interpolation, compose host names); at start the twin interpolates
them from the env file and rewrites the compose host names to 127.0.0.1 and the container paths to
folders under the state directory (:data:`HOST_MAP`, :meth:`Stack.path_map`).  What only the twin
sets (ports of side servers, ``AIRFLOW_HOME``...) is listed in :data:`TWIN_ONLY_ENV`.
``tests/system/test_stack_consistency.py`` compares the table with the compose file.

Every process runs in its own process group; ``down`` ends each group (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEFAULT_ENV_FILE = ROOT / ".env"
DEFAULT_STATE_DIR = ROOT / ".stack"

sys.path.insert(0, str(ROOT / "deploy"))
import check_env  # noqa: E402  (deploy/check_env.py: the settings check compose's env-check service runs)

# ---------------------------------------------------------------------------------------------
# The component table: what docker-compose.yml says, verbatim (a test keeps the two equal).

AIRFLOW_COMMON_ENV: dict[str, str] = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "${AIRFLOW_ADMIN_USERNAME:-admin}:admin",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": "/opt/airflow/config/simple_auth_manager_passwords.json",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
        "postgresql+psycopg2://${POSTGRES_USER:?POSTGRES_USER is not set (see .env.example)}:"
        "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set (see .env.example)}@postgres:5432/${AIRFLOW_DB_NAME:-airflow}"
    ),
    "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${AIRFLOW_DB_NAME:-airflow}",
    "AIRFLOW__CELERY__BROKER_URL": "redis://redis:6379/${REDIS_DB:-0}",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "${AIRFLOW_WORKER_CONCURRENCY:-4}",
    "AIRFLOW__CORE__FERNET_KEY": "${AIRFLOW_FERNET_KEY:?AIRFLOW_FERNET_KEY is not set (see .env.example)}",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:${AIRFLOW_API_PORT:-8080}/execution/",
    "AIRFLOW__API__PORT": "${AIRFLOW_API_PORT:-8080}",
    "AIRFLOW__API__BASE_URL": "${AIRFLOW_PUBLIC_URL:-http://localhost:8080}",
    "AIRFLOW__API_AUTH__JWT_SECRET": "${AIRFLOW_JWT_SECRET:?AIRFLOW_JWT_SECRET is not set (see .env.example)}",
    "AIRFLOW__API__SECRET_KEY": "${AIRFLOW_API_SECRET_KEY:?AIRFLOW_API_SECRET_KEY is not set (see .env.example)}",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "true",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "${AIRFLOW_TASK_HEARTBEAT_TIMEOUT:-60}",
    "AIRFLOW_CONN_MLFLOW_DEFAULT": (
        '{"conn_type": "mlflow", "host": "http://mlflow:${MLFLOW_PORT:-5000}", "login": "${MLFLOW_ADMIN_USERNAME:-admin}", '
        '"password": "${MLFLOW_ADMIN_PASSWORD:?MLFLOW_ADMIN_PASSWORD is not set (see .env.example)}", '
        '"extra": {"ui_url": "${MLFLOW_PUBLIC_URL:-http://localhost:5000}", "experiment_name": "airflow-mlops"}}'
    ),
    "GIT_PYTHON_REFRESH": "quiet",
    "MLOPS_DATA_DIR": "${MLOPS_DATA_DIR:-/opt/airflow/data}",
    "AIRFLOW_CONN_MLOPS_DATA": (
        '{"conn_type": "aws", "login": "${MINIO_ROOT_USER:-mlops}", '
        '"password": "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set (see .env.example)}", '
        '"extra": {"endpoint_url": "http://minio:9000", "region_name": "us-east-1"}}'
    ),
}

MINIO_ENV: dict[str, str] = {
    "MINIO_ROOT_USER": "${MINIO_ROOT_USER:-mlops}",
    "MINIO_ROOT_PASSWORD": "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set (see .env.example)}",
}

MLFLOW_ENV: dict[str, str] = {
    "MLFLOW_BACKEND_STORE_URI": "postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${MLFLOW_DB_NAME:-mlflow}",
    "MLFLOW_AUTH_CONFIG_PATH": "/etc/mlflow/basic_auth.ini",
    "MLFLOW_AUTH_ADMIN_USERNAME": "${MLFLOW_ADMIN_USERNAME:-admin}",
    "MLFLOW_AUTH_ADMIN_PASSWORD": "${MLFLOW_ADMIN_PASSWORD:?MLFLOW_ADMIN_PASSWORD is not set (see .env.example)}",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": (
        "${MLFLOW_FLASK_SERVER_SECRET_KEY:?MLFLOW_FLASK_SERVER_SECRET_KEY is not set (see .env.example)}"
    ),
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}",
}

#: The env-check service gets every checked setting as compose interpolated it (empty when unset, so
#: that it names every missing one instead of compose stopping at the first).
ENV_CHECK_ENV: dict[str, str] = {key: f"${{{key}:-}}" for key in (*check_env.REQUIRED, *check_env.OPTIONAL)}


@dataclass(frozen=True)
class Component:
    """One service of docker-compose.yml as the twin runs it."""

    name: str
    #: argv as in compose (``command:``); for services on the Airflow image, the ``airflow`` entrypoint
    #: is implied there and explicit here.
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    #: ``external``: the machine's server (postgres, redis); ``oneshot``: runs to completion (init).
    kind: str = "process"
    #: compose services this one waits for, with the condition.
    depends_on: dict[str, str] = field(default_factory=dict)
    #: container working directory (compose ``working_dir``).
    working_dir: str | None = None
    #: what the twin runs instead of ``command`` when the compose image cannot run here (MinIO: moto's
    #: S3 server, ``{port}`` and ``{host}`` filled in); ``("python-step",)``: done by the twin in Python.
    stand_in: tuple[str, ...] = ()


_ENV_CHECKED = {"env-check": "service_completed_successfully"}
_INFRA = {"redis": "service_healthy", "postgres": "service_healthy", **_ENV_CHECKED,
          "minio-init": "service_completed_successfully"}
_AFTER_INIT = {**_INFRA, "airflow-init": "service_completed_successfully"}

COMPONENTS: tuple[Component, ...] = (
    Component("env-check", ("python", "/opt/mlops/deploy/check_env.py", "--environ"), ENV_CHECK_ENV, kind="oneshot"),
    Component("postgres", kind="external"),
    Component("redis", kind="external"),
    Component(
        "minio",
        command=("server", "/data", "--address", ":9000"),
        env=MINIO_ENV,
        depends_on=_ENV_CHECKED,
        # moto's server mode (PyPI moto[server]) stands in for MinIO: the same S3 API on 127.0.0.1
        stand_in=("moto_server", "-H", "{host}", "-p", "{port}"),
    ),
    Component(
        "minio-init",
        command=('mc alias set store http://minio:9000 "$$MINIO_ROOT_USER" "$$MINIO_ROOT_PASSWORD" '
                 '&& mc mb --ignore-existing "store/$$MLOPS_BUCKET"',),
        env={**MINIO_ENV, "MLOPS_BUCKET": "${MLOPS_BUCKET:-mlops-data}"},
        kind="oneshot",
        depends_on={**_ENV_CHECKED, "minio": "service_healthy"},
        stand_in=("python-step",),  # the bucket, created with boto3 (no mc here)
    ),
    Component(
        "mlflow",
        command=(
            "mlflow", "server",
            "--artifacts-destination", "/mlflow/artifacts",
            "--serve-artifacts",
            "--host", "0.0.0.0",
            "--port", "${MLFLOW_PORT:-5000}",
            "--workers", "${MLFLOW_WORKERS:-2}",
            "--app-name", "basic-auth",
            "--allowed-hosts",
            "mlflow:${MLFLOW_PORT:-5000},localhost:${MLFLOW_PORT:-5000},127.0.0.1:${MLFLOW_PORT:-5000}",
        ),
        env=MLFLOW_ENV,
        depends_on={"postgres": "service_healthy", **_ENV_CHECKED},
        working_dir="/mlflow",
    ),
    Component(
        "airflow-init",
        command=("bash", "/opt/mlops/deploy/airflow-init.sh"),
        env={
            **AIRFLOW_COMMON_ENV,
            "AIRFLOW_ADMIN_USERNAME": "${AIRFLOW_ADMIN_USERNAME:-admin}",
            "AIRFLOW_ADMIN_PASSWORD": "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is not set (see .env.example)}",
        },
        kind="oneshot",
        depends_on=_INFRA,
    ),
    Component("airflow-apiserver", ("airflow", "api-server"), AIRFLOW_COMMON_ENV, depends_on=_AFTER_INIT),
    Component("airflow-scheduler", ("airflow", "scheduler"), AIRFLOW_COMMON_ENV, depends_on=_AFTER_INIT),
    Component("airflow-dag-processor", ("airflow", "dag-processor"), AIRFLOW_COMMON_ENV, depends_on=_AFTER_INIT),
    Component(
        "airflow-worker",
        ("airflow", "celery", "worker"),
        {**AIRFLOW_COMMON_ENV, "DUMB_INIT_SETSID": "0"},
        replicas=2,
        depends_on={
            **_AFTER_INIT,
            "airflow-apiserver": "service_healthy",
            "mlflow": "service_healthy",
        },
    ),
    Component("airflow-triggerer", ("airflow", "triggerer"), AIRFLOW_COMMON_ENV, depends_on=_AFTER_INIT),
)
BY_NAME = {c.name: c for c in COMPONENTS}
#: Start order of the long-running processes (compose's depends_on order).
START_ORDER = (
    "minio", "mlflow", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker",
)

#: Compose service host names -> the machine's servers.
HOST_MAP = {
    "@postgres:5432/": "@127.0.0.1:5432/",
    "redis://redis:6379/": "redis://127.0.0.1:6379/",
    "http://mlflow:": "http://127.0.0.1:",
    "http://airflow-apiserver:": "http://127.0.0.1:",
    # "http://minio:9000" -> the stand-in's port: Stack.localise
}

#: Environment only the twin sets, and why (everything else comes from the table above).
TWIN_ONLY_ENV = {
    "AIRFLOW_HOME": "the image's /opt/airflow: a folder under the state directory",
    "AIRFLOW__CORE__DAGS_FOLDER": "the mounted ./dags (or the folder given with --dags-folder)",
    "AIRFLOW__API__HOST": "bind STACK_BIND_HOST (127.0.0.1 unless set) instead of the container's 0.0.0.0",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "bind STACK_BIND_HOST instead of 0.0.0.0",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "two workers on one host need two log-server ports",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": "a free port (other Airflows may run on the machine)",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": "a free port instead of 8974",
    "PATH": "the virtualenv's bin/ first (the image's PATH)",
    "PYTHONUNBUFFERED": "logs reach the log files at once",
}

#: Where the twin's servers listen (``STACK_BIND_HOST`` in the env file; compose ignores it): the API
#: server, MLflow and the scheduler's health check bind it.  Airflow 3.3.2's log servers (``serve_logs``
#: of the Celery workers and the triggerer) have no host setting and bind every interface, so on the
#: loopback address the twin does not start them (``--skip-serve-logs``): every process shares one
#: filesystem and the API server reads the task and trigger log files directly.
BIND_HOSTS = ("127.0.0.1", "0.0.0.0")
SKIP_SERVE_LOGS = ("airflow-worker", "airflow-triggerer")

#: The settings checked before anything starts, and how: one source, deploy/check_env.py (compose's
#: env-check service runs it too).
PLACEHOLDERS, REQUIRED, OPTIONAL = check_env.PLACEHOLDERS, check_env.REQUIRED, check_env.OPTIONAL


class StackConfigError(Exception):
    """The env file is missing, or a setting in it is missing or wrong; the message names it."""


# ---------------------------------------------------------------------------------------------
# env file and compose-style interpolation


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a compose ``.env`` file (deploy/check_env.py's parser): ``KEY=VALUE`` lines, comments, quotes."""
    try:
        return check_env.read_env_file(path)
    except check_env.EnvFileError as err:
        raise StackConfigError(str(err)) from err


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(template: str, values: dict[str, str]) -> str:
    """Compose's interpolation: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``$$``."""

    def repl(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        value = values.get(name)
        if op in (":-", ":?"):
            missing = value in (None, "")
        else:
            missing = value is None
        if op and op.endswith("-") and missing:
            return arg
        if op and op.endswith("?") and missing:
            raise StackConfigError(f"required variable {name} is missing a value: {arg or name}")
        return value or ""

    return _VAR.sub(repl, template)


def validate(values: dict[str, str]) -> None:
    """Refuse a missing, placeholder or malformed setting, naming each (deploy/check_env.py's check)."""
    found = check_env.problems(values)
    if found:
        raise StackConfigError("the stack refuses to start:\n  " + "\n  ".join(found))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def generate_env(path: Path, template: Path = ROOT / ".env.example", **overrides: str) -> Path:
    """Write ``path``: ``.env.example`` with fresh random secrets (and ``overrides``); comments kept."""
    import secrets

    from cryptography.fernet import Fernet

    generated = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
        "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(40),
        "AIRFLOW_API_SECRET_KEY": secrets.token_urlsafe(24),
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(14),
        "MLFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(14),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(24),
        "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(18),
        **overrides,
    }
    lines, seen = [], set()
    for raw in Path(template).read_text().splitlines():
        key = raw.split("=", 1)[0].strip()
        if not raw.lstrip().startswith("#") and "=" in raw and key in generated:
            raw = f"{key}={generated[key]}"
            seen.add(key)
        lines.append(raw)
    lines += [f"{k}={v}" for k, v in generated.items() if k not in seen]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# the stack


class Stack:
    """
    The twin of ``docker compose`` for one env file.

    :param env_file: the stack's settings (the same ``.env`` compose reads).
    :param state_dir: where logs, AIRFLOW_HOME, MLflow artifacts and the pid file live (``.stack/``).
    :param dags_folder: the DAGs (compose mounts ``./dags``).
    :param extra_env: more environment for the Airflow components (tests only; listed in ``status``).
    """

    def __init__(
        self,
        env_file: Path = DEFAULT_ENV_FILE,
        state_dir: Path = DEFAULT_STATE_DIR,
        dags_folder: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.env_file = Path(env_file)
        self.state_dir = Path(state_dir).resolve()
        self.dags_folder = Path(dags_folder or ROOT / "dags").resolve()
        self.extra_env = dict(extra_env or {})
        self.values = read_env_file(self.env_file)
        validate(self.values)
        if self.bind_host not in BIND_HOSTS:
            raise StackConfigError(f"STACK_BIND_HOST={self.bind_host!r} is wrong (expected one of {', '.join(BIND_HOSTS)})")
        self.procs: dict[str, subprocess.Popen] = {}
        self._side_ports: dict[str, int] = {}
        self._log_offsets: dict[str, int] = {}
        self._token: str | None = None

    # ---------------------------------------------------------------- configuration

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key) or default

    @property
    def bind_host(self) -> str:
        """The address the twin's servers listen on: 127.0.0.1 unless ``STACK_BIND_HOST`` says 0.0.0.0."""
        return self.get("STACK_BIND_HOST", "127.0.0.1")

    @property
    def api_port(self) -> int:
        return int(self.get("AIRFLOW_API_PORT", "8080"))

    @property
    def mlflow_port(self) -> int:
        return int(self.get("MLFLOW_PORT", "5000"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def pipeline_data_dir(self) -> Path:
        """The pipelines' data root as the Airflow components see it (``MLOPS_DATA_DIR``, compose's mlops-data volume)."""
        return Path(self.component_env("airflow-scheduler")["MLOPS_DATA_DIR"])

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    def path_map(self) -> dict[str, str]:
        """Container paths of docker-compose.yml -> local paths."""
        return {
            "/opt/airflow/config": str(self.airflow_home / "config"),
            "/opt/mlops/deploy": str(ROOT / "deploy"),
            "/etc/mlflow/basic_auth.ini": str(ROOT / "deploy" / "mlflow" / "basic_auth.ini"),
            "/mlflow": str(self.state_dir / "mlflow"),
            "/opt/airflow/data": str(self.state_dir / "data"),  # compose's mlops-data volume
        }

    @property
    def minio_port(self) -> int:
        """The port of the twin's S3 server (moto, standing in for MinIO): ``STACK_MINIO_PORT``, default 9000."""
        return int(self.get("STACK_MINIO_PORT", "9000"))

    @property
    def minio_url(self) -> str:
        return f"http://127.0.0.1:{self.minio_port}"

    def localise(self, value: str) -> str:
        for old, new in HOST_MAP.items():
            value = value.replace(old, new)
        value = value.replace("http://minio:9000", self.minio_url)
        for old, new in self.path_map().items():
            if value == old or value.startswith(old + "/"):
                value = new + value[len(old):]
        return value

    def _side_port(self, key: str) -> int:
        if key not in self._side_ports:
            self._side_ports[key] = free_port()
        return self._side_ports[key]

    def component_env(self, name: str, replica: int = 1) -> dict[str, str]:
        comp = BY_NAME[name]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "_AIRFLOW"))}
        env.update({key: self.localise(interpolate(value, self.values)) for key, value in comp.env.items()})
        env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        if name.startswith("airflow-"):
            env.update(
                {
                    "AIRFLOW_HOME": str(self.airflow_home),
                    "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                    "AIRFLOW__API__HOST": self.bind_host,
                    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": self.bind_host,
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._side_port(f"worker-log-{replica}")),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._side_port("trigger-log")),
                    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self._side_port("scheduler-health")),
                }
            )
            env.update(self.extra_env)
        return env

    def component_command(self, name: str, replica: int = 1) -> list[str]:
        comp = BY_NAME[name]
        if comp.stand_in and comp.kind != "oneshot":
            argv = [arg.format(host=self.bind_host, port=self.minio_port) for arg in comp.stand_in]
            return [str(BIN / argv[0]), *argv[1:]]
        argv = [self.localise(interpolate(arg, self.values)) for arg in comp.command]
        if argv and argv[0] in ("airflow", "mlflow", "python"):
            argv[0] = str(BIN / argv[0])
        if name == "mlflow":
            argv[argv.index("--host") + 1] = self.bind_host
        if name == "airflow-worker":
            argv += ["--celery-hostname", f"worker{replica}@%h"]
        if name in SKIP_SERVE_LOGS and self.bind_host == "127.0.0.1":
            argv.append("--skip-serve-logs")  # its log server would listen on every interface
        return argv

    # ---------------------------------------------------------------- infrastructure

    def _psql(self, *args: str, db: str = "postgres") -> subprocess.CompletedProcess:
        return subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )

    def check_infra(self) -> None:
        proc = self._psql("-c", "select 1")
        if proc.returncode != 0:
            raise RuntimeError(f"postgres: PostgreSQL on 127.0.0.1:5432 is not reachable: {proc.stderr.strip()}")
        if not redis_ping():
            raise RuntimeError("redis: Redis on 127.0.0.1:6379 does not answer PING")

    def create_databases(self) -> None:
        """What the postgres container does on its first start: the role and both databases."""
        user, password = self.get("POSTGRES_USER"), self.get("POSTGRES_PASSWORD")
        sql = (
            "DO $$BEGIN "
            f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN CREATE ROLE \"{user}\" LOGIN; END IF; "
            f"EXECUTE format('ALTER ROLE %I WITH LOGIN PASSWORD %L', '{user}', '{password}'); "
            "END$$;"
        )
        proc = self._psql("-c", sql)
        if proc.returncode != 0:
            raise RuntimeError(f"postgres: cannot create role {user!r}: {proc.stderr.strip()}")
        for db in (self.get("AIRFLOW_DB_NAME", "airflow"), self.get("MLFLOW_DB_NAME", "mlflow")):
            proc = self._psql("-v", f"db={db}", "-v", f"owner={user}", "-f", str(ROOT / "deploy/postgres/init-databases.sql"))
            if proc.returncode != 0:
                raise RuntimeError(f"postgres: cannot create database {db!r}: {proc.stderr.strip()}")

    def drop_databases(self, attempts: int = 5) -> None:
        """Drop both databases (``down --volumes``); retried, and a failure is reported, not hidden."""
        for db in (self.get("AIRFLOW_DB_NAME", "airflow"), self.get("MLFLOW_DB_NAME", "mlflow")):
            for attempt in range(attempts):
                proc = self._psql("-c", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                if proc.returncode == 0:
                    break
                time.sleep(2 * (attempt + 1))
            else:
                print(f"scripts/stack: could not drop database {db!r}: {proc.stderr.strip()}", file=sys.stderr)

    # ---------------------------------------------------------------- processes

    def log_path(self, key: str) -> Path:
        return self.state_dir / "logs" / f"{key}.log"

    def _key(self, name: str, replica: int) -> str:
        return f"{name}-{replica}" if BY_NAME[name].replicas > 1 else name

    def _cwd(self, name: str) -> Path:
        comp = BY_NAME[name]
        return Path(self.localise(comp.working_dir)) if comp.working_dir else self.airflow_home

    def spawn(self, name: str, replica: int = 1) -> subprocess.Popen:
        key = self._key(name, replica)
        self.log_path(key).parent.mkdir(parents=True, exist_ok=True)
        cwd = self._cwd(name)
        cwd.mkdir(parents=True, exist_ok=True)
        self._log_offsets[key] = self.log_path(key).stat().st_size if self.log_path(key).exists() else 0
        log = open(self.log_path(key), "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            self.component_command(name, replica), env=self.component_env(name, replica), cwd=cwd,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.procs[key] = proc
        self._save_pids()
        return proc

    def spawn_extra(
        self, key: str, name: str, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None,
        python: Path | None = None,
    ) -> subprocess.Popen:
        """
        Start one more process of component ``name`` under ``key`` (tests: a worker built differently).

        :param args: appended to the component's command.
        :param env: set on top of the component's environment.
        :param python: run ``airflow`` with this interpreter (``python -m airflow``), e.g. one of
            another environment; ``PATH`` then starts with that interpreter's ``bin/``.
        """
        argv = [*self.component_command(name), *args]  # a repeated option: the last value wins
        full_env = self.component_env(name)
        if name == "airflow-worker":  # its own log server port
            full_env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(self._side_port(f"worker-log-{key}"))
        full_env.update(env or {})
        if python is not None:
            if BY_NAME[name].command[0] != "airflow":
                raise ValueError(f"{name} is not an airflow component")
            argv[:1] = [str(python), "-m", "airflow"]
            full_env["PATH"] = f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.log_path(key).parent.mkdir(parents=True, exist_ok=True)
        self._log_offsets[key] = self.log_path(key).stat().st_size if self.log_path(key).exists() else 0
        log = open(self.log_path(key), "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(argv, env=full_env, cwd=self._cwd(name), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs[key] = proc
        self._save_pids()
        return proc

    def remove(self, key: str) -> None:
        """Stop a process started with :meth:`spawn_extra` and forget it (``down`` stops it otherwise)."""
        if key in self.procs:
            self.kill(key, signal.SIGTERM)
            self.procs.pop(key)
            self._save_pids()

    def _save_pids(self) -> None:
        """Record the live process groups: this Stack's, and those another ``scripts/stack`` started."""
        pids = self.running_pids()  # a restart from a new process keeps the others tracked
        for key, proc in self.procs.items():
            if proc.poll() is None:
                pids[key] = proc.pid
            elif pids.get(key) == proc.pid:
                pids.pop(key)  # (a key another process restarted keeps its new pid)
        path = self.state_dir / "pids.json"
        path.with_suffix(".tmp").write_text(json.dumps(pids, indent=1))
        path.with_suffix(".tmp").replace(path)

    def run_env_check(self) -> None:
        """env-check: deploy/check_env.py on the interpolated settings, as compose's env-check service."""
        proc = subprocess.run(self.component_command("env-check"), env=self.component_env("env-check"),
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise StackConfigError(f"env-check failed ({proc.returncode}): {proc.stderr.strip()}")

    def init_bucket(self, timeout: float = 120) -> None:
        """minio-init: the pipeline data's bucket (``MLOPS_BUCKET``), created with boto3 in the stand-in."""
        import boto3

        deadline = time.monotonic() + timeout
        while not _http_ok(f"{self.minio_url}/moto-api/"):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"minio (moto) not answering on {self.minio_url} within {timeout}s:\n{self.tail('minio')}")
            time.sleep(0.5)
        env = {k: interpolate(v, self.values) for k, v in BY_NAME["minio-init"].env.items()}
        client = boto3.client("s3", endpoint_url=self.minio_url, aws_access_key_id=env["MINIO_ROOT_USER"],
                              aws_secret_access_key=env["MINIO_ROOT_PASSWORD"], region_name="us-east-1")
        if env["MLOPS_BUCKET"] not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=env["MLOPS_BUCKET"])

    def init(self) -> None:
        """airflow-init: password file and ``airflow db migrate`` (deploy/airflow-init.sh)."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
        self.log_path("airflow-init").parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path("airflow-init"), "ab") as log:
            proc = subprocess.run(
                self.component_command("airflow-init"), env=self.component_env("airflow-init"), cwd=self.airflow_home,
                stdout=log, stderr=subprocess.STDOUT, timeout=900, check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow-init failed ({proc.returncode}):\n{self.tail('airflow-init')}")

    def up(self, timeout: float = 420) -> Stack:
        """``docker compose up``: infrastructure, databases, MLflow, init, then the Airflow components."""
        running = self.running_pids()
        if running:
            raise RuntimeError(f"the stack in {self.state_dir} is already running: {sorted(running)}")
        for port, what in ((self.api_port, "AIRFLOW_API_PORT"), (self.mlflow_port, "MLFLOW_PORT")):
            if not port_free(port):
                raise StackConfigError(f"{what}={port}: the port is in use")
        self.run_env_check()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "stopping").unlink(missing_ok=True)  # left by an interrupted down
        self.check_infra()
        self.create_databases()
        try:
            self.spawn("minio")
            self.spawn("mlflow")
            self.init_bucket()
            self.init()
            for name in START_ORDER[2:]:
                for replica in range(1, BY_NAME[name].replicas + 1):
                    self.spawn(name, replica)
            self.wait_healthy(timeout)
        except BaseException:
            self.down()
            raise
        return self

    def running_pids(self) -> dict[str, int]:
        path = self.state_dir / "pids.json"
        if not path.exists():
            return {}
        return {key: pid for key, pid in json.loads(path.read_text()).items() if _alive(pid)}

    def down(self, volumes: bool = False) -> None:
        """``docker compose down [--volumes]``: stop every process group; with volumes, drop the state."""
        stopping = self.state_dir / "stopping"  # tells a supervisor (``supervise``) to stop restarting
        if self.state_dir.is_dir():
            stopping.touch()
        pids = {key: proc.pid for key, proc in self.procs.items()}
        pids.update(self.running_pids())
        order = ["airflow-worker", "airflow-triggerer", "airflow-scheduler", "airflow-dag-processor",
                 "airflow-apiserver", "mlflow", "minio"]
        keys = sorted(pids, key=lambda k: next((i for i, n in enumerate(order) if k.startswith(n)), 99))
        for key in keys:
            _signal_group(pids[key], signal.SIGTERM)
        deadline = time.monotonic() + 30
        for key in keys:
            while _alive(pids[key]) and time.monotonic() < deadline:
                proc = self.procs.get(key)
                if proc is not None:
                    proc.poll()
                time.sleep(0.2)
        for key in keys:
            _signal_group(pids[key], signal.SIGKILL)
            proc = self.procs.pop(key, None)
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        late = {k: p for k, p in self.running_pids().items() if p not in pids.values()}
        for pid in late.values():  # started by a supervisor just before it saw ``stopping``
            _signal_group(pid, signal.SIGKILL)
        pid_file = self.state_dir / "pids.json"
        if pid_file.exists():
            pid_file.unlink()
        stopping.unlink(missing_ok=True)
        self._token = None
        if volumes:
            self.drop_databases()
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def forget_replaced(self) -> list[str]:
        """
        Drop the exited processes that another ``scripts/stack`` (``supervise``, ``restart``) started again.

        Their keys then refer to the new process in ``pids.json``; returns those keys.
        """
        running = self.running_pids()
        replaced = [key for key, proc in self.procs.items()
                    if proc.poll() is not None and running.get(key) not in (None, proc.pid)]
        for key in replaced:
            self.procs.pop(key)
        return replaced

    def kill(self, key: str, sig: int = signal.SIGKILL) -> None:
        """Kill one component's whole process group (a crash, for fault tests)."""
        self.forget_replaced()
        pid = self.procs[key].pid if key in self.procs else self.running_pids()[key]
        _signal_group(pid, sig)
        proc = self.procs.get(key)
        if proc is not None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _signal_group(pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._save_pids()

    def component_keys(self) -> list[str]:
        """The keys of the long-running processes: ``mlflow``, ..., ``airflow-worker-1``, ``airflow-worker-2``."""
        return [self._key(name, r) for name in START_ORDER for r in range(1, BY_NAME[name].replicas + 1)]

    def restart(self, key: str) -> None:
        """
        ``docker compose restart``: stop the component (``mlflow``, ``airflow-worker-2``...) if it runs, start it again.

        The others stay tracked in ``pids.json``, also when another process (``scripts/stack``) started them.
        """
        if key not in self.component_keys():
            raise StackConfigError(f"no component {key!r}: one of {', '.join(self.component_keys())}")
        self.forget_replaced()
        pid = self.procs[key].pid if key in self.procs else self.running_pids().get(key)
        if pid is not None and _alive(pid):
            self.kill(key, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            _signal_group(pid, signal.SIGKILL)
        name, _, replica = key.rpartition("-") if key[-1].isdigit() and key.startswith("airflow-worker") else (key, "", "1")
        self.spawn(name, int(replica))

    def supervise(self, interval: float = 5) -> list[str]:
        """
        Compose's ``restart: always`` for a running twin: restart every component that is not running.

        Runs until the stack is brought down (``pids.json`` gone, or ``down`` under way); returns the keys it
        restarted, in order.
        """
        restarted: list[str] = []
        pid_file, stopping = self.state_dir / "pids.json", self.state_dir / "stopping"
        while pid_file.exists() and not stopping.exists():
            running = self.running_pids()
            for key in self.component_keys():
                if key not in running and pid_file.exists() and not stopping.exists():
                    print(f"supervise: {key} is not running: restarting it", flush=True)
                    self.restart(key)
                    restarted.append(key)
            time.sleep(interval)
        return restarted

    def wait_component(self, key: str, timeout: float = 240) -> None:
        """Wait until one component is healthy (``restart``); raise with its log tail otherwise."""
        deadline = time.monotonic() + timeout
        status = "starting"
        while time.monotonic() < deadline:
            proc = self.procs.get(key)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{key} exited with {proc.returncode}:\n{self.tail(key)}")
            status = self.health().get(key, "unknown")
            if status == "healthy":
                return
            time.sleep(2)
        raise TimeoutError(f"{key} not healthy within {timeout}s ({status}):\n{self.tail(key)}")

    def ensure_running(self) -> list[str]:
        """Restart every component that has exited (compose's ``restart: always``); returns their keys."""
        self.forget_replaced()
        restarted = [key for key, proc in list(self.procs.items()) if proc.poll() is not None]
        for key in restarted:
            self.restart(key)
        return restarted

    # ---------------------------------------------------------------- health

    def tail(self, key: str, chars: int = 4000) -> str:
        path = self.log_path(key)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def log_since_start(self, key: str) -> str:
        """The component's log since its last start by this Stack (the whole log otherwise)."""
        path = self.log_path(key)
        if not path.exists():
            return ""
        with open(path, "rb") as fh:
            fh.seek(self._log_offsets.get(key, 0))
            return fh.read().decode(errors="replace")

    def _check_alive(self) -> None:
        self.forget_replaced()
        for key, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{key} exited with {proc.returncode}:\n{self.tail(key)}")

    def health(self) -> dict[str, str]:
        """Status of every component, as compose's healthchecks would report it."""
        status: dict[str, str] = {}
        status["postgres"] = "healthy" if self._psql("-c", "select 1").returncode == 0 else "unhealthy"
        status["redis"] = "healthy" if redis_ping() else "unhealthy"
        status["mlflow"] = "healthy" if _http_ok(f"{self.mlflow_url}/health") else "unhealthy"
        status["minio"] = "healthy" if _http_ok(f"{self.minio_url}/moto-api/") else "unhealthy"
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as resp:
                airflow = json.load(resp)
            status["airflow-apiserver"] = "healthy"
        except (urllib.error.URLError, OSError, ValueError):
            airflow = {}
            status["airflow-apiserver"] = "unhealthy"
        for comp, key in (("scheduler", "airflow-scheduler"), ("dag_processor", "airflow-dag-processor"),
                          ("triggerer", "airflow-triggerer")):
            status[key] = (airflow.get(comp) or {}).get("status") or "unhealthy"
        for replica in range(1, BY_NAME["airflow-worker"].replicas + 1):
            key = f"airflow-worker-{replica}"
            status[key] = "healthy" if re.search(r"worker\d+@\S+ ready", self.log_since_start(key)) else "starting"
        running = self.running_pids()
        for key in list(status):
            if key not in ("postgres", "redis") and key not in running:
                status[key] = "exited"
        return status

    def wait_healthy(self, timeout: float = 420) -> None:
        deadline = time.monotonic() + timeout
        status: dict[str, str] = {}
        while time.monotonic() < deadline:
            self._check_alive()
            status = self.health()
            if all(s == "healthy" for s in status.values()):
                return
            time.sleep(2)
        raise TimeoutError(f"stack not healthy within {timeout}s: {status}")

    # ---------------------------------------------------------------- Airflow REST API (authenticated)

    def token(self) -> str:
        if self._token is None:
            body = {"username": self.get("AIRFLOW_ADMIN_USERNAME", "admin"), "password": self.get("AIRFLOW_ADMIN_PASSWORD")}
            req = urllib.request.Request(
                f"{self.url}/auth/token", data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"}, method="POST",
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                self._token = json.load(resp)["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None, *, raw: bool = False, timeout: float = 60) -> Any:
        req = urllib.request.Request(
            f"{self.url}/api/v2{path}", data=json.dumps(body).encode() if body is not None else None, method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token()}"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
        if raw:
            return text
        return json.loads(text) if text else None

    def wait_dag(self, dag_id: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                dag = self.api("GET", f"/dags/{dag_id}")
                if dag.get("is_paused"):
                    self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
                return
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    raise
            # only the errors of the DAGs folder (a test may parse another bundle with errors on purpose)
            errors = self.api("GET", "/importErrors?bundle_name=dags-folder").get("import_errors", [])
            if errors:
                raise RuntimeError(f"DAG import errors: {errors}")
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} not parsed within {timeout}s")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        return self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        state = "queued"
        while time.monotonic() < deadline:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise TimeoutError(f"run {run_id} of {dag_id} still {state} after {timeout}s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        from urllib.parse import quote

        path = (f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}"
                f"?full_content=true&map_index={map_index}")
        return self.api("GET", path, raw=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def redis_ping(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
