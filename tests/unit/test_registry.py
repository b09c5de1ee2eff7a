"""Registry primitives and operators against real MLflow stores, and the example DAG on a real metadata DB.

No mocks: every test talks to a real ``mlflow server`` on 127.0.0.1 and/or a ``sqlite:///`` store.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import pytest

from mlops_provider.exceptions import ChampionMovedError, MlopsConfigurationError

ROOT = Path(__file__).resolve().parents[2]
MAX_XCOM_BYTES = 4096


def _name(prefix: str = "reg") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _small_json(result) -> str:
    text = json.dumps(result)
    assert len(text) < MAX_XCOM_BYTES, len(text)
    return text


def _log_model(C: float = 1.0) -> tuple[str, str]:
    """Log a tiny sklearn model through the hook; return (model_uri, run_id)."""
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from mlops_provider.hooks.mlflow import MlflowHook

    X, y = make_classification(60, n_features=4, random_state=0)
    with MlflowHook().mlflow_env():
        mlflow.set_experiment("test-registry")
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(
                LogisticRegression(C=C).fit(X, y), name="model",
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
            )
    return info.model_uri, run.info.run_id


@pytest.fixture
def client(mlflow_conn):
    from mlops_provider.hooks.mlflow import MlflowHook

    return MlflowHook().get_client()


@pytest.fixture
def two_versions(client):
    from mlops_provider.core.registry import register_model_version

    name = _name()
    uri1, run1 = _log_model(1.0)
    uri2, run2 = _log_model(0.1)
    v1 = register_model_version(client, name, uri1, run1)
    v2 = register_model_version(client, name, uri2, run2)
    return client, name, v1, v2


# ---------------------------------------------------------------------- core.registry


def test_register_is_idempotent_under_retry(client):
    from mlops_provider.core.registry import register_model_version

    name = _name()
    uri, run_id = _log_model()
    first = register_model_version(client, name, uri, run_id, tags={"k": "v"})
    again = register_model_version(client, name, uri, run_id)
    again_without_run = register_model_version(client, name, uri)
    assert first.created and not again.created and not again_without_run.created
    assert first.version == again.version == again_without_run.version == "1"
    versions = client.search_model_versions(f"name='{name}'")
    assert len(versions) == 1
    assert client.get_registered_model(name).aliases == {"challenger": 1} or client.get_registered_model(
        name
    ).aliases == {"challenger": "1"}
    assert versions[0].tags["k"] == "v"
    _small_json(first.to_dict())


def test_register_bad_model_uri_leaves_nothing(client):
    from mlops_provider.core.registry import register_model_version

    name = _name()
    with pytest.raises(MlopsConfigurationError, match="m-doesnotexist"):
        register_model_version(client, name, "models:/m-doesnotexist")
    with pytest.raises(MlopsConfigurationError, match="points at the registry"):
        register_model_version(client, name, "models:/other@champion")
    assert client.search_registered_models(filter_string=f"name='{name}'") == []


def _run_without_model() -> str:
    """A run that logged a file but no model (the reference sample a training run also logs)."""
    import mlflow

    from mlops_provider.hooks.mlflow import MlflowHook

    with MlflowHook().mlflow_env():
        mlflow.set_experiment("test-registry")
        with mlflow.start_run() as run:
            mlflow.log_dict({"rows": 3}, "reference/stats.json")
    return run.info.run_id


def test_register_runs_uri_without_a_model_creates_nothing(client):
    """Issue 13: runs:/<run>/<path> with no model there fails, and no registered model or version appears."""
    from mlops_provider.core.registry import register_model_version

    name = _name()
    run_id = _run_without_model()
    for path in ("model", "reference", "reference/stats.json"):
        with pytest.raises(
            MlopsConfigurationError,
            match=rf"runs:/{run_id}/{path}' cannot be registered: run {run_id} has no model at '{path}'.*"
            r"logged models: none; its artifacts: \['reference/'\]\. Nothing was registered",
        ):
            register_model_version(client, name, f"runs:/{run_id}/{path}")
    with pytest.raises(MlopsConfigurationError, match="run 'f00d' does not exist"):
        register_model_version(client, name, "runs:/f00d/model")
    assert client.search_registered_models(filter_string=f"name='{name}'") == []

    # a model registered before under that name gets no empty version either
    uri, model_run = _log_model()
    register_model_version(client, name, uri, model_run)
    with pytest.raises(MlopsConfigurationError, match="has no model at 'model'"):
        register_model_version(client, name, f"runs:/{run_id}/model")
    assert [str(v.version) for v in client.search_model_versions(f"name='{name}'")] == ["1"]


def test_register_runs_uri_of_a_logged_model_registers_its_files(client, tmp_path):
    """runs:/<run>/model of an MLflow 3 logged model registers that model (and loads), as mlflow.register_model does."""
    import mlflow.pyfunc

    from mlops_provider.core.registry import register_model_version
    from mlops_provider.hooks.mlflow import MlflowHook

    name = _name()
    uri, run_id = _log_model()
    registered = register_model_version(client, name, f"runs:/{run_id}/model")
    again = register_model_version(client, name, f"runs:/{run_id}/model")
    assert registered.created and not again.created and registered.version == again.version == "1"
    version = client.get_model_version(name, "1")
    assert version.source == uri and version.run_id == run_id  # the logged model, not the run's empty folder
    with MlflowHook().mlflow_env():
        model = mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert f"models:/{model.metadata.model_id}" == uri


@pytest.mark.parametrize(
    ("operator", "kwargs", "match"),
    [
        ("RegisterModelOperator", {"model_uri": "runs:/x/model", "registered_model_name": "m", "alias": "latest"},
         r"RegisterModelOperator 't': alias: Alias 'latest' is not valid"),
        ("RegisterModelOperator", {"model_uri": "runs:/x/model", "registered_model_name": " "},
         r"registered_model_name is empty"),
        ("PromoteModelOperator", {"registered_model_name": "m", "version": "two"},
         r"PromoteModelOperator 't': version must be a version number >= 1; got 'two'"),
        ("PromoteModelOperator", {"registered_model_name": "m", "version": 0}, r"version must be a version number >= 1; got 0"),
        ("PromoteModelOperator", {"registered_model_name": "m", "version": 2, "expected_champion_version": "v1"},
         r"expected_champion_version must be a version number >= 1, 'none' \(no champion yet\) or None \(no check\); got 'v1'"),
        ("PromoteModelOperator", {"registered_model_name": "m", "version": 2, "previous_alias": "v2"},
         r"previous_alias: Alias 'v2' is not valid"),
        ("RollbackModelOperator", {"registered_model_name": "m", "alias": "champ ion"}, r"alias: Alias 'champ ion' is not valid"),
        ("RollbackModelOperator", {"registered_model_name": "m", "expected_champion_version": True},
         r"expected_champion_version must be .*; got True"),
    ],
)
def test_registry_operators_check_arguments_when_the_dag_is_parsed(operator, kwargs, match):
    from mlops_provider.operators import registry

    with pytest.raises(MlopsConfigurationError, match=match):
        getattr(registry, operator)(task_id="t", **kwargs)


def test_registry_operators_accept_templates_and_versions():
    from mlops_provider.operators.registry import (
        PromoteModelOperator,
        RegisterModelOperator,
        RollbackModelOperator,
    )

    RegisterModelOperator(task_id="r", model_uri="{{ x }}", registered_model_name="{{ y }}", alias=None)
    PromoteModelOperator(task_id="p", registered_model_name="m", version="{{ ti.xcom_pull('r')['version'] }}",
                         expected_champion_version="none")
    PromoteModelOperator(task_id="p2", registered_model_name="m", version=3, expected_champion_version="2")
    RollbackModelOperator(task_id="b", registered_model_name="m", expected_champion_version=None)


def test_promote_moves_champion_and_keeps_previous(two_versions):
    from mlops_provider.core.registry import HISTORY_TAG, compare_and_set_alias, read_history

    client, name, v1, v2 = two_versions
    r1 = compare_and_set_alias(client, name, "champion", v1.version, "none", reason="first", actor="t")
    assert r1["changed"] and r1["previous_version"] is None
    r2 = compare_and_set_alias(client, name, "champion", v2.version, v1.version, reason="better", actor="t")
    assert r2["previous_version"] == v1.version
    model = client.get_registered_model(name)
    aliases = {k: str(v) for k, v in model.aliases.items()}
    assert aliases["champion"] == v2.version and aliases["previous-champion"] == v1.version
    assert "challenger" not in aliases  # v2 was the challenger; as champion it is not one any more
    history = read_history(model)
    assert [(h["action"], h["from"], h["to"], h["reason"]) for h in history] == [
        ("promote", None, v1.version, "first"),
        ("promote", v1.version, v2.version, "better"),
    ]
    assert HISTORY_TAG in model.tags
    # a retry of the same promotion changes nothing
    r3 = compare_and_set_alias(client, name, "champion", v2.version, v1.version)
    assert r3["changed"] is False
    assert len(read_history(client.get_registered_model(name))) == 2
    _small_json(r2)


def test_stale_expected_champion_changes_nothing(two_versions):
    from mlops_provider.core.registry import compare_and_set_alias

    client, name, v1, v2 = two_versions
    compare_and_set_alias(client, name, "champion", v1.version, None)
    before = client.get_registered_model(name)
    with pytest.raises(ChampionMovedError, match="expected version 7"):
        compare_and_set_alias(client, name, "champion", v2.version, "7")
    with pytest.raises(ChampionMovedError, match="expected version none"):
        compare_and_set_alias(client, name, "champion", v2.version, "none")
    after = client.get_registered_model(name)
    assert after.aliases == before.aliases
    assert after.tags == before.tags


def test_rollback_restores_previous_champion(two_versions):
    from mlops_provider.core.registry import compare_and_set_alias, read_history, rollback_alias

    client, name, v1, v2 = two_versions
    with pytest.raises(MlopsConfigurationError, match="previous-champion"):
        rollback_alias(client, name)  # nothing to roll back to yet
    compare_and_set_alias(client, name, "champion", v1.version)
    compare_and_set_alias(client, name, "champion", v2.version)
    result = rollback_alias(client, name, reason="bad predictions")
    assert result["version"] == v1.version and result["previous_version"] == v2.version
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    assert aliases["champion"] == v1.version and aliases["previous-champion"] == v2.version
    assert read_history(client.get_registered_model(name))[-1]["action"] == "rollback"


def test_missing_model_version_and_alias(two_versions):
    from mlops_provider.core.registry import compare_and_set_alias, rollback_alias

    client, name, v1, _ = two_versions
    with pytest.raises(MlopsConfigurationError, match="does not exist"):
        compare_and_set_alias(client, _name("missing"), "champion", "1")
    with pytest.raises(MlopsConfigurationError, match="version 99"):
        compare_and_set_alias(client, name, "champion", "99")
    with pytest.raises(MlopsConfigurationError, match="not valid"):
        compare_and_set_alias(client, name, "latest", v1.version)
    with pytest.raises(MlopsConfigurationError, match="does not exist"):
        rollback_alias(client, _name("missing"))
    assert "champion" not in client.get_registered_model(name).aliases


# ---------------------------------------------------------------------- the example DAG end to end


def _load_example_dags():
    path = ROOT / "dags" / "example_train_register_promote.py"
    spec = importlib.util.spec_from_file_location("example_train_register_promote", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag, module.rollback_dag


def _xcoms(dag_id: str, run_id: str) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id, key="return_value").all()
        return {row.task_id: XComModel.deserialize_value(row) for row in rows}


def test_example_dag_train_register_promote_rollback_score(airflow_db, mlflow_conn_server, tmp_path):
    import pandas as pd

    from mlops_provider.hooks.mlflow import MlflowHook

    dag, rollback_dag = _load_example_dags()
    name = _name("example")
    conf = {"model_name": name, "data_dir": str(tmp_path)}

    first = dag.test(run_conf=conf)
    assert first.state == "success", first.state
    second = dag.test(run_conf={**conf, "seed": 8})
    assert second.state == "success", second.state

    client = MlflowHook().get_client()
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    assert aliases == {"champion": "2", "previous-champion": "1"}  # the promoted challenger is not one any more

    results = _xcoms(dag.dag_id, second.run_id)
    for task_id in ("train", "register", "promote", "batch_predict"):
        _small_json(results[task_id])
    train = results["train"]
    assert set(train["metrics"]) >= {"accuracy", "f1", "roc_auc", "log_loss"}
    assert 0.0 <= train["metrics"]["roc_auc"] <= 1.0 and train["metrics"]["log_loss"] > 0
    run = client.get_run(train["run_id"])
    assert run.data.tags["mlops.dag_id"] == dag.dag_id
    assert run.data.tags["mlops.training_digest"] == train["training_data"]["digest"]
    assert run.data.tags["mlops.git_commit"]
    assert len(run.inputs.dataset_inputs) == 2
    artifacts = [a.path for a in client.list_artifacts(train["run_id"], "reference")]
    # the features sample (drift reference) and the model's outputs on its evaluation split (prediction drift)
    assert artifacts == ["reference/features.parquet", "reference/outputs.json", "reference/outputs.parquet"]
    register = results["register"]
    assert register["version"] == "2" and register["created"] is True

    scored = results["batch_predict"]
    assert scored["n_rows"] == 100 and scored["model_version"] == "2"
    out = pd.read_parquet(scored["output_uri"])
    assert list(out.columns) == ["customer_id", "prediction", "model_version"]
    assert len(out) == 100 and set(out["model_version"]) == {"2"}
    stats_run = client.get_run(scored["run_id"])
    assert stats_run.data.metrics["n_rows"] == 100

    rolled = rollback_dag.test(run_conf={"model_name": name, "reason": "bad predictions"})
    assert rolled.state == "success"
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    assert aliases["champion"] == "1" and aliases["previous-champion"] == "2"
    _small_json(_xcoms(rollback_dag.dag_id, rolled.run_id)["rollback"])


def test_docs_include_the_example_dag_snippets_verbatim():
    import re
    import textwrap

    source = (ROOT / "dags" / "example_train_register_promote.py").read_text()
    pages = {
        "training.md": ["howto_operator_train_model"],
        "registry.md": ["howto_operator_register_model", "howto_operator_promote_model", "howto_operator_rollback_model"],
        "prediction.md": ["howto_operator_batch_predict"],
    }
    for page, markers in pages.items():
        text = (ROOT / "docs" / "operators" / page).read_text()
        for marker in markers:
            match = re.search(rf"# \[START {marker}\]\n(.*?)\n\s*# \[END {marker}\]", source, re.S)
            assert match, marker
            assert textwrap.dedent(match.group(1)) in text, f"{page} is out of date for {marker}"
