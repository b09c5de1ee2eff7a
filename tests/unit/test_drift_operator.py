"""DriftCheckOperator against a real MLflow (server and sqlite store) and in a real DAG run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_provider.exceptions import DatasetError, DriftDetected, MlopsConfigurationError
from mlops_provider.hooks.mlflow import MlflowHook
from mlops_provider.operators.drift import (
    PROFILE_ARTIFACT_PATH,
    DriftCheckOperator,
    drift_asset_alias,
    drift_asset_uri,
)

ROOT = Path(__file__).resolve().parents[2]


def _features(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, n) + int(shift * 20),
            "monthly_charges": rng.normal(70 + shift * 15, 20, n),
            "support_calls": rng.poisson(1.5 + shift, n),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.5 - shift / 4, 0.3, 0.2 + shift / 4]),
        }
    )


def _champion(tmp_path: Path, with_features: bool = True) -> tuple[str, str, str]:
    """A registered model whose champion's run holds ``reference/features.parquet``."""
    name = f"drift-{uuid.uuid4().hex[:8]}"
    client = MlflowHook().get_client()
    exp = client.create_experiment(f"exp-{name}")
    run_id = client.create_run(exp).info.run_id
    if with_features:
        path = tmp_path / "features.parquet"
        _features(3000, seed=1).to_parquet(path)
        client.log_artifact(run_id, str(path), artifact_path="reference")
    client.set_terminated(run_id)
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", mv.version)
    return name, str(mv.version), run_id


def _batch(tmp_path: Path, shift: float, n: int = 2000, seed: int = 2) -> str:
    path = tmp_path / f"batch-{shift}-{seed}.parquet"
    _features(n, seed=seed, shift=shift).to_parquet(path)
    return str(path)


def _context():
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"run_id": f"test_{uuid.uuid4().hex[:6]}", "outlet_events": OutletEventAccessors()}


def _alias_events(ctx) -> list:
    return [e for acc in ctx["outlet_events"]._dict.values() for e in acc.asset_alias_events]


def _artifacts(run_id: str, path: str) -> list[str]:
    return [f.path for f in MlflowHook().get_client().list_artifacts(run_id, path)]


def test_model_reference_builds_profile_once_and_no_event_without_drift(mlflow_conn, tmp_path):
    name, version, run_id = _champion(tmp_path)
    op = DriftCheckOperator(
        task_id="drift", reference=f"models:/{name}@champion", current=_batch(tmp_path, 0.0)
    )
    assert [o.name for o in op.outlets] == [drift_asset_alias(name)]  # alias only: no unconditional event
    ctx = _context()
    first = op.execute(ctx)
    assert first["dataset_drift"] is False and first["model_version"] == version
    assert first["profile_logged"] == f"runs:/{run_id}/{PROFILE_ARTIFACT_PATH}"
    assert PROFILE_ARTIFACT_PATH in _artifacts(run_id, "drift")
    assert _alias_events(ctx) == [] and "event" not in first
    second = op.execute(_context())  # the stored profile is reused, not rebuilt
    assert "profile_logged" not in second
    assert second["columns"] == first["columns"]
    text = json.dumps(second)
    assert len(text) < 4000
    metrics = MlflowHook().get_client().get_run(second["monitoring_run_id"]).data.metrics
    assert metrics["drift.dataset_drift"] == 0.0 and "drift.score.monthly_charges" in metrics
    assert metrics["drift.drift_share_threshold"] == 0.5  # the timeline draws the share against it


