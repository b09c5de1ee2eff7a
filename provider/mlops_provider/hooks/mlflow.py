"""MLflow hook: the one place in the provider that talks to an MLflow tracking and registry server."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlparse

from airflow.sdk import BaseHook

from mlops_provider.exceptions import (
    MlflowAuthenticationError,
    MlflowConnectionError,
    MlopsConfigurationError,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

T = TypeVar("T")

AUTH_MODES = ("none", "basic", "bearer")
#: MLflow 3's experiment kind: the provider's experiments are model development, not GenAI (whose UI
#: shows traces and token usage and files runs under "Evaluations").
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")

#: Environment variables MLflow reads at request time.  The hook sets them only inside
#: :meth:`MlflowHook.mlflow_env` and restores the previous values on exit.
_MLFLOW_ENV_KEYS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
)

# MLflow's fluent API keeps the tracking URI in a module global; the env scope is process-wide, so
# concurrent scopes in one process (rare in Airflow workers) are serialised.
_ENV_LOCK = threading.RLock()


class MlflowHook(BaseHook):
    """
    Interact with an MLflow tracking server and model registry.

    The connection's *host* is the tracking URI (``http(s)://host:port``, ``sqlite:///path.db``,
    ``postgresql://...`` or a local path).  Extras: ``registry_uri``, ``auth`` (``none``, ``basic``
    or ``bearer``; default ``basic`` when a login is set, ``bearer`` when only a password is set),
    ``verify_tls`` (default true), ``ui_url`` (base URL of the MLflow UI for links; defaults to the
    tracking URI when it is http(s)), ``max_retries`` (default 3), ``backoff_factor`` (default 1),
    ``timeout`` seconds (default 60), ``experiment_name`` (default experiment of operators).

    Credentials are never written to the process environment outside :meth:`mlflow_env`, which
    restores the previous values on exit, and they are masked in task logs.

    :param mlflow_conn_id: Airflow connection id of type ``mlflow``.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    # ------------------------------------------------------------------ UI form

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the generic connection form; one source of truth: ``ui-field-behaviour`` in provider info."""
        from mlops_provider.get_provider_info import get_provider_info

        (conn_type,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == cls.conn_type]
        behaviour = conn_type["ui-field-behaviour"]
        return {
            "hidden_fields": list(behaviour["hidden-fields"]),
            "relabeling": dict(behaviour["relabeling"]),
            "placeholders": dict(behaviour["placeholders"]),
        }

    # ------------------------------------------------------------------ connection parsing

    @cached_property
    def connection(self) -> Connection:
        conn = self.get_connection(self.mlflow_conn_id)
        if conn.password:
            from airflow.sdk.log import mask_secret

            mask_secret(conn.password)
        return conn

    @cached_property
    def extras(self) -> dict[str, Any]:
        """Connection extras as a dict; a clear error names the field when they are malformed."""
        raw = self.connection.extra
        if raw in (None, ""):
            return {}
        if isinstance(raw, dict):
            extras = raw
        else:
            try:
                extras = json.loads(raw)
            except json.JSONDecodeError as err:
                raise MlopsConfigurationError(
                    f"Connection {self.mlflow_conn_id!r}: field 'extra' is not valid JSON "
                    f"(line {err.lineno}, column {err.colno}: {err.msg})"
                ) from None
        if not isinstance(extras, dict):
            raise MlopsConfigurationError(
                f"Connection {self.mlflow_conn_id!r}: field 'extra' must be a JSON object, "
                f"got {type(extras).__name__}"
            )
        return extras

    def _extra_int(self, key: str, default: int) -> int:
        value = self.extras.get(key)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise MlopsConfigurationError(
                f"Connection {self.mlflow_conn_id!r}: extra {key!r} must be an integer, got {value!r}"
            ) from None

    def _extra_bool(self, key: str, default: bool) -> bool:
        value = self.extras.get(key)
        if value in (None, ""):
            return default
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise MlopsConfigurationError(
            f"Connection {self.mlflow_conn_id!r}: extra {key!r} must be true or false, got {value!r}"
        )

    @cached_property
    def tracking_uri(self) -> str:
        conn = self.connection
        host = (conn.host or "").strip()
        if not host:
            raise MlopsConfigurationError(
                f"Connection {self.mlflow_conn_id!r}: field 'host' (the tracking URI) is empty"
            )
        if "://" in host or host.startswith(("/", ".", "~")) or re.match(r"^[a-z+]+:", host):
            uri = host
        else:
            scheme = conn.schema or "http"
            uri = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        if uri.startswith(("http://", "https://")):
            parsed = urlparse(uri)
            if parsed.username or parsed.password:
                raise MlopsConfigurationError(
                    f"Connection {self.mlflow_conn_id!r}: put credentials in the login/password fields, "
                    "not in the tracking URI"
                )
        return uri.rstrip("/") if uri.startswith("http") else uri

    @cached_property
    def registry_uri(self) -> str:
        return self.extras.get("registry_uri") or self.tracking_uri

    @cached_property
    def auth_mode(self) -> str:
        mode = self.extras.get("auth")
        if mode in (None, ""):
            if self.connection.login:
                return "basic"
            return "bearer" if self.connection.password else "none"
        if mode not in AUTH_MODES:
            raise MlopsConfigurationError(
                f"Connection {self.mlflow_conn_id!r}: extra 'auth' must be one of "
                f"{', '.join(AUTH_MODES)}, got {mode!r}"
            )
        return mode

    @cached_property
    def verify_tls(self) -> bool:
        return self._extra_bool("verify_tls", True)

    @cached_property
    def ui_url(self) -> str | None:
        """Base URL of the MLflow UI, for links; ``None`` when there is no web UI to link to."""
        url = self.extras.get("ui_url")
        if url:
            return str(url).rstrip("/")
        if self.tracking_uri.startswith(("http://", "https://")):
            return self.tracking_uri
        return None

    @property
    def is_remote(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def _env_values(self) -> dict[str, str]:
        conn = self.connection
        env = {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_REGISTRY_URI": self.registry_uri,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self._extra_int("max_retries", 3)),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(self._extra_int("backoff_factor", 1)),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self._extra_int("timeout", 60)),
            # the download progress bar goes to stderr, which task logs show as ERROR lines
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
        mode = self.auth_mode
        if mode == "basic":
            if not conn.login or not conn.password:
                raise MlopsConfigurationError(
                    f"Connection {self.mlflow_conn_id!r}: auth 'basic' needs both login and password"
                )
            env["MLFLOW_TRACKING_USERNAME"] = conn.login
            env["MLFLOW_TRACKING_PASSWORD"] = conn.password
        elif mode == "bearer":
            if not conn.password:
                raise MlopsConfigurationError(
                    f"Connection {self.mlflow_conn_id!r}: auth 'bearer' needs the token in the password field"
                )
            env["MLFLOW_TRACKING_TOKEN"] = conn.password
        if not self.verify_tls:
            env["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
        return env

    # ------------------------------------------------------------------ scoped environment

    @contextlib.contextmanager
    def mlflow_env(self) -> Iterator[None]:
        """
        Point MLflow (fluent API, clients, artifact uploads) at this connection for the duration of the block.

        The previous environment and fluent tracking URI are restored on exit, so credentials never
        outlive the call.  Errors talking to the server are translated to one readable line.
        """
        values = self._env_values()
        with _ENV_LOCK:
            import mlflow

            saved = {key: os.environ.get(key) for key in _MLFLOW_ENV_KEYS}
            saved_uri = _current_fluent_tracking_uri()
            saved_registry = _current_fluent_registry_uri()
            try:
                for key in _MLFLOW_ENV_KEYS:
                    os.environ.pop(key, None)
                os.environ.update(values)
                mlflow.set_tracking_uri(self.tracking_uri)
                mlflow.set_registry_uri(self.registry_uri)
                try:
                    with warnings.catch_warnings():
                        # skops (MLflow's sklearn format) scans every loaded module on import; each of
                        # Airflow's deprecated-module shims then warns: ~1,000 useless lines per task log.
                        warnings.filterwarnings("ignore", module=r"skops\.io\._utils")
                        yield
                except Exception as err:
                    translated = self._translate_error(err)
                    if translated is err:
                        raise
                    raise translated from None
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                _restore_fluent_uris(saved_uri, saved_registry)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)`` inside :meth:`mlflow_env`."""
        with self.mlflow_env():
            return fn(*args, **kwargs)

    def _translate_error(self, err: Exception) -> Exception:
        """Turn transport and auth failures into one readable line; leave other errors as they are."""
        if isinstance(err, MlflowConnectionError | MlflowAuthenticationError | MlopsConfigurationError):
            return err
        text = str(err)
        secret = self.connection.password
        if secret:
            text = text.replace(secret, "***")
        where = self.tracking_uri
        if re.search(r"error code (401|403)\b|\b(401|403) Client Error|Unauthorized|Permission denied", text):
            code = "403" if "403" in text else "401"
            return MlflowAuthenticationError(
                f"MLflow server {where} rejected the credentials of connection {self.mlflow_conn_id!r} "
                f"(HTTP {code}); check its login/password or token"
            )
        transport = (
            "Max retries exceeded",
            "Connection refused",
            "Failed to establish a new connection",
            "Name or service not known",
            "Read timed out",
            "RemoteDisconnected",
            "too many 5",
            "Connection aborted",
            "Temporary failure in name resolution",
        )
        import requests

        if isinstance(err, requests.exceptions.RequestException) or any(t in text for t in transport):
            cause = _short_cause(text)
            return MlflowConnectionError(
                f"Cannot reach MLflow tracking server {where} (connection {self.mlflow_conn_id!r}): {cause}"
            )
        return err

    # ------------------------------------------------------------------ clients

    def get_client(self) -> MlflowClient:
        """
        Return an ``MlflowClient`` bound to this connection.

        Every method call runs inside :meth:`mlflow_env`, so the client works with authenticated
        servers and still leaves no credentials in the environment between calls.
        """
        from mlflow import MlflowClient

        with self.mlflow_env():
            client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        return _ScopedClient(client, self)  # type: ignore[return-value]

    def mark_experiment_kind(self, experiment: Any) -> None:
        """Tag an experiment made by MLflow's fluent ``set_experiment`` as model development (once)."""
        key, value = EXPERIMENT_KIND_TAG
        if key not in (getattr(experiment, "tags", None) or {}):
            self.get_client().set_experiment_tag(experiment.experiment_id, key, value)

    def get_conn(self) -> MlflowClient:
        """Alias of :meth:`get_client` (the BaseHook convention)."""
        return self.get_client()

    def test_connection(self) -> tuple[bool, str]:
        """Check that the tracking server answers and accepts the credentials (the UI's Test button)."""
        try:
            client = self.get_client()
            client.search_experiments(max_results=1)
            if self.registry_uri != self.tracking_uri or self.is_remote:
                client.search_registered_models(max_results=1)
        except Exception as err:
            translated = self._translate_error(err)
            return False, str(translated)
        return True, f"Connected to MLflow at {self.tracking_uri}"

    # ------------------------------------------------------------------ links

    def run_url(self, run_id: str, experiment_id: str | None = None) -> str:
        """URL of a run: its page in the MLflow UI, or in the MLOps view of Airflow without an MLflow UI."""
        if not self.ui_url:
            return plugin_url(f"/runs/{quote(run_id, safe='')}")
        if experiment_id is None:
            experiment_id = self.get_client().get_run(run_id).info.experiment_id
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_version_url(self, name: str, version: str | int) -> str:
        """URL of a registered model version in the MLflow UI, or in the MLOps view without an MLflow UI."""
        if not self.ui_url:
            return plugin_url(f"/models/{quote(name, safe='')}/versions/{version}")
        return f"{self.ui_url}/#/models/{quote(name, safe='')}/versions/{version}"

    def artifact_url(self, run_id: str, path: str, experiment_id: str | None = None) -> str:
        """URL of an artifact of a run: the MLflow UI's artifact view, or the file served by the MLOps view."""
        if not self.ui_url:
            return plugin_url(f"/runs/{quote(run_id, safe='')}/artifacts/{quote(path)}")
        return f"{self.run_url(run_id, experiment_id)}/artifacts/{path}"

    def gate_report_url(self, run_id: str, experiment_id: str | None = None, chart: str = "gate/gate_report.png") -> str:
        """URL of a gate run's readable report: its chart in the MLflow UI, or the MLOps view's report page."""
        if not self.ui_url:
            return plugin_url(f"/runs/{quote(run_id, safe='')}/gate")
        return self.artifact_url(run_id, chart, experiment_id)


