"""Pipeline definitions as data: the committed YAML loads; bad YAML names the file, the line and the key.

Pure (PyYAML + the provider's spec module); also the component tests ``cicd_pipeline`` runs in CI
(``MLOPS_CANDIDATE_PIPELINE`` points at the candidate definition then)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mlops_provider.pipelines import PipelineSpecError, load_pipeline, parse_pipeline

ROOT = Path(__file__).resolve().parents[2]
LIVE = ROOT / "dags" / "pipelines" / "loan_default.yaml"
CANDIDATE = Path(os.environ.get("MLOPS_CANDIDATE_PIPELINE") or LIVE)


def test_definition_loads_with_defaults():
    spec = load_pipeline(CANDIDATE)
    assert spec.name.startswith("loan_default")
    assert spec.raw["features"]["id"] not in spec.feature_columns
    assert spec.raw["target"] not in spec.feature_columns
    assert len(spec.version) == 12
    assert spec.gate_spec()["thresholds"][0]["value"] == {"lower_bound": spec.raw["gate"]["min_value"]}
    for contract in ("batch_contract", "training_contract"):
        assert Path(spec.contract_path(contract)).exists()


def test_estimator_factory_builds_a_pipeline():
    from sklearn.base import clone

    from mlops_provider.pipelines import tabular_classifier

    spec = load_pipeline(CANDIDATE)
    est = tabular_classifier(**spec.estimator_params())
    clone(est)  # a valid, unfitted scikit-learn estimator


def _bad(text: str) -> list[tuple[str, int, str, str]]:
    with pytest.raises(PipelineSpecError) as info:
        parse_pipeline(text, "bad.yaml")
    assert "bad.yaml:" in str(info.value)
    return info.value.errors


def _variant(old: str, new: str) -> str:
    text = LIVE.read_text()
    assert old in text
    return text.replace(old, new, 1)


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_unknown_key_names_file_line_and_key():
    text = _variant("  training: training/base.parquet", "  trainig: training/base.parquet")
    errors = _bad(text)
    assert ("bad.yaml", _line_of(text, "trainig:"), "data.trainig") in [e[:3] for e in errors]
    assert any(e[2] == "data.training" and "missing" in e[3] for e in errors)


def test_wrong_type_names_line_and_key():
    text = _variant("  min_value: 0.70", "  min_value: high")
    (error,) = _bad(text)
    assert error[:3] == ("bad.yaml", _line_of(text, "min_value: high"), "gate.min_value")
    assert "expected a number" in error[3] and "'high'" in error[3]


def test_wrong_type_in_list():
    text = _variant("  numeric: [age,", "  numeric: [{x: 1}, age,")
    (error,) = _bad(text)
    assert error[2] == "features.numeric" and "list" in error[3]


def test_missing_required_field():
    text = "\n".join(line for line in LIVE.read_text().splitlines() if not line.startswith("target:"))
    (error,) = _bad(text)
    assert error[2] == "target" and "missing" in error[3]


def test_yaml_syntax_error_has_a_line():
    (error,) = _bad("name: x\ndata: [unclosed\n")
    assert error[2] == "<yaml>" and error[1] >= 2


def test_semantic_errors():
    assert _bad(_variant("target: defaulted", "target: age"))[0][2] == "target"
    assert _bad(_variant("  window_batches: 1", "  window_batches: 0"))[0][2] == "retraining.window_batches"


def test_missing_or_invalid_contract_says_what_and_where(tmp_path):
    """A proposal copied without its contracts: the error names the key, its line, the file and where it goes."""
    text = LIVE.read_text()
    proposal = tmp_path / "proposed" / "loan_default.yaml"
    proposal.parent.mkdir()
    proposal.write_text(text)
    with pytest.raises(PipelineSpecError) as info:
        load_pipeline(proposal).check_contracts()
    message = str(info.value)
    expected = tmp_path / "proposed" / "contracts" / "loan_default_batch.yaml"
    assert f"{proposal}:{_line_of(text, 'batch_contract:')}: validation.batch_contract" in message
    assert f"put the suite file at {expected}" in message and "validation.training_contract" in message
    assert len(info.value.errors) == 2

    (proposal.parent / "contracts").mkdir()
    (proposal.parent / "contracts" / "loan_default_batch.yaml").write_text("expectations: [[[\n")
    (proposal.parent / "contracts" / "loan_default_training.yaml").write_text(
        (LIVE.parent / "contracts" / "loan_default_training.yaml").read_text())
    with pytest.raises(PipelineSpecError, match="validation.batch_contract: contract .* is not a valid suite") as info:
        load_pipeline(proposal).check_contracts()
    assert len(info.value.errors) == 1


def test_live_contracts_are_valid():
    assert set(load_pipeline(CANDIDATE).check_contracts()) == {"batch_contract", "training_contract"}


def test_retries_default_and_from_the_yaml():
    """Every pipeline DAG task retries with backoff by default; the YAML's ``retries:`` block sets it."""
    from datetime import timedelta

    without = re.sub(r"(?ms)^retries:\n.*?\n\n", "", LIVE.read_text())
    assert "retries" not in without and "count:" not in without
    assert parse_pipeline(without).default_args() == {
        "retries": 2, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(seconds=600),
    }
    text = _variant("  count: 2", "  count: 5").replace("  delay_seconds: 30", "  delay_seconds: 2.5")
    args = parse_pipeline(text).default_args()
    assert args["retries"] == 5 and args["retry_delay"] == timedelta(seconds=2.5)
    off = parse_pipeline(_variant("  count: 2", "  count: 0")).default_args()
    assert off["retries"] == 0


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [
        ("  count: 2", "  count: -1", "retries.count", "-1 is out of range (allowed: 0 to 10)"),
        ("  count: 2", "  count: two", "retries.count", "expected an integer, got a string 'two'"),
        ("  count: 2", "  count: true", "retries.count", "expected an integer"),
        ("  delay_seconds: 30", "  delay_seconds: 0", "retries.delay_seconds", "0 is out of range (allowed: 1 to 3600)"),
        ("  exponential_backoff: true", "  exponential_backoff: yes please", "retries.exponential_backoff",
         "expected true/false"),
        ("  max_delay_seconds: 600", "  max_delay_seconds: 10", "retries.max_delay_seconds",
         "10 is shorter than retries.delay_seconds (30)"),
        ("  count: 2", "  cuont: 2", "retries.cuont", "unknown key (expected one of: count, delay_seconds"),
    ],
)
def test_bad_retries_name_file_line_and_key(old, new, key, fragment):
    text = _variant(old, new)
    errors = _bad(text)
    assert [e[:3] for e in errors] == [("bad.yaml", _line_of(text, new.strip()), key)], errors
    assert fragment in errors[0][3], errors


