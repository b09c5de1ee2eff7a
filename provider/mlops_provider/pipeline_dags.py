"""DAG factory: build the level-1, monitoring and level-2 MLOps DAGs of a model from its pipeline YAML.

``<pipelines folder>/<model>.yaml`` (validated by :func:`mlops_provider.pipelines.load_pipeline`) holds the
data locations, features, estimator, validation contracts, gate thresholds, drift and decay settings
and the retraining policy.  A DAG file builds every pipeline of a folder in one line
(:func:`mlops_provider.pipelines.build_dags`)::

    from pathlib import Path

    from mlops_provider.pipelines import build_dags

    build_dags(Path(__file__).parent / "pipelines", globals())

The builders, one per DAG:

* :func:`build_continuous_training` (``continuous_training__<model>``, level 1): policy -> assemble
  the training window -> validate -> train -> register challenger -> gate -> promote -> batch score.
  Scheduled by a cron expression *or* by the ``training_data``, ``drift``, ``prediction_drift`` and
  ``performance_decay`` assets of the model.
* :func:`build_drift_monitor` (``drift_monitor__<model>``): runs on landed batches (``AssetWatcher`` +
  ``NewBatchTrigger``); Airflow may merge several arrivals into one run, and every batch of the run is
  checked on its own (a mapped task group): validate (quarantine on failure) -> score with the champion ->
  drift check against the champion's profile (features, and the champion's outputs on the batch against
  its outputs on its evaluation data) -> drift / prediction drift Asset events; per-batch quality figures
  (``quality.*``) logged to MLflow with the batch's ordinal as step.
* :func:`build_performance_monitor` (``performance_monitor__<model>``): runs on landed label files, each
  checked on its own (a mapped task group): join the labels with the stored predictions -> performance-decay Asset event.
* :func:`build_cicd` (``cicd_pipeline__<model>``, level 2): a changed definition written to
  ``<pipelines folder>/proposed/<model>.yaml`` is tested (CI) and deployed (CD); see ``dags/cicd_pipeline.py``.

Nothing heavy is imported here: pandas, scikit-learn, MLflow and GX load inside the tasks.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, Param, task, task_group

from mlops_provider.operators.drift import DriftCheckOperator, drift_asset_uri, prediction_drift_asset_uri
from mlops_provider.operators.gate import PromotionGateOperator
from mlops_provider.operators.performance import ModelPerformanceOperator, performance_decay_uri
from mlops_provider.operators.prediction import BatchPredictOperator
from mlops_provider.operators.registry import PromoteModelOperator, RegisterModelOperator
from mlops_provider.operators.retraining import RetrainingPolicyOperator
from mlops_provider.operators.training import TrainModelOperator
from mlops_provider.operators.validation import DataValidationOperator
from mlops_provider.pipelines import PipelineSpec, discover_pipelines, expand_env
from mlops_provider.triggers.batch import NewBatchTrigger

KINDS = ("continuous_training", "drift_monitor", "performance_monitor", "cicd_pipeline")
START = pendulum.datetime(2026, 1, 1, tz="UTC")
ESTIMATOR_FACTORY = "mlops_provider.pipelines.tabular_classifier"


def pipelines(folder: str | os.PathLike[str]) -> list[PipelineSpec]:
    """The pipeline definitions of ``folder`` (``MLOPS_PIPELINES_DIR`` overrides the folder)."""
    return discover_pipelines(os.environ.get("MLOPS_PIPELINES_DIR") or folder)


def build_dags(
    folder: str | os.PathLike[str],
    namespace: dict[str, Any] | None = None,
    *,
    kinds: tuple[str, ...] | list[str] = KINDS,
    tests_root: str | os.PathLike[str] | None = None,
) -> dict[str, DAG]:
    """
    Build the DAGs of every pipeline YAML in ``folder``; put them in ``namespace`` (a DAG file's ``globals()``).

    :param folder: the folder of ``<model>.yaml`` files (``MLOPS_PIPELINES_DIR`` overrides it).  Level 2
        watches ``<folder>/proposed/<model>.yaml`` (``MLOPS_PROPOSALS_DIR`` overrides the folder).
    :param namespace: where to bind each DAG under its ``dag_id`` (the DAG processor finds them there).
    :param kinds: which DAGs to build, of ``continuous_training``, ``drift_monitor``, ``performance_monitor``,
        ``cicd_pipeline`` (default: all four).
    :param tests_root: the folder that the component tests of a pipeline (``tests:`` in the YAML) are
        relative to, and where level 2's CI runs pytest (default: ``folder``).
    :returns: ``dag_id -> DAG``.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kinds {unknown}: expected some of {list(KINDS)}")
    root = Path(tests_root) if tests_root is not None else Path(folder)
    built: dict[str, DAG] = {}
    for spec in pipelines(folder):
        for kind in kinds:
            if kind == "continuous_training":
                dag = build_continuous_training(spec)
            elif kind == "drift_monitor":
                dag = build_drift_monitor(spec)
            elif kind == "performance_monitor":
                dag = build_performance_monitor(spec)
            else:
                dag = build_cicd(spec, tests_root=root)
            built[dag.dag_id] = dag
    if namespace is not None:
        namespace.update(built)
    return built


def training_data_uri(model: str) -> str:
    """``mlops://<model>/training_data``: emitted by whoever publishes a new curated training set."""
    return f"mlops://{model}/training_data"


def _safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in value)


