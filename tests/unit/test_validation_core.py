"""Tests of mlops_provider.core.validation with real Great Expectations (no Airflow, no MLflow)."""

from __future__ import annotations

import json

import great_expectations as gx
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_provider.core import validation as v

PASSING = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
    {
        "expectation_type": "expect_column_values_to_be_between",
        "kwargs": {"column": "age", "min_value": 0, "max_value": 120},
    },
    {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "city", "value_set": ["paris", "lyon"]},
    },
]


@pytest.fixture
def df() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, 500),
            "income": rng.normal(50_000, 10_000, 500),
            "city": rng.choice(["paris", "lyon"], 500),
            "active": rng.choice([True, False], 500),
        }
    )


def test_passing_suite_from_dicts(df):
    suite = v.build_suite(PASSING, name="people")
    outcome = v.run_validation(df, suite)
    assert outcome.success
    summary = v.summarize_result(outcome, df.columns)
    assert summary["success"] is True
    assert summary["statistics"]["evaluated_expectations"] == 3
    assert summary["failures"] == []
    assert summary["suite"] == "people"


def test_failing_suite_summary_has_column_type_observed_and_counts(df):
    bad = df.copy()
    bad.loc[:9, "age"] = 500
    bad.loc[:4, "city"] = "nice"
    suite = v.build_suite(
        PASSING
        + [{"type": "expect_column_max_to_be_between", "kwargs": {"column": "income", "max_value": 10}}]
    )
    outcome = v.run_validation(bad, suite)
    assert not outcome.success
    summary = v.summarize_result(outcome, bad.columns)
    by_type = {f["expectation_type"]: f for f in summary["failures"]}
    between = by_type["expect_column_values_to_be_between"]
    assert between["column"] == "age"
    assert between["unexpected_count"] == 10
    assert between["unexpected_percent"] == pytest.approx(2.0)
    assert between["observed_value"] == {"unexpected_values": [500]}
    assert by_type["expect_column_values_to_be_in_set"]["unexpected_count"] == 5
    assert isinstance(by_type["expect_column_max_to_be_between"]["observed_value"], float)
    text = v.describe_failures(summary)
    assert "expect_column_values_to_be_between on 'age': 10 unexpected (2.0%)" in text
    assert summary["failures_total"] == 3


def test_summary_capped_whatever_the_number_of_failures(df):
    # 30 failing expectations with long values (GX itself is slow with huge value sets: the
    # 10,000-item value set is exercised once, in test_validation_operator.py)
    wide = pd.DataFrame({f"c{i}": ["x" * 3000 + str(j) for j in range(50)] for i in range(30)})
    suite = v.build_suite(
        [
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": f"c{i}", "value_set": ["y" * 3000 + str(k) for k in range(50)]},
            }
            for i in range(30)
        ]
    )
    outcome = v.run_validation(wide, suite)
    summary = v.summarize_result(outcome, wide.columns)
    size = len(json.dumps(summary))
    assert size < v.SUMMARY_MAX_BYTES
    assert summary["failures_total"] == 30
    assert summary["failures_truncated"] is True
    assert 0 < len(summary["failures"]) <= 10
    assert summary["failures"][0]["expected"]["value_set"][-1] == "... (50 items)"
    # the full result keeps everything, the report stays readable
    assert len(json.loads(v.result_to_json(outcome))["result"]["results"]) == 30
    assert len(v.render_html_report(outcome)) < 2_000_000


def test_unknown_expectation_type_is_a_clear_error():
    with pytest.raises(
        v.SuiteDefinitionError, match=r"expectation #1 .*unknown expectation type 'expect_bogus'"
    ):
        v.build_suite([PASSING[0], {"type": "expect_bogus", "kwargs": {"column": "age"}}])


@pytest.mark.parametrize(
    "entries, match",
    [
        ("not a list", "expected a list"),
        ([{"kwargs": {}}], r"expectation #0 has no 'type'"),
        ([{"type": "expect_column_values_to_not_be_null", "kwargs": [1]}], "'kwargs' must be a mapping"),
        ([{"type": "expect_column_values_to_not_be_null", "kwarg": {}}], "unknown keys"),
        ([42], "must be a mapping"),
    ],
)
def test_malformed_entries(entries, match):
    with pytest.raises(v.SuiteDefinitionError, match=match):
        v.build_suite(entries)


