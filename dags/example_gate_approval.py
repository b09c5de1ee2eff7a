"""Promotion gate with human approval: gate -> approver sees the gate summary -> promotion.

``example_gate_approval`` evaluates the ``challenger`` of a registered model against its ``champion``
on an evaluation set (overall, per region, and a fairness gap across a sensitive attribute).  When
the gate blesses the challenger, an approver decides in the Airflow UI ("Required actions"): the
gate verdict, the checks and the report are shown in the request.  The decision is recorded on the
model version as tags (``approval.decision``, ``approval.by``, ``approval.at``); on approval the
champion alias moves with compare-and-set against the champion the gate compared with, so a
champion changed while the request was waiting is never overwritten.

Needs a registered model with a ``challenger`` alias (for example from ``example_train_register_promote``)
and an evaluation file with the label and the slice columns; the DAG params name them.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Param, task

from mlops_provider.operators.gate import PromotionGateOperator
from mlops_provider.operators.registry import PromoteModelOperator

PARAMS = {
    "model_name": Param("example-churn", type="string", description="Registered model name"),
    "eval_dataset": Param("/tmp/mlops-example/eval.parquet", type="string", description="Evaluation set"),
    "target": Param("churned", type="string", description="Label column of the evaluation set"),
}

with DAG(
    dag_id="example_gate_approval",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params=PARAMS,
    tags=["mlops", "example"],
    doc_md=__doc__,
) as dag:
    # [START howto_operator_promotion_gate]
    gate = PromotionGateOperator(
        task_id="gate",
        model_name="{{ params.model_name }}",
        eval_dataset="{{ params.eval_dataset }}",
        target_column="{{ params.target }}",
        challenger="challenger",
        champion="champion",
        gate_spec={
            "thresholds": [
                # value threshold on the whole set and on every region
                {"metric": "roc_auc", "value": {"lower_bound": 0.70}, "slices": ["overall", "region=*"]},
                # no regression against the champion (tolerance 0.005), judged overall
                {"metric": "roc_auc", "change": {"direction": "higher_is_better", "absolute": -0.005}},
                {"metric": "log_loss", "change": {"direction": "lower_is_better", "relative": 0.02}},
            ],
            # recall may differ by at most 0.10 between the groups of a sensitive attribute
            "fairness": [{"metric": "recall", "column": "segment", "max_gap": 0.10}],
            "latency_p95_ms_per_1k_rows": 200,
            "max_model_size_mb": 50,
            "fail_on_empty_slice": False,
        },
        on_pass="none",  # a human decides below
        on_failure="skip",  # a rejected challenger skips the approval and the promotion
    )
    # [END howto_operator_promotion_gate]

    # [START howto_gate_human_approval]
    approval = ApprovalOperator(
        task_id="approval",
        subject=(
            "Promote {{ params.model_name }} v{{ ti.xcom_pull(task_ids='gate')['challenger_version'] }} "
            "to champion?"
        ),
        body="""
{% set g = ti.xcom_pull(task_ids='gate') %}
**Gate verdict:** {{ g['verdict'] }} ({{ g['basis'] }}) -
{{ g['n_checks'] - g['n_failed'] }}/{{ g['n_checks'] }} checks passed

| | version |
|---|---|
| challenger | {{ g['challenger_version'] }} |
| champion (compared to) | {{ g['champion_version'] or 'none (first model)' }} |

{% for line in g['failed'] %}- {{ line }}
{% endfor %}
Full report (JSON and chart): `{{ g['report_uri'] }}`
""",
        response_timeout=timedelta(days=2),  # no answer in time: the default, Reject
        defaults="Reject",
    )

    promote = PromoteModelOperator(
        task_id="promote",
        registered_model_name="{{ params.model_name }}",
        version="{{ ti.xcom_pull(task_ids='gate')['challenger_version'] }}",
        # compare-and-set: fail, changing nothing, if the champion moved while the approver decided
        expected_champion_version="{{ ti.xcom_pull(task_ids='gate')['champion_version'] or 'none' }}",
        reason="gate {{ ti.xcom_pull(task_ids='gate')['verdict'] }}; approved by a human",
    )

    # "Reject" skips the direct downstream task (promote); this one runs either way (all_done).
    @task(trigger_rule="all_done")
    def record_decision(ti=None) -> dict:
        """Record the approver's decision on the challenger's model version (approved or rejected)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops_provider.hooks.mlflow import MlflowHook

        gate_summary = ti.xcom_pull(task_ids="gate")
        response = ti.xcom_pull(task_ids="approval")
        if not gate_summary or not response:
            raise AirflowSkipException("The gate did not bless the challenger: no approval to record")
        chosen = (response.get("chosen_options") or ["Reject"])[0]
        user = response.get("responded_by_user") or {}
        responded_at = response.get("responded_at")
        tags = {
            "approval.decision": "approved" if chosen == ApprovalOperator.APPROVE else "rejected",
            "approval.by": str(user.get("name") or user.get("id") or "timeout default"),
            "approval.at": responded_at.isoformat() if hasattr(responded_at, "isoformat") else str(responded_at),
        }
        client = MlflowHook().get_client()
        for key, value in tags.items():
            client.set_model_version_tag(gate_summary["model_name"], gate_summary["challenger_version"], key, value)
        return tags

    gate >> approval >> promote >> record_decision()
    # [END howto_gate_human_approval]
