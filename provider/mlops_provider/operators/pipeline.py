"""Operators of the pipelines-as-data DAGs (:mod:`mlops_provider.pipeline_dags`), each one job, thin.

Each takes the path of a pipeline YAML (``pipeline``, templated) and reads what it needs from it with
:func:`mlops_provider.pipelines.load_pipeline`; the logic lives in core:
:mod:`mlops_provider.core.training_window`, :mod:`mlops_provider.core.labels`,
:mod:`mlops_provider.core.pending` and :mod:`mlops_provider.core.pipeline_ci`.

Level 1 and monitoring:

* :class:`PendingBatchesOperator`: every landed file a run must check (merged arrivals included).

Level 2 (CI/CD of a definition):

* :class:`PipelineCandidateOperator`: the proposed YAML is valid, names this model, has its contracts;
* :class:`PipelineComponentTestsOperator`, :class:`DagIntegrityOperator`, :class:`DataContractCheckOperator`;
* :class:`DeployPipelineDefinitionOperator`, :class:`RestorePipelineDefinitionOperator`.

The sensors of these DAGs (training window, labels scored, post-deployment check) are in
:mod:`mlops_provider.sensors.pipeline`.

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider.exceptions import MlopsConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_provider.pipelines import PipelineSpec


def require_text(where: str, name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise MlopsConfigurationError(f"{where}: {name} must be a non-empty string; got {value!r}")


def local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def storage_for(conn_id: str | None) -> Any:
    """URI -> path object: ``ObjectStoragePath`` with ``conn_id`` on an object store, ``pathlib.Path`` locally."""

    def storage(uri: str) -> Any:
        if "://" in uri and not uri.startswith("file://"):
            from airflow.sdk import ObjectStoragePath

            return ObjectStoragePath(uri, conn_id=conn_id)
        from mlops_provider.core.storage import local_storage

        return local_storage(uri)

    return storage


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


def load_spec(path: str, contracts_fallback: str | None = None) -> PipelineSpec:
    from mlops_provider.pipelines import load_pipeline

    return load_pipeline(path, contracts_fallback=contracts_fallback)


# ---------------------------------------------------------------------- monitoring and level 1


class PendingBatchesOperator(BaseOperator):
    """
    Every landed file this run must check, each once: the run's triggering files plus every file the
    watcher claimed that no earlier run took (Airflow merges close arrivals into one run and can leave an
    event of a burst unscheduled: the ledger, not the event list, decides).  Returns a list of
    ``{"batch_uri", "name", "batch_id", "step"}`` to map over (``.expand``): ``step`` is the file's ordinal
    (1, 2, ...) in the order runs took files, the MLflow step of its quality figures (absent for a
    manual run).

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
            require_text(where, name, value)
        super().__init__(**kwargs)
        self.ledger_path = ledger_path
        self.consumer = consumer
        self.manual_param = manual_param

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from mlops_provider.core.pending import pending_batches

        named = (context.get("params") or {}).get(self.manual_param)
        if named:  # a manual run checks the file it names
            path = local_path(str(named))
            self.log.info("manual run: checking %s", path)
            return [{"batch_uri": path, "name": os.path.basename(path), "batch_id": "manual"}]
        found = pending_batches(self.ledger_path, self.consumer, triggering_payloads(context), context["run_id"])
        self.log.info("%d file(s) to check in this run: %s", len(found), [b["name"] for b in found])
        return found


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
        require_text(where, "pipeline", pipeline)
        require_text(where, "model_name", model_name)
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.model_name = model_name
        self.contracts_fallback = contracts_fallback

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.exceptions import MlopsConfigurationError

        path = local_path((triggering_files(context) or [self.pipeline])[-1])
        candidate = load_spec(path, self.contracts_fallback)
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
        require_text(f"{type(self).__name__} {kwargs.get('task_id')!r}", "pipeline", pipeline)
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.contracts_fallback = contracts_fallback

    def check(self, candidate: PipelineSpec) -> dict[str, Any]:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core.pipeline_ci import PipelineCheckError
        from mlops_provider.exceptions import PipelineCheckFailed

        candidate = load_spec(local_path(self.pipeline), self.contracts_fallback)
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
        require_text(f"PipelineComponentTestsOperator {kwargs.get('task_id')!r}", "tests_root", tests_root)
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

        return check_data_contract(candidate, storage=candidate.storage)  # a local root or an object store


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
            require_text(where, name, value)
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
        deployed = deploy_definition(local_path(self.pipeline), self.live_path, self.backup_dir)
        self.log.info("v%s deployed with pipeline %s: %s", version, self.pipeline_version, deployed)
        return {"version": version, "pipeline_version": str(self.pipeline_version), **deployed}


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
