"""Benchmark: DataValidationOperator against raw Great Expectations on the same suite and data.

1,000,000 rows x 20 columns (parquet), 40 expectations.  Both sides read the parquet file and
validate it with an ephemeral GX context and ``result_format="SUMMARY"``; the operator also computes
the dataset digest, builds the summary and HTML report and logs them to MLflow (a ``sqlite:///``
store in a temporary directory).  The sides alternate, ``--repeats`` times each; the table shows the
median and the ratio operator / raw GX (target <= 1.1), plus the XCom size.

    .venv/bin/python bench/validation.py [--rows 1000000] [--repeats 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_data(rows: int, path: Path) -> list[dict]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(42)
    cols: dict[str, object] = {}
    for i in range(10):
        cols[f"f{i}"] = rng.normal(i * 10, 3, rows)
    for i in range(6):
        cols[f"i{i}"] = rng.integers(0, 1000, rows)
    for i in range(4):
        cols[f"c{i}"] = pd.Categorical(rng.choice([f"v{k}" for k in range(8)], rows)).astype(str)
    frame = pd.DataFrame(cols)
    frame.loc[:99, "f3"] = 1e9  # a few failures, so the summary has something to say
    frame.loc[:9, "c1"] = "unknown"
    frame.to_parquet(path, index=False)

    suite = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": rows * 2}},
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": list(cols), "exact_match": True},
        },
    ]
    for name in cols:
        suite.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": name}})
    for i in range(10):
        suite.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": f"f{i}", "min_value": i * 10 - 50, "max_value": i * 10 + 50},
            }
        )
    for i in range(4):
        suite.append(
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": f"c{i}", "value_set": [f"v{k}" for k in range(8)]},
            }
        )
    for i in range(4):
        suite.append(
            {
                "type": "expect_column_mean_to_be_between",
                "kwargs": {"column": f"i{i}", "min_value": 400, "max_value": 600},
            }
        )
    return suite


def raw_gx(path: Path, suite_dicts: list[dict]) -> tuple[float, dict]:
    """What a user writes with GX alone: read the file, ephemeral context, suite, run."""
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    started = time.perf_counter()
    frame = pd.read_parquet(path)
    read = time.perf_counter() - started
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    suite = gx.ExpectationSuite(name="bench")
    for entry in suite_dicts:
        suite.add_expectation_configuration(
            ExpectationConfiguration(type=entry["type"], kwargs=entry["kwargs"])
        )
    suite = context.suites.add(suite)
    batch = (
        context.data_sources.add_pandas("p")
        .add_dataframe_asset("df")
        .add_batch_definition_whole_dataframe("all")
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="v", data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    elapsed = time.perf_counter() - started
    return elapsed, {"read": read, **result.to_json_dict()["statistics"]}


class _TI:
    map_index = -1

    def __init__(self) -> None:
        self.xcom: dict = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


def operator_run(path: Path, suite_dicts: list[dict], n: int) -> tuple[float, dict, dict]:
    from mlops_provider.operators.validation import DataValidationOperator

    op = DataValidationOperator(
        task_id="validate",
        dataset=str(path),
        expectations=suite_dicts,
        on_failure="warn",
        experiment_name="bench",
    )
    ti = _TI()
    started = time.perf_counter()
    summary = op.execute({"ti": ti, "run_id": f"bench_{n}"})
    elapsed = time.perf_counter() - started
    return elapsed, summary, ti.xcom


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-validation-"))
    os.environ.setdefault("AIRFLOW_HOME", str(work / "airflow"))
    os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps(
        {"conn_type": "mlflow", "host": f"sqlite:///{work / 'mlflow.db'}"}
    )
    os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "false"
    os.chdir(work)  # local MLflow artifacts land in the temporary directory
    sys.path.insert(0, str(ROOT / "provider"))

    path = work / "batch.parquet"
    suite = make_data(args.rows, path)
    size_mb = path.stat().st_size / 1e6

    # warm-up: imports and first-use costs (both sides share them)
    raw_gx(path, suite[:2])
    operator_run(path, suite[:2], -1)

    raw_times, op_times, raw_reads, op_gx = [], [], [], []
    summary: dict = {}
    xcoms: dict = {}
    stats: dict = {}
    for i in range(args.repeats):
        t, stats = raw_gx(path, suite)
        raw_times.append(t)
        raw_reads.append(stats["read"])
        t, summary, xcoms = operator_run(path, suite, i)
        op_times.append(t)
        op_gx.append(summary["seconds"])

    raw, op = statistics.median(raw_times), statistics.median(op_times)
    # the operator's own work: everything but GX (read + digest + summary/report + MLflow)
    op_outside = [t - g for t, g in zip(op_times, op_gx, strict=True)]
    raw_gx_only = [t - r for t, r in zip(raw_times, raw_reads, strict=True)]

    def runs(values: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in values)

    xcom_bytes = len(json.dumps(summary))
    lineage_bytes = len(json.dumps(xcoms.get("validation_lineage")))
    rows = [
        ("data", f"{args.rows:,} rows x 20 columns, parquet {size_mb:.1f} MB, {len(suite)} expectations"),
        (
            "raw GX (read + ephemeral context + run), median s",
            f"{raw:.2f} (min {min(raw_times):.2f}; runs {runs(raw_times)})",
        ),
        (
            "DataValidationOperator.execute (read + digest + GX + report + MLflow), median s",
            f"{op:.2f} (min {min(op_times):.2f}; runs {runs(op_times)})",
        ),
        ("overhead ratio operator / raw GX, medians (target <= 1.1)", f"{op / raw:.3f}"),
        ("overhead ratio operator / raw GX, best runs", f"{min(op_times) / min(raw_times):.3f}"),
        (
            "overhead ratio estimated from phases: (raw + operator's non-GX work - raw read) / raw, medians",
            f"{(raw + statistics.median(op_outside) - statistics.median(raw_reads)) / raw:.3f}",
        ),
        ("raw GX per run: read / GX part, s", f"{runs(raw_reads)} / {runs(raw_gx_only)}"),
        ("operator per run: GX part / everything else, s", f"{runs(op_gx)} / {runs(op_outside)}"),
        ("XCom return_value size, bytes", f"{xcom_bytes}"),
        ("XCom validation_lineage size, bytes", f"{lineage_bytes}"),
        (
            "failed expectations (same on both sides)",
            f"{summary.get('failures_total')} / {stats.get('unsuccessful_expectations')}",
        ),
        ("CPU cores visible", f"{os.cpu_count()}, load average at end {os.getloadavg()[0]:.1f}"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    os.chdir(ROOT)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