# ---------------------------------------------------------------------- task helpers (run in workers)


def assemble_window(spec: PipelineSpec, run_id: str, seed: int = 42) -> dict[str, Any] | None:
    """
    Write the training window of a run: ``train.parquet`` and ``eval.parquet`` (80/20, seeded).

    The window is the latest ``retraining.window_batches`` *accepted* batches (scored, so they passed
    validation) joined with their labels; before any batch was accepted it is the base training set.
    Returns ``None`` while a batch of the window still waits for its labels.
    """
    import pandas as pd

    features = spec.raw["features"]
    target = spec.raw["target"]
    predictions = spec.storage(spec.data_path("predictions"))  # local folder or object store
    accepted = sorted(p.name for p in predictions.glob("*.parquet")) if predictions.is_dir() else []
    window = accepted[-int(spec.raw["retraining"]["window_batches"]):]

    def read(path: Any) -> pd.DataFrame:
        with path.open("rb") as fh:
            return pd.read_parquet(fh)

    if window:
        batches_dir = spec.storage(spec.folder_of("batches"))
        labels_dir = spec.storage(spec.data_path("labels"))
        if any(not (labels_dir / name).exists() for name in window):
            return None
        frame = pd.concat(
            [read(batches_dir / name).merge(read(labels_dir / name), on=features["id"]) for name in window],
            ignore_index=True,
        )
        source = window
        score_input = f"{spec.folder_of('batches')}/{window[-1]}"
    else:
        frame = read(spec.storage(spec.data_path("training")))
        source = ["base"]
        score_input = None
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n_eval = max(1, int(len(frame) * 0.2))
    out = f"{spec.data_path('work')}/training/{_safe(run_id)}"
    spec.storage(out).mkdir(parents=True, exist_ok=True)
    parts = {"train": frame.iloc[n_eval:], "eval": frame.iloc[:n_eval]}
    if score_input is None:
        parts["score"] = frame.iloc[:n_eval].drop(columns=[target])
        score_input = f"{out}/score.parquet"
    for part, rows in parts.items():
        with spec.storage(f"{out}/{part}.parquet").open("wb") as fh:
            rows.to_parquet(fh, index=False)
    return {
        "train": f"{out}/train.parquet",
        "eval": f"{out}/eval.parquet",
        "score_input": score_input,
        "source": source,
        "n_rows": len(frame),
    }


def triggering_payloads(context: dict[str, Any]) -> list[dict[str, Any]]:
    """
    The ``NewBatchTrigger`` payloads behind an asset-triggered run, oldest first.

    An event from a watcher whose payload is not a success with a ``batch_uri`` is malformed: it fails
    the task with ``AirflowFailException`` (a retry would read the same event).
    """
    payloads: list[dict[str, Any]] = []
    for asset, events in (context.get("triggering_asset_events") or {}).items():
        for event in events:
            extra = event.extra or {}
            if not extra.get("from_trigger"):
                continue  # an event posted through the API or by a task: not a landed file
            payload = extra.get("payload")
            if not isinstance(payload, dict) or payload.get("status") != "success" or not payload.get("batch_uri"):
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(
                    f"malformed watcher event on {getattr(asset, 'uri', asset)}: expected a payload "
                    f"{{'status': 'success', 'batch_uri': ...}}, got {str(payload)[:300]}"
                )
            payloads.append(payload)
    return payloads


def triggering_files(context: dict[str, Any]) -> list[str]:
    """The landed files behind an asset-triggered run (``NewBatchTrigger`` payloads), oldest first."""
    return [payload["batch_uri"] for payload in triggering_payloads(context)]


