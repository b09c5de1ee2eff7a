"""Bench: a row-partitioned drift check over Celery workers, 1 worker vs 2 workers, same data.

Starts the process twin of docker-compose.yml (``scripts/stack``: PostgreSQL 127.0.0.1:5432 and Redis
127.0.0.1:6379 must run) with one task slot per worker, writes a current batch of ``--rows`` rows
(Parquet, one row group per partition) and its reference profile, then runs the DAG
``stack_drift_scaleout`` (tests/system/stack_dags) with ``--partitions`` mapped ``profile_partition``
tasks: first with both workers, then with worker 2 stopped, alternating ``--repeats`` times.
Prints, per configuration, the median wall-clock of the DAG run and of its mapped phase (first
mapped task start to last mapped task end), the speed-up, and checks that every run's merged
verdict and scores equal ``check_drift`` on the whole batch in one pass.

Usage: ``.venv/bin/python bench/scale.py [--rows 2000000] [--partitions 4] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from stack_twin import Stack, free_port, generate_env  # noqa: E402

DAG_ID = "stack_drift_scaleout"


def make_data(folder: Path, rows: int, partitions: int) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops_provider.core.drift import build_profile

    def frame(seed: int, n: int, shift: float) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        data = {f"num_{i}": rng.normal(shift * (i % 2), 1.0 + i / 10, n) for i in range(6)}
        data["count"] = rng.poisson(3 + shift, n)
        data["segment"] = rng.choice(["a", "b", "c", "d"], n).astype(object)
        return pd.DataFrame(data)

    folder.mkdir(parents=True, exist_ok=True)
    reference = folder / "reference_profile.json"
    build_profile(frame(0, min(rows, 200_000), 0.0)).save(reference)
    current = folder / "current.parquet"
    table = pa.Table.from_pandas(frame(1, rows, 0.3), preserve_index=False)
    pq.write_table(table, current, row_group_size=-(-rows // partitions))
    return reference, current


def same_result(got: dict, expected: dict) -> bool:
    """Same verdicts; scores equal up to the last bits (category order follows the hash seed)."""
    import math

    return (got["dataset_drift"] == expected["dataset_drift"] and got["drifted_columns"] == expected["drifted_columns"]
            and got["scores"].keys() == expected["scores"].keys()
            and all(math.isclose(got["scores"][k], expected["scores"][k], rel_tol=1e-12, abs_tol=1e-15)
                    for k in expected["scores"]))


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_once(stack: Stack, params: dict) -> dict:
    run_id = stack.trigger(DAG_ID, params)
    state = stack.wait_run(DAG_ID, run_id, timeout=1800)
    run = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
    tis = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
    mapped = [t for t in tis if t["task_id"] == "profile_partition"]
    if state != "success":
        raise RuntimeError(f"{run_id}: {state}: {[(t['task_id'], t['state']) for t in tis]}")
    xcom = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/merge_and_check/xcomEntries/"
                            "return_value?deserialize=true")["value"]
    return {
        "run": _ts(run["end_date"]) - _ts(run["start_date"]),
        "mapped": max(_ts(t["end_date"]) for t in mapped) - min(_ts(t["start_date"]) for t in mapped),
        "result": xcom,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    tag = uuid.uuid4().hex[:8]
    env = generate_env(
        work / "stack.env", POSTGRES_USER="mlops_stack", AIRFLOW_DB_NAME=f"bench_airflow_{tag}",
        MLFLOW_DB_NAME=f"bench_mlflow_{tag}", REDIS_DB=str(1 + int(tag, 16) % 15), AIRFLOW_API_PORT=str(free_port()),
        MLFLOW_PORT=str(free_port()), MLFLOW_WORKERS="1", AIRFLOW_WORKER_CONCURRENCY="1",
    )
    dags = work / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "tests" / "system" / "stack_dags" / "stack_drift_scaleout.py", dags)
    t0 = time.perf_counter()
    reference, current = make_data(work / "data", args.rows, args.partitions)
    print(f"data: {args.rows} rows x 8 columns in {args.partitions} row groups ({time.perf_counter() - t0:.1f}s)")

    import pandas as pd

    from mlops_provider.core.drift import ReferenceProfile, check_drift

    t0 = time.perf_counter()
    single = check_drift(ReferenceProfile.load(reference), pd.read_parquet(current)).to_summary()
    single_seconds = time.perf_counter() - t0
    expected = {"dataset_drift": single["dataset_drift"], "drifted_columns": single["drifted_columns"],
                "scores": {n: c["score"] for n, c in single["columns"].items()}}

    stack = Stack(env, work / "state", dags, extra_env={"AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5"})
    times: dict[int, list[dict]] = {1: [], 2: []}
    try:
        t0 = time.perf_counter()
        stack.up()
        print(f"stack up in {time.perf_counter() - t0:.0f}s (2 Celery workers, 1 task slot each)")
        stack.wait_dag(DAG_ID)
        params = {"reference_profile": str(reference), "current": str(current), "partitions": args.partitions,
                  "work_dir": str(work / "partitions")}
        run_once(stack, params)  # warm-up (DAG serialisation, page cache)
        for _ in range(args.repeats):
            for workers in (2, 1):
                if workers == 1:
                    stack.kill("airflow-worker-2", sig=15)
                else:
                    if stack.procs["airflow-worker-2"].poll() is not None:
                        stack.restart("airflow-worker-2")
                        stack.wait_healthy(300)
                result = run_once(stack, params)
                got = {k: result["result"][k] for k in ("dataset_drift", "drifted_columns", "scores")}
                if not same_result(got, expected):
                    raise AssertionError(f"merged result differs from the single pass: {got} != {expected}")
                times[workers].append(result)
                print(f"  {workers} worker(s): run {result['run']:.1f}s, mapped phase {result['mapped']:.1f}s, "
                      f"partition seconds {result['result']['partition_seconds']}")
    finally:
        stack.down(volumes=True)
        shutil.rmtree(work, ignore_errors=True)

    med = {w: (statistics.median(r["run"] for r in rs), statistics.median(r["mapped"] for r in rs))
           for w, rs in times.items()}
    print(f"\nsingle pass in one process (check_drift on the whole batch): {single_seconds:.1f}s")
    print("| workers | DAG run (median s) | mapped phase (median s) |")
    print("|---|---|---|")
    for w in (1, 2):
        print(f"| {w} | {med[w][0]:.1f} | {med[w][1]:.1f} |")
    print(f"speed-up 1 -> 2 workers: DAG run x{med[1][0] / med[2][0]:.2f}, mapped phase x{med[1][1] / med[2][1]:.2f}")
    print("merged verdicts identical to the single pass in every run, scores equal to 1e-12: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
