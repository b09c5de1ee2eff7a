"""Pipeline definitions as data: the committed YAML loads; bad YAML names the file, the line and the key.

Pure (PyYAML + the provider's spec module); also the component tests ``cicd_pipeline`` runs in CI
(``MLOPS_CANDIDATE_PIPELINE`` points at the candidate definition then)."""

from __future__ import annotations

import os
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
