"""The pipeline DAGs of ``dags/`` under a real deployment: every landed batch is handled, level 2 starts by itself.

One deployment (api-server, scheduler, dag-processor, triggerer; PostgreSQL metadata DB, SQLite MLflow)
parses ``dags/`` with its own pipeline folder, data root and proposals folder.  The module fixture
trains champion v1 through ``continuous_training__loan_default`` (a manual run, as ``make demo`` does);
after that nothing is triggered by hand: the tests only land files.

* Six batches land within one second (five good ones and the broken one of the demo story): Airflow
  merges the arrivals into fewer runs, and each batch still gets its own validation, prediction file and
  drift result (features and the champion's outputs, quality figures at the batch's own step); the
  quarantined batch stops only its own score and drift check.
* A changed definition written to the proposals folder runs ``cicd_pipeline__loan_default`` on its own
  (``NewBatchTrigger`` on one file): CI in a real worker (component tests, DAG integrity in subprocesses
  under the task supervisor's blocked DB URL, data contract), then CD to a deployed pipeline.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.airflow_cluster import AirflowCluster

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

MODEL = "loan_default"
TRAINING = f"continuous_training__{MODEL}"
MONITOR = f"drift_monitor__{MODEL}"
PERFORMANCE = f"performance_monitor__{MODEL}"
CICD = f"cicd_pipeline__{MODEL}"
#: seeds of stable batches that pass the derived batch contract (seed 2 has an income above its max)
SEEDS = (0, 1, 3, 4, 5)
GOOD = [f"burst-{i}.parquet" for i in SEEDS]
BROKEN = "burst-broken.parquet"


def stable_batch(i: int):
    """A batch like the demo's stable days (fresh rows and ids): ``(features, labels)``."""
    import demo_data

    frame = demo_data._frame(demo_data.SEED + 500 + i, 600, "2026-01-02", 1, shifted=False, shock=False,
                             first_id=50_000_000 + 10_000 * i)
    return frame.drop(columns=[demo_data.TARGET]), frame[[demo_data.ID_COLUMN, demo_data.TARGET]]


@pytest.fixture(scope="module")
def stack(session_dir):
    import json

    import demo
    import demo_data

    work = session_dir / "pipeline-events"
    data, pipelines, proposed, mlflow_dir = (work / "data", work / "pipelines", work / "proposed", work / "mlflow")
    for folder in (data / "landing" / "batches", data / "landing" / "labels", proposed, mlflow_dir):
        folder.mkdir(parents=True)
    shutil.copytree(ROOT / "dags" / "pipelines" / "contracts", pipelines / "contracts")
    shutil.copy(ROOT / "dags" / "pipelines" / f"{MODEL}.yaml", pipelines / f"{MODEL}.yaml")
    demo_data.land(demo_data.training_set(), data / "training", "base.parquet")
    mlflow_uri = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    cluster = AirflowCluster(
        work / "airflow",
        ROOT / "dags",
        parallelism=4,
        extra_env={
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "mlflow", "host": mlflow_uri}),
            "MLOPS_DATA_DIR": str(data),
            "MLOPS_PIPELINES_DIR": str(pipelines),
            "MLOPS_PROPOSALS_DIR": str(proposed),
            "MLOPS_RETRAIN_SCHEDULE": "",
            "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
            "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(demo.PRELOAD),
        },
    )
    cluster.mlflow_uri = mlflow_uri
    cluster.world = {"data": data, "pipelines": pipelines, "proposed": proposed}
    cluster.start()
    try:
        for dag_id in (TRAINING, MONITOR, PERFORMANCE, CICD):
            cluster.wait_dag(dag_id)
        started = time.monotonic()
        run_id = cluster.trigger(TRAINING)  # day 0: the first champion (the only hand-triggered run)
        state = cluster.wait_run(TRAINING, run_id, timeout=600)
        assert state == "success", (cluster.task_states(TRAINING, run_id), cluster.tail("scheduler"))
        print(f"\ninitial training: champion v1 in {time.monotonic() - started:.0f}s")
        yield cluster
    finally:
        cluster.stop()


