"""The Airflow plugin of the provider: the MLOps view, registered from ``get_provider_info()["plugins"]``.

Installing the provider is enough: the API server mounts the view's FastAPI app at ``/mlops`` and the UI
shows "MLOps" in its navigation (an external view of the app's own pages, at ``/plugin/mlops``).

Every Airflow process loads plugins, task processes too (for macros), so this module stays light: the
FastAPI app (FastAPI, Jinja2, the page code) is imported by the API server only, by the warm-up thread its
root middleware starts (:mod:`.warmup`) or else on the first request routed to it.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.plugins_manager import AirflowPlugin

from mlops_provider.plugins import URL_PREFIX


class _LazyApp:
    """An ASGI app that imports and builds :data:`mlops_provider.plugins.app.app` on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from mlops_provider.plugins.app import app

            self._app = app
        await self._app(scope, receive, send)


class WarmUpMiddleware:
    """
    A pass-through ASGI middleware of the API server's root app whose only job is to start the view's warm-up.

    Only the API server builds plugin root middlewares, and it builds them when it starts (the ASGI lifespan
    startup), so the warm-up (:mod:`mlops_provider.plugins.warmup`: imports, MLflow client, timelines) runs
    before the first person opens the view, in the API server alone, once per worker process.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        try:
            from mlops_provider.plugins import warmup

            if warmup.enabled():
                warmup.start()
        except Exception:  # noqa: BLE001 - never keep the API server from starting
            import logging

            logging.getLogger(__name__).warning("MLOps view: the warm-up could not start", exc_info=True)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class ConnectionTestPortFix:
    """
    Let the connection list's Test button work for ``mlflow`` connections on Airflow 3.3 (a pass-through otherwise).

    The Airflow 3.3.2 UI posts ``"port": Number(connection.port)`` to ``POST /api/v2/connections/test``, so a
    connection without a port (every ``mlflow`` connection: its form hides the port) is sent as port ``0``;
    the API server compares that with the stored NULL, sees "another destination" and answers 400 ("The host
    or port to test differs from the stored connection") before the hook is asked.  Airflow fixed it in the
    API (apache/airflow#73298: port 0 counts as no port); until a release has it, this middleware makes the
    same normalisation for ``conn_type == "mlflow"`` test requests only, and touches no other request.
    """

    PATH = "/api/v2/connections/test"

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or not scope.get("path", "").endswith(self.PATH):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = fix_connection_test_body(b"".join(chunks))
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def fix_connection_test_body(body: bytes) -> bytes:
    """The body of a connection test, with ``"port": 0`` read as no port for ``mlflow`` connections."""
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or data.get("conn_type") != "mlflow" or data.get("port") != 0:
        return body
    data["port"] = None
    return json.dumps(data).encode()


def _replay(messages: list[Any], receive: Any) -> Any:
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class MlopsPlugin(AirflowPlugin):
    """Models, model timelines, versions and reports of the MLOps loop, inside the Airflow UI."""

    name = "mlops"
    fastapi_apps = [{"app": _LazyApp(), "url_prefix": URL_PREFIX, "name": "MLOps view"}]
    fastapi_root_middlewares = [
        {"middleware": WarmUpMiddleware, "name": "MLOps view warm-up"},
        {"middleware": ConnectionTestPortFix, "name": "mlflow connection Test button (Airflow 3.3 port 0)"},
    ]
    external_views = [
        {
            "name": "MLOps",
            "href": f"{URL_PREFIX}/",
            "url_route": "mlops",
            "destination": "nav",
            "category": "browse",
        }
    ]


def _entry_point_plugin() -> type[MlopsPlugin] | None:
    """
    The plugin for Airflow's ``airflow.plugins`` entry point, when provider plugins are not loaded.

    Airflow 3.3 loads the ``plugins`` of ``get_provider_info()`` only with ``[core]
    lazy_discover_providers = False`` (its default is true), while ``airflow.plugins`` entry points are
    always loaded.  The entry point resolves to the plugin only in the default case and to ``None``
    (skipped quietly by Airflow) otherwise, so the plugin is loaded exactly once either way.
    """
    from airflow import settings

    return MlopsPlugin if settings.LAZY_LOAD_PROVIDERS else None


EntryPointPlugin = _entry_point_plugin()
