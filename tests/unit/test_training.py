"""Training core (pure, no MLflow) and TrainModelOperator / BatchPredictOperator on real MLflow + dag.test()."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_provider._airflow_tags import LINEAGE_TAGS
from mlops_provider.core import metrics, training
from mlops_provider.exceptions import DatasetError, MlopsConfigurationError


@pytest.fixture
def clf_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "ts": pd.date_range("2026-01-01", periods=n, freq="h"),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
        }
    )
    frame["y"] = (frame["a"] + 0.5 * rng.normal(size=n) > 0).astype(int)
    return frame


@pytest.fixture
def reg_frame(clf_frame) -> pd.DataFrame:
    frame = clf_frame.drop(columns=["y"]).copy()
    frame["y"] = 3.0 * frame["a"] - frame["b"] + 0.1
    return frame


def _spec(**kwargs) -> training.TrainingSpec:
    return training.TrainingSpec(**{"target": "y", "exclude_columns": ["id", "ts"], **kwargs})


# ---------------------------------------------------------------------- metrics


def test_compact_labels_keep_values_and_leave_the_rest_alone():
    y = np.array([0, 1, 1, 127, -128], dtype=np.int64)
    compact = metrics.compact_labels(y)
    assert compact.dtype == np.int8 and compact.tolist() == y.tolist()
    assert metrics.compact_labels(pd.Series([3, 5, 3])).dtype == np.int8
    for unchanged in (np.array([0, 128]), np.array(["a", "b"]), np.array([True, False]), np.array([0.0, 1.0]),
                      np.array([], dtype=np.int64), pd.array([1, None], dtype="Int64")):
        assert metrics.compact_labels(unchanged) is unchanged


@pytest.mark.parametrize("classes", [2, 4])
def test_compact_labels_give_exactly_sklearns_metrics(classes):
    """compute_metrics scores int8 labels; every value equals sklearn's own scorer on the int64 labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import get_scorer

    rng = np.random.default_rng(classes)
    X = pd.DataFrame(rng.normal(size=(3000, 3)), columns=["a", "b", "c"])
    y = pd.Series(np.digitize(X["a"] + rng.normal(scale=0.8, size=3000), np.linspace(-1, 1, classes - 1)) * (1 if classes == 2 else 10))
    assert y.dtype == np.int64 and y.nunique() == classes
    model = LogisticRegression().fit(X, y)
    names = ["accuracy", "balanced_accuracy", "f1", "precision", "recall", "log_loss"]
    names += ["roc_auc"] if classes == 2 else ["f1_micro"]
    got = metrics.compute_metrics(model, X, y, names)
    for name in names:
        scorer, sign = metrics.resolve_scorer(name, classes)
        expected = float(get_scorer(scorer)(model, X, y)) * sign
        if name == "roc_auc":  # compute_metrics ranks by predict_proba (see metrics._scorer)
            from sklearn.metrics import roc_auc_score

            expected = roc_auc_score(y, model.predict_proba(X)[:, 1])
        assert got[metrics.metric_key(name)] == expected, name


def test_metrics_natural_orientation(reg_frame):
    from sklearn.linear_model import LinearRegression

    X, y = reg_frame[["a"]], reg_frame["y"]
    model = LinearRegression().fit(X, y)
    scores = metrics.compute_metrics(model, X, y, ["rmse", "mae", "r2", "neg_mean_squared_error"])
    assert scores["rmse"] > 0 and scores["mae"] > 0 and 0 < scores["r2"] < 1
    assert scores["mean_squared_error"] == pytest.approx(scores["rmse"] ** 2)
    assert not metrics.greater_is_better("rmse") and metrics.greater_is_better("r2")
    assert not metrics.greater_is_better("mean_squared_error")
    assert metrics.default_metrics("classification", 2) == ["accuracy", "f1", "roc_auc", "log_loss"]
    assert metrics.default_metrics("classification", 4) == ["accuracy", "f1", "log_loss"]
    assert metrics.default_metrics("regression") == ["rmse", "mae", "r2"]
    with pytest.raises(MlopsConfigurationError, match="Unknown metric 'auc_pr'"):
        metrics.compute_metrics(model, X, y, ["auc_pr"])


