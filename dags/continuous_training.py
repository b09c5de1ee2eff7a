"""MLOps level 1 - continuous training, one Airflow DAG per pipeline definition in ``dags/pipelines/*.yaml``.

``continuous_training__<model>``: retraining policy -> assemble the training window (waits for the
labels of the latest accepted batches) -> validate the training data against its contract -> train ->
register the challenger -> promotion gate against the champion -> promote (compare-and-set) -> batch
score with the new champion.  It runs on the YAML's cron schedule and whenever the model's
``training_data``, ``drift`` or ``performance_decay`` asset gets an event; the policy records every
reason and applies the cooldown.  The builder is :func:`pipeline_factory.build_continuous_training`.
"""

from __future__ import annotations

import os
import sys

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # the factory lives beside the DAG files
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pipeline_factory import build_continuous_training, pipelines  # noqa: E402

for _spec in pipelines():
    globals()[f"continuous_training__{_spec.dag_suffix}"] = build_continuous_training(_spec)
