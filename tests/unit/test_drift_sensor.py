"""DriftSensor: TaskDeferred assertion, execute_complete paths, poke mode, real files and a real ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, TaskDeferred

from mlops_provider.core.batches import BatchLedger, discover_batches
from mlops_provider.core.drift import build_profile
from mlops_provider.exceptions import (
    DatasetError,
    MlopsConfigurationError,
    MlopsProviderError,
    TriggerEventError,
)
from mlops_provider.sensors.drift import DriftSensor, default_deferrable
from mlops_provider.triggers.batch import BatchArrivalTrigger

CONTEXT = {"run_id": "manual__test"}


def frame(seed: int, shift: float = 0.0, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "z": rng.normal(10 + shift, 2.0, n),
            "c": rng.choice(["a", "b", "c"] if not shift else ["c", "d"], n),
        }
    )


def land(folder: Path, name: str, df: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    df.to_csv(tmp, index=False)
    os.replace(tmp, folder / name)
    return folder / name


@pytest.fixture
def setup(tmp_path):
    ref = tmp_path / "reference.csv"
    frame(0).to_csv(ref, index=False)
    landing = tmp_path / "landing"
    return ref, landing


def sensor(ref, landing, **kw) -> DriftSensor:
    kw.setdefault("deferrable", True)
    kw.setdefault("consumer", "test.sensor")
    return DriftSensor(task_id="wait_for_drift", location=f"{landing}/*.csv", reference=str(ref),
                       poke_interval=0.1, **kw)


def event_for(path: Path, consumer: str = "test.sensor") -> dict:
    (batch,) = [b for b in discover_batches(str(path.parent)) if b.uri == str(path)]
    return BatchArrivalTrigger(location=f"{path.parent}/*.csv", consumer=consumer)._payload(batch)


def test_deferrable_by_default_honouring_the_environment(monkeypatch, setup):
    ref, landing = setup
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    assert default_deferrable() is True
    assert DriftSensor(task_id="s", location=str(landing), reference=str(ref)).deferrable is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    assert DriftSensor(task_id="s", location=str(landing), reference=str(ref)).deferrable is False
    assert DriftSensor(task_id="s", location=str(landing), reference=str(ref), deferrable=True).deferrable is True


def test_execute_defers_to_batch_arrival_trigger(setup):
    ref, landing = setup
    s = sensor(ref, landing, timeout=300)
    with pytest.raises(TaskDeferred) as exc:
        s.execute(CONTEXT)
    deferred = exc.value
    assert isinstance(deferred.trigger, BatchArrivalTrigger)
    assert deferred.method_name == "execute_complete"
    assert deferred.trigger.location == f"{landing}/*.csv" and deferred.trigger.consumer == "test.sensor"
    assert 299 <= deferred.timeout.total_seconds() <= 300
    assert deferred.kwargs["checked"] == [] and deferred.kwargs["deadline"] > time.time()
    assert 8 < deferred.trigger.not_before - time.time() <= 10  # resume_settle_seconds (race guard)
    json.dumps(deferred.trigger.serialize()[1])


def test_no_drift_defers_again_and_claims_the_batch(setup):
    ref, landing = setup
    path = land(landing, "b1.csv", frame(1))
    s = sensor(ref, landing, timeout=300)
    with pytest.raises(TaskDeferred) as exc:
        s.execute_complete(CONTEXT, event=event_for(path), deadline=time.time() + 300, checked=[], cycles=0)
    assert exc.value.method_name == "execute_complete"
    assert exc.value.kwargs["cycles"] == 1 and len(exc.value.kwargs["checked"]) == 1
    ledger = BatchLedger(str(landing / ".mlops_batch_ledger.sqlite3"))
    (hist,) = ledger.history("test.sensor")
    assert hist["uri"] == str(path) and hist["info"]["drift"] is False


def test_drift_succeeds_with_small_json_summary(setup):
    ref, landing = setup
    path = land(landing, "b2.csv", frame(2, shift=3.0))
    s = sensor(ref, landing)
    result = s.execute_complete(CONTEXT, event=event_for(path), deadline=None, checked=["abc"], cycles=4)
    assert result["drift"] is True and result["dataset_drift"] is True
    assert result["batch_uri"] == str(path) and result["defer_cycles"] == 5
    assert set(result["drifted_columns"]) == {"x", "z", "c"}
    assert result["checked_without_drift"] == ["abc"]
    assert len(json.dumps(result)) < 10_000


def test_reference_profile_json_is_accepted(setup, tmp_path):
    _, landing = setup
    profile = build_profile(frame(0)).save(tmp_path / "profile.json")
    path = land(landing, "b2.csv", frame(2, shift=3.0))
    s = sensor(profile, landing)
    assert s.execute_complete(CONTEXT, event=event_for(path))["drift"] is True


@pytest.mark.parametrize(
    "event",
    [None, "boom", {"status": "weird"}, {"status": "success"}, {"status": "success", "batch_uri": "/x"}],
)
def test_malformed_events_are_rejected_without_retry(setup, event):
    ref, landing = setup
    with pytest.raises(TriggerEventError, match="malformed|lacks") as exc:
        sensor(ref, landing).execute_complete(CONTEXT, event=event)
    assert isinstance(exc.value, AirflowFailException)  # a retry cannot fix a malformed event


def test_error_event_fails_the_task_retryable_only_when_transient(setup):
    ref, landing = setup
    with pytest.raises(MlopsProviderError, match="failed 5 times") as exc:  # transport: retried
        sensor(ref, landing).execute_complete(
            CONTEXT, event={"status": "error", "message": "listing x failed 5 times", "retryable": True}
        )
    assert not isinstance(exc.value, AirflowFailException)
    with pytest.raises(MlopsConfigurationError, match="cannot list"):  # misconfiguration: not retried
        sensor(ref, landing).execute_complete(
            CONTEXT, event={"status": "error", "message": "cannot list x", "retryable": False}
        )


async def _first_event(trigger):
    async for event in trigger.run():
        return event.payload
    return None


def test_trigger_error_events_say_whether_a_retry_helps(tmp_path):
    """The real trigger on a location of an unknown protocol (a bad spec): its error event is not retried."""
    import asyncio

    location = "nosuchscheme://bucket/landing/*.csv"
    trigger = BatchArrivalTrigger(location=location, consumer="c", ledger_path=str(tmp_path / "l.db"),
                                  poll_interval=0.05)
    payload = asyncio.run(asyncio.wait_for(_first_event(trigger), 10))
    assert payload["status"] == "error" and payload["retryable"] is False, payload
    with pytest.raises(MlopsConfigurationError, match="Protocol not known"):
        DriftSensor(task_id="s", location=location, reference="r.json").execute_complete(CONTEXT, event=payload)


def test_deadline_passed_raises_sensor_timeout(setup):
    ref, landing = setup
    path = land(landing, "b1.csv", frame(1))
    with pytest.raises(AirflowSensorTimeout):
        sensor(ref, landing).execute_complete(CONTEXT, event=event_for(path), deadline=time.time() - 1)


def test_unreadable_batch_is_a_dataset_error_and_stays_unclaimed(setup):
    ref, landing = setup
    landing.mkdir(parents=True)
    path = landing / "bad.csv"
    path.write_bytes(b"")  # empty file: no columns
    with pytest.raises(DatasetError):
        sensor(ref, landing).execute_complete(CONTEXT, event=event_for(path))
    assert BatchLedger(str(landing / ".mlops_batch_ledger.sqlite3")).history("test.sensor") == []


def test_poke_mode(setup):
    ref, landing = setup
    s = sensor(ref, landing, deferrable=False, mode="poke")
    with pytest.raises(MlopsConfigurationError, match="does not exist"):
        s.poke(CONTEXT)  # a missing landing folder fails (no retry) rather than wait for ever
    landing.mkdir(parents=True)
    assert s.poke(CONTEXT) is False  # an empty folder: wait
    land(landing, "b1.csv", frame(1))
    assert s.poke(CONTEXT) is False  # no drift: claimed, keep waiting
    os.utime(landing / "b1.csv", (1, 1))  # (older than the next batch)
    land(landing, "b2.csv", frame(2, shift=3.0))
    result = s.poke(CONTEXT)
    assert result.is_done and result.xcom_value["batch_uri"] == str(landing / "b2.csv")
    assert s.poke(CONTEXT) is False  # never the same batch twice


def test_reschedule_mode_is_not_deferrable(setup):
    ref, landing = setup
    s = sensor(ref, landing, deferrable=False, mode="reschedule")
    assert s.reschedule is True and s.deferrable is False


def test_sensor_and_trigger_modules_import_nothing_heavy():
    code = (
        "import sys; import mlops_provider.sensors.drift, mlops_provider.triggers.batch, "
        "mlops_provider.operators.retraining; "
        "heavy = [m for m in ('pandas','numpy','scipy','sklearn','mlflow','great_expectations','evidently') "
        "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_retry_defaults_do_not_override_the_dag_default_args(setup):
    from datetime import timedelta

    from airflow.sdk import DAG

    ref, landing = setup
    with DAG("with_defaults", schedule=None, default_args={"retries": 5}):
        from_dag = DriftSensor(task_id="a", location=str(landing), reference=str(ref))
        explicit = DriftSensor(task_id="b", location=str(landing), reference=str(ref), retries=0)
    with DAG("without_defaults", schedule=None):
        default = DriftSensor(task_id="c", location=str(landing), reference=str(ref))
    assert (from_dag.retries, explicit.retries, default.retries) == (5, 0, 2)
    assert default.retry_delay == timedelta(seconds=10)


# ------------------------------------------------------------------ issue 13: batches that lack a column


@pytest.mark.parametrize("deferrable", [True, False])
@pytest.mark.parametrize("dropped", [["c"], ["x", "z"]])
def test_batch_missing_a_reference_column_fails_and_stays_unclaimed(setup, deferrable, dropped):
    """Checked on the remaining columns, such a batch used to be reported 'no drift' and claimed."""
    ref, landing = setup
    path = land(landing, "partial.csv", frame(1).drop(columns=dropped))  # no drift on the columns left
    s = sensor(ref, landing, deferrable=deferrable, mode="poke")
    with pytest.raises(DatasetError, match=r"lacks reference column\(s\) \[.*'" + dropped[0] + "'.*unclaimed"):
        if deferrable:
            s.execute_complete(CONTEXT, event=event_for(path))
        else:
            s.poke(CONTEXT)
    assert BatchLedger(str(landing / ".mlops_batch_ledger.sqlite3")).history("test.sensor") == []


def test_batch_missing_a_column_of_a_stored_profile_with_integer_labels_fails(tmp_path):
    """Same with a profile reference (the stored path) built from a frame with integer column labels."""
    landing = tmp_path / "landing"
    profile = build_profile(frame(0).set_axis([0, 1, 2], axis=1)).save(tmp_path / "profile.json")
    path = land(landing, "b.csv", frame(1).set_axis(["0", "1", "2"], axis=1).drop(columns=["2"]))
    with pytest.raises(DatasetError, match=r"lacks reference column\(s\) \['2'\]"):
        sensor(profile, landing).execute_complete(CONTEXT, event=event_for(path))
    assert BatchLedger(str(landing / ".mlops_batch_ledger.sqlite3")).history("test.sensor") == []
    complete = land(landing, "c.csv", frame(2).set_axis(["0", "1", "2"], axis=1))
    with pytest.raises(TaskDeferred):  # all columns there: checked (no drift), claimed, waits again
        sensor(profile, landing).execute_complete(CONTEXT, event=event_for(complete), deadline=time.time() + 60)


def test_batch_read_with_the_wrong_delimiter_fails_naming_both_column_sets(setup):
    ref, landing = setup
    landing.mkdir(parents=True)
    path = landing / "semicolons.csv"
    frame(1).to_csv(path, index=False, sep=";")
    with pytest.raises(DatasetError, match=r"shares no column.*'x', 'z', 'c'.*'x;z;c'.*delimiter"):
        sensor(ref, landing).execute_complete(CONTEXT, event=event_for(path))
    assert BatchLedger(str(landing / ".mlops_batch_ledger.sqlite3")).history("test.sensor") == []


def test_extra_batch_column_is_named_in_the_log_not_an_error(setup, capsys):
    ref, landing = setup
    path = land(landing, "wider.csv", frame(1).assign(new_feature=1.0))
    with pytest.raises(TaskDeferred):
        sensor(ref, landing).execute_complete(CONTEXT, event=event_for(path), deadline=time.time() + 60)
    line = next(x for x in capsys.readouterr().out.splitlines() if "no drift" in x)  # the task log (structlog)
    assert "all 3 columns tested; 1 batch column(s) not in the reference: new_feature" in line


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drift_share": 0}, "drift_share must be a number in (0, 1]"),
        ({"drift_share": 1.5}, "drift_share must be a number in (0, 1]"),
        ({"column_methods": {"x": "kolmogorov"}}, "column_methods['x'] must be one of 'abs_text_content_drift', 'chisquare', 'jensenshannon'"),
        ({"column_thresholds": {"x": -0.1}}, "column_thresholds['x'] must be a number >= 0"),
        ({"column_thresholds": {"x": "high"}}, "column_thresholds['x'] must be a number"),
        ({"min_age_seconds": -1}, "min_age_seconds must be a number >= 0"),
        ({"resume_settle_seconds": float("nan")}, "resume_settle_seconds must be a number"),
        ({"deferrable": "yes"}, "deferrable must be one of True, False or None"),
        ({"poke_interval": 0}, "poke_interval must be a number > 0"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(setup, kwargs, message):
    ref, landing = setup
    kw = {"task_id": "s", "location": str(landing), "reference": str(ref), "deferrable": True, **kwargs}
    with pytest.raises(MlopsConfigurationError) as exc:
        DriftSensor(**kw)
    assert message in str(exc.value)


def test_templated_and_valid_arguments_pass_at_parse_time(setup):
    ref, landing = setup
    DriftSensor(task_id="s", location=str(landing), reference=str(ref), drift_share="{{ params.share }}",
                column_methods={"x": "psi"}, column_thresholds={"x": "{{ params.t }}"}, min_age_seconds=0)
    DriftSensor(task_id="p", location=str(landing), reference=str(ref), deferrable=False, mode="poke",
                poke_interval=0)  # poke mode may poll back to back


@pytest.mark.parametrize(("kwargs", "message"), [({"poll_interval": 0}, "poll_interval must be a number > 0"),
                                                  ({"min_age_seconds": -5}, "min_age_seconds must be a number >= 0")])
def test_batch_triggers_check_their_numbers(kwargs, message):
    from mlops_provider.triggers.batch import NewBatchTrigger

    for cls in (NewBatchTrigger, BatchArrivalTrigger):
        with pytest.raises(MlopsConfigurationError, match=message.replace("(", r"\(")):
            cls(location="/data/landing", consumer="c", **kwargs)