def test_infer_problem_type():
    assert metrics.infer_problem_type(pd.Series([0, 1, 1, 0])) == "classification"
    assert metrics.infer_problem_type(pd.Series(["a", "b"])) == "classification"
    assert metrics.infer_problem_type(pd.Series([0.5, 1.25, 3.0])) == "regression"
    assert metrics.infer_problem_type(pd.Series(range(100))) == "regression"


# ---------------------------------------------------------------------- training core


def test_holdout_classification_defaults(clf_frame):
    est = training.build_estimator("sklearn.linear_model.LogisticRegression", {"C": 0.5})
    result = training.train_and_evaluate(est, clf_frame, _spec(holdout_fraction=0.25, cv_folds=3))
    assert result.problem_type == "classification" and result.n_classes == 2
    assert result.feature_columns == ["a", "b"]
    assert len(result.X_eval) == 50 and result.split == "holdout-stratified"
    assert set(result.metrics) == {"accuracy", "f1", "roc_auc", "log_loss"}
    assert result.metrics["accuracy"] > 0.6
    assert {"cv_accuracy_mean", "cv_log_loss_std"} <= set(result.cv_metrics)


def test_time_split_evaluates_on_most_recent(reg_frame):
    est = training.build_estimator("sklearn.linear_model.Ridge", '{"alpha": 0.1}')  # JSON text, as templated
    spec = training.TrainingSpec(target="y", exclude_columns=["id"], time_column="ts", holdout_fraction=0.2)
    shuffled = reg_frame.sample(frac=1.0, random_state=1)
    result = training.train_and_evaluate(est, shuffled, spec)
    assert result.problem_type == "regression" and result.split == "time:ts"
    assert "ts" not in result.feature_columns
    assert result.X_eval.index.min() > result.X_train.index.max()  # ids are in time order
    assert result.metrics["rmse"] < 0.1 and result.metrics["r2"] > 0.99


def test_explicit_evaluation_dataset_and_callable_pipeline(clf_frame):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def factory(C: float = 1.0):
        return make_pipeline(StandardScaler(), LogisticRegression(C=C))

    est = training.build_estimator(factory, {"C": 2.0})
    result = training.train_and_evaluate(
        est, clf_frame.iloc[:150], _spec(metrics=["accuracy", "balanced_accuracy"]), clf_frame.iloc[150:]
    )
    assert result.split == "evaluation-dataset" and len(result.X_eval) == 50
    assert set(result.metrics) == {"accuracy", "balanced_accuracy"}


@pytest.mark.parametrize(
    ("estimator", "params", "match"),
    [
        ("sklearn.ensemble.NoSuchForest", None, "Unknown estimator path 'sklearn.ensemble.NoSuchForest'"),
        ("nosuchpackage.Model", None, "cannot import 'nosuchpackage'"),
        ("LogisticRegression", None, "expected 'package.module.ClassName'"),
        ("sklearn.linear_model.LogisticRegression", {"not_a_param": 1}, "rejected params"),
        ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": -5}, "rejected params.*max_iter"),
        ("sklearn.linear_model.LogisticRegression", "{bad json", "not valid JSON"),
        ("json.dumps", None, "has no fit/predict|rejected params"),
    ],
)
def test_bad_estimator(estimator, params, match):
    with pytest.raises(MlopsConfigurationError, match=match):
        training.build_estimator(estimator, params)


def test_bad_training_data(clf_frame, reg_frame):
    def fit(frame, **spec):
        est = training.build_estimator("sklearn.linear_model.LogisticRegression")
        return training.train_and_evaluate(est, frame, _spec(**spec))

    with pytest.raises(DatasetError, match="Target column 'label' is missing"):
        fit(clf_frame, target="label")
    with pytest.raises(DatasetError, match="not numeric.*regression"):
        fit(clf_frame.assign(y=clf_frame["y"].map({0: "no", 1: "yes"})), problem_type="regression")
    with pytest.raises(DatasetError, match="single class"):
        fit(clf_frame.assign(y=1))
    with pytest.raises(DatasetError, match=r"feature 'b' is entirely missing"):
        fit(clf_frame.assign(b=np.nan))
    with pytest.raises(DatasetError, match="missing value"):
        fit(clf_frame.assign(y=clf_frame["y"].where(clf_frame["id"] != 3)))
    with pytest.raises(DatasetError, match="too few"):
        fit(clf_frame.head(2))
    with pytest.raises(MlopsConfigurationError, match="holdout_fraction"):
        fit(clf_frame, holdout_fraction=1.5)
    with pytest.raises(MlopsConfigurationError, match="Unknown metric"):
        fit(clf_frame, metrics=["accuracy", "nope"])
    with pytest.raises(MlopsConfigurationError, match=r"failed to fit.*non-numeric column\(s\) \['a'\]"):
        fit(clf_frame.assign(a="text"))  # strings into LogisticRegression


