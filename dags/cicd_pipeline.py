"""MLOps level 2 - CI/CD of the ML pipeline itself, one Airflow DAG per pipeline definition.

A data scientist proposes a changed definition by writing ``dags/pipelines/proposed/<model>.yaml``
(``MLOPS_PROPOSALS_DIR``).  Each new content of that file runs ``cicd_pipeline__<model>``
(``AssetWatcher`` + ``NewBatchTrigger``):

* **CI**: load and validate the YAML (file:line:key errors), run the pipeline's component tests
  (``tests:``), check DAG integrity (the DAG files build from it: no import error, no cycle) and the
  data contract against the schema of the current data.  Any failure ends the run: nothing deployed.
* **CD**: train with the new definition -> register ``candidate`` -> gate against the production
  champion -> optional human approval (``gate.approval``) -> promote (compare-and-set) -> record the
  pipeline version on the model and make the candidate the live definition -> post-deployment check on
  the next labelled live batch -> automatic rollback (champion alias and definition) below the floor.
"""

from pathlib import Path

from mlops_provider.pipelines import build_dags

# tests_root: the component tests the YAML names (tests/unit/...) are paths of this repository
build_dags(Path(__file__).parent / "pipelines", globals(), kinds=["cicd_pipeline"], tests_root=Path(__file__).parents[1])
