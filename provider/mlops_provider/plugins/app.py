"""The MLOps view: a FastAPI app the Airflow API server mounts at :data:`URL_PREFIX`.

Pages (server-rendered HTML):

* ``/`` registered models with champion, challenger and previous champion, gate, approval, training data;
* ``/models/{name}`` the model timeline, versions, promotions and rollbacks, batches;
* ``/models/{name}/versions/{version}`` metrics, parameters, gate report, validation and drift reports;
* ``/runs/{run_id}`` any MLflow run the operators wrote (the target of "MLflow run" links without an
  MLflow UI), ``/runs/{run_id}/gate`` the readable gate report, ``/runs/{run_id}/artifacts/{path}``
  the run's artifacts (validation and drift reports are served sandboxed).

Every route authenticates through Airflow's auth manager and checks DAG read access (:mod:`.access`).
MLflow is reached through the connection ``[mlops] ui_mlflow_conn_id`` (default ``mlflow_default``).
"""

from __future__ import annotations

import mimetypes
from functools import cached_property
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response

from mlops_provider.plugins import URL_PREFIX, store
from mlops_provider.plugins.access import current_user, require_dags, run_dags

app = FastAPI(title="MLOps view of airflow-provider-mlops", docs_url=None, redoc_url=None, openapi_url=None)
User = Depends(current_user)


def _conn_id() -> str:
    from airflow.configuration import conf

    return conf.get("mlops", "ui_mlflow_conn_id", fallback="mlflow_default")


def mlflow_hook() -> Any:
    """The hook of the view's MLflow connection."""
    from mlops_provider.hooks.mlflow import MlflowHook

    return MlflowHook(mlflow_conn_id=_conn_id())


class _Mlflow:
    """MLflow for one request: one hook (one connection lookup), one client, shared by the route's steps."""

    def __init__(self) -> None:
        self.hook = mlflow_hook()

    @cached_property
    def client(self) -> Any:
        return self.hook.get_client()


Mlflow = Depends(_Mlflow)


class _Urls:
    """URLs of the plugin's pages and of the Airflow UI, relative to where the API server mounted us."""

    def __init__(self, request: Request) -> None:
        root = request.scope.get("root_path", "").rstrip("/")
        self.plugin = root
        self.airflow = root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else ""

    def u(self, path: str) -> str:
        return f"{self.plugin}{path}"

    def airflow_run(self, lineage: dict[str, str]) -> str:
        return f"{self.airflow}/dags/{quote(lineage['dag_id'], safe='')}/runs/{quote(lineage['run_id'], safe='')}"

    def airflow_ti(self, lineage: dict[str, str]) -> str:
        if not lineage.get("task_id"):
            return self.airflow_run(lineage)
        return f"{self.airflow_run(lineage)}/tasks/{quote(lineage['task_id'], safe='')}"

    def mlflow_run(self, run: dict[str, Any]) -> str:
        return self.u(f"/runs/{run['run_id']}")

    def context(self) -> dict[str, Any]:
        return {"u": self.u, "airflow_run": self.airflow_run, "airflow_ti": self.airflow_ti,
                "mlflow_run": self.mlflow_run}


def _page(request: Request, template: str, **context: Any) -> HTMLResponse:
    from mlops_provider.plugins.views import render

    return HTMLResponse(render(template, **_Urls(request).context(), **context))


def _not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} does not exist")


def _is_missing(err: Exception) -> bool:
    return "RESOURCE_DOES_NOT_EXIST" in str(err) or "not found" in str(err).lower()


@app.exception_handler(HTTPException)
async def _html_errors(request: Request, exc: HTTPException) -> HTMLResponse:
    from mlops_provider.plugins.views import render

    titles = {401: "not logged in", 403: "no access", 404: "not found"}
    login = "/auth/login"
    try:
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login()
    except Exception:  # noqa: BLE001 - the page still says what happened
        pass
    body = render("error", **_Urls(request).context(), code=exc.status_code,
                  title=titles.get(exc.status_code, "error"), detail=exc.detail, login=login)
    return HTMLResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _load_model(client: Any, name: str, user: Any) -> dict[str, Any]:
    try:
        model = store.get_model(client, name)
    except Exception as err:
        if _is_missing(err):
            raise _not_found(f"Registered model {name!r}") from None
        raise
    require_dags(user, model["dags"], f"model {name!r}")
    return model


def _load_run(client: Any, run_id: str, user: Any) -> dict[str, Any]:
    try:
        run = store.run_dict(client.get_run(run_id))
    except Exception as err:
        if _is_missing(err) or "INVALID_PARAMETER_VALUE" in str(err):
            raise _not_found(f"MLflow run {run_id!r}") from None
        raise
    dags = run_dags(run["tags"]) or ([run["lineage"]["dag_id"]] if run["lineage"] else [])
    if not dags and run["model_name"]:
        # runs without Airflow tags (gate report runs) belong to the model they are about
        _load_model(client, run["model_name"], user)
        return run
    require_dags(user, dags, f"MLflow run {run_id}")
    return run


