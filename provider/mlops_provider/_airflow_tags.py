"""Where a run of MLflow or an asset event came from in Airflow: one shape for every operator.

Training runs and gate report runs carry the same lineage tags (:func:`lineage_tags`); drift and decay
asset events carry the same ``producer`` (:func:`producer`).  The MLOps view reads both to link back to
the Airflow task instance.
"""

from __future__ import annotations

from typing import Any

#: The lineage tags of training and gate runs (:func:`lineage_tags`).
LINEAGE_TAGS = ("mlops.dag_id", "mlops.run_id", "mlops.task_id", "mlops.map_index", "mlops.try_number")


def lineage_tags(context: Any, task_id: str) -> dict[str, str]:
    """``mlops.dag_id``, ``mlops.run_id``, ``mlops.task_id``, ``mlops.map_index``, ``mlops.try_number``."""
    context = context or {}
    ti = context.get("ti")
    dag = context.get("dag")
    return {
        "mlops.dag_id": str(getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None) or ""),
        "mlops.run_id": str(context.get("run_id") or getattr(ti, "run_id", None) or ""),
        "mlops.task_id": task_id,
        "mlops.map_index": str(getattr(ti, "map_index", -1)),
        "mlops.try_number": str(getattr(ti, "try_number", "") or ""),
    }


def producer(context: Any, task_id: str) -> dict[str, Any]:
    """
    The task instance that emitted an asset event: ``dag_id``, ``run_id``, ``task_id``, ``map_index``.

    Put in the event's extra because the asset pages of Airflow 3.3 list as "Producing Tasks" only tasks
    that declare the asset as an outlet, not the tasks that emit it through an asset alias (docs/ui.md).
    """
    context = context or {}
    ti = context.get("ti")
    map_index = getattr(ti, "map_index", -1)
    return {
        "dag_id": getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None),
        "run_id": context.get("run_id") or getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None) or task_id,
        "map_index": map_index if isinstance(map_index, int) else -1,
    }
