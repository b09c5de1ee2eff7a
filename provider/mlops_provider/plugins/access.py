"""Who may see what in the MLOps view: Airflow's auth manager decides, per DAG.

Plugin endpoints are not protected by Airflow by default, so every route of the plugin depends on
:func:`current_user` (401 without a valid Airflow token or session cookie) and checks DAG read access
before it shows anything (403 otherwise):

* a **model** is visible to a user who may read every DAG recorded on its versions (the ``mlops.dag_id``
  or ``airflow.dag_id`` tags of their training runs);
* a **run** (and its artifacts and reports) to a user who may read the DAG that wrote it;
* anything that names no DAG (a model registered outside Airflow, a run without lineage tags) only to
  a user who may read all DAGs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import HTTPException, Request, status

#: The tags that name the Airflow DAG (and run) a run of MLflow was written by; operators of the provider
#: write one or the other.
DAG_TAGS = ("airflow.dag_id", "mlops.dag_id")
RUN_TAGS = ("airflow.run_id", "mlops.run_id")
TASK_TAGS = ("airflow.task_id", "mlops.task_id")


def first_tag(tags: dict[str, str], keys: Iterable[str]) -> str | None:
    for key in keys:
        value = tags.get(key)
        if value:
            return value
    return None


async def current_user(request: Request) -> Any:
    """The user Airflow's auth manager authenticated (bearer token or the UI's session cookie), or 401."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def can_read_dags(user: Any, dag_ids: Iterable[str]) -> bool:
    """Whether ``user`` may read every DAG in ``dag_ids``; with no DAG, whether they may read all DAGs."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    manager = _auth_manager()
    dag_ids = sorted(set(dag_ids))
    if not dag_ids:
        return bool(manager.is_authorized_dag(method="GET", user=user))
    return all(manager.is_authorized_dag(method="GET", details=DagDetails(id=d), user=user) for d in dag_ids)


def require_dags(user: Any, dag_ids: Iterable[str], what: str) -> None:
    """403 naming ``what`` unless :func:`can_read_dags`."""
    dag_ids = sorted(set(dag_ids))
    if not can_read_dags(user, dag_ids):
        scope = f"DAG(s) {', '.join(dag_ids)}" if dag_ids else "all DAGs"
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Reading {what} needs read access to {scope}")


def run_dags(tags: dict[str, str]) -> list[str]:
    dag = first_tag(tags, DAG_TAGS)
    return [dag] if dag else []
