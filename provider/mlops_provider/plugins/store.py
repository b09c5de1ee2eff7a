"""What the MLOps view shows, read from what the operators already wrote to MLflow (no database of its own).

* registered models, their aliases (``champion``, ``challenger``, ``previous-champion``) and the
  promotion history tag (``mlops.promotion_history``: promotions and rollbacks, when, by which DAG run);
* model version tags: ``mlops.registered_by``, the gate's ``gate.*`` (verdict, report, gate run) and the
  approval's ``approval.*``;
* runs by ``mlops.kind``: ``data_validation`` (``validation/report.html``), ``drift_check``
  (``drift.*`` metrics, ``drift/report.html``), ``batch_prediction``, ``promotion_gate``
  (``gate/gate_report.json`` and ``.png``), ``performance_check``, and the training runs behind versions.

Every function takes an ``MlflowClient`` (the hook's scoped proxy) and returns plain dicts for the pages.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from typing import Any

from mlops_provider.plugins.access import DAG_TAGS, RUN_TAGS, TASK_TAGS, first_tag

ALIASES = ("champion", "challenger", "previous-champion")
HISTORY_TAG = "mlops.promotion_history"
GATE_REPORT_JSON = "gate/gate_report.json"
GATE_REPORT_PNG = "gate/gate_report.png"
#: Tag of a model version naming its model card (an artifact path on the version's training run).
MODEL_CARD_TAG = "mlops.model_card"
VALIDATION_REPORT = "validation/report.html"
DRIFT_REPORT = "drift/report.html"
#: Runs read per search request, and at most this many per timeline (newest first).
PAGE = 1000
MAX_TIMELINE_RUNS = 5000


def _aliases(model: Any) -> dict[str, str]:
    aliases = model.aliases or {}
    if isinstance(aliases, list):
        return {a.alias: str(a.version) for a in aliases}
    return {str(k): str(v) for k, v in aliases.items()}


def _history(model: Any) -> list[dict[str, Any]]:
    try:
        history = json.loads((model.tags or {}).get(HISTORY_TAG) or "[]")
    except json.JSONDecodeError:
        return []
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


def parse_actor(actor: str | None) -> dict[str, str] | None:
    """``airflow:<dag_id>/<run_id>/<task_id>`` (the provider's ``by`` and ``registered_by``) as a dict."""
    if not actor or not actor.startswith("airflow:"):
        return None
    dag_id, _, rest = actor[len("airflow:"):].partition("/")
    run_id, _, task_id = rest.rpartition("/")
    if not run_id:
        run_id, task_id = task_id, ""
    return {"dag_id": dag_id, "run_id": run_id, "task_id": task_id} if dag_id else None


def run_lineage(tags: dict[str, str]) -> dict[str, str] | None:
    """The Airflow DAG, run and task a run of MLflow was written by, from its tags."""
    dag_id = first_tag(tags, DAG_TAGS)
    run_id = first_tag(tags, RUN_TAGS)
    task_id = first_tag(tags, TASK_TAGS)
    ti = tags.get("mlops.airflow_ti")
    if not dag_id and ti:
        dag_id = ti.split("/", 1)[0]
    if not dag_id:
        return None
    return {"dag_id": dag_id, "run_id": run_id or "", "task_id": task_id or ""}


def _version_dict(v: Any) -> dict[str, Any]:
    tags = dict(v.tags or {})
    gate_summary: dict[str, Any] = {}
    try:
        gate_summary = json.loads(tags.get("gate.summary") or "{}")
    except json.JSONDecodeError:
        gate_summary = {"verdict": tags.get("gate.summary")}
    return {
        "version": str(v.version),
        "run_id": v.run_id,
        "created": int(v.creation_timestamp or 0),
        "tags": tags,
        "registered_by": parse_actor(tags.get("mlops.registered_by")),
        "gate": {
            "passed": tags.get("gate.passed"),
            "verdict": gate_summary.get("verdict"),
            "failed": gate_summary.get("failed") or [],
            "n_checks": gate_summary.get("n_checks"),
            "compared_to": tags.get("gate.compared_to"),
            "run_id": tags.get("gate.run_id"),
        }
        if "gate.passed" in tags or "gate.run_id" in tags
        else None,
        "approval": {
            "decision": tags.get("approval.decision"),
            "by": tags.get("approval.by"),
            "at": tags.get("approval.at"),
            "comment": tags.get("approval.comment"),
        }
        if "approval.decision" in tags
        else None,
    }


def model_dags(versions: list[dict[str, Any]], history: list[dict[str, Any]]) -> set[str]:
    """The DAGs that registered or promoted the model's versions (what access to the model is checked on)."""
    dags = {v["registered_by"]["dag_id"] for v in versions if v.get("registered_by")}
    for entry in history:
        actor = parse_actor(entry.get("by"))
        if actor:
            dags.add(actor["dag_id"])
    return dags


def list_models(client: Any) -> list[dict[str, Any]]:
    """Every registered model with its aliases, versions, history and DAGs (one request per model)."""
    out = []
    for model in client.search_registered_models(max_results=PAGE):
        out.append(get_model(client, model.name, model=model))
    return out


def get_model(client: Any, name: str, model: Any = None) -> dict[str, Any]:
    if model is None:
        model = client.get_registered_model(name)
    versions = [
        _version_dict(v)
        for v in client.search_model_versions(f"name = '{_quote(name)}'", max_results=PAGE)
    ]
    versions.sort(key=lambda v: int(v["version"]) if v["version"].isdigit() else 0)
    history = _history(model)
    aliases = _aliases(model)
    by_version = {v["version"]: v for v in versions}
    for entry in history:
        entry["actor"] = parse_actor(entry.get("by"))
    for v in versions:
        v["aliases"] = sorted(a for a, ver in aliases.items() if ver == v["version"])
        promoted = [h for h in history if str(h.get("to")) == v["version"] and h.get("alias") == "champion"]
        v["promoted"] = promoted[-1] if promoted else None
    return {
        "name": model.name,
        "description": model.description or "",
        "aliases": aliases,
        "roles": {alias: by_version.get(aliases[alias]) for alias in ALIASES if alias in aliases},
        "versions": versions,
        "history": history,
        "dags": sorted(model_dags(versions, history)),
    }


def get_training_run(client: Any, version: dict[str, Any]) -> dict[str, Any] | None:
    if not version.get("run_id"):
        return None
    try:
        return run_dict(client.get_run(version["run_id"]))
    except Exception:  # noqa: BLE001 - the run may have been deleted; the page says so
        return None


#: Run ids per ``attributes.run_id IN (...)`` search (MLflow's filter strings stay short).
RUN_ID_BATCH = 100


def get_runs(client: Any, run_ids: list[str], experiments: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """
    Several runs by id in one search per :data:`RUN_ID_BATCH` ids (instead of one request each), as page dicts.

    A run that was deleted is absent from the answer (pages say so).
    """
    wanted = sorted({r for r in run_ids if r})
    if not wanted:
        return {}
    experiments = _experiment_ids(client) if experiments is None else experiments
    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(wanted), RUN_ID_BATCH):
        chunk = wanted[i:i + RUN_ID_BATCH]
        ids = ", ".join(f"'{_quote(r)}'" for r in chunk)
        for run in search_runs(client, f"attributes.run_id IN ({ids})", limit=len(chunk), experiments=experiments):
            found[run.info.run_id] = run_dict(run)
    return found


def run_dict(run: Any) -> dict[str, Any]:
    tags = dict(run.data.tags)
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "name": run.info.run_name or tags.get("mlflow.runName") or run.info.run_id,
        "status": run.info.status,
        "start": int(run.info.start_time or 0),
        "end": int(run.info.end_time or 0),
        "kind": tags.get("mlops.kind") or ("training" if "mlops.training_uri" in tags else ""),
        "tags": tags,
        "metrics": dict(run.data.metrics),
        "params": dict(run.data.params),
        "artifact_uri": run.info.artifact_uri,
        "lineage": run_lineage(tags),
        "model_name": tags.get("mlops.model_name") or tags.get("mlops.registered_model_name"),
    }


