"""PromotionGateOperator end to end against a real MLflow (server and sqlite store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_provider.exceptions import (
    ChampionMovedError,
    MlflowConnectionError,
    MlopsConfigurationError,
    PromotionRejected,
)
from mlops_provider.hooks.mlflow import MlflowHook
from mlops_provider.operators.gate import PromotionGateOperator

FEATURES = ["x1", "x2"]
SPEC = {
    "thresholds": [
        {"metric": "accuracy", "value": {"lower_bound": 0.6}, "slices": ["overall", "region=*"]},
        {"metric": "accuracy", "change": {"direction": "higher_is_better", "absolute": 0.0}},
        {"metric": "f1", "change": {"direction": "higher_is_better", "relative": -0.02}, "slices": ["*"]},
    ],
    "fairness": [{"metric": "recall", "column": "region", "max_gap": 0.25}],
    "latency_p95_ms_per_1k_rows": 1000,
    "max_model_size_mb": 50,
}

# logged models are shared per tracking store (logging is slow; registering a version is cheap)
_LOGGED: dict[str, dict[str, str]] = {}


def _frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = ((x1 + 0.8 * x2 + rng.normal(scale=0.5, size=n)) > 0).astype(int)
    region = rng.choice(["EU", "US", "APAC"], size=n)
    return pd.DataFrame({"x1": x1, "x2": x2, "region": region, "label": y})


@pytest.fixture
def eval_path(tmp_path: Path) -> str:
    path = tmp_path / "eval.parquet"
    _frame(seed=1).to_parquet(path)
    return str(path)


def _logged_models(tracking_uri: str) -> dict[str, str]:
    """``{"strong": model_uri, "weak": model_uri}`` logged once per tracking store."""
    if tracking_uri in _LOGGED:
        return _LOGGED[tracking_uri]
    import mlflow
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    train = _frame(seed=0)
    X, y = train[FEATURES], train["label"]
    models = {
        "strong": LogisticRegression().fit(X, y),
        "weak": DummyClassifier(strategy="stratified", random_state=0).fit(X, y),
    }
    out = {}
    with MlflowHook().mlflow_env():
        mlflow.set_experiment("gate-tests")
        for key, model in models.items():
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(model, name="model")
            out[key] = info.model_uri
    _LOGGED[tracking_uri] = out
    return out


def _register(name: str, model_uri: str, alias: str | None = None) -> str:
    import mlflow

    with MlflowHook().mlflow_env():
        version = mlflow.register_model(model_uri, name).version
    if alias:
        MlflowHook().get_client().set_registered_model_alias(name, alias, str(version))
    return str(version)


def _aliases(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in MlflowHook().get_client().get_registered_model(name).aliases.items()}


def _tags(name: str, version: str) -> dict[str, str]:
    return dict(MlflowHook().get_client().get_model_version(name, version).tags)


def _gate(name: str, eval_path: str, **kwargs) -> PromotionGateOperator:
    defaults = dict(
        task_id="gate", model_name=name, eval_dataset=eval_path, target_column="label",
        feature_columns=FEATURES, gate_spec=SPEC,
    )
    return PromotionGateOperator(**{**defaults, **kwargs})


def _assert_small_json(result) -> None:
    text = json.dumps(result)
    assert len(text) < 2048, len(text)


def test_better_challenger_is_promoted_with_report_and_tags(mlflow_conn, eval_path, tmp_path):
    uris = _logged_models(mlflow_conn)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    v1 = _register(name, uris["weak"], "champion")
    v2 = _register(name, uris["strong"], "challenger")

    op = _gate(name, eval_path)
    result = op.execute({})

    _assert_small_json(result)
    assert result["passed"] is True and result["promoted"] is True
    assert result["basis"] == "compared"
    assert (result["challenger_version"], result["champion_version"]) == (v2, v1)
    aliases = _aliases(name)
    assert aliases["champion"] == v2
    assert aliases.get("previous-champion") == v1
    tags = _tags(name, v2)
    assert tags["gate.passed"] == "true" and tags["gate.compared_to"] == v1
    assert tags["gate.promoted"] == "true"
    assert json.loads(tags["gate.summary"])["n_failed"] == 0
    assert tags["gate.report_uri"] == result["report_uri"]

    # the report artifact: JSON with per-check results and metrics per slice, and a PNG chart
    import mlflow

    with MlflowHook().mlflow_env():
        local = mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="gate", dst_path=str(tmp_path))
    report = json.loads((Path(local) / "gate_report.json").read_text())
    assert report["decision"]["verdict"] == "blessed"
    assert {"overall", "region=EU", "region=US", "region=APAC"} <= set(report["metrics"]["challenger"])
    assert report["metrics"]["challenger"]["overall"]["latency_p95_ms_per_1k_rows"] > 0
    assert report["metrics"]["champion"]["overall"]["model_size_mb"] > 0
    kinds = {c["kind"] for c in report["decision"]["checks"]}
    assert kinds == {"value", "change", "fairness", "latency", "model_size"}
    png = (Path(local) / "gate_report.png").read_bytes()
    assert png[:4] == b"\x89PNG"
    assert int.from_bytes(png[16:20], "big") >= 1200  # readable: wide enough for values and threshold lines
    # the gate report link was recorded (server: UI URL; sqlite: artifact URI)
    assert op._mlops_link_urls["Gate report"]


def test_gate_reports_tags_and_promotes_on_a_basic_auth_server(mlflow_conn_auth, eval_path):
    """Every request of the gate (report run, version tags, compare-and-set) carries the credentials."""
    uris = _logged_models(mlflow_conn_auth)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    v1 = _register(name, uris["weak"], "champion")
    v2 = _register(name, uris["strong"], "challenger")

    result = _gate(name, eval_path).execute({})

    assert result["passed"] is True and result["promoted"] is True
    assert _aliases(name)["champion"] == v2 and _aliases(name)["previous-champion"] == v1
    tags = _tags(name, v2)
    assert tags["gate.passed"] == "true" and tags["gate.promoted"] == "true"
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ


def test_worse_challenger_is_rejected_and_nothing_moves(mlflow_conn, eval_path):
    uris = _logged_models(mlflow_conn)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    v1 = _register(name, uris["strong"], "champion")
    v2 = _register(name, uris["weak"], "challenger")

    with pytest.raises(PromotionRejected) as err:
        _gate(name, eval_path).execute({})
    text = str(err.value)
    assert "NOT BLESSED" in text and "change:accuracy[overall]" in text and "report:" in text
    assert _aliases(name)["champion"] == v1
    tags = _tags(name, v2)
    assert tags["gate.passed"] == "false" and "gate.promoted" not in tags


def test_on_failure_skip(mlflow_conn_sqlite, eval_path):
    from airflow.sdk.exceptions import AirflowSkipException

    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    _register(name, uris["strong"], "champion")
    _register(name, uris["weak"], "challenger")
    with pytest.raises(AirflowSkipException, match="NOT BLESSED"):
        _gate(name, eval_path, on_failure="skip").execute({})


def test_champion_moving_during_the_gate_promotes_nothing(mlflow_conn, eval_path):
    uris = _logged_models(mlflow_conn)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    _register(name, uris["weak"], "champion")
    v2 = _register(name, uris["strong"], "challenger")
    v3 = _register(name, uris["weak"])

    op = _gate(name, eval_path)
    evaluate = op._evaluate

    def evaluate_while_someone_promotes(*args, **kwargs):
        out = evaluate(*args, **kwargs)
        MlflowHook().get_client().set_registered_model_alias(name, "champion", v3)  # a concurrent promotion
        return out

    op._evaluate = evaluate_while_someone_promotes
    with pytest.raises(ChampionMovedError, match="nothing was changed"):
        op.execute({})
    assert _aliases(name)["champion"] == v3
    tags = _tags(name, v2)
    assert tags["gate.promoted"] == "false"
    # the report is complete all the same: JSON and chart uploaded, run finished
    client = MlflowHook().get_client()
    assert client.get_run(tags["gate.run_id"]).info.status == "FINISHED"
    assert sorted(f.path for f in client.list_artifacts(tags["gate.run_id"], "gate")) == [
        "gate/gate_report.json", "gate/gate_report.png"]


def test_same_version_changes_nothing(mlflow_conn_sqlite, eval_path):
    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    v1 = _register(name, uris["strong"], "champion")
    MlflowHook().get_client().set_registered_model_alias(name, "challenger", v1)

    result = _gate(name, eval_path).execute({})
    _assert_small_json(result)
    assert result["verdict"] == "same_version" and result["promoted"] is False
    assert _aliases(name) == {"champion": v1, "challenger": v1}
    assert not any(k.startswith("gate.") for k in _tags(name, v1))


def test_first_model_is_judged_on_value_thresholds_and_promoted(mlflow_conn_sqlite, eval_path):
    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    v1 = _register(name, uris["strong"], "challenger")

    result = _gate(name, eval_path).execute({})
    assert result["basis"] == "first_model" and result["passed"] and result["promoted"]
    assert result["champion_version"] is None
    assert _aliases(name)["champion"] == v1
    assert _tags(name, v1)["gate.compared_to"] == "none"


def test_empty_slice_is_reported_and_fails_when_configured(mlflow_conn_sqlite, eval_path):
    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    _register(name, uris["weak"], "champion")
    _register(name, uris["strong"], "challenger")
    spec = {"thresholds": [{"metric": "accuracy", "value": {"lower_bound": 0.5}, "slices": ["region=MARS"]}]}

    with pytest.raises(PromotionRejected, match=r"empty_slice:accuracy\[region=MARS\] slice has no rows"):
        _gate(name, eval_path, gate_spec=spec).execute({})
    lenient = {
        "thresholds": [{"metric": "accuracy", "value": {"lower_bound": 0.5}, "slices": ["overall", "region=MARS"]}],
        "fail_on_empty_slice": False,
    }
    result = _gate(name, eval_path, gate_spec=lenient, on_pass="none").execute({})
    assert result["passed"] is True and result["n_checks"] == 2  # overall value check + reported empty slice
    import mlflow

    with MlflowHook().mlflow_env():
        report = mlflow.artifacts.load_dict(result["report_uri"])
    empty = [c for c in report["decision"]["checks"] if c["kind"] == "empty_slice"]
    assert empty == [dict(empty[0], slice="region=MARS", passed=True)]


def test_unknown_metric_lists_available_ones(mlflow_conn_sqlite, eval_path):
    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    _register(name, uris["strong"], "challenger")
    spec = {"thresholds": [{"metric": "f1", "value": {"lower_bound": 0.5}}]}
    with pytest.raises(MlopsConfigurationError, match=r"\['f1'\].*available metrics: \['accuracy'\]"):
        _gate(name, eval_path, gate_spec=spec, metrics=["accuracy"]).execute({})
    with pytest.raises(MlopsConfigurationError, match="Unknown metric 'acuracy'"):
        _gate(name, eval_path, gate_spec={"thresholds": [{"metric": "acuracy", "value": {"lower_bound": 0}}]}).execute({})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gate_spec": {}}, "no thresholds"),
        ({"on_pass": "deploy"}, "on_pass must be one of 'promote', 'none'; got 'deploy'"),
        ({"on_failure": "quarantine"}, "on_failure must be one of 'fail', 'skip', 'warn'; got 'quarantine'"),
        ({"on_fail": "skip"}, "argument 'on_fail' was renamed to 'on_failure'; pass on_failure='skip'"),
        ({"champion": "3"}, "champion must be an alias"),
        ({"latency_chunks": 0}, "latency_chunks must be an integer >= 1"),
        (
            {"gate_spec": {"thresholds": [{"metric": "accuracy", "change": {"direction": "up"}}]}},
            r"change direction must be one of \['higher_is_better', 'lower_is_better'\], got 'up'",
        ),
        ({"gate_spec": {"thresholds": [{"metric": "accuracy", "value": {"lower_bound": "0.8"}}]}}, "must be a number"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs, match):
    """Raised by the constructor: a typo fails the DAG file's import, before any run or request."""
    with pytest.raises(MlopsConfigurationError, match=match):
        _gate("m", "/nonexistent.parquet", **kwargs)