def test_missing_column_reported_as_such(df):
    suite = v.build_suite(
        PASSING + [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "zip"}}]
    )
    outcome = v.run_validation(df, suite)
    assert not outcome.success
    assert outcome.missing_columns == [
        {"expectation": 3, "type": "expect_column_values_to_not_be_null", "column": "zip"}
    ]
    summary = v.summarize_result(outcome, df.columns)
    assert summary["missing_columns"] == ["zip"]
    [failure] = summary["failures"]
    assert failure["error"] == "column 'zip' is not in the data"
    assert "error: column 'zip' is not in the data" in v.describe_failures(summary)


def test_empty_batch_is_an_error(df):
    with pytest.raises(v.ValidationInputError, match="empty"):
        v.run_validation(df.iloc[:0], v.build_suite(PASSING))


def test_suite_from_json_and_yaml_files(tmp_path, df):
    (tmp_path / "s.json").write_text(json.dumps({"name": "from_json", "expectations": PASSING}))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(PASSING))
    for name in ("s.json", "s.yaml"):
        suite, schema = v.resolve_suite(str(tmp_path / name))
        assert schema is None
        assert len(suite.expectation_configurations) == 3
        assert v.run_validation(df, suite).success
    assert v.resolve_suite(str(tmp_path / "s.json"))[0].name == "from_json"
    assert v.resolve_suite(str(tmp_path / "s.yaml"))[0].name == "s"


def test_malformed_suite_files_name_file_and_entry(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"expectations": [')
    with pytest.raises(v.SuiteDefinitionError, match=r"bad\.json is not valid JSON \(line 1"):
        v.load_suite_file(bad_json)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("- type: a\n  kwargs: [\n")
    with pytest.raises(v.SuiteDefinitionError, match=r"bad\.yaml is not valid YAML \(line"):
        v.load_suite_file(bad_yaml)
    bad_entry = tmp_path / "entry.yaml"
    bad_entry.write_text(yaml.safe_dump(PASSING + [{"type": "expect_nothing_real", "kwargs": {}}]))
    with pytest.raises(v.SuiteDefinitionError, match=r"entry\.yaml: expectation #3 .*expect_nothing_real"):
        v.resolve_suite(str(bad_entry))
    no_type = tmp_path / "notype.json"
    no_type.write_text(json.dumps([PASSING[0], {"kwargs": {"column": "a"}}]))
    with pytest.raises(v.SuiteDefinitionError, match=r"notype\.json: expectation #1 has no 'type'"):
        v.load_suite_file(no_type)
    with pytest.raises(v.SuiteDefinitionError, match=r"Cannot read suite file .*missing\.yaml"):
        v.load_suite_file(tmp_path / "missing.yaml")
    (tmp_path / "s.txt").write_text("[]")
    with pytest.raises(v.SuiteDefinitionError, match="unsupported extension"):
        v.load_suite_file(tmp_path / "s.txt")
    (tmp_path / "scalar.yaml").write_text("42\n")
    with pytest.raises(v.SuiteDefinitionError, match=r"scalar\.yaml: expected a list"):
        v.load_suite_file(tmp_path / "scalar.yaml")


def test_suite_from_callable(df):
    def factory() -> gx.ExpectationSuite:
        suite = gx.ExpectationSuite(name="factory")
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column="age"))
        return suite

    suite, _ = v.resolve_suite(factory)
    assert suite.name == "factory"
    assert v.run_validation(df, suite).success
    with pytest.raises(v.SuiteDefinitionError, match="must return a great_expectations.ExpectationSuite"):
        v.resolve_suite(lambda: PASSING)