def _finished_runs(cluster, dag_id: str, known: list[str]) -> list[dict]:
    return [r for r in cluster.runs(dag_id) if r["dag_run_id"] not in known and r["state"] in ("success", "failed")]


def test_every_batch_of_a_merged_run_is_validated_scored_and_drift_checked(stack):
    import demo_data

    data = stack.world["data"]
    known = stack.run_ids(MONITOR)
    frames = {name: stable_batch(i)[0] for i, name in zip(SEEDS, GOOD, strict=True)}
    frames[BROKEN] = demo_data.batch(3)[0]  # the export bug: fails the batch contract
    for name, frame in frames.items():  # written first, so that landing (the renames) takes milliseconds
        frame.to_parquet(data / "landing" / "batches" / f".{name}.tmp", index=False)
    started = time.monotonic()
    for name in frames:
        (data / "landing" / "batches" / f".{name}.tmp").rename(data / "landing" / "batches" / name)
    landed_in = time.monotonic() - started
    assert landed_in < 1.0

    # every batch is taken by exactly one run; wait until those runs are finished
    deadline = time.monotonic() + 300
    taken: dict[str, tuple[str, int]] = {}
    while time.monotonic() < deadline:
        runs = _finished_runs(stack, MONITOR, known)
        taken = {
            b["name"]: (r["dag_run_id"], i)
            for r in runs
            for i, b in enumerate(stack.xcom(MONITOR, r["dag_run_id"], "resolve_batches") or [])
        }
        pending = [r for r in stack.runs(MONITOR) if r["dag_run_id"] not in known and r["state"] not in ("success", "failed")]
        if set(taken) >= set(frames) and not pending:
            break
        time.sleep(2)
    runs = _finished_runs(stack, MONITOR, known)
    elapsed = time.monotonic() - started
    assert set(taken) == set(frames), (taken, runs)
    listed = [b["name"] for r in runs for b in stack.xcom(MONITOR, r["dag_run_id"], "resolve_batches") or []]
    assert sorted(listed) == sorted(frames)  # each batch in one run only

    outcome: dict[str, dict[str, str]] = {name: {} for name in frames}
    for r in runs:
        index_to_name = {i: n for n, (run_id, i) in taken.items() if run_id == r["dag_run_id"]}
        for ti in stack.task_instances(MONITOR, r["dag_run_id"]):
            if ti["task_id"].startswith("check_batch.") and ti["map_index"] in index_to_name:
                outcome[index_to_name[ti["map_index"]]][ti["task_id"].split(".", 1)[1]] = ti["state"]
    print(f"\n{len(frames)} batches landed in {landed_in * 1000:.0f} ms -> {len(runs)} drift_monitor run(s); "
          f"all checked {elapsed:.0f}s after landing: {outcome}")
    for name in GOOD:
        assert outcome[name] == {"batch": "success", "validate_batch": "success", "score_batch": "success",
                                 "check_drift": "success"}, (name, outcome)
    assert outcome[BROKEN] == {"batch": "success", "validate_batch": "skipped", "score_batch": "skipped",
                               "check_drift": "skipped"}, outcome

    # 6 validations (5 passed, 1 quarantined), 5 prediction files, 5 drift results
    validations = {n: stack.xcom(MONITOR, taken[n][0], "check_batch.validate_batch", map_index=taken[n][1])
                   for n in frames}
    assert all(validations[n]["success"] for n in GOOD), validations
    assert sorted(p.name for p in (data / "predictions").glob("*.parquet")) == sorted(GOOD)
    assert list((data / "quarantine").rglob("*.parquet"))  # the broken batch, copied aside with its report
    drift = [stack.xcom(MONITOR, taken[n][0], "check_batch.check_drift", map_index=taken[n][1]) for n in GOOD]
    assert all(d and d["current"]["uri"].endswith(n) for d, n in zip(drift, GOOD, strict=True)), drift
    assert not any(d["dataset_drift"] for d in drift)  # stable batches: no retraining is started
    # the champion's outputs on each batch were checked too (stable batches: no prediction drift event)
    assert all(d["prediction_drift"]["status"] == "checked" and d["prediction_drift"]["drift"] is False
               for d in drift), [d.get("prediction_drift") for d in drift]
    # each batch's quality figures sit at its own step (its ordinal in the ledger; the broken batch has one
    # too) in the one data-quality run of the model
    steps = [d["batch_step"] for d in drift]
    assert len(set(steps)) == len(GOOD) and set(steps) <= set(range(1, len(frames) + 1)), steps
    assert len({d["quality_run_id"] for d in drift}) == 1


