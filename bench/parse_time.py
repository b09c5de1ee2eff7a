"""DAG parse time: a DAG file using every operator of the provider vs a trivial TaskFlow DAG, and a
factory-built DAG file (``build_dags`` over ``dags/pipelines/``: the four pipeline DAGs of the loan
model) vs a trivial TaskFlow DAG with as many tasks.

The first two files have the same number of tasks.  Each parse runs in a fresh interpreter, in two modes (see
PROBE below): "dag-processor" reproduces how Airflow 3.3's dag-processor parses a file (the target
applies to it); "warm" also preloads all of Airflow's DAG machinery, which isolates the provider's
own import cost.  Prints the medians and the ratios.

    .venv/bin/python bench/parse_time.py [--repeat 9]

``--baseline DIR`` (a checkout of an earlier commit, e.g. ``git worktree add /tmp/base main``) also parses
the factory-built file with that checkout's provider and ``dags/pipelines`` (``PYTHONPATH=DIR/provider``),
interleaved with the current tree: before and after, side by side, under the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PROVIDER_DAG = '''
from datetime import timedelta
import pendulum
from airflow.sdk import DAG
from mlops_provider.operators.training import TrainModelOperator
from mlops_provider.operators.registry import RegisterModelOperator, PromoteModelOperator, RollbackModelOperator
from mlops_provider.operators.prediction import BatchPredictOperator
from mlops_provider.operators.validation import DataValidationOperator
from mlops_provider.operators.drift import DriftCheckOperator
from mlops_provider.operators.gate import PromotionGateOperator
from mlops_provider.operators.performance import ModelPerformanceOperator
from mlops_provider.sensors.drift import DriftSensor

with DAG("provider_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    validate = DataValidationOperator(task_id="validate", dataset="/data/train.parquet",
        expectations=[{"type": "expect_column_to_exist", "kwargs": {"column": "x"}}])
    train = TrainModelOperator(task_id="train", training_data="/data/train.parquet", target="y",
        estimator="sklearn.ensemble.HistGradientBoostingClassifier", estimator_params={"max_iter": 50})
    register = RegisterModelOperator(task_id="register", model_uri="{{ ti.xcom_pull('train')['model_uri'] }}",
        registered_model_name="m")
    gate = PromotionGateOperator(task_id="gate", model_name="m", eval_dataset="/data/eval.parquet",
        target_column="y", gate_spec={"thresholds": [{"metric": "accuracy", "value": {"lower_bound": 0.5}}]})
    promote = PromoteModelOperator(task_id="promote", registered_model_name="m", version="1")
    rollback = RollbackModelOperator(task_id="rollback", registered_model_name="m")
    score = BatchPredictOperator(task_id="score", input_data="/data/batch.parquet", output_uri="/data/out.parquet",
        registered_model_name="m")
    drift = DriftCheckOperator(task_id="drift", reference="models:/m@champion", current="/data/batch.parquet")
    perf = ModelPerformanceOperator(task_id="perf", model_name="m", labels="/data/labels.parquet",
        predictions="/data/out.parquet")
    sensor = DriftSensor(task_id="sensor", location="/data/landing/*", reference="models:/m@champion",
        deferrable=False)
    validate >> train >> register >> gate >> promote >> rollback >> score >> drift >> perf >> sensor
'''

TRIVIAL_DAG = '''
import pendulum
from airflow.sdk import dag, task

@dag(dag_id="trivial_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
def trivial_dag():
    previous = None
    for i in range(10):
        @task(task_id=f"t{i}")
        def step():
            return 1
        current = step()
        if previous is not None:
            previous >> current
        previous = current

trivial_dag()
'''

FACTORY_DAG = '''
from mlops_provider.pipelines import build_dags

build_dags(PIPELINES, globals())
'''

TRIVIAL_MANY_DAG = '''
import pendulum
from airflow.sdk import dag, task

@dag(dag_id="trivial_many", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
def trivial_many():
    previous = None
    for i in range(N_TASKS):
        @task(task_id=f"t{i}")
        def step():
            return 1
        current = step()
        if previous is not None:
            previous >> current
        previous = current

trivial_many()
'''

WARMUP_DAG = '''
import pendulum
from airflow.sdk import DAG, BaseOperator, task
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.sensors.filesystem import FileSensor

with DAG("warmup", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    @task
    def t():
        return 1
    t() >> EmptyOperator(task_id="e") >> FileSensor(task_id="f", filepath="/x")
'''

# Mode "dag-processor": the state in which Airflow 3.3's dag-processor parses a file. Its parse
# process starts from the manager (airflow.dag_processing.* imported) after
# ``_pre_import_airflow_modules(file)``, which imports the ``airflow.*`` modules the file names
# ([dag_processor] parsing_pre_import_modules, default True). Everything else the file imports,
# the provider included, is paid on every parse.
# Mode "warm": additionally, Airflow's whole DAG machinery (TaskFlow, BaseOperator, sensors) is
# loaded before timing, which isolates the provider's own import cost.
PROBE = textwrap.dedent('''
    import json, sys, time
    import structlog
    import airflow.dag_processing.manager  # noqa: F401 - what the dag-processor has loaded
    from airflow.dag_processing.dagbag import DagBag
    from airflow.dag_processing.processor import _pre_import_airflow_modules
    _pre_import_airflow_modules(sys.argv[1], structlog.get_logger())
    if sys.argv[3] == "warm":
        DagBag(dag_folder=sys.argv[2], safe_mode=False)
    start = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
    elapsed = time.perf_counter() - start
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pandas", "numpy", "sklearn", "mlflow",
        "great_expectations", "evidently", "scipy"})
    print(json.dumps({"seconds": elapsed, "errors": list(bag.import_errors.values()),
        "tasks": sum(len(d.tasks) for d in bag.dags.values()), "heavy": heavy}))
''')


def parse_once(path: Path, mode: str, pythonpath: str | None = None) -> dict:
    # As in a deployed Airflow, modules run from their compiled bytecode (pip compiles on install;
    # an editable install compiles on first import): make sure this run may write __pycache__.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run(env=env, args=[sys.executable, "-c", PROBE, str(path), str(path.parent / "warmup" / "warmup_dag.py"), mode], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise SystemExit(f"{path.name} failed to parse: {result['errors']}")
    return result


def factory_tasks(pipelines: Path) -> int:
    """The number of tasks of the factory-built DAGs (the trivial counterpart gets as many)."""
    from mlops_provider.pipelines import build_dags

    return sum(len(d.tasks) for d in build_dags(pipelines).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--baseline", help="a checkout of an earlier commit: compare its factory-built file")
    parser.add_argument("--baseline-only", action="store_true", help="with --baseline: only that comparison")
    args = parser.parse_args()
    if args.baseline_only:
        with tempfile.TemporaryDirectory() as tmp:
            compare_baseline(Path(args.baseline), Path(tmp), args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        provider_file = Path(tmp) / "provider_dag.py"
        trivial_file = Path(tmp) / "trivial_dag.py"
        provider_file.write_text(PROVIDER_DAG)
        trivial_file.write_text(TRIVIAL_DAG)
        pipelines = Path(os.environ.get("BENCH_PIPELINES") or Path(__file__).resolve().parents[1] / "dags" / "pipelines")
        factory_file = Path(tmp) / "factory_dag.py"
        trivial_many_file = Path(tmp) / "trivial_many_dag.py"
        factory_file.write_text(FACTORY_DAG.replace("PIPELINES", repr(str(pipelines))))
        trivial_many_file.write_text(TRIVIAL_MANY_DAG.replace("N_TASKS", str(factory_tasks(pipelines))))
        (Path(tmp) / "warmup").mkdir()
        (Path(tmp) / "warmup" / "warmup_dag.py").write_text(WARMUP_DAG)
        parse_once(provider_file, "warm")  # compile bytecode once; not measured
        parse_once(factory_file, "warm")
        print(f"DagBag parse time of one file, median of {args.repeat} fresh interpreters per cell")
        print("| mode | DAG file | tasks | median ms | min ms | heavy modules loaded |")
        print("|---|---|---|---|---|---|")
        ratios = {}
        for mode in ("dag-processor", "warm"):
            samples: dict[str, list[float]] = {"provider": [], "trivial": [], "factory": [], "trivial_many": []}
            meta: dict[str, dict] = {}
            files = (("provider", provider_file), ("trivial", trivial_file), ("factory", factory_file),
                     ("trivial_many", trivial_many_file))
            for _ in range(args.repeat):  # interleaved, so machine noise hits both sides alike
                for name, path in files:
                    result = parse_once(path, mode)
                    samples[name].append(result["seconds"])
                    meta[name] = result
            for name, label in (("trivial", "trivial TaskFlow DAG"), ("provider", "every provider operator"),
                                ("trivial_many", "trivial TaskFlow DAG, as many tasks as the factory"),
                                ("factory", "build_dags(dags/pipelines): 4 pipeline DAGs")):
                print(
                    f"| {mode} | {label} | {meta[name]['tasks']} | {statistics.median(samples[name]) * 1000:.1f} | "
                    f"{min(samples[name]) * 1000:.1f} | {', '.join(meta[name]['heavy']) or 'none'} |"
                )
            ratios[mode] = statistics.median(samples["provider"]) / statistics.median(samples["trivial"])
            ratios[f"{mode} factory"] = statistics.median(samples["factory"]) / statistics.median(samples["trivial_many"])
        if args.baseline:
            compare_baseline(Path(args.baseline), Path(tmp), args.repeat)
    for mode, ratio in ratios.items():
        what = "factory/trivial" if mode.endswith("factory") else "provider/trivial"
        print(f"ratio {what}, {mode.removesuffix(' factory')}: {ratio:.2f}"
              + (" (target <= 1.2)" if mode == "dag-processor" else ""))


def compare_baseline(baseline: Path, tmp: Path, repeat: int) -> None:
    """The factory-built file of ``baseline`` (its provider, its dags/pipelines) vs the current tree's, interleaved."""
    current = Path(__file__).resolve().parents[1]
    files = {}
    for label, tree in (("baseline", baseline.resolve()), ("current", current)):
        path = tmp / f"factory_{label}.py"
        path.write_text(FACTORY_DAG.replace("PIPELINES", repr(str(tree / "dags" / "pipelines"))))
        files[label] = (path, str(tree / "provider"))
        parse_once(path, "warm", str(tree / "provider"))  # compile bytecode once; not measured
    print(f"\nfactory-built DAG file, {baseline} vs this tree (median of {repeat}, interleaved)")
    print("| mode | tree | tasks | median ms | min ms | heavy modules loaded |")
    print("|---|---|---|---|---|---|")
    for mode in ("dag-processor", "warm"):
        samples: dict[str, list[float]] = {"baseline": [], "current": []}
        meta: dict[str, dict] = {}
        for _ in range(repeat):
            for label, (path, pythonpath) in files.items():
                meta[label] = parse_once(path, mode, pythonpath)
                samples[label].append(meta[label]["seconds"])
        for label in files:
            print(f"| {mode} | {label} | {meta[label]['tasks']} | {statistics.median(samples[label]) * 1000:.1f} | "
                  f"{min(samples[label]) * 1000:.1f} | {', '.join(meta[label]['heavy']) or 'none'} |")
        print(f"ratio current/baseline, {mode}: "
              f"{statistics.median(samples['current']) / statistics.median(samples['baseline']):.2f}")


if __name__ == "__main__":
    main()