def test_templated_arguments_are_checked_after_rendering(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": "http://127.0.0.1:9"}))
    spec = {"thresholds": [{"metric": "accuracy", "change": {"direction": "{{ params.direction }}"}}]}
    op = _gate("m", "/nonexistent.parquet", gate_spec=spec)  # not checked at parse time: it is a template
    op.gate_spec = {"thresholds": [{"metric": "accuracy", "change": {"direction": "up"}}]}  # as rendered
    with pytest.raises(MlopsConfigurationError, match="change direction must be one of"):
        op.execute({})


def test_unreachable_registry_fails_clearly_and_is_retryable(monkeypatch, eval_path):
    from airflow.sdk.exceptions import AirflowFailException

    from tests.helpers.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "mlflow", "host": url, "extra": {"max_retries": 0, "timeout": 2}}),
    )
    with pytest.raises(MlflowConnectionError, match="Cannot reach MLflow") as err:
        _gate("m", eval_path).execute({})
    assert not isinstance(err.value, AirflowFailException)  # Airflow retries it (task retries), then fails


DAG_FILE = """
from airflow.sdk import DAG
from mlops_provider.operators.gate import PromotionGateOperator

with DAG(dag_id="gate_e2e", schedule=None) as dag:
    PromotionGateOperator(
        task_id="gate",
        model_name="{{ dag_run.conf['model_name'] }}",
        eval_dataset="{{ dag_run.conf['eval_path'] }}",
        target_column="label",
        feature_columns=["x1", "x2"],
        gate_spec={"thresholds": [{"metric": "accuracy", "value": {"lower_bound": 0.6}, "slices": ["overall", "region=*"]}]},
        on_pass="none",
    )
"""


