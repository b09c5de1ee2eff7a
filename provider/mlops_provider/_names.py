"""Readable MLflow run names: ``train loan_default 2026-12-01 10:00:03 #1``.

The verb, what the run is about (a model, a batch), when the Airflow run was due (``run_after``, else the
logical date, else now, in UTC) and the task's try number: short, distinct between batches and retries,
and sortable by eye in the MLflow UI.  Airflow's run ids (``asset_triggered__2026-...``) are kept in tags.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

MAX_RUN_NAME = 250


def run_name(verb: str, subject: str | None, context: Any) -> str:
    context = context or {}
    dag_run = context.get("dag_run")
    when = getattr(dag_run, "run_after", None) or getattr(dag_run, "logical_date", None) or context.get("logical_date")
    if not isinstance(when, dt.datetime):
        when = dt.datetime.now(dt.UTC)
    elif when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    try_number = getattr(context.get("ti"), "try_number", None)
    parts = [verb, subject or "", when.strftime("%Y-%m-%d %H:%M:%S")]
    name = " ".join(p for p in parts if p)
    if try_number:
        name += f" #{try_number}"
    return name[:MAX_RUN_NAME]


def batch_label(uri: Any) -> str:
    """The file name of a data URI (``.../day-01.parquet`` -> ``day-01.parquet``)."""
    text = str(uri or "").rstrip("/")
    return os.path.basename(text) or text
