"""Prediction drift (issue 18 section 1) and per-batch quality figures (section 4).

Core: outputs of a real scikit-learn model, drifted against the same; parity with Evidently 0.7's
``ValueDrift`` on the output columns typed as Evidently types them from a ``DataDefinition`` (class
categorical, probability and score numerical); the feature check ignores the stored outputs; quality
figures.  Operator: a real MLflow store and a real model version whose run holds the outputs logged by
``TrainModelOperator``'s own code; the prediction drift event; the retraining reason.
"""

from __future__ import annotations

import json
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_provider.core import drift as D
from mlops_provider.core.prediction_drift import (
    PREDICTION_COLUMN,
    PROBA_COLUMN,
    OutputSpec,
    add_outputs,
    check_prediction_drift,
    has_outputs,
    model_outputs,
    output_spec_for,
)
from mlops_provider.core.quality import batch_quality, quality_metrics

INVERSE = {v: k for k, v in D.EVIDENTLY_DISPLAY_NAMES.items()}


def _features(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": rng.normal(50 - 25 * shift, 10, n),
            "debt": rng.normal(20 + 15 * shift, 5, n),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2]),
        }
    )


def _labels(X: pd.DataFrame, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed + 100)
    z = -0.08 * (X["income"] - 50) + 0.2 * (X["debt"] - 20) + rng.normal(0, 1, len(X))
    return pd.Series((z > 0).astype("int64"), name="default")


def _classifier(n: int = 2000):
    from sklearn.linear_model import LogisticRegression

    X = _features(n, seed=1)[["income", "debt"]]
    return LogisticRegression(max_iter=500).fit(X, _labels(X, 1)), X


# ---------------------------------------------------------------------------------------------- core


def test_drifted_outputs_are_found_and_the_same_outputs_are_not():
    model, X = _classifier()
    spec = output_spec_for(model, "classification")
    assert spec.class_index == 1 and spec.positive_label == 1  # the last class, as training's default
    assert spec.types() == {PREDICTION_COLUMN: D.CAT, PROBA_COLUMN: D.NUM}
    profile = add_outputs(D.build_profile(X), model_outputs(model, _features(800, 2)[["income", "debt"]], spec), spec)
    assert has_outputs(profile)

    same = check_prediction_drift(profile, model_outputs(model, _features(1500, 3)[["income", "debt"]], spec))
    assert not same.drift and set(same.columns) == {PREDICTION_COLUMN, PROBA_COLUMN}
    assert same.columns[PREDICTION_COLUMN].method == "z" and same.columns[PROBA_COLUMN].method == "ks"

    shifted = check_prediction_drift(profile, model_outputs(model, _features(1500, 4, 1.0)[["income", "debt"]], spec))
    assert shifted.drift and set(shifted.drifted_outputs) == {PREDICTION_COLUMN, PROBA_COLUMN}
    summary = shifted.to_summary()
    assert summary["status"] == "checked" and summary["drift"] is True
    assert summary["outputs"][PROBA_COLUMN]["output"] == "probability of 1"
    assert "PREDICTION DRIFT" in shifted.verdict_line()
    json.dumps(summary)

    # the feature check never sees the reserved output columns
    features = D.check_drift(profile, _features(1500, 3)[["income", "debt"]])
    assert set(features.columns) == {"income", "debt"} and not features.missing_columns