# ---------------------------------------------------------------------- issue 13: features checked before the fit


def _unfitted(name: str = "sklearn.linear_model.LogisticRegression"):
    return training.build_estimator(name)


def _fails_before_fit(frame, match, **spec):
    est = _unfitted()
    with pytest.raises(DatasetError, match=match) as info:
        training.train_and_evaluate(est, frame, _spec(**spec))
    assert not hasattr(est, "classes_"), "the estimator was fitted before the check"
    return str(info.value)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        # text in a numeric column: examples quoted (CSV junk of several kinds)
        (lambda f: f.assign(a=f["a"].round(3).astype(str).mask(f["id"] % 50 == 0, "?")),
         r"'a' is numeric but 4 of 200 value\(s\) are not numbers \(e\.g\. '\?'\)"),
        (lambda f: f.assign(a=f["a"].astype(str).mask(f["id"] == 1, "n/a").mask(f["id"] == 2, "1,5")),
         r"'a' is numeric but 2 of 200 .*e\.g\. 'n/a', '1,5'"),
        (lambda f: f.assign(a=f["a"].astype(object).mask(f["id"] == 7, "missing")),
         r"'a' is numeric but 1 of 200 .*'missing'"),
        # infinite values counted, as floats and as text
        (lambda f: f.assign(b=f["b"].mask(f["id"] < 3, np.inf).mask(f["id"] == 9, -np.inf)),
         r"'b' has 4 infinite value\(s\)"),
        (lambda f: f.assign(b=f["b"].astype(str).mask(f["id"] < 2, "inf")), r"'b' has 2 infinite value\(s\)"),
        # datetime columns named, with what to do
        (lambda f: f.assign(seen=pd.date_range("2026-01-01", periods=len(f), freq="h")),
         r"'seen' is a datetime column.*exclude_columns=\['seen'\].*time_column='seen'"),
        (lambda f: f.assign(seen=pd.date_range("2026-01-01", periods=len(f), freq="h", tz="Europe/Paris")),
         r"'seen' is a datetime column \(datetime64\[ns, Europe/Paris\]\)"),
        (lambda f: f.assign(seen=[pd.Timestamp("2026-01-01").date()] * len(f)), r"'seen' is a datetime column \(object\)"),
        # all-missing columns named
        (lambda f: f.assign(b=np.nan), r"'b' is entirely missing \(all 200 values"),
        (lambda f: f.assign(b=None), r"'b' is entirely missing"),
    ],
)
def test_bad_feature_values_are_named_before_the_fit(clf_frame, bad, match):
    frame = bad(clf_frame.drop(columns=["ts"]))
    message = _fails_before_fit(frame, match, exclude_columns=["id"])
    assert "cannot be used for training in the training data" in message


def test_every_bad_feature_is_listed_in_one_message(clf_frame):
    frame = clf_frame.assign(a=np.inf, b=np.nan)  # ts is a datetime too
    message = _fails_before_fit(frame, r"3 feature column\(s\)", exclude_columns=["id"])
    assert [line.split("'")[1] for line in message.splitlines()[1:]] == ["ts", "a", "b"]