def test_drift_emits_asset_event_and_tags_model_version(mlflow_conn_sqlite, tmp_path):
    from types import SimpleNamespace

    name, version, _ = _champion(tmp_path)
    ctx = _context()
    # the task instance of a mapped drift check (check_batch group of the drift monitor)
    ctx["ti"] = SimpleNamespace(dag_id="drift_monitor__m", task_id="check_batch.check_drift", run_id=ctx["run_id"],
                                map_index=3, try_number=1)
    summary = DriftCheckOperator(
        task_id="check_batch.check_drift", reference=f"models:/{name}@champion", current=_batch(tmp_path, 1.0)
    ).execute(ctx)
    assert summary["dataset_drift"] is True
    assert summary["event"] == {"asset": drift_asset_uri(name), "alias": drift_asset_alias(name)}
    (event,) = _alias_events(ctx)
    assert event.dest_asset_key.uri == drift_asset_uri(name)
    assert event.extra["dataset_drift"] is True and event.extra["model_version"] == version
    # the verdict next to its threshold, unambiguous names, the model and a one-line summary
    assert "drift_share" not in event.extra
    assert event.extra["share_of_drifted_columns"] >= event.extra["drift_share_threshold"]
    assert event.extra["reason"] == "drift" and event.extra["model_name"] and "columns drifted" in event.extra["summary"]
    # the producer: asset pages of Airflow 3.3 list no producing task for alias-emitted events (docs/ui.md)
    assert event.extra["producer"] == {"dag_id": "drift_monitor__m", "run_id": ctx["run_id"],
                                       "task_id": "check_batch.check_drift", "map_index": 3}
    assert set(event.extra["drifted_columns"]) == set(summary["drifted_columns"])
    tags = MlflowHook().get_client().get_model_version(name, version).tags
    assert tags["mlops.last_drift_run_id"] == summary["monitoring_run_id"]
    assert tags["mlops.last_dataset_drift"] == "true"


def test_on_failure_fail_raises_with_figures(mlflow_conn_sqlite, tmp_path):
    name, _, _ = _champion(tmp_path)
    op = DriftCheckOperator(
        task_id="drift", reference=f"models:/{name}@champion", current=_batch(tmp_path, 1.0), on_failure="fail"
    )
    with pytest.raises(DriftDetected, match=r"columns drifted \(share"):
        op.execute(_context())


def test_dataset_reference_with_html_report(mlflow_conn_server, tmp_path):
    ref = tmp_path / "ref.parquet"
    _features(1500, seed=5).to_parquet(ref)
    name = f"drift-ds-{uuid.uuid4().hex[:6]}"
    op = DriftCheckOperator(
        task_id="drift",
        reference=str(ref),
        current=_batch(tmp_path, 0.8, n=900),
        model_name=name,
        html_report=True,
        report_sample_rows=500,
        column_methods={"monthly_charges": "psi"},
    )
    summary = op.execute(_context())
    assert summary["columns"]["monthly_charges"]["method"] == "psi"
    assert summary["report"] == f"runs:/{summary['monitoring_run_id']}/drift/report.html"
    assert "drift/report.html" in _artifacts(summary["monitoring_run_id"], "drift")
    assert summary["report_url"].endswith("/artifacts/drift/report.html")


def test_bad_inputs_fail_clearly(mlflow_conn_sqlite, tmp_path):
    from mlops_provider.core.drift import build_profile

    name, _, run_id = _champion(tmp_path, with_features=False)
    with pytest.raises(MlopsConfigurationError, match="neither a drift profile"):
        DriftCheckOperator(
            task_id="d", reference=f"models:/{name}@champion", current=_batch(tmp_path, 0)
        ).execute(_context())
    # a profile that belongs to another model, stored on this model's run
    other = build_profile(_features(500, 3), metadata={"model_name": "someone-else"})
    local = other.save(tmp_path / "p" / "profile.json")
    MlflowHook().get_client().log_artifact(run_id, str(local), artifact_path="drift")
    with pytest.raises(MlopsConfigurationError, match="belongs to model 'someone-else'"):
        DriftCheckOperator(
            task_id="d", reference=f"models:/{name}@champion", current=_batch(tmp_path, 0)
        ).execute(_context())
    empty = tmp_path / "empty.parquet"
    _features(10, 1).iloc[:0].to_parquet(empty)
    ref = tmp_path / "ref.parquet"
    _features(100, 1).to_parquet(ref)
    with pytest.raises((DatasetError, MlopsConfigurationError), match="no rows|empty"):
        DriftCheckOperator(task_id="d", reference=str(ref), current=str(empty), log_to_mlflow=False).execute(
            _context()
        )


