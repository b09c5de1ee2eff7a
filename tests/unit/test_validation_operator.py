"""DataValidationOperator with real Great Expectations, a real MLflow store (server and sqlite) and
real DAG runs (``dag.test()`` on the session's Airflow metadata DB)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_provider.core.validation import SUMMARY_MAX_BYTES, derive_schema_suite, matching_validation_run
from mlops_provider.exceptions import DatasetError, DataValidationFailed, MlopsConfigurationError
from mlops_provider.hooks.mlflow import MlflowHook
from mlops_provider.links.mlflow import _LINKS_ATTR
from mlops_provider.operators.validation import (
    LINEAGE_XCOM_KEY,
    REPORT_ARTIFACT,
    RESULT_ARTIFACT,
    DataValidationOperator,
)

ROOT = Path(__file__).resolve().parents[2]

SUITE = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "age", "min_value": 18, "max_value": 99},
    },
    {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "plan", "value_set": ["basic", "pro"]},
    },
]


class RecordingTI:
    """Stand-in task instance for direct ``execute()`` calls: it only records XCom pushes.

    The XCom/skip behaviour inside a real task run is covered by the ``dag.test()`` tests below."""

    map_index = -1

    def __init__(self) -> None:
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        json.dumps(value)  # what the real XCom backend needs
        self.xcom[key] = value


def _frame(n: int = 400, seed: int = 0, bad_rows: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 8_000, n).round(2),
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    if bad_rows:
        df.loc[: bad_rows - 1, "age"] = 150
        df.loc[: bad_rows - 1, "plan"] = "enterprise"
    return df


def _batch(tmp_path: Path, **kwargs) -> str:
    path = tmp_path / f"batch-{uuid.uuid4().hex[:6]}.parquet"
    _frame(**kwargs).to_parquet(path, index=False)
    return str(path)


def _run(op: DataValidationOperator, run_id: str | None = None):
    ti = RecordingTI()
    ctx = {"ti": ti, "run_id": run_id or f"manual__{uuid.uuid4().hex[:8]}"}
    return ti, ctx


def _experiment() -> str:
    return f"validation-{uuid.uuid4().hex[:8]}"


def test_passing_batch_logs_report_and_returns_small_summary(mlflow_conn, tmp_path):
    path = _batch(tmp_path)
    op = DataValidationOperator(
        task_id="validate", dataset=path, expectations=SUITE, experiment_name=_experiment()
    )
    ti, ctx = _run(op)
    summary = op.execute(ctx)

    assert summary["success"] is True
    assert summary["statistics"]["evaluated_expectations"] == 3
    assert len(json.dumps(summary)) < SUMMARY_MAX_BYTES
    lineage = ti.xcom[LINEAGE_XCOM_KEY]
    assert lineage["validation_run_id"] == summary["validation_run_id"]
    assert lineage["data_digest"] == summary["dataset"]["digest"]
    assert matching_validation_run(lineage, summary["dataset"]["digest"]) == summary["validation_run_id"]

    client = MlflowHook().get_client()
    run = client.get_run(summary["validation_run_id"])
    assert run.data.tags["mlops.dataset_digest"] == summary["dataset"]["digest"]
    assert run.data.tags["mlops.validation.success"] == "true"
    assert run.data.metrics["validation.evaluated_expectations"] == 3
    paths = {f.path for f in client.list_artifacts(run.info.run_id, "validation")}
    assert {REPORT_ARTIFACT, RESULT_ARTIFACT} <= paths
    local = client.download_artifacts(run.info.run_id, REPORT_ARTIFACT, str(tmp_path))
    assert "PASSED" in Path(local).read_text()
    links = getattr(op, _LINKS_ATTR)
    assert links["Validation report"] == summary["report_url"]
    if mlflow_conn.startswith("http"):
        assert summary["report_url"].startswith(mlflow_conn) and summary["report_url"].endswith(
            REPORT_ARTIFACT
        )
        assert links["MLflow run"].endswith(run.info.run_id)


def test_fail_policy_says_what_failed_by_how_much_and_where(mlflow_conn_sqlite, tmp_path):
    path = _batch(tmp_path, bad_rows=8)
    op = DataValidationOperator(
        task_id="validate", dataset=path, expectations=SUITE, experiment_name=_experiment()
    )
    ti, ctx = _run(op)
    with pytest.raises(DataValidationFailed) as err:
        op.execute(ctx)
    message = str(err.value)
    assert "2 of 3 expectations failed" in message
    assert "expect_column_values_to_be_between on 'age': 8 unexpected (2.0%)" in message
    assert "expect_column_values_to_be_in_set on 'plan': 8 unexpected (2.0%)" in message
    assert "enterprise" in message
    summary = ti.xcom["return_value"]
    assert summary["success"] is False and summary["failures_total"] == 2
    assert f"Report: {summary['report_url']}" in message
    assert Path(path).exists()  # the batch is never deleted
    run = MlflowHook().get_client().get_run(summary["validation_run_id"])
    assert run.data.tags["mlops.validation.success"] == "false"


def test_failure_message_follows_the_suite_and_counts_the_rest(mlflow_conn_sqlite, tmp_path):
    """Failures in the suite's order, each with its column; a column set names missing and extra columns."""
    expectations = [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "plan", "value_set": ["basic"]}},
        {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["age", "plan", "region"], "exact_match": True}},
        *[
            {"type": f"expect_column_{kind}_to_be_between", "kwargs": {"column": c, "min_value": 1e9}}
            for kind, c in (("values", "income"), ("values", "age"), ("min", "income"), ("max", "age"), ("mean", "income"))
        ],
    ]
    op = DataValidationOperator(
        task_id="validate", dataset=_batch(tmp_path), expectations=expectations, experiment_name=_experiment()
    )
    ti, ctx = _run(op)
    with pytest.raises(DataValidationFailed) as err:
        op.execute(ctx)
    lines = str(err.value).splitlines()
    assert lines[1].startswith("#0 expect_column_values_to_be_in_set on 'plan': ")
    assert lines[2] == "#1 expect_table_columns_to_match_set on the table: missing column(s) 'region', extra column(s) 'income'"
    assert [line.split(" ", 2)[:2] for line in lines[3:6]] == [
        ["#2", "expect_column_values_to_be_between"], ["#3", "expect_column_values_to_be_between"],
        ["#4", "expect_column_min_to_be_between"]]
    assert [line.split(" on ")[1].split(":")[0] for line in lines[3:6]] == ["'income'", "'age'", "'income'"]
    assert lines[6] == "... and 2 more failed expectation(s), listed in the report"
    assert ti.xcom["return_value"]["failures"][1]["missing_columns"] == ["region"]


