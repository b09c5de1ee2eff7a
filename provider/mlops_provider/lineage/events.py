"""Turn a lineage record (:mod:`mlops_provider.lineage.records`) into OpenLineage objects.

Imported only when the OpenLineage provider calls an operator's ``get_openlineage_facets_on_*``
method, so OpenLineage is installed here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.data_quality_assertions_dataset import (
    Assertion,
    DataQualityAssertionsDatasetFacet,
)
from openlineage.client.generated.data_quality_metrics_input_dataset import (
    ColumnMetrics,
    DataQualityMetricsInputDatasetFacet,
)
from openlineage.client.generated.output_statistics_output_dataset import OutputStatisticsOutputDatasetFacet
from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields

from mlops_provider.lineage import PRODUCER, naming
from mlops_provider.lineage.facets import CUSTOM_FACETS

log = logging.getLogger(__name__)


def operator_lineage(record: Mapping[str, Any]) -> OperatorLineage:
    return OperatorLineage(
        inputs=[d for item in record.get("inputs", ()) for d in _datasets(item, InputDataset)],
        outputs=[d for item in record.get("outputs", ()) for d in _datasets(item, OutputDataset)],
        run_facets={k: _facet(k, v) for k, v in (record.get("run") or {}).items()},
    )


def _datasets(item: Mapping[str, Any], cls: type) -> list[Any]:
    facets = {k: _facet(k, v) for k, v in (item.get("facets") or {}).items()}
    extra: dict[str, Any] = {}
    if cls is InputDataset and item.get("input_facets"):
        extra["inputFacets"] = {k: _facet(k, v) for k, v in item["input_facets"].items()}
    if cls is OutputDataset and item.get("output_facets"):
        extra["outputFacets"] = {k: _facet(k, v) for k, v in item["output_facets"].items()}
    return [cls(namespace=ns, name=name, facets=facets, **extra) for ns, name in _names(item)]


def _names(item: Mapping[str, Any]) -> list[tuple[str, str]]:
    if "model" in item:
        return [(item["mlflow"], item["model"])]
    if "file" in item:
        return [naming.file_dataset(item["file"])]
    data = item["data"]
    if data.get("sql"):
        return _sql_names(data["conn_id"], data["sql"])
    return [naming.file_dataset(data["uri"])]


def _sql_names(conn_id: str, sql: str) -> list[tuple[str, str]]:
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as err:  # noqa: BLE001 - no lineage for a connection that is gone
        log.warning("OpenLineage: connection %r of a SQL dataset is not readable: %s", conn_id, err)
        return []
    names = naming.sql_datasets(conn.conn_type, conn.host, conn.port, conn.schema, sql, _parse_tables)
    if not names:
        log.info("OpenLineage: no table found in the query of connection %r; no dataset emitted for it", conn_id)
    return names


def _parse_tables(sql: str, dialect: str) -> list[dict[str, Any]]:
    from openlineage_sql import parse

    meta = parse([sql], dialect=dialect)
    return [{"database": t.database, "schema": t.schema, "name": t.name} for t in meta.in_tables]


def _facet(key: str, payload: Mapping[str, Any]) -> Any:
    if key == "schema":
        return SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=f["name"], type=f.get("type")) for f in payload["fields"]])
    if key == "dataQualityAssertions":
        return DataQualityAssertionsDatasetFacet(assertions=[Assertion(**a) for a in payload["assertions"]])
    if key == "dataQualityMetrics":
        return DataQualityMetricsInputDatasetFacet(
            rowCount=payload.get("rowCount"),
            columnMetrics={c: ColumnMetrics(**m) for c, m in payload["columnMetrics"].items()},
        )
    if key == "outputStatistics":
        return OutputStatisticsOutputDatasetFacet(rowCount=payload.get("rowCount"))
    return CUSTOM_FACETS[key](**payload, producer=PRODUCER)