def test_regression_score_is_numerical_and_multiclass_has_one_probability_per_class():
    from sklearn.linear_model import LinearRegression, LogisticRegression

    X = _features(1500, 1)[["income", "debt"]]
    reg = LinearRegression().fit(X, X["income"] * 0.5 + X["debt"])
    spec = output_spec_for(reg, "regression")
    assert spec.types() == {PREDICTION_COLUMN: D.NUM}
    ref = model_outputs(reg, X, spec)
    result = check_prediction_drift(ref, model_outputs(reg, _features(1500, 5, 1.0)[["income", "debt"]], spec), spec=spec)
    assert result.drift and result.columns[PREDICTION_COLUMN].method == "wasserstein"
    assert result.spec.label(PREDICTION_COLUMN) == "score"

    labels = pd.cut(X["income"], 3, labels=["low", "mid", "high"]).astype(str)
    multi = LogisticRegression(max_iter=500).fit(X, labels)
    mspec = output_spec_for(multi, "classification")
    names = [f"{D.PROBA_CLASS_PREFIX}{c}" for c in multi.classes_]
    assert mspec.class_index is None and mspec.classes == list(multi.classes_)
    assert mspec.types() == {PREDICTION_COLUMN: D.CAT, **dict.fromkeys(names, D.NUM)}
    assert OutputSpec.from_dict(json.loads(json.dumps(mspec.to_dict()))) == mspec
    out = model_outputs(multi, X, mspec)
    assert np.allclose(out[names].to_numpy(), multi.predict_proba(X))
    profile = add_outputs(D.build_profile(X), out, mspec)
    # the feature check never sees the per-class probabilities either, on every path
    assert set(D.check_drift(profile, X).columns) == {"income", "debt"}
    shifted = check_prediction_drift(profile, model_outputs(multi, _features(1500, 5, 1.0)[["income", "debt"]], mspec))
    assert shifted.drift and set(shifted.columns) == {PREDICTION_COLUMN, *names}
    assert shifted.to_summary()["outputs"][f"{D.PROBA_CLASS_PREFIX}high"]["output"] == "probability of 'high'"
    assert not check_prediction_drift(profile, model_outputs(multi, _features(1500, 6)[["income", "debt"]], mspec)).drift
    with pytest.raises(D.DriftInputError, match="applies to binary classifiers"):
        output_spec_for(multi, "classification", positive_label="high")
    # a model whose classes differ from the stored ones is refused, not compared column by column
    other = LogisticRegression(max_iter=500).fit(X, labels.replace("high", "top"))
    with pytest.raises(D.DriftInputError, match="one probability per class"):
        model_outputs(other, X, mspec)
    # a class is categorical even with more than 10 integer labels (Evidently would infer numerical)
    many = OutputSpec("classification")
    ref12 = pd.DataFrame({PREDICTION_COLUMN: np.arange(1200) % 12})
    out = check_prediction_drift(ref12, ref12.sample(frac=1.0, random_state=0), spec=many)
    assert out.columns[PREDICTION_COLUMN].column_type == D.CAT and out.columns[PREDICTION_COLUMN].method == "jensenshannon"


def test_positive_label_picks_the_probability_column_and_bad_input_is_refused():
    model, X = _classifier()
    spec = output_spec_for(model, "classification", positive_label="0")  # matched by its text
    assert spec.class_index == 0 and spec.positive_label == 0
    out = model_outputs(model, X, spec)
    assert np.allclose(out[PROBA_COLUMN], model.predict_proba(X)[:, 0])
    with pytest.raises(D.DriftInputError, match="not one of the model's classes"):
        output_spec_for(model, "classification", positive_label="yes")
    with pytest.raises(D.DriftInputError, match="holds no model outputs"):
        check_prediction_drift(D.build_profile(X), out)
    with pytest.raises(D.DriftInputError, match="spec is required"):
        check_prediction_drift(out, out)
    with pytest.raises(D.DriftInputError, match="lack column"):
        check_prediction_drift(out, out[[PREDICTION_COLUMN]], spec=spec)
    assert OutputSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# ---------------------------------------------------------------------------------------- parity