def test_pipeline_dags_get_the_retries(tmp_path, monkeypatch):
    """``build_dags`` passes the YAML's retries to every task of the four DAGs as default_args."""
    from datetime import timedelta

    from mlops_provider.pipelines import build_dags

    (tmp_path / "contracts").mkdir()
    for contract in (LIVE.parent / "contracts").glob("*.yaml"):
        (tmp_path / "contracts" / contract.name).write_text(contract.read_text())
    # the YAML's own retries block replaced (this test also runs as a CI component test of a candidate,
    # whose environment may carry MLOPS_PIPELINES_DIR, which would override the folder given to build_dags)
    monkeypatch.delenv("MLOPS_PIPELINES_DIR", raising=False)
    text = re.sub(r"(?m)^retries:\n(?:[ #].*\n|\n)*", "", LIVE.read_text()).rstrip("\n")
    (tmp_path / "loan_default.yaml").write_text(text + "\n\nretries:\n  count: 4\n")
    dags = build_dags(tmp_path, {})
    assert len(dags) == 4, sorted(dags)
    for dag in dags.values():
        for task in dag.tasks:
            assert task.retries == 4, (dag.dag_id, task.task_id)
            assert task.retry_delay == timedelta(seconds=30) and task.retry_exponential_backoff
            assert task.max_retry_delay == timedelta(seconds=600)


def test_object_store_root_needs_a_connection_free_state_folder_and_routes_every_reference():
    """``root: s3://...`` + ``conn_id``: references carry the connection; the ledgers stay in ``data.state``."""
    text = _variant("  root: ${MLOPS_DATA_DIR:-/tmp/mlops-loan-default}",
                    "  root: s3://mlops-data/loan\n  conn_id: mlops_data")
    (error,) = _bad(text)
    assert error[:3] == ("bad.yaml", _line_of(text, "root: s3://"), "data.state"), error
    assert "required when data.root is an object store (s3://mlops-data/loan)" in error[3]

    spec = parse_pipeline(text.replace("  conn_id: mlops_data", "  conn_id: mlops_data\n  state: /var/lib/mlops"))
    assert spec.on_object_store and spec.conn_id == "mlops_data"
    assert spec.data_path("predictions") == "s3://mlops-data/loan/predictions"
    assert spec.folder_of("batches") == "s3://mlops-data/loan/landing/batches"
    assert spec.ref("s3://mlops-data/loan/x.parquet") == {"uri": "s3://mlops-data/loan/x.parquet", "conn_id": "mlops_data"}
    assert spec.state_path("batch_ledger.sqlite3") == "/var/lib/mlops/batch_ledger.sqlite3"

    local = load_pipeline(LIVE)  # the default: a local folder, plain references, ledgers under work/
    assert not local.on_object_store and local.conn_id is None and local.ref("/d/x.parquet") == "/d/x.parquet"
    assert local.state_path("batch_ledger.sqlite3") == os.path.join(local.data_path("work"), "batch_ledger.sqlite3")
def test_docs_list_every_field_with_its_default():
    """docs/pipelines.md has one row per schema field, with the schema's default (none when required)."""
    from mlops_provider.pipelines import SCHEMA
    page = (ROOT / "docs" / "pipelines.md").read_text()
    rows = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 5:
            rows[cells[0].strip("`")] = cells
    def walk(schema, prefix=""):
        for key, spec in schema.items():
            if spec.type == "section" and spec.children:
                yield from walk(spec.children, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", spec
    for name, spec in walk(SCHEMA):
        assert name in rows, f"docs/pipelines.md does not document {name}"
        required, default = rows[name][1], rows[name][2]
        assert required == ("yes" if spec.required else "no"), name
        if spec.required:
            assert default == "", name
        elif spec.default not in (None, [], {}):
            shown = str(spec.default).lower() if isinstance(spec.default, bool) else str(spec.default)
            assert shown in default, (name, spec.default, default)
        if spec.choices:
            assert all(f"`{c}`" in rows[name][3] for c in spec.choices), name