def _local(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


# ---------------------------------------------------------------------- level 1: continuous training


def build_continuous_training(spec: PipelineSpec) -> DAG:
    model = spec.name
    policy = spec.raw["retraining"]
    drift = Asset(drift_asset_uri(model))
    prediction_drift = Asset(prediction_drift_asset_uri(model))
    decay = Asset(performance_decay_uri(model))
    new_data = Asset(training_data_uri(model))
    assets = new_data | drift | prediction_drift | decay
    cron = expand_env(policy["schedule"] or "").strip()
    if cron:
        from airflow.timetables.assets import AssetOrTimeSchedule
        from airflow.timetables.trigger import CronTriggerTimetable

        schedule: Any = AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=assets
        )
    else:
        schedule = assets
    xcom = "ti.xcom_pull(task_ids='assemble_training_data')"

    # [START howto_continuous_training]
    with DAG(
        dag_id=f"continuous_training__{spec.dag_suffix}",
        default_args=spec.default_args(),  # retries with backoff (the YAML's retries:)
        schedule=schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["mlops", "level-1", model],
        doc_md=f"Continuous training of `{model}` from `{spec.path}` (pipeline version {spec.version}).",
    ) as dag:
        retraining_policy = RetrainingPolicyOperator(
            task_id="retraining_policy",
            model_name=model,
            cooldown=timedelta(minutes=float(policy["cooldown_minutes"])),
            ledger_path=spec.state_path("retraining_ledger.sqlite3"),
        )

        @task.sensor(
            task_id="assemble_training_data",
            poke_interval=3,
            timeout=float(policy["label_wait_minutes"]) * 60,
            mode="poke",
        )
        def assemble_training_data(run_id: str | None = None):
            """Wait until the batches of the training window have labels, then write train/eval sets."""
            from airflow.sdk.bases.sensor import PokeReturnValue

            window = assemble_window(spec, run_id or "manual")
            return PokeReturnValue(is_done=window is not None, xcom_value=window)

        validate = DataValidationOperator(
            task_id="validate_training_data",
            dataset=spec.ref(f"{{{{ {xcom}['train'] }}}}"),  # with data.conn_id on an object store
            suite_path=spec.contract_path("training_contract"),
            on_failure="fail",
            experiment_name=f"{model}-validation",
        )
        train = TrainModelOperator(
            task_id="train",
            training_data=spec.ref(f"{{{{ {xcom}['train'] }}}}"),
            evaluation_data=spec.ref(f"{{{{ {xcom}['eval'] }}}}"),
            target=spec.raw["target"],
            feature_columns=spec.feature_columns,
            estimator=ESTIMATOR_FACTORY,
            estimator_params=spec.estimator_params(),
            metrics=["accuracy", "f1", "roc_auc", "log_loss"],
            experiment_name=f"{model}-training",
            reference_sample_rows=2_000,
            tags={"mlops.pipeline_version": spec.version, "mlops.window": f"{{{{ {xcom}['source'] | join(',') }}}}"},
        )
        register = RegisterModelOperator(
            task_id="register_challenger",
            model_uri="{{ ti.xcom_pull(task_ids='train')['model_uri'] }}",
            run_id="{{ ti.xcom_pull(task_ids='train')['run_id'] }}",
            registered_model_name=model,
            alias="challenger",
            tags={"mlops.pipeline_version": spec.version},
        )
        gate = PromotionGateOperator(
            task_id="gate",
            model_name=model,
            eval_dataset=spec.ref(f"{{{{ {xcom}['eval'] }}}}"),
            target_column=spec.raw["target"],
            gate_spec=spec.gate_spec(),
            challenger="{{ ti.xcom_pull(task_ids='register_challenger')['version'] }}",
            on_pass="none",
            on_failure="skip",  # a rejected challenger is not promoted; the run stays green
            experiment_name=f"{model}-gate",
            latency_chunks=2,
        )
        promote = PromoteModelOperator(
            task_id="promote",
            registered_model_name=model,
            version="{{ ti.xcom_pull(task_ids='gate')['challenger_version'] }}",
            expected_champion_version="{{ ti.xcom_pull(task_ids='gate')['champion_version'] or 'none' }}",
            reason="gate {{ ti.xcom_pull(task_ids='gate')['verdict'] }}; "
            "{{ ti.xcom_pull(task_ids='retraining_policy')['kinds'] | join(',') }}",
        )
        batch_score = BatchPredictOperator(
            task_id="batch_score",
            input_data=spec.ref(f"{{{{ {xcom}['score_input'] }}}}"),
            registered_model_name=model,
            alias="champion",
            id_columns=[spec.raw["features"]["id"]],
            output_uri=os.path.join(
                spec.data_path("work"), "scores", "{{ run_id | replace(':', '_') | replace('+', '_') }}.parquet"
            ),
            output_conn_id=spec.conn_id,
            experiment_name=f"{model}-scoring",
        )
        chain = [retraining_policy, assemble_training_data(), validate, train, register, gate, promote, batch_score]
        for upstream, downstream in zip(chain, chain[1:], strict=False):
            upstream >> downstream
    # [END howto_continuous_training]
    return dag


# ---------------------------------------------------------------------- monitoring


