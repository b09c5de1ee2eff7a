"""The MLOps view (the provider's Airflow plugin) under Airflow's own API server app.

Real parts: Airflow's ``create_app()`` (the plugin is mounted the way the API server mounts it), the
session's migrated metadata DB, JWTs issued by the auth manager, a real ``sqlite:///`` MLflow store
written with MLflow's client and the provider's registry functions (promotion history, aliases).

Two stand-ins, said here: the MLflow runs carry the tags and artifacts the operators write, written
directly (the browser system test, tests/system/test_ui_browser.py, reads what real operators wrote);
and :class:`PerDagAuthManager` adds per-DAG rules to the simple auth manager, which has none (FAB or
Keycloak express them with per-DAG permissions): the rule is the only thing it changes.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

MODEL = f"ui-model-{uuid.uuid4().hex[:6]}"
TRAIN_DAG = "continuous_training__ui"
MONITOR_DAG = "drift_monitor__ui"
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


#: The optional keys of newer gate reports (SHAPES.md), written by hand.
NEW_REPORT_KEYS = {
    "groups": {
        "features": ["region"], "min_group_size": 30,
        "challenger": {"region=EU": {"n": 400, "metrics": {"recall": 0.71}}, "region=US": {"n": 380, "metrics": {"recall": 0.69}}},
        "champion": {"region=EU": {"n": 400, "metrics": {"recall": 0.66}}, "region=US": {"n": 380, "metrics": {"recall": 0.7}}},
        "excluded": [{"group": "region=APAC", "n": 12, "reason": "fewer than 30 rows"}],
    },
    "intervals": {"level": 0.95, "resamples": 1000, "seed": 7, "metrics": {
        "roc_auc": {"challenger": [0.75, 0.79], "champion": [0.74, 0.78], "diff": [-0.01, 0.03]},
        "recall": {"challenger": [0.66, 0.74], "champion": None, "diff": None},
    }},
}


class PerDagAuthManager(SimpleAuthManager):
    """The simple auth manager with a per-user DAG allow-list (users not listed: the role decides)."""

    ALLOWED = {"trainer": {TRAIN_DAG, MONITOR_DAG}, "monitor": {MONITOR_DAG}, "nobody": set()}

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None):
        allowed = self.ALLOWED.get(user.username)
        if allowed is None:
            return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        return method == "GET" and details is not None and details.id in allowed


def _run(client, experiment_id, name, tags, metrics=None, artifacts=None, start=None):
    from mlflow.entities import Metric

    run = client.create_run(experiment_id, run_name=name, tags=tags, start_time=start)
    run_id = run.info.run_id
    if metrics:
        client.log_batch(run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
    for path, text in (artifacts or {}).items():
        client.log_text(run_id, text, path) if isinstance(text, str) else _log_bytes(client, run_id, path, text)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _log_bytes(client, run_id, path, data):
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, os.path.basename(path))
        Path(local).write_bytes(data)
        client.log_artifact(run_id, local, os.path.dirname(path))


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """A model with two versions (v2 champion, v1 previous champion), a gate run, a monitored batch."""
    from mlflow import MlflowClient

    from mlops_provider.core.registry import compare_and_set_alias

    root = tmp_path_factory.mktemp("ui-mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    exp = {kind: client.create_experiment(f"{MODEL}-{kind}", artifact_location=str(root / kind))
           for kind in ("training", "gate", "validation", "monitoring")}
    ids: dict[str, str] = {}
    client.create_registered_model(MODEL)
    for version in (1, 2):
        airflow_run = f"manual__2026-12-0{version}T10:00:00+00:00"
        run_id = _run(client, exp["training"], f"train {MODEL} #{version}", {
            "mlops.dag_id": TRAIN_DAG, "mlops.run_id": airflow_run, "mlops.task_id": "train",
            "mlops.training_uri": f"/data/train-{version}.parquet", "mlops.training_digest": "ab" * 32,
        }, {"accuracy": 0.7 + version / 100, "n_train_rows": 4800})
        card = {}
        if version == 2:  # a model card on the training run, named by the version's tag (SHAPES.md)
            client.log_text(run_id, "<html><body><h1>Model card of v2</h1></body></html>", "model_card/model_card.html")
            card = {"mlops.model_card": "model_card/model_card.html"}
        client.create_model_version(MODEL, source=str(root / "training" / run_id / "model"), run_id=run_id, tags={
            "mlops.registered_by": f"airflow:{TRAIN_DAG}/{airflow_run}/register_challenger", **card})
        report = {
            "model_name": MODEL, "challenger_version": str(version),
            "champion_version": str(version - 1) if version > 1 else None,
            "decision": {"passed": True, "verdict": "blessed", "basis": "champion", "notes": [], "checks": [
                {"kind": "value", "metric": "roc_auc", "slice": "overall", "passed": True, "observed": 0.77,
                 "baseline": 0.76, "bound": {"lower_bound": 0.7, "upper_bound": None}, "message": "ok"}]},
            "spec": {"fairness": []}, "dataset": {"uri": "/data/eval.parquet", "digest": "cd" * 32, "n_rows": 1200},
            "metrics": {"challenger": {"overall": {"roc_auc": 0.77}}, "champion": {"overall": {"roc_auc": 0.76}}},
        }
        gate_tags = {"mlops.kind": "promotion_gate", "mlops.model_name": MODEL, "mlops.verdict": "blessed"}
        if version == 2:  # a newer report (SHAPES.md): per-group metrics and bootstrap intervals; the gate
            # run has the lineage tags of training runs (v1 stands for an older run without them)
            report.update(NEW_REPORT_KEYS)
            report["decision"]["checks"][0]["interval"] = {"level": 0.95, "observed": [0.75, 0.79], "diff": [-0.01, 0.03]}
            gate_tags.update({"mlops.dag_id": TRAIN_DAG, "mlops.run_id": airflow_run, "mlops.task_id": "gate",
                              "mlops.map_index": "-1", "mlops.try_number": "1"})
        gate_run = _run(client, exp["gate"], f"gate {MODEL} v{version}", gate_tags,
            artifacts={"gate/gate_report.json": json.dumps(report), "gate/gate_report.png": TINY_PNG})
        for key, value in {"passed": "true", "run_id": gate_run, "compared_to": str(version - 1) or "none",
                           "summary": '{"verdict":"blessed","failed":[]}'}.items():
            client.set_model_version_tag(MODEL, str(version), f"gate.{key}", value)
        compare_and_set_alias(client, MODEL, "champion", str(version), None,
                              reason="gate blessed", actor=f"airflow:{TRAIN_DAG}/{airflow_run}/promote")
        ids[f"train{version}"], ids[f"gate{version}"] = run_id, gate_run
    client.set_model_version_tag(MODEL, "2", "approval.decision", "approved")
    client.set_model_version_tag(MODEL, "2", "approval.by", "alice")
    batch = "/data/landing/day-01.parquet"
    ids["validation"] = _run(client, exp["validation"], "validate day-01", {
        "mlops.kind": "data_validation", "mlops.dataset_uri": batch, "mlops.validation.success": "true",
        "airflow.dag_id": MONITOR_DAG, "airflow.run_id": "asset_triggered__1", "airflow.task_id": "validate_batch",
    }, artifacts={"validation/report.html": "<html><body><h1>Validation PASSED</h1></body></html>"})
    ids["drift"] = _run(client, exp["monitoring"], "drift day-01", {
        "mlops.kind": "drift_check", "mlops.model_name": MODEL, "mlops.model_version": "2",
        "mlops.current_uri": batch, "mlops.airflow_ti": f"{MONITOR_DAG}/asset_triggered__1",
    }, {"drift.share_of_drifted_columns": 0.9, "drift.dataset_drift": 1, "drift.drift_share_threshold": 0.5},
        artifacts={"drift/report.html": "<html><body><h1>Drift report</h1></body></html>"})
    ids["orphan"] = _run(client, exp["monitoring"], "no lineage", {"note": "written outside Airflow"})
    return {"uri": uri, "root": root, "ids": ids}


@pytest.fixture(scope="module")
def api(story, airflow_db):
    """Airflow's API server app with the per-DAG auth manager, and a function returning auth headers."""
    from fastapi.testclient import TestClient

    env = {
        "AIRFLOW__CORE__AUTH_MANAGER": f"{__name__}.PerDagAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,trainer:viewer,monitor:viewer,nobody:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": "ui-plugin-test-" + "s" * 64,
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "mlflow", "host": story["uri"]}),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.chdir(story["root"])
        from airflow.api_fastapi.app import create_app, get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        client = TestClient(create_app())
        manager = get_auth_manager()
        assert isinstance(manager, PerDagAuthManager)

        def headers(user: str | None) -> dict[str, str]:
            if user is None:
                return {}
            role = "admin" if user == "admin" else "viewer"
            return {"Authorization": f"Bearer {manager.generate_jwt(SimpleAuthManagerUser(username=user, role=role))}"}

        yield client, headers


