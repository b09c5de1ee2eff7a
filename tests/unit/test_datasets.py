"""Dataset references: local files, object storage (fsspec ``memory://``), SQL (PostgreSQL when available)."""

from __future__ import annotations

import json
import uuid

import pandas as pd
import pytest

from mlops_provider.core.datasets import (
    DatasetRef,
    frame_digest,
    iter_dataset_batches,
    load_dataset,
    to_dataset_ref,
)
from mlops_provider.exceptions import DatasetError, MlopsConfigurationError


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"id": range(10), "x": [i / 4 for i in range(10)], "label": list("abababab" "ab")})


@pytest.fixture
def files(tmp_path, frame):
    parquet = tmp_path / "data.parquet"
    frame.to_parquet(parquet, index=False, row_group_size=4)
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    return parquet, csv


def test_core_module_imports_no_airflow_or_pandas():
    import subprocess
    import sys

    code = (
        "import sys, mlops_provider.core.datasets, mlops_provider.core.metrics, mlops_provider.core.registry, "
        "mlops_provider.core.training; "
        "print(sorted(m for m in ('airflow', 'pandas', 'numpy', 'sklearn', 'mlflow', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_to_dataset_ref_accepts_templated_forms(files):
    parquet, csv = files
    assert to_dataset_ref(str(parquet)) == DatasetRef(uri=str(parquet), format="parquet")
    assert to_dataset_ref(f"file://{csv}").format == "csv"
    assert to_dataset_ref({"uri": str(csv)}).format == "csv"
    assert to_dataset_ref(json.dumps({"conn_id": "db", "sql": "select 1"})).sql == "select 1"
    assert to_dataset_ref({"uri": "s3://b/k", "format": "csv", "conn_id": ""}).conn_id is None
    ref = DatasetRef(uri=str(parquet))
    assert to_dataset_ref(ref) is ref


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("", "empty string"),
        ("/data/table.xlsx", "cannot tell the format"),
        ({"uri": "/x.csv", "path": "/y"}, "unknown key"),
        ({"sql": "select 1"}, "needs a 'conn_id'"),
        ({"uri": "/x.csv", "sql": "select 1", "conn_id": "db"}, "not both"),
        ("{not json", "not valid JSON"),
        (42, "must be a path"),
    ],
)
def test_to_dataset_ref_rejects_bad_references(value, match):
    with pytest.raises(MlopsConfigurationError, match=match):
        to_dataset_ref(value)


def test_load_parquet_and_csv_same_content_same_digest(files, frame):
    parquet, csv = files
    a = load_dataset(str(parquet))
    b = load_dataset(f"file://{csv}")
    assert a.n_rows == b.n_rows == 10
    assert a.schema == {"id": "int64", "x": "float64", "label": "object"}
    assert a.digest == b.digest == frame_digest(frame)
    assert len(a.digest) == 64
    assert json.dumps(a.summary())


def test_digest_changes_with_content_and_schema(frame):
    base = frame_digest(frame)
    changed = frame.copy()
    changed.loc[3, "x"] = 99.0
    assert frame_digest(changed) != base
    assert frame_digest(frame.rename(columns={"x": "y"})) != base
    assert frame_digest(frame.astype({"id": "int32"})) != base
    assert frame_digest(frame.set_index("id", drop=False)) == base  # index ignored


def test_load_columns_and_missing_column(files):
    parquet, csv = files
    assert list(load_dataset(str(parquet), columns=["x"]).frame.columns) == ["x"]
    assert list(load_dataset(str(csv), columns=["label", "id"]).frame.columns) == ["label", "id"]
    with pytest.raises(DatasetError, match=r"no column\(s\) \['nope'\]"):
        load_dataset(str(parquet), columns=["nope"])


def test_unreadable_empty_and_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(str(tmp_path / "missing.parquet"))
    (tmp_path / "zero.csv").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(str(tmp_path / "zero.csv"))
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"empty \(0 rows\)"):
        load_dataset(str(tmp_path / "header.csv"))
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(DatasetError, match="could not be read as parquet"):
        load_dataset(str(tmp_path / "bad.parquet"))
    pd.DataFrame({"a": pd.Series([], dtype="int64")}).to_parquet(tmp_path / "norows.parquet")
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(str(tmp_path / "norows.parquet"))
    with pytest.raises(DatasetError, match="empty"):
        list(iter_dataset_batches(str(tmp_path / "norows.parquet"), 5))
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DatasetError, match="directory"):
        load_dataset(str(tmp_path / "dir.csv"))


def test_iter_batches_parquet_by_row_groups_and_csv(files, frame):
    parquet, csv = files
    batches = list(iter_dataset_batches(str(parquet), batch_rows=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert pd.concat(batches, ignore_index=True).equals(frame)
    assert [len(b) for b in iter_dataset_batches(str(csv), batch_rows=3, columns=["id"])] == [3, 3, 3, 1]
    with pytest.raises(MlopsConfigurationError, match="positive"):
        list(iter_dataset_batches(str(csv), batch_rows=0))


def test_object_storage_path_scheme(tmp_path, frame):
    """A scheme other than a plain path/``file://`` goes through Airflow's ObjectStoragePath.

    Only ``file`` and ``local`` filesystems are registered in this environment (no cloud providers
    installed), so ``local://`` exercises that code path for real.
    """
    from airflow.sdk import ObjectStoragePath

    uri = f"local://{tmp_path}/store-{uuid.uuid4().hex[:6]}/data.parquet"
    target = ObjectStoragePath(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as fh:
        frame.to_parquet(fh, index=False, row_group_size=5)
    loaded = load_dataset(uri)
    assert loaded.digest == frame_digest(frame) and loaded.uri == uri
    assert [len(b) for b in iter_dataset_batches(uri, 5)] == [5, 5]
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(uri.replace("data.parquet", "other.parquet"))


def test_sql_query_through_airflow_connection(monkeypatch, frame):
    from tests.helpers.postgres import create_database, drop_database, postgres_available, sqlalchemy_url

    if not postgres_available():
        pytest.fail("PostgreSQL on 127.0.0.1:5432 is not running (the machine starts it; never skipped)")
    db = create_database()
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(sqlalchemy_url(db))
        frame.to_sql("features", engine, index=False)
        engine.dispose()
        monkeypatch.setenv("AIRFLOW_CONN_FEATURES_DB", sqlalchemy_url(db))
        ref = {"conn_id": "features_db", "sql": "select id, x, label from features order by id"}
        loaded = load_dataset(ref)
        assert loaded.n_rows == 10 and loaded.digest == frame_digest(frame)
        assert [len(b) for b in iter_dataset_batches(ref, 6)] == [6, 4]
        with pytest.raises(DatasetError, match="query failed"):
            load_dataset({"conn_id": "features_db", "sql": "select * from no_such_table"})
        with pytest.raises(DatasetError, match="empty"):
            load_dataset({"conn_id": "features_db", "sql": "select * from features where id < 0"})
    finally:
        drop_database(db)
