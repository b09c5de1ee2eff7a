"""DriftSensor: wait for new data batches and succeed when one of them has drifted."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf

from mlops_provider._args import check_choice, check_number
from mlops_provider.lineage import LineageMixin, records
from mlops_provider.links.mlflow import DriftReportLink

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from mlops_provider.core.batches import Batch

#: Sensor XCom keeps at most this many ids of the batches checked without drift.
MAX_CHECKED_IN_XCOM = 20


def default_deferrable() -> bool:
    """
    ``True`` unless ``[operators] default_deferrable`` is set through the environment
    (``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE``), which then wins.

    Airflow ships ``default_deferrable = false`` and writes that stock value into every generated
    ``airflow.cfg``, so a file value cannot be told apart from "not chosen"; this sensor is meant to wait
    without a worker slot, hence deferrable unless the deployment says otherwise in the environment
    (or the DAG passes ``deferrable=False``).  A ``true`` in ``airflow.cfg`` is honoured as well.
    """
    if os.environ.get("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE") is not None:
        return conf.getboolean("operators", "default_deferrable", fallback=True)
    return True


def load_batch_frame(batch_uri: str, files: Sequence[str], conn_id: str | None = None) -> pd.DataFrame:
    """Read a batch (one file, or the part files of a directory batch) as one DataFrame."""
    import pandas as pd

    from mlops_provider.core.datasets import DatasetRef, infer_format, load_dataset
    from mlops_provider.exceptions import DatasetError

    parts = [f for f in (files or [batch_uri]) if infer_format(f)]
    if not parts:
        raise DatasetError(f"Batch {batch_uri} has no parquet or csv file (files: {list(files)[:5]})")
    frames = [load_dataset(DatasetRef(uri=p, conn_id=conn_id)).frame for p in parts]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


class DriftSensor(LineageMixin, BaseSensorOperator):
    """
    Wait for new complete batches at ``location``; succeed when a batch drifts from the reference.

    Each new batch (see :mod:`mlops_provider.core.batches` for the completion convention) is checked
    in the **worker** with the drift engine (:func:`mlops_provider.core.drift.check_drift`); the
    triggerer only lists files.  A batch without drift is recorded in the ledger and the sensor waits
    for the next one, until ``timeout``.  A drifted batch ends the sensor with the drift summary as XCom.

    Deferrable by default (``[operators] default_deferrable``): while waiting it holds no worker slot.
    ``mode="poke"`` and ``mode="reschedule"`` (with ``deferrable=False``) work too.

    Every batch is claimed in the ledger only *after* its check has finished, so a task that dies in
    the middle (including the Airflow 3.3 defer/resume race, apache/airflow#72716) checks it again on
    retry; no batch is skipped and none is counted twice.

    :param location: folder or glob of batches (local path, or object-store URL with ``conn_id``).
    :param reference: as for ``DriftCheckOperator`` (:func:`~mlops_provider.operators.drift.resolve_drift_reference`):
        ``models:/<name>@<alias>`` (the profile stored with the model version), a drift profile path (``*.bin``, or ``*.json``
        of the older format; ``build_profile(...).save()``), or a dataset reference (path/URI, or dict).
    :param mlflow_conn_id: MLflow connection, used when ``reference`` is a ``models:/`` URI.
    :param conn_id: object-storage connection for ``location`` and the batch files.
    :param columns: columns to compare (default: all columns of the reference).  A batch that lacks one
        of them, or one of the reference's columns, fails the task with ``DatasetError`` and stays
        unclaimed: it is never reported as "no drift".
    :param column_methods: per-column drift method override.
    :param column_thresholds: per-column threshold override.
    :param drift_share: dataset drift when at least this share of the columns drifted.
    :param consumer: name in the ledger (default ``<dag_id>.<task_id>``); each batch is checked once per consumer.
    :param ledger_path: SQLite ledger (default ``<landing folder>/.mlops_batch_ledger.sqlite3``).
    :param marker: completion marker for directory batches (``None`` to accept any directory).
    :param min_age_seconds: ignore matches modified less than this long ago.
    :param resume_settle_seconds: the trigger fires no earlier than this long after a deferral, even when a
        batch is already waiting (default 10).  Works around the Airflow 3.3 defer/resume race
        (apache/airflow#72716, #71580): when the resumed attempt starts before the scheduler has
        processed the deferring worker's exit, the scheduler marks the running task failed (or up for
        retry).  Set 0 to disable.  ``retries`` defaults to 2 and ``retry_delay`` to 10 s: a retry is
        safe and catches what the delay does not.
    :param deferrable: defer to the triggerer while waiting; default :func:`default_deferrable` (true,
        unless ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`` says otherwise).
    :param prediction_drift: also score each batch with the reference's model version and compare its
        outputs with the outputs stored with that version (needs a ``models:/`` reference; see
        ``DriftCheckOperator``).  A batch whose outputs drifted ends the sensor too (``drift`` is true,
        ``prediction_drift`` in the XCom says which); a version without stored outputs fails the task
        with ``MlopsConfigurationError`` (the sensor has no other place to say it was not checked).
    """

    template_fields: Sequence[str] = ("location", "reference", "consumer", "ledger_path", "columns")
    operator_extra_links = (DriftReportLink(),)
    ui_color = "#fff3e0"

    def __init__(
        self,
        *,
        location: str,
        reference: str | Mapping[str, Any],
        conn_id: str | None = None,
        columns: Sequence[str] | None = None,
        column_methods: Mapping[str, str] | None = None,
        column_thresholds: Mapping[str, float] | None = None,
        drift_share: float = 0.5,
        mlflow_conn_id: str = "mlflow_default",
        consumer: str | None = None,
        ledger_path: str | None = None,
        marker: str | None = "_SUCCESS",
        min_age_seconds: float = 0.0,
        resume_settle_seconds: float = 10.0,
        deferrable: bool | None = None,
        prediction_drift: bool = False,
        **kwargs: Any,
    ) -> None:
        # A retry is safe (the ledger claims a batch only after its check) and restarts the wait at once.
        # These defaults apply only when neither the task nor the DAG's default_args set them.
        default_args = kwargs.get("default_args") or {}
        for key, value in (("retries", 2), ("retry_delay", timedelta(seconds=10))):
            if key not in kwargs and key not in default_args:
                kwargs[key] = value
        where = f"DriftSensor {kwargs.get('task_id')!r}"
        from mlops_provider.operators.drift import check_drift_arguments

        check_drift_arguments(
            where, drift_share=drift_share, column_methods=column_methods, column_thresholds=column_thresholds
        )
        check_number(where, "min_age_seconds", min_age_seconds, low=0)
        check_number(where, "resume_settle_seconds", resume_settle_seconds, low=0)
        check_choice(where, "deferrable", deferrable, (True, False), optional=True)
        check_choice(where, "prediction_drift", prediction_drift, (True, False))
        super().__init__(**kwargs)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        if self.deferrable:  # the trigger lists every poke_interval seconds: 0 would spin the triggerer
            check_number(where, "poke_interval", self.poke_interval, low=0, low_open=True)
        self.location = location
        self.reference = reference
        self.conn_id = conn_id
        self.columns = columns
        self.column_methods = column_methods
        self.column_thresholds = column_thresholds
        self.drift_share = drift_share
        self.mlflow_conn_id = mlflow_conn_id
        self.consumer = consumer
        self.ledger_path = ledger_path
        self.marker = marker
        self.min_age_seconds = min_age_seconds
        self.resume_settle_seconds = resume_settle_seconds
        self.prediction_drift = prediction_drift

    # ------------------------------------------------------------------ shared helpers

    def _consumer(self) -> str:
        return self.consumer or f"{self.dag_id}.{self.task_id}"

    def _trigger(self, not_before: float | None = None):
        from mlops_provider.triggers.batch import BatchArrivalTrigger

        return BatchArrivalTrigger(
            location=self.location,
            consumer=self._consumer(),
            conn_id=self.conn_id,
            ledger_path=self.ledger_path,
            marker=self.marker,
            min_age_seconds=self.min_age_seconds,
            poll_interval=float(self.poke_interval),
            not_before=not_before,
        )

    def _reference(self) -> Any:
        """The reference for ``check_drift``, resolved like ``DriftCheckOperator`` does (shared function)."""
        from mlops_provider.operators.drift import resolve_drift_reference

        self._resolved_reference = resolve_drift_reference(
            self.reference, mlflow_conn_id=self.mlflow_conn_id, columns=list(self.columns) if self.columns else None,
            outputs=self.prediction_drift,
        )
        return self._resolved_reference.reference

    def _validate(self) -> None:
        from mlops_provider.exceptions import MlopsConfigurationError

        if not self.location:
            raise MlopsConfigurationError("DriftSensor: 'location' is empty")
        if not self.reference:
            raise MlopsConfigurationError("DriftSensor: 'reference' is empty")
        check_number(f"DriftSensor {self.task_id!r}", "drift_share", self.drift_share, low=0, high=1, low_open=True)

    def check_batch(self, batch_uri: str, files: Sequence[str]) -> dict[str, Any]:
        """Run the drift check of one batch (in the worker) and return its small summary."""
        from mlops_provider.core.drift import DriftInputError, check_drift
        from mlops_provider.exceptions import DatasetError
        from mlops_provider.operators.drift import verdict_line

        frame = load_batch_frame(batch_uri, files, self.conn_id)
        full = frame
        if self.columns:
            missing = [c for c in self.columns if c not in frame.columns]
            if missing:
                raise DatasetError(f"Batch {batch_uri} lacks column(s) {missing}")
            frame = frame[list(self.columns)]
        try:
            result = check_drift(
                self._reference(),
                frame,
                column_methods=self.column_methods,
                column_thresholds=self.column_thresholds,
                drift_share=float(self.drift_share),
                columns=list(self.columns) if self.columns else None,
            )
        except DriftInputError as err:
            raise DatasetError(f"Drift check of batch {batch_uri} failed: {err}") from None
        if result.missing_columns:
            raise DatasetError(
                f"Batch {batch_uri} lacks reference column(s) {result.missing_columns[:20]} "
                f"(it has {[str(c) for c in frame.columns][:20]}); it is left unclaimed, not reported as "
                "'no drift'. Fix or remove the batch; the next try checks it again"
            )
        self.log.info("Batch %s: %s", batch_uri, verdict_line(result))
        prediction = self._check_outputs(batch_uri, full) if self.prediction_drift else None
        full = result.to_summary()
        drifted = set(full["drifted_columns"])
        out = {
            "dataset_drift": full["dataset_drift"],
            "share_of_drifted_columns": round(full["share_of_drifted_columns"], 6),
            "number_of_columns": full["number_of_columns"],
            "number_of_drifted_columns": full["number_of_drifted_columns"],
            "drifted_columns": full["drifted_columns"][:50],
            "drift_share": full["drift_share"],
            "current_rows": full["current_rows"],
            "reference_rows": full["reference_rows"],
            "missing_columns": full["missing_columns"][:20],
            "not_tested": full["not_tested"],
            "columns": {k: v for k, v in full["columns"].items() if k in drifted and len(drifted) <= 20},
        }
        if prediction is not None:
            out["prediction_drift"] = prediction.to_summary()
        return out

    def _check_outputs(self, batch_uri: str, frame: pd.DataFrame) -> Any:
        """Prediction drift of the batch (the reference's model version scores it); loud when it cannot."""
        from mlops_provider.exceptions import MlopsConfigurationError
        from mlops_provider.operators.drift import check_batch_outputs

        resolved = self._resolved_reference
        if not resolved.model_name:
            raise MlopsConfigurationError(
                f"DriftSensor {self.task_id!r}: prediction_drift needs a models:/ reference; got {resolved.description}"
            )
        if resolved.outputs_missing:
            raise MlopsConfigurationError(f"DriftSensor {self.task_id!r}: prediction drift: {resolved.outputs_missing}")
        prediction, _ = check_batch_outputs(resolved, frame, mlflow_conn_id=self.mlflow_conn_id, batch=batch_uri)
        self.log.info("Batch %s: %s", batch_uri, prediction.verdict_line())
        return prediction

    def _process(self, batch: Mapping[str, Any], context: Context) -> dict[str, Any]:
        """Check one batch, claim it, return the verdict (``drift`` key)."""
        from mlops_provider.core.batches import Batch, BatchLedger, default_ledger_path

        uri = batch["batch_uri"]
        summary = self.check_batch(uri, batch.get("files") or [uri])
        verdict = {
            "batch_uri": uri,
            "batch_id": batch["batch_id"],
            "drift": bool(summary["dataset_drift"]) or bool((summary.get("prediction_drift") or {}).get("drift")),
            "arrival_to_verdict_seconds": round(time.time() - float(batch.get("batch_mtime") or time.time()), 3),
            **summary,
        }
        self._lineage = records.drift(uri, self.mlflow_conn_id, summary, getattr(self, "_resolved_reference", None))
        ledger = BatchLedger(self.ledger_path or default_ledger_path(self.location))
        claim = Batch(uri=uri, batch_id=batch["batch_id"], is_dir=False, size_bytes=0, mtime=0.0)
        ledger.claim(
            self._consumer(),
            claim,
            {"drift": verdict["drift"], "share": summary["share_of_drifted_columns"], "run_id": context["run_id"]},
        )
        return verdict

    # ------------------------------------------------------------------ poke / reschedule

    def _scan(self) -> list[Batch]:
        from mlops_provider.core.batches import LocationError
        from mlops_provider.exceptions import MlopsConfigurationError

        try:
            return self._trigger()._scan()
        except LocationError as err:  # a typo in the landing folder: no retry, never an endless wait
            raise MlopsConfigurationError(f"{self.task_id}: {err}") from err

    def poke(self, context: Context) -> bool | PokeReturnValue:
        self._validate()
        checked: list[str] = []
        for batch in self._scan():
            payload = self._trigger()._payload(batch)
            verdict = self._process(payload, context)
            if verdict["drift"]:
                verdict["checked_without_drift"] = checked[-MAX_CHECKED_IN_XCOM:]
                return PokeReturnValue(is_done=True, xcom_value=verdict)
            checked.append(batch.batch_id)
        return False

    # ------------------------------------------------------------------ deferrable

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self._validate()
        timeout = float(self.timeout) if self.timeout is not None else None
        deadline = time.time() + timeout if timeout else None
        self._defer(deadline, [], cycles=0)

    def _defer(self, deadline: float | None, checked: list[str], cycles: int) -> None:
        from airflow.sdk.exceptions import AirflowSensorTimeout

        remaining = None
        if deadline is not None:
            remaining = deadline - time.time()
            if remaining <= 0:
                raise AirflowSensorTimeout(
                    f"No drifted batch at {self.location} before the timeout "
                    f"({len(checked)} batch(es) checked without drift in this try)"
                )
        settle = float(self.resume_settle_seconds or 0)
        self.defer(
            trigger=self._trigger(not_before=time.time() + settle if settle > 0 else None),
            method_name="execute_complete",
            kwargs={"deadline": deadline, "checked": checked[-MAX_CHECKED_IN_XCOM:], "cycles": cycles},
            timeout=timedelta(seconds=remaining) if remaining is not None else None,
        )

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        deadline: float | None = None,
        checked: list[str] | None = None,
        cycles: int = 0,
    ) -> dict[str, Any]:
        """Resume after the trigger fired: check the batch here, in the worker; defer again when no drift."""
        from mlops_provider.exceptions import MlopsConfigurationError, MlopsProviderError, TriggerEventError

        if not isinstance(event, dict) or event.get("status") not in ("success", "error"):
            raise TriggerEventError(f"DriftSensor got a malformed trigger event: {event!r:.300}")
        if event["status"] == "error":
            message = f"DriftSensor trigger failed: {event.get('message', 'no message')}"
            if event.get("retryable", True):
                raise MlopsProviderError(message)  # a transient listing error: the retry lists again
            raise MlopsConfigurationError(message)
        missing = [k for k in ("batch_uri", "batch_id") if not event.get(k)]
        if missing:
            raise TriggerEventError(f"DriftSensor trigger event lacks {missing}: {event!r:.300}")
        checked = list(checked or [])
        cycles += 1
        verdict = self._process(event, context)
        if verdict["drift"]:
            verdict["checked_without_drift"] = checked[-MAX_CHECKED_IN_XCOM:]
            verdict["defer_cycles"] = cycles
            return verdict
        checked.append(event["batch_id"])
        self._defer(deadline, checked, cycles)
        raise AssertionError("unreachable: defer() raises")  # pragma: no cover
