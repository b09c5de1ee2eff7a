"""Promotion gate: evaluate challenger and champion on the same data, decide, record, and maybe promote."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider._args import FAIL, SKIP, WARN, check_choice, check_number, is_templated, reject_renamed
from mlops_provider.exceptions import MlopsConfigurationError
from mlops_provider.lineage import LineageMixin, records
from mlops_provider.links.mlflow import GateReportLink, MlflowModelVersionLink, record_link

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from mlops_provider.core.gate import GateDecision, GateSpec
    from mlops_provider.hooks.mlflow import MlflowHook

ON_PASS = ("promote", "none")
#: ``on_failure`` values of the gate (a subset of :data:`mlops_provider._args.ON_FAILURE`).
ON_FAILURE = (FAIL, SKIP, WARN)
TAG_PREFIX = "gate."
REPORT_JSON = "gate_report.json"
REPORT_PNG = "gate_report.png"
DEFAULT_EXPERIMENT = "promotion-gate"
#: MLflow tag values are limited in size; the compact summary stays well below.
MAX_TAG_CHARS = 4000


class PromotionGateOperator(LineageMixin, BaseOperator):
    """
    Evaluate a challenger and the champion of a registered model on one evaluation dataset and bless or reject it.

    Both versions are scored in this task with the metric code used for training
    (:func:`mlops_provider.core.metrics.compute_metrics`), overall and per slice (one slice per value of
    each slice column).  The decision follows TFX's blessing semantics
    (:func:`mlops_provider.core.gate.evaluate_gate`).  Outputs: tags ``gate.*`` on the challenger's
    model version, a report (JSON + PNG chart) logged to an MLflow run with a "Gate report" link, and a
    small XCom summary.

    :param model_name: registered model name.
    :param eval_dataset: evaluation dataset: path/URI string, ``{"uri"|"sql", "conn_id", "format"}`` dict.
    :param target_column: label column of ``eval_dataset``.
    :param gate_spec: the checks, as a :class:`~mlops_provider.core.gate.GateSpec` dict (thresholds,
        fairness, budgets, ``fail_on_empty_slice``).
    :param challenger: version number or alias of the candidate (default alias ``challenger``).
    :param champion: alias (default ``champion``) or version of the baseline; a missing alias means
        "first model".  With ``on_pass="promote"`` it must be an alias: the one that is moved.
    :param metrics: metric names to compute (default: those named by ``gate_spec``).
    :param slice_columns: extra columns to slice by (those named in ``gate_spec`` are always used).
    :param feature_columns: columns passed to the models (default: the columns each model was fitted on,
        ``feature_names_in_``, else all but the target).
    :param on_pass: ``promote`` (move the champion alias with compare-and-set) or ``none``.
    :param on_failure: what a refused challenger does to the task: ``fail`` (raise
        :class:`~mlops_provider.exceptions.PromotionRejected`, no retry), ``skip`` (skip the downstream
        tasks) or ``warn`` (log a warning and succeed; nothing is promoted, downstream tasks can branch on
        ``passed`` in the XCom).  In every case the decision is recorded first, the same way as a pass:
        XCom ``return_value``, the MLflow report run and the ``gate.*`` tags of the challenger.
    :param experiment_name: MLflow experiment of the gate run (default: connection extra
        ``experiment_name`` or ``promotion-gate``).
    :param latency_chunks: number of 1,000-row chunks timed for the latency budget.
    :param mlflow_conn_id: MLflow connection.
    """

    template_fields: Sequence[str] = (
        "model_name",
        "eval_dataset",
        "target_column",
        "gate_spec",
        "challenger",
        "champion",
        "metrics",
        "slice_columns",
        "feature_columns",
        "experiment_name",
    )
    template_fields_renderers = {"gate_spec": "json", "eval_dataset": "json"}
    operator_extra_links = (GateReportLink(), MlflowModelVersionLink())
    ui_color = "#d8f0e6"

    def __init__(
        self,
        *,
        model_name: str,
        eval_dataset: str | dict[str, Any],
        target_column: str,
        gate_spec: dict[str, Any],
        challenger: str | int = "challenger",
        champion: str | int = "champion",
        metrics: Sequence[str] | None = None,
        slice_columns: Sequence[str] = (),
        feature_columns: Sequence[str] | None = None,
        on_pass: str = "promote",
        on_failure: str = FAIL,
        experiment_name: str | None = None,
        latency_chunks: int = 20,
        mlflow_conn_id: str = "mlflow_default",
        **kwargs: Any,
    ) -> None:
        reject_renamed(f"PromotionGateOperator {kwargs.get('task_id')!r}", kwargs, {"on_fail": "on_failure"})
        super().__init__(**kwargs)
        self.model_name = model_name
        self.eval_dataset = eval_dataset
        self.target_column = target_column
        self.gate_spec = gate_spec
        self.challenger = challenger
        self.champion = champion
        self.metrics = metrics
        self.slice_columns = slice_columns
        self.feature_columns = feature_columns
        self.on_pass = on_pass
        self.on_failure = on_failure
        self.experiment_name = experiment_name
        self.latency_chunks = latency_chunks
        self.mlflow_conn_id = mlflow_conn_id
        self._check_arguments()

    def _check_arguments(self) -> None:
        """Parse-time checks of what is not templated (house rule 2); no I/O, nothing heavy."""
        where = f"PromotionGateOperator {self.task_id!r}"
        check_choice(where, "on_pass", self.on_pass, ON_PASS)
        check_choice(where, "on_failure", self.on_failure, ON_FAILURE)
        check_number(where, "latency_chunks", self.latency_chunks, low=1, integer=True)
        if self.on_pass == "promote" and _is_version(self.champion):
            raise MlopsConfigurationError(
                f"{where}: on_pass='promote' moves the champion alias, so champion must be an alias, "
                f"got version {self.champion!r}"
            )
        if isinstance(self.gate_spec, dict) and not _holds_template(self.gate_spec):
            from mlops_provider.core.gate import GateSpec, GateSpecError  # pure Python, cheap

            try:
                GateSpec.from_dict(self.gate_spec)
            except GateSpecError as err:
                raise MlopsConfigurationError(f"{where}: {err}") from None

    @cached_property
    def hook(self) -> MlflowHook:
        from mlops_provider.hooks.mlflow import MlflowHook

        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core.gate import GateDecision

        spec = self._validate()
        client = self.hook.get_client()
        challenger_version = self._resolve_version(client, self.challenger, required=True)
        champion_version = self._resolve_version(client, self.champion, required=False)
        self.log.info(
            "Gate for %r: challenger %s (%s) vs champion %s (%s)",
            self.model_name, challenger_version, self.challenger, champion_version or "none", self.champion,
        )
        record_link(self, MlflowModelVersionLink.name, self.hook.model_version_url(self.model_name, challenger_version))

        if champion_version is not None and champion_version == challenger_version:
            decision = GateDecision(
                passed=False, basis="same_version", checks=[],
                candidate=challenger_version, baseline=champion_version,
                notes=["challenger is the champion: nothing evaluated, nothing changed"],
            )
            self.log.info("%s", decision.message())
            self._lineage = self._lineage_of(decision, challenger_version, champion_version)
            return self._xcom(decision, challenger_version, champion_version, None, None, promoted=False)

        evaluation = self._evaluate(spec, challenger_version, champion_version)
        from mlops_provider.core.gate import GateSpecError, evaluate_gate
        from mlops_provider.exceptions import MlopsConfigurationError

        try:
            decision = evaluate_gate(
                evaluation["candidate"], evaluation["baseline"], spec,
                candidate_id=challenger_version, baseline_id=champion_version,
            )
        except GateSpecError as err:
            raise MlopsConfigurationError(f"PromotionGateOperator {self.task_id!r}: {err}") from None
        self.log.info("%s", decision.message())
        self._lineage = self._lineage_of(decision, challenger_version, champion_version)

        # One credentials scope for the report, the tags and the promotion: the registry client used
        # there (no prompt-check GET per call) reads the connection's credentials from it.
        promoted = False
        with self.hook.mlflow_env(), self._report_run(
            client, spec, decision, evaluation, challenger_version, champion_version, context
        ) as (run_id, report_uri):
            if decision.passed and self.on_pass == "promote":
                promoted = self._promote(client, decision, challenger_version, champion_version, context)

        result = self._xcom(decision, challenger_version, champion_version, run_id, report_uri, promoted=promoted)
        if not decision.passed:
            text = f"{decision.message()}\n  report: {report_uri}"
            if self.on_failure == WARN:
                self.log.warning("%s\nContinuing (on_failure='warn'): nothing was promoted.", text)
                return result
            # a failed or skipped task pushes no return value: record the verdict the same way as a pass
            _xcom_push(context, "return_value", result)
            if self.on_failure == SKIP:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(text)
            from mlops_provider.exceptions import PromotionRejected

            raise PromotionRejected(text)
        return result

    # ------------------------------------------------------------------ steps

    def _lineage_of(self, decision: GateDecision, challenger: str, champion: str | None) -> dict[str, Any]:
        return records.gate(self.eval_dataset, self.hook.tracking_uri, self.model_name, challenger, champion, decision)

    def _validate(self) -> GateSpec:
        from mlops_provider.core.gate import GateSpec, GateSpecError
        from mlops_provider.exceptions import MlopsConfigurationError

        where = f"PromotionGateOperator {self.task_id!r}"
        check_choice(where, "on_pass", self.on_pass, ON_PASS)
        check_choice(where, "on_failure", self.on_failure, ON_FAILURE)
        if not self.model_name or not isinstance(self.model_name, str):
            raise MlopsConfigurationError(f"{where}: model_name must be a non-empty string")
        if not self.target_column or not isinstance(self.target_column, str):
            raise MlopsConfigurationError(f"{where}: target_column must be a non-empty string")
        if self.on_pass == "promote" and _is_version(self.champion):
            raise MlopsConfigurationError(
                f"{where}: on_pass='promote' moves the champion alias, so champion must be an alias, "
                f"got version {self.champion!r}"
            )
        raw = self.gate_spec
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as err:
                raise MlopsConfigurationError(f"{where}: gate_spec is not valid JSON: {err.msg}") from None
        try:
            spec = GateSpec.from_dict(raw)
        except GateSpecError as err:
            raise MlopsConfigurationError(f"{where}: {err}") from None
        from mlops_provider.core.metrics import validate_metric_names

        validate_metric_names(self._metric_names(spec))
        return spec

    def _metric_names(self, spec: GateSpec) -> list[str]:
        names = list(self.metrics) if self.metrics else spec.metric_names
        return list(dict.fromkeys(names))

    def _resolve_version(self, client: Any, ref: str | int, required: bool) -> str | None:
        """Version number (as a string) for a version or alias; ``None`` for a missing optional alias."""
        from mlflow.exceptions import MlflowException

        from mlops_provider.exceptions import MlopsConfigurationError

        try:
            if _is_version(ref):
                return str(client.get_model_version(self.model_name, str(ref)).version)
            return str(client.get_model_version_by_alias(self.model_name, str(ref)).version)
        except MlflowException as err:
            if getattr(err, "error_code", "") not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            if required or _is_version(ref):
                raise MlopsConfigurationError(
                    f"Registered model {self.model_name!r} has no version or alias {ref!r}: "
                    f"{str(err).splitlines()[0][:200]}"
                ) from None
            return None

    def _evaluate(self, spec: GateSpec, challenger_version: str, champion_version: str | None) -> dict[str, Any]:
        """
        Load the dataset once and both models; compute metrics per slice, latency and size.

        The models download on a worker thread while this one loads the dataset and scores the
        challenger, so the tracking server's transfer time overlaps the local work.
        """
        from concurrent.futures import ThreadPoolExecutor

        versions = {"candidate": challenger_version, "baseline": champion_version}
        with tempfile.TemporaryDirectory(prefix="gate-") as tmp:
            pool = ThreadPoolExecutor(1, thread_name_prefix="gate-download")
            try:
                downloads = {
                    role: pool.submit(self._download_model, version, os.path.join(tmp, role))
                    for role, version in versions.items()
                    if version is not None
                }
                return self._score(spec, versions, downloads)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def _score(self, spec: GateSpec, versions: dict[str, str | None], downloads: dict[str, Any]) -> dict[str, Any]:
        from mlops_provider.core.datasets import load_dataset, to_dataset_ref
        from mlops_provider.exceptions import DatasetError

        data = load_dataset(to_dataset_ref(self.eval_dataset))
        frame = data.frame
        slice_columns = list(dict.fromkeys([*spec.slice_columns, *(self.slice_columns or [])]))
        missing = [c for c in [self.target_column, *slice_columns] if c not in frame.columns]
        if missing:
            raise DatasetError(
                f"Evaluation dataset {data.uri} has no column(s) {missing}; it has: {', '.join(map(str, frame.columns[:30]))}"
            )
        if self.feature_columns:
            absent = [c for c in self.feature_columns if c not in frame.columns]
            if absent:
                raise DatasetError(f"Evaluation dataset {data.uri} has no feature column(s) {absent}")
        y = frame[self.target_column]
        names = self._metric_names(spec)
        slices = _slice_indices(frame, slice_columns)
        measure_latency = spec.latency_p95_ms_per_1k_rows is not None

        results: dict[str, Any] = {"dataset": data.summary(), "slices": {k: len(v) for k, v in slices.items()}}
        for role, version in versions.items():
            if version is None:
                results[role] = None
                continue
            local, size_mb = downloads[role].result()
            model = self._load_model(version, local)
            X = frame[self._features(model, frame, data.uri)]
            who = f"{'challenger' if role == 'candidate' else 'champion'} (version {version})"
            self._check_target(y, model, names, data.uri)
            try:
                metrics = _metrics_by_slice(model, X, y, names, slices, target=self.target_column)
                if measure_latency:
                    metrics["overall"]["latency_p95_ms_per_1k_rows"] = _latency_p95(model, X, self.latency_chunks)
            except (MlopsConfigurationError, ValueError, TypeError) as err:
                raise self._unscorable(err, frame, list(X.columns), data.uri, who) from None
            self._check_overall(metrics["overall"], y, model, names)
            metrics["overall"]["model_size_mb"] = size_mb
            results[role] = metrics
            self.log.info(
                "Scored %s version %s on %d rows and %d slices", "challenger" if role == "candidate" else "champion",
                version, len(frame), len(slices),
            )
        return results

    def _check_target(self, y: Any, model: Any, names: list[str], uri: str) -> None:
        """Refuse a target the models cannot be judged on, naming the column (before any scoring)."""
        from mlops_provider.core.gate import ONE_CLASS_UNDEFINED, one_class_message, target_problem
        from mlops_provider.core.metrics import metric_key
        from mlops_provider.exceptions import DatasetError

        classes = getattr(model, "classes_", None)
        problem = target_problem(y, self.target_column, classes)
        if problem:
            raise DatasetError(f"Evaluation dataset {uri}: {problem}")
        if classes is not None and y.nunique(dropna=True) == 1:
            undefined = [n for n in names if metric_key(n) in ONE_CLASS_UNDEFINED]
            if undefined:
                raise DatasetError(
                    f"{one_class_message(metric_key(undefined[0]), self.target_column, y)}; the gate cannot judge "
                    f"{', '.join(map(metric_key, undefined))} on {uri}: evaluate on data with every class, or drop "
                    "these metrics from the gate spec. Nothing was promoted."
                )

    def _check_overall(self, overall: dict[str, Any], y: Any, model: Any, names: list[str]) -> None:
        """A metric undefined on the whole evaluation set because of a one-class target is an input error, not a failed threshold."""
        from mlops_provider.core.gate import one_class_message
        from mlops_provider.core.metrics import metric_key
        from mlops_provider.exceptions import DatasetError

        if getattr(model, "classes_", None) is None or y.nunique(dropna=True) != 1:
            return
        undefined = [metric_key(n) for n in names if not math.isfinite(float(overall.get(metric_key(n), math.nan)))]
        if undefined:
            raise DatasetError(
                f"{one_class_message(undefined[0], self.target_column, y)}; the gate cannot judge "
                f"{', '.join(undefined)} on it. Nothing was promoted."
            )

    def _unscorable(self, err: Exception, frame: pd.DataFrame, columns: list[str], uri: str, who: str) -> Exception:
        """The scoring error, with the evaluation columns that explain it when some do."""
        from mlops_provider.core.gate import explain_scoring_error
        from mlops_provider.exceptions import DatasetError

        first = (str(err).splitlines() or [type(err).__name__])[0][:300]
        explanation = explain_scoring_error(frame, columns, first)
        if explanation is None:
            return err if isinstance(err, MlopsConfigurationError) else MlopsConfigurationError(
                f"The {who} model could not score {uri}: {first}"
            )
        return DatasetError(f"Evaluation dataset {uri}: the {who} model cannot score it: {explanation} ({first})")

    def _features(self, model: Any, frame: pd.DataFrame, uri: str) -> list[str]:
        """``feature_columns``, else the columns the model was fitted on, else all but the target."""
        from mlops_provider.exceptions import DatasetError

        if self.feature_columns:
            return list(self.feature_columns)
        fitted = getattr(model, "feature_names_in_", None)
        if fitted is not None:
            wanted = [str(c) for c in fitted]
            absent = [c for c in wanted if c not in frame.columns]
            if absent:
                raise DatasetError(f"Evaluation dataset {uri} lacks column(s) {absent} the model was trained on")
            return wanted
        return [c for c in frame.columns if c != self.target_column]

    def _download_model(self, version: str, dst: str) -> tuple[str, float]:
        """Download the model files of ``version``; return the local path and their size in MB."""
        import mlflow

        os.makedirs(dst, exist_ok=True)
        with self.hook.mlflow_env():
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.model_name}/{version}", dst_path=dst)
        size = sum(
            os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(local) for f in files
        )
        return local, round(size / 1_000_000, 6)

    def _load_model(self, version: str, local: str) -> Any:
        """The sklearn model in the downloaded directory ``local``."""
        import mlflow
        from mlflow.exceptions import MlflowException

        from mlops_provider.exceptions import MlopsConfigurationError

        try:
            with self.hook.mlflow_env():  # also quiets skops' module scan (see MlflowHook.mlflow_env)
                return mlflow.sklearn.load_model(local)
        except MlflowException as err:
            raise MlopsConfigurationError(
                f"Model models:/{self.model_name}/{version} cannot be loaded as an sklearn model "
                f"(the gate scores sklearn-flavoured models): {str(err).splitlines()[0][:200]}"
            ) from None

    @contextlib.contextmanager
    def _report_run(
        self, client: Any, spec: GateSpec, decision: GateDecision, evaluation: dict[str, Any],
        challenger_version: str, champion_version: str | None, context: Context | None = None,
    ) -> Iterator[tuple[str, str]]:
        """
        Log the gate report to a new MLflow run and tag the challenger; yield (run_id, report URI).

        The JSON report, the metrics and the version tags are written before the block runs; the PNG
        chart is drawn on a worker thread meanwhile (this thread mostly waits on the tracking server),
        and is uploaded when the block ends, also when it raised (then best effort: the block's error wins).
        The run carries the Airflow lineage tags of training runs (``mlops.dag_id``, ``mlops.run_id``,
        ``mlops.task_id``, ``mlops.map_index``, ``mlops.try_number``).  Call inside :meth:`MlflowHook.mlflow_env`.
        """
        from concurrent.futures import ThreadPoolExecutor

        from mlflow.entities import Metric, RunTag
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        from mlops_provider._airflow_tags import lineage_tags

        report = {
            "model_name": self.model_name,
            "challenger_version": challenger_version,
            "champion_version": champion_version,
            "decision": decision.to_dict(),
            "spec": spec.to_dict(),
            "dataset": evaluation["dataset"],
            "slice_rows": evaluation["slices"],
            "metrics": {"challenger": evaluation["candidate"], "champion": evaluation["baseline"]},
        }
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"{role}.{name}", float(value), now, 0)
            for role, per_slice in (("challenger", evaluation["candidate"]), ("champion", evaluation["baseline"]))
            if per_slice
            for name, value in per_slice["overall"].items()
            if isinstance(value, int | float) and math.isfinite(value)
        ]
        with tempfile.TemporaryDirectory(prefix="gate-report-") as tmp, ThreadPoolExecutor(1) as pool:
            png = os.path.join(tmp, REPORT_PNG)
            chart = pool.submit(render_chart, report, png)
            experiment_id = self._experiment_id(client)
            run = client.create_run(
                experiment_id,
                run_name=f"gate {self.model_name} v{challenger_version} vs v{champion_version or '-'}",
                tags={
                    **lineage_tags(context, self.task_id),
                    "mlops.kind": "promotion_gate",
                    "mlops.model_name": self.model_name,
                    "mlops.challenger_version": challenger_version,
                    "mlops.champion_version": champion_version or "",
                    "mlops.verdict": decision.verdict,
                },
            )
            run_id = run.info.run_id
            # the run's own artifact repository: no run lookup per upload
            artifacts = get_artifact_repository(run.info.artifact_uri, tracking_uri=self.hook.tracking_uri)
            try:
                client.log_batch(
                    run_id, metrics=metrics, tags=[RunTag("mlops.passed", str(decision.passed).lower())]
                )
                with open(os.path.join(tmp, REPORT_JSON), "w") as fh:
                    json.dump(_json_safe(report), fh, indent=2, allow_nan=False)
                artifacts.log_artifact(os.path.join(tmp, REPORT_JSON), "gate")
                report_uri = f"{run.info.artifact_uri.rstrip('/')}/gate/{REPORT_JSON}"
                self._tag_version(client, decision, challenger_version, champion_version, report_uri, run_id)
                url = self.hook.gate_report_url(run_id, experiment_id, chart=f"gate/{REPORT_PNG}")
                record_link(self, GateReportLink.name, url)
                self.log.info("Gate report: %s", url)
                yield run_id, report_uri
            except BaseException:
                # the error in flight is the one to report; finishing the run is then best effort
                try:
                    self._finish_report(client, run_id, chart, artifacts, png)
                except Exception as err:
                    self.log.warning("Gate report run %s could not be finished: %s", run_id, err)
                raise
            self._finish_report(client, run_id, chart, artifacts, png)

    def _finish_report(self, client: Any, run_id: str, chart: Any, artifacts: Any, png: str) -> None:
        """Upload the chart once drawn and mark the report run finished (the report itself is complete)."""
        try:
            chart.result()
        except Exception as err:  # the chart is a convenience: never lose the decision over it
            self.log.warning("Gate chart could not be drawn: %s", err)
        else:
            artifacts.log_artifact(png, "gate")
        client.set_terminated(run_id, "FINISHED")

    def _experiment_id(self, client: Any) -> str:
        name = self.experiment_name or self.hook.extras.get("experiment_name") or DEFAULT_EXPERIMENT
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        from mlflow.exceptions import MlflowException

        try:
            return client.create_experiment(name)
        except MlflowException:  # created concurrently
            return client.get_experiment_by_name(name).experiment_id

    def _tag_version(
        self, client: Any, decision: GateDecision, challenger_version: str, champion_version: str | None,
        report_uri: str, run_id: str,
    ) -> None:
        from mlops_provider.core.registry import registry_client

        summary = decision.to_summary()
        compact = json.dumps(
            {k: summary[k] for k in ("verdict", "basis", "n_checks", "n_failed", "failed")}, separators=(",", ":")
        )
        if len(compact) > MAX_TAG_CHARS:
            compact = compact[: MAX_TAG_CHARS - 3] + "..."
        tags = {
            "passed": str(decision.passed).lower(),
            "compared_to": champion_version or "none",
            "summary": compact,
            "report_uri": report_uri,
            "run_id": run_id,
        }
        registry = registry_client(client)
        for key, value in tags.items():
            registry.set_model_version_tag(self.model_name, challenger_version, TAG_PREFIX + key, value)

    def _promote(
        self, client: Any, decision: GateDecision, challenger_version: str, champion_version: str | None,
        context: Context,
    ) -> bool:
        """Move the champion alias to the challenger only if it still points where it did at the start."""
        from mlops_provider.core.registry import compare_and_set_alias
        from mlops_provider.exceptions import ChampionMovedError

        alias = str(self.champion)
        ti = context.get("ti")
        actor = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}" if ti is not None else self.task_id
        try:
            result = compare_and_set_alias(
                client, self.model_name, alias, challenger_version,
                # "none": the alias must still be unset (first model); never None, which skips the check
                champion_version if champion_version is not None else "none",
                reason=f"promotion gate {decision.verdict} ({decision.basis})", actor=actor,
            )
        except ChampionMovedError:
            client.set_model_version_tag(self.model_name, challenger_version, TAG_PREFIX + "promoted", "false")
            raise
        client.set_model_version_tag(self.model_name, challenger_version, TAG_PREFIX + "promoted", "true")
        reason = f"promotion gate {decision.verdict} ({decision.basis})"
        self._lineage = records.merge(self._lineage, records.alias_move(self.hook.tracking_uri, result, reason, "promote"))
        self.log.info(
            "Promoted %r version %s to alias %r (was %s)", self.model_name, challenger_version, alias,
            result.get("previous_version") or "unset",
        )
        return True

    def _xcom(
        self, decision: GateDecision, challenger_version: str, champion_version: str | None,
        run_id: str | None, report_uri: str | None, promoted: bool,
    ) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "challenger_version": challenger_version,
            "champion_version": champion_version,
            **decision.to_summary(),
            "promoted": promoted,
            "run_id": run_id,
            "report_uri": report_uri,
        }


# ---------------------------------------------------------------------- helpers (pure)


def _xcom_push(context: Context, key: str, value: Any) -> None:
    ti = context.get("ti")
    if ti is not None:
        ti.xcom_push(key=key, value=value)


def _holds_template(value: Any) -> bool:
    """True when a string anywhere in ``value`` (dicts, lists) is a Jinja template."""
    if isinstance(value, dict):
        return any(_holds_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_template(v) for v in value)
    return is_templated(value)


def _is_version(ref: Any) -> bool:
    return isinstance(ref, int) and not isinstance(ref, bool) or (isinstance(ref, str) and ref.isdigit())


def _slice_indices(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    """``{"col=value": positional indices}`` for every value of every slice column (NaN as ``col=nan``)."""
    slices: dict[str, Any] = {}
    for column in columns:
        groups = frame.groupby(frame[column], dropna=False, observed=False, sort=True).indices
        for value, idx in groups.items():
            slices[f"{column}={value}"] = idx
    return slices


class _PredictionCache:
    """
    Stands in for a fitted model inside sklearn scorers, so every prediction method runs once.

    The scorers of :func:`~mlops_provider.core.metrics.compute_metrics` call ``predict``/``predict_proba``/
    ``decision_function`` once per metric; here each method runs once on the whole evaluation set and
    the scorers receive row positions instead of rows.  Metrics are computed by the same code as in
    training; only the repeated predictions are saved (sklearn predictions are row-wise).
    """

    _METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")

    def __init__(self, model: Any, X: Any) -> None:
        self._model = model
        self._X = X
        self._cache: dict[str, Any] = {}
        if getattr(model, "classes_", None) is not None:
            self.classes_ = model.classes_
        for name in self._METHODS:
            if getattr(model, name, None) is not None:
                setattr(self, name, self._cached(name))

    def _cached(self, name: str) -> Any:
        import numpy as np

        from mlops_provider.core.metrics import compact_labels

        def method(rows: Any) -> Any:
            if name not in self._cache:
                values = np.asarray(getattr(self._model, name)(self._X))
                # predicted labels in the same compact dtype as the true ones (compute_metrics)
                self._cache[name] = compact_labels(values) if name == "predict" else values
            return self._cache[name][np.asarray(rows)]

        method.__name__ = name
        return method

    def __sklearn_tags__(self) -> Any:
        return self._model.__sklearn_tags__()


def _metrics_by_slice(
    model: Any, X: Any, y: Any, names: list[str], slices: dict[str, Any], target: str | None = None
) -> dict[str, dict[str, Any]]:
    """
    Overall metrics (errors raise) and per-slice metrics (a metric undefined on a slice is NaN).

    A metric that is NaN on a slice whose target has one class gets its reason under the slice's
    ``undefined`` key (``{metric: "roc_auc is undefined: 'label' has one class in slice region=EU ..."}``),
    which the gate's check message quotes.
    """
    import numpy as np

    from mlops_provider.core.gate import UNDEFINED, one_class_message
    from mlops_provider.core.metrics import compute_metrics, metric_key

    cached = _PredictionCache(model, X)
    y_all = np.asarray(y)
    out: dict[str, dict[str, Any]] = {
        "overall": {**compute_metrics(cached, np.arange(len(X)), y_all, names), "n_rows": len(X)}
    }
    for key, idx in slices.items():
        row: dict[str, Any] = {"n_rows": len(idx)}
        if len(idx):
            ys = y_all[idx]
            try:
                row.update(compute_metrics(cached, idx, ys, names))
            except Exception:  # e.g. roc_auc on a slice with one class: score metric by metric
                for name in names:
                    try:
                        row.update(compute_metrics(cached, idx, ys, [name]))
                    except Exception:
                        row[metric_key(name)] = math.nan
            nan = [metric_key(n) for n in names if not math.isfinite(row.get(metric_key(n), math.nan))]
            if nan and target is not None and len(np.unique(ys)) == 1:
                row[UNDEFINED] = {m: one_class_message(m, target, ys, f"slice {key}") for m in nan}
        out[key] = row
    return out


def _latency_p95(model: Any, X: Any, chunks: int) -> float:
    """p95 over up to ``chunks`` timed ``predict`` calls on 1,000-row chunks (ms per 1,000 rows)."""
    import numpy as np

    n = len(X)
    size = min(1000, n)
    timings = []
    starts = list(range(0, max(n - size, 0) + 1, size))[: max(int(chunks), 1)]
    model.predict(X.iloc[:size])  # warm-up
    for start in starts:
        part = X.iloc[start : start + size]
        t0 = time.perf_counter()
        model.predict(part)
        timings.append((time.perf_counter() - t0) * 1000 * 1000 / len(part))
    return float(np.percentile(timings, 95))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy scalar
        return _json_safe(value.item())
    return value


def render_chart(report: dict[str, Any], path: str) -> None:
    """The gate at a glance, as a PNG at least 1200 px wide.

    One panel per metric: champion and challenger side by side per slice, the value on every bar, the
    bound of each check drawn as a line over the slice it applies to (red when the check failed); one
    panel of fairness gaps against their ``max_gap``; budgets as a line of text.  matplotlib is imported
    here, with the Agg canvas and no pyplot (no global backend switch); the layout is fixed (one pass).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    challenger = report["metrics"]["challenger"] or {}
    champion = report["metrics"]["champion"] or {}
    overall = challenger.get("overall") or {}
    checks = report["decision"].get("checks") or []
    # budgets (model size, latency) are measured overall only: one line of text, not a panel each
    metric_names = [m for m in overall if m != "n_rows" and m not in _BUDGET_KEYS]
    budgets = "   ".join(
        f"{key}: champion {_fmt_num((champion.get('overall') or {}).get(key))}, challenger {_fmt_num(overall.get(key))}"
        for key in _BUDGET_KEYS
        if key in overall
    )
    fairness = [c for c in checks if c.get("kind") == "fairness"]
    slice_keys = list(challenger)[:25]
    panel_in, head_in, foot_in = 2.4, 0.8, 1.1
    n = max(len(metric_names), 1) + (1 if fairness else 0)
    height_in = panel_in * n + head_in + foot_in
    fig = Figure(figsize=(max(12.5, 0.9 * len(slice_keys) + 3), height_in), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    fig.subplots_adjust(left=0.06, right=0.98, top=1 - head_in / height_in, bottom=foot_in / height_in, hspace=0.75)
    xs = list(range(len(slice_keys)))
    bar = 0.38
    champion_label = f"champion v{report['champion_version']}" if report.get("champion_version") else "no champion"
    for ax, metric in zip(axes, metric_names, strict=False):
        cp = [_num(champion.get(s, {}).get(metric)) for s in slice_keys]
        ch = [_num(challenger.get(s, {}).get(metric)) for s in slice_keys]
        bars_cp = ax.bar([x - bar / 2 for x in xs], cp, bar, color="#8da0cb", label=champion_label)
        bars_ch = ax.bar([x + bar / 2 for x in xs], ch, bar, color="#66c2a5",
                         label=f"challenger v{report['challenger_version']}")
        if champion:
            ax.bar_label(bars_cp, fmt="%.3f", fontsize=9, padding=2)
        ax.bar_label(bars_ch, fmt="%.3f", fontsize=9, padding=2)
        top = max(cp + ch + [0.0])
        notes = []
        for check in checks:
            if check.get("metric") != metric or check.get("slice") not in slice_keys:
                continue
            x = slice_keys.index(check["slice"])
            bound = _drawn_bound(check)
            for key in ("lower_bound", "upper_bound"):
                value = bound.get(key)
                if value is None:
                    continue
                colour = "#2f855a" if check.get("passed") else "#c53030"
                ax.hlines(value, x - 0.48, x + 0.48, colors=colour, linestyles="--", linewidth=2)
                notes.append((f"{check['slice']}: {check['kind']} {'>=' if key == 'lower_bound' else '<='} "
                              f"{value:.3f} {'pass' if check.get('passed') else 'FAIL'}", colour))
                top = max(top, float(value))
        for i, (note, colour) in enumerate(reversed(notes)):  # the bounds, named, above the panel's right end
            ax.text(1.0, 1.03 + 0.13 * i, note, transform=ax.transAxes, fontsize=9, color=colour, ha="right")
        ax.set_ylim(0, top * 1.25 if top > 0 else 1)
        ax.set_xlim(-0.6, max(len(slice_keys), 3) - 0.4)
        ax.set_title(metric, fontsize=12, loc="left", fontweight="bold")
        ax.set_xticks(xs, slice_keys, fontsize=10)
        ax.tick_params(axis="y", labelsize=9)
    if fairness:
        ax = axes[-1]
        labels = [f"{c['metric']} across {c['slice']}" for c in fairness]
        gaps = [_num(c.get("observed")) for c in fairness]
        base = [_num(c.get("baseline")) for c in fairness]
        fx = list(range(len(fairness)))
        if champion:
            ax.bar_label(ax.bar([x - bar / 2 for x in fx], base, bar, color="#8da0cb"), fmt="%.3f", fontsize=9)
        ax.bar_label(ax.bar([x + bar / 2 for x in fx], gaps, bar, color="#66c2a5"), fmt="%.3f", fontsize=9)
        for x, check in zip(fx, fairness, strict=True):
            limit = (check.get("bound") or {}).get("max_gap")
            if limit is not None:
                colour = "#2f855a" if check.get("passed") else "#c53030"
                ax.hlines(limit, x - 0.48, x + 0.48, colors=colour, linestyles="--", linewidth=2)
                ax.text(x + 0.5, limit, f"max gap {limit:.3f}", fontsize=9, color=colour, ha="left", va="center")
        ax.set_xlim(-0.6, max(len(fairness), 3) - 0.4)
        ax.set_ylim(0, max(gaps + base + [float((c.get("bound") or {}).get("max_gap") or 0) for c in fairness]) * 1.3 or 1)
        ax.set_title("fairness gaps (max - min across slices)", fontsize=12, loc="left", fontweight="bold")
        ax.set_xticks(fx, labels, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=11, loc="upper right", ncols=2, frameon=False)
    verdict = report["decision"]["verdict"].replace("_", " ")
    failed = [c for c in checks if not c.get("passed")]
    fig.suptitle(
        f"{report['model_name']} v{report['challenger_version']}: {verdict}"
        + (f" ({len(failed)} of {len(checks)} checks failed)" if failed else f" ({len(checks)} checks passed)"),
        fontsize=15, x=0.06, ha="left", fontweight="bold",
    )
    if budgets:
        fig.text(0.06, 0.01, budgets, fontsize=10, ha="left", va="bottom")
    fig.savefig(path)


def _drawn_bound(check: dict[str, Any]) -> dict[str, Any]:
    """A check's bound as lower/upper values; a change check's tolerance is applied to the champion's value."""
    bound = dict(check.get("bound") or {})
    baseline = check.get("baseline")
    if check.get("kind") != "change" or baseline is None or "direction" not in bound:
        return bound
    allowed = [abs(float(bound["absolute"]))] if bound.get("absolute") is not None else []
    if bound.get("relative") is not None:
        allowed.append(abs(float(bound["relative"]) * float(baseline)))
    slack = min(allowed) if allowed else 0.0
    if bound["direction"] == "higher_is_better":
        return {"lower_bound": float(baseline) - slack}
    return {"upper_bound": float(baseline) + slack}


#: Overall-only measurements, written under the chart rather than drawn as panels.
_BUDGET_KEYS = ("model_size_mb", "latency_p95_ms_per_1k_rows")


def _fmt_num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4g}"


def _num(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0
