"""DriftCheckOperator: compare a batch with a model's reference profile (or a dataset) and act on drift.

The reusable glue (resolve a reference, run the check) is :func:`resolve_drift_reference` and
:func:`run_drift_check`, shared with :class:`~mlops_provider.sensors.drift.DriftSensor`.

Artifact contract with ``TrainModelOperator``: the model version's run holds a sample of the training
features at ``reference/features.parquet``; the drift profile built from it is stored on the same run
at ``drift/profile.json`` (built and logged on first use when the training task did not).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, BaseOperator
from airflow.sdk.bases.skipmixin import SkipMixin

from mlops_provider._args import FAIL, SKIP, WARN, check_choice, check_number, is_templated, reject_renamed
from mlops_provider._names import batch_label, run_name
from mlops_provider.hooks.mlflow import MlflowHook
from mlops_provider.lineage import LineageMixin, records
from mlops_provider.links.mlflow import DriftReportLink, MlflowRunLink, record_link

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from mlops_provider.core.drift import DriftResult

log = logging.getLogger(__name__)

PROFILE_ARTIFACT_DIR = "drift"
PROFILE_ARTIFACT_FILE = "profile.json"
#: Where a model version's drift profile lives on its MLflow run.
PROFILE_ARTIFACT_PATH = f"{PROFILE_ARTIFACT_DIR}/{PROFILE_ARTIFACT_FILE}"
#: Training-feature sample logged by ``TrainModelOperator`` (same value as its ``REFERENCE_ARTIFACT_PATH``).
REFERENCE_FEATURES_PATH = "reference/features.parquet"
REPORT_ARTIFACT_PATH = "drift/report.html"
#: ``on_failure`` values of the drift operator (what to do when the batch drifted), default ``"warn"``.
DRIFT_ON_FAILURE = (WARN, FAIL, SKIP)

_MODEL_URI = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def drift_asset_uri(model_name: str) -> str:
    """``mlops://<model>/drift``: the Asset a retraining DAG can be scheduled on."""
    return f"mlops://{model_name}/drift"


def drift_asset_alias(model_name: str) -> str:
    """Name of the asset alias through which the drift event is emitted (only when drift is found)."""
    return f"mlops_drift__{model_name}"


def parse_model_uri(value: Any) -> tuple[str, str | None, str | None] | None:
    """``(name, alias, version)`` of ``models:/<name>@<alias>`` or ``models:/<name>/<version>``, else ``None``."""
    if not isinstance(value, str):
        return None
    match = _MODEL_URI.match(value.strip())
    if not match:
        return None
    return match.group("name"), match.group("alias"), match.group("version")


@dataclass
class ResolvedReference:
    """A reference ready for :func:`~mlops_provider.core.drift.check_drift` and where it came from."""

    reference: Any  # ReferenceProfile | pd.DataFrame
    description: str
    model_name: str | None = None
    model_version: str | None = None
    run_id: str | None = None
    profile_logged: bool = False
    frame: Any = None  # raw reference rows when loaded (for the HTML report)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.description}
        if self.model_name:
            out.update(model_name=self.model_name, model_version=self.model_version, model_run_id=self.run_id)
        if self.profile_logged:
            out["profile_logged"] = f"runs:/{self.run_id}/{PROFILE_ARTIFACT_PATH}"
        return out


@dataclass
class DriftCheckOutcome:
    result: DriftResult
    reference: ResolvedReference
    current_frame: Any = field(repr=False)
    current_info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {**self.result.to_summary(), **self.reference.info(), "current": self.current_info}