def evidently_value_drift(reference: pd.DataFrame, current: pd.DataFrame, types: dict[str, str]) -> dict:
    """Evidently's ``ValueDrift`` per output column, with the column types given by a DataDefinition."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(
        numerical_columns=[c for c, t in types.items() if t == D.NUM],
        categorical_columns=[c for c, t in types.items() if t == D.CAT],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([ValueDrift(column=c) for c in types]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        ).dict()
    out = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        method = INVERSE[config["method"]]
        score, threshold = float(metric["value"]), float(config["threshold"])
        out[config["column"]] = (method, score, threshold, D.is_drifted(method, score, threshold))
    return out


@pytest.mark.parametrize("ref_rows", [300, 2500])  # p-value tests up to 1000 reference rows, distances above
@pytest.mark.parametrize("shift", [0.0, 0.4, 1.0])
def test_output_columns_match_evidently(ref_rows, shift):
    model, _ = _classifier()
    spec = output_spec_for(model, "classification")
    reference = model_outputs(model, _features(ref_rows, 7)[["income", "debt"]], spec)
    current = model_outputs(model, _features(1200, 8, shift)[["income", "debt"]], spec)
    ours = check_prediction_drift(add_outputs(D.build_profile(_features(50, 9)), reference, spec), current)
    theirs = evidently_value_drift(reference, current, spec.types())
    for name, (method, score, threshold, drifted) in theirs.items():
        col = ours.columns[name]
        assert (col.method, col.threshold, col.drifted) == (method, threshold, drifted), (name, col, theirs[name])
        assert col.score == pytest.approx(score, abs=1e-9, rel=1e-9)


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_multiclass_probabilities_match_evidently(shift):
    from sklearn.ensemble import RandomForestClassifier

    X = _features(2000, 1)[["income", "debt"]]
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, pd.cut(X["debt"], 4, labels=False))
    spec = output_spec_for(model, "classification")
    reference = model_outputs(model, _features(700, 7)[["income", "debt"]], spec)
    current = model_outputs(model, _features(1100, 8, shift)[["income", "debt"]], spec)
    ours = check_prediction_drift(add_outputs(D.build_profile(_features(50, 9)), reference, spec), current)
    theirs = evidently_value_drift(reference, current, spec.types())
    assert set(theirs) == set(ours.columns) and len(theirs) == 5  # the class and 4 probabilities
    for name, (method, score, threshold, drifted) in theirs.items():
        col = ours.columns[name]
        assert (col.method, col.threshold, col.drifted) == (method, threshold, drifted), (name, col, theirs[name])
        assert col.score == pytest.approx(score, abs=1e-9, rel=1e-9)
    assert ours.drift is (shift > 0)


def test_regression_score_and_many_classes_match_evidently():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({PREDICTION_COLUMN: rng.normal(0, 1, 600)})
    cur = pd.DataFrame({PREDICTION_COLUMN: rng.normal(0.2, 1, 900)})
    spec = OutputSpec("regression")
    theirs = evidently_value_drift(ref, cur, spec.types())[PREDICTION_COLUMN]
    col = check_prediction_drift(ref, cur, spec=spec).columns[PREDICTION_COLUMN]
    assert (col.method, col.drifted) == (theirs[0], theirs[3]) and col.score == pytest.approx(theirs[1], abs=1e-12)
    # 12 integer classes: categorical by definition (chi-square at 600 reference rows)
    ref = pd.DataFrame({PREDICTION_COLUMN: rng.integers(0, 12, 600)})
    cur = pd.DataFrame({PREDICTION_COLUMN: rng.integers(0, 13, 900)})
    spec = OutputSpec("classification")
    theirs = evidently_value_drift(ref, cur, spec.types())[PREDICTION_COLUMN]
    col = check_prediction_drift(ref, cur, spec=spec).columns[PREDICTION_COLUMN]
    assert (col.method, col.drifted) == (theirs[0], theirs[3]) == ("chisquare", True)
    assert col.score == pytest.approx(theirs[1], abs=1e-12)


# --------------------------------------------------------------------------------------- quality


def test_batch_quality_figures_and_metric_names():
    ref = pd.DataFrame({"x": np.arange(100.0), "plan": ["a", "b"] * 50, "n": [1, 2, 3, 4] * 25})
    cur = pd.DataFrame(
        {"x": [np.nan] * 10 + list(np.arange(30.0)), "plan": ["a", "c", "d", None] * 10, "n": [1, 2, 5, 6] * 10}
    )
    result = D.check_drift(D.build_profile(ref), cur)
    quality = batch_quality(cur, D.build_profile(ref), result, prediction_drift=True)
    assert quality["rows"] == 40
    assert quality["null_share"] == {"x": 0.25, "plan": 0.25, "n": 0.0}
    assert quality["unseen_categories"] == {"plan": 2, "n": 2}  # c, d; 5, 6 (x is numerical)
    assert batch_quality(cur, ref, result)["unseen_categories"] == quality["unseen_categories"]  # DataFrame reference
    metrics = quality_metrics(quality)
    assert metrics == {
        "quality.rows": 40.0,
        "quality.null_share.x": 0.25,
        "quality.null_share.plan": 0.25,
        "quality.null_share.n": 0.0,
        "quality.unseen_categories.plan": 2.0,
        "quality.unseen_categories.n": 2.0,
        "quality.unseen_categories_total": 4.0,
        "quality.share_of_drifted_columns": result.share_of_drifted_columns,
        "quality.prediction_drift": 1.0,
    }


# ---------------------------------------------------------------------------------- retraining


def test_retraining_reason_names_prediction_drift(tmp_path):
    from mlops_provider.core.retraining import RetrainingLedger, classify, reason_from_event

    assert classify("mlops://m/prediction_drift", "mlops://m/prediction_drift", {}) == "prediction_drift"
    assert classify("mlops://m/drift", None, {}) == "drift"
    assert classify("x://other", None, {"reason": "prediction_drift"}) == "prediction_drift"
    reasons = [
        reason_from_event(asset_uri="mlops://m/drift", asset_name=None, extra={"reason": "drift"},
                          timestamp=1_700_000_000, source_dag_id="d", source_run_id="r", source_task_id="t"),
        reason_from_event(asset_uri="mlops://m/prediction_drift", asset_name=None,
                          extra={"reason": "prediction_drift", "model_version": "2",
                                 "summary": "model outputs drifted: class (z 0.001)"},
                          timestamp=1_700_000_001, source_dag_id="d", source_run_id="r", source_task_id="t"),
    ]
    decision = RetrainingLedger(str(tmp_path / "l.sqlite3")).decide("m", "run1", reasons, cooldown_seconds=0)
    assert decision.retrain and decision.to_dict()["kinds"] == ["drift", "prediction_drift"]
    assert "prediction_drift" in decision.message


# ------------------------------------------------------------------------------------ operator


def _multiclass(n: int = 2000):
    from sklearn.linear_model import LogisticRegression

    X = _features(n, seed=1)[["income", "debt"]]
    return LogisticRegression(max_iter=500).fit(X, _risk(X)), X


def _risk(X: pd.DataFrame) -> pd.Series:
    return pd.cut(X["debt"] - 0.3 * X["income"], [-np.inf, -2, 8, np.inf], labels=["low", "mid", "high"]).astype(str)


def _champion_with_outputs(tmp_path: Path, with_outputs: bool = True, multiclass: bool = False) -> tuple[str, str, str]:
    """A registered version of a real scikit-learn model; its run holds the features sample and (when
    ``with_outputs``) the outputs, logged by ``TrainModelOperator``'s own code."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from mlops_provider.core.training import TrainingResult
    from mlops_provider.hooks.mlflow import MlflowHook
    from mlops_provider.operators.training import TrainModelOperator

    model, X = _multiclass() if multiclass else _classifier()
    X_eval = _features(400, 2)[["income", "debt"]]
    labels = _risk if multiclass else _labels
    name = f"pdrift-{uuid.uuid4().hex[:8]}"
    with MlflowHook().mlflow_env():
        mlflow.set_experiment(f"exp-{name}")
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(X, model.predict(X)))
            path = tmp_path / "features.parquet"
            _features(2000, seed=1).to_parquet(path)  # the model's inputs and a column it does not use
            mlflow.log_artifact(str(path), artifact_path="reference")
            if with_outputs:
                result = TrainingResult(
                    estimator=model, problem_type="classification", n_classes=3 if multiclass else 2,
                    feature_columns=list(X.columns), X_train=X, y_train=labels(X, 1) if not multiclass else labels(X),
                    X_eval=X_eval, y_eval=labels(X_eval, 2) if not multiclass else labels(X_eval), metrics={},
                    cv_metrics={}, split="holdout", positive_label=None if multiclass else 1,
                )
                op = TrainModelOperator(task_id="t", training_data="x", target="default", estimator="x")
                op._log_outputs(mlflow, result, str(tmp_path))
        mv = mlflow.register_model(info.model_uri, name)
        MlflowHook().get_client().set_registered_model_alias(name, "champion", mv.version)
    return name, str(mv.version), run.info.run_id