def test_dag_run_end_to_end(mlflow_conn_sqlite, airflow_db, eval_path, tmp_path):
    """The operator inside a real DAG run (``dag.test()`` on the migrated metadata DB), templated from conf."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    _register(name, uris["weak"], "champion")
    v2 = _register(name, uris["strong"], "challenger")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "gate_e2e_dag.py").write_text(DAG_FILE)
    bag = DagBag(dag_folder=str(dags))
    assert bag.import_errors == {}
    # dag.test() needs the DAG serialised in the metadata DB; it only syncs the configured dags folder
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, bundle_name="dags-folder", bundle_version=None)
    run = bag.dags["gate_e2e"].test(run_conf={"model_name": name, "eval_path": eval_path})
    assert run.state == "success"
    assert _aliases(name)["champion"] != v2  # on_pass="none" leaves promotion to a later task
    assert _tags(name, v2)["gate.passed"] == "true"
    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id="gate_e2e", run_id=run.run_id, task_id="gate", key="return_value").one()
        result = XComModel.deserialize_value(row)
    _assert_small_json(result)
    assert result["verdict"] == "blessed" and result["challenger_version"] == v2
    _assert_lineage(result["run_id"], "gate_e2e", run.run_id, "gate")


def _assert_lineage(gate_run_id: str, dag_id: str, run_id: str, task_id: str) -> None:
    """The gate's report run carries the Airflow lineage tags of training runs (test_training.py)."""
    from mlops_provider._airflow_tags import LINEAGE_TAGS

    tags = MlflowHook().get_client().get_run(gate_run_id).data.tags
    assert {k: tags.get(k) for k in LINEAGE_TAGS} == {
        "mlops.dag_id": dag_id, "mlops.run_id": run_id, "mlops.task_id": task_id,
        "mlops.map_index": "-1", "mlops.try_number": "1",
    }


