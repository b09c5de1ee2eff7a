"""Event-driven monitoring, one pair of Airflow DAGs per pipeline definition in ``dags/pipelines/*.yaml``.

``drift_monitor__<model>`` runs when batches land in the pipeline's ``data.batches`` glob
(``AssetWatcher`` + ``NewBatchTrigger``, no polling worker).  Airflow may merge several arrivals into one
run; each batch of the run is checked on its own (a mapped task group): validate it against the batch
contract (a bad batch is quarantined, not scored, not drift-checked) -> score it with the champion ->
drift check against the champion's training profile -> ``mlops://<model>/drift`` Asset event.

``performance_monitor__<model>`` runs when label files land in ``data.labels`` (labels arrive later than
the batch), each label file on its own: join the labels with the stored predictions -> ``mlops://<model>/performance_decay``
Asset event when live quality falls below the champion's.  Both events schedule
``continuous_training__<model>``.
"""

from __future__ import annotations

import os
import sys

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # the factory lives beside the DAG files
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pipeline_factory import build_drift_monitor, build_performance_monitor, pipelines  # noqa: E402

for _spec in pipelines():
    globals()[f"drift_monitor__{_spec.dag_suffix}"] = build_drift_monitor(_spec)
    globals()[f"performance_monitor__{_spec.dag_suffix}"] = build_performance_monitor(_spec)