def _endpoints(story) -> dict[str, str]:
    ids = story["ids"]
    return {
        "models": "/mlops/",
        "model": f"/mlops/models/{MODEL}",
        "version": f"/mlops/models/{MODEL}/versions/2",
        "training run": f"/mlops/runs/{ids['train2']}",
        "gate report": f"/mlops/runs/{ids['gate2']}/gate",
        "gate chart": f"/mlops/runs/{ids['gate2']}/artifacts/gate/gate_report.png",
        "validation report": f"/mlops/runs/{ids['validation']}/artifacts/validation/report.html",
        "drift report": f"/mlops/runs/{ids['drift']}/artifacts/drift/report.html",
        "drift run": f"/mlops/runs/{ids['drift']}",
        "model card": f"/mlops/models/{MODEL}/versions/2/card",
    }


def test_every_endpoint_refuses_anonymous_and_serves_an_admin(api, story):
    client, headers = api
    for what, path in _endpoints(story).items():
        anonymous = client.get(path)
        assert anonymous.status_code == 401, (what, anonymous.status_code)
        assert "Log in to Airflow" in anonymous.text
        assert client.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code in (401, 403), what
        answer = client.get(path, headers=headers("admin"))
        assert answer.status_code == 200, (what, answer.text[:500])


def test_every_endpoint_checks_read_access_to_the_dags(api, story):
    """``nobody`` reads no DAG: 403 everywhere (the list is empty); ``monitor`` reads the monitoring DAG only."""
    client, headers = api
    endpoints = _endpoints(story)
    for what, path in endpoints.items():
        answer = client.get(path, headers=headers("nobody"))
        if what == "models":
            assert answer.status_code == 200 and MODEL not in answer.text and "hidden" in answer.text
        else:
            assert answer.status_code == 403, (what, answer.status_code)
    monitor_ok = {"validation report", "drift report", "drift run"}
    for what, path in endpoints.items():
        answer = client.get(path, headers=headers("monitor"))
        expected = 200 if what in monitor_ok | {"models"} else 403
        assert answer.status_code == expected, (what, answer.status_code)
        if what == "models":
            assert f">{MODEL}<" not in answer.text  # the model's training DAG is not readable
    for what, path in endpoints.items():
        assert client.get(path, headers=headers("trainer")).status_code == 200, what
    # a run that names no DAG: only for users who may read all DAGs
    orphan = f"/mlops/runs/{story['ids']['orphan']}"
    assert client.get(orphan, headers=headers("trainer")).status_code == 403
    assert client.get(orphan, headers=headers("admin")).status_code == 200


