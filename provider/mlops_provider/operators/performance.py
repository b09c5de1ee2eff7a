"""ModelPerformanceOperator: live model quality from late labels, and an Asset event when it decays."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias, BaseOperator

from mlops_provider._args import PROBLEM_TYPES, check_choice, check_number
from mlops_provider.hooks.mlflow import MlflowHook
from mlops_provider.lineage import LineageMixin, records
from mlops_provider.links.mlflow import MlflowRunLink

if TYPE_CHECKING:
    from airflow.sdk import Context


def performance_decay_uri(model_name: str) -> str:
    """``mlops://<model>/performance_decay``: the Asset a retraining DAG can be scheduled on."""
    return f"mlops://{model_name}/performance_decay"


def performance_decay_alias(model_name: str) -> str:
    return f"mlops_performance_decay__{model_name}"


class ModelPerformanceOperator(LineageMixin, BaseOperator):
    """
    Join ground-truth labels with stored predictions, score them, and compare with the champion.

    The predictions are the parquet written by ``BatchPredictOperator`` (id columns, ``prediction``,
    ``model_version``).  Rows are joined by ``id_columns``; label ids with no prediction are counted
    and the first ones listed in the result.  The live metrics are compared with the evaluation
    metrics of the champion's MLflow run (``models:/<model>@<alias>`` -> version -> run).  When a metric
    is worse than the champion's by more than the tolerance, the task emits an Asset event on
    ``mlops://<model>/performance_decay`` (through the asset alias ``mlops_performance_decay__<model>``,
    so no event is emitted when quality holds) with the figures in ``extra``.

    :param model_name: registered model name (not templated: it names the outlet alias).
    :param labels: dataset reference of the labels (id columns + ``label_column``).
    :param predictions: dataset reference of the stored predictions (templated, e.g. the predict task's ``output_uri``).
    :param id_columns: columns identifying a row in both tables.
    :param label_column: the ground-truth column of ``labels``.
    :param prediction_column: the prediction column of ``predictions``.
    :param metrics: metric names; default the champion run's metrics that can be computed from labels.
    :param alias: the alias of the model version to compare with (default ``champion``).
    :param only_alias_version: only score predictions made by that version (default true).
    :param tolerance: relative degradation that counts as decay (0.05 = 5 % worse than the champion).
    :param absolute_tolerance: degradation in the metric's unit instead (for metrics near 0).
    :param min_rows: fewer joined rows than this -> no verdict (``insufficient_labels``), no event.
    :param problem_type: ``classification`` or ``regression``; default inferred from the labels
        (:func:`mlops_provider.core.metrics.infer_problem_type`).
    :param mlflow_conn_id: the MLflow connection.
    """

    template_fields: Sequence[str] = ("labels", "predictions", "id_columns", "label_column", "alias", "metrics")
    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#fde2e4"

    def __init__(
        self,
        *,
        model_name: str,
        labels: Any,
        predictions: Any,
        id_columns: Sequence[str] | str = ("id",),
        label_column: str = "label",
        prediction_column: str = "prediction",
        metrics: Sequence[str] | None = None,
        alias: str = "champion",
        only_alias_version: bool = True,
        tolerance: float = 0.05,
        absolute_tolerance: float | None = None,
        min_rows: int = 30,
        problem_type: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        where = f"ModelPerformanceOperator {kwargs.get('task_id')!r}"
        check_number(where, "tolerance", tolerance, low=0)
        check_number(where, "absolute_tolerance", absolute_tolerance, low=0, optional=True)
        check_number(where, "min_rows", min_rows, low=1, integer=True)
        check_choice(where, "problem_type", problem_type, PROBLEM_TYPES, optional=True)
        check_choice(where, "only_alias_version", only_alias_version, (True, False))
        if isinstance(id_columns, list | tuple) and not id_columns:
            from mlops_provider.exceptions import MlopsConfigurationError

            raise MlopsConfigurationError(f"{where}: id_columns is empty; name the columns that identify a row")
        kwargs.setdefault("outlets", [AssetAlias(performance_decay_alias(model_name))])
        super().__init__(**kwargs)
        self.model_name = model_name
        self.labels = labels
        self.predictions = predictions
        self.id_columns = id_columns
        self.label_column = label_column
        self.prediction_column = prediction_column
        self.metrics = metrics
        self.alias = alias
        self.only_alias_version = only_alias_version
        self.tolerance = tolerance
        self.absolute_tolerance = absolute_tolerance
        self.min_rows = min_rows
        self.problem_type = problem_type
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def _champion(self) -> tuple[str, str, dict[str, float]]:
        """(version, run_id, evaluation metrics) of ``models:/<model>@<alias>``."""
        from mlops_provider.exceptions import MlopsConfigurationError

        client = self.hook.get_client()
        try:
            version = client.get_model_version_by_alias(self.model_name, self.alias)
        except Exception as err:  # noqa: BLE001 - MLflow raises its own RestException/MlflowException
            raise MlopsConfigurationError(
                f"Model {self.model_name!r} has no version with alias {self.alias!r}: {str(err)[:200]}"
            ) from None
        if not version.run_id:
            raise MlopsConfigurationError(
                f"{self.model_name!r}@{self.alias} (version {version.version}) has no MLflow run with metrics"
            )
        run = client.get_run(version.run_id)
        return str(version.version), version.run_id, dict(run.data.metrics)

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core import metrics as core_metrics
        from mlops_provider.core.datasets import load_dataset
        from mlops_provider.core.performance import (
            check_comparable,
            compare_with_champion,
            join_labels,
            live_metrics,
        )
        from mlops_provider.exceptions import DatasetError, MlopsConfigurationError

        infer_problem_type = core_metrics.infer_problem_type

        self._lineage = records.performance(self.predictions, self.labels)
        ids = [self.id_columns] if isinstance(self.id_columns, str) else list(self.id_columns)
        if not ids:
            raise MlopsConfigurationError("id_columns is empty")
        if self.metrics:
            core_metrics.validate_metric_names(list(self.metrics))

        version, run_id, champion_metrics = self._champion()
        from mlops_provider.links.mlflow import record_link

        record_link(self, MlflowRunLink.name, self.hook.run_url(run_id))
        labels = load_dataset(self.labels).frame
        preds = load_dataset(self.predictions).frame
        joined = join_labels(
            labels, preds, ids, self.label_column, self.prediction_column,
            model_version=version if self.only_alias_version else None,
        )
        if joined.n_unmatched_labels:
            self.log.warning(
                "%s of %s label rows match no prediction (first ids: %s)",
                joined.n_unmatched_labels, joined.n_labels, joined.unmatched_label_ids[:10],
            )
        if joined.n_missing_labels:
            self.log.warning(
                "%s joined rows have no label (missing %r): left out of the metrics", joined.n_missing_labels,
                self.label_column,
            )
        result: dict[str, Any] = {
            "model_name": self.model_name,
            "champion_version": version,
            "champion_run_id": run_id,
            "join": joined.summary(),
            "tolerance": self.tolerance,
            "absolute_tolerance": self.absolute_tolerance,
        }
        if joined.n_joined < self.min_rows:
            result.update(verdict="insufficient_labels", decayed=False, live_metrics={}, comparisons=[])
            self.log.info("Only %s joined rows (< min_rows=%s): no verdict", joined.n_joined, self.min_rows)
            return result

        y_true = joined.frame["__label"]
        y_pred = joined.frame[self.prediction_column]
        problem_type = self.problem_type or infer_problem_type(y_true)
        check_comparable(y_true, y_pred, self.label_column, self.prediction_column, problem_type)
        n_classes = int(y_true.nunique()) if problem_type == "classification" else None
        names = list(self.metrics) if self.metrics else [
            m for m in ("accuracy", "f1", "balanced_accuracy", "rmse", "mae", "r2") if m in champion_metrics
        ]
        if not names:
            raise MlopsConfigurationError(
                f"No metric to compare: champion run {run_id} logged {sorted(champion_metrics)[:20]}; "
                "pass metrics=[...]"
            )
        live, skipped = live_metrics(y_true, y_pred, names, n_classes)
        columns = (
            f"labels {self.label_column!r} ({y_true.dtype}) and predictions {self.prediction_column!r} ({y_pred.dtype})"
        )
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        if not live:
            # never a verdict without a metric: the task fails, naming what could not be computed and why
            error = DatasetError if any(not v.startswith("needs predicted") for v in skipped.values()) else MlopsConfigurationError
            raise error(f"No metric could be computed from {columns} on {joined.n_joined} joined rows: {why}")
        if skipped:
            self.log.warning("Not computed from %s: %s", columns, why)
        comparisons = compare_with_champion(live, champion_metrics, self.tolerance, self.absolute_tolerance)
        if not comparisons:
            raise MlopsConfigurationError(
                f"Nothing to compare: live metrics {sorted(live)} were computed, but champion run {run_id} "
                f"({self.model_name}@{self.alias}, version {version}) logged none of them "
                f"(it logged {sorted(champion_metrics)[:20]}); pass metrics=[...] the champion run has"
            )
        decayed = [c for c in comparisons if c.decayed]
        result.update(
            verdict="decay" if decayed else "ok",
            decayed=bool(decayed),
            problem_type=problem_type,
            live_metrics={k: round(v, 6) for k, v in live.items()},
            skipped_metrics=skipped,
            comparisons=[c.to_dict() for c in comparisons],
        )
        for c in comparisons:
            self.log.info(
                "%-18s champion %.4f live %.4f degradation %+.4f%s",
                c.metric, c.champion, c.live, c.degradation, "  DECAY" if c.decayed else "",
            )
        if decayed:
            from airflow.sdk import Asset

            from mlops_provider._airflow_tags import producer

            worst = max(decayed, key=lambda c: c.relative_degradation or c.degradation)
            extra = {
                "reason": "performance_decay",
                "model_name": self.model_name,
                "champion_version": version,
                "model_version": version,  # the version this decay is about (the policy drops it once replaced)
                "metric": worst.metric,
                "champion": round(worst.champion, 6),
                "live": round(worst.live, 6),
                "drop": round(worst.degradation, 6),
                "summary": (
                    f"{worst.metric} {worst.live:.4f} vs champion {worst.champion:.4f} "
                    f"({(worst.relative_degradation or 0) * 100:.1f}% worse) on {joined.n_joined} labelled rows"
                ),
                "n_joined": joined.n_joined,
                "decayed_metrics": [c.metric for c in decayed],
                # the drift event's shape: model, version, verdict with its threshold, producer
                "tolerance": self.tolerance,
                "producer": producer(context, self.task_id),
            }
            context["outlet_events"][AssetAlias(performance_decay_alias(self.model_name))].add(
                Asset(performance_decay_uri(self.model_name)), extra=extra
            )
            self.log.warning("Performance decay of %s: %s", self.model_name, extra["summary"])
            result["event"] = {"asset": performance_decay_uri(self.model_name), "extra": extra}
        result["monitoring_run_id"] = self._log_run(context, result, live, comparisons)
        return result

    def _log_run(self, context: Context, result: dict[str, Any], live: dict[str, float], comparisons: list) -> str:
        """One MLflow run per check (the MLOps view's timeline reads it); reused by a retry of the same try."""
        from mlflow.entities import Metric, RunTag

        from mlops_provider.links.mlflow import record_link

        client = self.hook.get_client()
        experiment = f"{self.model_name}-monitoring"
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
        ti = context.get("ti")
        lineage = {
            "airflow.dag_id": str(getattr(ti, "dag_id", None) or "manual"),
            "airflow.run_id": str(context.get("run_id") or "manual"),
            "airflow.task_id": str(getattr(ti, "task_id", self.task_id)),
        }
        ti_key = "/".join(lineage.values())
        found = client.search_runs([exp_id], filter_string=f"tags.`mlops.airflow_ti` = '{ti_key}'", max_results=1)
        run_id = found[0].info.run_id if found else client.create_run(
            exp_id, run_name=f"performance {self.model_name} v{result['champion_version']}").info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(f"live.{k}", float(v), now, 0) for k, v in live.items()]
        metrics += [Metric(f"champion.{c.metric}", float(c.champion), now, 0) for c in comparisons]
        tags = {
            **lineage, "mlops.airflow_ti": ti_key, "mlops.kind": "performance_check",
            "mlops.model_name": self.model_name, "mlops.model_version": str(result["champion_version"]),
            "mlops.verdict": str(result["verdict"]), "mlops.predictions_uri": str(self.predictions)[:500],
            "mlops.labels_uri": str(self.labels)[:500],
        }
        client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
        client.set_terminated(run_id, "FINISHED")
        record_link(self, MlflowRunLink.name, self.hook.run_url(run_id, exp_id))
        return run_id
