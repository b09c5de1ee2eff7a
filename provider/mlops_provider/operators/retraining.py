"""RetrainingPolicyOperator: the first task of a training DAG scheduled on drift, decay, new data or time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider._args import check_number
from mlops_provider.exceptions import MlopsConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context

    from mlops_provider.core.retraining import RetrainingReason


def _events_of(accessor: Any) -> list[Any]:
    """Flatten a ``triggering_asset_events`` / ``inlet_events`` mapping (asset -> events)."""
    events: list[Any] = []
    if not accessor:
        return events
    for key in list(accessor):
        events.extend(accessor[key])
    return events


def reasons_from_context(context: Context, watch: Sequence[Asset] = (), lookback_after: str | None = None) -> list[RetrainingReason]:
    """
    Every reason this run was started for: its triggering asset events, plus (for ``watch`` assets)
    the events recorded after ``lookback_after`` that the scheduler did not hand to any run.
    """
    from mlops_provider.core.retraining import reason_from_event, synthetic_reason

    reasons: list[RetrainingReason] = []
    for event in _events_of(context.get("triggering_asset_events")):
        reasons.append(
            reason_from_event(
                asset_uri=event.asset.uri,
                asset_name=event.asset.name,
                extra=dict(event.extra or {}),
                timestamp=event.timestamp,
                source_dag_id=event.source_dag_id,
                source_run_id=event.source_run_id,
                source_task_id=event.source_task_id,
                source_map_index=event.source_map_index,
            )
        )
    inlet_events = context.get("inlet_events")
    for asset in watch:
        if inlet_events is None:
            break
        query = inlet_events[asset]
        if lookback_after:
            query = query.after(lookback_after)
        for event in list(query.limit(500)):
            reasons.append(
                reason_from_event(
                    asset_uri=event.asset.uri,
                    asset_name=event.asset.name,
                    extra=dict(event.extra or {}),
                    timestamp=event.timestamp,
                    source_dag_id=event.source_dag_id,
                    source_run_id=event.source_run_id,
                    source_task_id=event.source_task_id,
                    source_map_index=event.source_map_index,
                )
            )
    dag_run = context.get("dag_run")
    run_type = getattr(dag_run, "run_type", "") or ""
    run_type = str(getattr(run_type, "value", run_type)).lower()  # DagRunType enum or its value
    run_id = context["run_id"]
    when = getattr(dag_run, "run_after", None) or getattr(dag_run, "start_date", None) or 0
    if run_type.endswith("scheduled"):
        reasons.append(synthetic_reason("schedule", run_id, when, "periodic retraining (timetable)"))
    elif run_type.endswith("manual"):
        reasons.append(synthetic_reason("manual", run_id, when, "triggered by a person or the API"))
    return reasons


class RetrainingPolicyOperator(BaseOperator):
    """
    Decide whether this training-DAG run retrains the model, and record why.

    Put it first in a DAG scheduled on, for example,
    ``(drift | decay | new_data)`` or ``AssetOrTimeSchedule(timetable=..., assets=...)``: it reads every
    merged Asset event of the run (``context["triggering_asset_events"]``), applies a per-model cooldown
    and dedupe (:mod:`mlops_provider.core.retraining`), and returns the decision with all its reasons
    (XCom).  When the policy says no (cooldown, or nothing new) the task is **skipped** with the reason in
    its message, so the training tasks downstream are skipped too.

    :param model_name: registered model the policy applies to (cooldown is per model).
    :param cooldown: minimum time between two retrainings of the model (``timedelta`` or seconds, >= 0;
        checked when the DAG is parsed).
    :param watch: assets whose events since the last retraining are also collected through
        ``inlet_events`` (recovers events the scheduler merged away or ignored; see apache/airflow#56749).
        They are added to the task's inlets.
    :param ledger_path: SQLite ledger shared by the workers (default ``$AIRFLOW_HOME/mlops/retraining_ledger.sqlite3``).
    """

    template_fields: Sequence[str] = ("model_name", "ledger_path")
    ui_color = "#f3e5f5"

    def __init__(
        self,
        *,
        model_name: str,
        cooldown: timedelta | float = timedelta(hours=6),
        watch: Sequence[Asset] = (),
        ledger_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        where = f"RetrainingPolicyOperator {kwargs.get('task_id')!r}"
        if isinstance(cooldown, timedelta):
            check_number(where, "cooldown (seconds)", cooldown.total_seconds(), low=0)
        else:
            check_number(where, "cooldown", cooldown, low=0)
        if not isinstance(watch, list | tuple):
            raise MlopsConfigurationError(f"{where}: watch must be a list of Assets; got {type(watch).__name__}")
        super().__init__(**kwargs)
        self.model_name = model_name
        self.cooldown = cooldown
        self.watch = list(watch)
        self.ledger_path = ledger_path
        if self.watch:
            self.inlets = [*self.inlets, *self.watch]

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops_provider.core.retraining import RetrainingLedger
        from mlops_provider.exceptions import MlopsConfigurationError

        cooldown = self.cooldown.total_seconds() if isinstance(self.cooldown, timedelta) else float(self.cooldown)
        if cooldown < 0:
            raise MlopsConfigurationError(f"cooldown must be >= 0, got {self.cooldown!r}")
        if not self.model_name:
            raise MlopsConfigurationError("model_name is empty")
        ledger = RetrainingLedger(self.ledger_path)
        last = ledger.last_retraining(self.model_name)
        lookback = None
        if last is not None:
            from datetime import datetime

            lookback = datetime.fromtimestamp(last[1], tz=UTC).isoformat()
        reasons = reasons_from_context(context, self.watch, lookback)
        decision = ledger.decide(self.model_name, context["run_id"], reasons, cooldown_seconds=cooldown)
        for r in decision.reasons:
            self.log.info("reason: %-17s %s at %s from %s: %s", r.kind, r.asset, r.timestamp, r.source, r.summary)
        self.log.info("%s", decision.message)
        result = decision.to_dict()
        context["ti"].xcom_push(key="decision", value=result)
        if not decision.retrain:
            raise AirflowSkipException(decision.message)
        return result
