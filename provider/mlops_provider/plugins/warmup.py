"""
Warm the MLOps view up while the API server starts, so a person's first page view is as fast as the next.

Without it the first request of an API server process pays for importing MLflow and the view, opening the
MLflow store, compiling the page templates and, on a model's timeline, reading every monitoring run of the
model (thousands of runs): 10-15 s on a 2-core machine (docs/performance.md, "MLOps view").  The plugin's
root middleware (:class:`mlops_provider.plugins.mlops.WarmUpMiddleware`), which only the API server builds,
starts :func:`start` once per process: a daemon thread does that work ahead of the first visitor, and the
timeline cache (:func:`mlops_provider.plugins.store.cached_runs`) keeps what it read.  A page requested
while the warm-up still reads a timeline waits for that read instead of repeating it.

Off with ``[mlops] ui_warm_up = False`` (``AIRFLOW__MLOPS__UI_WARM_UP=False``).  A failure (no ``mlflow``
connection yet, MLflow down) is one warning line; pages then do the work on their first view.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

#: Timelines read ahead: of the models updated most recently.
MAX_MODELS = 20

done = threading.Event()
#: What the warm-up did: seconds, models seen, timelines read, the error that stopped it.
status: dict[str, Any] = {"started": False, "seconds": None, "models": 0, "timelines": 0, "error": None}
_lock = threading.Lock()


def enabled() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("mlops", "ui_warm_up", fallback=True)


def start() -> bool:
    """Start the warm-up thread (once per process); ``False`` when it was started before."""
    with _lock:
        if status["started"]:
            return False
        status["started"] = True
    threading.Thread(target=_run, name="mlops-ui-warm-up", daemon=True).start()
    return True


def _run() -> None:
    started = time.monotonic()
    try:
        warm()
    except Exception as err:  # noqa: BLE001 - the view still works, the first visitor waits instead
        status["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
        log.warning("MLOps view: warm-up stopped (%s); pages do that work on their first view", status["error"])
    finally:
        status["seconds"] = round(time.monotonic() - started, 3)
        done.set()
        log.info("MLOps view: warm-up finished in %.1f s (%s)", status["seconds"], status)


def warm() -> None:
    """Imports, templates, the MLflow client, and the timelines of the :data:`MAX_MODELS` latest models."""
    from mlops_provider.plugins import app, store, views

    views.compile_templates()
    hook = app.mlflow_hook()
    client = hook.get_client()
    names = [m.name for m in client.search_registered_models(
        max_results=MAX_MODELS, order_by=["last_updated_timestamp DESC"])]
    status["models"] = len(names)
    for name in names:
        store.timeline(client, store.get_model(client, name), cache_key=hook.tracking_uri)
        status["timelines"] += 1