def _profile_from_model(
    hook: MlflowHook, name: str, alias: str | None, version: str | None, max_rows: int | None
) -> ResolvedReference:
    """Load (or build once and log) the drift profile stored on the model version's run."""
    from mlops_provider.core.drift import ProfileError, ReferenceProfile, build_profile
    from mlops_provider.exceptions import MlopsConfigurationError

    client = hook.get_client()
    label = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
    except Exception as err:  # noqa: BLE001 - MLflow raises RestException/MlflowException
        raise MlopsConfigurationError(f"Drift reference {label} does not resolve: {str(err)[:300]}") from None
    if not mv.run_id:
        raise MlopsConfigurationError(f"{label} (version {mv.version}) has no MLflow run holding a reference")
    resolved = ResolvedReference(None, label, name, str(mv.version), mv.run_id)
    with tempfile.TemporaryDirectory(prefix="mlops-drift-") as tmp:
        try:
            path = client.download_artifacts(mv.run_id, PROFILE_ARTIFACT_PATH, tmp)
        except Exception:  # noqa: BLE001 - missing artifact: build it below
            path = None
        if path:
            try:
                profile = ReferenceProfile.load(path)
            except ProfileError as err:
                raise MlopsConfigurationError(
                    f"{label}: runs:/{mv.run_id}/{PROFILE_ARTIFACT_PATH}: {err}"
                ) from None
        else:
            profile = _build_and_log_profile(client, resolved, tmp, max_rows, build_profile)
            resolved.profile_logged = True
    try:
        profile.check_model(name)
    except ProfileError as err:
        raise MlopsConfigurationError(f"{label}: {err}") from None
    resolved.reference = profile
    return resolved


def _build_and_log_profile(
    client: Any, ref: ResolvedReference, tmp: str, max_rows: int | None, build: Any
) -> Any:
    import pandas as pd

    from mlops_provider.exceptions import MlopsConfigurationError

    try:
        features = client.download_artifacts(ref.run_id, REFERENCE_FEATURES_PATH, tmp)
    except Exception as err:  # noqa: BLE001
        raise MlopsConfigurationError(
            f"{ref.description} (version {ref.model_version}): its run {ref.run_id} has neither a drift profile "
            f"({PROFILE_ARTIFACT_PATH}) nor a training-feature sample ({REFERENCE_FEATURES_PATH}): {str(err)[:200]}"
        ) from None
    frame = pd.read_parquet(features)
    profile = build(
        frame,
        max_rows=max_rows,
        metadata={
            "model_name": ref.model_name,
            "model_version": ref.model_version,
            "run_id": ref.run_id,
            "source": f"runs:/{ref.run_id}/{REFERENCE_FEATURES_PATH}",
        },
    )
    local = profile.save(os.path.join(tmp, "out", PROFILE_ARTIFACT_FILE))
    client.log_artifact(ref.run_id, str(local), artifact_path=PROFILE_ARTIFACT_DIR)
    log.info("Built the drift profile of %s from %s and logged it", ref.description, REFERENCE_FEATURES_PATH)
    ref.frame = frame
    return profile


def resolve_drift_reference(
    reference: Any,
    *,
    mlflow_conn_id: str = MlflowHook.default_conn_name,
    columns: Sequence[str] | None = None,
    max_rows: int | None = None,
) -> ResolvedReference:
    """
    Turn a drift reference argument into something :func:`check_drift` accepts.

    :param reference: ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (the profile stored on
        the version's run, built from ``reference/features.parquet`` and logged on first use), a local
        ``*.json`` profile path, a :class:`~mlops_provider.core.drift.ReferenceProfile`, or a dataset
        reference (path/URI, dict or ``DatasetRef``).
    """
    from mlops_provider.core.datasets import load_dataset
    from mlops_provider.core.drift import ReferenceProfile

    if isinstance(reference, ReferenceProfile):
        return ResolvedReference(reference, "profile")
    model = parse_model_uri(reference)
    if model:
        return _profile_from_model(MlflowHook(mlflow_conn_id=mlflow_conn_id), *model, max_rows=max_rows)
    if isinstance(reference, str) and reference.endswith(".json") and "://" not in reference:
        from mlops_provider.core.drift import ProfileError
        from mlops_provider.exceptions import MlopsConfigurationError

        try:
            return ResolvedReference(ReferenceProfile.load(reference), reference)
        except (ProfileError, OSError) as err:
            raise MlopsConfigurationError(f"Drift profile {reference}: {err}") from None
    loaded = load_dataset(reference, columns=list(columns) if columns else None)
    return ResolvedReference(loaded.frame, loaded.uri, frame=loaded.frame)


