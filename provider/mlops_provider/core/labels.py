"""Where a label file stands against the batch it labels: scored, quarantined, not scored yet, or unknown.

Pure functions (no Airflow, nothing heavy).  Labels land later than their batch, in a file of the same
name (``<labels>/day-07.parquet`` labels ``<batches>/day-07.parquet``).  A label file can be matched with
the predictions of its batch only once the batch was scored; :func:`label_status` tells the cases apart,
so that labels that land *before* their batch was scored wait for the scoring instead of being taken for
a quarantined batch.  The folders are URIs read through a *storage* (:mod:`mlops_provider.core.storage`):
local by default, an object store when the caller passes one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from mlops_provider.core.storage import Storage, join, local_storage, uri_under

#: The batch was scored: its predictions file exists; the decay check can run.
SCORED = "scored"
#: The batch failed validation and was quarantined: it has no predictions, by design.
QUARANTINED = "quarantined"
#: The batch landed but is neither scored nor quarantined yet: wait.
PENDING = "pending"
#: No batch of that name landed (yet): wait, then fail.
NO_BATCH = "no_batch"
LABEL_STATES = (SCORED, QUARANTINED, PENDING, NO_BATCH)


@dataclass(frozen=True)
class LabelStatus:
    """The state of one label file, with the files that decided it."""

    state: str
    name: str
    predictions: str
    quarantined_at: str | None = None

    @property
    def message(self) -> str:
        if self.state == SCORED:
            return f"{self.name}: scored, predictions at {self.predictions}"
        if self.state == QUARANTINED:
            return f"{self.name} was quarantined (copy at {self.quarantined_at}): never scored, no decay check"
        if self.state == PENDING:
            return f"{self.name}: the batch landed but is not scored yet (labels landed before scoring)"
        return f"{self.name}: no batch of that name has landed (labels landed before their batch)"


def quarantined_copy(quarantine_dir: str | os.PathLike[str], name: str, storage: Storage | None = None) -> str | None:
    """
    The quarantined copy of batch ``name``, or ``None``: ``<quarantine>/**/source/<name>`` (a local batch is
    copied byte for byte), else the ``batch.parquet`` of a quarantine folder whose ``result.json`` names a
    dataset of that name (a batch read from an object store has no ``source/`` copy).
    """
    root = (storage or local_storage)(os.fspath(quarantine_dir))
    if not root.is_dir():
        return None
    found = sorted((p for p in root.rglob(name) if p.parent.name == "source"), key=str)
    if found:
        return uri_under(quarantine_dir, root, found[-1])
    for result in sorted(root.rglob("result.json"), key=str, reverse=True):
        try:
            with result.open("r", encoding="utf-8") as fh:
                dataset = str((json.load(fh).get("details") or {}).get("dataset") or "")
        except (OSError, ValueError):
            continue
        if dataset.rstrip("/").rsplit("/", 1)[-1] == name:
            return uri_under(quarantine_dir, root, result.parent / "batch.parquet")
    return None


def label_status(
    name: str,
    *,
    predictions_dir: str | os.PathLike[str],
    quarantine_dir: str | os.PathLike[str],
    batches_dir: str | os.PathLike[str],
    storage: Storage | None = None,
) -> LabelStatus:
    """
    Where the label file ``name`` stands: :data:`SCORED`, :data:`QUARANTINED`, :data:`PENDING` or :data:`NO_BATCH`.

    Scored wins over quarantined (a batch re-landed and accepted after an earlier quarantine is scored).

    :param storage: URI -> path object (default: local paths; ``PipelineSpec.storage`` on an object store).
    """
    storage = storage or local_storage
    predictions = join(predictions_dir, name)
    if storage(predictions).exists():
        return LabelStatus(SCORED, name, predictions)
    copy = quarantined_copy(quarantine_dir, name, storage)
    if copy is not None:
        return LabelStatus(QUARANTINED, name, predictions, quarantined_at=copy)
    if storage(join(batches_dir, name)).exists():
        return LabelStatus(PENDING, name, predictions)
    return LabelStatus(NO_BATCH, name, predictions)