def test_models_page_shows_roles_gate_approval_and_data(api):
    client, headers = api
    page = client.get("/mlops/", headers=headers("admin")).text
    assert MODEL in page
    assert "champion" in page and "v2" in page and "previous-champion" in page and "v1" in page
    assert "blessed" in page and "approved" in page and "alice" in page
    assert "/data/train-2.parquet" in page and "4800 rows" in page
    assert f"/dags/{TRAIN_DAG}/runs/manual__2026-12-02T10%3A00%3A00%2B00%3A00" in page


def test_model_timeline_links_points_to_airflow_and_mlflow_runs(api, story):
    client, headers = api
    page = client.get(f"/mlops/models/{MODEL}", headers=headers("admin")).text
    assert '<svg id="timeline"' in page and 'class="point drift"' in page and 'class="point validation"' in page
    assert 'href="#batch-1"' in page and 'id="batch-1"' in page
    assert "0.90" in page and "0.50" in page  # drift share and its threshold
    assert f"/dags/{MONITOR_DAG}/runs/asset_triggered__1" in page
    assert f"/mlops/runs/{story['ids']['drift']}" in page
    assert "promote" in page and "gate blessed" in page


def test_version_page_and_gate_report_are_readable(api, story):
    client, headers = api
    page = client.get(f"/mlops/models/{MODEL}/versions/2", headers=headers("admin")).text
    assert "roc_auc" in page and "0.77" in page and "0.76" in page and "gate chart" in page
    assert "Airflow task instance" in page and f"/dags/{TRAIN_DAG}/runs/" in page
    gate = client.get(f"/mlops/runs/{story['ids']['gate2']}/gate", headers=headers("admin"))
    assert gate.headers["content-type"].startswith("text/html") and "blessed" in gate.text
    chart = client.get(f"/mlops/runs/{story['ids']['gate2']}/artifacts/gate/gate_report.png", headers=headers("admin"))
    assert chart.headers["content-type"] == "image/png" and chart.content == TINY_PNG


