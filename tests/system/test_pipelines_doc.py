"""docs/pipelines.md's worked example runs as written: every ``<!-- run: pipelines-example -->`` block, in order.

The blocks make a new dataset (bike hire, a winter base set and a July batch), write the pipeline YAML,
derive and check its contracts, validate the summer batch against the winter contract, and run the
pipeline on the embedded stack with ``mlops-pipelines run --exit-after-training`` (real api-server,
scheduler, dag-processor and triggerer; SQLite Airflow and MLflow): the first champion is promoted.
The YAML excerpt the page shows is compared with the contract the commands derived.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "pipelines.md"
RUN = re.compile(r"<!-- run: pipelines-example -->\n```bash\n(.*?)```", re.S)


def test_worked_example_runs_as_documented(tmp_path):
    blocks = RUN.findall(PAGE.read_text())
    assert len(blocks) >= 5, "the worked example lost its runnable blocks"
    script = "set -euo pipefail\n" + "\n".join(blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "MLOPS_"))}
    env.update(WORK=str(tmp_path / "bike"), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "July batch: valid against the winter contract" in out
    assert "bike_hire.yaml: ok (model bike_hire" in out
    assert "continuous_training__bike_hire: success; promote success" in out, out[-3000:]

    contract = (tmp_path / "bike" / "pipelines" / "contracts" / "bike_hire_batch.yaml").read_text()
    shown = re.search(r"```yaml\n(  ride_id: .*?)```", PAGE.read_text(), re.S).group(1).splitlines()
    assert shown[0] in contract.splitlines()  # the id: unique, not null, no range
    temperature = next(line for line in contract.splitlines() if line.startswith("  temperature:"))
    assert temperature == shown[1], (temperature, shown[1])
