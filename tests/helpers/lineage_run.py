"""Run the level-1 pipeline and its monitors with ``dag.test()`` in a fresh interpreter (for test_lineage.py).

The OpenLineage provider reads its transport once per process, so the events are captured in a
process of their own: the caller sets ``AIRFLOW__OPENLINEAGE__TRANSPORT`` (file transport) and the
Airflow/MLflow environment, and passes a work folder.  The runs:

1. ``continuous_training__<model>``: assemble -> validate -> train -> register -> gate -> promote -> score;
2. ``drift_monitor__<model>`` on day 1 (a good batch: validate -> score -> drift check) and on day 3
   (the broken batch: quarantined);
3. ``lineage_failing_validation`` (``lineage_dags/``): the broken batch validated with ``on_failure="fail"``
   (a FAIL event).

Writes ``<work>/runs.json``: the model name, the batch paths and every task's state.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "dags"), str(HERE / "lineage_dags")]
#: ``dag.test()`` finds a DAG by re-parsing the configured bundles: the DAGs folder and the folder of
#: the failing-validation DAG (set before Airflow reads its configuration).
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps([
    {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
    {"name": "lineage-tests", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
     "kwargs": {"path": str(HERE / "lineage_dags")}},
])


def main(work: Path) -> None:
    import demo_data

    model = f"lineage_{uuid.uuid4().hex[:6]}"
    pipelines = work / "pipelines"
    shutil.copytree(ROOT / "dags" / "pipelines" / "contracts", pipelines / "contracts")
    text = (ROOT / "dags" / "pipelines" / "loan_default.yaml").read_text().replace("name: loan_default", f"name: {model}")
    (pipelines / f"{model}.yaml").write_text(text)
    data = work / "data"
    demo_data.land(demo_data.training_set(), data / "training", "base.parquet")
    os.environ.update(
        MLOPS_DATA_DIR=str(data), MLOPS_PIPELINES_DIR=str(pipelines), MLOPS_PROPOSALS_DIR=str(work / "proposed"),
        MLOPS_RETRAIN_SCHEDULE="",
    )
    from mlops_provider import pipeline_dags as pipeline_factory
    from mlops_provider.pipelines import load_pipeline

    spec = load_pipeline(pipelines / f"{model}.yaml")
    runs: dict[str, dict[str, str]] = {}

    def states(run) -> dict[str, str]:
        return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}

    runs["training"] = states(pipeline_factory.build_continuous_training(spec).test())
    monitor = pipeline_factory.build_drift_monitor(spec)
    batches = {}
    for day in (1, 3):
        features, _ = demo_data.batch(day)
        batches[day] = str(demo_data.land(features, data / "landing" / "batches", demo_data.batch_name(day)))
        runs[f"monitor_day{day}"] = states(monitor.test(run_conf={"batch_uri": batches[day]}))

    os.environ.update(MLOPS_LINEAGE_BAD_BATCH=batches[3], MLOPS_LINEAGE_CONTRACT=spec.contract_path("batch_contract"))
    import lineage_failing_validation

    dag = lineage_failing_validation.dag
    runs["failing"] = states(dag.test())
    (work / "runs.json").write_text(json.dumps({"model": model, "batches": batches, "states": runs}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
