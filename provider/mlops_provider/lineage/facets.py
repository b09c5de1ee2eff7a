"""The provider's custom OpenLineage facets (imports OpenLineage: load only when it is installed).

Each follows OpenLineage's rules for custom facets: a key with the producer's prefix (``mlops_``),
the standard ``_producer`` and ``_schemaURL`` fields, and a JSON schema that extends the
spec's ``RunFacet`` / ``DatasetFacet`` (shipped in ``mlops_provider/lineage/schemas/``).
"""

from __future__ import annotations

from typing import Any

import attr
from openlineage.client.generated.base import DatasetFacet, RunFacet

from mlops_provider.lineage import SCHEMA_BASE_URL


def _url(name: str) -> str:
    return f"{SCHEMA_BASE_URL}/{name}.json#/$defs/{name}"


@attr.define
class MlopsModelDatasetFacet(DatasetFacet):
    """An MLflow model as a dataset: its URI, the run that logged it, the registry name and version."""

    modelUri: str  # noqa: N815
    runId: str | None = attr.field(default=None)  # noqa: N815
    experimentId: str | None = attr.field(default=None)  # noqa: N815
    modelId: str | None = attr.field(default=None)  # noqa: N815
    registeredModelName: str | None = attr.field(default=None)  # noqa: N815
    version: str | None = attr.field(default=None)
    sourceModelUri: str | None = attr.field(default=None)  # noqa: N815
    alias: str | None = attr.field(default=None)
    role: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return _url("MlopsModelDatasetFacet")


@attr.define
class MlopsTrainingRunFacet(RunFacet):
    """What was trained: the estimator, its hyperparameters and the evaluation metrics."""

    estimator: str
    problemType: str | None = attr.field(default=None)  # noqa: N815
    hyperparameters: dict[str, Any] = attr.field(factory=dict)
    metrics: dict[str, float] = attr.field(factory=dict)
    runId: str | None = attr.field(default=None)  # noqa: N815
    experimentId: str | None = attr.field(default=None)  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return _url("MlopsTrainingRunFacet")


@attr.define
class MlopsAliasMoveRunFacet(RunFacet):
    """A registry alias moved: which, from which version to which, and why."""

    action: str
    registeredModelName: str  # noqa: N815
    alias: str
    toVersion: str  # noqa: N815
    fromVersion: str | None = attr.field(default=None)  # noqa: N815
    changed: bool | None = attr.field(default=None)
    reason: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return _url("MlopsAliasMoveRunFacet")


@attr.define
class MlopsDriftRunFacet(RunFacet):
    """The drift verdict of a batch against its reference, column by column."""

    datasetDrift: bool  # noqa: N815
    columns: list[dict[str, Any]] = attr.field(factory=list)
    driftShare: float | None = attr.field(default=None)  # noqa: N815
    shareOfDriftedColumns: float | None = attr.field(default=None)  # noqa: N815
    numberOfColumns: int | None = attr.field(default=None)  # noqa: N815
    numberOfDriftedColumns: int | None = attr.field(default=None)  # noqa: N815
    reference: str | None = attr.field(default=None)
    missingColumns: list[str] = attr.field(factory=list)  # noqa: N815
    skippedColumns: list[str] = attr.field(factory=list)  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return _url("MlopsDriftRunFacet")


@attr.define
class MlopsGateDecisionRunFacet(RunFacet):
    """A promotion gate's decision and each of its checks."""

    passed: bool
    verdict: str
    basis: str
    registeredModelName: str  # noqa: N815
    challengerVersion: str  # noqa: N815
    championVersion: str | None = attr.field(default=None)  # noqa: N815
    numberOfChecks: int | None = attr.field(default=None)  # noqa: N815
    numberOfFailedChecks: int | None = attr.field(default=None)  # noqa: N815
    checks: list[dict[str, Any]] = attr.field(factory=list)
    notes: list[str] = attr.field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return _url("MlopsGateDecisionRunFacet")


#: facet key -> class; the keys are what appears in the events.
CUSTOM_FACETS: dict[str, type] = {
    "mlops_model": MlopsModelDatasetFacet,
    "mlops_training": MlopsTrainingRunFacet,
    "mlops_aliasMove": MlopsAliasMoveRunFacet,
    "mlops_drift": MlopsDriftRunFacet,
    "mlops_gateDecision": MlopsGateDecisionRunFacet,
}
