"""Validate a dataset with Great Expectations 1.x before training or scoring.

Nothing heavy is imported here: Great Expectations, pandas and MLflow are imported inside
:meth:`DataValidationOperator.execute`, so DAG files that use the operator parse fast.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider._args import FAIL, QUARANTINE, WARN, check_choice
from mlops_provider._names import batch_label, run_name
from mlops_provider.exceptions import DatasetError, DataValidationFailed, MlopsConfigurationError
from mlops_provider.lineage import LineageMixin, records
from mlops_provider.links.mlflow import MlflowRunLink, ValidationReportLink, record_link

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_provider.core.datasets import LoadedDataset
    from mlops_provider.core.validation import ValidationOutcome
    from mlops_provider.hooks.mlflow import MlflowHook

#: ``on_failure`` values of validation (a subset of :data:`mlops_provider._args.ON_FAILURE`).
ON_FAILURE_POLICIES = (FAIL, WARN, QUARANTINE)
#: Great Expectations result formats.
RESULT_FORMATS = ("BOOLEAN_ONLY", "BASIC", "SUMMARY", "COMPLETE")

#: XCom key of the lineage record pushed by :class:`DataValidationOperator` (see its docstring).
LINEAGE_XCOM_KEY = "validation_lineage"
#: Artifact paths inside the MLflow validation run.
REPORT_ARTIFACT = "validation/report.html"
RESULT_ARTIFACT = "validation/result.json"
SUMMARY_ARTIFACT = "validation/summary.json"

DEFAULT_EXPERIMENT = "data-validation"

_JINJA_MARKERS = re.compile(r"{{|{%|{#")


class DataValidationOperator(LineageMixin, BaseOperator):
    """
    Validate a dataset against a Great Expectations suite; fail, warn or quarantine a bad batch.

    The data is read only in :meth:`execute` (with :func:`mlops_provider.core.datasets.load_dataset`)
    and validated in a fresh ephemeral GX context, or by the checkpoint of an existing GX project.
    The full result JSON and an HTML report are logged as artifacts of an MLflow run (experiment
    ``experiment_name``, tagged with the dataset digest); the extra link "Validation report" points at
    the report.  The return value (XCom ``return_value``) is a summary under 16 KB.

    Give exactly one suite source: ``expectations``, ``suite_path``, ``suite_factory`` or
    ``checkpoint_name`` (with ``context_root_dir``).

    **Lineage.**  The operator also pushes XCom key ``validation_lineage``::

        {"validation_run_id": str, "experiment_id": str, "data_digest": str, "dataset_uri": str,
         "success": bool, "suite": str, "on_failure": str}

    A training task that loads the same dataset compares ``data_digest`` with the digest of the
    data it trains on and, when they match, records ``validation_run_id`` on its training run.

    :param dataset: dataset reference (path/URI string, dict ``{"uri", "conn_id", "sql", "format"}``
        or ``DatasetRef``).  Templated.
    :param expectations: list of expectation dicts ``{"type": ..., "kwargs": {...}}``
        (``"expectation_type"`` accepted).  Templated; plain strings without Jinja markers are not
        passed through Jinja, so large value sets render quickly.
    :param suite_path: JSON or YAML suite file, or a schema contract from
        :func:`mlops_provider.core.validation.derive_schema_suite`.  A relative path is looked up in
        the working directory, then beside the DAG file.  Templated (the path, not the content).
    :param suite_factory: callable returning a ``gx.ExpectationSuite``, called in ``execute()``.
    :param context_root_dir: root of an existing GX file project (used with ``checkpoint_name``).
    :param checkpoint_name: checkpoint of that project to run; the batch is passed to it as the
        ``dataframe`` batch parameter.
    :param on_failure: ``"fail"`` (raise :class:`~mlops_provider.exceptions.DataValidationFailed`),
        ``"warn"`` (log and succeed; downstream can branch on ``success`` in the XCom) or
        ``"quarantine"`` (copy the batch and its report to ``quarantine_location``, then skip:
        downstream tasks of this batch are skipped, the DAG run continues).
    :param quarantine_location: directory or fsspec URL; the batch goes to
        ``<quarantine_location>/<dag_id>/<task_id>/<run_id>/``.  Required for ``"quarantine"``.
    :param quarantine_conn_id: Airflow connection of an object-store ``quarantine_location`` (e.g. an
        ``aws`` connection for ``s3://``, through ``ObjectStoragePath``); without it fsspec's own
        configuration applies.
    :param suite_name: name of the suite (defaults to the file stem or ``"suite"``).
    :param experiment_name: MLflow experiment of validation runs (default: the connection's
        ``experiment_name`` extra, else ``"data-validation"``).
    :param mlflow_conn_id: MLflow connection.
    :param result_format: GX result format (``"SUMMARY"`` by default; ``"COMPLETE"`` lists every
        unexpected value in the result artifact, and is slower).
    """

    template_fields: Sequence[str] = (
        "dataset",
        "expectations",
        "suite_path",
        "context_root_dir",
        "checkpoint_name",
        "on_failure",
        "quarantine_location",
        "suite_name",
        "experiment_name",
    )
    template_fields_renderers = {"expectations": "json", "dataset": "json"}
    operator_extra_links = (ValidationReportLink(), MlflowRunLink())
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        dataset: str | dict[str, Any] | Any,
        expectations: list[dict[str, Any]] | None = None,
        suite_path: str | None = None,
        suite_factory: Callable[[], Any] | None = None,
        context_root_dir: str | None = None,
        checkpoint_name: str | None = None,
        on_failure: str = "fail",
        quarantine_location: str | None = None,
        quarantine_conn_id: str | None = None,
        suite_name: str | None = None,
        experiment_name: str | None = None,
        mlflow_conn_id: str = "mlflow_default",
        result_format: str = "SUMMARY",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.expectations = expectations
        self.suite_path = suite_path
        self.suite_factory = suite_factory
        self.context_root_dir = context_root_dir
        self.checkpoint_name = checkpoint_name
        self.on_failure = on_failure
        self.quarantine_location = quarantine_location
        self.quarantine_conn_id = quarantine_conn_id
        self.suite_name = suite_name
        self.experiment_name = experiment_name
        self.mlflow_conn_id = mlflow_conn_id
        self.result_format = result_format
        if not isinstance(result_format, dict):
            check_choice(f"DataValidationOperator {self.task_id!r}", "result_format", result_format, RESULT_FORMATS)
        self._check_arguments()  # a templated on_failure passes here, and is checked again after rendering

    @cached_property
    def hook(self) -> MlflowHook:
        from mlops_provider.hooks.mlflow import MlflowHook

        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: Any = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        """Skip Jinja for plain strings (a 10,000-item value set would otherwise compile 10,000 templates)."""
        if isinstance(content, str) and not _JINJA_MARKERS.search(content):
            return content
        return super().render_template(content, context, jinja_env, seen_oids)

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core import validation as core
        from mlops_provider.core.datasets import load_dataset

        self._check_arguments()
        suite, schema = self._resolve_suite(context, core)

        data = load_dataset(self.dataset)
        self.log.info(
            "Validating %s (%d rows, %d columns, digest %s)",
            data.uri,
            data.n_rows,
            len(data.schema),
            data.digest,
        )
        try:
            outcome = core.run_validation(
                data.frame,
                suite,
                schema=schema,
                context_root_dir=self.context_root_dir,
                checkpoint_name=self.checkpoint_name,
                result_format=self.result_format,
            )
        except core.ValidationInputError as err:
            raise DatasetError(f"Dataset {data.uri}: {err}") from None
        self.log.info(
            "Validation of %s with suite %r: %s in %.2fs (%s)",
            data.uri,
            outcome.suite_name,
            "passed" if outcome.success else "FAILED",
            outcome.seconds,
            outcome.result.get("statistics"),
        )

        self._lineage = records.validation(self.dataset, data, outcome)
        details = {
            "dataset": data.uri,
            "data_digest": data.digest,
            "rows": data.n_rows,
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": context.get("run_id"),
            "on_failure": self.on_failure,
        }
        columns = list(data.schema)
        report_html = core.render_html_report(
            outcome, title=f"Validation of {data.uri}", data_columns=columns, details=details
        )
        result_json = core.result_to_json(outcome, extra={"details": details})
        run = self._log_to_mlflow(context, data, outcome, report_html, result_json)

        summary = core.summarize_result(
            outcome,
            data_columns=columns,
            extra={
                "dataset": data.summary(),
                "validation_run_id": run["run_id"],
                "experiment_id": run["experiment_id"],
                "report_url": run["report_url"],
                "result_uri": run["result_uri"],
                "on_failure": self.on_failure,
            },
        )
        _xcom_push(
            context,
            LINEAGE_XCOM_KEY,
            value={
                "validation_run_id": run["run_id"],
                "experiment_id": run["experiment_id"],
                "data_digest": data.digest,
                "dataset_uri": data.uri,
                "success": outcome.success,
                "suite": outcome.suite_name,
                "on_failure": self.on_failure,
            },
        )
        if outcome.success:
            return summary

        message = self._failure_message(summary, data, run, core)
        if self.on_failure == "warn":
            self.log.warning("%s\nContinuing (on_failure='warn').", message)
            return summary

        if self.on_failure == "quarantine":
            target = self._quarantine_target(context)
            summary["quarantine_location"] = target
            core.write_quarantine(
                target,
                data.frame,
                report_html=report_html,
                result_json=result_json,
                summary=summary,
                source_uri=data.uri,
                fs=self._quarantine_fs(target),
            )
            self._set_tag(run["run_id"], "mlops.validation.quarantine_location", target)
            self._lineage = records.validation(self.dataset, data, outcome, quarantine=target)
            _xcom_push(context, "return_value", summary)  # skipped tasks push no return value
            self.log.warning("%s\nBatch quarantined at %s; skipping downstream tasks.", message, target)
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"Batch {data.uri} failed validation and was quarantined at {target}")

        _xcom_push(context, "return_value", summary)  # failed tasks push no return value
        raise DataValidationFailed(message)

    # ------------------------------------------------------------------ helpers

    def _check_arguments(self) -> None:
        """Checks that need no I/O: run in ``__init__`` (parse time) and again after rendering."""
        check_choice(f"DataValidationOperator {self.task_id!r}", "on_failure", self.on_failure, ON_FAILURE_POLICIES)
        if self.on_failure == "quarantine" and not self.quarantine_location:
            raise MlopsConfigurationError(
                f"{self.task_id}: on_failure='quarantine' needs quarantine_location"
            )
        sources = {
            "expectations": self.expectations is not None,
            "suite_path": bool(self.suite_path),
            "suite_factory": self.suite_factory is not None,
            "checkpoint_name": bool(self.checkpoint_name),
        }
        given = [k for k, v in sources.items() if v]
        if len(given) != 1:
            raise MlopsConfigurationError(
                f"{self.task_id}: give exactly one of expectations, suite_path, suite_factory or "
                f"checkpoint_name (got {', '.join(given) or 'none'})"
            )
        if self.checkpoint_name and not self.context_root_dir:
            raise MlopsConfigurationError(f"{self.task_id}: checkpoint_name needs context_root_dir")

    def _resolve_suite(self, context: Context, core: Any) -> tuple[Any, dict[str, Any] | None]:
        if self.checkpoint_name:
            return None, None
        spec: Any
        if self.expectations is not None:
            spec = self.expectations
            if isinstance(spec, str):  # a templated value rendered to JSON text
                try:
                    spec = json.loads(spec)
                except json.JSONDecodeError as err:
                    raise MlopsConfigurationError(
                        f"{self.task_id}: expectations is not valid JSON: {err}"
                    ) from None
        elif self.suite_path:
            spec = self._find_suite_file(context)
        else:
            spec = self.suite_factory
        try:
            return core.resolve_suite(spec, name=self.suite_name)
        except core.ValidationInputError as err:
            raise MlopsConfigurationError(f"{self.task_id}: {err}") from None

    def _find_suite_file(self, context: Context) -> str:
        path = os.path.expanduser(str(self.suite_path))
        if os.path.isabs(path) or os.path.exists(path):
            return path
        fileloc = getattr(context.get("dag"), "fileloc", None)
        if fileloc:
            beside = os.path.join(os.path.dirname(fileloc), path)
            if os.path.exists(beside):
                return beside
        return path  # the loader reports the unreadable file by name

    def _quarantine_fs(self, target: str) -> Any | None:
        """The file system of ``quarantine_conn_id`` (``None``: fsspec resolves the location itself)."""
        if not self.quarantine_conn_id or "://" not in target or target.startswith("file://"):
            return None
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(target, conn_id=self.quarantine_conn_id).fs

    def _quarantine_target(self, context: Context) -> str:
        def safe(value: str) -> str:
            return re.sub(r"[^A-Za-z0-9._=-]+", "_", value)

        task = safe(self.task_id)
        map_index = getattr(context.get("ti"), "map_index", -1)
        if map_index is not None and map_index >= 0:
            task = f"{task}-{map_index}"
        base = str(self.quarantine_location).rstrip("/")
        return f"{base}/{safe(self.dag_id)}/{task}/{safe(str(context.get('run_id') or 'manual'))}"

    def _failure_message(
        self, summary: dict[str, Any], data: LoadedDataset, run: dict[str, Any], core: Any
    ) -> str:
        stats = summary.get("statistics") or {}
        head = (
            f"Data validation failed for {data.uri} (digest {data.digest[:12]}, {data.n_rows} rows), "
            f"suite {summary.get('suite')!r}: {stats.get('unsuccessful_expectations')} of "
            f"{stats.get('evaluated_expectations')} expectations failed "
            f"(success {stats.get('success_percent')}%)."
        )
        where = f"Report: {run['report_url'] or run['result_uri']}; full result: {run['result_uri']}; " + (
            f"summary in XCom return_value of task {self.task_id!r}."
        )
        return f"{head}\n{core.describe_failures(summary)}\n{where}"

    def _experiment_id(self, client: Any) -> str:
        name = self.experiment_name or self.hook.extras.get("experiment_name") or DEFAULT_EXPERIMENT
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name)
        except Exception:  # created concurrently by another task
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _log_to_mlflow(
        self,
        context: Context,
        data: LoadedDataset,
        outcome: ValidationOutcome,
        report_html: str,
        result_json: str,
    ) -> dict[str, Any]:
        """Log the report and result to one MLflow run per task instance (reused on retry)."""
        client = self.hook.get_client()
        experiment_id = self._experiment_id(client)
        run_id_airflow = str(context.get("run_id") or "manual")
        ti_key = (
            f"{self.dag_id}/{self.task_id}/{run_id_airflow}/{getattr(context.get('ti'), 'map_index', -1)}"
        )
        stats = outcome.result.get("statistics") or {}
        tags = {
            "mlops.kind": "data_validation",
            "mlops.dataset_digest": data.digest,
            "mlops.dataset_uri": data.uri[:5000],
            "mlops.validation.success": str(outcome.success).lower(),
            "mlops.validation.suite": outcome.suite_name[:5000],
            "mlops.validation.on_failure": self.on_failure,
            "mlops.validation.schema_changes": str(len(outcome.schema_changes)),
            "mlops.airflow_ti": ti_key,
            "airflow.dag_id": self.dag_id,
            "airflow.task_id": self.task_id,
            "airflow.run_id": run_id_airflow,
            "mlflow.runName": run_name("validate", batch_label(data.uri), context),
        }
        existing = client.search_runs(
            [experiment_id], filter_string=f"tags.`mlops.airflow_ti` = '{_quote(ti_key)}'", max_results=1
        )
        if existing:
            run_id = existing[0].info.run_id
            self.log.info("Reusing MLflow validation run %s of a previous try", run_id)
            from mlflow.entities import RunTag

            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items() if k != "mlflow.runName"])
        else:
            run_id = client.create_run(experiment_id, tags=tags).info.run_id
        client.log_text(run_id, report_html, REPORT_ARTIFACT)
        client.log_text(run_id, result_json, RESULT_ARTIFACT)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = {f"validation.{k}": v for k, v in stats.items() if isinstance(v, int | float)}
        values.update({"validation.rows": data.n_rows, "validation.seconds": outcome.seconds})
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])
        client.set_terminated(run_id, "FINISHED")

        artifact_uri = client.get_run(run_id).info.artifact_uri.rstrip("/")
        result_uri = f"{artifact_uri}/{RESULT_ARTIFACT}"
        run_url = self.hook.run_url(run_id, experiment_id)
        report_url = self.hook.artifact_url(run_id, REPORT_ARTIFACT, experiment_id)
        record_link(self, MlflowRunLink.name, run_url)
        record_link(self, ValidationReportLink.name, report_url)
        self.log.info("Validation report: %s", report_url)
        return {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "report_url": report_url,
            "result_uri": result_uri,
            "run_url": run_url,
        }

    def _set_tag(self, run_id: str, key: str, value: str) -> None:
        self.hook.get_client().set_tag(run_id, key, value[:5000])


def _xcom_push(context: Context, key: str, value: Any) -> None:
    ti = context.get("ti")
    if ti is not None:
        ti.xcom_push(key=key, value=value)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
