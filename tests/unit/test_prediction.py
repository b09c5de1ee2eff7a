"""BatchPredictOperator refuses bad input by naming it and leaves nothing half-made (issue 13).

Real MLflow (a ``sqlite:///`` store), a real sklearn model, the operator's own ``execute``.  The
context is a plain dict with a real DAG: these tests are about the operator's I/O, not scheduling.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid

import numpy as np
import pandas as pd
import pytest

from mlops_provider.exceptions import DatasetError, MlopsConfigurationError

_MODELS: dict[str, str] = {}


def _frame(n: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"id": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n), "n": rng.integers(0, 5, n)}
    )


@pytest.fixture
def model_uri(mlflow_conn_sqlite) -> str:
    """A LogisticRegression on a, b, n (signature: double, double, long), logged once per session."""
    if mlflow_conn_sqlite not in _MODELS:
        import mlflow
        import mlflow.sklearn
        from mlflow.models import infer_signature
        from sklearn.linear_model import LogisticRegression

        from mlops_provider.hooks.mlflow import MlflowHook

        X = _frame()[["a", "b", "n"]]
        model = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
        with MlflowHook().mlflow_env():
            mlflow.set_experiment("test-prediction-models")
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(
                    model, name="model", signature=infer_signature(X, model.predict(X)),
                    pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
                )
        _MODELS[mlflow_conn_sqlite] = info.model_uri
    return _MODELS[mlflow_conn_sqlite]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The operator's temporary files go here, so the test can see that none is left."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp


def _operator(**kwargs):
    from mlops_provider.operators.prediction import BatchPredictOperator

    return BatchPredictOperator(**{"task_id": "score", "id_columns": ["id"], "batch_rows": 50, **kwargs})


def _context():
    import pendulum
    from airflow.sdk import DAG

    dag = DAG(f"test_prediction_{uuid.uuid4().hex[:6]}", schedule=None, start_date=pendulum.datetime(2026, 1, 1))
    return {"dag": dag, "run_id": f"manual__{uuid.uuid4().hex[:8]}"}


def _runs(experiment: str) -> list:
    from mlops_provider.hooks.mlflow import MlflowHook

    client = MlflowHook().get_client()
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def _leftovers(*folders) -> list[str]:
    return sorted(str(p) for folder in folders for p in folder.rglob("*") if ".tmp-" in p.name or "mlops-predict" in str(p))


# ---------------------------------------------------------------------- parse time


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_rows": 0}, r"batch_rows must be an integer >= 1; got 0"),
        ({"batch_rows": 2.5}, r"batch_rows must be an integer >= 1; got 2.5"),
        ({"batch_rows": "100"}, r"batch_rows must be an integer"),
        ({"model_uri": None}, r"give model_uri, or registered_model_name"),
        ({"model_uri": None, "registered_model_name": "m", "alias": "latest"}, r"Alias 'latest' is not valid"),
        ({"output_uri": "/data/batch.parquet"}, r"output_uri '/data/batch.parquet' is the input itself"),
        ({"output_uri": "file:///data/./batch.parquet"}, r"is the input itself"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs, match):
    base = {"input_data": "/data/batch.parquet", "output_uri": "/data/out.parquet", "model_uri": "models:/m/1"}
    with pytest.raises(MlopsConfigurationError, match=match):
        _operator(**{**base, **kwargs})


def test_templated_arguments_wait_for_execute():
    op = _operator(input_data="{{ params.batch }}", output_uri="{{ params.batch }}", model_uri="models:/m/1",
                   batch_rows="{{ params.rows }}")
    assert op.batch_rows == "{{ params.rows }}"


# ---------------------------------------------------------------------- output refused before anything is read


def test_output_equal_to_the_input_is_refused_and_the_batch_is_intact(model_uri, tmp_path, private_tmp):
    batch = tmp_path / "batch.parquet"
    _frame().to_parquet(batch, index=False)
    before = batch.read_bytes()
    (tmp_path / "alias.parquet").symlink_to(batch)
    experiment = f"pred-same-{uuid.uuid4().hex[:6]}"
    for output in (str(batch), f"file://{batch}", str(tmp_path / "." / "batch.parquet"), str(tmp_path / "alias.parquet")):
        op = _operator(input_data="{{ params.batch }}", output_uri="{{ params.out }}", model_uri=model_uri,
                       experiment_name=experiment)
        op.input_data, op.output_uri = str(batch), output  # as rendered
        with pytest.raises(MlopsConfigurationError, match="is the input itself; writing the predictions there would overwrite"):
            op.execute(_context())
    assert batch.read_bytes() == before
    assert _runs(experiment) == [] and _leftovers(tmp_path) == []


def test_output_that_is_a_directory_gets_a_clear_error(model_uri, tmp_path, private_tmp):
    _frame().to_parquet(tmp_path / "batch.parquet", index=False)
    out_dir = tmp_path / "predictions"
    out_dir.mkdir()
    for output in (str(out_dir), f"{out_dir}/", str(tmp_path / "new-folder") + "/"):
        op = _operator(input_data=str(tmp_path / "batch.parquet"), output_uri=output, model_uri=model_uri)
        with pytest.raises(MlopsConfigurationError, match=r"is a directory; give the path of the parquet file to write, e\.g\. .*/predictions\.parquet"):
            op.execute(_context())
    assert list(out_dir.iterdir()) == [] and not (tmp_path / "new-folder").exists()
    assert _leftovers(tmp_path) == []


def test_output_folder_that_cannot_be_created_leaves_no_staging_file(model_uri, tmp_path, private_tmp):
    _frame().to_parquet(tmp_path / "batch.parquet", index=False)
    (tmp_path / "a-file").write_text("not a folder")
    experiment = f"pred-nofolder-{uuid.uuid4().hex[:6]}"
    op = _operator(input_data=str(tmp_path / "batch.parquet"), output_uri=str(tmp_path / "a-file" / "out.parquet"),
                   model_uri=model_uri, experiment_name=experiment)
    with pytest.raises(DatasetError, match=r"Cannot create the folder of output_uri .*a-file/out\.parquet"):
        op.execute(_context())
    assert _leftovers(tmp_path) == [] and _runs(experiment) == []


# ---------------------------------------------------------------------- bad input columns named


@pytest.mark.parametrize(
    ("fmt", "spoil", "match"),
    [
        ("csv", lambda f: f.assign(a=f["a"].astype(object).mask(f["id"].isin([60, 61, 70]), "?")),
         r"'a' has 3 non-numeric value\(s\) \(e\.g\. '\?'\); the model expects double"),
        ("csv", lambda f: f.assign(a=f["a"].astype(object).mask(f["id"] == 75, "unknown").mask(f["id"] == 76, "1,5")),
         r"'a' has 2 non-numeric value\(s\) \(e\.g\. 'unknown', '1,5'\)"),
        ("parquet", lambda f: f.assign(a=f["a"].mask(f["id"] >= 90)),
         r"'a' has 10 missing value\(s\) \(NaN/null\); the model expects double"),
        ("parquet", lambda f: f.assign(b=f["b"].mask(f["id"] == 55, np.inf).mask(f["id"] == 56, -np.inf)),
         r"'b' has 2 infinite value\(s\) \(inf/-inf\); the model expects double"),
        ("parquet", lambda f: f.assign(a=pd.Timestamp("2026-01-01")),
         r"'a' is a datetime column \(datetime64\[\w+\]\); the model expects double"),
        ("csv", lambda f: f.assign(n=f["n"].astype(float).mask(f["id"] == 99)),
         r"'n' holds float64 with 1 missing value\(s\) \(NaN/null\); the model expects long: an integer column"),
    ],
)
def test_bad_input_columns_are_named_and_nothing_is_written(model_uri, tmp_path, private_tmp, fmt, spoil, match):
    frame = _frame()
    spoiled = spoil(frame)
    path = tmp_path / f"batch.{fmt}"
    if fmt == "csv":  # read in chunks of 50: the first chunk is fine, the second is not
        frame.iloc[:50].to_csv(path, index=False)
        spoiled.iloc[50:].to_csv(path, index=False, header=False, mode="a")
        rows = "rows 50-99"
    else:  # parquet holds one type per column: the whole column is spoiled, the values from row 50 on
        spoiled.to_parquet(path, index=False, row_group_size=50)
        rows = "rows 50-99" if spoiled["a"].dtype == frame["a"].dtype else "rows 0-49"
    out = tmp_path / "out" / "predictions.parquet"
    experiment = f"pred-bad-{uuid.uuid4().hex[:6]}"
    op = _operator(input_data=str(path), output_uri=str(out), model_uri=model_uri, experiment_name=experiment)
    with pytest.raises(DatasetError, match=match) as info:
        op.execute(_context())
    message = str(info.value)
    assert f"failed to predict on {rows} of the input" in message, message
    assert "rows x" not in message and len(message) < 1500, message  # no echo of the DataFrame
    assert not out.exists() and _leftovers(tmp_path) == [] and _runs(experiment) == []


def test_good_input_still_scores(model_uri, tmp_path, private_tmp):
    _frame().to_parquet(tmp_path / "batch.parquet", index=False, row_group_size=50)
    out = tmp_path / "out" / "predictions.parquet"
    result = _operator(input_data=str(tmp_path / "batch.parquet"), output_uri=str(out), model_uri=model_uri).execute(
        _context()
    )
    assert result["n_rows"] == 100 and len(json.dumps(result)) < 4096
    assert len(pd.read_parquet(out)) == 100 and _leftovers(tmp_path) == []
    assert os.listdir(private_tmp) == []


def test_unreachable_mlflow_is_a_retryable_transport_error(tmp_path, monkeypatch, private_tmp):
    """Nothing listens on the port: the model cannot be loaded, and that is not the model's fault."""
    from mlops_provider.exceptions import MlflowConnectionError
    from tests.helpers.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": url, "extra": {"max_retries": 0}}))
    _frame().to_parquet(tmp_path / "batch.parquet", index=False)
    out = tmp_path / "out.parquet"
    for kwargs in ({"model_uri": "models:/m-0123456789abcdef0123456789abcdef"}, {"registered_model_name": "churn"}):
        op = _operator(input_data=str(tmp_path / "batch.parquet"), output_uri=str(out), **kwargs)
        with pytest.raises(MlflowConnectionError, match=f"Cannot reach MLflow tracking server {url}"):
            op.execute(_context())
    assert not out.exists() and _leftovers(tmp_path) == []
