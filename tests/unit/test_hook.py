"""MlflowHook against real MLflow: a ``mlflow server`` on 127.0.0.1 (SQLite and PostgreSQL backends,
with and without basic auth) and a ``sqlite:///`` store.  Only the bearer-token test uses a tiny local
HTTP server of its own, because no MLflow server here accepts bearer tokens: it records the header."""

from __future__ import annotations

import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from mlops_provider.exceptions import (
    MlflowAuthenticationError,
    MlflowConnectionError,
    MlopsConfigurationError,
)
from mlops_provider.hooks.mlflow import MlflowHook
from tests.helpers.postgres import create_database, drop_database, postgres_available, sqlalchemy_url
from tests.helpers.servers import MLFLOW_ADMIN_PASSWORD, MlflowServer, free_port

SECRET = MLFLOW_ADMIN_PASSWORD


def _set_conn(monkeypatch, host, login=None, password=None, **extra):
    conn = {"conn_type": "mlflow", "host": host, "extra": extra}
    if login:
        conn["login"] = login
    if password:
        conn["password"] = password
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))


def _mlflow_env():
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_TRACKING") or k == "MLFLOW_REGISTRY_URI"}


def test_connection_and_fluent_logging(mlflow_conn):
    import mlflow

    before = _mlflow_env()
    hook = MlflowHook()
    ok, message = hook.test_connection()
    assert ok, message
    with hook.mlflow_env():
        mlflow.set_experiment("hook-test")
        with mlflow.start_run() as run:
            mlflow.log_metric("m", 1.5)
    assert _mlflow_env() == before, "the hook left MLflow settings in the environment"
    fetched = hook.get_client().get_run(run.info.run_id)
    assert fetched.data.metrics == {"m": 1.5}
    if mlflow_conn.startswith("http"):
        assert hook.run_url(run.info.run_id).startswith(mlflow_conn + "/#/experiments/")
    else:
        # no MLflow UI for a plain store: the run's page in the MLOps view of Airflow
        assert hook.run_url(run.info.run_id).endswith(f"/mlops/runs/{run.info.run_id}")


def test_ui_url_extra_wins(monkeypatch):
    _set_conn(monkeypatch, "http://mlflow:5000", ui_url="https://mlflow.example.com/")
    hook = MlflowHook()
    assert hook.ui_url == "https://mlflow.example.com"
    assert hook.model_version_url("credit model", 3) == "https://mlflow.example.com/#/models/credit%20model/versions/3"


def test_host_port_form(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": "mlflow", "port": 5000})
    )
    assert MlflowHook().tracking_uri == "http://mlflow:5000"


def test_unreachable_server_is_one_readable_line(monkeypatch):
    port = free_port()
    _set_conn(monkeypatch, f"http://127.0.0.1:{port}", max_retries=0, timeout=5)
    ok, message = MlflowHook().test_connection()
    assert not ok
    assert f"127.0.0.1:{port}" in message and "Connection refused" in message
    assert "\n" not in message
    with pytest.raises(MlflowConnectionError, match="Cannot reach MLflow tracking server") as excinfo:
        MlflowHook().get_client().get_run("0" * 32)
    assert excinfo.value.__cause__ is None and "Traceback" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("{not json", "'extra'"),
        (json.dumps({"auth": "kerberos"}), "'auth'"),
        (json.dumps({"max_retries": "many"}), "'max_retries'"),
        (json.dumps({"verify_tls": "maybe"}), "'verify_tls'"),
        (json.dumps(["a"]), "'extra'"),
    ],
)
def test_malformed_extras_name_the_field(monkeypatch, extra, field):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "mlflow", "host": "http://127.0.0.1:1", "extra": extra}),
    )
    with pytest.raises(MlopsConfigurationError, match=field):
        MlflowHook().get_client()
    ok, message = MlflowHook().test_connection()
    assert not ok and field in message


def test_empty_host(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow"}))
    with pytest.raises(MlopsConfigurationError, match="'host'"):
        MlflowHook().tracking_uri  # noqa: B018


@pytest.fixture
def auth_server(mlflow_auth_server):
    return mlflow_auth_server


def test_basic_auth_right_and_wrong_password(auth_server, monkeypatch):
    before = _mlflow_env()
    _set_conn(monkeypatch, auth_server.url, login="admin", password=SECRET, max_retries=0)
    ok, message = MlflowHook().test_connection()
    assert ok, message
    assert _mlflow_env() == before

    wrong = "wrong-" + uuid.uuid4().hex
    _set_conn(monkeypatch, auth_server.url, login="admin", password=wrong, max_retries=0)
    ok, message = MlflowHook().test_connection()
    assert not ok and "rejected the credentials" in message and wrong not in message
    with pytest.raises(MlflowAuthenticationError) as excinfo:
        MlflowHook().get_client().search_experiments()
    assert wrong not in str(excinfo.value)
    assert _mlflow_env() == before


def test_bearer_token_is_sent_and_not_left_behind(monkeypatch):
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"experiments": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        token = "tok-" + uuid.uuid4().hex
        _set_conn(monkeypatch, f"http://127.0.0.1:{server.server_port}", password=token, max_retries=0)
        hook = MlflowHook()
        assert hook.auth_mode == "bearer"
        hook.get_client().search_experiments(max_results=1)
        assert seen and seen[-1] == f"Bearer {token}"
        assert "MLFLOW_TRACKING_TOKEN" not in os.environ
    finally:
        server.shutdown()


def test_server_with_postgresql_backend(session_dir, monkeypatch):
    """In CI the PostgreSQL server is running: this test must fail there rather than skip."""
    if not postgres_available():
        pytest.fail("PostgreSQL on 127.0.0.1:5432 is not running (the machine starts it; never skipped)")
    db = create_database("mlops_hook")
    server = MlflowServer(session_dir / "mlflow-pg", backend_store_uri=sqlalchemy_url(db))
    try:
        server.start(timeout=180)
        _set_conn(monkeypatch, server.url, max_retries=1)
        hook = MlflowHook()
        ok, message = hook.test_connection()
        assert ok, message
        client = hook.get_client()
        exp = client.create_experiment("pg-" + uuid.uuid4().hex[:6])
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "x", 2.0)
        assert client.get_run(run.info.run_id).data.metrics["x"] == 2.0
    finally:
        server.stop()
        drop_database(db)


def test_artifact_downloads_draw_no_progress_bar(mlflow_conn_sqlite, tmp_path, capfd):
    """MLflow's download progress bar goes to stderr, which a task log shows as red ERROR lines."""
    client = MlflowHook().get_client()
    exp = client.create_experiment(f"progress-{os.getpid()}-{id(tmp_path)}")
    run_id = client.create_run(exp).info.run_id
    client.log_text(run_id, "hello", "notes/a.txt")
    capfd.readouterr()
    local = client.download_artifacts(run_id, "notes/a.txt", str(tmp_path))
    assert open(local).read() == "hello"
    err = capfd.readouterr().err
    assert "Downloading artifacts" not in err, err
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ  # scoped like the rest


def test_experiments_are_model_development_not_genai(mlflow_conn_sqlite):
    import mlflow

    hook = MlflowHook()
    client = hook.get_client()
    exp_id = client.create_experiment(f"kind-{uuid.uuid4().hex[:8]}")
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    with hook.mlflow_env():
        fluent = mlflow.set_experiment(f"kind-fluent-{uuid.uuid4().hex[:8]}")
    hook.mark_experiment_kind(fluent)
    assert client.get_experiment(fluent.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
