"""``make demo``: the whole MLOps loop on the embedded default (SQLite Airflow + SQLite MLflow under .demo/).

Starts the real Airflow components (api-server, scheduler, dag-processor, triggerer) on ``dags/``, then
plays the loan-default story of :mod:`demo_data` day by day:

1. ``continuous_training__loan_default`` is triggered once: the first model becomes champion v1.
2. Each day a batch lands in ``landing/batches/`` (rename into place).  The triggerer's
   ``NewBatchTrigger`` turns it into an Asset event, which runs ``drift_monitor__loan_default``:
   validate (quarantine) -> score with the champion -> drift check -> drift Asset event (one mapped
   ``check_batch`` instance per batch of the run).
3. The day's labels land in ``landing/labels/``: ``performance_monitor__loan_default`` joins them with
   the predictions and emits a performance-decay Asset event when accuracy falls.
4. A drift or decay event runs ``continuous_training__loan_default`` on its own: policy -> training
   window -> validate -> train -> challenger -> gate -> promote -> batch score.

The script only lands files and watches (REST API and the MLflow registry); Airflow does the rest.
It prints the timeline and where the reports are, and stops everything unless ``KEEP=1``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import demo_data  # noqa: E402

from mlops_provider.local import PRELOAD, embedded_stack, stack_environment  # noqa: E402, F401 - PRELOAD: tests
from mlops_provider.local.airflow import AirflowLocal, free_port  # noqa: E402

DEMO = ROOT / ".demo"
MODEL = "loan_default"
TRAINING = f"continuous_training__{MODEL}"
MONITOR = f"drift_monitor__{MODEL}"
PERFORMANCE = f"performance_monitor__{MODEL}"


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def champion_version(mlflow_uri: str) -> str:
    from mlflow import MlflowClient

    try:
        return str(MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri).get_model_version_by_alias(
            MODEL, "champion").version)
    except Exception:  # noqa: BLE001 - no champion yet
        return "-"


def training_outcome(stack: AirflowLocal, run_id: str) -> str:
    """``retrain -> gate pass -> promoted v2`` (or why it stopped)."""
    states = stack.task_states(TRAINING, run_id)
    if states.get("retraining_policy") == "skipped":
        return "retraining skipped by the policy (cooldown)"
    gate = stack.xcom(TRAINING, run_id, "gate") or {}
    if states.get("promote") == "success":
        promoted = stack.xcom(TRAINING, run_id, "promote") or {}
        version = promoted.get("version") or gate.get("challenger_version")
        return f"retrain -> gate {gate.get('verdict', '?')} -> promoted v{version}"
    if states.get("gate") == "skipped" or gate.get("verdict"):
        return f"retrain -> gate rejected v{gate.get('challenger_version', '?')}"
    failed = [t for t, s in states.items() if s == "failed"]
    return f"retraining failed at {failed}" if failed else f"retraining {states}"


def run_story(
    workdir: Path, keep: bool = False, quiet: bool = False, hold: bool = False, env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """
    Play the whole story under a real Airflow deployment in ``workdir``; return the timeline.

    :param keep: keep Airflow and an MLflow UI running until Ctrl-C; the ``mlflow`` connection's ``ui_url``
        points at that MLflow UI, so the tasks' extra links open it.
    :param hold: leave Airflow running and return it as ``result["stack"]`` (the caller stops it).
    :param env: more environment for every Airflow component (the browser tests enable connection testing).
    """
    say = (lambda _m: None) if quiet else log
    started = time.monotonic()
    data = workdir / "data"
    mlflow_dir = workdir / "mlflow"
    mlflow_uri = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    mlflow_dir.mkdir(parents=True)
    data.mkdir(parents=True)
    demo_data.land(demo_data.training_set(), data / "training", "base.parquet")
    mlflow_ui_port = free_port(5000) if keep else None
    mlflow_ui = None
    for folder in ("batches", "labels"):  # the watchers fail visibly on a missing landing folder
        (data / "landing" / folder).mkdir(parents=True)
    stack = embedded_stack(
        workdir,
        ROOT / "dags",
        env=stack_environment(
            mlflow_uri,
            ui_url=f"http://127.0.0.1:{mlflow_ui_port}" if mlflow_ui_port else None,
            MLOPS_DEMO_DIR=str(workdir),
            MLOPS_DATA_DIR=str(data),
            MLOPS_RETRAIN_SCHEDULE="",  # events only: the story decides when to retrain
            **(env or {}),
        ),
    )
    say(f"preparing {workdir} (Airflow metadata DB and MLflow store on SQLite)")
    stack.init()
    timeline: list[dict[str, Any]] = []
    result: dict[str, Any] = {"timeline": timeline, "workdir": str(workdir), "mlflow_uri": mlflow_uri}
    try:
        if mlflow_ui_port:
            mlflow_ui = _start_mlflow_ui(mlflow_uri, mlflow_dir, mlflow_ui_port)
        say("starting airflow api-server, scheduler, dag-processor, triggerer")
        stack.start()
        say(f"Airflow is healthy at {stack.url}")
        for dag_id in (TRAINING, MONITOR, PERFORMANCE):
            stack.wait_dag(dag_id)
            stack.unpause(dag_id)

        say(f"day 0: initial training ({TRAINING}, manual run)")
        run_id = stack.trigger(TRAINING)
        state = stack.wait_run(TRAINING, run_id, timeout=600)
        outcome = training_outcome(stack, run_id) if state == "success" else f"training {state}"
        timeline.append({"day": 0, "batch": "training/base.parquet", "validation": "passed", "drift_share": None,
                         "decay": None, "action": f"initial training -> {outcome}",
                         "champion": champion_version(mlflow_uri)})
        say(f"day 0: {timeline[-1]['action']}; champion v{timeline[-1]['champion']}")
        if state != "success":
            raise RuntimeError(f"initial training {state}: {stack.task_states(TRAINING, run_id)}")

        for spec in demo_data.SCENARIO:
            name = demo_data.batch_name(spec.day)
            features, labels = demo_data.batch(spec.day)
            known_monitor, known_perf = stack.run_ids(MONITOR), stack.run_ids(PERFORMANCE)
            known_training = stack.run_ids(TRAINING)
            demo_data.land(features, data / "landing" / "batches", name)
            say(f"day {spec.day}: landed batches/{name} ({spec.kind}: {spec.note})")
            monitor_run = stack.wait_new_run(MONITOR, known_monitor)
            if monitor_run is None:
                raise TimeoutError(f"no {MONITOR} run for {name}")
            # The labels "arrive later": once the batch was scored (or quarantined), so the performance check
            # of the day runs while the drift check is still going.
            stack.wait_task(MONITOR, monitor_run, "check_batch.score_batch", timeout=300)
            demo_data.land(labels, data / "landing" / "labels", name)
            stack.wait_run(MONITOR, monitor_run, timeout=300)
            states = stack.task_states(MONITOR, monitor_run)
            # one batch a day: the run's check_batch group has one mapped instance (map index 0)
            validated = stack.xcom(MONITOR, monitor_run, "check_batch.validate_batch", map_index=0) or {}
            validation = states.get("check_batch.validate_batch")
            quarantined = validation == "skipped" or validated.get("success") is False
            drift = stack.xcom(MONITOR, monitor_run, "check_batch.check_drift", map_index=0) or {}
            row: dict[str, Any] = {
                "day": spec.day,
                "batch": name,
                "kind": spec.kind,
                "validation": "QUARANTINED" if quarantined else ("passed" if validation == "success" else validation),
                "drift_share": drift.get("share_of_drifted_columns"),
                "drift": bool(drift.get("dataset_drift")),
                "decay": None,
                "monitor_states": states,
            }
            perf_run = stack.wait_new_run(PERFORMANCE, known_perf)
            if perf_run is None:
                raise TimeoutError(f"no {PERFORMANCE} run for labels {name}")
            stack.wait_run(PERFORMANCE, perf_run, timeout=300)
            perf = stack.xcom(PERFORMANCE, perf_run, "check_labels.check_decay", map_index=0) or {}
            if perf.get("verdict"):
                live = perf.get("live_metrics", {})
                comp = (perf.get("comparisons") or [{}])[0]
                row["decay"] = perf["verdict"]
                row["decay_detail"] = (
                    f"acc {live.get('accuracy', float('nan')):.3f} vs {comp.get('champion', float('nan')):.3f}"
                    if "accuracy" in live else perf["verdict"]
                )
            actions = []
            if quarantined:
                actions.append(f"quarantined ({', '.join(validated.get('failed_columns', [])[:3]) or 'contract'})")
            if row["drift"]:
                actions.append("drift event")
            if row["decay"] == "decay":
                actions.append("decay event")
            if row["drift"] or row["decay"] == "decay":
                training_run = stack.wait_new_run(TRAINING, known_training, timeout=120)
                if training_run:
                    state = stack.wait_run(TRAINING, training_run, timeout=600)
                    actions.append(training_outcome(stack, training_run) if state == "success" else f"training {state}")
                else:
                    actions.append("no training run started")
            elif not quarantined:
                actions.append("scored")
            row["action"] = "; ".join(actions)
            row["champion"] = champion_version(mlflow_uri)
            timeline.append(row)
            say(f"day {spec.day}: {row['validation']}, drift share {row['drift_share']}, decay {row['decay']}: "
                f"{row['action']}; champion v{row['champion']}")
        result["seconds"] = round(time.monotonic() - started, 1)
        result["reports"] = {
            "Airflow UI": f"{stack.url}  (user admin, password {stack.password})",
            "MLOps view": f"{stack.url}/plugin/mlops",
            "MLflow UI": f".venv/bin/mlflow ui --backend-store-uri {mlflow_uri} --port 5000",
            "MLflow store": str(mlflow_dir),
            "quarantined batches + reports": str(data / "quarantine"),
            "predictions": str(data / "predictions"),
            "training windows": str(data / "work" / "training"),
            "task logs": str(workdir / "airflow" / "logs"),
        }
        if keep:
            print(format_timeline(result))
            log(f"KEEP=1: Airflow at {stack.url} (MLOps view: {stack.url}/plugin/mlops), MLflow UI at "
                f"http://127.0.0.1:{mlflow_ui_port}; press Ctrl-C to stop them")
            _wait_for_ctrl_c()
        if hold:
            result["stack"] = stack
        return result
    finally:
        if "stack" not in result:
            say("stopping Airflow components")
            stack.stop()
        if mlflow_ui is not None:
            mlflow_ui.terminate()
            mlflow_ui.wait(timeout=20)


def _start_mlflow_ui(mlflow_uri: str, mlflow_dir: Path, port: int) -> Any:
    """``mlflow ui`` on the story's store (KEEP=1), in its own process group."""
    import subprocess

    from mlops_provider.local.airflow import BIN

    return subprocess.Popen(
        [str(BIN / "mlflow"), "ui", "--backend-store-uri", mlflow_uri, "--port", str(port)],
        cwd=mlflow_dir, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _wait_for_ctrl_c() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def format_timeline(result: dict[str, Any]) -> str:
    header = ("day", "batch", "validation", "drift share", "decay", "action", "champion")
    rows = []
    for r in result["timeline"]:
        share = "-" if r["drift_share"] is None else f"{r['drift_share']:.2f}" + (" DRIFT" if r.get("drift") else "")
        decay = r.get("decay_detail") or r.get("decay") or "-"
        if r.get("decay") == "decay":
            decay += " DECAY"
        rows.append((str(r["day"]), r["batch"], r["validation"], share, decay, r["action"], f"v{r['champion']}"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(row) for row in rows)]
    out.append("")
    for label, where in result.get("reports", {}).items():
        out.append(f"  {label:<30} {where}")
    if "seconds" in result:
        out.append(f"  story finished in {result['seconds']} s")
    return "\n".join(out)


def main() -> int:
    keep = os.environ.get("KEEP", "0") not in ("", "0", "false")
    if DEMO.exists():
        shutil.rmtree(DEMO)
    try:
        result = run_story(DEMO, keep=keep)
    except Exception as err:  # noqa: BLE001 - report and point at the logs
        log(f"demo failed: {err}")
        log(f"task logs are under {DEMO / 'airflow' / 'logs'}")
        return 1
    if not keep:
        print()
        print(format_timeline(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
