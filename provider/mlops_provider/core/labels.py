"""Where a label file stands against the batch it labels: scored, quarantined, not scored yet, or unknown.

Pure functions (no Airflow, nothing heavy).  Labels land later than their batch, in a file of the same
name (``<labels>/day-07.parquet`` labels ``<batches>/day-07.parquet``).  A label file can be matched with
the predictions of its batch only once the batch was scored; :func:`label_status` tells the cases apart,
so that labels that land *before* their batch was scored wait for the scoring instead of being taken for
a quarantined batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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


def quarantined_copy(quarantine_dir: str | os.PathLike[str], name: str) -> str | None:
    """The quarantined copy of batch ``name`` (``<quarantine>/**/source/<name>``), or ``None``."""
    root = Path(quarantine_dir)
    if not root.is_dir():
        return None
    found = sorted(root.rglob(f"source/{name}"))
    return str(found[-1]) if found else None


def label_status(
    name: str,
    *,
    predictions_dir: str | os.PathLike[str],
    quarantine_dir: str | os.PathLike[str],
    batches_dir: str | os.PathLike[str],
) -> LabelStatus:
    """
    Where the label file ``name`` stands: :data:`SCORED`, :data:`QUARANTINED`, :data:`PENDING` or :data:`NO_BATCH`.

    Scored wins over quarantined (a batch re-landed and accepted after an earlier quarantine is scored).
    """
    predictions = Path(predictions_dir) / name
    if predictions.exists():
        return LabelStatus(SCORED, name, str(predictions))
    copy = quarantined_copy(quarantine_dir, name)
    if copy is not None:
        return LabelStatus(QUARANTINED, name, str(predictions), quarantined_at=copy)
    if (Path(batches_dir) / name).exists():
        return LabelStatus(PENDING, name, str(predictions))
    return LabelStatus(NO_BATCH, name, str(predictions))
