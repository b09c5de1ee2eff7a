"""An S3-compatible server for tests: moto's server mode, standing in for the compose stack's MinIO.

MinIO is a Docker image (docker-compose.yml's ``minio`` service), and Docker cannot run here; moto's
``moto_server`` (PyPI, ``moto[server]``) speaks the same S3 API over HTTP, so the provider reaches it the
way it reaches MinIO: an Airflow ``aws`` connection whose ``endpoint_url`` is the server, through
Airflow's ``ObjectStoragePath`` (the Amazon provider's ``s3`` file system, s3fs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers.servers import VENV_BIN, free_port, wait_http

#: Credentials of the stand-in (moto accepts any); a test checks they never reach a log.
ACCESS_KEY = "mlops-test-access"
SECRET_KEY = "mlops-test-secret-" + os.urandom(4).hex()


class S3Server:
    """``moto_server`` on 127.0.0.1 (a free port), in its own process group."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.log_path = self.workdir / "moto-server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_http(f"{self.endpoint_url}/moto-api/", timeout=60, proc=self.proc, log=self.log_path)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def connection(self) -> str:
        """The ``aws`` connection (JSON, for ``AIRFLOW_CONN_<ID>``) a MinIO deployment would have."""
        return json.dumps({
            "conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
            "extra": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
        })

    def create_bucket(self, name: str) -> None:
        """What compose's ``minio-init`` does (``mc mb``), with boto3."""
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY,
                     aws_secret_access_key=SECRET_KEY, region_name="us-east-1").create_bucket(Bucket=name)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.helpers.object_store DIR
    server = S3Server(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/moto")).start()
    print(server.endpoint_url, flush=True)