def test_schema_contract_round_trip(tmp_path, df):
    df = df.assign(note=[f"n{i}" for i in range(len(df))])  # high cardinality: no value set
    df.loc[3, "income"] = np.nan
    text = v.derive_schema_suite(df, tolerance=0.1, max_categories=10, name="people_contract", ranges=True)
    assert text.startswith("# Schema contract")
    assert "&id" not in text and "*id" not in text  # no YAML anchors: reviewable
    doc = yaml.safe_load(text)
    cols = doc["columns"]
    assert cols["age"]["dtype"] == "int64" and cols["age"]["nullable"] is False
    span = int(df.age.max() - df.age.min())
    assert cols["age"]["min"] <= df.age.min() - 0.1 * span + 1
    assert cols["income"]["nullable"] is True
    assert cols["city"]["values"] == ["lyon", "paris"]
    assert cols["active"]["values"] == [False, True]
    assert cols["note"]["values"] is None and cols["note"]["distinct"] == len(df)

    path = tmp_path / "contract.yaml"
    path.write_text(text)
    suite, schema = v.resolve_suite(str(path))
    assert suite.name == "people_contract"
    assert schema == cols
    assert v.run_validation(df, suite, schema=schema).success

    # values inside the tolerance still pass; beyond it they fail
    inside = df.copy()
    inside.loc[0, "age"] = int(df.age.max() + 0.05 * span)
    assert v.run_validation(inside, suite, schema=schema).success
    outside = df.copy()
    outside.loc[0, "age"] = int(df.age.max() + 0.5 * span)
    outside.loc[1, "city"] = "nice"
    outcome = v.run_validation(outside, suite, schema=schema)
    assert not outcome.success and outcome.schema_changes == []
    failed = {f["expectation_type"] for f in v.summarize_result(outcome)["failures"]}
    assert failed == {"expect_column_values_to_be_between", "expect_column_values_to_be_in_set"}


def test_schema_changes_reported_explicitly(tmp_path, df):
    path = tmp_path / "contract.yaml"
    path.write_text(v.derive_schema_suite(df))
    suite, schema = v.resolve_suite(str(path))
    changed = df.assign(age=df.age.astype(float), extra=1).drop(columns=["city"])
    outcome = v.run_validation(changed, suite, schema=schema)
    assert not outcome.success
    assert sorted((c["change"], c["column"]) for c in outcome.schema_changes) == [
        ("dtype_change", "age"),
        ("missing_column", "city"),
        ("new_column", "extra"),
    ]
    summary = v.summarize_result(outcome, changed.columns)
    text = v.describe_failures(summary)
    assert text.startswith("schema change: ")
    assert "dtype of 'age' changed: int64 -> float64" in text
    assert "column 'city' (object) is missing" in text
    assert "new column 'extra' (int64)" in text
    assert "Schema changes" in v.render_html_report(outcome)


def test_malformed_contract_columns(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"columns": {"age": {"dtype": "int64", "min": "zero"}}}))
    with pytest.raises(v.SuiteDefinitionError, match=r"c\.yaml: column 'age': 'min' must be a number"):
        v.load_suite_file(path)
    path.write_text(yaml.safe_dump({"columns": {"age": {"nullable": True}}}))
    with pytest.raises(v.SuiteDefinitionError, match="column 'age' needs a mapping with a 'dtype'"):
        v.load_suite_file(path)


def test_derive_schema_bad_input(df):
    with pytest.raises(v.ValidationInputError, match="empty"):
        v.derive_schema_suite(df.iloc[:0])
    with pytest.raises(v.ValidationInputError, match="tolerance"):
        v.derive_schema_suite(df, tolerance=-1)


def test_html_report_escapes_and_lists_expectations(df):
    bad = df.assign(city="<script>alert(1)</script>")
    outcome = v.run_validation(bad, v.build_suite(PASSING))
    page = v.render_html_report(outcome, title="t", details={"dataset": "d.parquet"})
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page
    assert page.count("<tr class=") == 3
    assert "FAILED" in page


def test_write_quarantine(tmp_path, df):
    src = tmp_path / "batch.csv"
    df.to_csv(src, index=False)
    outcome = v.run_validation(df, v.build_suite(PASSING))
    target = tmp_path / "q" / "dag" / "task"
    v.write_quarantine(
        str(target),
        df,
        report_html=v.render_html_report(outcome),
        result_json=v.result_to_json(outcome),
        summary=v.summarize_result(outcome),
        source_uri=str(src),
    )
    assert sorted(p.name for p in target.iterdir()) == [
        "batch.parquet",
        "report.html",
        "result.json",
        "source",
        "summary.json",
    ]
    pd.testing.assert_frame_equal(pd.read_parquet(target / "batch.parquet"), df)
    assert (target / "source" / "batch.csv").read_bytes() == src.read_bytes()
    assert src.exists()  # never deleted