def run_drift_check(
    reference: Any,
    current: Any,
    *,
    mlflow_conn_id: str = MlflowHook.default_conn_name,
    columns: Sequence[str] | None = None,
    column_methods: Mapping[str, str] | None = None,
    column_thresholds: Mapping[str, float] | None = None,
    drift_share: float = 0.5,
    max_rows: int | None = None,
) -> DriftCheckOutcome:
    """
    Run a drift check of the dataset ``current`` against ``reference`` (see :func:`resolve_drift_reference`).

    Bad data or arguments raise :class:`~mlops_provider.exceptions.DatasetError` or
    :class:`~mlops_provider.exceptions.MlopsConfigurationError` (no retry can fix them).
    """
    from mlops_provider.core.datasets import load_dataset
    from mlops_provider.core.drift import DriftInputError, ProfileError, check_drift
    from mlops_provider.exceptions import DatasetError, MlopsConfigurationError

    resolved = resolve_drift_reference(
        reference, mlflow_conn_id=mlflow_conn_id, columns=columns, max_rows=max_rows
    )
    loaded = load_dataset(current, columns=list(columns) if columns else None)
    frame = loaded.frame
    try:
        result = check_drift(
            resolved.reference,
            frame,
            column_methods=column_methods,
            column_thresholds=column_thresholds,
            drift_share=float(drift_share),
            max_rows=max_rows,
            columns=list(columns) if columns else None,
        )
    except ProfileError as err:
        raise MlopsConfigurationError(f"Drift reference {resolved.description}: {err}") from None
    except DriftInputError as err:
        raise DatasetError(f"Drift check of {loaded.uri} against {resolved.description}: {err}") from None
    return DriftCheckOutcome(result, resolved, frame, loaded.summary())


def check_drift_arguments(
    where: str,
    *,
    drift_share: Any = 0.5,
    column_methods: Any = None,
    column_thresholds: Any = None,
) -> None:
    """
    Refuse bad drift arguments when the DAG is parsed (templated values are left for ``execute()``).

    Shared by :class:`DriftCheckOperator` and :class:`~mlops_provider.sensors.drift.DriftSensor`;
    raises :class:`~mlops_provider.exceptions.MlopsConfigurationError` naming the allowed values.
    """
    from mlops_provider.core.drift import METHODS
    from mlops_provider.exceptions import MlopsConfigurationError

    check_number(where, "drift_share", drift_share, low=0, high=1, low_open=True)
    for name, value, kind in (("column_methods", column_methods, "method"), ("column_thresholds", column_thresholds, "threshold")):
        if value is None or is_templated(value):
            continue
        if not isinstance(value, Mapping):
            raise MlopsConfigurationError(
                f"{where}: {name} must be a mapping of column name to {kind}; got {type(value).__name__} {value!r:.200}"
            )
        for column, item in value.items():
            if kind == "method":
                check_choice(where, f"{name}[{column!r}]", item, sorted(METHODS))
            else:
                check_number(where, f"{name}[{column!r}]", item, low=0)


def _rendered_share(where: str, value: Any) -> float:
    """``drift_share`` after rendering (a template renders to a string such as ``"0.3"``)."""
    from mlops_provider.exceptions import MlopsConfigurationError

    try:
        share = float(value)
    except (TypeError, ValueError):
        raise MlopsConfigurationError(f"{where}: drift_share must be a number in (0, 1]; got {value!r}") from None
    check_number(where, "drift_share", share, low=0, high=1, low_open=True)
    return share


def describe_column(result: DriftResult, name: str) -> str:
    """``"x (ks 0.0012)"`` or ``"y (missing in current)"`` for logs and error messages."""
    col = result.columns[name]
    if col.score is None:
        return f"{name} ({col.note or 'not tested'})"
    return f"{name} ({col.method} {col.score:.4g})"


