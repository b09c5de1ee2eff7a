"""The training window of a retraining: which labelled data a new model is trained and evaluated on.

Pure functions (no Airflow); pandas is imported inside :func:`assemble_training_window`.  Every folder is
a URI read through a *storage* (:mod:`mlops_provider.core.storage`): a local folder by default, an object
store (``s3://...`` with the root's connection) when the caller passes ``PipelineSpec.storage``.

A batch is *accepted* when it passed validation and was scored: its predictions file exists (a
quarantined batch never gets one).  Its labels land later, in a file of the same name.  The window is,
by :data:`WINDOW_MODES`:

* ``latest``: the latest ``n`` accepted batches (the base training set while no batch was accepted);
* ``base_plus_latest``: the base training set plus the latest ``n`` accepted batches;
* ``all``: the base training set plus every accepted batch.

A window whose batches do not all have their labels yet is not ready (:func:`assemble_training_window`
returns ``None``): the caller waits, and says for which batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlops_provider.core.storage import Storage, join, local_storage, read_parquet, write_parquet

#: Latest N accepted batches only (the base set drops out once a batch was accepted).
LATEST = "latest"
#: The base training set plus the latest N accepted batches.
BASE_PLUS_LATEST = "base_plus_latest"
#: The base training set plus every accepted batch.
ALL = "all"
WINDOW_MODES = (LATEST, BASE_PLUS_LATEST, ALL)
#: The name of the base training set in a window's ``source`` list.
BASE = "base"


class TrainingWindowError(ValueError):
    """A window cannot be assembled (bad mode or size, unreadable data, a batch without its id column)."""


@dataclass(frozen=True)
class WindowPlan:
    """What a window is made of: whether the base set is in, and the accepted batches (oldest first)."""

    base: bool
    batches: tuple[str, ...]

    @property
    def source(self) -> list[str]:
        return ([BASE] if self.base else []) + list(self.batches)


def accepted_batches(predictions_dir: str | os.PathLike[str], storage: Storage | None = None) -> list[str]:
    """The file names of the accepted (scored) batches, sorted by name: ``predictions_dir/*.parquet``."""
    folder = (storage or local_storage)(os.fspath(predictions_dir))
    return sorted(p.name for p in folder.glob("*.parquet")) if folder.is_dir() else []


def plan_window(accepted: Sequence[str], mode: str = LATEST, n: int = 3) -> WindowPlan:
    """
    Choose the window from the accepted batch names (sorted oldest first).

    :param mode: one of :data:`WINDOW_MODES`.
    :param n: the number of latest batches for ``latest`` and ``base_plus_latest`` (>= 1).
    :raises TrainingWindowError: for an unknown mode or ``n < 1``.
    """
    if mode not in WINDOW_MODES:
        raise TrainingWindowError(f"window mode must be one of {', '.join(WINDOW_MODES)}; got {mode!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TrainingWindowError(f"window size n must be an integer >= 1; got {n!r}")
    accepted = list(accepted)
    if mode == ALL:
        return WindowPlan(base=True, batches=tuple(accepted))
    latest = tuple(accepted[-n:])
    if mode == BASE_PLUS_LATEST:
        return WindowPlan(base=True, batches=latest)
    return WindowPlan(base=not latest, batches=latest)  # no accepted batch yet: the base set


def missing_labels(plan: WindowPlan, labels_dir: str | os.PathLike[str], storage: Storage | None = None) -> list[str]:
    """The batches of the window whose label file has not landed yet."""
    folder = (storage or local_storage)(os.fspath(labels_dir))
    return [name for name in plan.batches if not (folder / name).exists()]


def assemble_training_window(
    *,
    training_path: str,
    predictions_dir: str,
    batches_dir: str,
    labels_dir: str,
    output_dir: str,
    id_column: str,
    target: str,
    mode: str = LATEST,
    n: int = 3,
    eval_fraction: float = 0.2,
    seed: int = 42,
    storage: Storage | None = None,
) -> dict[str, Any] | None:
    """
    Write the training window to ``output_dir``: ``train.parquet`` and ``eval.parquet`` (seeded shuffle).

    Each accepted batch is joined with its labels on ``id_column``; the base training set already holds
    ``target``.  ``score_input`` is the latest batch of the window (what the new champion scores first),
    or, for a window of the base set only, the evaluation split without the target.

    :param storage: URI -> path object for every folder and file (default: local paths); the returned
        paths are URIs under ``output_dir`` / ``batches_dir`` as given (``s3://...`` on a store).

    :returns: ``{"train", "eval", "score_input", "source", "n_rows", "rows_by_source", "mode"}`` (small,
        JSON-safe), or ``None`` while a batch of the window waits for its labels.
    :raises TrainingWindowError: bad mode or size, a batch or label file without ``id_column``, labels
        without ``target``, or an empty window.
    """
    import pandas as pd

    if not 0 < eval_fraction < 1:
        raise TrainingWindowError(f"eval_fraction must be between 0 and 1; got {eval_fraction!r}")
    storage = storage or local_storage
    plan = plan_window(accepted_batches(predictions_dir, storage), mode, n)
    if missing_labels(plan, labels_dir, storage):
        return None
    frames: list[pd.DataFrame] = []
    rows: dict[str, int] = {}
    if plan.base:
        base = read_parquet(storage(training_path))
        if target not in base.columns:
            raise TrainingWindowError(f"the base training set {training_path} has no target column {target!r}")
        frames.append(base)
        rows[BASE] = len(base)
    for name in plan.batches:
        features = read_parquet(storage(join(batches_dir, name)))
        labels = read_parquet(storage(join(labels_dir, name)))
        for what, frame in (("batch", features), ("label file", labels)):
            if id_column not in frame.columns:
                raise TrainingWindowError(f"{what} {name} has no id column {id_column!r}: cannot join labels")
        if target not in labels.columns:
            raise TrainingWindowError(f"label file {name} has no target column {target!r}")
        joined = features.drop(columns=[target], errors="ignore").merge(
            labels[[id_column, target]], on=id_column, how="inner"
        )
        frames.append(joined)
        rows[name] = len(joined)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(frame) < 2:
        raise TrainingWindowError(f"the training window {plan.source} holds {len(frame)} labelled row(s)")
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n_eval = max(1, int(len(frame) * eval_fraction))
    storage(output_dir).mkdir(parents=True, exist_ok=True)
    write_parquet(frame.iloc[n_eval:], storage(join(output_dir, "train.parquet")))
    write_parquet(frame.iloc[:n_eval], storage(join(output_dir, "eval.parquet")))
    if plan.batches:
        score_input = join(batches_dir, plan.batches[-1])
    else:
        score_input = join(output_dir, "score.parquet")
        write_parquet(frame.iloc[:n_eval].drop(columns=[target]), storage(score_input))
    return {
        "train": join(output_dir, "train.parquet"),
        "eval": join(output_dir, "eval.parquet"),
        "score_input": score_input,
        "source": plan.source,
        "n_rows": len(frame),
        "rows_by_source": rows,
        "mode": mode,
    }
