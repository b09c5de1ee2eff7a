"""``mlops-pipelines check`` and ``derive-contracts`` (``run`` starts a whole stack: tests/system/test_pipelines_doc.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mlops_provider.cli import main

ROOT = Path(__file__).resolve().parents[2]
YAML = """\
name: shop
data:
  root: {root}
  training: base.parquet
  batches: batches/*.parquet
  labels: labels
features:
  id: order_id
  numeric: [basket, hour]
  categorical: [channel]
target: returned
estimator:
  class: sklearn.linear_model.LogisticRegression
validation:
  batch_contract: contracts/batch.yaml
  training_contract: contracts/training.yaml
  derive:
    ranges: true
    margin: 0.5
    id_columns: [customer_ref]
gate:
  min_value: 0.5
"""


def _folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    n = 200
    pd.DataFrame({
        "order_id": np.arange(n), "customer_ref": np.arange(1000, 1000 + n), "basket": rng.gamma(2, 20, n),
        "hour": rng.integers(0, 24, n), "channel": rng.choice(["web", "app"], n), "returned": rng.integers(0, 2, n),
    }).to_parquet(tmp_path / "base.parquet", index=False)
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "shop.yaml").write_text(YAML.format(root=tmp_path))
    return folder


def test_derive_then_check(tmp_path, capsys):
    folder = _folder(tmp_path)
    assert main(["check", str(folder)]) == 1
    err = capsys.readouterr().err
    line = YAML.splitlines().index("  batch_contract: contracts/batch.yaml") + 1
    assert f"{folder / 'shop.yaml'}:{line}: validation.batch_contract: contract 'contracts/batch.yaml' is missing" in err
    assert main(["derive-contracts", str(folder / "shop.yaml")]) == 0
    batch = yaml.safe_load((folder / "contracts" / "batch.yaml").read_text())
    training = yaml.safe_load((folder / "contracts" / "training.yaml").read_text())
    assert "returned" not in batch["columns"] and "returned" in training["columns"]
    for col in ("order_id", "customer_ref"):  # features.id and validation.derive.id_columns
        assert batch["columns"][col] == {"dtype": "int64", "nullable": False, "unique": True}
    basket = batch["columns"]["basket"]  # ranges: true, margin 0.5
    span = basket["observed_max"] - basket["observed_min"]
    assert basket["max"] == basket["observed_max"] + 0.5 * span
    assert main(["derive-contracts", str(folder / "shop.yaml")]) == 1  # never overwrites a reviewed contract
    assert "exists: review and edit it, or pass --force" in capsys.readouterr().err
    assert main(["check", str(folder)]) == 0
    assert "shop.yaml: ok (model shop" in capsys.readouterr().out


def test_bad_field_is_reported_with_file_line_key(tmp_path, capsys):
    folder = _folder(tmp_path)
    path = folder / "shop.yaml"
    path.write_text(path.read_text().replace("gate:\n  min_value: 0.5", "gate:\n  min_value: high"))
    assert main(["check", str(path)]) == 1
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "min_value: high" in text)
    assert f"{path}:{line}: gate.min_value: expected a number, got a string 'high'" in capsys.readouterr().err


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "mlops-pipelines"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("check", "derive-contracts", "run"):
        assert command in out
    assert 'mlops-pipelines = "mlops_provider.cli:main"' in (ROOT / "pyproject.toml").read_text()