def _trainings(client: Any, models: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """The training runs of every model's champion, challenger and previous champion (batched searches)."""
    wanted = {
        (model["name"], version["version"]): version["run_id"]
        for model in models for version in model["roles"].values() if version is not None
    }
    runs = store.get_runs(client, list(wanted.values()))
    return {key: runs.get(run_id) for key, run_id in wanted.items()}


@app.get("/", response_class=HTMLResponse)
def models_page(request: Request, user: Any = User, mlflow: _Mlflow = Mlflow) -> HTMLResponse:
    from mlops_provider.plugins.access import can_read_dags

    client = mlflow.client
    models = store.list_models(client)
    visible = [m for m in models if can_read_dags(user, m["dags"])]
    return _page(request, "models", models=visible, hidden=len(models) - len(visible),
                 training=_trainings(client, visible))


@app.get("/models/{name}", response_class=HTMLResponse)
def model_page(request: Request, name: str, user: Any = User, mlflow: _Mlflow = Mlflow) -> HTMLResponse:
    from mlops_provider.plugins.views import timeline_svg

    client = mlflow.client
    model = _load_model(client, name, user)
    timeline = store.timeline(client, model, cache_key=mlflow.hook.tracking_uri)
    chart = timeline_svg(timeline, model, run_href=lambda run_id: _Urls(request).u(f"/runs/{run_id}"))
    return _page(request, "model", model=model, timeline=timeline, chart=chart)


def _load_version(client: Any, name: str, version: str, user: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model (with the user's access checked) and its version ``version``; 404 when there is none."""
    model = _load_model(client, name, user)
    found = [v for v in model["versions"] if v["version"] == version]
    if not found:
        raise _not_found(f"Version {version} of model {name!r}")
    return model, found[0]


@app.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
def version_page(
    request: Request, name: str, version: str, user: Any = User, mlflow: _Mlflow = Mlflow,
) -> HTMLResponse:
    client = mlflow.client
    model, v = _load_version(client, name, version, user)
    training = store.get_training_run(client, v)
    gate_run = (v.get("gate") or {}).get("run_id")
    report = store.gate_report(client, gate_run) if gate_run else None
    hook = mlflow.hook
    card = v["tags"].get(store.MODEL_CARD_TAG)
    return _page(
        request, "version", model=model, v=v, training=training, report=report, gate_run=gate_run,
        gate_png=_Urls(request).u(f"/runs/{gate_run}/artifacts/{store.GATE_REPORT_PNG}") if gate_run else None,
        validation=(training or {}).get("tags", {}).get("mlops.validation_run_id"),
        drift_run=v["tags"].get("mlops.last_drift_run_id"),
        mlflow_version=hook.model_version_url(name, version) if hook.ui_url else None,
        model_card=_Urls(request).u(f"/models/{quote(name, safe='')}/versions/{quote(version, safe='')}/card")
        if card and v["run_id"] else None,
    )


@app.get("/models/{name}/versions/{version}/card")
def model_card(request: Request, name: str, version: str, user: Any = User, mlflow: _Mlflow = Mlflow) -> Response:
    """
    The version's model card (tag ``mlops.model_card``: an artifact path on the version's training run),
    served like the other reports: the model's access rules, sandboxed HTML.
    """
    client = mlflow.client
    model, v = _load_version(client, name, version, user)
    path = v["tags"].get(store.MODEL_CARD_TAG)
    if not path or not v["run_id"]:
        raise _not_found(f"Model card of version {version} of model {name!r}")
    return _artifact_response(client, v["run_id"], path)


@app.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str, user: Any = User, mlflow: _Mlflow = Mlflow) -> HTMLResponse:
    client = mlflow.client
    run = _load_run(client, run_id, user)
    hook = mlflow.hook
    mlflow_ui = hook.run_url(run_id, run["experiment_id"]) if hook.ui_url else None
    return _page(request, "run", run=run, artifacts=store.list_artifacts(client, run_id), mlflow_ui=mlflow_ui)


@app.get("/runs/{run_id}/gate", response_class=HTMLResponse)
def gate_page(request: Request, run_id: str, user: Any = User, mlflow: _Mlflow = Mlflow) -> HTMLResponse:
    client = mlflow.client
    _load_run(client, run_id, user)
    report = store.gate_report(client, run_id)
    if report is None:
        raise _not_found(f"Gate report of run {run_id}")
    return _page(request, "gate", report=report, gate_run=run_id,
                 gate_png=_Urls(request).u(f"/runs/{run_id}/artifacts/{store.GATE_REPORT_PNG}"))


@app.get("/runs/{run_id}/artifacts/{path:path}")
def artifact(request: Request, run_id: str, path: str, user: Any = User, mlflow: _Mlflow = Mlflow) -> Response:
    client = mlflow.client
    _load_run(client, run_id, user)
    return _artifact_response(client, run_id, path)


def _artifact_response(client: Any, run_id: str, path: str) -> Response:
    """One artifact file of a run (after the caller checked access); HTML is sandboxed."""
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or "" in parts:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"Bad artifact path {path!r}")
    try:
        data = store.read_artifact(client, run_id, path)
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for a missing file
        raise _not_found(f"Artifact {path!r} of run {run_id}") from err
    media = mimetypes.guess_type(path)[0] or "application/octet-stream"
    headers = {"Cache-Control": "private, max-age=60", "X-Content-Type-Options": "nosniff"}
    if media == "text/html":
        # reports run their own scripts: an opaque origin keeps them away from Airflow's cookie and API
        headers["Content-Security-Policy"] = "sandbox allow-scripts allow-popups allow-downloads"
    return Response(data, media_type=media, headers=headers)