def _batch(tmp_path: Path, shift: float, seed: int = 11) -> str:
    path = tmp_path / f"batch-{shift}-{seed}.parquet"
    _features(1500, seed, shift).to_parquet(path)
    return str(path)


def _context(step_date=None):
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"run_id": f"test_{uuid.uuid4().hex[:6]}", "outlet_events": OutletEventAccessors(),
            "logical_date": step_date}


def _alias_events(ctx) -> list:
    return [e for acc in ctx["outlet_events"]._dict.values() for e in acc.asset_alias_events]


def test_operator_reports_prediction_drift_apart_and_emits_its_own_event(mlflow_conn_sqlite, tmp_path):
    from mlops_provider.hooks.mlflow import MlflowHook
    from mlops_provider.operators.drift import (
        PREDICTION_REPORT_ARTIFACT_PATH,
        DriftCheckOperator,
        drift_asset_alias,
        prediction_drift_asset_alias,
        prediction_drift_asset_uri,
    )

    name, version, run_id = _champion_with_outputs(tmp_path)
    # only the plan column is checked for feature drift; the model scores with its two inputs
    kwargs = dict(task_id="drift", reference=f"models:/{name}@champion", columns=["plan"], prediction_drift=True)
    op = DriftCheckOperator(current=_batch(tmp_path, 0.0), batch_step=7, **kwargs)
    assert [o.name for o in op.outlets] == [drift_asset_alias(name), prediction_drift_asset_alias(name)]
    ctx = _context()
    same = op.execute(ctx)
    assert same["prediction_drift"]["status"] == "checked" and same["prediction_drift"]["drift"] is False
    assert same["prediction_drift"]["reference_rows"] == 400 and same["prediction_drift"]["current_rows"] == 1500
    assert _alias_events(ctx) == []
    client = MlflowHook().get_client()
    run = client.get_run(same["monitoring_run_id"])
    assert run.data.metrics["prediction_drift.drift"] == 0.0 and "prediction_drift.score.proba" in run.data.metrics
    assert run.data.tags["mlops.prediction_drift"] == "false" and run.data.tags["mlops.batch_step"] == "7"
    history = client.get_metric_history(same["monitoring_run_id"], "quality.rows")
    assert [(m.step, m.value) for m in history] == [(7, 1500.0)]

    ctx = _context()
    shifted = DriftCheckOperator(current=_batch(tmp_path, 1.0), batch_step=8, html_report=True, **kwargs).execute(ctx)
    assert shifted["dataset_drift"] is False  # the plan column did not move: feature verdict unchanged
    assert shifted["prediction_drift"]["drift"] is True
    (event,) = _alias_events(ctx)
    assert event.dest_asset_key.uri == prediction_drift_asset_uri(name)
    extra = event.extra
    assert extra["reason"] == "prediction_drift" and extra["model_name"] == name and extra["model_version"] == version
    assert set(extra["drifted_outputs"]) <= {PREDICTION_COLUMN, PROBA_COLUMN} and extra["drifted_outputs"]
    assert extra["thresholds"] and "model outputs drifted" in extra["summary"]
    assert set(extra["producer"]) == {"dag_id", "run_id", "task_id"}
    json.dumps(extra)
    assert shifted["prediction_report"].endswith(PREDICTION_REPORT_ARTIFACT_PATH)
    assert len(json.dumps(shifted)) < 8000

    # the model's quality timeline: one run, one point per batch step
    quality_run = shifted["quality_run_id"]
    assert quality_run == same["quality_run_id"]
    steps = [(m.step, m.value) for m in client.get_metric_history(quality_run, "quality.prediction_drift")]
    assert sorted(steps) == [(7, 0.0), (8, 1.0)]


