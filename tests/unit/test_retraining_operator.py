"""RetrainingPolicyOperator reads every merged event of the run from ``triggering_asset_events``.

The context is built with the Task SDK's own classes (``TriggeringAssetEventsAccessor`` of
``AssetEventDagRunReferenceResult``), as the task runner builds it for an asset-triggered run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

from mlops_provider.operators.retraining import RetrainingPolicyOperator

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(uri: str, minute: int, extra: dict, dag: str | None = "monitoring", alias: str | None = None):
    return AssetEventDagRunReferenceResult(
        asset={"name": uri, "uri": uri, "extra": {}},
        extra=extra,
        source_task_id="check" if dag else None,
        source_dag_id=dag,
        source_run_id=f"run-{minute}" if dag else None,
        source_map_index=-1 if dag else None,
        source_aliases=[{"name": alias}] if alias else [],
        timestamp=T0 + timedelta(minutes=minute),
    )


class FakeTI:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def context(run_id: str, events: list, run_type: str = "asset_triggered"):
    return {
        "run_id": run_id,
        "ti": FakeTI(),
        "dag_run": SimpleNamespace(run_type=run_type, run_after=T0),
        "triggering_asset_events": TriggeringAssetEventsAccessor.build(events),
        "inlet_events": None,
    }


def test_burst_of_drift_and_decay_events_gives_one_retraining_with_all_reasons(tmp_path):
    events = [
        event("mlops://churn/drift", 1, {"batch_uri": "/l/b1.csv", "summary": "b1 drifted"}, alias="mlops_drift__churn"),
        event("mlops://churn/drift", 2, {"batch_uri": "/l/b2.csv", "summary": "b2 drifted"}, alias="mlops_drift__churn"),
        event("mlops://churn/performance_decay", 3, {"reason": "performance_decay", "metric": "f1", "drop": 0.1}),
    ]
    op = RetrainingPolicyOperator(task_id="policy", model_name="churn", cooldown=3600,
                                  ledger_path=str(tmp_path / "l.sqlite3"))
    ctx = context("run-1", events)
    result = op.execute(ctx)
    # each drift event is listed under its asset AND its alias by the accessor: still 3 reasons
    assert result["retrain"] and result["merged_event_count"] == 3
    assert result["kinds"] == ["drift", "performance_decay"]
    assert [r["details"].get("batch_uri") for r in result["reasons"][:2]] == ["/l/b1.csv", "/l/b2.csv"]
    assert ctx["ti"].pushed["decision"] == result
    assert len(json.dumps(result)) < 20_000

    # the next drift run inside the cooldown is skipped, with the reason in the message and in XCom
    later = context("run-2", [event("mlops://churn/drift", 30, {"batch_uri": "/l/b3.csv"})])
    with pytest.raises(AirflowSkipException, match="cooldown"):
        op.execute(later)
    # its event (timestamped before run-1 decided) is covered by run-1's retraining, not deferred
    assert later["ti"].pushed["decision"]["verdict"] == "covered"


def test_scheduled_run_is_a_reason(tmp_path):
    op = RetrainingPolicyOperator(task_id="policy", model_name="m", ledger_path=str(tmp_path / "l.sqlite3"))
    result = op.execute(context("scheduled__x", [], run_type="scheduled"))
    assert result["retrain"] and result["kinds"] == ["schedule"]


class FakeInletQuery:
    """Stands in for the Task SDK's ``inlet_events[asset]`` query (it needs the supervisor to run)."""

    def __init__(self, events):
        self.events = events
        self.after_value = None

    def after(self, value):
        self.after_value = value
        return self

    def limit(self, n):
        return self.events[:n]


def test_watch_recovers_events_the_scheduler_did_not_hand_over(tmp_path):
    """Events of the watched assets since the last retraining are merged even if no run consumed them."""
    from airflow.sdk import Asset

    drift = Asset("mlops://churn/drift")
    ignored = event("mlops://churn/drift", 5, {"batch_uri": "/l/ignored.csv"})
    query = FakeInletQuery([ignored])
    op = RetrainingPolicyOperator(task_id="policy", model_name="churn", cooldown=0, watch=[drift],
                                  ledger_path=str(tmp_path / "l.sqlite3"))
    assert drift in op.inlets
    first = context("run-1", [event("mlops://churn/drift", 1, {"batch_uri": "/l/b1.csv"})])
    first["inlet_events"] = {drift: FakeInletQuery([])}
    op.execute(first)
    second = context("run-2", [event("mlops://churn/drift", 9, {"batch_uri": "/l/b9.csv"})])
    second["inlet_events"] = {drift: query}
    result = op.execute(second)
    assert query.after_value is not None  # asked only for events since the last retraining
    assert [r["details"]["batch_uri"] for r in result["reasons"]] == ["/l/ignored.csv", "/l/b9.csv"]


def test_run_type_enum_of_the_task_sdk(tmp_path):
    """The Task SDK hands ``dag_run.run_type`` as a ``DagRunType`` enum (regression: it was compared as str)."""
    from airflow.utils.types import DagRunType

    op = RetrainingPolicyOperator(task_id="policy", model_name="m", cooldown=0,
                                  ledger_path=str(tmp_path / "l.sqlite3"))
    assert op.execute(context("manual__1", [], run_type=DagRunType.MANUAL))["kinds"] == ["manual"]
    assert op.execute(context("scheduled__1", [], run_type=DagRunType.SCHEDULED))["kinds"] == ["schedule"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cooldown": -1}, r"cooldown must be a number >= 0; got -1"),
        ({"cooldown": "6h"}, r"cooldown must be a number >= 0; got '6h'"),
        ({"cooldown": timedelta(hours=-1)}, r"cooldown \(seconds\) must be a number >= 0; got -3600.0"),
        ({"watch": "mlops://churn/drift"}, r"watch must be a list of Assets; got str"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs, match):
    from mlops_provider.exceptions import MlopsConfigurationError

    with pytest.raises(MlopsConfigurationError, match=match):
        RetrainingPolicyOperator(task_id="policy", model_name="churn", **kwargs)
