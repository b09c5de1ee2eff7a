"""OpenLineage events from every operator of the provider (``pip install airflow-provider-mlops[openlineage]``).

Airflow's OpenLineage provider (``apache-airflow-providers-openlineage``) asks each task for its lineage by
calling ``get_openlineage_facets_on_start`` / ``_on_complete`` / ``_on_failure`` on the operator.
:class:`LineageMixin` implements them for every operator here.  ``execute()`` stores a small, JSON-safe
*lineage record* on ``self._lineage`` (built by the functions of :mod:`mlops_provider.lineage.records`);
the methods turn it into OpenLineage datasets and facets (:mod:`mlops_provider.lineage.events`).

Nothing here imports OpenLineage, pandas or MLflow: without the extra the methods return ``None``
(the OpenLineage provider is not installed, so nobody calls them anyway), and DAG files parse as fast
as before.  See ``docs/lineage.md``.
"""

from __future__ import annotations

from typing import Any

#: The ``_producer`` of the provider's custom facets (OpenLineage: a URI naming the producing code).
PRODUCER = "https://github.com/airflow-provider-mlops/airflow-provider-mlops"
#: Where the JSON schemas of the custom facets are published; the same files ship in this package
#: (``mlops_provider/lineage/schemas/``, see :func:`schema_path`).
SCHEMA_BASE_URL = (
    "https://raw.githubusercontent.com/airflow-provider-mlops/airflow-provider-mlops/main/"
    "provider/mlops_provider/lineage/schemas"
)


def schema_path(url: str) -> str:
    """The packaged schema file of a custom facet's ``_schemaURL`` (the part before ``#``)."""
    import os

    name = url.split("#", 1)[0].rsplit("/", 1)[-1]
    return os.path.join(os.path.dirname(__file__), "schemas", name)


class LineageMixin:
    """
    ``get_openlineage_facets_on_*`` for an operator whose ``execute()`` sets ``self._lineage``.

    The record is set before the operator decides to fail (a failed validation, drift, a rejected
    gate), so the FAIL event carries the same datasets and facets as a COMPLETE one; the OpenLineage
    provider adds the ``errorMessage`` run facet.  Before ``execute()`` nothing is known, so the START
    event names the job only.
    """

    _lineage: dict[str, Any] | None = None

    def get_openlineage_facets_on_start(self) -> Any:
        return _operator_lineage(self)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        return _operator_lineage(self)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return _operator_lineage(self)


def _operator_lineage(operator: Any) -> Any:
    record = getattr(operator, "_lineage", None)
    if not record:
        return None
    try:
        from mlops_provider.lineage.events import operator_lineage
    except ImportError:  # the [openlineage] extra is not installed
        return None
    return operator_lineage(record)
