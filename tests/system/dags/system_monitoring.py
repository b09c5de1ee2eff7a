"""Monitoring DAG scheduled by the arrival of a batch (AssetWatcher + NewBatchTrigger); emits drift events."""

from __future__ import annotations

from _common import LANDING, MODEL, REFERENCE_PROFILE
from airflow.sdk import DAG, Asset, AssetAlias, AssetWatcher, task

from mlops_provider.operators.drift import drift_asset_alias, drift_asset_uri
from mlops_provider.triggers.batch import NewBatchTrigger

# [START howto_asset_watcher_new_batch]
landing = Asset(
    name="system_landing",
    uri=f"file://{LANDING}",
    watchers=[
        AssetWatcher(
            name="system_landing_watcher",
            trigger=NewBatchTrigger(location=f"{LANDING}/*.csv", consumer="system_monitoring", poll_interval=1.0),
        )
    ],
)
# [END howto_asset_watcher_new_batch]

# max_active_runs=1: two concurrent runs would both see a batch as not yet checked (the ledger records
# a batch after its check, so that a crash never loses one).
with DAG(dag_id="system_monitoring", schedule=[landing], catchup=False, max_active_runs=1, tags=["system-test"]):

    @task(outlets=[AssetAlias(drift_asset_alias(MODEL))])
    def check_new_batches(**context):
        """
        Check every landed batch this DAG has not checked yet, not only the triggering ones.

        The Asset events are the wake-up call; the ledger is the source of truth.  Airflow 3.3.2 can
        leave an event of a burst unscheduled (see docs/drift-fires-retraining.md), and its batch is
        then checked by the next run.  A batch is recorded as checked only after its check (retry-safe).
        """
        from mlops_provider.core.batches import BatchLedger, default_ledger_path, find_new_batches
        from mlops_provider.operators.drift import run_drift_check

        location = f"{LANDING}/*.csv"
        ledger = BatchLedger(default_ledger_path(location))
        triggering = {
            event.extra["payload"]["batch_uri"]
            for events in context["triggering_asset_events"].values()
            for event in events
            if event.extra.get("payload", {}).get("status") == "success"
        }
        verdicts = []
        for batch in find_new_batches(location, ledger, "system_monitoring.checked"):
            summary = run_drift_check(REFERENCE_PROFILE, batch.uri).result.to_summary()
            verdicts.append(
                {
                    "batch_uri": batch.uri,
                    "triggering": batch.uri in triggering,
                    "dataset_drift": summary["dataset_drift"],
                    "share_of_drifted_columns": summary["share_of_drifted_columns"],
                }
            )
            if summary["dataset_drift"]:
                context["outlet_events"][AssetAlias(drift_asset_alias(MODEL))].add(
                    Asset(drift_asset_uri(MODEL)),
                    extra={
                        "reason": "drift",
                        "batch_uri": batch.uri,
                        "share_drifted": summary["share_of_drifted_columns"],
                        "summary": f"{summary['number_of_drifted_columns']} of "
                        f"{summary['number_of_columns']} columns drifted in {batch.uri}",
                    },
                )
            ledger.claim("system_monitoring.checked", batch, {"drift": summary["dataset_drift"]})
        return verdicts

    check_new_batches()