def test_operator_checks_each_probability_of_a_multiclass_model(mlflow_conn_sqlite, tmp_path):
    from mlops_provider.hooks.mlflow import MlflowHook
    from mlops_provider.operators.drift import DriftCheckOperator

    name, _, run_id = _champion_with_outputs(tmp_path, multiclass=True)
    client = MlflowHook().get_client()
    stored = json.loads(Path(client.download_artifacts(run_id, "reference/outputs.json", str(tmp_path))).read_text())
    assert stored["classes"] == ["high", "low", "mid"] and stored["class_index"] is None
    kwargs = dict(task_id="drift", reference=f"models:/{name}@champion", columns=["plan"], prediction_drift=True)
    same = DriftCheckOperator(current=_batch(tmp_path, 0.0), **kwargs).execute(_context())
    outputs = same["prediction_drift"]["outputs"]
    assert set(outputs) == {PREDICTION_COLUMN, "__proba__:high", "__proba__:low", "__proba__:mid"}
    assert outputs["__proba__:mid"]["output"] == "probability of 'mid'" and same["prediction_drift"]["drift"] is False
    ctx = _context()
    shifted = DriftCheckOperator(current=_batch(tmp_path, 1.0), **kwargs).execute(ctx)
    assert shifted["prediction_drift"]["drift"] is True and shifted["dataset_drift"] is False
    metrics = client.get_run(shifted["monitoring_run_id"]).data.metrics
    assert {f"prediction_drift.score.proba.{c}" for c in ("high", "low", "mid")} <= set(metrics)
    (event,) = _alias_events(ctx)
    assert set(event.extra["drifted_outputs"]) & {"__proba__:high", "__proba__:low", "__proba__:mid"}