def test_a_changed_proposal_runs_cicd_by_itself_and_deploys_it(stack):
    import demo_data
    from mlflow import MlflowClient

    from mlops_provider.pipelines import load_pipeline

    data, pipelines, proposed = stack.world["data"], stack.world["pipelines"], stack.world["proposed"]
    accepted = sorted(p.name for p in (data / "predictions").glob("*.parquet"))
    assert accepted == GOOD, "run the merged-batch test first: CD trains on the accepted, labelled batches"
    # the labels of the accepted batches arrive: the CD training window of the proposal is ready
    for i, name in zip(SEEDS, GOOD, strict=True):
        demo_data.land(stable_batch(i)[1], data / "landing" / "labels", name)
    assert stack.runs(CICD) == []  # never triggered by hand

    # the data scientist proposes a change: contracts first, then the YAML by rename (one event)
    shutil.copytree(pipelines / "contracts", proposed / "contracts")
    text = (pipelines / f"{MODEL}.yaml").read_text()
    change = {"C: 1.0": "C: 0.5", "window_batches: 1 ": "window_batches: 5 "}  # regularise, train on 5 days
    for old, new in change.items():
        assert old in text
        text = text.replace(old, new, 1)
    (proposed / f".{MODEL}.yaml.tmp").write_text(text)
    (proposed / f".{MODEL}.yaml.tmp").rename(proposed / f"{MODEL}.yaml")
    proposal_version = load_pipeline(proposed / f"{MODEL}.yaml").version
    started = time.monotonic()

    run_id = stack.wait_new_run(CICD, [], timeout=90)
    assert run_id is not None, stack.tail("triggerer")
    run = next(r for r in stack.runs(CICD) if r["dag_run_id"] == run_id)
    assert run["run_type"] == "asset_triggered"
    state = stack.wait_task(CICD, run_id, "cd.deploy_definition", timeout=600)
    states = stack.task_states(CICD, run_id)
    deployed_in = time.monotonic() - started
    assert state == "success", (states, stack.tail("scheduler", 2000))
    for check in ("ci.load_candidate", "ci.component_tests", "ci.dag_integrity", "ci.data_contract", "cd.gate",
                  "cd.promote"):
        assert states[check] == "success", states
    ci = stack.xcom(CICD, run_id, "ci.dag_integrity")
    assert ci["errors"] == {} and MONITOR in ci["dags"]
    deployed = stack.xcom(CICD, run_id, "cd.deploy_definition")
    assert (pipelines / f"{MODEL}.yaml").read_text() == (proposed / f"{MODEL}.yaml").read_text()
    client = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == str(deployed["version"])
    tags = client.get_model_version(MODEL, deployed["version"]).tags
    assert tags["mlops.pipeline_version"] == proposal_version and tags["mlops.deployed_by"] == run_id

    # the next labelled live batch lands: the post-deployment check scores the deployed model on it
    time.sleep(1.1)  # strictly after deployed_at (file mtime resolution)
    features, labels = stable_batch(7)
    demo_data.land(labels, data / "landing" / "labels", "post-deploy.parquet")
    demo_data.land(features, data / "landing" / "batches", "post-deploy.parquet")
    assert stack.wait_run(CICD, run_id, timeout=180) == "success", stack.task_states(CICD, run_id)
    verdict = stack.xcom(CICD, run_id, "cd.post_deployment_check")
    assert verdict["ok"] is True and stack.task_states(CICD, run_id)["cd.rollback"] == "skipped"
    print(f"\nproposal {proposal_version} -> asset-triggered {CICD} -> CI passed -> deployed v{deployed['version']} "
          f"in {deployed_in:.0f}s; post-deployment check {verdict}")
    assert len(stack.runs(CICD)) == 1  # one proposal, one run
