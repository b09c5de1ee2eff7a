"""Apache Airflow 3 provider for MLOps: validation, training, registry, gates and drift.

Importing this package is cheap on purpose: nothing heavy (pandas, numpy, mlflow, great_expectations,
evidently, sklearn) is imported here or in any Airflow-facing module at import time.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
