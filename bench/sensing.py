"""
Sensing benchmark on a real Airflow 3 deployment (api-server, scheduler, dag-processor, triggerer).

Prints, in one run:
  1. worker slots held while sensors wait: N deferrable DriftSensors (target 0) vs a few poke-mode ones;
  2. the triggerer's CPU while the N deferred sensors wait (process tree, sampled with psutil);
  3. time from batch arrival (atomic rename into the landing folder) to drift verdict, for a few
     deferred sensors (the verdict is the sensor's success with the drift summary).

Usage: .venv/bin/python bench/sensing.py [--sensors 100] [--poke 4] [--cpu-window 30] [--arrivals 3]
Uses PostgreSQL on 127.0.0.1:5432 when available (fresh database), else SQLite.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_frame(seed: int, shift: float = 0.0, n: int = 300):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "z": rng.normal(10 + shift, 2.0, n),
            "c": rng.choice(["a", "b", "c"] if not shift else ["c", "d"], n),
        }
    )


def land(folder: Path, name: str, frame) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, folder / name)
    return time.time()


def tree_cpu_seconds(proc) -> float:
    import psutil

    root = psutil.Process(proc.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def states(cluster, dag_id, run_id) -> dict[str, int]:
    out: dict[str, int] = {}
    for ti in cluster.task_instances(dag_id, run_id):
        out[ti["state"] or "none"] = out.get(ti["state"] or "none", 0) + 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--poke", type=int, default=4)
    parser.add_argument("--cpu-window", type=float, default=30.0)
    parser.add_argument("--arrivals", type=int, default=3)
    args = parser.parse_args()

    from mlops_provider.core.drift import build_profile
    from tests.helpers.airflow_cluster import AirflowCluster

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-sensing-"))
    data = work / "data"
    data.mkdir()
    build_profile(make_frame(0, n=1000)).save(data / "reference_profile.json")
    cluster = AirflowCluster(
        work / "airflow",
        ROOT / "bench" / "dags",
        parallelism=32,
        extra_env={
            "MLOPS_BENCH_DATA": str(data),
            "MLOPS_BENCH_SENSORS": str(args.sensors),
            "MLOPS_BENCH_POKE_SENSORS": str(args.poke),
        },
    )
    t0 = time.monotonic()
    cluster.start()
    print(f"cluster up in {time.monotonic() - t0:.0f}s ({'PostgreSQL' if cluster.use_postgres else 'SQLite'}, "
          f"LocalExecutor, {os.cpu_count()} CPUs)")
    try:
        cluster.wait_dag("bench_sensing_deferrable")
        cluster.wait_dag("bench_sensing_poke")
        triggerer = cluster.procs["triggerer"]
        cpu_idle_0, wall_0 = tree_cpu_seconds(triggerer), time.monotonic()
        time.sleep(10)
        idle_cpu = (tree_cpu_seconds(triggerer) - cpu_idle_0) / (time.monotonic() - wall_0) * 100

        dag_d = "bench_sensing_deferrable"
        run_d = cluster.trigger(dag_d)
        t0 = time.monotonic()
        while True:
            st = states(cluster, dag_d, run_d)
            if st.get("deferred", 0) == args.sensors:
                break
            if time.monotonic() - t0 > 1200:
                raise TimeoutError(f"deferred sensors did not all defer: {st}")
            time.sleep(2)
        all_deferred_after = time.monotonic() - t0
        time.sleep(5)
        pool = cluster.api("GET", "/pools/default_pool")
        st_d = states(cluster, dag_d, run_d)

        cpu0, w0 = tree_cpu_seconds(triggerer), time.monotonic()
        time.sleep(args.cpu_window)
        waiting_cpu = (tree_cpu_seconds(triggerer) - cpu0) / (time.monotonic() - w0) * 100

        dag_p = "bench_sensing_poke"
        run_p = cluster.trigger(dag_p)
        t0 = time.monotonic()
        while states(cluster, dag_p, run_p).get("running", 0) < args.poke and time.monotonic() - t0 < 300:
            time.sleep(2)
        time.sleep(3)
        pool_p = cluster.api("GET", "/pools/default_pool")
        st_p = states(cluster, dag_p, run_p)

        print("\n== 1. Worker slots held while waiting")
        print(f"deferrable DriftSensor x{args.sensors}: task states {st_d}; default_pool running_slots="
              f"{pool['running_slots']} deferred_slots={pool['deferred_slots']} (all deferred "
              f"{all_deferred_after:.0f}s after the trigger of the run)")
        print(f"poke-mode DriftSensor x{args.poke} (same time): task states {st_p}; default_pool running_slots="
              f"{pool_p['running_slots'] - pool['running_slots']} added by them")

        print("\n== 2. Triggerer CPU (process tree, % of one core)")
        print(f"idle (no deferred sensor, no asset watcher): {idle_cpu:.1f}%")
        print(f"{args.sensors} deferred DriftSensors waiting, poll every 1 s, {args.cpu_window:.0f}s window: "
              f"{waiting_cpu:.1f}%")

        # stop the poke sensors' load before timing arrivals
        for ti in cluster.task_instances(dag_p, run_p):
            cluster.api("PATCH", f"/dags/{dag_p}/dagRuns/{run_p}/taskInstances/{ti['task_id']}",
                        {"new_state": "success"})

        print("\n== 3. Batch arrival -> drift verdict (deferred sensor, resume_settle_seconds=10)")
        for k in range(args.arrivals):
            task_id = f"sensor_{k:03}"
            landed = land(data / "deferred" / f"landing_{k:03}", "drifted.csv", make_frame(50 + k, shift=3.0))
            t_land = time.monotonic()
            while True:
                ti = cluster.api("GET", f"/dags/{dag_d}/dagRuns/{run_d}/taskInstances/{task_id}")
                if ti["state"] in ("success", "failed", "up_for_retry"):
                    break
                if time.monotonic() - t_land > 300:
                    raise TimeoutError(f"{task_id} still {ti['state']}")
                time.sleep(0.2)
            wall = time.monotonic() - t_land
            xcom = cluster.xcom(dag_d, run_d, task_id) if ti["state"] == "success" else {}
            print(f"{task_id}: state {ti['state']}, try {ti['try_number']}; arrival -> verdict in the worker "
                  f"{xcom.get('arrival_to_verdict_seconds')}s, arrival -> task success seen by the API {wall:.1f}s"
                  f" (landed at {landed:.0f})")
            time.sleep(2)
    finally:
        cluster.stop()
        cluster.cleanup()


if __name__ == "__main__":
    main()