def plugin_url(path: str) -> str:
    """
    Absolute URL of a page of the provider's MLOps view (the plugin the API server mounts at ``/mlops``).

    Built from ``[api] base_url``; a relative ``/mlops/...`` URL when it is not set (the Airflow UI
    resolves it against its own address).
    """
    from airflow.configuration import conf

    from mlops_provider.plugins import URL_PREFIX

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return f"{base}{URL_PREFIX}{path}"


class _ScopedClient:
    """Proxy around ``MlflowClient`` that runs each call in the hook's environment scope."""

    def __init__(self, client: MlflowClient, hook: MlflowHook) -> None:
        self._client = client
        self._hook = hook

    def create_experiment(self, name: str, artifact_location: str | None = None, tags: dict | None = None) -> str:
        """``MlflowClient.create_experiment``; the experiment is tagged as model development (not GenAI)."""
        key, value = EXPERIMENT_KIND_TAG
        with self._hook.mlflow_env():
            return self._client.create_experiment(name, artifact_location, {key: value, **(tags or {})})

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def scoped(*args: Any, **kwargs: Any) -> Any:
            with self._hook.mlflow_env():
                return attr(*args, **kwargs)

        return scoped

    def __repr__(self) -> str:
        return f"<MlflowClient via connection {self._hook.mlflow_conn_id!r} at {self._hook.tracking_uri}>"


def _current_fluent_tracking_uri() -> str | None:
    from mlflow.tracking import _tracking_service

    return getattr(_tracking_service.utils, "_tracking_uri", None)


def _current_fluent_registry_uri() -> str | None:
    from mlflow.tracking import _model_registry

    return getattr(_model_registry.utils, "_registry_uri", None)


def _restore_fluent_uris(tracking: str | None, registry: str | None) -> None:
    from mlflow.tracking import _model_registry, _tracking_service

    _tracking_service.utils._tracking_uri = tracking
    _model_registry.utils._registry_uri = registry


def _short_cause(text: str) -> str:
    """The innermost human-readable cause of a urllib3/requests error chain."""
    for pattern in (
        r"(Connection refused)",
        r"(Name or service not known|Temporary failure in name resolution)",
        r"(Read timed out[^)]*)",
        r"(too many \d+ error responses)",
        r"(RemoteDisconnected\([^)]*\))",
        r"(Connection aborted)",
    ):
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    first = text.strip().splitlines()[0] if text.strip() else type(text).__name__
    return first[:300]
