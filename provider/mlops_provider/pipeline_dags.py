"""DAG factory: build the level-1, monitoring and level-2 MLOps DAGs of a model from its pipeline YAML.

``<pipelines folder>/<model>.yaml`` (validated by :func:`mlops_provider.pipelines.load_pipeline`) holds the
data locations, features, estimator, validation contracts, gate thresholds, drift and decay settings
and the retraining policy.  A DAG file builds every pipeline of a folder in one line
(:func:`mlops_provider.pipelines.build_dags`)::

    # Airflow DAGs of every pipeline in pipelines/ (safe mode only opens files naming "airflow" and "dag")
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
  checked on its own (a mapped task group): wait for the batch's predictions (labels that land before
  scoring wait, then fail; a quarantined batch is skipped) -> decay check -> performance-decay Asset event.
* :func:`build_cicd` (``cicd_pipeline__<model>``, level 2): a changed definition written to
  ``<pipelines folder>/proposed/<model>.yaml`` is tested (CI) and deployed (CD); see ``dags/cicd_pipeline.py``.

The builders wire operators only: the pipeline-specific tasks (pending files, training window, label
matching, CI checks, deployment, post-deployment check, restore) are the operators of
:mod:`mlops_provider.operators.pipeline` and the sensors of :mod:`mlops_provider.sensors.pipeline`, with their logic in :mod:`mlops_provider.core`.  The only
callables are :func:`approval_branch` and :func:`verdict_failed` (a branch and a short-circuit) and the
identity tasks that hand each mapped instance its file.  Every YAML field: ``docs/pipelines.md``.

Nothing heavy is imported here: pandas, scikit-learn, MLflow and GX load inside the tasks.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, Param, TaskGroup, task, task_group

from mlops_provider.operators.drift import DriftCheckOperator, drift_asset_uri, prediction_drift_asset_uri
from mlops_provider.operators.gate import PromotionGateOperator
from mlops_provider.operators.performance import ModelPerformanceOperator, performance_decay_uri
from mlops_provider.operators.pipeline import (
    DagIntegrityOperator,
    DataContractCheckOperator,
    DeployPipelineDefinitionOperator,
    PendingBatchesOperator,
    PipelineCandidateOperator,
    PipelineComponentTestsOperator,
    RestorePipelineDefinitionOperator,
)
from mlops_provider.operators.prediction import BatchPredictOperator
from mlops_provider.operators.registry import PromoteModelOperator, RegisterModelOperator
from mlops_provider.operators.retraining import RetrainingPolicyOperator
from mlops_provider.operators.training import TrainModelOperator
from mlops_provider.operators.validation import DataValidationOperator
from mlops_provider.pipelines import PipelineSpec, discover_pipelines, expand_env
from mlops_provider.sensors.pipeline import (
    LabelsScoredSensor,
    PostDeploymentCheckSensor,
    TrainingWindowSensor,
)
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

        assemble_training_data = TrainingWindowSensor(  # waits for the labels of the window's batches
            task_id="assemble_training_data",
            pipeline=spec.path,
            poke_interval=3,
            timeout=float(policy["label_wait_minutes"]) * 60,
        )
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
        chain = [retraining_policy, assemble_training_data, validate, train, register, gate, promote, batch_score]
        for upstream, downstream in zip(chain, chain[1:], strict=False):
            upstream >> downstream
    # [END howto_continuous_training]
    return dag


# ---------------------------------------------------------------------- monitoring


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

        resolve_batches = PendingBatchesOperator(  # every batch of the run, merged arrivals included
            task_id="resolve_batches", ledger_path=ledger_path, consumer=watcher, manual_param="batch_uri"
        )

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

        check_batch.expand(batch=resolve_batches.output)
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

        resolve_labels = PendingBatchesOperator(  # every label file of the run, each checked on its own
            task_id="resolve_labels", ledger_path=ledger_path, consumer=watcher, manual_param="labels_uri"
        )

        @task_group(group_id="check_labels")
        def check_labels(labels: dict) -> None:
            @task(task_id="labels")
            def labels_of(labels: dict) -> dict:
                return labels

            this = "ti.xcom_pull(task_ids='check_labels.labels', map_indexes=ti.map_index)"
            match_predictions = LabelsScoredSensor(  # labels landed before scoring wait; quarantined: skipped
                task_id="match_predictions",
                labels=f"{{{{ {this}['batch_uri'] }}}}",
                predictions_dir=spec.data_path("predictions"),
                quarantine_dir=spec.data_path("quarantine"),
                batches_dir=spec.batches_dir,
                scoring_wait=float(perf["scoring_wait_minutes"]) * 60,
                conn_id=spec.conn_id,  # data.conn_id: the folders may be on an object store
            )
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
            labels_of(labels) >> match_predictions >> decay

        check_labels.expand(labels=resolve_labels.output)
    return dag


# ---------------------------------------------------------------------- level 2: CI/CD of the pipeline


def proposals_dir(spec: PipelineSpec) -> Path:
    """Where changed definitions are proposed (``MLOPS_PROPOSALS_DIR``, default ``proposed/`` beside the live YAML)."""
    return Path(os.environ.get("MLOPS_PROPOSALS_DIR") or Path(spec.path).resolve().parent / "proposed")


def live_definition(spec: PipelineSpec) -> Path:
    folder = os.environ.get("MLOPS_PIPELINES_DIR") or Path(spec.path).resolve().parent
    return Path(folder) / f"{spec.name}.yaml"


def build_cicd(spec: PipelineSpec, tests_root: str | os.PathLike[str] | None = None) -> DAG:
    """
    ``cicd_pipeline__<model>`` (level 2): a changed definition is tested, trained, gated, deployed, watched.

    :param tests_root: where the YAML's component tests (``tests:``) are found and run (default: the YAML's folder).
    """
    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator, ShortCircuitOperator

    from mlops_provider.operators.registry import RollbackModelOperator

    model = spec.name
    proposed = proposals_dir(spec) / f"{model}.yaml"
    live = live_definition(spec)
    repo_root = str(Path(tests_root) if tests_root is not None else Path(spec.path).resolve().parent)
    cand = "ti.xcom_pull(task_ids='ci.load_candidate')"
    candidate_path = f"{{{{ {cand}['path'] }}}}"
    win = "ti.xcom_pull(task_ids='cd.training_window')"
    deployed = "ti.xcom_pull(task_ids='cd.deploy_definition')"
    verdict = "ti.xcom_pull(task_ids='cd.post_deployment_check')"
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
        },
        tags=["mlops", "level-2", model],
    ) as dag:
        with TaskGroup("ci"):
            # the proposal is the YAML; contracts not beside it are read from the live pipelines folder
            load_candidate = PipelineCandidateOperator(
                task_id="load_candidate", pipeline="{{ params.pipeline_path }}", model_name=model,
                contracts_fallback=str(live.parent),
            )
            ci_checks = [
                PipelineComponentTestsOperator(task_id="component_tests", pipeline=candidate_path,
                                               tests_root=repo_root, contracts_fallback=str(live.parent)),
                DagIntegrityOperator(task_id="dag_integrity", pipeline=candidate_path, tests_root=repo_root,
                                     contracts_fallback=str(live.parent)),
                DataContractCheckOperator(task_id="data_contract", pipeline=candidate_path,
                                          contracts_fallback=str(live.parent)),
            ]
            load_candidate >> ci_checks

        with TaskGroup("cd"):
            window = TrainingWindowSensor(
                task_id="training_window",
                pipeline=candidate_path,
                output_dir=os.path.join(spec.data_path("work"), "training", "cicd-{{ run_id | replace(':', '_') "
                                        "| replace('+', '_') }}"),
                poke_interval=3,
                timeout=float(spec.raw["retraining"]["label_wait_minutes"]) * 60,
            )
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
            needs_approval = BranchPythonOperator(  # gate.approval: true -> a person approves in the UI
                task_id="needs_approval",
                python_callable=approval_branch,
                op_kwargs={"approval": f"{{{{ {cand}['approval'] }}}}"},
            )
            approval = ApprovalOperator(
                task_id="approval",
                subject=f"Deploy pipeline {model} " + f"{{{{ {cand}['version'] }}}}?",
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
                reason=f"level-2 deployment of pipeline {{{{ {cand}['version'] }}}}",
                trigger_rule="none_failed_min_one_success",
            )
            deploy = DeployPipelineDefinitionOperator(  # records the pipeline version, makes the YAML live
                task_id="deploy_definition",
                pipeline=candidate_path,
                live_path=str(live),
                backup_dir=os.path.join(spec.data_path("work"), "deployments"),
                registered_model_name=model,
                version="{{ ti.xcom_pull(task_ids='cd.gate')['challenger_version'] }}",
                pipeline_version=f"{{{{ {cand}['version'] }}}}",
            )
            post_deployment_check = PostDeploymentCheckSensor(  # the next labelled live batch vs the floor
                task_id="post_deployment_check",
                pipeline=str(live),
                model_uri=f"models:/{model}/{{{{ {deployed}['version'] }}}}",
                deployed_at=f"{{{{ {deployed}['deployed_at'] }}}}",
                poke_interval=3,
                timeout=3600,
            )
            below_floor = ShortCircuitOperator(
                task_id="below_floor",
                python_callable=verdict_failed,
                op_kwargs={"verdict": f"{{{{ {verdict} }}}}"},
            )
            rollback = RollbackModelOperator(
                task_id="rollback",
                registered_model_name=model,
                expected_champion_version=f"{{{{ {deployed}['version'] }}}}",
                reason=f"post-deployment check: {{{{ {verdict} }}}}",
            )
            restore = RestorePipelineDefinitionOperator(  # puts the previous YAML back and fails loudly
                task_id="restore_definition",
                deployed=f"{{{{ {deployed} }}}}",
                verdict=f"{{{{ {verdict} }}}}",
            )
            window >> train >> register >> gate >> needs_approval >> [approval, promote]
            approval >> promote >> deploy >> post_deployment_check >> below_floor >> rollback >> restore
        ci_checks >> window
    # [END howto_cicd_pipeline]
    return dag


def approval_branch(approval: bool) -> str:
    """The CD branch after the gate: a human approval first, or straight to the promotion."""
    return "cd.approval" if approval else "cd.promote"


def verdict_failed(verdict: dict[str, Any]) -> bool:
    """``True`` (go on to the rollback) when the post-deployment verdict missed the floor."""
    return not verdict["ok"]