def test_rerun_logs_the_same_step_once(mlflow_conn_sqlite, tmp_path):
    """A retried task instance finds its monitoring run again and logs the same points."""
    from mlops_provider.hooks.mlflow import MlflowHook
    from mlops_provider.operators.drift import DriftCheckOperator

    name, _, _ = _champion_with_outputs(tmp_path)
    op = DriftCheckOperator(task_id="drift", reference=f"models:/{name}@champion", current=_batch(tmp_path, 0.0),
                            prediction_drift=True, batch_step="3")
    ctx = _context()
    first = op.execute(ctx)
    second = op.execute({**ctx, "outlet_events": _context()["outlet_events"]})
    assert second["monitoring_run_id"] == first["monitoring_run_id"]
    client = MlflowHook().get_client()
    for run_id in (first["monitoring_run_id"], first["quality_run_id"]):
        history = client.get_metric_history(run_id, "quality.null_share.plan")
        assert [(m.step, m.value) for m in history] == [(3, 0.0)]

    # a batch without one of the model's inputs cannot be scored: named, never "no prediction drift"
    from mlops_provider.exceptions import DatasetError

    lacking = tmp_path / "lacking.parquet"
    _features(500, 12).drop(columns=["debt"]).to_parquet(lacking)
    with pytest.raises(DatasetError, match=r"lacks the model's input column\(s\) \['debt'\]"):
        DriftCheckOperator(task_id="drift", reference=f"models:/{name}@champion", current=str(lacking),
                           columns=["income", "plan"], prediction_drift=True).execute(_context())


def test_version_without_stored_outputs_is_reported_not_checked(mlflow_conn_sqlite, tmp_path, capfd):
    from mlops_provider.hooks.mlflow import MlflowHook
    from mlops_provider.operators.drift import DriftCheckOperator

    name, version, _ = _champion_with_outputs(tmp_path, with_outputs=False)
    ctx = _context()
    summary = DriftCheckOperator(
        task_id="drift", reference=f"models:/{name}@champion", current=_batch(tmp_path, 1.0), prediction_drift=True
    ).execute(ctx)
    pred = summary["prediction_drift"]
    assert pred["status"] == "not_checked" and pred["drift"] is None
    assert f"{name} v{version} has no stored outputs" in pred["reason"]
    out = capfd.readouterr()
    assert "Prediction drift NOT checked" in out.out + out.err  # a warning in the task log
    tags = MlflowHook().get_client().get_run(summary["monitoring_run_id"]).data.tags
    assert tags["mlops.prediction_drift"] == "not_checked"
    assert all(e.dest_asset_key.uri.endswith("/drift") for e in _alias_events(ctx))


def test_prediction_drift_needs_a_model_reference():
    from mlops_provider.exceptions import MlopsConfigurationError
    from mlops_provider.operators.drift import DriftCheckOperator

    with pytest.raises(MlopsConfigurationError, match="prediction_drift=True needs reference='models:/"):
        DriftCheckOperator(task_id="d", reference="/data/ref.parquet", current="x", prediction_drift=True)
    with pytest.raises(MlopsConfigurationError, match="batch_step"):
        DriftCheckOperator(task_id="d", reference="models:/m@champion", current="x", batch_step=-1)
    with pytest.raises(MlopsConfigurationError, match="prediction_drift"):
        DriftCheckOperator(task_id="d", reference="models:/m@champion", current="x", prediction_drift="yes")


def test_drift_sensor_ends_on_prediction_drift(mlflow_conn_sqlite, tmp_path):
    import os

    from mlops_provider.sensors.drift import DriftSensor

    name, _, _ = _champion_with_outputs(tmp_path)
    landing = tmp_path / "landing"
    landing.mkdir()
    sensor = DriftSensor(task_id="wait", location=f"{landing}/*.parquet", reference=f"models:/{name}@champion",
                         columns=["plan"], prediction_drift=True, deferrable=False, mode="poke",
                         consumer="test.pd", poke_interval=0.1)
    _features(1500, 11).to_parquet(landing / "b1.parquet")
    assert sensor.poke({"run_id": "manual__pd"}) is False  # outputs as at training: keep waiting
    os.utime(landing / "b1.parquet", (1, 1))
    _features(1500, 12, 1.0).to_parquet(landing / "b2.parquet")  # the plan column does not move, the outputs do
    done = sensor.poke({"run_id": "manual__pd"})
    verdict = done.xcom_value
    assert done.is_done and verdict["batch_uri"].endswith("b2.parquet")
    assert verdict["dataset_drift"] is False and verdict["prediction_drift"]["drift"] is True
    json.dumps(verdict)
