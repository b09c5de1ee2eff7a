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

from __future__ import annotations

import os
import sys

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # the factory lives beside the DAG files
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pipeline_factory import build_cicd, pipelines  # noqa: E402

for _spec in pipelines():
    globals()[f"cicd_pipeline__{_spec.dag_suffix}"] = build_cicd(_spec)
