"""Extra links ("MLflow run", "Validation report", ...) shown on task instances in the Airflow UI.

In Airflow 3 the worker evaluates ``get_link`` right after ``execute()`` (also when it failed) and
stores the URL in XCom for the UI.  Operators record the URLs they produce with
:func:`record_link`; the links read them back from the operator instance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

_LINKS_ATTR = "_mlops_link_urls"


def record_link(operator: Any, name: str, url: str | None) -> None:
    """Remember ``url`` as the target of the extra link called ``name`` on ``operator``."""
    if not url:
        return
    urls = getattr(operator, _LINKS_ATTR, None)
    if urls is None:
        urls = {}
        setattr(operator, _LINKS_ATTR, urls)
    urls[name] = url


class _RecordedLink(BaseOperatorLink):
    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return (getattr(operator, _LINKS_ATTR, None) or {}).get(self.name, "")


class MlflowRunLink(_RecordedLink):
    """Link to the MLflow run the task logged to."""

    name = "MLflow run"


class MlflowModelVersionLink(_RecordedLink):
    """Link to the registered model version the task created or changed."""

    name = "MLflow model version"


class ValidationReportLink(_RecordedLink):
    """Link to the HTML data validation report."""

    name = "Validation report"


class DriftReportLink(_RecordedLink):
    """Link to the drift report."""

    name = "Drift report"


class GateReportLink(_RecordedLink):
    """Link to the promotion gate report."""

    name = "Gate report"