def pending_batches(ledger_path: str, consumer: str, triggered: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """
    Take every batch of a drift-monitor run: the run's triggering batches, plus every batch the watcher
    claimed (``consumer`` in the ledger) that no run has taken yet, oldest first, each once.

    Airflow merges arrivals that come close together into one run, and 3.3.2 can leave an event of a
    burst unscheduled (docs/drift-fires-retraining.md): the ledger, not the event list, decides what a run
    checks.  A batch is recorded as taken (``<consumer>.taken``) by the run that checks it.
    """
    from mlops_provider.core.batches import Batch, BatchLedger

    ledger = BatchLedger(ledger_path)
    taken = ledger.seen_ids(f"{consumer}.taken")
    candidates: dict[str, str] = {}  # batch_id -> uri, oldest first
    for row in ledger.history(consumer):
        candidates.setdefault(row["batch_id"], row["uri"])
    for payload in triggered:
        candidates.setdefault(payload.get("batch_id") or payload["batch_uri"], payload["batch_uri"])
    batches: list[dict[str, Any]] = []
    for batch_id, uri in candidates.items():
        if batch_id in taken:
            continue
        ledger.claim(f"{consumer}.taken", Batch(uri=uri, batch_id=batch_id, is_dir=False, size_bytes=0, mtime=0.0),
                     {"run_id": run_id})
        path = _local(uri)
        batches = [b for b in batches if b["batch_uri"] != path]  # the same file re-landed: its latest content
        batches.append({"batch_uri": path, "name": os.path.basename(path), "batch_id": batch_id})
    if batches:
        # each batch's ordinal in the stream (1, 2, ...: the order it was taken in), the MLflow step of its
        # quality figures; the ledger never changes a claim, so a rerun finds the same step
        order = {row["batch_id"]: i for i, row in enumerate(ledger.history(f"{consumer}.taken"), start=1)}
        for b in batches:
            b["step"] = order.get(b["batch_id"])
    return batches


def build_drift_monitor(spec: PipelineSpec) -> DAG:
    model = spec.name
    ledger_path = spec.state_path("batch_ledger.sqlite3")
    watcher = f"drift_monitor__{model}"
    # [START howto_drift_monitor]
    batches = Asset(
        name=f"{model}_batches",
        uri=spec.folder_of("batches") if spec.on_object_store else f"file://{spec.folder_of('batches')}",
        watchers=[
            AssetWatcher(
                name=f"{model}_batch_watcher",
                trigger=NewBatchTrigger(
                    location=spec.data_path("batches"),
                    consumer=watcher,
                    conn_id=spec.conn_id,  # data.conn_id: the object store's connection
                    ledger_path=ledger_path,
                    poll_interval=1.0,
                ),
            )
        ],
    )
    with DAG(
        dag_id=f"drift_monitor__{spec.dag_suffix}",
        default_args=spec.default_args(),  # retries with backoff (the YAML's retries:)
        schedule=[batches],
        start_date=START,
        catchup=False,
        max_active_runs=1,
        params={"batch_uri": Param("", type="string", description="manual run: the batch to check")},
        tags=["mlops", "monitoring", model],
    ) as dag:

        @task
        def resolve_batches(params: dict | None = None, run_id: str | None = None, **context) -> list[dict]:
            """Every batch of this run: Airflow merges arrivals into one run; each one is checked on its own."""
            if params and params.get("batch_uri"):  # a manual run checks the batch it names
                path = _local(params["batch_uri"])
                return [{"batch_uri": path, "name": os.path.basename(path), "batch_id": "manual"}]
            found = pending_batches(ledger_path, watcher, triggering_payloads(context), run_id or "manual")
            print(f"{len(found)} batch(es) to check in this run: {[b['name'] for b in found]}")
            return found

        this = "ti.xcom_pull(task_ids='check_batch.batch', map_indexes=ti.map_index)"

        @task_group(group_id="check_batch")
        def check_batch(batch: dict) -> None:
            """One mapped instance per batch: a quarantined batch skips only its own score and drift check."""

            @task(task_id="batch")
            def batch_of(batch: dict) -> dict:
                return batch

            validate = DataValidationOperator(
                task_id="validate_batch",
                dataset=spec.ref(f"{{{{ {this}['batch_uri'] }}}}"),
                suite_path=spec.contract_path("batch_contract"),
                on_failure="quarantine",  # a bad batch is copied aside and not scored or drift-checked
                quarantine_location=spec.data_path("quarantine"),
                quarantine_conn_id=spec.conn_id,
                experiment_name=f"{model}-validation",
            )
            score = BatchPredictOperator(
                task_id="score_batch",
                input_data=spec.ref(f"{{{{ {this}['batch_uri'] }}}}"),
                registered_model_name=model,
                alias="champion",
                id_columns=[spec.raw["features"]["id"]],
                output_uri=os.path.join(spec.data_path("predictions"), f"{{{{ {this}['name'] }}}}"),
                output_conn_id=spec.conn_id,
                experiment_name=f"{model}-scoring",
            )
            drift = DriftCheckOperator(
                task_id="check_drift",
                reference=f"models:/{model}@champion",  # the champion's training profile
                current=spec.ref(f"{{{{ {this}['batch_uri'] }}}}"),
                model_name=model,  # emits mlops://<model>/drift only when the batch drifted
                columns=spec.raw["drift"]["columns"] or spec.feature_columns,
                drift_share=float(spec.raw["drift"]["drift_share"]),
                monitoring_experiment=f"{model}-monitoring",
                # the champion scores the batch; its outputs against its outputs on its evaluation data
                # (emits mlops://<model>/prediction_drift only when they drifted)
                prediction_drift=bool(spec.raw["drift"]["predictions"]),
                batch_step=f"{{{{ {this}.get('step') or '' }}}}",  # the batch's ordinal: MLflow step of quality.*
            )
            batch_of(batch) >> validate >> score >> drift

        check_batch.expand(batch=resolve_batches())
    # [END howto_drift_monitor]
    return dag


def build_performance_monitor(spec: PipelineSpec) -> DAG:
    model = spec.name
    perf = spec.raw["performance"]
    ledger_path = spec.state_path("batch_ledger.sqlite3")
    watcher = f"performance_monitor__{model}"
    labels = Asset(
        name=f"{model}_labels",
        uri=spec.data_path("labels") if spec.on_object_store else f"file://{spec.data_path('labels')}",
        watchers=[
            AssetWatcher(
                name=f"{model}_label_watcher",
                trigger=NewBatchTrigger(
                    location=os.path.join(spec.data_path("labels"), "*.parquet"),
                    consumer=watcher,
                    conn_id=spec.conn_id,
                    ledger_path=ledger_path,
                    poll_interval=1.0,
                ),
            )
        ],
    )
    with DAG(
        dag_id=f"performance_monitor__{spec.dag_suffix}",
        default_args=spec.default_args(),  # retries with backoff (the YAML's retries:)
        schedule=[labels],
        start_date=START,
        catchup=False,
        max_active_runs=1,
        params={"labels_uri": Param("", type="string", description="manual run: the label file")},
        tags=["mlops", "monitoring", model],
    ) as dag:

        @task
        def resolve_labels(params: dict | None = None, run_id: str | None = None, **context) -> list[dict]:
            """Every label file of this run (arrivals merged by Airflow included), each checked on its own."""
            if params and params.get("labels_uri"):
                path = _local(params["labels_uri"])
                return [{"batch_uri": path, "name": os.path.basename(path), "batch_id": "manual"}]
            found = pending_batches(ledger_path, watcher, triggering_payloads(context), run_id or "manual")
            print(f"{len(found)} label file(s) to check in this run: {[b['name'] for b in found]}")
            return found

        @task_group(group_id="check_labels")
        def check_labels(labels: dict) -> None:
            @task
            def match_predictions(labels: dict) -> dict:
                """Labels arrive later: find the predictions of the same batch (none: it was quarantined)."""
                from airflow.sdk.exceptions import AirflowSkipException

                predictions = os.path.join(spec.data_path("predictions"), labels["name"])
                if not spec.storage(predictions).exists():
                    raise AirflowSkipException(f"{labels['name']} was never scored (quarantined): no decay check")
                return {"labels": labels["batch_uri"], "predictions": predictions}

            matched = "ti.xcom_pull(task_ids='check_labels.match_predictions', map_indexes=ti.map_index)"
            decay = ModelPerformanceOperator(
                task_id="check_decay",
                model_name=model,  # emits mlops://<model>/performance_decay only on decay
                labels=spec.ref(f"{{{{ {matched}['labels'] }}}}"),
                predictions=spec.ref(f"{{{{ {matched}['predictions'] }}}}"),
                id_columns=[spec.raw["features"]["id"]],
                label_column=spec.raw["target"],
                metrics=[perf["metric"]],
                tolerance=float(perf["tolerance"]),
                min_rows=int(perf["min_rows"]),
            )
            match_predictions(labels) >> decay

        check_labels.expand(labels=resolve_labels())
    return dag


# ---------------------------------------------------------------------- level 2: CI/CD of the pipeline


def proposals_dir(spec: PipelineSpec) -> Path:
    """Where changed definitions are proposed (``MLOPS_PROPOSALS_DIR``, default ``proposed/`` beside the live YAML)."""
    return Path(os.environ.get("MLOPS_PROPOSALS_DIR") or Path(spec.path).resolve().parent / "proposed")


def live_definition(spec: PipelineSpec) -> Path:
    folder = os.environ.get("MLOPS_PIPELINES_DIR") or Path(spec.path).resolve().parent
    return Path(folder) / f"{spec.name}.yaml"


def worker_subprocess_env(scratch: str, **extra: str) -> dict[str, str]:
    """
    The environment of a CI subprocess, as a worker can run it.

    Airflow 3's task supervisor blocks the metadata DB in the task process by setting
    ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` (and ``AIRFLOW__CORE__...``) to ``airflow-db-not-allowed:///``;
    a child interpreter that imports Airflow would fail on it ("Could not parse SQLAlchemy URL").  The
    checks need no metadata DB, so the child gets a throwaway SQLite URL in ``scratch`` instead.
    """
    env = {k: v for k, v in os.environ.items() if "SQL_ALCHEMY_CONN" not in k}
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{os.path.join(scratch, 'ci-airflow.db')}"
    env.update(extra)
    return env


def run_component_tests(candidate: PipelineSpec, repo_root: Path) -> dict[str, Any]:
    """CI: the pipeline's own component tests (``tests:`` in the YAML), in a fresh interpreter."""
    import subprocess
    import sys
    import tempfile

    tests = list(candidate.raw["tests"])
    if not tests:
        return {"tests": [], "outcome": "no tests declared"}
    with tempfile.TemporaryDirectory(prefix="mlops-ci-") as scratch:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=repo_root, capture_output=True, text=True, timeout=900,
            env=worker_subprocess_env(scratch, MLOPS_CANDIDATE_PIPELINE=candidate.path),
        )
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    if proc.returncode != 0:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("component tests failed:\n" + "\n".join(tail))
    return {"tests": tests, "outcome": tail[-1] if tail else "passed"}


