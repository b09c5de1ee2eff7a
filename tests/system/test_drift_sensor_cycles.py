"""The deferrable DriftSensor under the real triggerer: >= 50 defer/resume cycles, 0 wrongly failed tasks.

Ten sensors wait in one DAG run, each on its own landing folder.  The test drops a batch without drift
into a folder whenever that sensor has finished checking the previous one (its ledger shows the claim),
so every batch is one trigger event -> resume in a worker -> drift check -> defer again.  After five
such cycles per sensor a drifted batch ends each sensor with the drift summary in XCom.
"""

from __future__ import annotations

import time

from mlops_provider.core.batches import BatchLedger

from .conftest import land_csv, make_frame

DAG_ID = "system_drift_sensor_cycles"
N_SENSORS = 10
NO_DRIFT_BATCHES = 5  # per sensor -> 10 * (5 + 1) = 60 defer/resume cycles


def test_fifty_defer_resume_cycles(airflow_cluster, system_data):
    cluster = airflow_cluster
    cluster.wait_dag(DAG_ID)
    run_id = cluster.trigger(DAG_ID)
    folders = [system_data / "cycles" / f"landing_{i}" for i in range(N_SENSORS)]
    ledgers = [BatchLedger(str(f / ".mlops_batch_ledger.sqlite3")) for f in folders]
    consumers = [f"{DAG_ID}.sensor_{i}" for i in range(N_SENSORS)]
    dropped = [0] * N_SENSORS
    started = time.monotonic()
    deadline = started + 900
    while time.monotonic() < deadline:
        for i, folder in enumerate(folders):
            claimed = len(ledgers[i].history(consumers[i]))
            if claimed == dropped[i] and dropped[i] <= NO_DRIFT_BATCHES:
                drift = dropped[i] == NO_DRIFT_BATCHES
                frame = make_frame(100 * i + dropped[i], shift=3.0 if drift else 0.0)
                land_csv(folder, f"batch_{dropped[i]:03}.csv", frame[["x", "z", "c"]])
                dropped[i] += 1
        run = cluster.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    tis = {ti["task_id"]: ti for ti in cluster.task_instances(DAG_ID, run_id)}
    mismatches = [e for e in cluster.audit_log("state mismatch") if e.get("dag_id") == DAG_ID]
    summary = {t: (ti["state"], ti["try_number"]) for t, ti in sorted(tis.items())}
    print(f"\n{DAG_ID}: run {run['state']} in {elapsed:.0f}s; task states/tries {summary}; "
          f"'state mismatch' audit entries: {len(mismatches)}")
    assert run["state"] == "success", (summary, cluster.tail("scheduler"), cluster.tail("triggerer"))

    cycles = 0
    for i in range(N_SENSORS):
        result = cluster.xcom(DAG_ID, run_id, f"sensor_{i}")
        assert result["drift"] is True
        assert result["batch_uri"].endswith(f"landing_{i}/batch_{NO_DRIFT_BATCHES:03}.csv")
        assert len(result["checked_without_drift"]) == NO_DRIFT_BATCHES
        cycles += result["defer_cycles"]
        history = ledgers[i].history(consumers[i])
        assert len(history) == NO_DRIFT_BATCHES + 1  # every batch checked exactly once
        assert [h["info"]["drift"] for h in history] == [False] * NO_DRIFT_BATCHES + [True]
    print(f"defer/resume cycles completed: {cycles}")
    assert cycles >= 50
    wrongly_failed = [t for t, ti in tis.items() if ti["state"] != "success" or ti["try_number"] != 1]
    assert wrongly_failed == [], (summary, mismatches[:3])
