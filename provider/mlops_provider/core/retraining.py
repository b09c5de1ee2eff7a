"""
Retraining policy: cooldown per model, dedupe of event bursts, and the reasons behind every run.

Pure module (no Airflow import).  :class:`~mlops_provider.operators.retraining.RetrainingPolicyOperator`
feeds it the Asset events of a training DAG run.

How Airflow 3.3 delivers asset events (checked in 3.3.2's scheduler, see docs/drift-fires-retraining.md)
------------------------------------------------------------------------------------------------
* All events queued for a DAG since its previous asset-triggered run are merged into **one** run
  (``context["triggering_asset_events"]`` lists them all).
* An event whose timestamp is older than the previous asset-triggered run's ``run_after`` but was not
  consumed by it is **silently ignored** (apache/airflow#56749 case 3, #56050 with ``max_active_runs=1``).
* Several runs can still be created for one burst when events arrive while a run is being created.

What this policy makes explicit
-------------------------------
* **Reasons**: every event becomes a :class:`RetrainingReason` (kind, asset, time, source, summary);
  the same event seen twice (under its asset and under an alias, or on a task retry) counts once.
* **Recovered events**: the operator can also pass the events of the watched assets recorded since
  the last retraining (``inlet_events``), so events the scheduler ignored are merged too.
* **Cooldown**: at most one retraining per ``cooldown_seconds`` per model.  A run inside the cooldown
  does not retrain: its events that are older than the running retraining's start are recorded as
  *merged into* that retraining (they are covered by it); newer events are *deferred* and merged into
  the next retraining after the cooldown.  ``manual`` runs bypass the cooldown.
* **Kinds**: ``drift`` (features), ``prediction_drift`` (the model's outputs), ``performance_decay``,
  ``new_training_data``, ``schedule``, ``manual``; each reason names its kind.
* **Stale events**: drift, prediction drift and decay events name the model version they measured (``model_version`` in
  ``extra``).  Given the current champion's version, an event about an older version (the champion was
  replaced since) is dropped, recorded as consumed with why, and listed in ``decision.dropped``.
* **Idempotent**: the decision of a run is stored; a retried task gets the same decision back.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

KINDS = ("drift", "prediction_drift", "performance_decay", "new_training_data", "schedule", "manual", "other")
MAX_REASONS_IN_XCOM = 50


def classify(asset_uri: str | None, asset_name: str | None, extra: dict[str, Any] | None) -> str:
    """The kind of a reason: from ``extra["reason"]``/``extra["kind"]`` if set, else from the asset URI/name."""
    extra = extra or {}
    payload = extra.get("payload") if isinstance(extra.get("payload"), dict) else {}
    for source in (extra, payload):
        for key in ("reason", "kind"):
            value = source.get(key)
            if isinstance(value, str) and value in KINDS:
                return value
    text = f"{asset_uri or ''} {asset_name or ''}".lower()
    if "performance_decay" in text or "decay" in text:
        return "performance_decay"
    if "prediction_drift" in text:  # mlops://<model>/prediction_drift: the model's outputs drifted
        return "prediction_drift"
    if "drift" in text:
        return "drift"
    return "new_training_data"


def _iso(ts: Any) -> str:
    if isinstance(ts, datetime):
        return ts.isoformat()
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(ts).astimezone().isoformat()
    return str(ts)


def _epoch(ts: Any) -> float:
    if isinstance(ts, datetime):
        return ts.timestamp()
    if isinstance(ts, (int, float)):
        return float(ts)
    return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()


def _summary(kind: str, extra: dict[str, Any]) -> str:
    payload = extra.get("payload") if isinstance(extra.get("payload"), dict) else {}
    for source in (extra, payload):
        for key in ("summary", "message"):
            if isinstance(source.get(key), str):
                return source[key][:300]
    keys = [k for k in ("share_drifted", "drifted_columns", "metric", "drop", "batch_uri") if k in extra]
    if keys:
        return ", ".join(f"{k}={extra[k]}" for k in keys)[:300]
    return kind


@dataclass(frozen=True)
class RetrainingReason:
    """One asset event (or the schedule, or a person) that asked for a retraining."""

    kind: str
    asset: str
    timestamp: str
    source: str
    summary: str
    event_key: str
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def epoch(self) -> float:
        return _epoch(self.timestamp)


def reason_from_event(
    *,
    asset_uri: str | None,
    asset_name: str | None,
    extra: dict[str, Any] | None,
    timestamp: Any,
    source_dag_id: str | None = None,
    source_run_id: str | None = None,
    source_task_id: str | None = None,
    source_map_index: int | None = None,
    event_id: int | None = None,
) -> RetrainingReason:
    """A reason from one Asset event's fields (as found in ``triggering_asset_events`` or ``inlet_events``)."""
    extra = dict(extra or {})
    kind = classify(asset_uri, asset_name, extra)
    if source_dag_id:
        source = f"{source_dag_id}/{source_run_id}/{source_task_id}"
        if source_map_index not in (None, -1):
            source += f"[{source_map_index}]"
    elif extra.get("from_trigger"):
        source = "asset watcher"
    else:
        source = "external (API)"
    # The identity does not use the database id: triggering_asset_events does not carry it.
    key = hashlib.sha256(
        json.dumps(
            [asset_uri or asset_name, _epoch(timestamp), source_dag_id, source_run_id, source_task_id,
             source_map_index if source_map_index is not None else -1],
            default=str,
        ).encode()
    ).hexdigest()[:24]
    small = {k: v for k, v in extra.items() if isinstance(v, (str, int, float, bool)) and k != "from_trigger"}
    payload = extra.get("payload")
    if isinstance(payload, dict):
        small.update({f"payload.{k}": v for k, v in payload.items() if isinstance(v, (str, int, float, bool))})
    return RetrainingReason(
        kind=kind,
        asset=str(asset_uri or asset_name),
        timestamp=_iso(timestamp),
        source=source,
        summary=_summary(kind, extra),
        event_key=key,
        details=dict(list(small.items())[:20]),
    )