def test_categorical_text_is_left_to_the_estimator_and_explained(clf_frame):
    """Text categories are not bad values: a pipeline with an encoder trains; a plain model's error names the column."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = clf_frame.drop(columns=["ts"]).assign(colour=np.where(clf_frame["id"] % 3, "red", "blue"))
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["colour"]), remainder="passthrough"), LogisticRegression()
    )
    result = training.train_and_evaluate(pipe, frame, _spec(exclude_columns=["id"]))
    assert result.metrics["accuracy"] > 0.6
    with pytest.raises(MlopsConfigurationError, match=r"non-numeric column\(s\) \['colour'\].*OneHotEncoder"):
        training.train_and_evaluate(_unfitted(), frame, _spec(exclude_columns=["id"]))


def test_nan_fit_error_names_the_columns(clf_frame):
    frame = clf_frame.drop(columns=["ts"])
    frame.loc[[3, 4, 5], "b"] = np.nan
    with pytest.raises(MlopsConfigurationError, match=r"contains NaN.*missing values: 'b' \(\d\).*SimpleImputer"):
        training.train_and_evaluate(_unfitted(), frame, _spec(exclude_columns=["id"]))
    # an estimator that accepts NaN trains on the same data
    hgb = _unfitted("sklearn.ensemble.HistGradientBoostingClassifier")
    assert training.train_and_evaluate(hgb, frame, _spec(exclude_columns=["id"])).metrics["accuracy"] > 0.6


def test_bad_evaluation_data_is_named(clf_frame):
    frame = clf_frame.drop(columns=["ts"])
    with pytest.raises(DatasetError, match=r"in the evaluation data:\n  - feature 'b' has 50 infinite"):
        training.train_and_evaluate(
            _unfitted(), frame.iloc[:150], _spec(exclude_columns=["id"]), frame.iloc[150:].assign(b=np.inf)
        )


# ---------------------------------------------------------------------- issue 13: string labels, positive class


def _yes_no(clf_frame):
    return clf_frame.drop(columns=["ts"]).assign(y=clf_frame["y"].map({0: "no", 1: "yes"}))


def test_string_labels_train_and_positive_label_drives_f1_precision_recall(clf_frame):
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    frame = _yes_no(clf_frame)
    names = ["accuracy", "f1", "precision", "recall", "roc_auc", "average_precision", "log_loss"]
    runs = {}
    for positive in (None, "yes", "no"):
        result = training.train_and_evaluate(
            _unfitted(), frame, _spec(exclude_columns=["id"], metrics=names, positive_label=positive, cv_folds=3)
        )
        runs[positive] = result
        expected_positive = positive or "yes"  # default: the last class in sorted order
        assert result.positive_label == expected_positive
        model, X, y = result.estimator, result.X_eval, result.y_eval
        pred = model.predict(X)
        proba = model.predict_proba(X)[:, list(model.classes_).index(expected_positive)]
        assert result.metrics["f1"] == f1_score(y, pred, pos_label=expected_positive)
        assert result.metrics["precision"] == precision_score(y, pred, pos_label=expected_positive)
        assert result.metrics["recall"] == recall_score(y, pred, pos_label=expected_positive)
        assert result.metrics["roc_auc"] == pytest.approx(roc_auc_score(y == expected_positive, proba))
        assert result.metrics["average_precision"] == pytest.approx(
            average_precision_score(y == expected_positive, proba)
        )
        assert {"cv_f1_mean", "cv_recall_mean"} <= set(result.cv_metrics)
    assert runs[None].metrics == runs["yes"].metrics
    def prf(result):
        return [result.metrics[k] for k in ("f1", "precision", "recall", "average_precision")]

    assert prf(runs["no"]) != prf(runs["yes"])
    assert runs["no"].cv_metrics["cv_f1_mean"] != runs["yes"].cv_metrics["cv_f1_mean"]
    assert runs["no"].metrics["roc_auc"] == pytest.approx(runs["yes"].metrics["roc_auc"])  # AUC is symmetric


def test_positive_label_matches_by_text_and_refuses_what_it_cannot_mean(clf_frame, reg_frame):
    frame = clf_frame.drop(columns=["ts"])
    result = training.train_and_evaluate(_unfitted(), frame, _spec(exclude_columns=["id"], positive_label="0"))
    assert result.positive_label == 0 and type(result.positive_label) is not str
    with pytest.raises(MlopsConfigurationError, match=r"positive_label='Yes' is not a class of 'y'; its classes are 'no', 'yes'"):
        training.train_and_evaluate(_unfitted(), _yes_no(clf_frame), _spec(exclude_columns=["id"], positive_label="Yes"))
    with pytest.raises(MlopsConfigurationError, match="binary classification only.*regression target"):
        training.train_and_evaluate(
            training.build_estimator("sklearn.linear_model.Ridge"), reg_frame.drop(columns=["ts"]),
            _spec(exclude_columns=["id"], positive_label=1),
        )
    three = frame.assign(y=frame["id"] % 3)
    with pytest.raises(MlopsConfigurationError, match="binary classification only.*3 classes"):
        training.train_and_evaluate(_unfitted(), three, _spec(exclude_columns=["id"], positive_label=1))
    assert metrics.resolve_positive_label([False, True], "True") is True
    with pytest.raises(MlopsConfigurationError, match="its classes are 0, 1"):
        metrics.resolve_positive_label([0, 1], True)  # a bool is not the class 1


def test_git_commit_of_repo():
    from pathlib import Path

    commit = training.git_commit_of(str(Path(__file__)))
    assert commit and len(commit) == 40
    assert training.git_commit_of("/") is None


# ---------------------------------------------------------------------- operators on real MLflow + Airflow


TEST_DAGS = Path(__file__).resolve().parents[1] / "dags" / "training"


@pytest.fixture
def test_dags(airflow_db, monkeypatch):
    """The DAGs of tests/dags/training, in a DAG bundle of their own (``dag.test()`` syncs bundles)."""
    bundles = [
        {
            "name": "training-tests",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(TEST_DAGS), "refresh_interval": 0},
        }
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    spec = importlib.util.spec_from_file_location("training_test_dags", TEST_DAGS / "training_test_dags.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_dag(dag, conf):
    dr = dag.test(run_conf=conf)
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dr.run_id, key="return_value").all()
        xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows}
        states = {ti.task_id: ti.state for ti in dr.get_task_instances(session=session)}
    return dr, xcoms, states


def test_train_operator_regression_time_split_and_batch_predict(test_dags, mlflow_conn_sqlite, tmp_path, reg_frame):
    import mlflow

    from mlops_provider.hooks.mlflow import MlflowHook

    reg_frame.to_csv(tmp_path / "train.csv", index=False)
    reg_frame.drop(columns=["y"]).to_parquet(tmp_path / "score.parquet", index=False, row_group_size=64)
    experiment = f"test-train-{uuid.uuid4().hex[:8]}"
    _, xcoms, states = _run_dag(test_dags.regression_dag, {"data_dir": str(tmp_path), "experiment": experiment})
    assert states == {"train": "success", "score": "success"}, states
    result = xcoms["train"]
    assert len(json.dumps(result)) < 4096
    assert result["problem_type"] == "regression" and result["split"] == "time:ts"
    assert result["metrics"]["rmse"] > 0 and result["metrics"]["r2"] > 0.99
    assert {"cv_rmse_mean", "cv_r2_std"} <= set(result["metrics"])
    assert result["train_split"]["n_rows"] == 150 and result["eval_split"]["n_rows"] == 50

    client = MlflowHook().get_client()
    run = client.get_run(result["run_id"])
    assert run.data.params["alpha"] == "0.1" and run.data.params["estimator"] == "sklearn.linear_model.Ridge"
    assert run.data.tags["mlops.try_number"] == "1"
    # the Airflow lineage tags, the same on the gate's report run (test_gate_operator.py)
    lineage = {k: v for k, v in run.data.tags.items() if k in LINEAGE_TAGS}
    assert lineage == {"mlops.dag_id": test_dags.regression_dag.dag_id, "mlops.run_id": run.data.tags["mlops.run_id"],
                       "mlops.task_id": "train", "mlops.map_index": "-1", "mlops.try_number": "1"}
    assert run.data.tags["mlops.run_id"]
    assert run.data.tags["mlops.training_digest"] == result["training_data"]["digest"]
    digests = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert digests == {
        "training": result["train_split"]["digest"][:32],
        "evaluation": result["eval_split"]["digest"][:32],
    }
    with MlflowHook().mlflow_env():
        local = mlflow.artifacts.download_artifacts(result["reference_uri"], dst_path=str(tmp_path / "ref"))
    ref = pd.read_parquet(local)
    assert list(ref.columns) == ["a", "b"] and len(ref) == 50
    # the model's outputs on the evaluation split: the prediction drift reference (a score for regression)
    with MlflowHook().mlflow_env():
        outputs_dir = mlflow.artifacts.download_artifacts(
            f"runs:/{result['run_id']}/reference", dst_path=str(tmp_path / "outputs")
        )
    outputs = pd.read_parquet(Path(outputs_dir) / "outputs.parquet")
    assert list(outputs.columns) == ["__prediction__"] and len(outputs) == 50
    spec = json.loads((Path(outputs_dir) / "outputs.json").read_text())
    assert spec["problem_type"] == "regression" and spec["columns"] == {"__prediction__": "num"} and spec["rows"] == 50

    scored = xcoms["score"]
    assert len(json.dumps(scored)) < 4096
    assert scored["n_rows"] == 200 and scored["model_version"] is None
    out = pd.read_parquet(scored["output_uri"])
    assert list(out.columns) == ["id", "prediction", "model_version"] and len(out) == 200
    stats = scored["prediction_stats"]
    assert stats["count"] == 200 and stats["mean"] == pytest.approx(out["prediction"].mean())


def test_bad_input_fails_task_and_leaves_no_run(test_dags, mlflow_conn_sqlite, tmp_path, clf_frame):
    from mlops_provider.hooks.mlflow import MlflowHook

    clf_frame.to_parquet(tmp_path / "train.parquet", index=False)
    experiment = f"test-bad-{uuid.uuid4().hex[:8]}"
    conf = {"data_dir": str(tmp_path), "experiment": experiment, "model_name": f"nope-{uuid.uuid4().hex[:6]}"}
    _, xcoms, states = _run_dag(test_dags.bad_dag, conf)
    assert set(states.values()) == {"failed"}, states
    assert xcoms == {}
    assert MlflowHook().get_client().get_experiment_by_name(experiment) is None  # no experiment, no run
    assert not (tmp_path / "never.parquet").exists()


def test_training_run_records_the_validation_run_of_the_same_data(test_dags, mlflow_conn_sqlite, tmp_path, clf_frame):
    """Lineage (issue 4): validation upstream of training on the same digest → tag on the training run;
    training on other data does not claim that validation."""
    from mlflow import MlflowClient

    clf_frame.drop(columns=["ts"]).to_parquet(tmp_path / "train.parquet")
    clf_frame.drop(columns=["ts"]).iloc[:150].to_parquet(tmp_path / "other.parquet")
    experiment = f"lineage-{uuid.uuid4().hex[:8]}"
    dr, xcoms, states = _run_dag(test_dags.lineage_dag, {"data_dir": str(tmp_path), "experiment": experiment})
    assert states == {"validate": "success", "train": "success", "train_other_data": "success"}, states
    validation_run = xcoms["validate"]["validation_run_id"]
    client = MlflowClient(tracking_uri=mlflow_conn_sqlite)
    trained = client.get_run(xcoms["train"]["run_id"])
    assert trained.data.tags.get("mlops.validation_run_id") == validation_run
    assert xcoms["train"]["validation_run_id"] == trained.data.tags["mlops.validation_run_id"]
    validated = client.get_run(trained.data.tags["mlops.validation_run_id"])
    assert validated.data.tags["mlops.dataset_digest"] == trained.data.tags["mlops.training_digest"]
    other = client.get_run(xcoms["train_other_data"]["run_id"])
    assert "mlops.validation_run_id" not in other.data.tags


def test_params_are_the_models_hyperparameters_not_the_pipelines():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from mlops_provider.core.training import loggable_params

    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.5, max_iter=300))])
    params = loggable_params(pipe, {}, "my.pipeline")
    assert params["C"] == "0.5" and params["max_iter"] == "300"
    assert params["model"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert params["preprocessing"] == "scale: StandardScaler"
    assert not {"memory", "transform_input"} & set(params)  # the Pipeline's own parameters
# ---------------------------------------------------------------------- issue 13: the operator


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"problem_type": "clasification"}, r"problem_type must be one of 'classification', 'regression' or None; got 'clasification'"),
        ({"holdout_fraction": 1.5}, r"holdout_fraction must be a number in \(0, 1\); got 1.5"),
        ({"holdout_fraction": 0}, r"holdout_fraction must be a number in \(0, 1\)"),
        ({"holdout_fraction": "0.2"}, r"holdout_fraction must be a number"),
        ({"seed": -1}, r"seed must be an integer >= 0"),
        ({"seed": 1.5}, r"seed must be an integer"),
        ({"cv_folds": 1}, r"cv_folds must be an integer >= 2; got 1"),
        ({"reference_sample_rows": -5}, r"reference_sample_rows must be an integer >= 0"),
        ({"task_type": "regression"}, r"argument 'task_type' was renamed to 'problem_type'; pass problem_type='regression'"),
    ],
)
def test_train_operator_checks_arguments_when_the_dag_is_parsed(kwargs, match):
    from mlops_provider.operators.training import TrainModelOperator

    base = {"task_id": "t", "training_data": "x.parquet", "target": "y", "estimator": "sklearn.linear_model.Ridge"}
    with pytest.raises(MlopsConfigurationError, match=f"TrainModelOperator 't': {match}"):
        TrainModelOperator(**base, **kwargs)


def test_train_operator_leaves_templated_arguments_for_execute():
    from mlops_provider.operators.training import TrainModelOperator

    op = TrainModelOperator(
        task_id="t", training_data="x.parquet", target="y", estimator="sklearn.linear_model.Ridge",
        problem_type="{{ params.kind }}", holdout_fraction="{{ params.f }}", seed="{{ params.seed }}",
        cv_folds=0, reference_sample_rows=0, positive_label="{{ params.positive }}",
    )
    assert op.problem_type == "{{ params.kind }}" and "positive_label" in op.template_fields


def test_train_operator_string_labels_with_positive_label(test_dags, mlflow_conn_sqlite, tmp_path, clf_frame):
    from mlops_provider.hooks.mlflow import MlflowHook

    _yes_no(clf_frame).to_parquet(tmp_path / "train.parquet", index=False)
    experiment = f"labels-{uuid.uuid4().hex[:8]}"
    results = {}
    for positive in ("", "no"):
        conf = {"data_dir": str(tmp_path), "experiment": experiment, "positive_label": positive}
        _, xcoms, states = _run_dag(test_dags.string_labels_dag, conf)
        assert states == {"train": "success"}, states
        results[positive] = xcoms["train"]
        json.dumps(xcoms["train"])
    assert results[""]["positive_label"] == "yes" and results["no"]["positive_label"] == "no"
    assert results[""]["problem_type"] == "classification" and "task_type" not in results[""]
    assert results[""]["metrics"]["recall"] != results["no"]["metrics"]["recall"]
    run = MlflowHook().get_client().get_run(results["no"]["run_id"])
    assert run.data.params["positive_label"] == "no" and run.data.params["problem_type"] == "classification"
    assert run.data.metrics["recall"] == pytest.approx(results["no"]["metrics"]["recall"])


def _dead_mlflow_url() -> str:
    from tests.helpers.servers import free_port

    return f"http://127.0.0.1:{free_port()}"


def test_unreachable_mlflow_fails_in_seconds_without_reading_or_fitting(
    test_dags, monkeypatch, tmp_path, clf_frame, airflow_db, capfd
):
    """Nothing listens on the port: each try fails on the probe and Airflow retries (transport error)."""
    import time

    from mlops_provider.operators.training import TrainModelOperator
    from tests.helpers.estimators import FIT_CALLS

    url = _dead_mlflow_url()
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": url}))
    big = pd.concat([clf_frame.drop(columns=["ts"])] * 500, ignore_index=True)  # 100k rows: a fit takes a while
    big.to_parquet(tmp_path / "train.parquet", index=False)
    FIT_CALLS.clear()
    started = time.monotonic()
    dr, xcoms, states = _run_dag(test_dags.recording_dag, {"data_dir": str(tmp_path), "experiment": "never"})
    elapsed = time.monotonic() - started
    assert states == {"train": "failed"}, states
    assert FIT_CALLS == [], "the model was fitted although MLflow was unreachable"
    logged = capfd.readouterr()
    logged = logged.out + logged.err
    assert logged.count(f"Cannot reach MLflow tracking server {url}") >= 2, logged[-3000:]
    assert logged.count("could not be reached: nothing was read or fitted") >= 2
    from airflow.utils.session import create_session

    with create_session() as session:
        (ti,) = dr.get_task_instances(session=session)
        assert ti.try_number == 2, "a transport error must leave the retry to Airflow"
    assert elapsed < 120, elapsed  # a bound only: both tries failed on the probe, not after a fit

    # the same probe called directly raises the retryable transport error naming the server
    from mlops_provider.exceptions import MlflowConnectionError

    op = TrainModelOperator(task_id="t", training_data="x.parquet", target="y", estimator="sklearn.linear_model.Ridge",
                            experiment_name="never")
    with pytest.raises(MlflowConnectionError, match=f"Cannot reach MLflow tracking server {url}.*Connection refused"):
        op._reach_mlflow({})


_KILLED_TRY = """
import importlib.util, json, sys
import pendulum
spec = importlib.util.spec_from_file_location("training_test_dags", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
when = pendulum.parse(sys.argv[2])
module.recording_dag.test(logical_date=when, run_after=when, run_conf=json.loads(sys.argv[3]))
"""


def test_a_killed_try_leaves_no_run_running(test_dags, mlflow_conn_server, tmp_path, clf_frame):
    """A try is SIGKILLed while it logs its MLflow run (a real kill of a real process); the next run of the
    same task instance (same DAG, DAG run id, task, map index) marks that run FAILED before it starts its own.

    ``dag.test`` recreates the DAG run for the same dates, so that next try is numbered 1 again; a
    scheduler's retry would be try 2 (the retry path is tested below)."""
    import subprocess
    import sys

    import pendulum
    from mlflow import MlflowClient

    clf_frame.drop(columns=["ts"]).to_parquet(tmp_path / "train.parquet", index=False)
    kill_file = tmp_path / "kill-while-logging"
    kill_file.touch()
    experiment = f"killed-{uuid.uuid4().hex[:8]}"
    conf = {"data_dir": str(tmp_path), "experiment": experiment, "kill_file": str(kill_file)}
    logical_date = pendulum.datetime(2026, 3, 1, tz="UTC").add(seconds=uuid.uuid4().int % 10**6)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_TRY, str(TEST_DAGS / "training_test_dags.py"), logical_date.isoformat(),
         json.dumps(conf)],
        capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -9, (killed.stdout + killed.stderr)[-3000:]
    client = MlflowClient(tracking_uri=mlflow_conn_server)
    exp = client.get_experiment_by_name(experiment)
    (left,) = client.search_runs([exp.experiment_id])
    assert left.info.status == "RUNNING" and left.data.tags["mlops.try_number"] == "1"

    kill_file.unlink()
    dr = test_dags.recording_dag.test(logical_date=logical_date, run_after=logical_date, run_conf=conf)
    assert dr.state == "success", dr.state
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}
    assert len(runs) == 2 and not [r for r in runs.values() if r.info.status == "RUNNING"]
    earlier = runs[left.info.run_id]
    assert earlier.info.status == "FAILED" and earlier.data.tags["mlops.superseded_by_try"] == "1"
    (latest,) = [r for r in runs.values() if r.info.run_id != left.info.run_id]
    assert latest.info.status == "FINISHED"
    assert latest.data.tags["mlops.run_id"] == earlier.data.tags["mlops.run_id"] == dr.run_id


def test_a_retry_after_a_failure_mid_run_leaves_no_run_running(test_dags, mlflow_conn_server, tmp_path, clf_frame):
    """Try 1 fails while logging (a retryable error); Airflow's retry (try 2) succeeds; no run stays RUNNING."""
    from mlflow import MlflowClient

    clf_frame.drop(columns=["ts"]).to_parquet(tmp_path / "train.parquet", index=False)
    fail_file = tmp_path / "fail-once"
    fail_file.touch()
    experiment = f"retried-{uuid.uuid4().hex[:8]}"
    dr, xcoms, states = _run_dag(
        test_dags.recording_dag, {"data_dir": str(tmp_path), "experiment": experiment, "fail_file": str(fail_file)}
    )
    assert states == {"train": "success"}, states
    client = MlflowClient(tracking_uri=mlflow_conn_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], order_by=["start_time"])
    assert [(r.data.tags["mlops.try_number"], r.info.status) for r in runs] == [("1", "FAILED"), ("2", "FINISHED")]
    assert xcoms["train"]["run_id"] == runs[1].info.run_id
