"""ModelPerformanceOperator: join by id, live metrics, decay vs the champion's MLflow run, Asset event via alias.

Real MLflow store (``mlflow_conn_sqlite``); the champion version is created straight in the registry
from a run with evaluation metrics (no model artifact is needed to read metrics).
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pytest

from mlops_provider.core.performance import compare_with_champion, join_labels, live_metrics
from mlops_provider.operators.performance import ModelPerformanceOperator, performance_decay_uri


def test_join_reports_unmatched_and_duplicates():
    labels = pd.DataFrame({"id": [1, 2, 3, 4], "label": [1, 0, 1, 0]})
    preds = pd.DataFrame({"id": [1, 2, 2, 3, 9], "prediction": [1, 1, 0, 1, 0], "model_version": ["3"] * 5})
    j = join_labels(labels, preds, ["id"], "label", model_version="3")
    assert j.n_joined == 3 and j.n_unmatched_labels == 1 and j.unmatched_label_ids == [4]
    assert j.n_duplicate_prediction_ids == 1  # id 2 scored twice: the last prediction counts
    assert j.frame.set_index("id").loc[2, "prediction"] == 0
    json.dumps(j.summary())
    # predictions of another version are not compared with this champion
    assert join_labels(labels, preds, ["id"], "label", model_version="4").n_joined == 0


def test_live_metrics_and_comparison_orientation():
    values, skipped = live_metrics([1, 0, 1, 1], [1, 0, 0, 1], ["accuracy", "roc_auc"], n_classes=2)
    assert values == {"accuracy": 0.75} and "roc_auc" in skipped
    reg, _ = live_metrics([1.0, 2.0, 3.0], [1.5, 2.0, 2.5], ["rmse"])
    comp = {c.metric: c for c in compare_with_champion({"accuracy": 0.75, **reg}, {"accuracy": 0.9, "rmse": 0.1})}
    assert comp["accuracy"].decayed and comp["accuracy"].degradation == pytest.approx(0.15)
    assert comp["rmse"].decayed and not comp["rmse"].greater_is_better
    ok = compare_with_champion({"accuracy": 0.88}, {"accuracy": 0.9}, tolerance=0.05)
    assert not ok[0].decayed


@pytest.fixture
def champion(mlflow_conn_sqlite):
    from mlops_provider.hooks.mlflow import MlflowHook

    name = f"perf-{uuid.uuid4().hex[:8]}"
    client = MlflowHook().get_client()
    exp = client.create_experiment(f"exp-{name}")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "accuracy", 0.92)
    client.log_metric(run.info.run_id, "f1", 0.91)
    client.set_terminated(run.info.run_id)
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", mv.version)
    return name, str(mv.version)


def _context():
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"run_id": "test_run", "outlet_events": OutletEventAccessors()}


def _write(tmp_path, version, accuracy, n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < accuracy, y, 1 - y)
    ids = np.arange(n)
    pd.DataFrame({"id": ids, "prediction": pred, "model_version": version}).to_parquet(tmp_path / "pred.parquet")
    labels = pd.DataFrame({"id": np.append(ids, [10_001, 10_002]), "label": np.append(y, [1, 0])})
    labels.to_csv(tmp_path / "labels.csv", index=False)


def _op(name, tmp_path, **kw):
    return ModelPerformanceOperator(
        task_id="performance", model_name=name, labels=str(tmp_path / "labels.csv"),
        predictions=str(tmp_path / "pred.parquet"), **kw,
    )


def test_decay_emits_asset_event_with_figures(champion, tmp_path):
    name, version = champion
    from types import SimpleNamespace

    _write(tmp_path, version, accuracy=0.6)
    ctx = _context()
    ctx["ti"] = SimpleNamespace(dag_id="performance_monitor__m", task_id="performance", run_id="test_run",
                                map_index=-1, try_number=1)
    result = _op(name, tmp_path).execute(ctx)
    assert result["verdict"] == "decay" and result["decayed"] is True
    assert result["join"]["n_unmatched_labels"] == 2 and result["join"]["unmatched_label_ids"] == [10_001, 10_002]
    assert result["event"]["asset"] == performance_decay_uri(name)
    assert result["event"]["extra"]["reason"] == "performance_decay"
    assert len(json.dumps(result)) < 10_000
    (alias_events,) = [acc for acc in ctx["outlet_events"]._dict.values()]
    (asset_event,) = alias_events.asset_alias_events
    assert asset_event.dest_asset_key.uri == performance_decay_uri(name)
    assert asset_event.extra["metric"] in ("accuracy", "f1")
    assert asset_event.extra["model_version"] == version and asset_event.extra["tolerance"] == 0.05
    # the same producer shape as the drift event (test_drift_operator.py)
    assert asset_event.extra["producer"] == {"dag_id": "performance_monitor__m", "run_id": "test_run",
                                             "task_id": "performance", "map_index": -1}


def test_no_decay_emits_nothing(champion, tmp_path):
    name, version = champion
    _write(tmp_path, version, accuracy=0.95)
    ctx = _context()
    result = _op(name, tmp_path).execute(ctx)
    assert result["verdict"] == "ok" and "event" not in result
    assert all(not acc.asset_alias_events for acc in ctx["outlet_events"]._dict.values())


def test_too_few_labels_gives_no_verdict(champion, tmp_path):
    name, version = champion
    _write(tmp_path, version, accuracy=0.1, n=10)
    assert _op(name, tmp_path).execute(_context())["verdict"] == "insufficient_labels"


# --- no silent answers: labels that cannot be compared, runs with no metric, arguments checked at parse time


def _write_frames(tmp_path, labels: list, predictions: list, version: str) -> None:
    ids = list(range(len(labels)))
    pd.DataFrame({"id": ids, "prediction": predictions, "model_version": version}).to_parquet(tmp_path / "pred.parquet")
    pd.DataFrame({"id": ids, "label": labels}).to_csv(tmp_path / "labels.csv", index=False)


@pytest.mark.parametrize(
    ("labels", "predictions", "match"),
    [
        # text labels against the numeric classes the model predicts: once read as 'ok' with no metric
        (["yes", "no"] * 50, [1, 0] * 50, r"'label' \(object: 'yes', 'no'\).*'prediction' \(int64: 1, 0\).*different types"),
        # same kind, other spelling: nothing can match
        (["Yes", "No"] * 50, ["yes", "no"] * 50, r"'label' \(object: 'Yes', 'No'\).*'prediction' \(object.*share no value"),
        # missing predictions
        ([1, 0] * 50, [1.0, None] * 50, r"50 of 100 joined predictions in 'prediction' are missing"),
    ],
)
def test_labels_that_cannot_be_compared_fail_naming_columns_and_types(champion, tmp_path, labels, predictions, match):
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_provider.exceptions import DatasetError

    name, version = champion
    _write_frames(tmp_path, labels, predictions, version)
    with pytest.raises(DatasetError, match=match) as err:
        _op(name, tmp_path).execute(_context())
    assert isinstance(err.value, AirflowFailException)  # a retry cannot fix the data


def test_regression_labels_that_are_not_numbers_are_named(champion, tmp_path):
    from mlops_provider.exceptions import DatasetError

    name, version = champion
    _write_frames(tmp_path, [1.5, "unknown", 2.25, 3.0] * 25, [1.4, 2.0, 2.2, 3.1] * 25, version)
    with pytest.raises(DatasetError, match=r"'label' \(object\) has 25 non-numeric value\(s\), e.g. 'unknown'"):
        _op(name, tmp_path, problem_type="regression", metrics=["rmse"]).execute(_context())


def test_a_run_where_no_metric_could_be_computed_fails(champion, tmp_path):
    from mlops_provider.exceptions import MlopsConfigurationError

    name, version = champion
    _write(tmp_path, version, accuracy=0.9)
    with pytest.raises(MlopsConfigurationError, match=r"No metric could be computed from labels 'label' \(int64\).*roc_auc: needs predicted probabilities"):
        _op(name, tmp_path, metrics=["roc_auc"]).execute(_context())


def test_no_verdict_when_the_champion_logged_none_of_the_live_metrics(champion, tmp_path):
    from mlops_provider.exceptions import MlopsConfigurationError

    name, version = champion
    _write(tmp_path, version, accuracy=0.9)
    with pytest.raises(MlopsConfigurationError, match=r"Nothing to compare: live metrics \['balanced_accuracy'\].*logged none"):
        _op(name, tmp_path, metrics=["balanced_accuracy"]).execute(_context())


def test_string_labels_are_scored_when_predictions_use_them(champion, tmp_path):
    name, version = champion
    _write_frames(tmp_path, ["yes", "no"] * 50, ["yes", "no"] * 45 + ["no", "yes"] * 5, version)
    result = _op(name, tmp_path).execute(_context())
    assert result["problem_type"] == "classification" and result["live_metrics"]["accuracy"] == pytest.approx(0.9)
    assert result["verdict"] == "ok" and result["join"]["n_missing_labels"] == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tolerance": -0.1}, r"tolerance must be a number >= 0; got -0.1"),
        ({"tolerance": "5%"}, r"tolerance must be a number"),
        ({"absolute_tolerance": float("nan")}, r"absolute_tolerance must be a number >= 0"),
        ({"min_rows": 0}, r"min_rows must be an integer >= 1"),
        ({"problem_type": "classifier"}, r"problem_type must be one of 'classification', 'regression' or None"),
        ({"only_alias_version": "yes"}, r"only_alias_version must be one of True, False"),
        ({"id_columns": []}, r"id_columns is empty"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs, match):
    from mlops_provider.exceptions import MlopsConfigurationError

    with pytest.raises(MlopsConfigurationError, match=match):
        ModelPerformanceOperator(task_id="p", model_name="m", labels="l.csv", predictions="p.parquet", **kwargs)


def test_id_columns_of_different_types_are_named():
    from mlops_provider.exceptions import DatasetError

    labels = pd.DataFrame({"id": [1, 2, 3], "label": [1, 0, 1]})
    preds = pd.DataFrame({"id": ["1", "2", "3"], "prediction": [1, 0, 1]})
    with pytest.raises(DatasetError, match=r"Id column 'id' cannot be joined: labels 'id' \(int64: 1, 2, 3\) and predictions 'id' \(object: '1', '2', '3'\)"):
        join_labels(labels, preds, ["id"], "label")
    # numbers of different widths join as numbers
    assert join_labels(labels, preds.assign(id=[1.0, 2.0, 3.0]), ["id"], "label").n_joined == 3
def test_each_check_logs_a_monitoring_run_the_mlops_view_reads(champion, tmp_path):
    """Live metrics next to the champion's, the verdict and the batch's URIs: the model timeline's data."""
    from mlops_provider.hooks.mlflow import MlflowHook
    from mlops_provider.links.mlflow import _LINKS_ATTR

    name, version = champion
    _write(tmp_path, version, accuracy=0.6)
    op = _op(name, tmp_path)
    result = op.execute(_context())
    run = MlflowHook().get_client().get_run(result["monitoring_run_id"])
    assert run.data.tags["mlops.kind"] == "performance_check" and run.data.tags["mlops.model_name"] == name
    assert run.data.tags["mlops.verdict"] == "decay" and run.data.tags["mlops.model_version"] == version
    assert run.data.tags["mlops.predictions_uri"] == str(tmp_path / "pred.parquet")
    assert run.data.metrics["champion.accuracy"] == 0.92
    assert 0.5 < run.data.metrics["live.accuracy"] < 0.7
    assert getattr(op, _LINKS_ATTR)["MLflow run"].endswith(result["monitoring_run_id"])
    # a retry of the same task instance reuses the run
    assert op.execute(_context())["monitoring_run_id"] == result["monitoring_run_id"]
