"""The ``make demo`` story under a real Airflow deployment (api-server, scheduler, dag-processor, triggerer).

It parses ``dags/`` (not ``tests/system/dags``), so it runs its own deployment instead of the
session's ``airflow_cluster``; the story lands files and Airflow does the rest (Asset watchers,
asset-triggered runs, drift and decay events scheduling retraining).  The timeline is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))


def test_demo_story_timeline(session_dir):
    import demo

    # Not quiet: pytest captures the day-by-day log and shows it when the story fails.
    result = demo.run_story(session_dir / "demo-story", keep=False, quiet=False)
    print(demo.format_timeline(result))
    rows = {row["day"]: row for row in result["timeline"]}
    assert rows[0]["champion"] == "1"
    assert rows[3]["validation"] == "QUARANTINED" and rows[3]["drift_share"] is None
    drift_days = [day for day, row in rows.items() if row.get("drift")]
    assert drift_days == [4], drift_days
    assert "promoted v2" in rows[4]["action"] and rows[4]["champion"] == "2"
    decay_days = [day for day, row in rows.items() if row.get("decay") == "decay"]
    assert decay_days and decay_days[0] == 6, decay_days
    assert not rows[6].get("drift")  # concept drift: the features did not move
    assert rows[max(rows)]["champion"] == "3"