def verdict_line(result: DriftResult) -> str:
    """The verdict with what was left out: ``"no drift (0 of 4 columns drifted, ...); all 4 columns tested"``."""
    left_out = result.not_tested()
    if not result.untested_columns:
        left_out = f"all {result.number_of_columns} columns tested" + (f"; {left_out}" if left_out else "")
    return (
        f"{'DRIFT' if result.dataset_drift else 'no drift'} ({result.number_of_drifted_columns} of "
        f"{result.number_of_columns} columns drifted, share {result.share_of_drifted_columns:.3f}, "
        f"threshold {result.drift_share:.3f}); {left_out}"
    )


def _metric_key(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", text)[:200]


class DriftCheckOperator(LineageMixin, BaseOperator, SkipMixin):
    """
    Check a batch for data drift against a model's reference profile or a reference dataset.

    With default settings the verdicts are those of Evidently 0.7's ``DataDriftPreset`` (see
    ``docs/operators/drift.md``), computed by the provider's engine from a stored reference profile.
    The drift metrics are logged to an MLflow monitoring run tagged with the model version, so drift
    can be plotted over time; optionally an Evidently HTML report on a sample is logged there too
    ("Drift report" link).  When drift is found the task emits an Asset event on
    ``mlops://<model>/drift`` (through the alias ``mlops_drift__<model>``, so nothing is emitted when
    there is no drift) with the summary in the event's ``extra``.

    :param reference: ``models:/<name>@<alias>`` / ``models:/<name>/<version>``, a profile JSON path, or
        a dataset reference (templated).
    :param current: dataset reference of the batch to check (templated).
    :param model_name: registered model the drift event is about (not templated: it names the outlet
        alias); defaults to the name in a literal ``models:/`` reference.  Without it no event is emitted.
    :param columns: only check these columns.
    :param column_methods: per-column method (``ks``, ``chisquare``, ``z``, ``wasserstein``,
        ``jensenshannon``, ``psi``).
    :param column_thresholds: per-column threshold.
    :param drift_share: dataset drift when at least this share of columns drifted (default 0.5).
    :param on_failure: what to do when the batch drifted: ``"warn"`` (default: log a warning, record
        the metrics, emit the drift event, succeed), ``"fail"`` (record the metrics, then raise
        :class:`~mlops_provider.exceptions.DriftDetected`; a failed task emits no Asset event), or
        ``"skip"`` (record, emit the event, succeed and skip the downstream tasks, so a drifted batch
        goes no further).  To run a task *only* on drift, put a ``@task.short_circuit`` on
        ``summary["dataset_drift"]`` after this task (see ``dags/example_drift_check.py``).
        Renamed from ``on_drift``.
    :param html_report: log Evidently's HTML report of a sample as ``drift/report.html``.
    :param report_sample_rows: rows of each side in that report (default 20 000).
    :param log_to_mlflow: log metrics to a monitoring run (default true).
    :param monitoring_experiment: MLflow experiment of monitoring runs (default ``<model>-monitoring``
        or ``drift-monitoring``).
    :param max_reference_rows: profile size cap (see :data:`mlops_provider.core.drift.DEFAULT_MAX_ROWS`).
    :param mlflow_conn_id: the MLflow connection.
    """

    template_fields: Sequence[str] = (
        "reference",
        "current",
        "columns",
        "column_methods",
        "column_thresholds",
        "drift_share",
        "monitoring_experiment",
    )
    operator_extra_links = (MlflowRunLink(), DriftReportLink())
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        reference: Any,
        current: Any,
        model_name: str | None = None,
        columns: Sequence[str] | None = None,
        column_methods: Mapping[str, str] | None = None,
        column_thresholds: Mapping[str, float] | None = None,
        drift_share: float = 0.5,
        on_failure: str = WARN,
        html_report: bool = False,
        report_sample_rows: int = 20_000,
        log_to_mlflow: bool = True,
        monitoring_experiment: str | None = None,
        max_reference_rows: int | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        where = f"DriftCheckOperator {kwargs.get('task_id')!r}"
        reject_renamed(where, kwargs, {"on_drift": "on_failure"})
        check_choice(where, "on_failure", on_failure, DRIFT_ON_FAILURE)
        check_drift_arguments(
            where, drift_share=drift_share, column_methods=column_methods, column_thresholds=column_thresholds
        )
        check_choice(where, "html_report", html_report, (True, False))
        check_choice(where, "log_to_mlflow", log_to_mlflow, (True, False))
        check_number(where, "report_sample_rows", report_sample_rows, low=1, integer=True)
        check_number(where, "max_reference_rows", max_reference_rows, low=1, integer=True, optional=True)
        event_model = model_name or (parse_model_uri(reference) or (None,))[0]
        if event_model:
            kwargs.setdefault("outlets", [AssetAlias(drift_asset_alias(event_model))])
        super().__init__(**kwargs)
        self.reference = reference
        self.current = current
        self.model_name = model_name
        self.event_model = event_model
        self.columns = columns
        self.column_methods = column_methods
        self.column_thresholds = column_thresholds
        self.drift_share = drift_share
        self.on_failure = on_failure
        self.html_report = html_report
        self.report_sample_rows = report_sample_rows
        self.log_to_mlflow = log_to_mlflow
        self.monitoring_experiment = monitoring_experiment
        self.max_reference_rows = max_reference_rows
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.exceptions import DriftDetected

        where = f"DriftCheckOperator {self.task_id!r}"
        # the templated arguments, now rendered
        share = _rendered_share(where, self.drift_share)
        check_drift_arguments(
            where, drift_share=share, column_methods=self.column_methods, column_thresholds=self.column_thresholds
        )
        outcome = run_drift_check(
            self.reference,
            self.current,
            mlflow_conn_id=self.mlflow_conn_id,
            columns=self.columns,
            column_methods=self.column_methods,
            column_thresholds=self.column_thresholds,
            drift_share=share,
            max_rows=self.max_reference_rows,
        )
        result = outcome.result
        summary = {**outcome.summary(), "on_failure": self.on_failure}
        self._lineage = records.drift(self.current, self.mlflow_conn_id, summary, outcome.reference)
        self.log.info(
            "Drift check of %s against %s: %s",
            summary["current"].get("uri"),
            outcome.reference.description,
            verdict_line(result),
        )
        for name in result.drifted_columns[:20]:
            col = result.columns[name]
            self.log.info(
                "  drifted: %s", describe_column(result, name) + (f", threshold {col.threshold}" if col.threshold is not None else "")
            )
        if self.log_to_mlflow:
            summary.update(self._log_monitoring_run(context, outcome, summary))
        if result.dataset_drift and self.event_model:
            summary["event"] = self._emit_event(context, summary)
        if result.dataset_drift:
            evidence = (
                summary.get("report_url")
                or summary.get("monitoring_run_url")
                or summary.get("monitoring_run_id")
            )
            message = (
                f"Data drift in {summary['current'].get('uri')} against {outcome.reference.description}: "
                f"{result.number_of_drifted_columns} of {result.number_of_columns} columns drifted "
                f"(share {result.share_of_drifted_columns:.3f} >= {result.drift_share}); first: "
                + ", ".join(describe_column(result, n) for n in result.drifted_columns[:5])
                + (f"; full report: {evidence}" if evidence else "")
            )
            if self.on_failure == FAIL:
                raise DriftDetected(message)
            self.log.warning("%s (on_failure=%r)", message, self.on_failure)
            if self.on_failure == SKIP:
                self._skip_downstream(context, summary)
        return summary

    # ------------------------------------------------------------------ events and branching

    def _emit_event(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        from mlops_provider._airflow_tags import producer

        uri = drift_asset_uri(self.event_model)
        extra = {
            k: summary[k]
            for k in (
                "dataset_drift",
                "share_of_drifted_columns",
                "number_of_drifted_columns",
                "number_of_columns",
                "current_rows",
                "reference_rows",
                "model_version",
                "monitoring_run_id",
            )
            if k in summary
        }
        extra["drifted_columns"] = summary["drifted_columns"][:50]
        extra["current_uri"] = summary["current"].get("uri")
        # one unambiguous shape with the decay event: what, which model, the verdict and its threshold, who
        extra.update({
            "reason": "drift",
            "model_name": self.event_model,
            "drift_share_threshold": summary.get("drift_share"),
            "summary": (
                f"{summary.get('number_of_drifted_columns')} of {summary.get('number_of_columns')} columns drifted "
                f"(share {summary.get('share_of_drifted_columns', 0):.2f} >= threshold {summary.get('drift_share')}) "
                f"in {extra['current_uri']} against {self.event_model} v{summary.get('model_version')}"
            ),
            "producer": producer(context, self.task_id),
        })
        context["outlet_events"][AssetAlias(drift_asset_alias(self.event_model))].add(Asset(uri), extra=extra)
        self.log.info("Emitted an Asset event on %s", uri)
        return {"asset": uri, "alias": drift_asset_alias(self.event_model)}

    def _skip_downstream(self, context: Context, summary: dict[str, Any]) -> None:
        tasks = [t for t in context["task"].get_flat_relatives(upstream=False) if not t.is_teardown]
        if not tasks:
            return
        self.log.info("Drift (on_failure='skip'): skipping downstream tasks %s", [t.task_id for t in tasks])
        context["ti"].xcom_push(key="return_value", value=summary)
        self.skip(ti=context["ti"], tasks=tasks)

    # ------------------------------------------------------------------ MLflow

    def _log_monitoring_run(
        self, context: Context, outcome: DriftCheckOutcome, summary: dict[str, Any]
    ) -> dict:
        """Log the drift metrics to a monitoring run (reused when the task is retried)."""
        import time

        from mlflow.entities import Metric, RunTag

        ref = outcome.reference
        result = outcome.result
        client = self.hook.get_client()
        experiment = self.monitoring_experiment or (
            f"{ref.model_name or self.event_model}-monitoring"
            if (ref.model_name or self.event_model)
            else "drift-monitoring"
        )
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
        ti = context.get("ti")
        ti_key = "/".join(
            str(x)
            for x in (
                getattr(ti, "dag_id", "manual"),
                context.get("run_id", "manual"),
                getattr(ti, "task_id", self.task_id),
                getattr(ti, "map_index", -1),
            )
        )
        found = client.search_runs(
            [exp_id], filter_string=f"tags.`mlops.airflow_ti` = '{ti_key}'", max_results=1
        )
        run_id = (
            found[0].info.run_id
            if found
            else client.create_run(exp_id, run_name=run_name(
                "drift", f"{ref.model_name or self.event_model or ''} {batch_label(summary['current'].get('uri'))}",
                context)).info.run_id
        )
        now = int(time.time() * 1000)
        metrics = [
            Metric("drift.dataset_drift", float(result.dataset_drift), now, 0),
            Metric("drift.share_of_drifted_columns", result.share_of_drifted_columns, now, 0),
            Metric("drift.drift_share_threshold", float(result.drift_share), now, 0),
            Metric("drift.number_of_drifted_columns", float(result.number_of_drifted_columns), now, 0),
            Metric("drift.current_rows", float(result.current_rows), now, 0),
        ]
        for name, col in result.columns.items():
            if col.score is not None:
                # a distance beyond the float range (values near 1e308) is logged as the largest float
                score = max(min(float(col.score), sys.float_info.max), -sys.float_info.max)
                metrics.append(Metric(_metric_key(f"drift.score.{name}"), score, now, 0))
            metrics.append(Metric(_metric_key(f"drift.drifted.{name}"), float(col.drifted), now, 0))
        tags = {
            "mlops.kind": "drift_check",
            "mlops.airflow_ti": ti_key,
            "airflow.dag_id": str(getattr(ti, "dag_id", None) or "manual"),
            "airflow.run_id": str(context.get("run_id") or "manual"),
            "airflow.task_id": str(getattr(ti, "task_id", self.task_id)),
            "mlops.reference": ref.description[:500],
            "mlops.current_uri": str(summary["current"].get("uri"))[:500],
            "mlops.current_digest": str(summary["current"].get("digest")),
            "mlops.dataset_drift": str(result.dataset_drift).lower(),
        }
        if ref.model_name:
            tags.update({"mlops.model_name": ref.model_name, "mlops.model_version": str(ref.model_version)})
            tags["mlops.model_run_id"] = str(ref.run_id)
        for start in range(0, len(metrics), 900):
            client.log_batch(
                run_id,
                metrics=metrics[start : start + 900],
                tags=[RunTag(k, v) for k, v in tags.items()] if start == 0 else [],
            )
        out: dict[str, Any] = {"monitoring_run_id": run_id}
        if self.html_report:
            out.update(self._log_report(client, run_id, exp_id, outcome))
        client.set_terminated(run_id, "FINISHED")
        if ref.model_name and ref.model_version:
            client.set_model_version_tag(ref.model_name, ref.model_version, "mlops.last_drift_run_id", run_id)
            client.set_model_version_tag(
                ref.model_name,
                ref.model_version,
                "mlops.last_dataset_drift",
                str(result.dataset_drift).lower(),
            )
        url = self.hook.run_url(run_id, exp_id)
        out["monitoring_run_url"] = url
        record_link(self, MlflowRunLink.name, url)
        if not out.get("report_url"):
            # no HTML report (html_report=False): the run's page shows the per-column scores and verdicts
            record_link(self, DriftReportLink.name, url)
        return out

    def _log_report(
        self, client: Any, run_id: str, exp_id: str, outcome: DriftCheckOutcome
    ) -> dict[str, Any]:
        """Evidently's HTML report on a sample of both sides, logged as ``drift/report.html``."""
        reference_frame = outcome.reference.frame
        if reference_frame is None and outcome.reference.run_id:
            reference_frame = self._download_features(client, outcome.reference.run_id)
        if reference_frame is None:
            self.log.warning("No reference rows to render an HTML report from (profile-only reference)")
            return {"report": None}
        n = int(self.report_sample_rows)
        current = outcome.current_frame
        cols = [c for c in reference_frame.columns if c in current.columns]
        path = render_evidently_report(_sample(reference_frame[cols], n), _sample(current[cols], n))
        try:
            client.log_artifact(run_id, path, artifact_path=os.path.dirname(REPORT_ARTIFACT_PATH))
        finally:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        out: dict[str, Any] = {"report": f"runs:/{run_id}/{REPORT_ARTIFACT_PATH}"}
        url = self.hook.artifact_url(run_id, REPORT_ARTIFACT_PATH, exp_id)
        out["report_url"] = url
        record_link(self, DriftReportLink.name, url)
        return out

    @staticmethod
    def _download_features(client: Any, run_id: str) -> pd.DataFrame | None:
        import pandas as pd

        with tempfile.TemporaryDirectory(prefix="mlops-drift-") as tmp:
            try:
                return pd.read_parquet(client.download_artifacts(run_id, REFERENCE_FEATURES_PATH, tmp))
            except Exception:  # noqa: BLE001 - report is optional
                return None


def _sample(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return frame if len(frame) <= n else frame.sample(n=n, random_state=0)


def render_evidently_report(reference: pd.DataFrame, current: pd.DataFrame) -> str:
    """Run ``Report([DataDriftPreset()])`` and write its HTML to a temporary file; returns the path."""
    import warnings

    from evidently import Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()]).run(current, reference)
    # the artifact must be called report.html: write it into a private directory of its own
    path = os.path.join(tempfile.mkdtemp(prefix="mlops-drift-report-"), "report.html")
    snapshot.save_html(path)
    return path
