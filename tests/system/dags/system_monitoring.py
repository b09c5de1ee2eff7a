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

with DAG(dag_id="system_monitoring", schedule=[landing], catchup=False, tags=["system-test"]):

    @task(outlets=[AssetAlias(drift_asset_alias(MODEL))])
    def check_new_batches(**context):
        from mlops_provider.operators.drift import run_drift_check

        verdicts = []
        for events in context["triggering_asset_events"].values():
            for event in events:  # several batches may have been merged into this run
                payload = event.extra["payload"]
                assert payload["status"] == "success", payload
                summary = run_drift_check(REFERENCE_PROFILE, payload["batch_uri"]).result.to_summary()
                verdicts.append(
                    {
                        "batch_uri": payload["batch_uri"],
                        "dataset_drift": summary["dataset_drift"],
                        "share_of_drifted_columns": summary["share_of_drifted_columns"],
                    }
                )
                if summary["dataset_drift"]:
                    context["outlet_events"][AssetAlias(drift_asset_alias(MODEL))].add(
                        Asset(drift_asset_uri(MODEL)),
                        extra={
                            "reason": "drift",
                            "batch_uri": payload["batch_uri"],
                            "share_drifted": summary["share_of_drifted_columns"],
                            "summary": f"{summary['number_of_drifted_columns']} of "
                            f"{summary['number_of_columns']} columns drifted in {payload['batch_uri']}",
                        },
                    )
        return verdicts

    check_new_batches()
