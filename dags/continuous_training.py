"""MLOps level 1 - continuous training, one Airflow DAG per pipeline definition in ``dags/pipelines/*.yaml``.

``continuous_training__<model>``: retraining policy -> assemble the training window (waits for the
labels of the latest accepted batches) -> validate the training data against its contract -> train ->
register the challenger -> promotion gate against the champion -> promote (compare-and-set) -> batch
score with the new champion.  It runs on the YAML's cron schedule and whenever the model's
``training_data``, ``drift`` or ``performance_decay`` asset gets an event; the policy records every
reason and applies the cooldown.  The builder is :func:`mlops_provider.pipeline_dags.build_continuous_training`.
"""

from pathlib import Path

from mlops_provider.pipelines import build_dags

build_dags(Path(__file__).parent / "pipelines", globals(), kinds=["continuous_training"])