def test_warn_policy_continues_with_the_outcome_in_xcom(mlflow_conn_sqlite, tmp_path):
    op = DataValidationOperator(
        task_id="validate",
        dataset=_batch(tmp_path, bad_rows=3),
        expectations=SUITE,
        on_failure="warn",
        experiment_name=_experiment(),
    )
    ti, ctx = _run(op)
    summary = op.execute(ctx)
    assert summary["success"] is False and summary["on_failure"] == "warn"
    assert ti.xcom[LINEAGE_XCOM_KEY]["success"] is False
    assert matching_validation_run(ti.xcom[LINEAGE_XCOM_KEY], summary["dataset"]["digest"]) is None


def test_quarantine_policy_copies_batch_and_report_then_skips(mlflow_conn_sqlite, tmp_path):
    from airflow.sdk.exceptions import AirflowSkipException

    path = _batch(tmp_path, bad_rows=5)
    op = DataValidationOperator(
        task_id="validate",
        dataset=path,
        expectations=SUITE,
        on_failure="quarantine",
        quarantine_location=str(tmp_path / "quarantine"),
        experiment_name=_experiment(),
    )
    ti, ctx = _run(op, run_id="scheduled__2025-01-01T00:00:00+00:00")
    with pytest.raises(AirflowSkipException, match="quarantined"):
        op.execute(ctx)
    summary = ti.xcom["return_value"]
    target = Path(summary["quarantine_location"])
    assert target == tmp_path / "quarantine" / op.dag_id / "validate" / "scheduled__2025-01-01T00_00_00_00_00"
    assert sorted(p.name for p in target.iterdir()) == [
        "batch.parquet",
        "report.html",
        "result.json",
        "source",
        "summary.json",
    ]
    pd.testing.assert_frame_equal(pd.read_parquet(target / "batch.parquet"), pd.read_parquet(path))
    assert (target / "source" / Path(path).name).read_bytes() == Path(path).read_bytes()
    assert "FAILED" in (target / "report.html").read_text()
    assert json.loads((target / "summary.json").read_text())["failures_total"] == 2
    assert Path(path).exists()
    run = MlflowHook().get_client().get_run(summary["validation_run_id"])
    assert run.data.tags["mlops.validation.quarantine_location"] == str(target)


