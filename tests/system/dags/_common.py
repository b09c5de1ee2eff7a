"""Paths shared by the system-test DAGs (the conftest sets MLOPS_SYSTEM_DATA for every component)."""

from __future__ import annotations

import os

DATA = os.environ.get("MLOPS_SYSTEM_DATA", "/tmp/mlops-system-data")
MODEL = os.environ.get("MLOPS_SYSTEM_MODEL", "system-churn")
REFERENCE_PROFILE = f"{DATA}/reference_profile.json"
LANDING = f"{DATA}/landing"
CYCLES = f"{DATA}/cycles"
N_SENSORS = int(os.environ.get("MLOPS_SYSTEM_SENSORS", "10"))
