"""Model registry primitives: idempotent registration and compare-and-set alias moves.

Pure functions over an ``MlflowClient`` (or the hook's scoped proxy of one).  They use aliases and
tags only (registry stages are deprecated since MLflow 2.9) and keep the number of requests small:

* :func:`register_model_version`: 3 requests when the version already exists (search + alias),
  4-5 when it is created (search, [create registered model,] create version, alias).
* :func:`compare_and_set_alias`: 4 requests (read the registered model, move the alias, keep the
  previous one under ``previous-champion``, append to the promotion history tag).

MLflow has no atomic compare-and-set on aliases: the check reads the aliases and the writes follow
immediately, so two promotions racing within the same few milliseconds can both pass the check.
The history tag records both in that case.  Within an Airflow deployment, serialise promotions of
one model with a pool of size 1 to close that window.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
HISTORY_TAG = "mlops.promotion_history"
SOURCE_TAG = "mlops.source_model_uri"
#: Promotion history kept on the registered model (oldest entries dropped beyond this size).
HISTORY_MAX_CHARS = 4000

_ALIAS_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


def _config_error(message: str) -> Exception:
    from mlops_provider.exceptions import MlopsConfigurationError

    return MlopsConfigurationError(message)


def _moved_error(message: str) -> Exception:
    from mlops_provider.exceptions import ChampionMovedError

    return ChampionMovedError(message)


def registry_client(client: Any) -> Any:
    """
    The client's registry client, which talks to the store without ``MlflowClient``'s extra
    ``get_registered_model`` request before every alias or version-tag call (its check that the name is not a prompt;
    :func:`get_registered_model` does that check itself, on the read the caller makes anyway).

    Call the functions of this module inside ``MlflowHook.mlflow_env()`` so those requests carry the
    connection's credentials.  Falls back to the public client if MLflow changes that private method.
    """
    getter = getattr(client, "_get_registry_client", None)
    if getter is None:
        return client
    try:
        return getter()
    except Exception:  # noqa: BLE001 - any failure: use the public client
        return client


def _error_code(err: BaseException) -> str | None:
    return getattr(err, "error_code", None)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def validate_alias(alias: str) -> str:
    alias = str(alias).strip()
    if not alias or not _ALIAS_RE.match(alias) or re.fullmatch(r"v\d+", alias, flags=re.I) or alias == "latest":
        raise _config_error(
            f"Alias {alias!r} is not valid: use letters, digits, '_' and '-', and not 'latest' or 'v<number>'"
        )
    return alias


def parse_model_uri(model_uri: str) -> dict[str, str | None]:
    """
    Split a model URI into what registration needs.

    ``models:/m-<id>`` (a logged model, MLflow 3) gives ``model_id``; ``runs:/<run_id>/<path>`` gives
    ``run_id`` and ``artifact_path``; ``models:/<name>/<version>`` and ``models:/<name>@<alias>``
    are registry URIs and cannot be registered again.
    """
    uri = str(model_uri).strip()
    if uri.startswith("runs:/"):
        rest = uri[len("runs:/") :].strip("/")
        run_id, _, path = rest.partition("/")
        if not run_id or not path:
            raise _config_error(f"Model URI {uri!r} must look like runs:/<run_id>/<artifact path>")
        return {"run_id": run_id, "artifact_path": path, "model_id": None}
    if uri.startswith("models:/"):
        rest = uri[len("models:/") :].strip("/")
        if rest.startswith("m-") and "/" not in rest and "@" not in rest:
            return {"run_id": None, "artifact_path": None, "model_id": rest}
        raise _config_error(
            f"Model URI {uri!r} points at the registry already; register the logged model "
            "(models:/m-<id> or runs:/<run_id>/<path>) instead"
        )
    if not uri:
        raise _config_error("Model URI is empty")
    return {"run_id": None, "artifact_path": None, "model_id": None}


@dataclass
class RegisteredVersion:
    """Result of :func:`register_model_version` (``asdict`` is small JSON)."""

    name: str
    version: str
    alias: str | None
    model_uri: str
    run_id: str | None
    created: bool

    @property
    def version_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "version_uri": self.version_uri}


def find_model_version(client: MlflowClient, name: str, model_uri: str, run_id: str | None) -> Any | None:
    """The existing version of ``name`` registered from ``model_uri`` (same source or source tag), if any."""
    from mlflow.exceptions import MlflowException

    escaped = name.replace("'", "\\'")
    flt = f"name='{escaped}'" + (f" and run_id='{run_id}'" if run_id else "")
    try:
        versions = registry_client(client).search_model_versions(filter_string=flt, max_results=1000)
    except MlflowException as err:
        if _error_code(err) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    matches = [
        v
        for v in versions
        if v.source == model_uri or (v.tags or {}).get(SOURCE_TAG) == model_uri
        or (getattr(v, "model_id", None) and f"models:/{v.model_id}" == model_uri)
    ]
    if not matches:
        return None
    return min(matches, key=lambda v: int(v.version))


def register_model_version(
    client: MlflowClient,
    name: str,
    model_uri: str,
    run_id: str | None = None,
    alias: str | None = CHALLENGER,
    tags: dict[str, Any] | None = None,
) -> RegisteredVersion:
    """
    Register ``model_uri`` as a version of ``name`` and point ``alias`` at it; safe to retry.

    If a version registered from the same ``model_uri`` (and run) exists already, it is reused: its
    tags are left as they are and only the alias is (re)set.  The registered model is created when
    missing; if creating the version then fails, a registered model created by this call is deleted
    again, so a bad URI leaves nothing behind.
    """
    from mlflow.exceptions import MlflowException

    name = str(name).strip()
    if not name:
        raise _config_error("Registered model name is empty")
    if alias:
        alias = validate_alias(alias)
    parsed = parse_model_uri(model_uri)
    run_id = run_id or parsed["run_id"]
    model_id = parsed["model_id"]

    existing = find_model_version(client, name, model_uri, run_id)
    created = existing is None
    if existing is None:
        version_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        version_tags[SOURCE_TAG] = model_uri
        try:
            source = model_uri
            if model_id:
                # checks that the logged model exists before anything is created, and finds its run
                logged = client.get_logged_model(model_id)
                run_id = run_id or logged.source_run_id
            elif parsed["artifact_path"]:
                source, model_id = _runs_uri_source(client, model_uri, str(run_id), str(parsed["artifact_path"]))
        except MlflowException as err:
            raise _config_error(f"Model {model_uri!r} cannot be registered: {_first_line(err)}") from None

        def create() -> Any:
            return client.create_model_version(
                name=name, source=source, run_id=run_id, tags=version_tags, model_id=model_id,
                await_creation_for=0,
            )

        created_model = False
        try:
            try:
                existing = create()
            except MlflowException as err:
                if _error_code(err) != "RESOURCE_DOES_NOT_EXIST":
                    raise
                try:
                    client.create_registered_model(name)
                    created_model = True
                except MlflowException as err2:
                    if _error_code(err2) != "RESOURCE_ALREADY_EXISTS":
                        raise
                existing = create()
        except MlflowException as err:
            if created_model:
                _delete_quietly(client, name)
            raise _config_error(
                f"Could not register {model_uri!r} as a version of {name!r}: {_first_line(err)}"
            ) from None
    version = str(existing.version)
    if alias:
        registry_client(client).set_registered_model_alias(name, alias, version)
    return RegisteredVersion(
        name=name, version=version, alias=alias or None, model_uri=model_uri, run_id=run_id, created=created
    )


def _runs_uri_source(client: MlflowClient, model_uri: str, run_id: str, path: str) -> tuple[str, str | None]:
    """
    (source, model_id) to register ``runs:/<run_id>/<path>`` from, as ``mlflow.register_model`` resolves it:
    a model logged by the run under that name (MLflow 3: ``models:/m-<id>``), else an ``MLmodel`` file
    among the run's own artifacts at ``path``.

    :raises MlopsConfigurationError: the run does not exist, or holds no model at ``path`` (registering
        it would create a version with no model files); nothing is created.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        if _error_code(err) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            raise _config_error(f"Model URI {model_uri!r} cannot be registered: run {run_id!r} does not exist") from None
        raise
    escaped = path.replace("'", "\\'")
    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{escaped}'",
    )
    if logged:
        latest = max(logged, key=lambda m: m.creation_timestamp or 0)
        return f"models:/{latest.model_id}", latest.model_id
    files = [a.path for a in client.list_artifacts(run_id, path)]
    if f"{path.rstrip('/')}/MLmodel" in files:
        return RunsArtifactRepository.get_underlying_uri(model_uri), None
    top = sorted(a.path + ("/" if a.is_dir else "") for a in client.list_artifacts(run_id))[:20]
    models = sorted(
        m.name for m in client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
    )[:20]
    raise _config_error(
        f"Model URI {model_uri!r} cannot be registered: run {run_id} has no model at {path!r} "
        f"(no logged model named {path!r} and no MLmodel file under its artifacts {path!r}); "
        f"the run's logged models: {models or 'none'}; its artifacts: {top or 'none'}. Nothing was registered"
    )