def test_retry_reuses_the_validation_run(mlflow_conn_sqlite, tmp_path):
    kwargs = dict(
        task_id="validate", dataset=_batch(tmp_path), expectations=SUITE, experiment_name=_experiment()
    )
    first = DataValidationOperator(**kwargs).execute(_run(None, run_id="r1")[1])
    second = DataValidationOperator(**kwargs).execute(_run(None, run_id="r1")[1])
    third = DataValidationOperator(**kwargs).execute(_run(None, run_id="r2")[1])
    assert first["validation_run_id"] == second["validation_run_id"] != third["validation_run_id"]


def test_large_value_set_keeps_xcom_and_rendered_fields_small(mlflow_conn_sqlite, tmp_path):
    from airflow.serialization.helpers import serialize_template_field

    values = [f"city-{i}" for i in range(10_000)]
    suite = [{"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "city", "value_set": values}}]
    path = tmp_path / "cities.parquet"
    pd.DataFrame({"city": [f"city-{i}" for i in range(200)] + ["atlantis"] * 5}).to_parquet(path)
    op = DataValidationOperator(
        task_id="validate",
        dataset="{{ params.path }}",
        expectations=suite,
        on_failure="warn",
        experiment_name=_experiment(),
    )
    ti, ctx = _run(op)
    ctx["params"] = {"path": str(path)}
    started = time.perf_counter()
    op.render_template_fields(ctx)
    render_seconds = time.perf_counter() - started
    assert op.dataset == str(path)
    assert op.expectations[0]["kwargs"]["value_set"] == values
    # what Airflow stores as rendered fields / in the serialized DAG is capped
    for name in op.template_fields:
        assert len(json.dumps(serialize_template_field(getattr(op, name), name))) < 5_000, name
    summary = op.execute(ctx)
    assert summary["success"] is False
    [failure] = summary["failures"]
    assert failure["unexpected_count"] == 5
    assert failure["observed_value"] == {"unexpected_values": ["atlantis"]}
    assert failure["expected"]["value_set"][-1] == "... (10000 items)"
    assert len(json.dumps(summary)) < 4_000
    assert len(json.dumps(ti.xcom[LINEAGE_XCOM_KEY])) < 1_000
    print(f"rendering 10,000 values took {render_seconds:.3f}s")


def test_schema_contract_file_reports_schema_change(mlflow_conn_sqlite, tmp_path):
    contract = tmp_path / "contract.yaml"
    contract.write_text(derive_schema_suite(_frame(), tolerance=0.1, name="people"))
    changed = _frame().assign(age=lambda d: d.age.astype("float64")).drop(columns=["plan"])
    path = tmp_path / "changed.parquet"
    changed.to_parquet(path)
    op = DataValidationOperator(
        task_id="validate", dataset=str(path), suite_path=str(contract), experiment_name=_experiment()
    )
    with pytest.raises(DataValidationFailed) as err:
        op.execute(_run(op)[1])
    message = str(err.value)
    assert (
        "schema change: dtype of 'age' changed: int64 -> float64; column 'plan' (object) is missing"
        in message
    )
    # and the unchanged data passes its contract
    ok = DataValidationOperator(
        task_id="validate2", dataset=_batch(tmp_path), suite_path=str(contract), experiment_name=_experiment()
    )
    assert ok.execute(_run(ok)[1])["success"] is True


def test_suite_factory_and_checkpoint_of_a_file_context(mlflow_conn_sqlite, tmp_path):
    import great_expectations as gx

    def factory():
        suite = gx.ExpectationSuite(name="from_factory")
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column="income"))
        return suite

    op = DataValidationOperator(
        task_id="validate", dataset=_batch(tmp_path), suite_factory=factory, experiment_name=_experiment()
    )
    assert op.execute(_run(op)[1])["suite"] == "from_factory"

    project = tmp_path / "gx_project"
    context = gx.get_context(mode="file", project_root_dir=str(project))
    batch_def = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset("batch")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="project_suite"))
    suite.add_expectation(
        gx.expectations.ExpectColumnValuesToBeBetween(column="age", min_value=18, max_value=99)
    )
    vd = context.validation_definitions.add(gx.ValidationDefinition(name="vd", data=batch_def, suite=suite))
    context.checkpoints.add(gx.Checkpoint(name="nightly", validation_definitions=[vd]))

    op = DataValidationOperator(
        task_id="validate_cp",
        dataset=_batch(tmp_path, bad_rows=4),
        context_root_dir=str(project),
        checkpoint_name="nightly",
        experiment_name=_experiment(),
    )
    with pytest.raises(
        DataValidationFailed, match="expect_column_values_to_be_between on 'age': 4 unexpected"
    ):
        op.execute(_run(op)[1])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(expectations=SUITE, on_failure="ignore"), MlopsConfigurationError, "on_failure must be one of"),
        (
            dict(expectations=SUITE, on_failure="quarantine"),
            MlopsConfigurationError,
            "needs quarantine_location",
        ),
        (dict(), MlopsConfigurationError, r"exactly one of .* \(got none\)"),
        (
            dict(expectations=SUITE, suite_path="x.yaml"),
            MlopsConfigurationError,
            r"\(got expectations, suite_path\)",
        ),
        (dict(checkpoint_name="cp"), MlopsConfigurationError, "checkpoint_name needs context_root_dir"),
        (
            dict(expectations=[{"type": "expect_column_to_be_pretty", "kwargs": {"column": "age"}}]),
            MlopsConfigurationError,
            r"expectation #0 .*unknown expectation type 'expect_column_to_be_pretty'",
        ),
        (dict(expectations="[not json"), MlopsConfigurationError, "expectations is not valid JSON"),
    ],
)
def test_bad_arguments_fail_before_loading_data(kwargs, error, match, tmp_path):
    with pytest.raises(error, match=match):
        op = DataValidationOperator(task_id="validate", dataset=str(tmp_path / "absent.parquet"), **kwargs)
        op.execute(_run(op)[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(expectations=SUITE, on_failure="ignore"), r"on_failure must be one of 'fail', 'warn', 'quarantine'; got 'ignore'"),
        (dict(expectations=SUITE, on_failure="skip"), r"on_failure must be one of 'fail', 'warn', 'quarantine'"),
        (dict(expectations=SUITE, on_failure="quarantine"), "needs quarantine_location"),
        (dict(expectations=SUITE, result_format="FULL"), r"result_format must be one of 'BOOLEAN_ONLY', 'BASIC', 'SUMMARY', 'COMPLETE'"),
        (dict(), r"exactly one of .* \(got none\)"),
        (dict(expectations=SUITE, suite_path="x.yaml"), r"\(got expectations, suite_path\)"),
        (dict(checkpoint_name="cp"), "checkpoint_name needs context_root_dir"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs, match):
    """The constructor refuses them: a DAG file with a typo does not import."""
    with pytest.raises(MlopsConfigurationError, match=match):
        DataValidationOperator(task_id="validate", dataset="absent.parquet", **kwargs)


def test_templated_on_failure_is_checked_after_rendering(tmp_path):
    op = DataValidationOperator(task_id="validate", dataset="absent.parquet", expectations=SUITE, on_failure="{{ params.policy }}")
    op.on_failure = "ignore"  # as rendered
    with pytest.raises(MlopsConfigurationError, match="on_failure must be one of"):
        op.execute(_run(op)[1])


def test_bad_suite_files_and_datasets(mlflow_conn_sqlite, tmp_path):
    good = _batch(tmp_path)
    bad_suite = tmp_path / "suite.yaml"
    bad_suite.write_text(
        yaml.safe_dump(SUITE + [{"type": "expect_column_values_to_be_null"}, {"kwargs": {}}])
    )
    op = DataValidationOperator(task_id="v", dataset=good, suite_path=str(bad_suite))
    with pytest.raises(MlopsConfigurationError, match=r"suite\.yaml: expectation #4 has no 'type'"):
        op.execute(_run(op)[1])
    bad_suite.write_text("expectations: [\n")
    with pytest.raises(MlopsConfigurationError, match=r"suite\.yaml is not valid YAML \(line"):
        op.execute(_run(op)[1])
    op = DataValidationOperator(task_id="v", dataset=good, suite_path=str(tmp_path / "nope.json"))
    with pytest.raises(MlopsConfigurationError, match=r"Cannot read suite file .*nope\.json"):
        op.execute(_run(op)[1])

    # unreadable and empty datasets
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    for dataset in (str(garbage), str(tmp_path / "missing.parquet")):
        op = DataValidationOperator(task_id="v", dataset=dataset, expectations=SUITE)
        with pytest.raises(DatasetError):
            op.execute(_run(op)[1])
    empty = tmp_path / "empty.parquet"
    _frame().iloc[:0].to_parquet(empty)
    op = DataValidationOperator(task_id="v", dataset=str(empty), expectations=SUITE)
    with pytest.raises(DatasetError, match="empty"):
        op.execute(_run(op)[1])
    assert garbage.exists() and empty.exists()


def test_missing_column_and_wrong_dtype_are_reported_as_such(mlflow_conn_sqlite, tmp_path):
    frame = _frame().assign(age=lambda d: d.age.astype(str))
    path = tmp_path / "strings.parquet"
    frame.to_parquet(path)
    suite = SUITE + [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "postcode"}},
        {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "age", "type_": "int64"}},
    ]
    op = DataValidationOperator(
        task_id="v", dataset=str(path), expectations=suite, experiment_name=_experiment()
    )
    ti, ctx = _run(op)
    with pytest.raises(DataValidationFailed) as err:
        op.execute(ctx)
    message = str(err.value)
    assert "on 'postcode': error: column 'postcode' is not in the data" in message
    assert "expect_column_values_to_be_of_type on 'age': 400 unexpected (100.0%)" in message
    assert "expect_column_values_to_be_between on 'age': error: " in message
    assert ti.xcom["return_value"]["missing_columns"] == ["postcode"]


