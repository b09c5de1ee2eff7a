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