def check_dag_integrity(candidate: PipelineSpec, tests_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """CI: every DAG builds from the candidate definition (a DagBag in a fresh interpreter): no import error, no cycle."""
    import shutil
    import subprocess
    import sys
    import tempfile

    contracts = candidate.check_contracts()
    with tempfile.TemporaryDirectory(prefix="mlops-ci-") as tmp:
        shutil.copy(candidate.path, Path(tmp) / f"{candidate.name}.yaml")
        for contract, source in contracts.items():
            named = candidate.raw["validation"][contract]
            if os.path.isabs(named):
                continue  # read from where it is
            target = Path(tmp) / named
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
        probe = (
            "import json, sys\n"
            "from airflow.dag_processing.dagbag import DagBag\n"
            "bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)\n"
            "print(json.dumps({'errors': {k: v[-500:] for k, v in bag.import_errors.items()},"
            " 'dags': sorted(bag.dag_ids)}))\n"
        )
        dag_file = Path(tmp) / "_dags" / "candidate_dags.py"
        dag_file.parent.mkdir()
        dag_file.write_text(
            "from mlops_provider.pipelines import build_dags\n"
            f"build_dags({tmp!r}, globals(), tests_root={str(tests_root or tmp)!r})\n"
        )
        files = [dag_file]
        found: dict[str, Any] = {"errors": {}, "dags": []}
        for f in files:
            proc = subprocess.run(
                [sys.executable, "-c", probe, str(f)], capture_output=True, text=True, timeout=300,
                env=worker_subprocess_env(tmp, MLOPS_PIPELINES_DIR=tmp),
            )
            out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {
                "errors": {str(f): proc.stderr[-500:]}, "dags": []}
            found["errors"].update(out["errors"])
            found["dags"] += out["dags"]
    if found["errors"]:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"DAG integrity: import errors {found['errors']}")
    return found


