"""MLOps view: page times for a model with 50 versions and 1,000 monitored batches.

Writes a ``sqlite:///`` MLflow store shaped like the operators' output (one training run per version,
registered versions with gate and registration tags, a promotion history; per batch a validation run
and a drift run with 24 per-column scores), then times each page of the view under Airflow's own API
server app (``create_app()``, FastAPI ``TestClient``, a real JWT of the simple auth manager), several
times, and prints the median and worst time per page.  The first request of each page is reported
apart: it includes imports, the MLflow store set-up and, for the timeline, reading every monitoring run
(later requests read only the runs started since, see ``store.cached_runs``).

Usage: ``.venv/bin/python bench/ui.py [--versions 50] [--batches 1000] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "provider"))

MODEL = "bench_model"
TRAIN_DAG = "continuous_training__bench"
MONITOR_DAG = "drift_monitor__bench"


def build_store(root: Path, versions: int, batches: int) -> str:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    exp = {k: client.create_experiment(f"{MODEL}-{k}", artifact_location=str(root / k))
           for k in ("training", "validation", "monitoring")}
    client.create_registered_model(MODEL)
    history = []
    t0 = int(time.time() * 1000) - batches * 3_600_000
    for v in range(1, versions + 1):
        airflow_run = f"asset_triggered__{v}"
        run = client.create_run(exp["training"], run_name=f"train {v}", start_time=t0 + v * 60_000, tags={
            "mlops.dag_id": TRAIN_DAG, "mlops.run_id": airflow_run, "mlops.task_id": "train",
            "mlops.training_uri": f"/data/train-{v}.parquet", "mlops.training_digest": "ab" * 32})
        client.log_batch(run.info.run_id, metrics=[Metric("accuracy", 0.8, 0, 0), Metric("n_train_rows", 4800, 0, 0)])
        client.create_model_version(MODEL, source=str(root / "m" / str(v)), run_id=run.info.run_id, tags={
            "mlops.registered_by": f"airflow:{TRAIN_DAG}/{airflow_run}/register_challenger",
            "gate.passed": "true", "gate.summary": '{"verdict":"blessed","failed":[]}'})
        history.append({"action": "promote", "alias": "champion", "from": str(v - 1) if v > 1 else None,
                        "to": str(v), "at": "2026-12-01T10:00:00+00:00",
                        "by": f"airflow:{TRAIN_DAG}/{airflow_run}/promote", "reason": "gate blessed"})
    client.set_registered_model_alias(MODEL, "champion", str(versions))
    client.set_registered_model_alias(MODEL, "previous-champion", str(versions - 1))
    client.set_registered_model_tag(MODEL, "mlops.promotion_history", json.dumps(history[-40:]))
    columns = [f"col{i}" for i in range(24)]
    for b in range(batches):
        uri_b = f"/data/landing/day-{b:04d}.parquet"
        start = t0 + b * 3_600_000
        airflow_run = f"asset_triggered__batch_{b}"
        val = client.create_run(exp["validation"], run_name=f"validate {b}", start_time=start, tags={
            "mlops.kind": "data_validation", "mlops.dataset_uri": uri_b, "mlops.validation.success": "true",
            "airflow.dag_id": MONITOR_DAG, "airflow.run_id": airflow_run, "airflow.task_id": "validate_batch"})
        drift = client.create_run(exp["monitoring"], run_name=f"drift {b}", start_time=start + 1000, tags={
            "mlops.kind": "drift_check", "mlops.model_name": MODEL, "mlops.model_version": str(versions),
            "mlops.current_uri": uri_b, "mlops.airflow_ti": f"{MONITOR_DAG}/{airflow_run}"})
        metrics = [Metric("drift.share_of_drifted_columns", (b % 10) / 10, 0, 0),
                   Metric("drift.dataset_drift", float(b % 10 >= 5), 0, 0)]
        metrics += [Metric(f"drift.score.{c}", 0.05, 0, 0) for c in columns]
        client.log_batch(drift.info.run_id, metrics=metrics, tags=[RunTag("mlops.reference", "models:/x@champion")])
        for run in (val, drift):
            client.set_terminated(run.info.run_id, "FINISHED")
    return uri


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--store", help="reuse the folder of an earlier run (its mlflow.db) instead of writing one")
    args = parser.parse_args()
    tmp = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="mlops-bench-ui-"))
    os.environ.update({
        "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-" + "x" * 64,
    })
    started = time.monotonic()
    if args.store:
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        print(f"store: {tmp}")
    else:
        uri = build_store(tmp, args.versions, args.batches)
        print(f"store: {args.versions} versions, {args.batches} batches ({2 * args.batches} runs) written in "
              f"{time.monotonic() - started:.0f} s, in {tmp}")
    os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps({"conn_type": "mlflow", "host": uri})
    import subprocess

    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                   capture_output=True, env=os.environ.copy())
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    client = TestClient(create_app())
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    headers = {"Authorization": f"Bearer {token}"}
    pages = {
        "models": "/mlops/",
        "model timeline": f"/mlops/models/{MODEL}",
        "version": f"/mlops/models/{MODEL}/versions/{args.versions}",
    }
    print(f"| page | first request (s) | median of {args.repeat} (s) | worst (s) | size (kB) |")
    print("|------|------|------|------|------|")
    for name, path in pages.items():
        times = []
        for _ in range(args.repeat + 1):
            t = time.perf_counter()
            answer = client.get(path, headers=headers)
            times.append(time.perf_counter() - t)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        first, rest = times[0], times[1:]
        print(f"| {name} | {first:.2f} | {statistics.median(rest):.2f} | {max(rest):.2f} | "
              f"{len(answer.content) / 1024:.0f} |")
    print(f"load average: {os.getloadavg()[0]:.1f} (2-core machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
