"""Readable MLflow run names (issue 14: names were cut off or identical)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from mlops_provider._names import batch_label, run_name


def test_run_names_are_short_distinct_and_readable():
    when = dt.datetime(2026, 12, 1, 10, 0, 3, tzinfo=dt.UTC)
    context = {"dag_run": SimpleNamespace(run_after=when, logical_date=None), "ti": SimpleNamespace(try_number=1),
               "run_id": "asset_triggered__2026-12-01T10:00:03.123456+00:00_igjSCbMW"}
    assert run_name("train", "loan_default", context) == "train loan_default 2026-12-01 10:00:03 #1"
    retry = {**context, "ti": SimpleNamespace(try_number=2)}
    assert run_name("train", "loan_default", retry).endswith("#2")
    later = {**context, "dag_run": SimpleNamespace(run_after=when + dt.timedelta(seconds=20), logical_date=None)}
    day1 = run_name("drift", f"loan_default {batch_label('/data/landing/batches/day-01.parquet')}", context)
    day2 = run_name("drift", f"loan_default {batch_label('/data/landing/batches/day-02.parquet')}", later)
    assert day1 == "drift loan_default day-01.parquet 2026-12-01 10:00:03 #1" and day1 != day2
    assert len(run_name("x", "y" * 1000, context)) <= 250
    assert run_name("validate", "b.csv", {}).startswith("validate b.csv 20")  # no Airflow context: now