def test_reports_are_served_sandboxed_and_paths_are_checked(api, story):
    client, headers = api
    report = client.get(f"/mlops/runs/{story['ids']['validation']}/artifacts/validation/report.html",
                        headers=headers("admin"))
    assert "Validation PASSED" in report.text
    assert "sandbox" in report.headers["content-security-policy"]
    bad = client.get(f"/mlops/runs/{story['ids']['validation']}/artifacts/validation/..%2F..%2Fmlflow.db",
                     headers=headers("admin"))
    assert bad.status_code in (400, 404)
    missing = client.get(f"/mlops/runs/{story['ids']['validation']}/artifacts/nope.html", headers=headers("admin"))
    assert missing.status_code == 404
    assert client.get("/mlops/models/no-such-model", headers=headers("admin")).status_code == 404
    assert client.get("/mlops/runs/0123456789abcdef0123456789abcdef", headers=headers("admin")).status_code == 404


def test_plugin_is_loaded_once_with_its_view_in_the_navigation(airflow_db):
    from airflow import plugins_manager

    names = [p["name"] for p in plugins_manager.get_plugin_info()]
    assert names.count("mlops") == 1, names
    assert not plugins_manager.get_import_errors()
    (plugin,) = [p for p in plugins_manager.get_plugin_info() if p["name"] == "mlops"]
    (view,) = plugin["external_views"]
    assert view["href"] == "/mlops/" and view["destination"] == "nav" and view["url_route"] == "mlops"


def test_links_without_mlflow_ui_open_the_plugin_pages(monkeypatch):
    """Every extra link resolves: the MLflow UI with ``ui_url``, the plugin's pages without; no local path."""
    from mlops_provider.hooks.mlflow import MlflowHook

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": "sqlite:////x.db"}))
    hook = MlflowHook()
    base = "https://airflow.example.com/mlops"
    assert hook.run_url("r1", "3") == f"{base}/runs/r1"
    assert hook.model_version_url("credit model", 3) == f"{base}/models/credit%20model/versions/3"
    assert hook.artifact_url("r1", "validation/report.html") == f"{base}/runs/r1/artifacts/validation/report.html"
    assert hook.gate_report_url("r1") == f"{base}/runs/r1/gate"

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(
        {"conn_type": "mlflow", "host": "sqlite:////x.db", "extra": {"ui_url": "http://mlflow-ui:5000/"}}))
    hook = MlflowHook()
    assert hook.run_url("r1", "3") == "http://mlflow-ui:5000/#/experiments/3/runs/r1"
    assert hook.gate_report_url("r1", "3") == "http://mlflow-ui:5000/#/experiments/3/runs/r1/artifacts/gate/gate_report.png"
    assert hook.model_version_url("m", 2) == "http://mlflow-ui:5000/#/models/m/versions/2"


def test_version_page_links_the_model_card_served_like_the_reports(api, story):
    client, headers = api
    page = client.get(f"/mlops/models/{MODEL}/versions/2", headers=headers("admin")).text
    assert f'href="/mlops/models/{MODEL}/versions/2/card">Model card</a>' in page
    card = client.get(f"/mlops/models/{MODEL}/versions/2/card", headers=headers("admin"))
    assert card.status_code == 200 and "Model card of v2" in card.text
    assert "sandbox" in card.headers["content-security-policy"]
    # v1 has no card: no link, and the route says so
    assert "Model card" not in client.get(f"/mlops/models/{MODEL}/versions/1", headers=headers("admin")).text
    assert client.get(f"/mlops/models/{MODEL}/versions/1/card", headers=headers("admin")).status_code == 404


