"""Importing the provider's Airflow-facing modules must load no heavy library (STYLE rule 1).

Each module is imported in a fresh interpreter and ``sys.modules`` is inspected there."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import mlops_provider

HEAVY = ("pandas", "numpy", "scipy", "sklearn", "mlflow", "great_expectations", "evidently", "pyarrow", "matplotlib")
PACKAGE_DIR = Path(mlops_provider.__file__).parent
AIRFLOW_FACING = ("hooks", "operators", "sensors", "triggers", "links")


def _modules() -> list[str]:
    names = ["mlops_provider", "mlops_provider.get_provider_info", "mlops_provider.exceptions",
             # pipelines as data: imported by every factory-built DAG file, and the console script
             "mlops_provider.pipelines", "mlops_provider.pipeline_dags", "mlops_provider.local",
             "mlops_provider.local.airflow", "mlops_provider.cli"]
    for sub in AIRFLOW_FACING:
        names.append(f"mlops_provider.{sub}")
        for info in pkgutil.iter_modules([str(PACKAGE_DIR / sub)]):
            names.append(f"mlops_provider.{sub}.{info.name}")
    return names


_PROBE = """
import importlib, json, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
heavy = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in json.loads(sys.argv[2])})
print(json.dumps(heavy))
"""


def test_all_modules_are_listed():
    assert "mlops_provider.hooks.mlflow" in _modules()


@pytest.mark.parametrize("module", _modules())
def test_module_imports_nothing_heavy(module):
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, module, json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing {module} loaded heavy modules: {loaded}"


def test_example_dags_parse_without_heavy_imports():
    """A DagBag over dags/ (every operator of the provider) loads no heavy library either."""
    probe = f"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(Path(__file__).resolve().parents[2] / 'dags')!r})
heavy = sorted({{m.split('.')[0] for m in sys.modules if m.split('.')[0] in {list(HEAVY)!r}}})
print(json.dumps({{"errors": {{k: v[:300] for k, v in bag.import_errors.items()}}, "heavy": heavy, "dags": len(bag.dags)}}))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["dags"] >= 1
    assert result["heavy"] == [], result


def test_plugin_module_loaded_by_every_process_imports_no_web_stack():
    """Task processes load plugins too (macros): the MLOps view's FastAPI app is built on its first request."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "mlops_provider.plugins.mlops", json.dumps([*HEAVY, "fastapi"])],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
