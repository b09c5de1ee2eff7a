"""The Airflow plugin of the provider: the MLOps view, registered from ``get_provider_info()["plugins"]``.

Installing the provider is enough: the API server mounts the view's FastAPI app at ``/mlops`` and the UI
shows "MLOps" in its navigation (an external view of the app's own pages, at ``/plugin/mlops``).

Every Airflow process loads plugins, task processes too (for macros), so this module stays light: the
FastAPI app (FastAPI, Jinja2, the page code) is imported on the first request the API server routes to it.
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


class MlopsPlugin(AirflowPlugin):
    """Models, model timelines, versions and reports of the MLOps loop, inside the Airflow UI."""

    name = "mlops"
    fastapi_apps = [{"app": _LazyApp(), "url_prefix": URL_PREFIX, "name": "MLOps view"}]
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
