"""Dataset references: one loader for every operator that reads a table.

A :class:`DatasetRef` names a table by URI (local path, ``file://``, or any ``ObjectStoragePath``
scheme Airflow supports, such as ``s3://`` or ``gs://``, with a ``conn_id``) or by a SQL query
through any Airflow SQL connection (``conn_id`` + ``sql``).  Parquet and CSV are supported.

This module is pure: it imports neither Airflow nor pandas at module level.  Airflow is imported
lazily only for remote object storage, SQL connections and the exception classes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("parquet", "csv")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv", ".tsv": "csv"}


def _dataset_error(message: str) -> Exception:
    from mlops_provider.exceptions import DatasetError

    return DatasetError(message)


def _config_error(message: str) -> Exception:
    from mlops_provider.exceptions import MlopsConfigurationError

    return MlopsConfigurationError(message)


def infer_format(uri: str) -> str | None:
    """``parquet`` or ``csv`` from the suffix of ``uri`` (``None`` when it cannot tell)."""
    path = uri.split("?", 1)[0].lower().rstrip("/")
    for suffix, fmt in sorted(_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if path.endswith(suffix):
            return fmt
    return None


@dataclass(frozen=True)
class DatasetRef:
    """
    Where a table lives.

    :param uri: local path, ``file://`` URI, or object-storage URI (``s3://bucket/key.parquet``).
    :param conn_id: Airflow connection for object storage, or the SQL connection when ``sql`` is set.
    :param sql: a query run through the SQL connection ``conn_id``.
    :param format: ``parquet`` or ``csv``; inferred from the URI suffix when omitted.
    """

    uri: str | None = None
    conn_id: str | None = None
    sql: str | None = None
    format: str | None = None

    def __post_init__(self) -> None:
        if self.format is None and self.uri and not self.sql:
            object.__setattr__(self, "format", infer_format(self.uri))

    def validate(self) -> DatasetRef:
        """Raise :class:`~mlops_provider.exceptions.MlopsConfigurationError` if the reference is unusable."""
        if self.sql:
            if self.uri:
                raise _config_error(f"Dataset reference {self}: give either 'uri' or 'sql', not both")
            if not self.conn_id:
                raise _config_error(f"Dataset reference with sql {self.sql[:80]!r} needs a 'conn_id'")
            return self
        if not self.uri:
            raise _config_error("Dataset reference needs a 'uri' (path or URI) or 'conn_id' + 'sql'")
        if self.format not in FORMATS:
            raise _config_error(
                f"Dataset {self.uri!r}: cannot tell the format from the suffix; "
                f"set format to one of {', '.join(FORMATS)} (got {self.format!r})"
            )
        return self

    @property
    def is_local(self) -> bool:
        return bool(self.uri) and (self.uri.startswith("file://") or "://" not in self.uri)

    @property
    def local_path(self) -> str:
        assert self.uri is not None
        return self.uri[len("file://") :] if self.uri.startswith("file://") else os.path.expanduser(self.uri)

    def describe(self) -> str:
        """Short human-readable name for messages, tags and lineage (never contains credentials)."""
        if self.sql:
            query = " ".join(self.sql.split())
            return f"sql:{self.conn_id}:{query[:200]}"
        return str(self.uri)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def to_dataset_ref(value: str | dict[str, Any] | DatasetRef) -> DatasetRef:
    """
    Turn an operator argument into a :class:`DatasetRef`.

    Templated arguments arrive as a string (a path or URI, or the JSON of a dict) or as a dict with
    the keys ``uri``, ``conn_id``, ``sql`` and ``format``.
    """
    if isinstance(value, DatasetRef):
        return value.validate()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise _config_error(f"Dataset reference {text[:100]!r} is not valid JSON: {err.msg}") from None
        elif not text:
            raise _config_error("Dataset reference is an empty string")
        else:
            return DatasetRef(uri=text).validate()
    if isinstance(value, dict):
        unknown = set(value) - {"uri", "conn_id", "sql", "format"}
        if unknown:
            raise _config_error(
                f"Dataset reference has unknown key(s) {sorted(unknown)}; allowed: uri, conn_id, sql, format"
            )
        return DatasetRef(**{k: (v if v != "" else None) for k, v in value.items()}).validate()
    raise _config_error(
        f"Dataset reference must be a path/URI string, a dict or a DatasetRef, got {type(value).__name__}"
    )


@dataclass
class LoadedDataset:
    """A loaded table with its identity: content digest, row count and schema."""

    frame: pd.DataFrame = field(repr=False)
    digest: str
    n_rows: int
    schema: dict[str, str]
    uri: str

    def summary(self) -> dict[str, Any]:
        """Small JSON-safe description for XCom and tags."""
        return {"uri": self.uri, "digest": self.digest, "n_rows": self.n_rows, "n_columns": len(self.schema)}


def frame_digest(frame: pd.DataFrame) -> str:
    """
    Stable SHA-256 of a frame's content: column names, dtypes and every row (the index is ignored).

    Equal data gives an equal digest across processes and machines (pandas' row hashing is seeded
    with a fixed key).
    """
    import pandas as pd

    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    if len(frame) and len(frame.columns):
        rows = pd.util.hash_pandas_object(frame, index=False)
        h.update(rows.to_numpy().tobytes())
    return h.hexdigest()


def frame_schema(frame: pd.DataFrame) -> dict[str, str]:
    return {str(c): str(t) for c, t in frame.dtypes.items()}


def load_dataset(ref: str | dict[str, Any] | DatasetRef, columns: Sequence[str] | None = None) -> LoadedDataset:
    """
    Read the whole table named by ``ref`` (optionally only ``columns``).

    :raises DatasetError: the file is missing, unreadable, empty, or lacks a requested column.
    """
    ref = to_dataset_ref(ref)
    name = ref.describe()
    cols = list(columns) if columns is not None else None
    if ref.sql:
        frame = _read_sql(ref)
        if cols is not None:
            _check_columns(frame.columns, cols, name)
            frame = frame[cols]
    else:
        frame = _read_file(ref, cols)
    if len(frame) == 0:
        raise _dataset_error(f"Dataset {name} is empty (0 rows)")
    if len(frame.columns) == 0:
        raise _dataset_error(f"Dataset {name} has no columns")
    return LoadedDataset(
        frame=frame, digest=frame_digest(frame), n_rows=len(frame), schema=frame_schema(frame), uri=name
    )


def iter_dataset_batches(
    ref: str | dict[str, Any] | DatasetRef, batch_rows: int = 100_000, columns: Sequence[str] | None = None
) -> Iterator[pd.DataFrame]:
    """
    Yield the table in DataFrames of at most ``batch_rows`` rows, without holding it all in memory.

    Parquet is streamed by row groups (``pyarrow.parquet.ParquetFile.iter_batches``), CSV by chunks.
    SQL results are fetched whole and then sliced (the DB-API hooks have no portable cursor streaming).
    """
    if int(batch_rows) <= 0:
        raise _config_error(f"batch_rows must be a positive integer, got {batch_rows!r}")
    batch_rows = int(batch_rows)
    ref = to_dataset_ref(ref)
    name = ref.describe()
    cols = list(columns) if columns is not None else None
    if ref.sql:
        frame = load_dataset(ref, cols).frame
        for start in range(0, len(frame), batch_rows):
            yield frame.iloc[start : start + batch_rows]
        return
    import pandas as pd

    with _open(ref) as fh:
        try:
            if ref.format == "parquet":
                import pyarrow.parquet as pq

                pf = pq.ParquetFile(fh)
                if cols is not None:
                    _check_columns(pf.schema_arrow.names, cols, name)
                if pf.metadata.num_rows == 0:
                    raise _dataset_error(f"Dataset {name} is empty (0 rows)")
                for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
                    yield batch.to_pandas()
            else:
                reader = pd.read_csv(fh, chunksize=batch_rows, usecols=cols, **_csv_options(ref))
                any_rows = False
                for chunk in reader:
                    any_rows = any_rows or len(chunk) > 0
                    yield chunk
                if not any_rows:
                    raise _dataset_error(f"Dataset {name} is empty (0 rows)")
        except (OSError, ValueError) as err:
            if _is_dataset_error(err):
                raise
            raise _dataset_error(f"Dataset {name} could not be read as {ref.format}: {_short(err)}") from None


# ---------------------------------------------------------------------- readers


def _is_dataset_error(err: BaseException) -> bool:
    from mlops_provider.exceptions import DatasetError, MlopsConfigurationError

    return isinstance(err, DatasetError | MlopsConfigurationError)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def _check_columns(available: Sequence[Any], wanted: Sequence[str], name: str) -> None:
    missing = [c for c in wanted if c not in set(map(str, available))]
    if missing:
        shown = ", ".join(map(str, list(available)[:20]))
        raise _dataset_error(f"Dataset {name} has no column(s) {missing}; it has: {shown}")


def _csv_options(ref: DatasetRef) -> dict[str, Any]:
    assert ref.uri is not None
    return {"sep": "\t"} if ref.uri.lower().endswith(".tsv") else {}


def _open(ref: DatasetRef):
    """Open the file behind ``ref`` for binary reading (local or object storage)."""
    name = ref.describe()
    if ref.is_local:
        path = ref.local_path
        if not os.path.exists(path):
            raise _dataset_error(f"Dataset {name} not found (no file at {path})")
        if os.path.isdir(path):
            raise _dataset_error(f"Dataset {name} is a directory, expected a {ref.format} file")
        if os.path.getsize(path) == 0:
            raise _dataset_error(f"Dataset {name} is empty (0-byte file)")
        try:
            return open(path, "rb")  # noqa: SIM115 - returned to the caller's with-block
        except OSError as err:
            raise _dataset_error(f"Dataset {name} is not readable: {_short(err)}") from None
    from airflow.sdk import ObjectStoragePath

    try:
        path = ObjectStoragePath(ref.uri, conn_id=ref.conn_id)
        if not path.exists():
            raise _dataset_error(f"Dataset {name} not found")
        return path.open("rb")
    except Exception as err:
        if _is_dataset_error(err):
            raise
        raise _dataset_error(
            f"Dataset {name} is not readable through connection {ref.conn_id!r}: {_short(err)}"
        ) from None


def _read_file(ref: DatasetRef, cols: list[str] | None) -> pd.DataFrame:
    import pandas as pd

    name = ref.describe()
    with _open(ref) as fh:
        try:
            if ref.format == "parquet":
                import pyarrow.parquet as pq

                pf = pq.ParquetFile(fh)
                if cols is not None:
                    _check_columns(pf.schema_arrow.names, cols, name)
                return pf.read(columns=cols).to_pandas()
            frame = pd.read_csv(fh, **_csv_options(ref))
        except pd.errors.EmptyDataError:
            raise _dataset_error(f"Dataset {name} is empty (no header, no rows)") from None
        except (OSError, ValueError, UnicodeDecodeError) as err:
            if _is_dataset_error(err):
                raise
            raise _dataset_error(f"Dataset {name} could not be read as {ref.format}: {_short(err)}") from None
    if cols is not None:
        _check_columns(frame.columns, cols, name)
        frame = frame[cols]
    return frame


def _read_sql(ref: DatasetRef) -> pd.DataFrame:
    from airflow.sdk import BaseHook

    name = ref.describe()
    try:
        hook = BaseHook.get_connection(ref.conn_id).get_hook()
    except Exception as err:
        raise _config_error(f"Dataset {name}: cannot use connection {ref.conn_id!r}: {_short(err)}") from None
    reader = getattr(hook, "get_df", None) or getattr(hook, "get_pandas_df", None)
    if reader is None:
        raise _config_error(
            f"Dataset {name}: connection {ref.conn_id!r} ({type(hook).__name__}) is not a SQL connection"
        )
    try:
        return reader(ref.sql)
    except Exception as err:
        raise _dataset_error(f"Dataset {name}: query failed: {_short(err)}") from None