def check_data_contract(candidate: PipelineSpec) -> dict[str, Any]:
    """CI: the candidate's contracts match the schema of the data it will see (base set, latest batch)."""
    import pandas as pd

    from mlops_provider.core.validation import compare_schema, describe_schema_changes, load_suite_file

    candidate.check_contracts()
    checks = {"training_contract": candidate.data_path("training")}
    batches = sorted(Path(candidate.data_path("batches")).parent.glob("*.parquet"))
    if batches:
        checks["batch_contract"] = str(batches[-1])
    problems = {}
    for contract, data in checks.items():
        source = load_suite_file(candidate.contract_path(contract))
        changes = compare_schema(pd.read_parquet(data), source.schema or {})
        if changes:
            problems[contract] = describe_schema_changes(changes)
    features = set(candidate.feature_columns) | {candidate.raw["target"], *candidate.exclude_columns}
    missing = sorted(features - set(pd.read_parquet(checks["training_contract"]).columns))
    if missing:
        problems["features"] = f"columns named by the pipeline but absent from the training data: {missing}"
    if problems:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"data contract: {problems}")
    return {"checked": checks}


def post_deployment_metric(spec: PipelineSpec, model_uri: str, after: float) -> dict[str, Any] | None:
    """The gate metric of the deployed model on the first labelled live batch landed after ``after``."""
    import mlflow
    import pandas as pd

    from mlops_provider.core.batches import _fs_mtime
    from mlops_provider.core.metrics import compute_metrics
    from mlops_provider.hooks.mlflow import MlflowHook

    labels_dir = spec.storage(spec.data_path("labels"))  # local folder or object store
    batches_dir = spec.storage(spec.folder_of("batches"))

    def mtime(path: Any) -> float:
        return path.stat().st_mtime if isinstance(path, Path) else _fs_mtime(path.fs.info(path.path))

    def read(path: Any) -> pd.DataFrame:
        with path.open("rb") as fh:
            return pd.read_parquet(fh)

    fresh = sorted(
        (p for p in (labels_dir.glob("*.parquet") if labels_dir.is_dir() else [])
         if mtime(p) > after and (batches_dir / p.name).exists()),
        key=lambda p: p.name,
    )
    if not fresh:
        return None
    name = fresh[0].name
    frame = read(batches_dir / name).merge(read(labels_dir / name), on=spec.raw["features"]["id"])
    with MlflowHook().mlflow_env():
        model = mlflow.sklearn.load_model(model_uri)
    metric = spec.raw["gate"]["metric"]
    X = frame[spec.feature_columns]
    y = frame[spec.raw["target"]]
    value = compute_metrics(model, X, y, [metric])[metric]
    floor = float(spec.raw["gate"]["min_value"])
    return {"batch": name, "metric": metric, "value": round(float(value), 4), "floor": floor, "ok": value >= floor}


