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


class MlopsPlugin(AirflowPlugin):
    """Models, model timelines, versions and reports of the MLOps loop, inside the Airflow UI."""

    name = "mlops"
    fastapi_apps = [{"app": _LazyApp(), "url_prefix": URL_PREFIX, "name": "MLOps view"}]
    fastapi_root_middlewares = [{"middleware": WarmUpMiddleware, "name": "MLOps view warm-up"}]
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
