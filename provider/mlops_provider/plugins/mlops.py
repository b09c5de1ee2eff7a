"""The Airflow plugin of the provider: the MLOps view, registered from ``get_provider_info()["plugins"]``.

Installing the provider is enough: the API server mounts :data:`~mlops_provider.plugins.app.app` at
``/mlops`` and the UI shows "MLOps" in its navigation (an external view of the plugin's own pages).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlops_provider.plugins.app import URL_PREFIX, app


class MlopsPlugin(AirflowPlugin):
    """Models, model timelines, versions and reports of the MLOps loop, inside the Airflow UI."""

    name = "mlops"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "MLOps view"}]
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
    from airflow.configuration import conf

    return MlopsPlugin if conf.getboolean("core", "lazy_discover_providers", fallback=True) else None


EntryPointPlugin = _entry_point_plugin()