def build_cicd(spec: PipelineSpec, tests_root: str | os.PathLike[str] | None = None) -> DAG:
    """
    ``cicd_pipeline__<model>`` (level 2): a changed definition is tested, trained, gated, deployed, watched.

    :param tests_root: where the YAML's component tests (``tests:``) are found and run (default: the YAML's folder).
    """
    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.sdk import TaskGroup

    from mlops_provider.operators.registry import RollbackModelOperator

    model = spec.name
    proposed = proposals_dir(spec) / f"{model}.yaml"
    repo_root = Path(tests_root) if tests_root is not None else Path(spec.path).resolve().parent
    candidate_path = "{{ ti.xcom_pull(task_ids='ci.load_candidate')['path'] }}"
    # [START howto_cicd_pipeline]
    definition_changed = Asset(
        name=f"{model}_pipeline_definition",
        uri=f"file://{proposed}",
        watchers=[
            AssetWatcher(  # every new content of the proposed YAML (new size/mtime) is one event
                name=f"{model}_definition_watcher",
                trigger=NewBatchTrigger(
                    location=str(proposed),
                    consumer=f"cicd_pipeline__{model}",
                    ledger_path=spec.state_path("cicd_ledger.sqlite3"),
                    poll_interval=2.0,
                ),
            )
        ],
    )
    with DAG(
        dag_id=f"cicd_pipeline__{spec.dag_suffix}",
        default_args=spec.default_args(),  # retries with backoff (the YAML's retries:)
        schedule=[definition_changed],
        start_date=START,
        catchup=False,
        max_active_runs=1,
        render_template_as_native_obj=True,  # the candidate's estimator params and gate stay dicts
        params={
            "pipeline_path": Param(str(proposed), type="string", description="the candidate definition"),
            "post_deploy_wait_minutes": Param(30, type="number"),
        },
        tags=["mlops", "level-2", model],
    ) as dag:
        with TaskGroup("ci"):

            @task
            def load_candidate(params: dict | None = None, **context) -> dict:
                """Validate the YAML (file:line:key errors fail the run: nothing is deployed)."""
                from mlops_provider.pipelines import load_pipeline

                path = _local((triggering_files(context) or [params["pipeline_path"]])[-1])
                candidate = load_pipeline(path)
                if candidate.name != model:
                    from airflow.sdk.exceptions import AirflowFailException

                    raise AirflowFailException(f"{path} defines {candidate.name!r}, this DAG deploys {model!r}")
                candidate.check_contracts()  # a proposal holds its YAML and the contracts it names
                return {
                    "path": path, "version": candidate.version, "estimator_params": candidate.estimator_params(),
                    "gate_spec": candidate.gate_spec(), "approval": bool(candidate.raw["gate"]["approval"]),
                }

            @task
            def component_tests(path: str) -> dict:
                from mlops_provider.pipelines import load_pipeline

                return run_component_tests(load_pipeline(path), repo_root)

            @task
            def dag_integrity(path: str) -> dict:
                from mlops_provider.pipelines import load_pipeline

                return check_dag_integrity(load_pipeline(path), repo_root)

            @task
            def data_contract(path: str) -> dict:
                from mlops_provider.pipelines import load_pipeline

                return check_data_contract(load_pipeline(path))

            loaded = load_candidate()
            ci_checks = [component_tests(candidate_path), dag_integrity(candidate_path), data_contract(candidate_path)]
            loaded >> ci_checks

        with TaskGroup("cd"):

            @task
            def training_window(path: str, run_id: str | None = None) -> dict:
                from mlops_provider.pipelines import load_pipeline

                window = assemble_window(load_pipeline(path), f"cicd-{run_id}")
                if window is None:
                    raise ValueError("the latest accepted batches have no labels yet")
                return window

            window = training_window(candidate_path)
            cand = "ti.xcom_pull(task_ids='ci.load_candidate')"
            win = "ti.xcom_pull(task_ids='cd.training_window')"
            train = TrainModelOperator(
                task_id="train",
                training_data=f"{{{{ {win}['train'] }}}}",
                evaluation_data=f"{{{{ {win}['eval'] }}}}",
                target=spec.raw["target"],
                feature_columns=spec.feature_columns,
                estimator=ESTIMATOR_FACTORY,
                estimator_params=f"{{{{ {cand}['estimator_params'] }}}}",
                metrics=["accuracy", "f1", "roc_auc", "log_loss"],
                experiment_name=f"{model}-cicd",
                reference_sample_rows=2_000,
                tags={"mlops.pipeline_version": f"{{{{ {cand}['version'] }}}}"},
            )
            register = RegisterModelOperator(
                task_id="register_candidate",
                model_uri="{{ ti.xcom_pull(task_ids='cd.train')['model_uri'] }}",
                run_id="{{ ti.xcom_pull(task_ids='cd.train')['run_id'] }}",
                registered_model_name=model,
                alias="candidate",
                tags={"mlops.pipeline_version": f"{{{{ {cand}['version'] }}}}"},
            )
            gate = PromotionGateOperator(
                task_id="gate",
                model_name=model,
                eval_dataset=f"{{{{ {win}['eval'] }}}}",
                target_column=spec.raw["target"],
                gate_spec=f"{{{{ {cand}['gate_spec'] }}}}",
                challenger="{{ ti.xcom_pull(task_ids='cd.register_candidate')['version'] }}",
                champion="champion",  # the production champion
                on_pass="none",
                on_failure="fail",  # a rejected candidate fails the run: nothing is deployed
                experiment_name=f"{model}-gate",
                latency_chunks=2,
            )

            @task.branch
            def needs_approval(ti=None) -> str:
                return "cd.approval" if ti.xcom_pull(task_ids="ci.load_candidate")["approval"] else "cd.promote"

            approval = ApprovalOperator(
                task_id="approval",
                subject=f"Deploy pipeline {model} " + "{{ ti.xcom_pull(task_ids='ci.load_candidate')['version'] }}?",
                body="Gate: {{ ti.xcom_pull(task_ids='cd.gate')['verdict'] }}; "
                "report {{ ti.xcom_pull(task_ids='cd.gate')['report_uri'] }}",
                response_timeout=timedelta(days=2),
                defaults="Reject",
            )
            promote = PromoteModelOperator(
                task_id="promote",
                registered_model_name=model,
                version="{{ ti.xcom_pull(task_ids='cd.gate')['challenger_version'] }}",
                expected_champion_version="{{ ti.xcom_pull(task_ids='cd.gate')['champion_version'] or 'none' }}",
                reason="level-2 deployment of pipeline {{ ti.xcom_pull(task_ids='ci.load_candidate')['version'] }}",
                trigger_rule="none_failed_min_one_success",
            )

            @task
            def deploy_definition(ti=None) -> dict:
                """Record the pipeline version on the model and make the candidate the live definition."""
                import shutil
                import time

                from mlops_provider.hooks.mlflow import MlflowHook

                cand_info = ti.xcom_pull(task_ids="ci.load_candidate")
                version = ti.xcom_pull(task_ids="cd.gate")["challenger_version"]
                client = MlflowHook().get_client()
                client.set_model_version_tag(model, version, "mlops.pipeline_version", cand_info["version"])
                client.set_model_version_tag(model, version, "mlops.deployed_by", ti.run_id)
                live = live_definition(spec)
                backup = Path(spec.data_path("work")) / "deployments" / f"{model}.{int(time.time())}.yaml"
                backup.parent.mkdir(parents=True, exist_ok=True)
                if live.exists():
                    shutil.copy(live, backup)
                shutil.copy(cand_info["path"], live)
                return {"version": version, "pipeline_version": cand_info["version"], "deployed_at": time.time(),
                        "previous_definition": str(backup) if backup.exists() else None, "live": str(live)}

            @task.sensor(task_id="post_deployment_check", poke_interval=3, timeout=3600, mode="poke")
            def post_deployment_check(ti=None):
                """Wait for the next labelled live batch; score the deployed model on it against the floor."""
                from airflow.sdk.bases.sensor import PokeReturnValue

                deployed = ti.xcom_pull(task_ids="cd.deploy_definition")
                verdict = post_deployment_metric(
                    spec, f"models:/{model}/{deployed['version']}", float(deployed["deployed_at"])
                )
                return PokeReturnValue(is_done=verdict is not None, xcom_value=verdict)

            @task.short_circuit
            def below_floor(ti=None) -> bool:
                verdict = ti.xcom_pull(task_ids="cd.post_deployment_check")
                print(f"post-deployment check: {verdict}")
                return not verdict["ok"]

            rollback = RollbackModelOperator(
                task_id="rollback",
                registered_model_name=model,
                expected_champion_version="{{ ti.xcom_pull(task_ids='cd.deploy_definition')['version'] }}",
                reason="post-deployment check: {{ ti.xcom_pull(task_ids='cd.post_deployment_check') }}",
            )

            @task
            def restore_definition(ti=None) -> None:
                """Put the previous definition back and fail loudly: the deployment was rolled back."""
                import shutil

                from airflow.sdk.exceptions import AirflowFailException

                deployed = ti.xcom_pull(task_ids="cd.deploy_definition")
                if deployed.get("previous_definition"):
                    shutil.copy(deployed["previous_definition"], deployed["live"])
                verdict = ti.xcom_pull(task_ids="cd.post_deployment_check")
                raise AirflowFailException(
                    f"rolled back v{deployed['version']}: {verdict['metric']} {verdict['value']} < floor "
                    f"{verdict['floor']} on live batch {verdict['batch']}; previous champion and definition restored"
                )

            deployed = deploy_definition()
            window >> train >> register >> gate >> needs_approval() >> [approval, promote]
            approval >> promote >> deployed
            deployed >> post_deployment_check() >> below_floor() >> rollback >> restore_definition()
        ci_checks >> window
    # [END howto_cicd_pipeline]
    return dag
