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

from pathlib import Path

from mlops_provider.pipelines import build_dags

build_dags(Path(__file__).parent / "pipelines", globals(), kinds=["drift_monitor", "performance_monitor"])
