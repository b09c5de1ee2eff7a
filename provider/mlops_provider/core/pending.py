"""Which landed files a run must check: its triggering files plus every file claimed and not taken yet.

Pure (no Airflow); the ledger is :class:`mlops_provider.core.batches.BatchLedger` (SQLite).

Airflow merges arrivals that come close together into one run, and 3.3.2 can leave an event of a burst
unscheduled (docs/drift-fires-retraining.md): the ledger, not the event list, decides what a run checks.
"""

from __future__ import annotations

import os
from typing import Any


def _local(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def pending_batches(ledger_path: str, consumer: str, triggered: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """
    Take every batch of a run: the run's triggering batches, plus every batch the watcher claimed
    (``consumer`` in the ledger) that no run has taken yet, oldest first, each once.

    A batch is recorded as taken (``<consumer>.taken``) by the run that checks it.  Returns
    ``[{"batch_uri", "name", "batch_id", "step"}]``; a file re-landed under the same name appears once (its
    latest content).  ``step`` is the batch's ordinal (1, 2, ...) in the ``<consumer>.taken`` history, the
    order batches were taken in: the MLflow step of its quality figures.  The ledger never changes a claim,
    so a rerun finds the same step.
    """
    from mlops_provider.core.batches import Batch, BatchLedger

    ledger = BatchLedger(ledger_path)
    taken = ledger.seen_ids(f"{consumer}.taken")
    candidates: dict[str, str] = {}  # batch_id -> uri, oldest first
    for row in ledger.history(consumer):
        candidates.setdefault(row["batch_id"], row["uri"])
    for payload in triggered:
        candidates.setdefault(payload.get("batch_id") or payload["batch_uri"], payload["batch_uri"])
    batches: list[dict[str, Any]] = []
    for batch_id, uri in candidates.items():
        if batch_id in taken:
            continue
        ledger.claim(f"{consumer}.taken", Batch(uri=uri, batch_id=batch_id, is_dir=False, size_bytes=0, mtime=0.0),
                     {"run_id": run_id})
        path = _local(uri)
        batches = [b for b in batches if b["batch_uri"] != path]
        batches.append({"batch_uri": path, "name": os.path.basename(path), "batch_id": batch_id})
    if batches:
        order = {row["batch_id"]: i for i, row in enumerate(ledger.history(f"{consumer}.taken"), start=1)}
        for b in batches:
            b["step"] = order.get(b["batch_id"])
    return batches
