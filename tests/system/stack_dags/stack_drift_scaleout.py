"""Scale-out drift check: row partitions profiled by mapped tasks (across Celery workers), merged exactly.

``plan`` splits the current batch's Parquet row groups into ``partitions`` contiguous ranges;
``profile_partition`` (dynamic task mapping, one task per range) writes each range's column statistics
to a file and returns its path (small XCom); ``merge_and_check`` merges them in row order and runs the
drift check - the summary is identical to ``check_drift`` on the whole batch
(:mod:`mlops_provider.core.drift_partitions`).  Used by tests/system/test_stack_twin.py and bench/scale.py.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="stack_drift_scaleout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "reference_profile": Param("/tmp/reference_profile.json", type="string"),
        "current": Param("/tmp/current.parquet", type="string", description="Parquet with several row groups"),
        "partitions": Param(4, type="integer", minimum=1),
        "work_dir": Param("/tmp/drift-partitions", type="string"),
    },
    tags=["stack-test"],
):

    @task
    def plan(current: str, partitions: int) -> list[dict]:
        import pyarrow.parquet as pq

        from mlops_provider.core.drift_partitions import partition_bounds

        groups = pq.ParquetFile(current).metadata.num_row_groups
        return [{"index": i, "row_groups": list(range(a, b))}
                for i, (a, b) in enumerate(partition_bounds(groups, int(partitions)))]

    @task
    def profile_partition(spec: dict, current: str, reference_profile: str, work_dir: str, **context) -> dict:
        import os
        import time

        import pyarrow.parquet as pq

        from mlops_provider.core.drift import ReferenceProfile
        from mlops_provider.core.drift_partitions import partition_stats, save_partition

        started = time.perf_counter()
        columns = list(ReferenceProfile.load(reference_profile).columns)
        frame = pq.ParquetFile(current).read_row_groups(spec["row_groups"]).to_pandas()
        part = partition_stats(frame, [c for c in columns if c in frame.columns])
        part["columns"] = [str(c) for c in frame.columns]
        path = save_partition(part, f"{work_dir}/{context['run_id'].replace(':', '_')}/part-{spec['index']:04d}.json")
        return {"index": spec["index"], "path": path, "rows": len(frame), "pid": os.getpid(),
                "seconds": round(time.perf_counter() - started, 3)}

    @task
    def merge_and_check(parts: list[dict], reference_profile: str) -> dict:
        from mlops_provider.core.drift import ReferenceProfile
        from mlops_provider.core.drift_partitions import check_drift_merged, load_partition

        ordered = sorted(parts, key=lambda p: p["index"])
        result = check_drift_merged(ReferenceProfile.load(reference_profile),
                                    [load_partition(p["path"]) for p in ordered])
        summary = result.to_summary()
        return {
            "dataset_drift": summary["dataset_drift"],
            "share_of_drifted_columns": summary["share_of_drifted_columns"],
            "drifted_columns": summary["drifted_columns"],
            "scores": {name: col["score"] for name, col in summary["columns"].items()},
            "current_rows": summary["current_rows"],
            "partitions": len(ordered),
            "partition_seconds": [p["seconds"] for p in ordered],
        }

    specs = plan("{{ params.current }}", "{{ params.partitions }}")
    parts = profile_partition.partial(
        current="{{ params.current }}", reference_profile="{{ params.reference_profile }}",
        work_dir="{{ params.work_dir }}",
    ).expand(spec=specs)
    merge_and_check(parts, "{{ params.reference_profile }}")