# --------------------------------------------------------------------------- real DAG runs


def test_example_dag_quarantines_the_bad_batch_and_the_run_continues(
    airflow_db, mlflow_conn_sqlite, tmp_path, monkeypatch
):
    """The example DAG in a real DAG run: fail policy on a good batch, quarantine on a bad one."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    monkeypatch.setenv("MLOPS_EXAMPLE_DATA_DIR", str(tmp_path))
    bag = DagBag(dag_folder=str(ROOT / "dags" / "example_data_validation.py"))
    assert bag.import_errors == {}
    dag = bag.dags["example_data_validation"]
    dag_run = dag.test()
    assert dag_run.state == "success"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["validate_good_batch"] == "success"
    assert states["validate_bad_batch"] == "skipped"
    assert states["train_on_bad_batch"] == "skipped"
    assert states["record_lineage"] == "success"
    assert states["prepare_data"] == "success"
    assert dag_run.state == "success"  # the quarantined batch did not fail the DAG run

    [report] = list((tmp_path / "quarantine").rglob("report.html"))
    target = report.parent
    assert {p.name for p in target.iterdir()} == {
        "batch.parquet",
        "report.html",
        "result.json",
        "summary.json",
        "source",
    }
    assert (tmp_path / "bad.parquet").exists()  # never deleted

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        xcoms = {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}
    bad = xcoms[("validate_bad_batch", "return_value")]  # pushed although the task was skipped
    assert bad["success"] is False and bad["quarantine_location"] == str(target)
    assert {f["column"] for f in bad["failures"]} == {"monthly_charges", "plan"}
    good = xcoms[("validate_good_batch", "return_value")]
    assert good["success"] is True and good["schema_changes"] == []
    assert xcoms[("record_lineage", "return_value")] == good["validation_run_id"]
    for value in (bad, good, xcoms[("validate_good_batch", LINEAGE_XCOM_KEY)]):
        assert len(json.dumps(value)) < SUMMARY_MAX_BYTES


def test_docs_include_the_example_dag_snippets_verbatim():
    import re
    import textwrap

    source = (ROOT / "dags" / "example_data_validation.py").read_text()
    text = (ROOT / "docs" / "operators" / "validation.md").read_text()
    markers = re.findall(r"# \[START (\w+)\]", source)
    assert len(markers) == 4
    for marker in markers:
        match = re.search(rf"# \[START {marker}\]\n(.*?)\n\s*# \[END {marker}\]", source, re.S)
        assert match, marker
        assert textwrap.dedent(match.group(1)) in text, f"validation.md is out of date for {marker}"