def synthetic_reason(kind: str, run_id: str, when: Any, summary: str) -> RetrainingReason:
    """A reason that is not an asset event: ``schedule`` (the timetable) or ``manual`` (a person)."""
    key = hashlib.sha256(f"{kind}|{run_id}".encode()).hexdigest()[:24]
    return RetrainingReason(kind=kind, asset="", timestamp=_iso(when), source=run_id, summary=summary, event_key=key)


def merge_reasons(reasons: Iterable[RetrainingReason]) -> list[RetrainingReason]:
    """Deduplicate by event identity, oldest first."""
    by_key: dict[str, RetrainingReason] = {}
    for reason in reasons:
        by_key.setdefault(reason.event_key, reason)
    return sorted(by_key.values(), key=lambda r: (r.epoch, r.event_key))


@dataclass
class RetrainingDecision:
    """What the policy decided for one run, with every reason it took into account."""

    model: str
    run_id: str
    retrain: bool
    verdict: str  # "retrain" | "cooldown" | "covered" | "nothing_new" | "stale"
    message: str
    reasons: list[RetrainingReason]
    merged_event_count: int
    deferred_count: int = 0
    last_retraining_run_id: str | None = None
    last_retraining_at: float | None = None
    cooldown_until: float | None = None
    #: events dropped because they are about a model version older than the champion, with why
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = [r.to_dict() for r in self.reasons[:MAX_REASONS_IN_XCOM]]
        data["kinds"] = sorted({r.kind for r in self.reasons})
        return data


def reason_model_version(reason: RetrainingReason) -> int | None:
    """The model version an event is about (``extra["model_version"]``), or ``None`` when it names none."""
    for key in ("model_version", "payload.model_version"):
        value = reason.details.get(key)
        if value is None or isinstance(value, bool):
            continue
        try:
            return int(str(value))
        except ValueError:
            continue
    return None


def stale_reasons(reasons: Iterable[RetrainingReason], champion_version: int | str | None) -> dict[str, str]:
    """``event_key -> why`` for the reasons about a model version older than ``champion_version``."""
    if champion_version is None:
        return {}
    current = int(str(champion_version))
    stale: dict[str, str] = {}
    for reason in reasons:
        version = reason_model_version(reason)
        if version is not None and version < current:
            stale[reason.event_key] = (
                f"{reason.kind} event about v{version}, older than the champion v{current}: "
                f"a newer model already replaced the one it measured"
            )
    return stale


def default_ledger_path() -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(home, "mlops", "retraining_ledger.sqlite3")


