"""MLOps view: first (cold) and later page times for a model with 50 versions and 1,000 monitored batches.

Writes an MLflow store shaped like the operators' output (one training run per version, registered
versions with gate and registration tags, a promotion history, a gate report and a model card on the
latest version; per batch a validation run and a drift run with 24 per-column scores), serves it with a
real ``mlflow server`` (SQLite backend, 127.0.0.1), and times each page of the view under Airflow's own
API server app (``create_app()`` with its lifespan, FastAPI ``TestClient``, a real JWT of the simple auth
manager, the ``mlflow_default`` connection pointing at the server).

Each page is measured in a fresh Python process (a freshly started API server), twice:

* **no warm-up** (``[mlops] ui_warm_up = False``): the first request pays for importing MLflow and the
  view, opening the store and, on the timeline, reading every monitoring run (how it was before);
* **warm-up** (the default): the API server's start-up warms the view in a background thread
  (:mod:`mlops_provider.plugins.warmup`); the bench waits for it (its time is printed: how long after
  start-up the view is warm) and then makes the first request, as a person opening the view would.

Then ``--repeat`` more requests of the same page (their median and worst).

Usage: ``.venv/bin/python bench/ui.py [--versions 50] [--batches 1000] [--repeat 5] [--store DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "provider"))
sys.path.insert(0, str(ROOT))

MODEL = "bench_model"
TRAIN_DAG = "continuous_training__bench"
MONITOR_DAG = "drift_monitor__bench"
PAGES = {
    "models list": "/mlops/",
    "model timeline": f"/mlops/models/{MODEL}",
    "version": f"/mlops/models/{MODEL}/versions/{{versions}}",
}


def build_store(root: Path, versions: int, batches: int) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    exp = {k: client.create_experiment(f"{MODEL}-{k}", artifact_location=str(root / k))
           for k in ("training", "gate", "validation", "monitoring")}
    client.create_registered_model(MODEL)
    history = []
    t0 = int(time.time() * 1000) - batches * 3_600_000
    for v in range(1, versions + 1):
        airflow_run = f"asset_triggered__{v}"
        run = client.create_run(exp["training"], run_name=f"train {v}", start_time=t0 + v * 60_000, tags={
            "mlops.dag_id": TRAIN_DAG, "mlops.run_id": airflow_run, "mlops.task_id": "train",
            "mlops.training_uri": f"/data/train-{v}.parquet", "mlops.training_digest": "ab" * 32})
        client.log_batch(run.info.run_id, metrics=[Metric("accuracy", 0.8, 0, 0), Metric("n_train_rows", 4800, 0, 0)])
        tags = {"mlops.registered_by": f"airflow:{TRAIN_DAG}/{airflow_run}/register_challenger",
                "gate.passed": "true", "gate.summary": '{"verdict":"blessed","failed":[]}'}
        if v == versions:  # the page the bench opens: a gate report and a model card to read
            report = {
                "model_name": MODEL, "challenger_version": str(v), "champion_version": str(v - 1),
                "decision": {"passed": True, "verdict": "blessed", "basis": "champion", "notes": [], "checks": [
                    {"kind": "value", "metric": "roc_auc", "slice": "overall", "passed": True, "observed": 0.8,
                     "baseline": 0.79, "bound": {"lower_bound": 0.7}, "message": "ok"}]},
                "spec": {}, "dataset": {"uri": "/data/eval.parquet", "digest": "cd" * 32, "n_rows": 1200},
                "metrics": {"challenger": {"overall": {"roc_auc": 0.8}}, "champion": {"overall": {"roc_auc": 0.79}}},
            }
            gate = client.create_run(exp["gate"], run_name=f"gate v{v}", tags={
                "mlops.kind": "promotion_gate", "mlops.model_name": MODEL, "mlops.dag_id": TRAIN_DAG,
                "mlops.run_id": airflow_run, "mlops.task_id": "gate"})
            client.log_text(gate.info.run_id, json.dumps(report), "gate/gate_report.json")
            client.set_terminated(gate.info.run_id, "FINISHED")
            client.log_text(run.info.run_id, "<html><body><h1>Model card</h1></body></html>",
                            "model_card/model_card.html")
            tags.update({"gate.run_id": gate.info.run_id, "mlops.model_card": "model_card/model_card.html"})
        client.create_model_version(MODEL, source=str(root / "m" / str(v)), run_id=run.info.run_id, tags=tags)
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
                   Metric("drift.dataset_drift", float(b % 10 >= 5), 0, 0),
                   Metric("drift.drift_share_threshold", 0.5, 0, 0)]
        metrics += [Metric(f"drift.score.{c}", 0.05, 0, 0) for c in columns]
        client.log_batch(drift.info.run_id, metrics=metrics, tags=[RunTag("mlops.reference", "models:/x@champion")])
        for run in (val, drift):
            client.set_terminated(run.info.run_id, "FINISHED")


def child(args: argparse.Namespace) -> int:
    """One freshly started API server: time the first request of one page, then ``--repeat`` more."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    out: dict = {}
    app = create_app()
    with TestClient(app) as client:  # runs the API server's lifespan start-up (plugin root middlewares)
        from mlops_provider.plugins import warmup

        if args.mode == "warm-up":
            if not warmup.done.wait(600):
                raise SystemExit("the warm-up did not finish in 600 s")
            out["warm_up_s"] = warmup.status["seconds"]
            out["warm_up"] = dict(warmup.status)
        else:
            assert not warmup.status["started"], "warm-up started although disabled"
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
        headers = {"Authorization": f"Bearer {token}"}
        times = []
        for _ in range(args.repeat + 1):
            t = time.perf_counter()
            answer = client.get(args.path, headers=headers)
            times.append(time.perf_counter() - t)
            assert answer.status_code == 200, (args.path, answer.status_code, answer.text[:300])
        out.update(first=times[0], rest=times[1:], kb=len(answer.content) / 1024)
    print("RESULT " + json.dumps(out))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--store", help="reuse the folder of an earlier run (its mlflow.db) instead of writing one")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from tests.helpers.servers import MlflowServer

    tmp = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="mlops-bench-ui-"))
    started = time.monotonic()
    if not (tmp / "mlflow.db").exists():
        build_store(tmp, args.versions, args.batches)
        print(f"store: {args.versions} versions, {args.batches} batches ({2 * args.batches} monitoring runs) "
              f"written in {time.monotonic() - started:.0f} s, in {tmp}")
    else:
        print(f"store: {tmp} (reused)")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-" + "x" * 64,
    }
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                   capture_output=True, env=env)
    server = MlflowServer(tmp / "server", backend_store_uri=f"sqlite:///{tmp / 'mlflow.db'}").start()
    try:
        env["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps(
            {"conn_type": "mlflow", "host": server.url, "extra": {"max_retries": 0}})
        print(f"mlflow server: {server.url} (SQLite backend); each cell is a freshly started API server process\n")
        rows = []
        for page, path in PAGES.items():
            path = path.format(versions=args.versions)
            for mode in ("no warm-up", "warm-up"):
                answer = subprocess.run(
                    [sys.executable, __file__, "--child", "--path", path, "--mode", mode, "--repeat", str(args.repeat)],
                    capture_output=True, text=True, env={**env, "AIRFLOW__MLOPS__UI_WARM_UP": str(mode == "warm-up")},
                    cwd=tmp,
                )
                lines = [line for line in answer.stdout.splitlines() if line.startswith("RESULT ")]
                if answer.returncode or not lines:
                    print(answer.stdout[-3000:], answer.stderr[-3000:])
                    raise SystemExit(f"{page} ({mode}) failed")
                rows.append((page, mode, json.loads(lines[-1][7:])))
        print(f"| page | API server start-up | warm-up (s, background) | first request (s) | "
              f"median of {args.repeat} later (s) | worst later (s) | size (kB) |")
        print("|------|------|------|------|------|------|------|")
        for page, mode, r in rows:
            warm = f"{r['warm_up_s']:.1f}" if "warm_up_s" in r else "-"
            print(f"| {page} | {mode} | {warm} | {r['first']:.2f} | {statistics.median(r['rest']):.2f} | "
                  f"{max(r['rest']):.2f} | {r['kb']:.0f} |")
        print(f"\nload average: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