def test_matching_validation_run():
    record = {"validation_run_id": "r1", "data_digest": "abc", "success": True}
    assert v.matching_validation_run(record, "abc") == "r1"
    assert v.matching_validation_run(record, "other") is None
    assert v.matching_validation_run({**record, "success": False}, "abc") is None
    assert v.matching_validation_run([None, record], "abc") == "r1"
    assert v.matching_validation_run(None, "abc") is None


# --- the failure message: suite order, the column of each failure, column sets, the count of the rest

ORDERED = [
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "income", "max_value": 10}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
    {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["age", "income", "city", "zip"], "exact_match": True}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "city", "value_set": ["paris"]}},
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 10_000}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 80}},
    {"type": "expect_table_columns_to_match_ordered_list", "kwargs": {"column_list": ["city", "age", "income", "active"]}},
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "income", "min_value": 0, "max_value": 1}},
]


def test_failures_are_listed_in_the_suite_order_with_their_column(df):
    bad = df.copy()
    bad.loc[:2, "age"] = None
    outcome = v.run_validation(bad, v.build_suite(ORDERED))
    # GX returns its results grouped its own way; the outcome keeps the suite's order
    types = [r["expectation_config"]["type"] for r in outcome.result["results"]]
    assert types == [e["type"] for e in ORDERED]
    summary = v.summarize_result(outcome, bad.columns)
    assert [f["expectation"] for f in summary["failures"]] == list(range(len(ORDERED)))
    lines = v.describe_failures(summary, limit=5).splitlines()
    assert lines == [
        lines[0],
        "#1 expect_column_values_to_not_be_null on 'age': 3 unexpected (0.6%)" + lines[1].split("(0.6%)", 1)[1],
        "#2 expect_table_columns_to_match_set on the table: missing column(s) 'zip', extra column(s) 'active'",
        lines[3],
        lines[4],
        "... and 3 more failed expectation(s), listed in the report",
    ]
    assert lines[0].startswith("#0 expect_column_values_to_be_between on 'income': 500 unexpected (100.0%)")
    assert lines[3].startswith("#3 expect_column_values_to_be_in_set on 'city': ")
    assert lines[4].startswith("#4 expect_table_row_count_to_be_between on the table: observed 500")
    rest = v.describe_failures(summary, limit=10).splitlines()
    assert rest[6] == "#6 expect_table_columns_to_match_ordered_list on the table: same columns in another order: " + json.dumps(list(df.columns))
    assert rest[7].startswith("#7 expect_column_mean_to_be_between on 'income': observed ")
    # the HTML report follows the same order
    html = v.render_html_report(outcome)
    positions = [html.index(e["type"], html.index("<h2>Expectations</h2>")) for e in ORDERED[:2]]
    assert positions == sorted(positions)


def test_column_set_failure_names_missing_and_extra_columns(df):
    suite = v.build_suite(
        [{"type": "expect_table_columns_to_match_ordered_list", "kwargs": {"column_list": ["age", "income", "zip"]}}]
    )
    summary = v.summarize_result(v.run_validation(df, suite), df.columns)
    [failure] = summary["failures"]
    assert failure["missing_columns"] == ["zip"] and failure["extra_columns"] == ["city", "active"]
    assert v.describe_failures(summary) == (
        "#0 expect_table_columns_to_match_ordered_list on the table: missing column(s) 'zip', "
        "extra column(s) 'city', 'active'"
    )
    lenient = v.build_suite(
        [{"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["age", "zip"], "exact_match": False}}]
    )
    summary = v.summarize_result(v.run_validation(df, lenient), df.columns)
    assert "missing column(s) 'zip'" in v.describe_failures(summary)
    assert "extra" not in v.describe_failures(summary)  # extra columns are allowed without exact_match


def test_a_repeated_expectation_is_refused_not_dropped():
    """GX keeps one expectation per type and column: the earlier one would silently never be checked."""
    entries = [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "max_value": 120}},
    ]
    with pytest.raises(v.SuiteDefinitionError, match=r"expectation #2 \(expect_column_values_to_be_between on 'age'\) repeats expectation #0"):
        v.build_suite(entries)


