"""Dataset namespaces and names after OpenLineage's naming spec (pure functions, no OpenLineage import).

Files and object stores (OpenLineage ``spec/Naming.md``):

=====================  ==============================================  =====================
where                  namespace                                       name
=====================  ==============================================  =====================
local file             ``file``                                        absolute path
S3 (s3, s3a, s3n)      ``s3://<bucket>``                               object key
GCS                    ``gs://<bucket>``                               object key
Azure Data Lake        ``abfss://<container>@<account>.dfs.core...``   path
HDFS                   ``hdfs://<host>:<port>``                        path
PostgreSQL             ``postgres://<host>:<port>``                    ``<database>.<schema>.<table>``
MySQL                  ``mysql://<host>:<port>``                       ``<database>.<table>``
=====================  ==============================================  =====================

The spec has no entry for MLflow; models are named here by their MLflow URI in the namespace of
the tracking server: ``mlflow://<host>:<port>`` (``mlflow:<store URI>`` for a server-less store),
name ``models:/<registered name>/<version>`` for a registered model version and ``models:/m-<id>``
(or ``runs:/<run id>/<path>``) for a logged model.  Credentials are never part of a namespace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

_S3_SCHEMES = ("s3", "s3a", "s3n")
_GCS_SCHEMES = ("gs", "gcs")
#: Airflow connection type -> (OpenLineage scheme, default port, database has schemas)
_SQL_SCHEMES = {
    "postgres": ("postgres", 5432, True),
    "postgresql": ("postgres", 5432, True),
    "mysql": ("mysql", 3306, False),
    "mssql": ("mssql", 1433, True),
    "oracle": ("oracle", 1521, True),
    "trino": ("trino", 8080, True),
    "redshift": ("redshift", 5439, True),
    "sqlite": ("sqlite", None, False),
}
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


def _netloc(host: str | None, port: int | None) -> str:
    host = (host or "").rsplit("@", 1)[-1]  # never a user or password
    return f"{host}:{port}" if port else host


def file_dataset(uri: str) -> tuple[str, str]:
    """``(namespace, name)`` of a path or URI of a file, directory or object."""
    uri = str(uri).strip()
    if uri.startswith("file://"):
        path = urlsplit(uri).path or uri[len("file://") :]
        return "file", os.path.abspath(path)
    if "://" not in uri:
        return "file", os.path.abspath(os.path.expanduser(uri))
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = _netloc(parts.hostname, parts.port)
    key = parts.path.lstrip("/")
    if scheme in _S3_SCHEMES:
        return f"s3://{host}", key
    if scheme in _GCS_SCHEMES:
        return f"gs://{host}", key
    if scheme in ("abfss", "abfs", "wasbs"):
        # the container is the user part of the netloc: keep it, it is not a credential
        return f"{scheme}://{parts.netloc}", key
    if scheme == "hdfs":
        return f"hdfs://{host}", "/" + key
    return f"{scheme}://{host}", key


def sql_namespace(conn_type: str, host: str | None, port: int | None, database: str | None = None) -> str:
    scheme, default_port, _ = _SQL_SCHEMES.get((conn_type or "").lower(), (conn_type or "sql", None, True))
    if scheme == "sqlite":
        return f"sqlite://{os.path.abspath(host or database or '')}"
    return f"{scheme}://{_netloc(host, port or default_port)}"


def sql_table_name(conn_type: str, database: str | None, table: Mapping[str, Any]) -> str:
    """``database.schema.table`` (``database.table`` where databases have no schemas), from a parsed table."""
    _, _, has_schemas = _SQL_SCHEMES.get((conn_type or "").lower(), (None, None, True))
    default_schema = "public" if (conn_type or "").lower().startswith("postgres") else None
    db = table.get("database") or database
    schema = table.get("schema") or default_schema
    parts = [db, schema, table["name"]] if has_schemas else [db, table["name"]]
    return ".".join(str(p) for p in parts if p)


def sql_datasets(
    conn_type: str,
    host: str | None,
    port: int | None,
    database: str | None,
    sql: str,
    parse: Callable[[str, str], list[Mapping[str, Any]]] | None,
) -> list[tuple[str, str]]:
    """The tables a query reads, each as ``(namespace, name)``; ``[]`` when the query cannot be parsed."""
    if parse is None:
        return []
    try:
        tables = parse(sql, (conn_type or "generic").lower())
    except Exception:  # noqa: BLE001 - an unparseable query has no table-level lineage
        return []
    namespace = sql_namespace(conn_type, host, port, database)
    return [(namespace, sql_table_name(conn_type, database, t)) for t in tables]


def mlflow_namespace(tracking_uri: str) -> str:
    """The namespace of an MLflow tracking server or store, without credentials."""
    uri = str(tracking_uri or "").strip()
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        path = parts.path.rstrip("/")
        return f"mlflow://{_netloc(parts.hostname, parts.port)}{path}"
    if scheme in ("", "file"):
        return f"mlflow:file:{os.path.abspath(parts.path or uri)}"
    if scheme == "sqlite":
        return f"mlflow:{uri}"
    if scheme == "databricks":
        return f"mlflow:databricks://{parts.netloc.rsplit('@', 1)[-1]}"
    # a database store: scheme://user:password@host:port/db -> no credentials
    return f"mlflow:{scheme}://{_netloc(parts.hostname, parts.port)}{parts.path}"


def model_version_name(name: str, version: str | int) -> str:
    return f"models:/{name}/{version}"


def parse_model_version(uri: str) -> tuple[str, str] | None:
    """``(name, version)`` of ``models:/<name>/<version>``, else ``None``."""
    match = _VERSION_URI.match(str(uri or "").strip())
    return (match["name"], match["version"]) if match else None