def list_artifacts(client: Any, run_id: str, path: str | None = None, depth: int = 2) -> list[str]:
    """Artifact files of a run (a few levels deep; model folders are listed, not walked)."""
    files: list[str] = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            if depth > 0 and not item.path.endswith(("model", "models")):
                files.extend(list_artifacts(client, run_id, item.path, depth - 1))
        else:
            files.append(item.path)
    return files


def read_artifact(client: Any, run_id: str, path: str) -> bytes:
    """The bytes of one artifact file (downloaded into a private temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="mlops-ui-") as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        if os.path.isdir(local):
            raise IsADirectoryError(path)
        with open(local, "rb") as fh:
            return fh.read()


def gate_report(client: Any, gate_run_id: str) -> dict[str, Any] | None:
    try:
        return json.loads(read_artifact(client, gate_run_id, GATE_REPORT_JSON))
    except Exception:  # noqa: BLE001 - no report (older gate runs): the page says so
        return None


def _experiment_ids(client: Any) -> list[str]:
    return [e.experiment_id for e in client.search_experiments(max_results=PAGE)]


def search_runs(
    client: Any, filter_string: str, limit: int = MAX_TIMELINE_RUNS, experiments: list[str] | None = None,
) -> list[Any]:
    """Runs of every experiment (or of ``experiments``) matching ``filter_string``, newest first, paged."""
    if experiments is None:
        experiments = _experiment_ids(client)
    if not experiments:
        return []
    runs: list[Any] = []
    token = None
    while len(runs) < limit:
        page = client.search_runs(
            experiments, filter_string=filter_string, max_results=min(PAGE, limit - len(runs)),
            order_by=["attributes.start_time DESC"], page_token=token,
        )
        runs.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break
    return runs


#: Runs started this long before the previous read of a cached search are read again (their metrics and
#: status may still have changed); older ones are taken from the cache.
SETTLE_MS = 15 * 60 * 1000
_CACHE: dict[tuple[str, str], dict[str, Any]] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX_SEARCHES = 256


def cached_runs(
    client: Any, filter_string: str, cache_key: str | None, experiments: list[str] | None = None,
) -> list[dict[str, Any]]:
    """
    :func:`search_runs` as page dicts, kept in memory per (store, filter) and refreshed incrementally.

    A model's timeline reads thousands of monitoring runs; after the first read only the runs started
    since the previous read (less :data:`SETTLE_MS`) are asked for.  Readers of one search take turns
    (the warm-up and a first page view do not both read everything).  A run deleted from MLflow stays on
    the timeline until the API server restarts.  ``cache_key`` ``None``: no cache.
    """
    if cache_key is None:
        return [run_dict(r) for r in search_runs(client, filter_string, experiments=experiments)]
    with _CACHE_LOCK:
        if len(_CACHE) > _CACHE_MAX_SEARCHES:
            _CACHE.clear()
        entry = _CACHE.setdefault((cache_key, filter_string), {"runs": {}, "since": None, "lock": threading.Lock()})
    with entry["lock"]:
        now = int(time.time() * 1000)
        since = entry["since"]
        query = filter_string if since is None else f"{filter_string} and attributes.start_time >= {since - SETTLE_MS}"
        fresh = [run_dict(r) for r in search_runs(client, query, experiments=experiments)]
        entry["runs"].update({r["run_id"]: r for r in fresh})
        entry["since"] = now if since is None else max(since, now)
        runs = list(entry["runs"].values())
    return sorted(runs, key=lambda r: r["start"], reverse=True)


def timeline(client: Any, model: dict[str, Any], cache_key: str | None = None) -> dict[str, Any]:
    """
    One model's life over time: per batch its validation outcome, drift share (and threshold), live
    metrics against the champion's; retraining runs, promotions and rollbacks.

    Batches are matched across runs by their data URI (``mlops.dataset_uri`` of validation,
    ``mlops.current_uri`` of drift checks, ``mlops.input`` of scoring, ``mlops.predictions_uri`` of
    performance checks).
    """
    name = model["name"]
    quoted = _quote(name)
    experiments = _experiment_ids(client)  # once per page, not once per search
    monitoring = cached_runs(client, f"tags.`mlops.model_name` = '{quoted}'", cache_key, experiments)
    scoring = cached_runs(client, f"tags.`mlops.registered_model_name` = '{quoted}'", cache_key, experiments)
    monitor_dags = {r["lineage"]["dag_id"] for r in monitoring + scoring if r["lineage"]}
    validations = []
    for dag_id in sorted(monitor_dags):  # MLflow's filter has no IN for tags: one search per DAG
        validations.extend(cached_runs(
            client, f"tags.`mlops.kind` = 'data_validation' and tags.`airflow.dag_id` = '{_quote(dag_id)}'",
            cache_key, experiments,
        ))
    batches: dict[str, dict[str, Any]] = {}

    def batch(uri: str | None, at: int) -> dict[str, Any] | None:
        if not uri:
            return None
        entry = batches.setdefault(uri, {
            "uri": uri, "at": at, "runs": {}, "validation": None, "drift_share": None, "drift_threshold": None,
            "drift": False, "model_version": None, "performance": None,
        })
        entry["at"] = min(entry["at"], at) if entry["at"] else at
        return entry

    for run in validations:
        entry = batch(run["tags"].get("mlops.dataset_uri"), run["start"])
        if entry is not None:
            entry["validation"] = run["tags"].get("mlops.validation.success") == "true"
            entry["runs"]["validation"] = run
    for run in monitoring:
        kind = run["kind"]
        if kind == "drift_check":
            entry = batch(run["tags"].get("mlops.current_uri"), run["start"])
            if entry is None:
                continue
            m = run["metrics"]
            entry["drift_share"] = m.get("drift.share_of_drifted_columns")
            entry["drift_threshold"] = m.get("drift.drift_share_threshold")
            entry["drift"] = m.get("drift.dataset_drift") == 1.0
            entry["model_version"] = run["tags"].get("mlops.model_version")
            entry["runs"]["drift"] = run
        elif kind == "performance_check":
            entry = batch(run["tags"].get("mlops.predictions_uri") or run["tags"].get("mlops.labels_uri"),
                          run["start"])
            if entry is None:
                continue
            entry["performance"] = {
                "verdict": run["tags"].get("mlops.verdict"),
                "live": {k[5:]: v for k, v in run["metrics"].items() if k.startswith("live.")},
                "champion": {k[9:]: v for k, v in run["metrics"].items() if k.startswith("champion.")},
            }
            entry["runs"]["performance"] = run
    for run in scoring:
        entry = batches.get(run["tags"].get("mlops.input") or "")
        if entry is not None:
            entry["runs"]["scoring"] = run
            output = run["tags"].get("mlops.output_uri")
            if output and output in batches and output != entry["uri"]:
                # the performance check names the predictions file: fold it into the batch it scored
                extra = batches.pop(output)
                entry["performance"] = entry["performance"] or extra.get("performance")
                entry["runs"].update({k: v for k, v in extra["runs"].items() if k not in entry["runs"]})
    training = []
    for v in model["versions"]:
        actor = v.get("registered_by")
        training.append({"version": v["version"], "at": v["created"], "actor": actor, "run_id": v["run_id"]})
    events = []
    for entry in model["history"]:
        events.append({
            "action": entry.get("action") or "promote",
            "from": entry.get("from"),
            "to": entry.get("to"),
            "at": _iso_ms(entry.get("at")),
            "reason": entry.get("reason") or "",
            "actor": entry.get("actor"),
        })
    rows = sorted(batches.values(), key=lambda b: b["at"])
    for i, row in enumerate(rows, 1):
        row["n"] = i
        row["label"] = os.path.basename(row["uri"].rstrip("/")) or row["uri"]
    return {"batches": rows, "training": training, "events": events}


def _iso_ms(text: Any) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(str(text)).timestamp() * 1000)
    except ValueError:
        return 0


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
