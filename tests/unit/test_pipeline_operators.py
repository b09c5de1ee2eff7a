"""The factory's task logic, now operators and core functions: training window, pending files, label
matching (labels that land before scoring), the CI checks and the deployment of a definition.

Real files and real pipeline YAMLs in a temporary folder; no Airflow run (the operators' ``execute``/``poke``
are called with the context keys they read).  The whole DAGs run in ``tests/unit/test_example_dags.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowSkipException

from mlops_provider.core import training_window as tw
from mlops_provider.core.labels import NO_BATCH, PENDING, QUARANTINED, SCORED, label_status
from mlops_provider.core.pipeline_ci import (
    PipelineCheckError,
    check_data_contract,
    deploy_definition,
    first_labelled_batch_after,
    restore_definition,
)
from mlops_provider.core.validation import derive_schema_suite
from mlops_provider.exceptions import LabelsNotScored, PipelineCheckFailed, PipelineRolledBack
from mlops_provider.operators.pipeline import (
    DataContractCheckOperator,
    PendingBatchesOperator,
    PipelineCandidateOperator,
    RestorePipelineDefinitionOperator,
)
from mlops_provider.pipeline_dags import approval_branch, verdict_failed
from mlops_provider.pipelines import PipelineSpecError, load_pipeline, parse_pipeline
from mlops_provider.sensors.pipeline import LabelsScoredSensor, TrainingWindowSensor

PIPELINE = """\
name: rides
data:
  root: {root}
  training: training/base.parquet
  batches: landing/batches/*.parquet
  labels: landing/labels
features:
  id: ride_id
  numeric: [temperature]
  categorical: [weather]
target: long_ride
estimator:
  class: sklearn.linear_model.LogisticRegression
validation:
  batch_contract: contracts/batch.yaml
  training_contract: contracts/training.yaml
gate:
  min_value: 0.5
retraining:
  window: {window}
  window_batches: {n}
"""


def _frame(first_id: int, n: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    temp = rng.normal(10, 5, n)
    return pd.DataFrame({"ride_id": np.arange(first_id, first_id + n), "temperature": temp,
                         "weather": rng.choice(["clear", "rain"], n), "long_ride": (temp > 10).astype(int)})


def _world(tmp_path: Path, window: str = "latest", n: int = 2) -> dict:
    root = tmp_path / "data"
    (root / "training").mkdir(parents=True)
    base = _frame(1, 100)
    base.to_parquet(root / "training" / "base.parquet", index=False)
    folder = tmp_path / "pipelines"
    (folder / "contracts").mkdir(parents=True)
    (folder / "contracts" / "training.yaml").write_text(derive_schema_suite(base, name="training"))
    (folder / "contracts" / "batch.yaml").write_text(derive_schema_suite(base.drop(columns=["long_ride"]), name="batch"))
    path = folder / "rides.yaml"
    path.write_text(PIPELINE.format(root=root, window=window, n=n))
    for sub in ("landing/batches", "landing/labels", "predictions"):
        (root / sub).mkdir(parents=True)
    return {"root": root, "path": path, "folder": folder, "spec": load_pipeline(path)}


def _land(world: dict, day: int, *, scored: bool = True, labelled: bool = True) -> str:
    name = f"day-{day:02d}.parquet"
    frame = _frame(1000 * day, seed=day)
    root = world["root"]
    frame.drop(columns=["long_ride"]).to_parquet(root / "landing" / "batches" / name, index=False)
    if scored:
        frame[["ride_id"]].assign(prediction=0).to_parquet(root / "predictions" / name, index=False)
    if labelled:
        frame[["ride_id", "long_ride"]].to_parquet(root / "landing" / "labels" / name, index=False)
    return name


# ---------------------------------------------------------------------- the training window


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("latest", ["day-02.parquet", "day-03.parquet"]),
        ("base_plus_latest", ["base", "day-02.parquet", "day-03.parquet"]),
        ("all", ["base", "day-01.parquet", "day-02.parquet", "day-03.parquet"]),
    ],
)
def test_window_modes(tmp_path, mode, expected):
    world = _world(tmp_path, window=mode, n=2)
    for day in (1, 2, 3):
        _land(world, day)
    _land(world, 4, scored=False)  # quarantined (never scored): never in a window
    op = TrainingWindowSensor(task_id="window", pipeline=str(world["path"]))
    result = op.poke({"run_id": "manual__1"})
    assert result.is_done
    window = result.xcom_value
    assert window["source"] == expected and window["mode"] == mode
    rows = sum(window["rows_by_source"].values())
    assert window["n_rows"] == rows == len(pd.read_parquet(window["train"])) + len(pd.read_parquet(window["eval"]))
    assert window["score_input"].endswith("day-03.parquet")
    assert set(pd.read_parquet(window["train"]).columns) == {"ride_id", "temperature", "weather", "long_ride"}
    assert len(json.dumps(window)) < 2_000


def test_base_set_before_any_batch_and_kept_by_base_plus_latest(tmp_path):
    """``latest``: the base set until a batch is accepted, then gone; ``base_plus_latest`` keeps it."""
    world = _world(tmp_path, window="latest", n=1)
    kwargs = {"training_path": str(world["root"] / "training" / "base.parquet"),
              "predictions_dir": str(world["root"] / "predictions"),
              "batches_dir": str(world["root"] / "landing" / "batches"),
              "labels_dir": str(world["root"] / "landing" / "labels"),
              "id_column": "ride_id", "target": "long_ride", "n": 1}
    first = tw.assemble_training_window(output_dir=str(tmp_path / "w0"), **kwargs)
    assert first["source"] == ["base"] and first["score_input"].endswith("score.parquet")
    _land(world, 1)
    assert tw.assemble_training_window(output_dir=str(tmp_path / "w1"), **kwargs)["source"] == ["day-01.parquet"]
    kept = tw.assemble_training_window(output_dir=str(tmp_path / "w2"), mode="base_plus_latest", **kwargs)
    assert kept["source"] == ["base", "day-01.parquet"] and kept["rows_by_source"] == {"base": 100, "day-01.parquet": 50}


def test_window_waits_for_labels_then_is_done(tmp_path):
    world = _world(tmp_path, window="all")
    name = _land(world, 1, labelled=False)
    op = TrainingWindowSensor(task_id="window", pipeline=str(world["path"]))
    assert op.poke({"run_id": "r"}).is_done is False
    assert tw.missing_labels(tw.plan_window([name], "all", 1), world["root"] / "landing" / "labels") == [name]
    _frame(1000, seed=1)[["ride_id", "long_ride"]].to_parquet(world["root"] / "landing" / "labels" / name)
    assert op.poke({"run_id": "r"}).is_done is True


def test_window_refuses_bad_mode_size_and_data(tmp_path):
    with pytest.raises(tw.TrainingWindowError, match="window mode must be one of latest, base_plus_latest, all"):
        tw.plan_window([], "newest", 1)
    with pytest.raises(tw.TrainingWindowError, match="integer >= 1"):
        tw.plan_window([], "latest", 0)
    world = _world(tmp_path)
    name = _land(world, 1)
    pd.DataFrame({"other": [1]}).to_parquet(world["root"] / "landing" / "labels" / name)
    from mlops_provider.exceptions import DatasetError

    with pytest.raises(DatasetError, match=f"label file {name} has no id column 'ride_id'"):
        TrainingWindowSensor(task_id="w", pipeline=str(world["path"])).poke({"run_id": "r"})


def test_window_option_in_yaml_is_validated_with_file_line_key(tmp_path):
    world = _world(tmp_path)
    text = PIPELINE.format(root=world["root"], window="newest", n=2)
    with pytest.raises(PipelineSpecError) as info:
        parse_pipeline(text, "rides.yaml")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "window: newest" in t)
    (error,) = info.value.errors
    assert error[:3] == ("rides.yaml", line, "retraining.window")
    assert "'newest' is not allowed (expected one of: latest, base_plus_latest, all)" in error[3]
    defaults = parse_pipeline(text.replace("  window: newest\n", ""), "rides.yaml").raw
    assert defaults["retraining"]["window"] == "latest"
    assert defaults["validation"]["derive"] == {"ranges": False, "margin": 0.1, "max_categories": 50, "id_columns": []}
    assert defaults["performance"]["scoring_wait_minutes"] == 30


# ---------------------------------------------------------------------- pending files


def test_pending_batches_operator_manual_and_ledger(tmp_path):
    from mlops_provider.core.batches import BatchLedger, discover_batches

    landing = tmp_path / "landing"
    landing.mkdir()
    for i in range(3):
        (landing / f"b{i}.parquet").write_bytes(b"x" * (i + 1))
    ledger_path = str(tmp_path / "ledger.sqlite3")
    ledger = BatchLedger(ledger_path)
    for batch in discover_batches(str(landing / "*.parquet")):
        ledger.claim("watcher", batch)
    op = PendingBatchesOperator(task_id="resolve", ledger_path=ledger_path, consumer="watcher")
    manual = op.execute({"params": {"batch_uri": f"file://{landing}/b1.parquet"}, "run_id": "m"})
    assert manual == [{"batch_uri": f"{landing}/b1.parquet", "name": "b1.parquet", "batch_id": "manual"}]
    found = op.execute({"params": {"batch_uri": ""}, "run_id": "r1", "triggering_asset_events": {}})
    assert [b["name"] for b in found] == ["b0.parquet", "b1.parquet", "b2.parquet"]
    assert op.execute({"params": {}, "run_id": "r2"}) == []  # each batch is taken once
    with pytest.raises(Exception, match="consumer must be a non-empty string"):
        PendingBatchesOperator(task_id="bad", ledger_path=ledger_path, consumer="")


def test_pending_batches_carry_their_ordinal_as_step(tmp_path):
    """Each batch's ``step`` is its place in the order runs took batches (the MLflow step of quality.*)."""
    from mlops_provider.core.batches import BatchLedger, discover_batches
    from mlops_provider.core.pending import pending_batches

    landing = tmp_path / "landing"
    landing.mkdir()
    ledger_path = str(tmp_path / "ledger.sqlite3")
    ledger = BatchLedger(ledger_path)
    op = PendingBatchesOperator(task_id="resolve", ledger_path=ledger_path, consumer="watcher")
    steps = {}
    for run, names in (("r1", ["a"]), ("r2", ["b", "c"]), ("r3", ["d"])):
        for name in names:
            (landing / f"{name}.parquet").write_bytes(name.encode() * 3)
        for batch in discover_batches(str(landing / "*.parquet")):
            if batch.batch_id not in ledger.seen_ids("watcher"):
                ledger.claim("watcher", batch)
        for b in op.execute({"params": {}, "run_id": run, "triggering_asset_events": {}}):
            steps[b["name"]] = b["step"]
    assert steps == {"a.parquet": 1, "b.parquet": 2, "c.parquet": 3, "d.parquet": 4}
    # a triggering payload never claimed by the watcher is taken too, after the others, and keeps its step
    late = {"status": "success", "batch_uri": f"file://{landing}/late.parquet", "batch_id": "late-1"}
    assert [(b["name"], b["step"]) for b in pending_batches(ledger_path, "watcher", [late], "r4")] == [("late.parquet", 5)]
    assert pending_batches(ledger_path, "watcher", [late], "r4-rerun") == []  # taken once: no second step


# ---------------------------------------------------------------------- labels before scoring


def test_label_states(tmp_path):
    world = _world(tmp_path)
    dirs = {"predictions_dir": world["root"] / "predictions", "quarantine_dir": world["root"] / "quarantine",
            "batches_dir": world["root"] / "landing" / "batches"}
    scored = _land(world, 1)
    pending = _land(world, 2, scored=False)
    quarantined = _land(world, 3, scored=False)
    copy = world["root"] / "quarantine" / "drift_monitor__rides" / "validate_batch-0" / "run" / "source" / quarantined
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"x")
    assert label_status(scored, **dirs).state == SCORED
    assert label_status(pending, **dirs).state == PENDING
    assert label_status(quarantined, **dirs).state == QUARANTINED
    assert label_status("day-09.parquet", **dirs).state == NO_BATCH


def test_labels_scored_sensor_waits_then_fails_explicitly(tmp_path):
    """Labels landed before their batch was scored: wait for the predictions, then fail naming the state."""
    world = _world(tmp_path)
    name = _land(world, 2, scored=False)
    labels = str(world["root"] / "landing" / "labels" / name)
    kwargs = {"labels": labels, "predictions_dir": str(world["root"] / "predictions"),
              "quarantine_dir": str(world["root"] / "quarantine"),
              "batches_dir": str(world["root"] / "landing" / "batches")}
    waiting = LabelsScoredSensor(task_id="match", scoring_wait=600, **kwargs)
    assert waiting.poke({}).is_done is False  # not taken for a quarantined batch
    (world["root"] / "predictions" / name).write_bytes(b"scored meanwhile")
    done = waiting.poke({})
    assert done.is_done and done.xcom_value == {"labels": labels, "predictions": str(world["root"] / "predictions" / name),
                                                "state": "scored"}
    late = _land(world, 3, scored=False)
    expired = LabelsScoredSensor(task_id="match2", scoring_wait=0, **{**kwargs, "labels": kwargs["labels"].replace(name, late)})
    with pytest.raises(LabelsNotScored, match="the batch landed but is not scored yet"):
        expired.poke({})
    orphan = LabelsScoredSensor(task_id="match3", scoring_wait=0, **{**kwargs, "labels": labels.replace(name, "day-09.parquet")})
    with pytest.raises(LabelsNotScored, match="no batch of that name has landed"):
        orphan.poke({})


def test_labels_of_a_quarantined_batch_skip(tmp_path):
    world = _world(tmp_path)
    name = _land(world, 3, scored=False)
    copy = world["root"] / "quarantine" / "d" / "t" / "r" / "source" / name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"x")
    op = LabelsScoredSensor(task_id="m", labels=str(world["root"] / "landing" / "labels" / name),
                            predictions_dir=str(world["root"] / "predictions"),
                            quarantine_dir=str(world["root"] / "quarantine"),
                            batches_dir=str(world["root"] / "landing" / "batches"))
    with pytest.raises(AirflowSkipException, match="was quarantined"):
        op.poke({})


# ---------------------------------------------------------------------- level 2


def test_a_proposal_can_be_the_yaml_alone(tmp_path):
    """Contracts not beside the proposal are read from the live pipelines folder (contracts_fallback)."""
    world = _world(tmp_path)
    proposal = tmp_path / "proposed" / "rides.yaml"
    proposal.parent.mkdir()
    proposal.write_text(world["path"].read_text().replace("min_value: 0.5", "min_value: 0.6"))
    op = PipelineCandidateOperator(task_id="load", pipeline=str(proposal), model_name="rides",
                                   contracts_fallback=str(world["folder"]))
    result = op.execute({"params": {}})
    assert result["contracts"]["batch_contract"] == str(world["folder"] / "contracts" / "batch.yaml")
    assert result["gate_spec"]["thresholds"][0]["value"] == {"lower_bound": 0.6}
    with pytest.raises(PipelineSpecError, match=r"then from .*elsewhere\)"):
        PipelineCandidateOperator(task_id="l2", pipeline=str(proposal), model_name="rides",
                                  contracts_fallback=str(tmp_path / "elsewhere")).execute({"params": {}})
    with pytest.raises(Exception, match="defines 'rides', this DAG deploys 'other'"):
        PipelineCandidateOperator(task_id="l3", pipeline=str(proposal), model_name="other",
                                  contracts_fallback=str(world["folder"])).execute({"params": {}})


def test_data_contract_check_names_the_schema_change(tmp_path):
    world = _world(tmp_path)
    assert check_data_contract(world["spec"])["checked"]["training_contract"].endswith("base.parquet")
    name = _land(world, 1)
    changed = pd.read_parquet(world["root"] / "landing" / "batches" / name).assign(temperature=lambda d: d.temperature.astype("float32"))
    changed.to_parquet(world["root"] / "landing" / "batches" / name, index=False)
    with pytest.raises(PipelineCheckError, match="dtype of 'temperature' changed: float64 -> float32"):
        check_data_contract(world["spec"])
    with pytest.raises(PipelineCheckFailed, match=f"{name}: dtype of 'temperature'"):
        DataContractCheckOperator(task_id="dc", pipeline=str(world["path"])).execute({})


def test_deploy_restore_and_rollback_failure(tmp_path):
    live = tmp_path / "pipelines" / "rides.yaml"
    live.parent.mkdir()
    live.write_text("old: 1\n")
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("new: 2\n")
    deployed = deploy_definition(str(candidate), str(live), str(tmp_path / "backups"), now=1000.0)
    assert live.read_text() == "new: 2\n" and Path(deployed["previous_definition"]).read_text() == "old: 1\n"
    verdict = {"batch": "day-07.parquet", "metric": "roc_auc", "value": 0.41, "floor": 0.7, "ok": False}
    op = RestorePipelineDefinitionOperator(task_id="restore", deployed={**deployed, "version": "3"}, verdict=verdict)
    with pytest.raises(PipelineRolledBack, match="rolled back v3: roc_auc 0.41 misses the floor 0.7 on live batch day-07"):
        op.execute({})
    assert live.read_text() == "old: 1\n"
    assert restore_definition(str(live), None) is False
    assert verdict_failed(verdict) is True and verdict_failed({**verdict, "ok": True}) is False
    assert approval_branch(True) == "cd.approval" and approval_branch(False) == "cd.promote"


def test_post_deployment_batch_is_the_first_labelled_one_after_the_deployment(tmp_path):
    world = _world(tmp_path)
    old = _land(world, 1)
    os.utime(world["root"] / "landing" / "labels" / old, (100, 100))
    labels, batches = str(world["root"] / "landing" / "labels"), str(world["root"] / "landing" / "batches")
    assert first_labelled_batch_after(labels, batches, 200) is None
    new = _land(world, 2)
    assert first_labelled_batch_after(labels, batches, 200) == new


def test_monitors_pass_the_step_and_the_store_connection_on(tmp_path):
    """Wiring: the drift check's MLflow step is the mapped batch's ``step``; label checks read through data.conn_id."""
    from mlops_provider import pipeline_dags as factory

    world = _world(tmp_path)
    text = world["path"].read_text().replace(
        f"  root: {world['root']}\n", f"  root: s3://bucket/rides\n  conn_id: store\n  state: {tmp_path / 'state'}\n")
    world["path"].write_text(text)
    spec = load_pipeline(world["path"])
    drift = factory.build_drift_monitor(spec).get_task("check_batch.check_drift")
    assert "check_batch.batch" in drift.batch_step and ".get('step')" in drift.batch_step
    match = factory.build_performance_monitor(spec).get_task("check_labels.match_predictions")
    assert match.conn_id == "store" and match.predictions_dir == "s3://bucket/rides/predictions"
    local = factory.build_performance_monitor(_world(tmp_path / "local")["spec"]).get_task("check_labels.match_predictions")
    assert local.conn_id is None