def test_gate_report_shows_groups_and_intervals_when_present(api, story):
    client, headers = api
    for path in (f"/mlops/models/{MODEL}/versions/2", f"/mlops/runs/{story['ids']['gate2']}/gate"):
        page = client.get(path, headers=headers("admin")).text
        assert "Metrics per group" in page and "Groups of region" in page and "under\n30 rows" in page
        assert "region=EU" in page and "0.71" in page and "0.66" in page and "region=US" in page
        assert "region=APAC (12 rows: fewer than 30 rows)" in page
        assert "Confidence intervals" in page and "95% bootstrap intervals (1000 resamples, seed 7)" in page
        assert "[0.75, 0.79]" in page and "[0.74, 0.78]" in page and "[-0.01, 0.03]" in page
        assert "95% [0.75, 0.79], diff [-0.01, 0.03]" in page  # the check's own interval
    # an older report (v1) has neither: the page leaves the sections out
    old = client.get(f"/mlops/models/{MODEL}/versions/1", headers=headers("admin")).text
    assert "roc_auc" in old and "Metrics per group" not in old and "Confidence intervals" not in old


def test_optional_report_sections_are_read_defensively():
    from mlops_provider.plugins.views import group_table, interval_of, interval_table, render

    assert group_table({}) is None and interval_table({}) is None and interval_of({}) is None
    assert group_table({"groups": "not a dict"}) is None and group_table({"groups": {"challenger": []}}) is None
    bad = {"groups": {"features": "region", "challenger": {"a": {"n": "x", "metrics": {"recall": "high"}}, "b": 3},
                      "excluded": ["?", {"n": 2}]},
           "intervals": {"level": 95, "metrics": {"auc": {"challenger": [0.1], "champion": "x"}, "f1": None}}}
    groups = group_table(bad)
    assert [r["group"] for r in groups["rows"]] == ["a", "b"] and groups["rows"][0]["challenger"] == {"recall": None}
    assert groups["features"] == [] and groups["excluded"] == [{"group": "?", "n": 2, "reason": ""}]
    intervals = interval_table(bad)
    assert intervals["rows"] == [{"metric": "auc", "challenger": "-", "champion": "-", "diff": "-"},
                                 {"metric": "f1", "challenger": "-", "champion": "-", "diff": "-"}]
    assert interval_of({"interval": {"observed": [0.1, "x"]}}) is None
    # the whole report body renders with them (malformed keys do not make an error page)
    report = {"model_name": "m", "challenger_version": "2", "decision": {"passed": False, "verdict": "not_blessed",
              "checks": [{"metric": "auc", "interval": "?"}]}, "metrics": {}, "dataset": {}, "spec": {}, **bad}
    html = render("gate", report=report, gate_run="r", gate_png=None, u=lambda p: p,
                  airflow_run=str, airflow_ti=str, mlflow_run=str)
    assert "Metrics per group" in html and "Confidence intervals" in html and "Confidence bootstrap" in html


def test_api_server_start_up_warms_the_view(api, story, monkeypatch):
    """The plugin's root middleware starts the warm-up; it reads the timelines into the cache."""
    from mlops_provider.plugins import store, warmup
    from mlops_provider.plugins.mlops import WarmUpMiddleware

    client, headers = api
    assert any(m.cls is WarmUpMiddleware for m in client.app.user_middleware)
    assert client.get("/mlops/", headers=headers("admin")).status_code == 200  # the app is built by now
    assert warmup.status["started"] and warmup.done.wait(120), warmup.status
    # what the thread runs, again on an empty cache: the model's monitoring runs are read ahead
    monkeypatch.setattr(store, "_CACHE", {})
    monkeypatch.setattr(warmup, "status", {**warmup.status, "models": 0, "timelines": 0})
    warmup.warm()
    assert warmup.status["models"] >= 1 and warmup.status["timelines"] >= 1
    (entry,) = [e for (uri, query), e in store._CACHE.items() if uri == story["uri"] and f"'{MODEL}'" in query
                and "mlops.model_name" in query]
    assert story["ids"]["drift"] in entry["runs"] and entry["since"] is not None
    monkeypatch.setenv("AIRFLOW__MLOPS__UI_WARM_UP", "False")
    assert warmup.enabled() is False
