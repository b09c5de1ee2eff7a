"""
Triggers that wait for complete data batches in a landing location.

* :class:`NewBatchTrigger` (a ``BaseEventTrigger``) runs for ever inside an ``AssetWatcher``: each new
  complete batch becomes one ``TriggerEvent`` and so one Asset event that schedules the consuming DAG.
  It claims every batch in the persistent ledger *before* yielding it, so a batch never fires twice,
  across triggerer restarts too.
* :class:`BatchArrivalTrigger` serves a deferred :class:`~mlops_provider.sensors.drift.DriftSensor`: it
  fires once with the oldest batch the sensor has not claimed yet, and does **not** claim it; the
  sensor claims it in the worker after the drift check, so a task that dies before finishing the
  check sees the batch again on its retry (at-least-once for the sensor).

Both only list files: every blocking call runs in a thread (``asyncio.to_thread``); no batch is read.
See :mod:`mlops_provider.core.batches` for the completion convention and the ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from mlops_provider._args import check_number
from mlops_provider.core.batches import (
    DEFAULT_MARKER,
    Batch,
    BatchLedger,
    check_location,
    default_ledger_path,
    discover_batches,
)
from mlops_provider.exceptions import MlopsConfigurationError

#: Errors that mean the configuration is wrong (retrying will not help); ``LocationError`` is a ValueError.
_PERMANENT_ERRORS = (PermissionError, NotADirectoryError, ValueError)


def _is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


class _BatchScanner:
    """Shared state of both triggers: where to look, the ledger, and the file system (built lazily)."""

    def __init__(
        self,
        *,
        location: str,
        consumer: str,
        conn_id: str | None = None,
        ledger_path: str | None = None,
        marker: str | None = DEFAULT_MARKER,
        min_age_seconds: float = 0.0,
        poll_interval: float = 10.0,
    ) -> None:
        where = type(self).__name__
        for name, value in (("location", location), ("consumer", consumer)):
            if not isinstance(value, str) or not value.strip():
                raise MlopsConfigurationError(f"{where}: {name} must be a non-empty string; got {value!r}")
        check_number(where, "min_age_seconds", min_age_seconds, low=0)
        check_number(where, "poll_interval", poll_interval, low=0, low_open=True)
        super().__init__()  # the trigger base class, next in the MRO
        self.location = location
        self.consumer = consumer
        self.conn_id = conn_id
        self.ledger_path = ledger_path
        self.marker = marker
        self.min_age_seconds = min_age_seconds
        self.poll_interval = poll_interval

    def _common_kwargs(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "consumer": self.consumer,
            "conn_id": self.conn_id,
            "ledger_path": self.ledger_path,
            "marker": self.marker,
            "min_age_seconds": self.min_age_seconds,
            "poll_interval": self.poll_interval,
        }

    @property
    def ledger(self) -> BatchLedger:
        return BatchLedger(self.ledger_path or default_ledger_path(self.location))

    def _fs(self) -> Any | None:
        if _is_local(self.location):
            return None
        fs = getattr(self, "_fs_cache", None)
        if fs is None:
            scheme = self.location.split("://", 1)[0]
            try:
                if self.conn_id:
                    from airflow.sdk import ObjectStoragePath

                    fs = ObjectStoragePath(self.location.split("*", 1)[0], conn_id=self.conn_id).fs
                else:  # no connection: fsspec's own configuration (env credentials, instance role, memory://)
                    import fsspec

                    fs = fsspec.filesystem(scheme)
            except ImportError as err:  # a permanent error: a ValueError, so the task is not retried
                raise ValueError(
                    f"no file system for {scheme}:// is installed ({err}); install its fsspec package "
                    "(s3fs for s3://, gcsfs for gs://, adlfs for abfs://) where the triggerer and workers run"
                ) from err
            self._fs_cache = fs
        return fs

    def _scan(self) -> list[Batch]:
        """Blocking: complete batches not yet claimed by the consumer (run in a thread)."""
        if _is_local(self.location):
            check_location(self.location)  # a missing or odd location fails visibly, never waits silently
        location = self.location.removeprefix("file://")
        batches = discover_batches(
            location, marker=self.marker, min_age_seconds=self.min_age_seconds, fs=self._fs()
        )
        return self.ledger.unseen(self.consumer, batches)

    def _payload(self, batch: Batch) -> dict[str, Any]:
        data = batch.to_dict()
        return {
            "status": "success",
            "message": f"new batch {batch.uri} ({data['n_files']} file(s), {batch.size_bytes} bytes)",
            "batch_uri": batch.uri,
            "batch_id": batch.batch_id,
            "location": self.location,
            "consumer": self.consumer,
            "size_bytes": batch.size_bytes,
            "n_files": data["n_files"],
            "files": data["files"],
            "batch_mtime": batch.mtime,
            "detected_at": time.time(),
        }


class NewBatchTrigger(_BatchScanner, BaseEventTrigger):
    """
    Fire one event per new complete batch in ``location``; for ``AssetWatcher``.

    .. code-block:: python

        landing = Asset(
            "file:///data/landing",
            watchers=[AssetWatcher(name="landing", trigger=NewBatchTrigger(location="/data/landing/*.parquet",
                                                                           consumer="monitoring"))],
        )

    Event payload (one shape): ``{"status": "success", "message", "batch_uri", "batch_id", "location",
    "consumer", "size_bytes", "n_files", "files" (first 50), "batch_mtime", "detected_at"}``; it becomes
    the Asset event's ``extra["payload"]``.

    A local ``location`` is checked at every listing (:func:`~mlops_provider.core.batches.check_location`):
    a glob whose folder is missing, a path whose folder is missing, or a path that is neither a file nor a
    folder raises ``LocationError`` in the triggerer (its log shows it at every restart of the watcher),
    instead of waiting for ever on a typo.  A location naming one file (``/repo/proposed/model.yaml``)
    watches that file: each new content is one batch; it may be absent until first written.

    :param location: a folder, a glob or one file (local path), or an object-store URL with ``conn_id``.
    :param consumer: name of this consumer in the ledger; each consumer sees each batch once.
    :param conn_id: Airflow connection of the object store (``ObjectStoragePath``); unused for local paths.
    :param ledger_path: SQLite ledger file; default ``<landing folder>/.mlops_batch_ledger.sqlite3``
        (required for object stores).
    :param marker: completion marker required in directory batches (``None`` to accept any directory).
    :param min_age_seconds: ignore matches modified less than this long ago.
    :param poll_interval: seconds between two listings.
    """

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("mlops_provider.triggers.batch.NewBatchTrigger", self._common_kwargs())

    def _claim(self, batch: Batch) -> bool:
        """Blocking: claim one batch in the ledger (atomic; ``False`` when already taken)."""
        return self.ledger.claim(self.consumer, batch, {"by": "NewBatchTrigger"})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self.log.info("Watching %s for new batches (consumer %r)", self.location, self.consumer)
        while True:
            try:
                new = await asyncio.to_thread(self._scan)
            except _PERMANENT_ERRORS as err:
                self.log.error("Cannot watch %s (consumer %r): %s", self.location, self.consumer, err)
                raise  # misconfiguration: let the trigger fail visibly
            except OSError as err:  # transient (NFS hiccup, throttling): try again next poll
                self.log.warning("Listing %s failed, retrying in %ss: %s", self.location, self.poll_interval, err)
                new = []
            for batch in new:
                # Claim one batch right before yielding it: a restart in the middle of a burst neither
                # re-fires the batches already yielded nor loses the ones not yielded yet.
                if not await asyncio.to_thread(self._claim, batch):
                    continue  # another triggerer (HA pair, old instance) took it
                self.log.info("New batch %s (id %s)", batch.uri, batch.batch_id)
                yield TriggerEvent(self._payload(batch))
            await asyncio.sleep(self.poll_interval)


class BatchArrivalTrigger(_BatchScanner, BaseTrigger):
    """
    Fire once with the oldest complete batch that ``consumer`` has not claimed; for deferred sensors.

    The event has the same shape as :class:`NewBatchTrigger`'s.  On a listing error it fires
    ``{"status": "error", "message": ..., "retryable": bool}`` instead, which the sensor turns into a task
    failure (retried only when ``retryable``: a transient listing error, not a misconfiguration).
    Parameters as :class:`NewBatchTrigger`, plus:

    :param not_before: epoch seconds before which no event is fired (the batch may already be there).
        The sensor sets it a few seconds after its deferral so the scheduler has processed the
        executor's "success" of the deferring worker before the task resumes: Airflow 3.3 fails a
        resumed task when that stale event arrives after the resumed attempt is already running
        (apache/airflow#72716, #71580).
    """

    def __init__(self, *, not_before: float | None = None, **scan_kwargs: Any) -> None:
        check_number("BatchArrivalTrigger", "not_before", not_before, optional=True)
        super().__init__(**scan_kwargs)
        self.not_before = not_before

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "mlops_provider.triggers.batch.BatchArrivalTrigger",
            {**self._common_kwargs(), "not_before": self.not_before},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        transient_failures = 0
        if self.not_before is not None:
            wait = self.not_before - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        while True:
            try:
                new = await asyncio.to_thread(self._scan)
                transient_failures = 0
            except _PERMANENT_ERRORS as err:
                yield TriggerEvent(
                    {"status": "error", "message": f"cannot list {self.location}: {err!r}", "retryable": False}
                )
                return
            except OSError as err:
                transient_failures += 1
                if transient_failures >= 5:
                    yield TriggerEvent(
                        {"status": "error", "message": f"listing {self.location} failed 5 times: {err!r}",
                         "retryable": True}
                    )
                    return
                self.log.warning("Listing %s failed, retrying: %s", self.location, err)
                new = []
            if new:
                yield TriggerEvent(self._payload(new[0]))
                return
            await asyncio.sleep(self.poll_interval)