def test_operator_module_is_parse_safe():
    code = (
        "import sys; import mlops_provider.operators.gate; "
        "heavy = [m for m in ('pandas','numpy','sklearn','scipy','mlflow','matplotlib') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "provider")})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("kind", ["classifier", "regressor", "pipeline"])
def test_prediction_cache_gives_the_same_metrics_as_direct_scoring(kind):
    """Predicting once and slicing gives exactly what the training metric code gives per slice."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlops_provider.core.metrics import compute_metrics
    from mlops_provider.operators.gate import _metrics_by_slice, _slice_indices

    frame = _frame(n=1500, seed=3)
    X = frame[FEATURES]
    if kind == "regressor":
        y, model, names = frame["x1"] * 2 + frame["x2"], LinearRegression(), ["rmse", "mae", "r2"]
        X = frame[["x2"]]
    else:
        y, names = frame["label"], ["accuracy", "f1", "roc_auc", "log_loss", "recall"]
        model = LogisticRegression() if kind == "classifier" else make_pipeline(StandardScaler(), LogisticRegression())
    model.fit(X, y)
    got = _metrics_by_slice(model, X, y, names, _slice_indices(frame, ["region"]))
    assert got["overall"] == pytest.approx({**compute_metrics(model, X, y, names), "n_rows": len(X)}, abs=1e-12)
    idx = np.flatnonzero(frame["region"] == "EU")
    expected = compute_metrics(model, X.iloc[idx], y.iloc[idx], names)
    assert got["region=EU"] == pytest.approx({**expected, "n_rows": len(idx)}, abs=1e-12)


# --- bad evaluation data is named, never read as a failed threshold


def _corrupt(tmp_path: Path, change, suffix: str = "parquet") -> str:
    frame = _frame(seed=1)
    change(frame)
    path = tmp_path / f"bad_eval.{suffix}"
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    return str(path)


def _set(column, rows, value):
    def change(frame):
        if frame[column].dtype.kind == "f" and isinstance(value, str):
            frame[column] = frame[column].astype(object)
        frame.loc[rows, column] = value

    return change


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_set("x2", slice(0, 6), np.nan), r"'x2' has 7 missing value\(s\) \(NaN\) of 2000 rows"),
        (_set("x1", [3, 9], np.inf), r"'x1' has 2 infinite value\(s\) of 2000 rows"),
        (_set("x2", [5, 6, 7], "unknown"), r"'x2' \(object\) has 3 non-numeric value\(s\) of 2000 rows, e.g. 'unknown'"),
        (lambda f: f.__setitem__("x2", pd.date_range("2020-01-01", periods=len(f), freq="h")), r"'x2' is a datetime column"),
        (lambda f: f.__setitem__("x2", pd.date_range("2020-01-01", periods=len(f), freq="h")), r"'x2' holds dates as text"),
    ],
    ids=["nan", "inf", "non_numeric", "datetime", "dates_as_text"],
)
def test_unscorable_evaluation_columns_are_named(mlflow_conn_sqlite, tmp_path, request, change, match):
    suffix = "csv" if request.node.callspec.id in ("non_numeric", "dates_as_text") else "parquet"
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_provider.exceptions import DatasetError

    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    v1 = _register(name, uris["weak"], "champion")
    v2 = _register(name, uris["strong"], "challenger")
    with pytest.raises(DatasetError, match=match) as err:
        _gate(name, _corrupt(tmp_path, change, suffix)).execute({})
    assert f"the challenger (version {v2}) model cannot score it" in str(err.value)
    assert isinstance(err.value, AirflowFailException)
    assert _aliases(name)["champion"] == v1 and not any(k.startswith("gate.") for k in _tags(name, v2))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_set("label", [1, 2, 3], np.nan), r"evaluation column 'label' has 3 missing label\(s\) \(NaN\) of 2000 rows"),
        (
            lambda f: f.__setitem__("label", f["label"].map({0: "no", 1: "yes"})),
            r"evaluation column 'label' holds '(yes|no)', '(yes|no)' \(object\), none of which the models predict: "
            r"their classes are 0, 1",
        ),
    ],
    ids=["nan_label", "text_labels"],
)
def test_unusable_target_is_named(mlflow_conn_sqlite, tmp_path, change, match):
    from mlops_provider.exceptions import DatasetError

    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    _register(name, uris["weak"], "champion")
    _register(name, uris["strong"], "challenger")
    with pytest.raises(DatasetError, match=match):
        _gate(name, _corrupt(tmp_path, change)).execute({})


def test_single_class_target_says_roc_auc_is_undefined(mlflow_conn_sqlite, tmp_path):
    """Not a failed threshold (PromotionRejected): an input the gate cannot judge, with the reason."""
    from mlops_provider.exceptions import DatasetError

    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    v1 = _register(name, uris["weak"], "champion")
    v2 = _register(name, uris["strong"], "challenger")
    frame = _frame(seed=1).rename(columns={"label": "defaulted"})
    frame["defaulted"] = 0
    path = tmp_path / "one_class.parquet"
    frame.to_parquet(path)
    spec = {"thresholds": [{"metric": "roc_auc", "value": {"lower_bound": 0.7}}, {"metric": "accuracy", "value": {"lower_bound": 0.5}}]}
    with pytest.raises(DatasetError, match=r"^roc_auc is undefined: 'defaulted' has one class in the evaluation data \(0 in all 2000 rows\)") as err:
        _gate(name, str(path), target_column="defaulted", gate_spec=spec).execute({})
    assert not isinstance(err.value, PromotionRejected)
    assert _aliases(name)["champion"] == v1 and "gate.passed" not in _tags(name, v2)
    # a metric that is defined on one class is judged as usual
    result = _gate(
        name, str(path), target_column="defaulted", on_pass="none",
        gate_spec={"thresholds": [{"metric": "accuracy", "value": {"lower_bound": 0.0}}]},
    ).execute({})
    assert result["passed"] is True


def test_on_failure_warn_records_the_refusal_and_succeeds(mlflow_conn_sqlite, eval_path):
    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    v1 = _register(name, uris["strong"], "champion")
    v2 = _register(name, uris["weak"], "challenger")
    result = _gate(name, eval_path, on_failure="warn").execute({})
    _assert_small_json(result)
    assert result["passed"] is False and result["verdict"] == "not_blessed" and result["promoted"] is False
    assert result["run_id"] and result["report_uri"]
    assert _aliases(name)["champion"] == v1 and _tags(name, v2)["gate.passed"] == "false"


REFUSING_DAG_FILE = """
from airflow.sdk import DAG
from mlops_provider.operators.gate import PromotionGateOperator

with DAG(dag_id="gate_refuses", schedule=None) as dag:
    for policy in ("fail", "skip"):
        PromotionGateOperator(
            task_id=f"gate_{policy}",
            model_name="{{ dag_run.conf['model_name'] }}",
            eval_dataset="{{ dag_run.conf['eval_path'] }}",
            target_column="label",
            feature_columns=["x1", "x2"],
            gate_spec={"thresholds": [{"metric": "accuracy", "change": {"direction": "higher_is_better", "absolute": 0.0}}]},
            on_pass="none",
            on_failure=policy,
        )
"""


def test_refused_gate_records_its_verdict_like_a_pass(mlflow_conn_sqlite, airflow_db, eval_path, tmp_path):
    """Issue #14: XCom, MLflow run and version tags hold the decision whether the gate passes or fails."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    v1 = _register(name, uris["strong"], "champion")
    v2 = _register(name, uris["weak"], "challenger")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "gate_refuses_dag.py").write_text(REFUSING_DAG_FILE)
    bag = DagBag(dag_folder=str(dags))
    assert bag.import_errors == {}
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, bundle_name="dags-folder", bundle_version=None)
    run = bag.dags["gate_refuses"].test(run_conf={"model_name": name, "eval_path": eval_path})
    client = MlflowHook().get_client()
    ran: set[str] = set()
    with create_session() as session:
        states = {
            ti.task_id: ti.state
            for ti in session.query(TaskInstance).filter_by(dag_id="gate_refuses", run_id=run.run_id)
        }
        assert states == {"gate_fail": "failed", "gate_skip": "skipped"}
        for task_id in states:
            row = session.query(XComModel).filter_by(
                dag_id="gate_refuses", run_id=run.run_id, task_id=task_id, key="return_value"
            ).one()
            result = XComModel.deserialize_value(row)
            _assert_small_json(result)
            assert result["verdict"] == "not_blessed" and result["passed"] is False and result["promoted"] is False
            assert (result["challenger_version"], result["champion_version"]) == (v2, v1)
            assert result["n_failed"] >= 1 and result["failed"][0].startswith("change:accuracy[overall]")
            run_info = client.get_run(result["run_id"])
            assert run_info.data.tags["mlops.verdict"] == "not_blessed" and run_info.info.status == "FINISHED"
            _assert_lineage(result["run_id"], "gate_refuses", run.run_id, task_id)
            ran.add(result["run_id"])
    assert _tags(name, v2)["gate.passed"] == "false" and _aliases(name)["champion"] == v1
    # the version's tags name the (last) refusing gate run and its verdict, as for a pass
    assert _tags(name, v2)["gate.run_id"] in ran and len(ran) == 2
    assert json.loads(_tags(name, v2)["gate.summary"])["verdict"] == "not_blessed"


def test_one_class_slice_names_the_reason_in_its_failed_check(mlflow_conn_sqlite, tmp_path):
    uris = _logged_models(mlflow_conn_sqlite)
    name = f"gate-{uuid.uuid4().hex[:8]}"
    _register(name, uris["strong"], "challenger")
    frame = _frame(seed=1)
    frame.loc[frame["region"] == "EU", "label"] = 1
    path = tmp_path / "eu_one_class.parquet"
    frame.to_parquet(path)
    spec = {"thresholds": [{"metric": "roc_auc", "value": {"lower_bound": 0.5}, "slices": ["overall", "region=*"]}]}
    with pytest.raises(PromotionRejected) as err:
        _gate(name, str(path), gate_spec=spec).execute({})
    n_eu = int((frame["region"] == "EU").sum())
    assert (
        f"value:roc_auc[region=EU] metric is NaN (roc_auc is undefined: 'label' has one class in slice region=EU "
        f"(1 in all {n_eu} rows))"
    ) in str(err.value)
