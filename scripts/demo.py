"""``make demo``: the provider on the embedded default (SQLite Airflow + SQLite MLflow under .demo/).

Starts the real Airflow components (api-server, scheduler, dag-processor, triggerer), runs the demo
DAG(s) and waits for them, prints where to look, and stops everything (unless ``KEEP=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_local import AirflowLocal  # noqa: E402

DEMO = ROOT / ".demo"
MLFLOW_DIR = DEMO / "mlflow"
MLFLOW_URI = f"sqlite:///{MLFLOW_DIR / 'mlflow.db'}"


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> int:
    keep = os.environ.get("KEEP", "0") not in ("", "0", "false")
    if DEMO.exists():
        shutil.rmtree(DEMO)
    MLFLOW_DIR.mkdir(parents=True)
    connection = json.dumps({"conn_type": "mlflow", "host": MLFLOW_URI})
    stack = AirflowLocal(
        home=DEMO / "airflow",
        dags_folder=ROOT / "dags",
        # The embedded MLflow store keeps artifacts in ./mlruns of the task processes: .demo/mlflow/mlruns.
        cwd=MLFLOW_DIR,
        env={
            "AIRFLOW_CONN_MLFLOW_DEFAULT": connection,
            "MLOPS_DEMO_DIR": str(DEMO),
        },
    )
    log(f"preparing {DEMO} (Airflow metadata DB and MLflow store on SQLite)")
    stack.init()
    try:
        log("starting airflow api-server, scheduler, dag-processor, triggerer")
        stack.start()
        log(f"Airflow is healthy at {stack.url}")
        dag_id = "example_mlflow_hook"
        stack.wait_dag(dag_id)
        stack.unpause(dag_id)
        run_id = stack.trigger(dag_id)
        log(f"triggered {dag_id} ({run_id}); waiting for it")
        state = stack.wait_run(dag_id, run_id, timeout=300)
        log(f"{dag_id}: {state} {stack.task_states(dag_id, run_id)}")
        if state != "success":
            log(f"task logs are under {DEMO / 'airflow' / 'logs'}")
            return 1
        print()
        print(f"  Airflow UI : {stack.url}  (user admin, password {stack.password})")
        print(f"  MLflow UI  : .venv/bin/mlflow ui --backend-store-uri {MLFLOW_URI} --port 5000")
        print(f"  MLflow data: {MLFLOW_DIR}")
        print()
        if keep:
            log("KEEP=1: Airflow keeps running; press Ctrl-C to stop it")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        log("stopping Airflow components")
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
