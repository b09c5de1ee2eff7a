"""Retraining policy: cooldown, burst dedupe, reasons of merged events, idempotent retries (pure core)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from mlops_provider.core.retraining import (
    RetrainingLedger,
    merge_reasons,
    reason_from_event,
    synthetic_reason,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()


def drift_event(i: int, at: float, uri: str = "mlops://churn/drift"):
    return reason_from_event(
        asset_uri=uri,
        asset_name=uri,
        extra={"share_drifted": 0.5, "batch_uri": f"/landing/b{i}.csv", "summary": f"batch {i} drifted"},
        timestamp=datetime.fromtimestamp(at, tz=UTC),
        source_dag_id="monitoring",
        source_run_id=f"run{i}",
        source_task_id="drift_check",
        source_map_index=-1,
    )


def test_kinds_and_identity():
    drift = drift_event(1, T0)
    decay = reason_from_event(asset_uri="mlops://churn/performance_decay", asset_name="decay", extra={},
                              timestamp=T0, source_dag_id="perf", source_run_id="r", source_task_id="t")
    watcher = reason_from_event(asset_uri="file:///landing", asset_name="landing",
                                extra={"from_trigger": True, "payload": {"message": "new batch x"}}, timestamp=T0)
    assert (drift.kind, decay.kind, watcher.kind) == ("drift", "performance_decay", "new_training_data")
    assert watcher.source == "asset watcher" and watcher.summary == "new batch x"
    # the same event seen twice (asset + alias, or a task retry) is one reason
    assert len(merge_reasons([drift, drift_event(1, T0), decay])) == 2
    json.dumps([r.to_dict() for r in merge_reasons([drift, decay, watcher])])


def test_burst_merged_into_one_run_lists_every_reason(tmp_path):
    ledger = RetrainingLedger(str(tmp_path / "ledger.sqlite3"))
    burst = [drift_event(i, T0 + i) for i in range(5)]
    decision = ledger.decide("churn", "run-a", burst, cooldown_seconds=3600, now=T0 + 10)
    assert decision.retrain and decision.verdict == "retrain"
    assert decision.merged_event_count == 5
    assert [r.details["batch_uri"] for r in decision.reasons] == [f"/landing/b{i}.csv" for i in range(5)]
    payload = decision.to_dict()
    assert len(json.dumps(payload)) < 20_000 and payload["kinds"] == ["drift"]


def test_second_run_of_the_same_burst_is_covered_not_retrained(tmp_path):
    """Airflow may create two runs for one burst: the second is deduped into the first."""
    ledger = RetrainingLedger(str(tmp_path / "ledger.sqlite3"))
    first = ledger.decide("churn", "run-a", [drift_event(0, T0)], cooldown_seconds=3600, now=T0 + 5)
    second = ledger.decide("churn", "run-b", [drift_event(1, T0 + 2)], cooldown_seconds=3600, now=T0 + 6)
    assert first.retrain and not second.retrain
    assert second.verdict == "covered" and second.last_retraining_run_id == "run-a"
    assert "merged into it" in second.message
    assert {c["run_id"] for c in ledger.consumed("churn")} == {"run-a"}


def test_cooldown_defers_later_events_to_the_next_retraining(tmp_path):
    ledger = RetrainingLedger(str(tmp_path / "ledger.sqlite3"))
    assert ledger.decide("churn", "r1", [drift_event(0, T0)], cooldown_seconds=3600, now=T0 + 1).retrain
    d2 = ledger.decide("churn", "r2", [drift_event(1, T0 + 600)], cooldown_seconds=3600, now=T0 + 601)
    assert not d2.retrain and d2.verdict == "cooldown" and d2.deferred_count == 1
    assert d2.cooldown_until == T0 + 1 + 3600
    # another model is not affected by churn's cooldown
    assert ledger.decide("fraud", "r2", [drift_event(1, T0 + 600)], cooldown_seconds=3600, now=T0 + 601).retrain
    # after the cooldown, a scheduled run retrains and carries the deferred drift reason with it
    sched = synthetic_reason("schedule", "r3", T0 + 7200, "periodic")
    d3 = ledger.decide("churn", "r3", [sched], cooldown_seconds=3600, now=T0 + 7200)
    assert d3.retrain
    assert [r.kind for r in d3.reasons] == ["drift", "schedule"]
    assert d3.reasons[0].details["batch_uri"] == "/landing/b1.csv"


def test_manual_run_bypasses_cooldown(tmp_path):
    ledger = RetrainingLedger(str(tmp_path / "ledger.sqlite3"))
    assert ledger.decide("churn", "r1", [drift_event(0, T0)], cooldown_seconds=3600, now=T0 + 1).retrain
    manual = synthetic_reason("manual", "r2", T0 + 60, "person")
    assert ledger.decide("churn", "r2", [manual], cooldown_seconds=3600, now=T0 + 60).retrain


def test_retry_gets_the_same_decision_and_counts_nothing_twice(tmp_path):
    ledger = RetrainingLedger(str(tmp_path / "ledger.sqlite3"))
    events = [drift_event(i, T0 + i) for i in range(3)]
    a = ledger.decide("churn", "r1", events, cooldown_seconds=0, now=T0 + 5)
    again = ledger.decide("churn", "r1", events, cooldown_seconds=0, now=T0 + 50)
    assert again.to_dict() == a.to_dict()
    # the same events handed again to a later run (e.g. recovered through inlet_events) are not new
    later = ledger.decide("churn", "r2", events, cooldown_seconds=0, now=T0 + 100)
    assert not later.retrain and later.verdict == "nothing_new"


def _versioned(kind: str, i: int, at: float, version) -> object:
    uri = f"mlops://churn/{kind}"
    return reason_from_event(asset_uri=uri, asset_name=uri, extra={"model_version": version, "summary": f"e{i}"},
                             timestamp=datetime.fromtimestamp(at, tz=UTC), source_dag_id="m",
                             source_run_id=f"r{i}", source_task_id="t", source_map_index=-1)


def test_events_about_a_replaced_version_are_dropped_and_recorded(tmp_path):
    ledger = RetrainingLedger(str(tmp_path / "l.sqlite3"))
    stale = _versioned("performance_decay", 1, T0, "3")
    current = _versioned("drift", 2, T0 + 1, 4)
    unversioned = drift_event(3, T0 + 2)
    d = ledger.decide("churn", "run-a", [stale, current, unversioned], cooldown_seconds=0, now=T0 + 10,
                      champion_version="4")
    assert d.retrain and [r.event_key for r in d.reasons] == [current.event_key, unversioned.event_key]
    assert [x["event_key"] for x in d.dropped] == [stale.event_key] and "v3" in d.dropped[0]["why"]
    assert {c["how"] for c in ledger.consumed("churn")} == {"stale", "retrained"}
    # the stale event seen again by a later run is already consumed: nothing new, not a second drop
    again = ledger.decide("churn", "run-b", [stale], cooldown_seconds=0, now=T0 + 20, champion_version=4)
    assert again.verdict == "nothing_new" and again.dropped == []
    # only stale events: no retraining, and the decision says why
    only = ledger.decide("churn", "run-c", [_versioned("performance_decay", 9, T0 + 30, 2)], cooldown_seconds=0,
                         now=T0 + 40, champion_version=4)
    assert not only.retrain and only.verdict == "stale" and "older than the champion v4" in only.message
    assert json.loads(json.dumps(only.to_dict()))["dropped"][0]["kind"] == "performance_decay"
    # without a champion version, versions are not compared
    keep = ledger.decide("churn", "run-d", [_versioned("drift", 11, T0 + 50, 1)], cooldown_seconds=0, now=T0 + 60)
    assert keep.retrain and keep.dropped == []