def _load_example(model_name: str):
    os.environ["EXAMPLE_DRIFT_MODEL"] = model_name
    try:
        spec = importlib.util.spec_from_file_location(
            f"example_drift_check_{model_name.replace('-', '_')}", ROOT / "dags" / "example_drift_check.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        os.environ.pop("EXAMPLE_DRIFT_MODEL", None)
    return module


def _asset_events(uri: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri)
        ).all()
        return [dict(r.extra or {}) for r in rows]


def test_example_dag_runs_and_emits_event_only_on_drift(mlflow_conn_sqlite, airflow_db, tmp_path):
    """``dag.test()`` of dags/example_drift_check.py on the migrated metadata DB."""
    name, _, _ = _champion(tmp_path)
    module = _load_example(name)
    dag = module.dag

    calm = dag.test(run_conf={"current": _batch(tmp_path, 0.0)})
    states = {ti.task_id: ti.state for ti in calm.get_task_instances()}
    assert states == {"check_drift": "success", "drift_found": "success", "notify_drift": "skipped"}
    assert _asset_events(drift_asset_uri(name)) == []

    drifted = dag.test(run_conf={"current": _batch(tmp_path, 1.0, seed=4)})
    states = {ti.task_id: ti.state for ti in drifted.get_task_instances()}
    assert states == {"check_drift": "success", "drift_found": "success", "notify_drift": "success"}
    (extra,) = _asset_events(drift_asset_uri(name))
    assert extra["dataset_drift"] is True and extra["drifted_columns"]


