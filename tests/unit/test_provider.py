"""Provider registration as Airflow sees it: the CLI and the API server's connection form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlops_provider.get_provider_info import get_provider_info

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def test_provider_info_modules_exist():
    import importlib

    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for path in info["extra-links"] + [c["hook-class-name"] for c in info["connection-types"]]:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path


def test_provider_info_matches_airflow_schema():
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_airflow_providers_cli_lists_the_provider(airflow_db):
    out = subprocess.run([AIRFLOW, "providers", "list", "-o", "json"], capture_output=True, text=True, check=True)
    names = {p["package_name"] for p in json.loads(out.stdout[out.stdout.index("[") :])}
    assert "airflow-provider-mlops" in names
    out = subprocess.run(
        [AIRFLOW, "providers", "get", "airflow-provider-mlops", "-o", "json"], capture_output=True, text=True, check=True
    )
    assert "airflow-provider-mlops" in out.stdout
    out = subprocess.run([AIRFLOW, "providers", "hooks", "-o", "json"], capture_output=True, text=True, check=True)
    assert "mlops_provider.hooks.mlflow.MlflowHook" in out.stdout


_HOOK_META = """
import json
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app
client = TestClient(create_app(apps="core"))
resp = client.get("/ui/connections/hook_meta")
print("STATUS", resp.status_code)
print("JSON", json.dumps([h for h in resp.json() if h.get("connection_type") == "mlflow"]))
"""


def test_api_server_connection_form_for_mlflow(airflow_db):
    """Airflow 3.3 serves the connection form metadata at /ui/connections/hook_meta (the UI API)."""
    env = {**os.environ, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    out = subprocess.run([sys.executable, "-c", _HOOK_META], capture_output=True, text=True, env=env, check=True)
    lines = out.stdout.splitlines()
    assert "STATUS 200" in lines
    meta = json.loads(next(line for line in lines if line.startswith("JSON "))[5:])
    assert len(meta) == 1, meta
    mlflow_meta = meta[0]
    assert mlflow_meta["hook_name"] == "MLflow"
    behaviour = mlflow_meta["standard_fields"]
    assert behaviour["host"]["title"] == "Tracking URI"
    assert behaviour["password"]["title"] == "Password or token"
    assert behaviour["port"]["hidden"] is True
    fields = mlflow_meta["extra_fields"]
    assert {"registry_uri", "auth", "verify_tls", "ui_url", "max_retries", "timeout"} <= set(fields)
    # the form shows no literal "null": no null member in any choice list
    assert not any(None in (f.get("schema") or {}).get("enum", []) for f in fields.values()), fields


_TEST_BUTTON = """
import json, sys
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app
client = TestClient(create_app(apps="core"))
for body in json.loads(sys.argv[2]):
    client.delete(f"/api/v2/connections/{body['connection_id']}")
    assert client.post("/api/v2/connections", json=body).status_code == 201
for body in json.loads(sys.argv[1]):
    resp = client.post("/api/v2/connections/test", json=body)
    print("ANSWER", json.dumps({"status": resp.status_code, "body": resp.json()}))
"""


def _press_test_button(bodies: list[dict], enabled: bool, stored: list[dict] | None = None) -> list[dict]:
    """What the connection list's Test button does: ``POST /api/v2/connections/test`` to the API server."""
    env = {**os.environ, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "AIRFLOW__CORE__TEST_CONNECTION": "Enabled" if enabled else "Disabled"}
    out = subprocess.run([sys.executable, "-c", _TEST_BUTTON, json.dumps(bodies), json.dumps(stored or [])],
                         capture_output=True, text=True, env=env, check=True)
    return [json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("ANSWER ")]


def test_connection_test_button_reaches_mlflow(airflow_db, mlflow_server, mlflow_auth_server, tmp_path):
    """With ``[core] test_connection = Enabled`` the mlflow connection's Test button runs the hook's test."""
    from tests.helpers.servers import free_port

    def body(host: str, **fields) -> dict:
        return {"connection_id": "mlflow_form", "conn_type": "mlflow", "host": host,
                "extra": json.dumps({"max_retries": 0, "timeout": 5}), **fields}

    sqlite = f"sqlite:///{tmp_path / 'mlflow.db'}"
    answers = _press_test_button([
        body(mlflow_server.url),
        body(sqlite),
        body(f"http://127.0.0.1:{free_port()}"),
        body(mlflow_auth_server.url, login="admin", password="not-the-password"),
    ], enabled=True)
    assert [a["status"] for a in answers] == [200] * 4, answers
    (server, local, down, refused) = [a["body"] for a in answers]
    assert server == {"status": True, "message": f"Connected to MLflow at {mlflow_server.url}"}
    assert local == {"status": True, "message": f"Connected to MLflow at {sqlite}"}
    assert down["status"] is False and "Cannot reach MLflow tracking server" in down["message"], down
    assert refused["status"] is False and "rejected the credentials" in refused["message"], refused
    assert "not-the-password" not in refused["message"]
    # Airflow's default: the button is refused by the API server, whatever the hook
    (disabled,) = _press_test_button([body(mlflow_server.url)], enabled=False)
    assert disabled["status"] == 403 and "disabled" in disabled["body"]["detail"]


def test_test_button_of_a_stored_mlflow_connection_is_not_refused_for_its_port(airflow_db, tmp_path):
    """
    The Airflow 3.3.2 UI sends a stored connection's empty port as ``0``; its API then answers 400 before the
    hook runs (fixed upstream in apache/airflow#73298).  The plugin's ConnectionTestPortFix reads port 0 as no
    port for ``mlflow`` connections only: other types still get Airflow's answer.
    """
    sqlite = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stored = [{"connection_id": "mlflow_stored", "conn_type": "mlflow", "host": sqlite},
              {"connection_id": "generic_stored", "conn_type": "generic", "host": "example.invalid"}]
    # the body the UI builds for the row's Test button (masked password, hidden fields blank, port 0)
    ui = {"description": "", "login": "", "password": "", "schema": "", "port": 0, "extra": None}
    mlflow, generic = _press_test_button(
        [{**ui, "connection_id": "mlflow_stored", "conn_type": "mlflow", "host": sqlite},
         {**ui, "connection_id": "generic_stored", "conn_type": "generic", "host": "example.invalid"}],
        enabled=True, stored=stored,
    )
    assert mlflow == {"status": 200, "body": {"status": True, "message": f"Connected to MLflow at {sqlite}"}}, mlflow
    assert generic["status"] == 400 and "differs from the stored connection" in generic["body"]["detail"], generic
