"""Register, promote and roll back models in the MLflow model registry (aliases and tags, no stages)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider._args import is_templated
from mlops_provider.hooks.mlflow import MlflowHook
from mlops_provider.lineage import LineageMixin, records
from mlops_provider.links.mlflow import MlflowModelVersionLink, MlflowRunLink, record_link

if TYPE_CHECKING:
    from airflow.sdk import Context


def _check_static(where: str, *, name: Any = None, aliases: dict[str, Any] | None = None,
                  versions: dict[str, Any] | None = None) -> None:
    """Parse-time checks of the registry arguments that are not templated (no I/O)."""
    from mlops_provider.core.registry import validate_alias
    from mlops_provider.exceptions import MlopsConfigurationError

    if name is not None and not is_templated(name) and not str(name).strip():
        raise MlopsConfigurationError(f"{where}: registered_model_name is empty")
    for arg, alias in (aliases or {}).items():
        if alias not in (None, "") and not is_templated(alias):
            try:
                validate_alias(alias)
            except MlopsConfigurationError as err:
                raise MlopsConfigurationError(f"{where}: {arg}: {err}") from None
    for arg, (value, none_allowed) in (versions or {}).items():
        if value is None or is_templated(value):
            continue
        text = "" if isinstance(value, bool) else str(value).strip()
        if (text.isdigit() and int(text) >= 1) or (none_allowed and not isinstance(value, bool) and text.lower() in ("none", "null", "")):
            continue
        allowed = "a version number >= 1" + (", 'none' (no champion yet) or None (no check)" if none_allowed else "")
        raise MlopsConfigurationError(f"{where}: {arg} must be {allowed}; got {value!r}")


def _actor(context: Context, task_id: str) -> str:
    dag = context.get("dag")
    return f"airflow:{getattr(dag, 'dag_id', '?')}/{context.get('run_id') or '?'}/{task_id}"[:250]


class _RegistryOperator(LineageMixin, BaseOperator):
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#e8dff5"

    mlflow_conn_id: str

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)


class RegisterModelOperator(_RegistryOperator):
    """
    Register a logged model as a version of a registered model, point an alias at it, tag it.

    Idempotent: when a version registered from the same model URI (and run) exists, it is returned
    and only the alias is set again, so a retry or a rerun never adds a second version.  The
    registered model is created when missing (and removed again if creating the version fails).
    A ``runs:/<run_id>/<path>`` URI whose run holds no model at ``<path>`` fails with
    :class:`~mlops_provider.exceptions.MlopsConfigurationError` naming the run's logged models and
    artifacts, and creates nothing (no version without model files).

    :param model_uri: the logged model, ``models:/m-<id>`` (what ``TrainModelOperator`` returns) or
        ``runs:/<run_id>/<path>``.
    :param registered_model_name: name in the registry.
    :param alias: alias to point at the version (default ``challenger``; empty for none).
    :param tags: tags of the new version (not changed on an existing version).
    :param run_id: the MLflow run that logged the model (found from the URI when omitted).
    :param mlflow_conn_id: the MLflow connection.
    """

    template_fields: Sequence[str] = ("model_uri", "registered_model_name", "alias", "tags", "run_id", "mlflow_conn_id")
    template_fields_renderers = {"tags": "json"}
    operator_extra_links = (MlflowModelVersionLink(), MlflowRunLink())

    def __init__(
        self,
        *,
        model_uri: str,
        registered_model_name: str,
        alias: str | None = "challenger",
        tags: dict[str, Any] | None = None,
        run_id: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_static(f"RegisterModelOperator {self.task_id!r}", name=registered_model_name, aliases={"alias": alias})
        self.model_uri = model_uri
        self.registered_model_name = registered_model_name
        self.alias = alias
        self.tags = tags
        self.run_id = run_id
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core.registry import register_model_version

        tags = {"mlops.registered_by": _actor(context, self.task_id), **(self.tags or {})}
        with self.hook.mlflow_env():
            registered = register_model_version(
                self.hook.get_client(),
                str(self.registered_model_name),
                str(self.model_uri),
                run_id=self.run_id or None,
                alias=self.alias or None,
                tags=tags,
            )
        self.log.info(
            "%s version %s of %r from %s (alias %s)",
            "Registered" if registered.created else "Reusing existing",
            registered.version, registered.name, registered.model_uri, registered.alias,
        )
        self._lineage = records.register(self.hook.tracking_uri, str(self.model_uri), registered.to_dict())
        record_link(self, MlflowModelVersionLink.name, self.hook.model_version_url(registered.name, registered.version))
        if registered.run_id:
            record_link(self, MlflowRunLink.name, self.hook.run_url(registered.run_id))
        return registered.to_dict()


class PromoteModelOperator(_RegistryOperator):
    """
    Move alias ``champion`` to a model version, keeping the previous champion reachable.

    The version that held the alias gets ``previous-champion``; the registered model's
    ``mlops.promotion_history`` tag records who (DAG run and task), when and why.  With
    ``expected_champion_version`` the move is a compare-and-set: if the champion changed since the
    decision was taken, the task fails with :class:`~mlops_provider.exceptions.ChampionMovedError`
    and changes nothing.  Promoting the version that is already champion changes nothing (retry-safe).

    :param registered_model_name: name in the registry.
    :param version: version to promote (number, or an XCom of ``RegisterModelOperator``).
    :param expected_champion_version: version the decision saw as champion; ``"none"`` when there
        was none; ``None`` skips the check.
    :param reason: why (for the history), e.g. the gate verdict.
    :param alias: alias to move (default ``champion``).
    :param previous_alias: alias kept on the former champion (default ``previous-champion``).
    :param mlflow_conn_id: the MLflow connection.
    """

    template_fields: Sequence[str] = (
        "registered_model_name",
        "version",
        "expected_champion_version",
        "reason",
        "alias",
        "previous_alias",
        "mlflow_conn_id",
    )

    def __init__(
        self,
        *,
        registered_model_name: str,
        version: str | int,
        expected_champion_version: str | int | None = None,
        reason: str = "",
        alias: str = "champion",
        previous_alias: str = "previous-champion",
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_static(
            f"PromoteModelOperator {self.task_id!r}", name=registered_model_name,
            aliases={"alias": alias, "previous_alias": previous_alias},
            versions={"version": (version, False), "expected_champion_version": (expected_champion_version, True)},
        )
        self.registered_model_name = registered_model_name
        self.version = version
        self.expected_champion_version = expected_champion_version
        self.reason = reason
        self.alias = alias
        self.previous_alias = previous_alias
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core.registry import compare_and_set_alias

        name = str(self.registered_model_name)
        with self.hook.mlflow_env():
            result = compare_and_set_alias(
                self.hook.get_client(),
                name,
                str(self.alias),
                self.version,
                self.expected_champion_version,
                reason=str(self.reason or ""),
                actor=_actor(context, self.task_id),
                previous_alias=self.previous_alias or None,
            )
        self._lineage = records.alias_move(self.hook.tracking_uri, result, str(self.reason or ""), "promote")
        if result["changed"]:
            self.log.info("Alias %r of %r: version %s -> %s", result["alias"], name, result["previous_version"], result["version"])
        else:
            self.log.info("Alias %r of %r already points at version %s; nothing to do", result["alias"], name, result["version"])
        record_link(self, MlflowModelVersionLink.name, self.hook.model_version_url(name, result["version"]))
        return result


class RollbackModelOperator(_RegistryOperator):
    """
    Point ``champion`` back at the version under ``previous-champion`` and record why.

    The demoted version becomes ``previous-champion``, so the rollback can itself be undone, and
    the history tag records the rollback.  Fails without changing anything when there is no
    previous champion, or when ``expected_champion_version`` is given and the champion moved.

    :param registered_model_name: name in the registry.
    :param reason: why (stored in the history).
    :param expected_champion_version: the champion the decision to roll back was based on.
    :param alias: alias to roll back (default ``champion``).
    :param previous_alias: alias of the version to restore (default ``previous-champion``).
    :param mlflow_conn_id: the MLflow connection.
    """

    template_fields: Sequence[str] = (
        "registered_model_name",
        "reason",
        "expected_champion_version",
        "alias",
        "previous_alias",
        "mlflow_conn_id",
    )

    def __init__(
        self,
        *,
        registered_model_name: str,
        reason: str = "",
        expected_champion_version: str | int | None = None,
        alias: str = "champion",
        previous_alias: str = "previous-champion",
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_static(
            f"RollbackModelOperator {self.task_id!r}", name=registered_model_name,
            aliases={"alias": alias, "previous_alias": previous_alias},
            versions={"expected_champion_version": (expected_champion_version, True)},
        )
        self.registered_model_name = registered_model_name
        self.reason = reason
        self.expected_champion_version = expected_champion_version
        self.alias = alias
        self.previous_alias = previous_alias
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.core.registry import rollback_alias

        name = str(self.registered_model_name)
        with self.hook.mlflow_env():
            result = rollback_alias(
                self.hook.get_client(),
                name,
                str(self.alias),
                str(self.previous_alias),
                self.expected_champion_version,
                reason=str(self.reason or ""),
                actor=_actor(context, self.task_id),
            )
        self._lineage = records.alias_move(self.hook.tracking_uri, result, str(self.reason or ""), "rollback")
        self.log.info("Rolled back %r of %r: version %s -> %s", result["alias"], name, result["previous_version"], result["version"])
        record_link(self, MlflowModelVersionLink.name, self.hook.model_version_url(name, result["version"]))
        return result
