"""Level 2 (CI/CD of a pipeline definition): the CI checks, the deployment of a definition, the post-deployment check.

Pure functions (no Airflow import): each check returns a small JSON-safe summary or raises
:class:`PipelineCheckError` naming what failed; the operators of :mod:`mlops_provider.operators.pipeline`
turn that into a failed task.  pandas, MLflow and the subprocesses are only used inside the functions.

* :func:`run_component_tests`: the pipeline's own tests (``tests:`` in the YAML), in a fresh interpreter;
* :func:`check_dag_integrity`: every DAG builds from the candidate (a DagBag in a fresh interpreter);
* :func:`check_data_contract`: the candidate's contracts match the data it will see;
* :func:`deploy_definition` / :func:`restore_definition`: make the candidate the live definition, and back;
* :func:`first_labelled_batch_after` + :func:`post_deployment_verdict`: the deployed model on live data.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_provider.core.storage import Storage, join, local_storage, mtime, read_parquet

if TYPE_CHECKING:
    import pandas as pd

    from mlops_provider.pipelines import PipelineSpec


class PipelineCheckError(RuntimeError):
    """A CI check of a candidate definition failed (the message says which and why)."""


def worker_subprocess_env(scratch: str, **extra: str) -> dict[str, str]:
    """
    The environment of a CI subprocess, as a worker can run it.

    Airflow 3's task supervisor blocks the metadata DB in the task process by setting
    ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` (and ``AIRFLOW__CORE__...``) to ``airflow-db-not-allowed:///``;
    a child interpreter that imports Airflow would fail on it ("Could not parse SQLAlchemy URL").  The
    checks need no metadata DB, so the child gets a throwaway SQLite URL in ``scratch`` instead.
    """
    env = {k: v for k, v in os.environ.items() if "SQL_ALCHEMY_CONN" not in k}
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{os.path.join(scratch, 'ci-airflow.db')}"
    env.update(extra)
    return env


def run_component_tests(candidate: PipelineSpec, tests_root: str | os.PathLike[str], timeout: float = 900) -> dict[str, Any]:
    """The pipeline's component tests (``tests:``), run by pytest in ``tests_root`` with ``MLOPS_CANDIDATE_PIPELINE`` set."""
    import subprocess
    import sys
    import tempfile

    tests = list(candidate.raw["tests"])
    if not tests:
        return {"tests": [], "outcome": "no tests declared"}
    with tempfile.TemporaryDirectory(prefix="mlops-ci-") as scratch:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=tests_root, capture_output=True, text=True, timeout=timeout,
            env=worker_subprocess_env(scratch, MLOPS_CANDIDATE_PIPELINE=os.path.abspath(candidate.path)),
        )
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    if proc.returncode != 0:
        raise PipelineCheckError("component tests failed:\n" + "\n".join(tail))
    return {"tests": tests, "outcome": tail[-1] if tail else "passed"}


_DAGBAG_PROBE = (
    "import json, sys\n"
    "from airflow.dag_processing.dagbag import DagBag\n"
    "bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)\n"
    "print(json.dumps({'errors': {k: v[-500:] for k, v in bag.import_errors.items()},"
    " 'dags': sorted(bag.dag_ids)}))\n"
)


def check_dag_integrity(candidate: PipelineSpec, tests_root: str | os.PathLike[str] | None = None,
                        timeout: float = 300) -> dict[str, Any]:
    """
    Every DAG builds from the candidate: a DagBag of a one-call DAG file over a folder holding only the
    candidate (and its contracts), in a fresh interpreter.  No import error, no cycle.
    """
    import subprocess
    import sys
    import tempfile

    contracts = candidate.check_contracts()
    with tempfile.TemporaryDirectory(prefix="mlops-ci-") as tmp:
        shutil.copy(candidate.path, Path(tmp) / f"{candidate.name}.yaml")
        for key, source in contracts.items():
            named = candidate.raw["validation"][key]
            if os.path.isabs(named):
                continue  # read from where it is
            target = Path(tmp) / named
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
        dag_file = Path(tmp) / "_dags" / "candidate_dags.py"
        dag_file.parent.mkdir()
        dag_file.write_text(
            "from mlops_provider.pipelines import build_dags\n"
            f"build_dags({tmp!r}, globals(), tests_root={str(tests_root or tmp)!r})\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", _DAGBAG_PROBE, str(dag_file)], capture_output=True, text=True, timeout=timeout,
            env=worker_subprocess_env(tmp, MLOPS_PIPELINES_DIR=tmp),
        )
    if proc.returncode != 0:
        raise PipelineCheckError(f"DAG integrity: the DagBag probe failed: {proc.stderr[-800:]}")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    if found["errors"]:
        raise PipelineCheckError(f"DAG integrity: import errors {found['errors']}")
    return found


def latest_batch(candidate: PipelineSpec, storage: Storage | None = None) -> str | None:
    """The latest landed batch (by name) of the candidate's batch folder, or ``None``."""
    folder = candidate.batches_dir
    found = (storage or local_storage)(folder)
    names = sorted(p.name for p in found.glob("*.parquet")) if found.is_dir() else []
    return join(folder, names[-1]) if names else None


def check_data_contract(candidate: PipelineSpec, storage: Storage | None = None) -> dict[str, Any]:
    """
    The candidate's contracts match the schema of the data it will see (the base set, the latest batch),
    and every column the definition names exists in the base training set.

    :param storage: URI -> path object (default: local paths; ``candidate.storage`` on an object store).
    """
    from mlops_provider.core.validation import compare_schema, describe_schema_changes, load_suite_file

    candidate.check_contracts()
    checks = {"training_contract": candidate.data_path("training")}
    storage = storage or local_storage
    batch = latest_batch(candidate, storage)
    if batch:
        checks["batch_contract"] = batch
    problems: dict[str, str] = {}
    frames = {contract: read_parquet(storage(data)) for contract, data in checks.items()}
    for contract, data in checks.items():
        source = load_suite_file(candidate.contract_path(contract))
        changes = compare_schema(frames[contract], source.schema or {})
        if changes:
            problems[contract] = f"{data}: {describe_schema_changes(changes)}"
    named = set(candidate.feature_columns) | {candidate.raw["target"], *candidate.exclude_columns}
    missing = sorted(named - set(frames["training_contract"].columns))
    if missing:
        problems["features"] = f"columns named by the pipeline but absent from the training data: {missing}"
    if problems:
        raise PipelineCheckError(f"data contract: {problems}")
    return {"checked": checks}


# ---------------------------------------------------------------------- deployment of a definition


def deploy_definition(candidate_path: str, live_path: str, backup_dir: str, now: float | None = None) -> dict[str, Any]:
    """
    Make ``candidate_path`` the live definition; the previous one is kept in ``backup_dir``.

    :returns: ``{"live", "previous_definition" (None when there was none), "deployed_at"}``.
    """
    now = time.time() if now is None else now
    live = Path(live_path)
    backup = Path(backup_dir) / f"{live.stem}.{int(now * 1000)}.yaml"
    previous = None
    if live.exists():
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(live, backup)
        previous = str(backup)
    live.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(candidate_path, live)
    return {"live": str(live), "previous_definition": previous, "deployed_at": now}


def restore_definition(live_path: str, previous_definition: str | None) -> bool:
    """Put the previous definition back (``False`` when there was none to restore)."""
    if not previous_definition:
        return False
    shutil.copy(previous_definition, live_path)
    return True


# ---------------------------------------------------------------------- post-deployment check


def first_labelled_batch_after(labels_dir: str, batches_dir: str, after: float,
                               storage: Storage | None = None) -> str | None:
    """
    The name of the first label file landed after ``after`` (mtime) whose batch also landed, or ``None``.

    :param storage: URI -> path object (default: local paths); on an object store the mtime is the
        object's last modification.
    """
    storage = storage or local_storage
    labels, batches = storage(labels_dir), storage(batches_dir)
    fresh = sorted(
        p.name for p in (labels.glob("*.parquet") if labels.is_dir() else [])
        if mtime(p) > after and (batches / p.name).exists()
    )
    return fresh[0] if fresh else None


def labelled_frame(batches_dir: str, labels_dir: str, name: str, id_column: str,
                   storage: Storage | None = None) -> pd.DataFrame:
    """Batch ``name`` joined with its labels on ``id_column``."""
    storage = storage or local_storage
    features = read_parquet(storage(join(batches_dir, name)))
    labels = read_parquet(storage(join(labels_dir, name)))
    return features.merge(labels, on=id_column, suffixes=("", "_label"))


def post_deployment_verdict(model: Any, frame: pd.DataFrame, *, features: list[str], target: str, metric: str,
                            floor: float, lower_is_better: bool = False, batch: str = "") -> dict[str, Any]:
    """The deployed model's ``metric`` on a labelled live batch, against the gate's floor: ``ok`` or not."""
    from mlops_provider.core.metrics import compute_metrics

    value = float(compute_metrics(model, frame[features], frame[target], [metric])[metric])
    ok = value <= floor if lower_is_better else value >= floor
    return {"batch": batch, "metric": metric, "value": round(value, 4), "floor": float(floor), "ok": bool(ok),
            "rows": len(frame)}