def _delete_quietly(client: MlflowClient, name: str) -> None:
    try:
        client.delete_registered_model(name)
    except Exception:  # noqa: BLE001 - best effort cleanup; the original error is what matters
        pass


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def get_registered_model(client: MlflowClient, name: str) -> Any:
    """The registered model ``name``; a clear configuration error when it does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        model = registry_client(client).get_registered_model(name)
    except MlflowException as err:
        if _error_code(err) == "RESOURCE_DOES_NOT_EXIST":
            raise _config_error(f"Registered model {name!r} does not exist") from None
        raise
    if str((model.tags or {}).get("mlflow.prompt.is_prompt", "")).lower() == "true":
        raise _config_error(f"{name!r} is a prompt, not a registered model")
    return model


def _aliases(model: Any) -> dict[str, str]:
    aliases = model.aliases or {}
    if isinstance(aliases, list):  # older entities: list of RegisteredModelAlias
        return {a.alias: str(a.version) for a in aliases}
    return {str(k): str(v) for k, v in aliases.items()}


def read_history(model: Any) -> list[dict[str, Any]]:
    """The promotion history recorded on a registered model (oldest first)."""
    raw = (model.tags or {}).get(HISTORY_TAG)
    if not raw:
        return []
    try:
        history = json.loads(raw)
    except json.JSONDecodeError:
        return []
    return history if isinstance(history, list) else []


def _encode_history(history: list[dict[str, Any]]) -> str:
    text = json.dumps(history, separators=(",", ":"))
    while len(text) > HISTORY_MAX_CHARS and len(history) > 1:
        history = history[1:]
        text = json.dumps(history, separators=(",", ":"))
    return text


def _normalise_expected(expected: Any) -> tuple[bool, str | None]:
    """(check?, expected version or None for 'no champion')."""
    if expected is None:
        return False, None
    text = str(expected).strip()
    if text.lower() in ("", "none", "null"):
        return True, None
    return True, str(int(text)) if text.isdigit() else text


def compare_and_set_alias(
    client: MlflowClient,
    name: str,
    alias: str = CHAMPION,
    new_version: str | int | None = None,
    expected_version: str | int | None = None,
    *,
    reason: str = "",
    actor: str = "",
    previous_alias: str | None = PREVIOUS_CHAMPION,
    action: str = "promote",
    model: Any = None,
) -> dict[str, Any]:
    """
    Move ``alias`` of ``name`` to ``new_version`` if it still points at ``expected_version``.

    :param expected_version: the version the decision was based on; ``None`` skips the check,
        ``"none"`` (or an empty string) requires that the alias is not set yet.
    :param previous_alias: alias kept on the version ``alias`` pointed at before (``None`` to skip).
    :param reason: why (stored in the history tag); ``actor``: who (dag/run/task).
    :param model: the registered model entity when the caller has just read it (saves a request).
    :returns: ``{"name", "alias", "version", "previous_version", "changed", "history_entry"}``.
    :raises ChampionMovedError: the alias moved since the decision; nothing was changed.
    :raises MlopsConfigurationError: the model or version does not exist; nothing was changed.
    """
    from mlflow.exceptions import MlflowException

    alias = validate_alias(alias)
    if previous_alias:
        previous_alias = validate_alias(previous_alias)
    if new_version is None or not str(new_version).strip().isdigit():
        raise _config_error(f"Version to set alias {alias!r} of {name!r} to must be a number, got {new_version!r}")
    new_version = str(int(str(new_version).strip()))
    check, expected = _normalise_expected(expected_version)

    if model is None:
        model = get_registered_model(client, name)
    aliases = _aliases(model)
    current = aliases.get(alias)
    if current == new_version:
        # already done (a retry after success, or a rerun): change nothing, whatever was expected
        _clear_won_challenger(client, name, alias, new_version, aliases)
        return {"name": name, "alias": alias, "version": new_version, "previous_version": current,
                "changed": False, "history_entry": None}
    if check and current != expected:
        raise _moved_error(
            f"Alias {alias!r} of model {name!r} points at version {current or 'none'} but the decision "
            f"expected version {expected or 'none'}; nothing was changed (re-run the decision)"
        )
    result: dict[str, Any] = {
        "name": name,
        "alias": alias,
        "version": new_version,
        "previous_version": current,
        "changed": current != new_version,
    }
    try:
        registry_client(client).set_registered_model_alias(name, alias, new_version)
    except MlflowException as err:
        if _error_code(err) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise _config_error(
                f"Cannot point alias {alias!r} of {name!r} at version {new_version}: {_first_line(err)}"
            ) from None
        raise
    if previous_alias and current is not None:
        registry_client(client).set_registered_model_alias(name, previous_alias, current)
    _clear_won_challenger(client, name, alias, new_version, aliases)
    entry = {
        "action": action,
        "alias": alias,
        "from": current,
        "to": new_version,
        "at": _now(),
        "by": actor,
        "reason": reason[:300],
    }
    history = read_history(model) + [entry]
    registry_client(client).set_registered_model_tag(name, HISTORY_TAG, _encode_history(history))
    result["history_entry"] = entry
    return result


def _clear_won_challenger(client: Any, name: str, alias: str, version: str, aliases: dict[str, str]) -> None:
    """A challenger promoted to champion is no longer a challenger: drop the ``challenger`` alias from it."""
    if alias == CHAMPION and aliases.get(CHALLENGER) == version:
        registry_client(client).delete_registered_model_alias(name, CHALLENGER)


def rollback_alias(
    client: MlflowClient,
    name: str,
    alias: str = CHAMPION,
    previous_alias: str = PREVIOUS_CHAMPION,
    expected_version: str | int | None = None,
    *,
    reason: str = "",
    actor: str = "",
) -> dict[str, Any]:
    """
    Point ``alias`` back at the version under ``previous_alias``; the demoted version becomes the new
    ``previous_alias`` (so a rollback can itself be undone) and the history records why.

    :raises MlopsConfigurationError: no model, or no ``previous_alias`` to roll back to.
    :raises ChampionMovedError: ``expected_version`` given and ``alias`` no longer points at it.
    """
    alias = validate_alias(alias)
    previous_alias = validate_alias(previous_alias)
    model = get_registered_model(client, name)
    aliases = _aliases(model)
    target = aliases.get(previous_alias)
    if target is None:
        raise _config_error(
            f"Cannot roll back {name!r}: alias {previous_alias!r} is not set, so there is no earlier "
            f"{alias!r} to restore (aliases: {aliases or 'none'})"
        )
    if aliases.get(alias) is None:
        raise _config_error(f"Cannot roll back {name!r}: alias {alias!r} is not set")
    if expected_version is None:
        expected_version = aliases[alias]
    return compare_and_set_alias(
        client, name, alias, target, expected_version, reason=reason, actor=actor,
        previous_alias=previous_alias, action="rollback", model=model,
    )