class RetrainingLedger:
    """
    SQLite record of retrainings, consumed events and deferred reasons, per model.

    Put it where every worker sees the same file (with LocalExecutor, ``$AIRFLOW_HOME``).  Each decision
    runs in one ``BEGIN IMMEDIATE`` transaction, so two runs deciding at once are serialised.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path or default_ledger_path()

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS decision (
                model TEXT NOT NULL, run_id TEXT NOT NULL, decided_at REAL NOT NULL, retrain INTEGER NOT NULL,
                body TEXT NOT NULL, PRIMARY KEY (model, run_id));
            CREATE TABLE IF NOT EXISTS consumed (
                model TEXT NOT NULL, event_key TEXT NOT NULL, run_id TEXT NOT NULL, how TEXT NOT NULL,
                reason TEXT NOT NULL, PRIMARY KEY (model, event_key));
            CREATE TABLE IF NOT EXISTS deferred (
                model TEXT NOT NULL, event_key TEXT NOT NULL, deferred_at REAL NOT NULL, reason TEXT NOT NULL,
                PRIMARY KEY (model, event_key));
            """
        )
        return conn

    def last_retraining(self, model: str) -> tuple[str, float] | None:
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT run_id, decided_at FROM decision WHERE model = ? AND retrain = 1 "
                "ORDER BY decided_at DESC LIMIT 1",
                (model,),
            ).fetchone()
            return (row[0], row[1]) if row else None
        finally:
            conn.close()

    def consumed(self, model: str) -> list[dict[str, Any]]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT event_key, run_id, how, reason FROM consumed WHERE model = ?", (model,)
            ).fetchall()
            return [{"event_key": r[0], "run_id": r[1], "how": r[2], "reason": json.loads(r[3])} for r in rows]
        finally:
            conn.close()

    def decide(
        self,
        model: str,
        run_id: str,
        reasons: Iterable[RetrainingReason],
        *,
        cooldown_seconds: float,
        now: float | None = None,
        champion_version: int | str | None = None,
    ) -> RetrainingDecision:
        """
        Decide (and record) whether run ``run_id`` retrains ``model``; see the module docstring.

        With ``champion_version``, an event about an older model version (a decay measured on the
        predictions of a champion that was replaced since) is dropped: recorded as consumed (``stale``)
        and listed with why in ``decision.dropped``; it never starts a retraining on its own.
        """
        now = time.time() if now is None else now
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            stored = conn.execute(
                "SELECT body FROM decision WHERE model = ? AND run_id = ?", (model, run_id)
            ).fetchone()
            if stored:  # a retry of the same task: same answer, nothing counted twice
                conn.execute("COMMIT")
                return _decision_from_json(stored[0])

            incoming = merge_reasons(reasons)
            done = {
                row[0]
                for row in conn.execute("SELECT event_key FROM consumed WHERE model = ?", (model,))
            }
            fresh = [r for r in incoming if r.event_key not in done]
            pending = [
                _reason_from_json(row[0])
                for row in conn.execute("SELECT reason FROM deferred WHERE model = ?", (model,))
            ]
            candidates = merge_reasons(fresh + pending)
            stale = stale_reasons(candidates, champion_version)
            dropped = []
            for r in candidates:
                if r.event_key in stale:
                    dropped.append({"event_key": r.event_key, "kind": r.kind, "asset": r.asset,
                                    "timestamp": r.timestamp, "why": stale[r.event_key]})
                    conn.execute(
                        "INSERT OR IGNORE INTO consumed VALUES (?, ?, ?, 'stale', ?)",
                        (model, r.event_key, run_id, json.dumps(r.to_dict() | {"why": stale[r.event_key]})),
                    )
                    conn.execute("DELETE FROM deferred WHERE model = ? AND event_key = ?", (model, r.event_key))
            candidates = [r for r in candidates if r.event_key not in stale]
            last = conn.execute(
                "SELECT run_id, decided_at FROM decision WHERE model = ? AND retrain = 1 "
                "ORDER BY decided_at DESC LIMIT 1",
                (model,),
            ).fetchone()
            manual = any(r.kind == "manual" for r in candidates)
            in_cooldown = last is not None and now - last[1] < cooldown_seconds and not manual

            if not candidates and dropped:
                decision = RetrainingDecision(
                    model=model, run_id=run_id, retrain=False, verdict="stale",
                    message=(
                        f"No retraining of {model!r}: all {len(dropped)} new event(s) are about versions older "
                        f"than the champion v{champion_version} ({'; '.join(d['why'] for d in dropped[:3])})"
                    ),
                    reasons=incoming, merged_event_count=0,
                    last_retraining_run_id=last[0] if last else None,
                    last_retraining_at=last[1] if last else None,
                )
            elif not candidates:
                decision = RetrainingDecision(
                    model=model, run_id=run_id, retrain=False, verdict="nothing_new",
                    message=(
                        f"No new reason to retrain {model!r}: all {len(incoming)} event(s) of this run were "
                        "already consumed by earlier retrainings"
                    ),
                    reasons=incoming, merged_event_count=0,
                    last_retraining_run_id=last[0] if last else None,
                    last_retraining_at=last[1] if last else None,
                )
            elif in_cooldown:
                assert last is not None
                covered = [r for r in candidates if r.epoch <= last[1]]
                later = [r for r in candidates if r.epoch > last[1]]
                for r in covered:
                    conn.execute(
                        "INSERT OR IGNORE INTO consumed VALUES (?, ?, ?, 'covered', ?)",
                        (model, r.event_key, last[0], json.dumps(r.to_dict())),
                    )
                    conn.execute("DELETE FROM deferred WHERE model = ? AND event_key = ?", (model, r.event_key))
                for r in later:
                    conn.execute(
                        "INSERT OR IGNORE INTO deferred VALUES (?, ?, ?, ?)",
                        (model, r.event_key, now, json.dumps(r.to_dict())),
                    )
                until = last[1] + cooldown_seconds
                verdict = "cooldown" if later else "covered"
                message = (
                    f"{model!r} was retrained by run {last[0]} {now - last[1]:.0f}s ago (cooldown "
                    f"{cooldown_seconds:.0f}s, until {_iso(until)}): {len(covered)} event(s) predate that "
                    f"retraining and are merged into it; {len(later)} newer event(s) are deferred to the next "
                    "retraining after the cooldown"
                )
                decision = RetrainingDecision(
                    model=model, run_id=run_id, retrain=False, verdict=verdict, message=message,
                    reasons=candidates, merged_event_count=len(candidates), deferred_count=len(later),
                    last_retraining_run_id=last[0], last_retraining_at=last[1], cooldown_until=until,
                )
            else:
                for r in candidates:
                    conn.execute(
                        "INSERT OR IGNORE INTO consumed VALUES (?, ?, ?, 'retrained', ?)",
                        (model, r.event_key, run_id, json.dumps(r.to_dict())),
                    )
                conn.execute("DELETE FROM deferred WHERE model = ?", (model,))
                kinds = sorted({r.kind for r in candidates})
                decision = RetrainingDecision(
                    model=model, run_id=run_id, retrain=True, verdict="retrain",
                    message=(
                        f"Retraining {model!r} for {len(candidates)} merged reason(s) ({', '.join(kinds)}), "
                        f"{len(pending)} of them deferred from earlier runs"
                    ),
                    reasons=candidates, merged_event_count=len(candidates),
                    last_retraining_run_id=last[0] if last else None,
                    last_retraining_at=last[1] if last else None,
                    cooldown_until=now + cooldown_seconds,
                )
            decision.dropped = dropped
            if dropped and decision.verdict != "stale":
                decision.message += f"; dropped {len(dropped)} stale event(s) about versions older than v{champion_version}"
            conn.execute(
                "INSERT INTO decision VALUES (?, ?, ?, ?, ?)",
                (model, run_id, now, int(decision.retrain), json.dumps(decision.to_dict() | {"all": True})),
            )
            conn.execute("COMMIT")
            return decision
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()


def _reason_from_json(text: str) -> RetrainingReason:
    data = json.loads(text)
    return RetrainingReason(**{k: data[k] for k in RetrainingReason.__dataclass_fields__ if k in data})


def _decision_from_json(text: str) -> RetrainingDecision:
    data = json.loads(text)
    data.pop("all", None)
    data.pop("kinds", None)
    data["reasons"] = [RetrainingReason(**r) for r in data["reasons"]]
    return RetrainingDecision(**data)