def test_operator_module_is_parse_safe():
    code = (
        "import sys; import mlops_provider.operators.drift; "
        "heavy = [m for m in ('pandas','numpy','sklearn','scipy','mlflow','evidently') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "provider")},
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ------------------------------------------------------------------ issue 13: arguments, policy, log line


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_drift": "fail"}, "argument 'on_drift' was renamed to 'on_failure'; pass on_failure='fail'"),
        ({"on_failure": "succeed"}, "on_failure must be one of 'warn', 'fail', 'skip'; got 'succeed'"),
        ({"on_failure": "quarantine"}, "on_failure must be one of 'warn', 'fail', 'skip'"),
        ({"drift_share": 0}, "drift_share must be a number in (0, 1]; got 0"),
        ({"drift_share": "half"}, "drift_share must be a number in (0, 1]"),
        ({"column_methods": {"x": "KS"}}, "column_methods['x'] must be one of 'abs_text_content_drift', 'chisquare', 'jensenshannon', 'ks'"),
        ({"column_methods": ["ks"]}, "column_methods must be a mapping of column name to method"),
        ({"column_thresholds": {"x": float("inf")}}, "column_thresholds['x'] must be a number >= 0; got inf"),
        ({"report_sample_rows": 0}, "report_sample_rows must be an integer >= 1"),
        ({"report_sample_rows": 2.5}, "report_sample_rows must be an integer >= 1"),
        ({"max_reference_rows": -1}, "max_reference_rows must be an integer >= 1"),
        ({"html_report": "yes"}, "html_report must be one of True, False"),
        ({"log_to_mlflow": None}, "log_to_mlflow must be one of True, False"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs, message):
    with pytest.raises(MlopsConfigurationError) as exc:
        DriftCheckOperator(task_id="d", reference="/data/ref.parquet", current="/data/b.parquet", **kwargs)
    assert message in str(exc.value) and "'d'" in str(exc.value)


def test_templated_arguments_are_checked_after_rendering(tmp_path):
    ref = tmp_path / "ref.parquet"
    _features(300, 1).to_parquet(ref)
    op = DriftCheckOperator(
        task_id="d", reference=str(ref), current=str(ref), drift_share="{{ params.share }}",
        column_methods={"monthly_charges": "{{ params.method }}"}, log_to_mlflow=False,
    )  # accepted when parsed
    op.drift_share, op.column_methods = "1.5", {"monthly_charges": "magic"}  # as rendered
    with pytest.raises(MlopsConfigurationError, match=r"drift_share must be a number in \(0, 1\]; got 1.5"):
        op.execute(_context())
    op.drift_share = "0.5"
    with pytest.raises(MlopsConfigurationError, match=r"column_methods\['monthly_charges'\] must be one of"):
        op.execute(_context())


def test_log_line_names_every_column_left_out(tmp_path, capsys):
    """'no drift' is said with what was not tested: a nullable-int column, a datetime column, an extra column."""
    counts = pd.array(np.arange(600) % 4, dtype="Int64")
    ref_frame = _features(600, 1).assign(comment=counts, seen_at=pd.Timestamp("2026-01-01"))
    ref = tmp_path / "ref.parquet"
    ref_frame.to_parquet(ref)
    cur = tmp_path / "cur.parquet"
    _features(600, 2).assign(comment=counts, seen_at=pd.Timestamp("2026-02-01"), extra=1).to_parquet(cur)
    summary = DriftCheckOperator(
        task_id="d", reference=str(ref), current=str(cur), log_to_mlflow=False
    ).execute(_context())
    assert summary["dataset_drift"] is False and summary["number_of_columns"] == 4
    expected = "2 of 6 columns not tested: comment (dtype Int64"
    assert summary["not_tested"].startswith(expected) and "seen_at (dtype datetime64" in summary["not_tested"]
    line = next(x for x in capsys.readouterr().out.splitlines() if "Drift check of" in x)
    assert "no drift (0 of 4 columns drifted" in line and expected in line and "seen_at" in line
    assert "1 batch column(s) not in the reference: extra" in line


def test_missing_columns_drift_and_fail_with_a_readable_message(tmp_path):
    """A batch with 1 of 4 reference columns: the 3 missing count as drifted (share 0.75 -> drift)."""
    ref = tmp_path / "ref.parquet"
    _features(600, 1).to_parquet(ref)
    cur = tmp_path / "cur.parquet"
    _features(600, 2)[["monthly_charges"]].to_parquet(cur)
    op = DriftCheckOperator(task_id="d", reference=str(ref), current=str(cur), log_to_mlflow=False,
                            on_failure="fail")
    with pytest.raises(DriftDetected, match=r"3 of 4 columns drifted.*tenure_months \(missing in current\)"):
        op.execute(_context())


def test_default_warn_logs_emits_and_succeeds(tmp_path, capsys):
    ref = tmp_path / "ref.parquet"
    _features(600, 1).to_parquet(ref)
    op = DriftCheckOperator(task_id="d", reference=str(ref), current=_batch(tmp_path, 1.0, n=600),
                            model_name="warned", log_to_mlflow=False)
    assert op.on_failure == "warn"
    ctx = _context()
    summary = op.execute(ctx)
    assert summary["dataset_drift"] is True and len(_alias_events(ctx)) == 1 and summary["on_failure"] == "warn"
    assert "on_failure='warn'" in capsys.readouterr().out


def test_on_failure_skip_skips_downstream_only_on_drift(mlflow_conn_sqlite, airflow_db, tmp_path):
    """``dag.test()`` of ``example_drift_gate``: a drifted batch goes no further; a calm one does."""
    name, _, _ = _champion(tmp_path)
    dag = _load_example(name).gate_dag
    calm = dag.test(run_conf={"current": _batch(tmp_path, 0.0)})
    states = {ti.task_id: ti.state for ti in calm.get_task_instances()}
    assert states == {"check_drift": "success", "use_batch": "success"}
    drifted = dag.test(run_conf={"current": _batch(tmp_path, 1.0, seed=4)})
    states = {ti.task_id: ti.state for ti in drifted.get_task_instances()}
    assert states == {"check_drift": "success", "use_batch": "skipped"}
    assert [e["dataset_drift"] for e in _asset_events(drift_asset_uri(name))] == [True]  # event still emitted


class _Downloads:
    """Counts the profile downloads the MLflow client makes from the server (the calls go through)."""

    def __init__(self, monkeypatch):
        import requests

        self.urls: list[str] = []
        real = requests.Session.request

        def request(session, method, url, *args, **kwargs):
            if method.upper() == "GET" and "drift/profile" in url and "/artifacts/" in url:
                self.urls.append(url)
            return real(session, method, url, *args, **kwargs)

        monkeypatch.setattr(requests.Session, "request", request)


def test_profile_is_downloaded_once_per_worker_then_read_from_the_cache(mlflow_conn_server, tmp_path, monkeypatch):
    from mlops_provider.core.profile_store import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    downloads = _Downloads(monkeypatch)
    name, version, run_id = _champion(tmp_path)

    def check():
        return DriftCheckOperator(
            task_id="drift", reference=f"models:/{name}/{version}", current=_batch(tmp_path, 0.0), log_to_mlflow=False
        ).execute(_context())

    first = check()  # no profile yet: built from the features, logged as drift/profile.bin, cached
    assert first["profile_source"] == "built" and first["profile_logged"] == f"runs:/{run_id}/drift/profile.bin"
    tags = MlflowHook().get_client().get_model_version(name, version).tags
    assert len(tags["mlops.drift_profile_sha256"]) == 64
    before = len(downloads.urls)
    second = check()
    assert second["profile_source"] == "cache" and len(downloads.urls) == before  # no download
    assert second["columns"] == first["columns"]
    # another worker (an empty cache) downloads it once, then uses its cache
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache-2"))
    third = check()
    assert third["profile_source"] == "download" and len(downloads.urls) == before + 1
    assert downloads.urls[-1].endswith("drift/profile.bin")
    assert check()["profile_source"] == "cache" and len(downloads.urls) == before + 1
    assert third["columns"] == first["columns"]


def test_json_profile_of_older_versions_is_converted_once(mlflow_conn_server, tmp_path, monkeypatch):
    from mlops_provider.core.drift import build_profile
    from mlops_provider.core.profile_store import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    name, version, run_id = _champion(tmp_path, with_features=False)
    legacy = build_profile(_features(3000, seed=1), metadata={"model_name": name}).save(tmp_path / "j" / "profile.json")
    MlflowHook().get_client().log_artifact(run_id, str(legacy), artifact_path="drift")
    op = DriftCheckOperator(task_id="drift", reference=f"models:/{name}@champion", current=_batch(tmp_path, 0.0),
                            log_to_mlflow=False)
    first = op.execute(_context())
    assert first["profile_source"] == "converted" and first["profile_logged"] == f"runs:/{run_id}/drift/profile.bin"
    assert set(_artifacts(run_id, "drift")) == {"drift/profile.json", "drift/profile.bin"}  # written beside it
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache-2"))  # a fresh worker reads the binary one
    second = op.execute(_context())
    assert second["profile_source"] == "download" and "profile_logged" not in second
    assert second["columns"] == first["columns"]


def test_corrupt_stored_profile_is_refused_naming_the_artifact(mlflow_conn_server, tmp_path, monkeypatch):
    from mlops_provider.core.drift import build_profile
    from mlops_provider.core.profile_store import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    name, _, run_id = _champion(tmp_path, with_features=False)
    path = build_profile(_features(3000, seed=1), metadata={"model_name": name}).save(tmp_path / "b" / "profile.bin")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, as a bad disk or transfer would leave
    path.write_bytes(bytes(data))
    MlflowHook().get_client().log_artifact(run_id, str(path), artifact_path="drift")
    op = DriftCheckOperator(task_id="drift", reference=f"models:/{name}@champion", current=_batch(tmp_path, 0.0))
    with pytest.raises(MlopsConfigurationError, match=rf"runs:/{run_id}/drift/profile\.bin: .*checksum mismatch"):
        op.execute(_context())
    assert not list((tmp_path / "cache").rglob("*.bin"))  # nothing cached
