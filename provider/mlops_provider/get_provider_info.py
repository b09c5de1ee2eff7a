"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from mlops_provider import __version__

_INTEGRATION = "MLOps (MLflow, Great Expectations, drift)"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-mlops",
        "name": "MLOps",
        "description": (
            "MLOps control loop for Apache Airflow 3: data validation with Great Expectations, "
            "training and model registry with MLflow, promotion gates, drift checks and "
            "drift-triggered retraining."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://mlflow.org/docs/latest/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {"integration-name": _INTEGRATION, "python-modules": ["mlops_provider.hooks.mlflow"]},
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "mlops_provider.operators.training",
                    "mlops_provider.operators.registry",
                    "mlops_provider.operators.prediction",
                    "mlops_provider.operators.validation",
                    "mlops_provider.operators.drift",
                    "mlops_provider.operators.gate",
                    "mlops_provider.operators.performance",
                    "mlops_provider.operators.retraining",
                    "mlops_provider.operators.pipeline",
                ],
            }
        ],
        "sensors": [
            {"integration-name": _INTEGRATION, "python-modules": ["mlops_provider.sensors.drift", "mlops_provider.sensors.pipeline"]},
        ],
        "triggers": [
            {"integration-name": _INTEGRATION, "python-modules": ["mlops_provider.triggers.batch"]},
        ],
        "plugins": [
            {"name": "mlops", "plugin-class": "mlops_provider.plugins.mlops.MlopsPlugin"},
        ],
        "extra-links": [
            "mlops_provider.links.mlflow.MlflowRunLink",
            "mlops_provider.links.mlflow.MlflowModelVersionLink",
            "mlops_provider.links.mlflow.ValidationReportLink",
            "mlops_provider.links.mlflow.DriftReportLink",
            "mlops_provider.links.mlflow.GateReportLink",
        ],
        "connection-types": [
            {
                "hook-class-name": "mlops_provider.hooks.mlflow.MlflowHook",
                "hook-name": "MLflow",
                "connection-type": "mlflow",
                "conn-fields": {
                    "registry_uri": {
                        "label": "Registry URI",
                        "schema": {"type": ["string", "null"]},
                        "description": "Model registry URI when it differs from the tracking URI",
                    },
                    "auth": {
                        "label": "Auth mode",
                        # no enum: the form would offer its null member as a literal "null" choice
                        "schema": {"type": ["string", "null"]},
                        "description": (
                            "none, basic (login/password) or bearer (token in the password field); "
                            "empty: basic with a login, bearer with only a password"
                        ),
                    },
                    "verify_tls": {
                        "label": "Verify TLS",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "ui_url": {
                        "label": "MLflow UI URL",
                        "schema": {"type": ["string", "null"]},
                        "description": "Base URL for links; defaults to the tracking URI when it is http(s)",
                    },
                    "max_retries": {
                        "label": "HTTP retries",
                        "schema": {"type": ["integer", "null"], "default": 3},
                    },
                    "timeout": {
                        "label": "HTTP timeout (s)",
                        "schema": {"type": ["integer", "null"], "default": 60},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Tracking URI",
                        "login": "Username (basic auth)",
                        "password": "Password or token",
                    },
                    "placeholders": {
                        "host": "http://mlflow:5000 or sqlite:////data/mlflow.db",
                        "login": "leave empty for token or no auth",
                        "password": "basic-auth password, or a bearer token when the username is empty",
                    },
                },
            }
        ],
    }