def _season(months: list[int], first_id: int, n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Bike-hire days: temperatures follow the month (winter cold, summer warm); ids are fresh."""
    rng = np.random.default_rng(seed)
    month = rng.choice(months, n)
    season = (month % 12) // 3 + 1  # 1 winter .. 4 autumn
    temp = np.array([-2.0, 1.0, 7.0, 12.0, 16.0, 21.0, 26.0, 25.0, 19.0, 12.0, 6.0, 1.0])[month - 1]
    return pd.DataFrame({
        "ride_id": np.arange(first_id, first_id + n),
        "month": month,
        "season": season,
        "temperature": temp + rng.normal(0, 2, n),
        "weather": rng.choice(["clear", "cloudy", "rain"], n),
    })


def test_derived_contract_passes_every_later_season(tmp_path):
    """Derived from January and February: the batches of March to December are valid, not quarantined."""
    winter = _season([1, 2], first_id=1)
    text = v.derive_schema_suite(winter, name="rides")
    doc = yaml.safe_load(text)
    cols = doc["columns"]
    assert cols["ride_id"] == {"dtype": "int64", "nullable": False, "unique": True}  # no range on an id
    assert doc["derived"]["id_columns"] == ["ride_id"] and doc["derived"]["ranges"] is False
    for col in ("month", "season", "temperature"):
        assert "min" not in cols[col] and "max" not in cols[col], cols[col]
        assert cols[col]["observed_max"] <= cols[col]["observed_max"]  # kept for the reviewer
    assert cols["month"]["observed_max"] == 2
    path = tmp_path / "rides.yaml"
    path.write_text(text)
    suite, schema = v.resolve_suite(str(path))
    for i, month in enumerate(range(3, 13)):
        later = _season([month], first_id=10_000 * (i + 1), seed=i + 1)
        assert later["temperature"].max() > winter["temperature"].max() or month == 12
        outcome = v.run_validation(later, suite, schema=schema)
        assert outcome.success, (month, v.summarize_result(outcome)["failures"])


def test_derived_contract_still_catches_broken_ids_and_schema(tmp_path):
    winter = _season([1, 2], first_id=1)
    path = tmp_path / "rides.yaml"
    path.write_text(v.derive_schema_suite(winter, name="rides"))
    suite, schema = v.resolve_suite(str(path))
    broken = _season([7], first_id=5_000, seed=3)
    broken.loc[:9, "ride_id"] = 5_000  # duplicated ids (an export replayed rows)
    broken.loc[20:24, "weather"] = None
    outcome = v.run_validation(broken, suite, schema=schema)
    failed = {(f["expectation_type"], f["column"]) for f in v.summarize_result(outcome)["failures"]}
    assert ("expect_column_values_to_be_unique", "ride_id") in failed
    assert ("expect_column_values_to_not_be_null", "weather") in failed


def test_ranges_are_opt_in_with_a_margin_and_ids_can_be_declared():
    winter = _season([1, 2], first_id=1).rename(columns={"ride_id": "ride"})
    doc = yaml.safe_load(v.derive_schema_suite(winter, tolerance=0.5, ranges=True, id_columns=["ride"]))
    cols = doc["columns"]
    assert cols["ride"] == {"dtype": "int64", "nullable": False, "unique": True}
    span = cols["temperature"]["observed_max"] - cols["temperature"]["observed_min"]
    assert cols["temperature"]["max"] == pytest.approx(cols["temperature"]["observed_max"] + 0.5 * span)
    assert cols["month"] == {"dtype": "int64", "nullable": False, "min": 0, "max": 3, "observed_min": 1,
                             "observed_max": 2}
    with pytest.raises(v.ValidationInputError, match=r"id_columns \['nope'\]"):
        v.derive_schema_suite(winter, id_columns=["nope"])
    # a column named like an id that is not unique is not an id
    assert "unique" not in yaml.safe_load(v.derive_schema_suite(winter.assign(shop_id=1)))["columns"]["shop_id"]
