"""Start real servers (MLflow, Airflow components) as subprocesses for tests and the demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from airflow_local import free_port, stop_process_groups  # noqa: E402

#: Admin password of the test session's basic-auth MLflow server (random per session).
MLFLOW_ADMIN_PASSWORD = "s3cret-Admin-pw-" + uuid.uuid4().hex[:6]

VENV_BIN = Path(sys.executable).parent


def wait_http(url: str, timeout: float = 90.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except Exception as err:  # noqa: BLE001 - any failure means "not up yet"
            last = err
        time.sleep(0.3)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{url} did not answer within {timeout}s ({last}):\n{tail}")


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 with its own backend store and artifact folder."""

    def __init__(
        self,
        workdir: Path,
        backend_store_uri: str | None = None,
        port: int | None = None,
        admin_password: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.workdir / 'mlflow.db'}"
        self.port = port or free_port()
        self.admin_password = admin_password
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "mlflow-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> MlflowServer:
        cmd = [
            str(VENV_BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(self.workdir / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {**os.environ, **self.extra_env}
        if self.admin_password:
            # MLflow's basic-auth app: admin user "admin" with this password, auth DB in workdir.
            cmd += ["--app-name", "basic-auth"]
            env["MLFLOW_AUTH_ADMIN_PASSWORD"] = self.admin_password
            env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", "tests-only-secret")
        for key in list(env):
            if key.startswith("MLFLOW_TRACKING_"):
                env.pop(key)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir, start_new_session=True
        )
        wait_http(f"{self.url}/health", timeout=timeout, proc=self.proc, log=self.log_path)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process_groups([self.proc], timeout=20.0)
        self.proc = None


def which(name: str) -> str:
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(name)
    return found
