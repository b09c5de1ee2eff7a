"""Sensors of the pipelines-as-data DAGs (:mod:`mlops_provider.pipeline_dags`), each one wait, thin.

* :class:`TrainingWindowSensor`: waits until the training window has its labels, then writes train/eval
  (:mod:`mlops_provider.core.training_window`);
* :class:`LabelsScoredSensor`: waits until the batch of a label file was scored, skips a quarantined one,
  fails when labels landed before scoring and the scoring never came (:mod:`mlops_provider.core.labels`);
* :class:`PostDeploymentCheckSensor`: waits for the first labelled live batch after a deployment and
  scores the deployed model on it (:mod:`mlops_provider.core.pipeline_ci`).

They poke (``mode="poke"`` by default): each poke is cheap file listing.  Nothing heavy is imported at
module level.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from mlops_provider._args import check_number
from mlops_provider.operators.pipeline import load_spec, local_path, require_text, storage_for

if TYPE_CHECKING:
    from airflow.sdk import Context


class TrainingWindowSensor(BaseSensorOperator):
    """
    Wait until every batch of the training window has its labels, then write ``train.parquet`` and
    ``eval.parquet`` (:func:`mlops_provider.core.training_window.assemble_training_window`).

    The window comes from the pipeline's ``retraining.window`` (``latest``, ``base_plus_latest``, ``all``)
    and ``retraining.window_batches``.  Returns ``{"train", "eval", "score_input", "source", "n_rows",
    "rows_by_source", "mode"}``.

    Every file is read and written through the pipeline's data root: a local folder, or an object store
    (``data.root: s3://...`` with ``data.conn_id``), where the returned paths are ``s3://...`` URIs.

    :param pipeline: path of the pipeline YAML (templated).
    :param output_dir: where the window is written (templated; default ``<data.work>/training/<run_id>``).
    """

    template_fields: Sequence[str] = ("pipeline", "output_dir")
    ui_color = "#fff8e1"

    def __init__(self, *, pipeline: str, output_dir: str | None = None, **kwargs: Any) -> None:
        require_text(f"TrainingWindowSensor {kwargs.get('task_id')!r}", "pipeline", pipeline)
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

        spec = load_spec(self.pipeline)
        policy = spec.raw["retraining"]
        out = self.output_dir or os.path.join(
            spec.data_path("work"), "training", "".join(c if c.isalnum() or c in "-_." else "_" for c in context["run_id"])
        )
        try:
            window = assemble_training_window(
                training_path=spec.data_path("training"), predictions_dir=spec.data_path("predictions"),
                batches_dir=spec.batches_dir, labels_dir=spec.data_path("labels"), output_dir=out,
                id_column=spec.raw["features"]["id"], target=spec.raw["target"],
                mode=policy["window"], n=int(policy["window_batches"]), storage=spec.storage,
            )
        except TrainingWindowError as err:
            raise DatasetError(f"training window of {spec.name}: {err}") from None
        if window is None:
            plan = plan_window(accepted_batches(spec.data_path("predictions"), spec.storage), policy["window"],
                               int(policy["window_batches"]))
            self.log.info("waiting for the labels of %s (in %s)",
                          missing_labels(plan, spec.data_path("labels"), spec.storage), spec.data_path("labels"))
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
    :param conn_id: Airflow connection of an object-store data root (the pipeline's ``data.conn_id``,
        e.g. an ``aws`` connection for ``s3://`` folders); ``None`` for local folders.
    """

    template_fields: Sequence[str] = ("labels", "predictions_dir", "quarantine_dir", "batches_dir", "conn_id")
    ui_color = "#fff8e1"

    def __init__(self, *, labels: str, predictions_dir: str, quarantine_dir: str, batches_dir: str,
                 scoring_wait: float = 1800, conn_id: str | None = None, **kwargs: Any) -> None:
        where = f"LabelsScoredSensor {kwargs.get('task_id')!r}"
        for name, value in (("labels", labels), ("predictions_dir", predictions_dir),
                            ("quarantine_dir", quarantine_dir), ("batches_dir", batches_dir)):
            require_text(where, name, value)
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
        self.conn_id = conn_id
        self._first_poke: float | None = None

    def poke(self, context: Context) -> PokeReturnValue:
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops_provider.core.labels import QUARANTINED, SCORED, label_status
        from mlops_provider.exceptions import LabelsNotScored

        path = local_path(self.labels)
        status = label_status(os.path.basename(path), predictions_dir=self.predictions_dir,
                              quarantine_dir=self.quarantine_dir, batches_dir=self.batches_dir,
                              storage=storage_for(self.conn_id or None))
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


class PostDeploymentCheckSensor(BaseSensorOperator):
    """
    Wait for the first labelled live batch landed after the deployment; score the deployed model on it
    and compare the gate metric with the gate's floor (``gate.min_value``).  Returns
    ``{"batch", "metric", "value", "floor", "ok", "rows"}``; a value below the floor is a verdict
    (``ok: false``), not a task failure: the rollback downstream acts on it.  On an object-store data root
    the labels and batches are read through ``data.conn_id`` (the landing time is the object's mtime).

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
        require_text(where, "pipeline", pipeline)
        require_text(where, "model_uri", model_uri)
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

        spec = load_spec(self.pipeline)
        labels = spec.data_path("labels")
        name = first_labelled_batch_after(labels, spec.batches_dir, float(self.deployed_at), spec.storage)
        if name is None:
            self.log.info("no labelled live batch landed since the deployment yet (%s)", labels)
            return PokeReturnValue(is_done=False)
        import mlflow

        from mlops_provider.hooks.mlflow import MlflowHook

        with MlflowHook(mlflow_conn_id=self.mlflow_conn_id).mlflow_env():
            model = mlflow.sklearn.load_model(self.model_uri)
        metric = spec.raw["gate"]["metric"]
        verdict = post_deployment_verdict(
            model, labelled_frame(spec.batches_dir, labels, name, spec.raw["features"]["id"], spec.storage),
            features=spec.feature_columns, target=spec.raw["target"], metric=metric,
            floor=float(spec.raw["gate"]["min_value"]), lower_is_better=not greater_is_better(metric), batch=name,
        )
        self.log.info("post-deployment check: %s", verdict)
        return PokeReturnValue(is_done=True, xcom_value=verdict)
