"""Operators of the pipelines-as-data DAGs (:mod:`mlops_provider.pipeline_dags`), each one job, thin.

Each takes the path of a pipeline YAML (``pipeline``, templated) and reads what it needs from it with
:func:`mlops_provider.pipelines.load_pipeline`; the logic lives in core:
:mod:`mlops_provider.core.training_window`, :mod:`mlops_provider.core.labels`,
:mod:`mlops_provider.core.pending` and :mod:`mlops_provider.core.pipeline_ci`.

Level 1 and monitoring:

* :class:`PendingBatchesOperator`: every landed file a run must check (merged arrivals included);
* :class:`TrainingWindowSensor`: waits until the training window has its labels, then writes train/eval;
* :class:`LabelsScoredSensor`: waits until the batch of a label file was scored (or quarantined).

Level 2 (CI/CD of a definition):

* :class:`PipelineCandidateOperator`: the proposed YAML is valid, names this model, has its contracts;
* :class:`PipelineComponentTestsOperator`, :class:`DagIntegrityOperator`, :class:`DataContractCheckOperator`;
* :class:`DeployPipelineDefinitionOperator`, :class:`PostDeploymentCheckSensor`,
  :class:`RestorePipelineDefinitionOperator`.

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseSensorOperator, PokeReturnValue

from mlops_provider._args import check_number
from mlops_provider.exceptions import MlopsConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_provider.pipelines import PipelineSpec


def _require(where: str, name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise MlopsConfigurationError(f"{where}: {name} must be a non-empty string; got {value!r}")


def _local(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def triggering_payloads(context: Context | dict[str, Any]) -> list[dict[str, Any]]:
    """
    The ``NewBatchTrigger`` payloads behind an asset-triggered run, oldest first.

    Events posted through the API or by a task (no ``from_trigger``) are not landed files and are left out.
    An event from a watcher whose payload is not a success with a ``batch_uri`` is malformed: it fails
    the task with ``AirflowFailException`` (a retry would read the same event).
    """
    from airflow.sdk.exceptions import AirflowFailException

    payloads: list[dict[str, Any]] = []
    for asset, events in (context.get("triggering_asset_events") or {}).items():
        for event in events:
            extra = event.extra or {}
            if not extra.get("from_trigger"):
                continue
            payload = extra.get("payload")
            if not isinstance(payload, dict) or payload.get("status") != "success" or not payload.get("batch_uri"):
                raise AirflowFailException(
                    f"malformed watcher event on {getattr(asset, 'uri', asset)}: expected a payload "
                    f"{{'status': 'success', 'batch_uri': ...}}, got {str(payload)[:300]}"
                )
            payloads.append(payload)
    return payloads


def triggering_files(context: Context | dict[str, Any]) -> list[str]:
    """The landed files behind an asset-triggered run (``NewBatchTrigger`` payloads), oldest first."""
    return [payload["batch_uri"] for payload in triggering_payloads(context)]


def _load(path: str, contracts_fallback: str | None = None) -> PipelineSpec:
    from mlops_provider.pipelines import load_pipeline

    return load_pipeline(path, contracts_fallback=contracts_fallback)


# ---------------------------------------------------------------------- monitoring and level 1


class PendingBatchesOperator(BaseOperator):
    """
    Every landed file this run must check, each once: the run's triggering files plus every file the
    watcher claimed that no earlier run took (Airflow merges close arrivals into one run and can leave an
    event of a burst unscheduled: the ledger, not the event list, decides).  Returns a list of
    ``{"batch_uri", "name", "batch_id"}`` to map over (``.expand``).

    :param ledger_path: the batch ledger the watcher (``NewBatchTrigger``) writes.
    :param consumer: the watcher's consumer name in the ledger; this operator records what it takes as
        ``<consumer>.taken``.
    :param manual_param: the DAG param that names one file for a manual run (its value, when set, is the
        only file checked).
    """

    template_fields: Sequence[str] = ("ledger_path", "consumer")
    ui_color = "#e8f5e9"

    def __init__(self, *, ledger_path: str, consumer: str, manual_param: str = "batch_uri", **kwargs: Any) -> None:
        where = f"PendingBatchesOperator {kwargs.get('task_id')!r}"
        for name, value in (("ledger_path", ledger_path), ("consumer", consumer), ("manual_param", manual_param)):
            _require(where, name, value)
        super().__init__(**kwargs)
        self.ledger_path = ledger_path
        self.consumer = consumer
        self.manual_param = manual_param

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from mlops_provider.core.pending import pending_batches

        named = (context.get("params") or {}).get(self.manual_param)
        if named:  # a manual run checks the file it names
            path = _local(str(named))
            self.log.info("manual run: checking %s", path)
            return [{"batch_uri": path, "name": os.path.basename(path), "batch_id": "manual"}]
        found = pending_batches(self.ledger_path, self.consumer, triggering_payloads(context), context["run_id"])
        self.log.info("%d file(s) to check in this run: %s", len(found), [b["name"] for b in found])
        return found


class TrainingWindowSensor(BaseSensorOperator):
    """
    Wait until every batch of the training window has its labels, then write ``train.parquet`` and
    ``eval.parquet`` (:func:`mlops_provider.core.training_window.assemble_training_window`).

    The window comes from the pipeline's ``retraining.window`` (``latest``, ``base_plus_latest``, ``all``)
    and ``retraining.window_batches``.  Returns ``{"train", "eval", "score_input", "source", "n_rows",
    "rows_by_source", "mode"}``.

    :param pipeline: path of the pipeline YAML (templated).
    :param output_dir: where the window is written (templated; default ``<data.work>/training/<run_id>``).
    """

    template_fields: Sequence[str] = ("pipeline", "output_dir")
    ui_color = "#fff8e1"

    def __init__(self, *, pipeline: str, output_dir: str | None = None, **kwargs: Any) -> None:
        _require(f"TrainingWindowSensor {kwargs.get('task_id')!r}", "pipeline", pipeline)
        kwargs.setdefault("mode", "poke")
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.output_dir = output_dir

    def poke(self, context: Context) -> PokeReturnValue:
        from mlops_provider.core.training_window import (
            TrainingWindowError,
            accepted_batches,
            assemble_training_window,
            missing_labels,
            plan_window,
        )
        from mlops_provider.exceptions import DatasetError

        spec = _load(self.pipeline)
        policy = spec.raw["retraining"]
        out = self.output_dir or os.path.join(
            spec.data_path("work"), "training", "".join(c if c.isalnum() or c in "-_." else "_" for c in context["run_id"])
        )
        try:
            window = assemble_training_window(
                training_path=spec.data_path("training"), predictions_dir=spec.data_path("predictions"),
                batches_dir=spec.batches_dir, labels_dir=spec.data_path("labels"), output_dir=out,
                id_column=spec.raw["features"]["id"], target=spec.raw["target"],
                mode=policy["window"], n=int(policy["window_batches"]),
            )
        except TrainingWindowError as err:
            raise DatasetError(f"training window of {spec.name}: {err}") from None
        if window is None:
            plan = plan_window(accepted_batches(spec.data_path("predictions")), policy["window"],
                               int(policy["window_batches"]))
            self.log.info("waiting for the labels of %s (in %s)", missing_labels(plan, spec.data_path("labels")),
                          spec.data_path("labels"))
            return PokeReturnValue(is_done=False)
        self.log.info("training window (%s): %s, %d rows", window["mode"], window["rows_by_source"], window["n_rows"])
        return PokeReturnValue(is_done=True, xcom_value=window)


class LabelsScoredSensor(BaseSensorOperator):
    """
    Match a label file with the predictions of its batch; wait while the batch is not scored yet.

    Labels normally land after their batch was scored.  When they land first (the batch is still being
    validated or scored, or has not landed yet) this sensor waits up to ``scoring_wait`` for the
    predictions; past it the task **fails** with :class:`~mlops_provider.exceptions.LabelsNotScored`,
    naming the state.  A quarantined batch (a copy under ``quarantine``) has no predictions by design:
    the task is **skipped** with that reason.  Returns ``{"labels", "predictions", "state"}``.

    :param labels: the label file (templated); its name is the batch's name.
    :param predictions_dir: where the monitor writes ``<name>`` predictions (templated).
    :param quarantine_dir: where quarantined batches are copied (templated).
    :param batches_dir: where batches land (templated).
    :param scoring_wait: seconds to wait for the scoring (>= 0).
    """

    template_fields: Sequence[str] = ("labels", "predictions_dir", "quarantine_dir", "batches_dir")
    ui_color = "#fff8e1"

    def __init__(self, *, labels: str, predictions_dir: str, quarantine_dir: str, batches_dir: str,
                 scoring_wait: float = 1800, **kwargs: Any) -> None:
        where = f"LabelsScoredSensor {kwargs.get('task_id')!r}"
        for name, value in (("labels", labels), ("predictions_dir", predictions_dir),
                            ("quarantine_dir", quarantine_dir), ("batches_dir", batches_dir)):
            _require(where, name, value)
        check_number(where, "scoring_wait", scoring_wait, low=0)
        kwargs.setdefault("mode", "poke")
        kwargs.setdefault("poke_interval", 2)
        kwargs.setdefault("timeout", float(scoring_wait) + 600)  # the sensor's own deadline comes first
        super().__init__(**kwargs)
        self.labels = labels
        self.predictions_dir = predictions_dir
        self.quarantine_dir = quarantine_dir
        self.batches_dir = batches_dir
        self.scoring_wait = scoring_wait
        self._first_poke: float | None = None

    def poke(self, context: Context) -> PokeReturnValue:
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops_provider.core.labels import QUARANTINED, SCORED, label_status
        from mlops_provider.exceptions import LabelsNotScored

        path = _local(self.labels)
        status = label_status(os.path.basename(path), predictions_dir=self.predictions_dir,
                              quarantine_dir=self.quarantine_dir, batches_dir=self.batches_dir)
        if status.state == SCORED:
            return PokeReturnValue(is_done=True, xcom_value={"labels": path, "predictions": status.predictions,
                                                             "state": status.state})
        if status.state == QUARANTINED:
            raise AirflowSkipException(status.message)
        now = time.monotonic()
        self._first_poke = self._first_poke or now
        waited = now - self._first_poke
        if waited >= float(self.scoring_wait):
            raise LabelsNotScored(
                f"labels {path} landed but {status.message}; waited {waited:.0f}s (scoring_wait "
                f"{self.scoring_wait}s) for predictions in {self.predictions_dir}. Land labels after their batch "
                "was scored, or rerun this task once it is"
            )
        self.log.info("%s; waiting for its predictions (%.0fs of %ss)", status.message, waited, self.scoring_wait)
        return PokeReturnValue(is_done=False)


# ---------------------------------------------------------------------- level 2: CI


class PipelineCandidateOperator(BaseOperator):
    """
    CI, first step: the proposed definition loads (file:line:key errors fail the run), defines this model,
    and its contracts exist (beside it, else in ``contracts_fallback``).

    The candidate is the file of the run's watcher event, else ``pipeline`` (a manual run).  Returns
    ``{"path", "version", "estimator_params", "gate_spec", "approval", "contracts"}``.

    :param pipeline: the proposed YAML (templated).
    :param model_name: the model this DAG deploys.
    :param contracts_fallback: where contracts named by a relative path are looked up when they are not
        beside the proposal (the live pipelines folder), so a proposal can be the YAML alone.
    """

    template_fields: Sequence[str] = ("pipeline", "model_name", "contracts_fallback")

    def __init__(self, *, pipeline: str, model_name: str, contracts_fallback: str | None = None, **kwargs: Any) -> None:
        where = f"PipelineCandidateOperator {kwargs.get('task_id')!r}"
        _require(where, "pipeline", pipeline)
        _require(where, "model_name", model_name)
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.model_name = model_name
        self.contracts_fallback = contracts_fallback

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.exceptions import MlopsConfigurationError

        path = _local((triggering_files(context) or [self.pipeline])[-1])
        candidate = _load(path, self.contracts_fallback)
        if candidate.name != self.model_name:
            raise MlopsConfigurationError(f"{path} defines {candidate.name!r}, this DAG deploys {self.model_name!r}")
        contracts = candidate.check_contracts()
        self.log.info("candidate %s (pipeline version %s), contracts %s", path, candidate.version, contracts)
        return {
            "path": path, "version": candidate.version, "estimator_params": candidate.estimator_params(),
            "gate_spec": candidate.gate_spec(), "approval": bool(candidate.raw["gate"]["approval"]),
            "contracts": contracts,
        }


class _PipelineCheckOperator(BaseOperator):
    template_fields: Sequence[str] = ("pipeline", "contracts_fallback")

    def __init__(self, *, pipeline: str, contracts_fallback: str | None = None, **kwargs: Any) -> None:
        _require(f"{type(self).__name__} {kwargs.get('task_id')!r}", "pipeline", pipeline)
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.contracts_fallback = contracts_fallback

    def check(self, candidate: PipelineSpec) -> dict[str, Any]:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core.pipeline_ci import PipelineCheckError
        from mlops_provider.exceptions import PipelineCheckFailed

        candidate = _load(_local(self.pipeline), self.contracts_fallback)
        try:
            result = self.check(candidate)
        except PipelineCheckError as err:
            raise PipelineCheckFailed(f"{candidate.path}: {err}") from None
        self.log.info("%s passed: %s", type(self).__name__, result)
        return result


class PipelineComponentTestsOperator(_PipelineCheckOperator):
    """
    CI: the pipeline's component tests (``tests:`` in the YAML), run by pytest in a fresh interpreter in
    ``tests_root`` with ``MLOPS_CANDIDATE_PIPELINE`` pointing at the candidate.

    :param pipeline: the candidate YAML (templated).
    :param tests_root: the folder the tests are relative to.
    :param contracts_fallback: see :class:`PipelineCandidateOperator`.
    """

    def __init__(self, *, tests_root: str, **kwargs: Any) -> None:
        _require(f"PipelineComponentTestsOperator {kwargs.get('task_id')!r}", "tests_root", tests_root)
        super().__init__(**kwargs)
        self.tests_root = tests_root

    def check(self, candidate: PipelineSpec) -> dict[str, Any]:
        from mlops_provider.core.pipeline_ci import run_component_tests

        return run_component_tests(candidate, self.tests_root)


class DagIntegrityOperator(_PipelineCheckOperator):
    """
    CI: every DAG builds from the candidate (a DagBag of a one-call DAG file, in a fresh interpreter that
    runs as a worker can run it): no import error, no cycle.

    :param pipeline: the candidate YAML (templated).
    :param tests_root: passed to ``build_dags`` in the probe.
    :param contracts_fallback: see :class:`PipelineCandidateOperator`.
    """

    def __init__(self, *, tests_root: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tests_root = tests_root

    def check(self, candidate: PipelineSpec) -> dict[str, Any]:
        from mlops_provider.core.pipeline_ci import check_dag_integrity

        return check_dag_integrity(candidate, self.tests_root)


class DataContractCheckOperator(_PipelineCheckOperator):
    """
    CI: the candidate's contracts match the columns and dtypes of the base training set and of the latest
    landed batch, and every column the definition names exists.

    :param pipeline: the candidate YAML (templated).
    :param contracts_fallback: see :class:`PipelineCandidateOperator`.
    """

    def check(self, candidate: PipelineSpec) -> dict[str, Any]:
        from mlops_provider.core.pipeline_ci import check_data_contract

        return check_data_contract(candidate)


# ---------------------------------------------------------------------- level 2: CD


class DeployPipelineDefinitionOperator(BaseOperator):
    """
    Record the pipeline version on the promoted model version and make the candidate the live definition
    (the previous one is kept in ``backup_dir``).  Returns ``{"version", "pipeline_version", "deployed_at",
    "previous_definition", "live"}``.

    :param pipeline: the candidate YAML (templated).
    :param live_path: the live definition it replaces.
    :param backup_dir: where the previous definition is kept.
    :param registered_model_name: the model.
    :param version: the promoted model version (templated).
    :param pipeline_version: the candidate's version (templated).
    :param mlflow_conn_id: the MLflow connection.
    """

    template_fields: Sequence[str] = ("pipeline", "live_path", "backup_dir", "registered_model_name", "version",
                                      "pipeline_version")

    def __init__(self, *, pipeline: str, live_path: str, backup_dir: str, registered_model_name: str,
                 version: str, pipeline_version: str, mlflow_conn_id: str = "mlflow_default", **kwargs: Any) -> None:
        where = f"DeployPipelineDefinitionOperator {kwargs.get('task_id')!r}"
        for name, value in (("pipeline", pipeline), ("live_path", live_path), ("backup_dir", backup_dir),
                            ("registered_model_name", registered_model_name)):
            _require(where, name, value)
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.live_path = live_path
        self.backup_dir = backup_dir
        self.registered_model_name = registered_model_name
        self.version = version
        self.pipeline_version = pipeline_version
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core.pipeline_ci import deploy_definition
        from mlops_provider.hooks.mlflow import MlflowHook

        version = str(self.version)
        client = MlflowHook(mlflow_conn_id=self.mlflow_conn_id).get_client()
        client.set_model_version_tag(self.registered_model_name, version, "mlops.pipeline_version",
                                     str(self.pipeline_version))
        client.set_model_version_tag(self.registered_model_name, version, "mlops.deployed_by", context["run_id"])
        deployed = deploy_definition(_local(self.pipeline), self.live_path, self.backup_dir)
        self.log.info("v%s deployed with pipeline %s: %s", version, self.pipeline_version, deployed)
        return {"version": version, "pipeline_version": str(self.pipeline_version), **deployed}


class PostDeploymentCheckSensor(BaseSensorOperator):
    """
    Wait for the first labelled live batch landed after the deployment; score the deployed model on it
    and compare the gate metric with the gate's floor (``gate.min_value``).  Returns
    ``{"batch", "metric", "value", "floor", "ok", "rows"}``; a value below the floor is a verdict
    (``ok: false``), not a task failure: the rollback downstream acts on it.

    :param pipeline: the live pipeline YAML (templated).
    :param model_uri: the deployed model (templated, e.g. ``models:/m/3``).
    :param deployed_at: the deployment's epoch seconds (templated).
    :param mlflow_conn_id: the MLflow connection.
    """

    template_fields: Sequence[str] = ("pipeline", "model_uri", "deployed_at")
    ui_color = "#fff8e1"

    def __init__(self, *, pipeline: str, model_uri: str, deployed_at: str | float,
                 mlflow_conn_id: str = "mlflow_default", **kwargs: Any) -> None:
        where = f"PostDeploymentCheckSensor {kwargs.get('task_id')!r}"
        _require(where, "pipeline", pipeline)
        _require(where, "model_uri", model_uri)
        kwargs.setdefault("mode", "poke")
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.model_uri = model_uri
        self.deployed_at = deployed_at
        self.mlflow_conn_id = mlflow_conn_id

    def poke(self, context: Context) -> PokeReturnValue:
        from mlops_provider.core.metrics import greater_is_better
        from mlops_provider.core.pipeline_ci import (
            first_labelled_batch_after,
            labelled_frame,
            post_deployment_verdict,
        )

        spec = _load(self.pipeline)
        labels = spec.data_path("labels")
        name = first_labelled_batch_after(labels, spec.batches_dir, float(self.deployed_at))
        if name is None:
            self.log.info("no labelled live batch landed since the deployment yet (%s)", labels)
            return PokeReturnValue(is_done=False)
        import mlflow

        from mlops_provider.hooks.mlflow import MlflowHook

        with MlflowHook(mlflow_conn_id=self.mlflow_conn_id).mlflow_env():
            model = mlflow.sklearn.load_model(self.model_uri)
        metric = spec.raw["gate"]["metric"]
        verdict = post_deployment_verdict(
            model, labelled_frame(spec.batches_dir, labels, name, spec.raw["features"]["id"]),
            features=spec.feature_columns, target=spec.raw["target"], metric=metric,
            floor=float(spec.raw["gate"]["min_value"]), lower_is_better=not greater_is_better(metric), batch=name,
        )
        self.log.info("post-deployment check: %s", verdict)
        return PokeReturnValue(is_done=True, xcom_value=verdict)


class RestorePipelineDefinitionOperator(BaseOperator):
    """
    After a rollback: put the previous definition back and **fail** with the reason
    (:class:`~mlops_provider.exceptions.PipelineRolledBack`), so the run says the deployment was undone.

    :param deployed: the XCom of :class:`DeployPipelineDefinitionOperator` (templated; a native dict).
    :param verdict: the XCom of :class:`PostDeploymentCheckSensor` (templated; a native dict).
    """

    template_fields: Sequence[str] = ("deployed", "verdict")

    def __init__(self, *, deployed: Any, verdict: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployed = deployed
        self.verdict = verdict

    def execute(self, context: Context) -> None:
        from mlops_provider.core.pipeline_ci import restore_definition
        from mlops_provider.exceptions import PipelineRolledBack

        deployed, verdict = self.deployed, self.verdict
        if not isinstance(deployed, dict) or not isinstance(verdict, dict):
            raise MlopsConfigurationError(
                f"deployed and verdict must render to dicts (render_template_as_native_obj=True); got "
                f"{type(deployed).__name__}, {type(verdict).__name__}"
            )
        restored = restore_definition(deployed["live"], deployed.get("previous_definition"))
        raise PipelineRolledBack(
            f"rolled back v{deployed['version']}: {verdict['metric']} {verdict['value']} misses the floor "
            f"{verdict['floor']} on live batch {verdict['batch']}; previous champion "
            + ("and definition restored" if restored else "restored (there was no previous definition)")
        )
