"""Issue 13 section 2: the drift engine never says "no drift" when it could not look.

Each test is a class of inputs, run on every path that computes a verdict: a reference DataFrame
(cold), a stored profile (JSON round trip) and merged row partitions.  Where the engine agrees with
Evidently 0.7 (the refusal of ``chisquare``/``z`` on numerical columns, scale invariance of the
scores) real Evidently is the reference; where it differs on purpose (missing and empty columns,
NaN scores) the test shows Evidently's answer next to ours, as ``docs/operators/drift.md`` documents.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from mlops_provider.core import drift as D
from mlops_provider.core.drift_partitions import check_drift_merged, partition_bounds, partition_stats

PATHS = ("cold", "stored", "partitions")


def run(path: str, reference: pd.DataFrame, current: pd.DataFrame, **kw) -> D.DriftResult:
    """``check_drift`` through one of the three paths that produce a verdict."""
    if path == "cold":
        return D.check_drift(reference, current, **kw)
    profile = D.ReferenceProfile.from_dict(json.loads(json.dumps(D.build_profile(reference).to_dict())))
    if path == "stored":
        return D.check_drift(profile, current, **kw)
    parts = [
        json.loads(json.dumps(partition_stats(current.iloc[a:b]))) for a, b in partition_bounds(len(current), 3)
    ]
    return check_drift_merged(profile, parts, **kw)


def evidently(reference: pd.DataFrame, current: pd.DataFrame, **preset) -> dict:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset(**preset)]).run(current, reference).dict()
    out = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            out[config["column"]] = float(metric["value"])
        elif config["type"].endswith("DriftedColumnsCount"):
            out[None] = metric["value"]
    return out


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(shift, 1, n),
            "b": rng.normal(5 + shift, 2, n),
            "k": rng.integers(0, 4, n),
            "city": rng.choice(["oslo", "rome", "lima"], n),
        }
    )


# ------------------------------------------------------------------ no common column


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_csv_read_with_the_wrong_delimiter_raises_naming_both_column_sets(tmp_path, path, sep):
    reference = frame(300, 0)
    file = tmp_path / "batch.csv"
    frame(300, 1).to_csv(file, index=False, sep=sep)
    current = pd.read_csv(file)  # read with the default ',': one column 'a;b;k;city'
    assert len(current.columns) == 1
    with pytest.raises(D.DriftInputError) as exc:
        run(path, reference, current)
    text = str(exc.value)
    assert "shares no column with the reference" in text
    assert "Reference columns: ['a', 'b', 'k', 'city']" in text
    assert f"current columns: [{str(current.columns[0])!r}]" in text and "wrong delimiter" in text


@pytest.mark.parametrize("path", PATHS)
def test_batch_of_another_table_raises_naming_both_column_sets(path):
    current = pd.DataFrame({"order_id": [1, 2, 3], "amount": [9.5, 3.0, 7.25]})
    with pytest.raises(D.DriftInputError, match=r"Reference columns: \['a', .*current columns: \['order_id', 'amount'\]"):
        run(path, frame(200, 0), current)


# ------------------------------------------------------------------ missing columns


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dropped", [["a"], ["a", "city"], ["a", "b", "k"]])
def test_missing_reference_columns_count_as_drifted(path, dropped):
    reference, full = frame(800, 0), frame(800, 6)  # seed 6: no column drifts (Evidently agrees)
    assert D.check_drift(reference, full).number_of_drifted_columns == 0
    current = full.drop(columns=dropped)
    result = run(path, reference, current)
    assert result.number_of_columns == 4
    assert result.share_of_drifted_columns == pytest.approx(len(dropped) / 4)
    assert result.dataset_drift is (len(dropped) >= 2)
    assert result.missing_columns == dropped
    for name in dropped:
        col = result.columns[name]
        assert col.drifted and col.note == D.MISSING_IN_CURRENT and col.score is None
    assert result.not_tested().startswith(f"{len(dropped)} of 4 columns not tested: {dropped[0]} (missing in current)")
    # Evidently ignores the missing columns: it reports the calm rest only, "no drift"
    assert evidently(reference, current)[None]["count"] == 0


# ------------------------------------------------------------------ columns with no value


EMPTY = {
    "all NaN": lambda n: np.full(n, np.nan),
    "all inf": lambda n: np.where(np.arange(n) % 2, np.inf, -np.inf),
    "NaN and inf": lambda n: np.where(np.arange(n) % 3, np.nan, np.inf),
    "all None (object)": lambda n: pd.Series([None] * n, dtype=object),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", list(EMPTY))
@pytest.mark.parametrize("column", ["a", "k", "city"])
def test_column_without_values_in_the_batch_counts_as_drifted(path, kind, column):
    reference, current = frame(800, 0), frame(800, 6)  # no column drifts
    current[column] = EMPTY[kind](len(current))
    result = run(path, reference, current)
    col = result.columns[column]
    assert col.drifted and col.note == D.NO_VALUES_IN_CURRENT, col
    assert result.number_of_drifted_columns == 1 and result.number_of_columns == 4
    assert column in result.not_tested()


def test_evidently_refuses_an_empty_column_where_we_count_it():
    reference, current = frame(300, 0), frame(300, 1)
    current["a"] = np.nan
    with pytest.raises(ValueError, match="empty column 'a'"):
        evidently(reference, current)
    assert D.check_drift(reference, current).columns["a"].drifted


@pytest.mark.parametrize("path", ["cold", "stored"])
def test_column_empty_in_the_reference_is_named_as_not_tested(path):
    reference, current = frame(300, 0), frame(300, 1)
    reference["a"] = np.nan
    result = run(path, reference, current)
    assert "a" not in result.columns and "no values in the reference" in result.skipped_columns["a"]
    assert result.not_tested().startswith("1 of 4 columns not tested: a (no values in the reference")


@pytest.mark.parametrize("path", PATHS)
def test_no_testable_column_raises_instead_of_no_drift(path):
    counts = pd.array(np.arange(200) % 7, dtype="Int64")  # nullable integers: Evidently does not test them
    reference = pd.DataFrame({"count": counts, "when": pd.date_range("2026-01-01", periods=200, freq="h")})
    current = pd.DataFrame({"count": counts, "when": pd.date_range("2026-02-01", periods=200, freq="h")})
    with pytest.raises(D.DriftInputError, match=r"None of the 2 reference columns could be tested.*count: dtype Int64"):
        run(path, reference, current)


# ------------------------------------------------------------------ NaN / inf scores


def _pair(n_ref: int, n_cur: int, shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, n_ref), rng.normal(shift, 1.3, n_cur)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("scale", [1e300, 1e307, 2.5e307, -3e307])
@pytest.mark.parametrize(
    ("n_ref", "method"), [(1500, None), (400, None), (1500, "jensenshannon"), (1500, "psi"), (400, "wasserstein")]
)
def test_scores_near_the_float_limit_equal_the_scores_of_the_unscaled_data(path, scale, n_ref, method):
    """Values near +/-1e308: the score is finite and the one of the same data at unit scale."""
    ref, cur = _pair(n_ref, 600, shift=0.3)
    methods = {"x": method} if method else None
    unit = run(path, pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), column_methods=methods).columns["x"]
    big_ref, big_cur = ref * scale, cur * scale
    assert np.isfinite(big_ref).all() and np.isfinite(big_cur).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        huge = run(path, pd.DataFrame({"x": big_ref}), pd.DataFrame({"x": big_cur}), column_methods=methods).columns["x"]
    assert np.isfinite(huge.score) and huge.method == unit.method
    assert huge.score == pytest.approx(unit.score, rel=1e-9, abs=1e-12)
    assert huge.drifted == unit.drifted is True


def test_evidently_answers_nan_and_no_drift_where_we_see_drift():
    """The silent answer this guards against, shown on Evidently itself."""
    ref, cur = _pair(2000, 2000, shift=0.5)
    reference, current = pd.DataFrame({"x": ref * 1e307}), pd.DataFrame({"x": cur * 1e307})
    theirs = evidently(reference, current)
    assert np.isnan(theirs["x"]) and theirs[None]["count"] == 0
    ours = D.check_drift(reference, current).columns["x"]
    assert ours.method == "wasserstein" and ours.drifted and np.isfinite(ours.score)
    assert ours.score == pytest.approx(D.check_drift(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})).columns["x"].score)


def test_extreme_values_mixed_with_ordinary_ones_stay_finite():
    ref, cur = _pair(2000, 2000, shift=0.0)
    reference = pd.DataFrame({"x": np.r_[ref, [1.7e308, -1.7e308]]})
    current = pd.DataFrame({"x": np.r_[cur, [1.79e308]]})
    for path in PATHS:
        col = run(path, reference, current).columns["x"]
        assert np.isfinite(col.score) and col.method == "wasserstein", (path, col)


@pytest.mark.parametrize("method", ["wasserstein", "ks", "jensenshannon", "psi"])
def test_a_score_that_cannot_be_computed_raises_naming_column_and_method(method):
    """Statistics holding NaN (built in code, bypassing the loader's check) never read as 'no drift'."""
    ref, cur = _pair(1500, 600, shift=0.0)
    profile = D.build_profile(pd.DataFrame({"x": ref, "y": ref}))
    values = profile.columns["x"].values.copy()
    values[-5:] = np.nan  # sorted arrays end with the largest values; NaN there poisons the sums
    profile.columns["x"].values, profile.columns["x"]._std = values, None
    with pytest.raises(D.DriftInputError, match=rf"column 'x' with method '{method}' (is NaN|could not be computed)"):
        D.check_drift(profile, pd.DataFrame({"x": cur, "y": cur}), column_methods={"x": method})


def test_a_stored_profile_holding_nan_is_refused_when_loaded():
    ref, _ = _pair(500, 10, shift=0.0)
    data = D.build_profile(pd.DataFrame({"x": ref})).to_dict()
    values = D._decode_array(data["columns"]["x"]["values"]).copy()
    values[-1] = np.nan
    data["columns"]["x"]["values"] = D._encode_array(values)
    with pytest.raises(D.ProfileError, match="Column 'x' of the profile is malformed: numeric values must be finite"):
        D.ReferenceProfile.from_dict(json.loads(json.dumps(data)))


# ------------------------------------------------------------------ integer column labels


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_integer_column_labels_behave_the_same_on_every_path(shift):
    reference = frame(700, 0).set_axis([0, 1, 2, 3], axis=1)
    current = frame(700, 1, shift=shift).set_axis([0, 1, 2, 3], axis=1)
    as_strings = D.check_drift(frame(700, 0), frame(700, 1, shift=shift)).to_summary()
    summaries = [run(path, reference, current).to_summary() for path in PATHS]
    for summary in summaries:
        assert summary["number_of_columns"] == 4 and summary["missing_columns"] == []
        assert summary["dataset_drift"] is (shift > 0)
        assert [c["score"] for c in summary["columns"].values()] == [
            c["score"] for c in as_strings["columns"].values()
        ]
    assert summaries[0]["columns"] == summaries[1]["columns"] == summaries[2]["columns"]
    assert list(summaries[0]["columns"]) == ["0", "1", "2", "3"]


def test_profile_of_integer_labels_matches_a_batch_with_string_labels():
    """A CSV read with ``header=None`` (labels 0, 1, ...) against one written with a header row '0,1,...'."""
    profile = D.build_profile(frame(600, 0).set_axis([0, 1, 2, 3], axis=1), columns=[0, 1])
    assert list(profile.columns) == ["0", "1"]
    result = D.check_drift(profile, frame(600, 1).set_axis(["0", "1", "2", "3"], axis=1))
    assert list(result.columns) == ["0", "1"] and result.extra_columns == ["2", "3"]


def test_labels_equal_as_strings_are_refused():
    with pytest.raises(D.DriftInputError, match=r"duplicate column names \(compared as strings\): \['1'\]"):
        D.check_drift(frame(100, 0), pd.DataFrame({1: [1.0, 2.0], "1": [3.0, 4.0]}))


# ------------------------------------------------------------------ method overrides Evidently refuses


COLUMNS = {
    "continuous": lambda rng, n: rng.normal(0, 1, n),  # float: numerical
    "float_3_values": lambda rng, n: rng.integers(0, 3, n).astype(float),  # float: numerical, few values
    "int_50_values": lambda rng, n: rng.integers(0, 50, n),  # int > 10 unique: numerical
    "int_4_values": lambda rng, n: rng.integers(0, 4, n),  # int <= 10 unique: categorical
    "binary_int": lambda rng, n: rng.integers(0, 2, n),  # categorical
    "strings": lambda rng, n: rng.choice(["x", "y", "z"], n),  # categorical
}


@pytest.mark.parametrize("method", ["chisquare", "z", "ks", "wasserstein"])
@pytest.mark.parametrize("column", list(COLUMNS))
def test_method_overrides_are_refused_exactly_where_evidently_refuses_them(column, method):
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({column: COLUMNS[column](rng, 400)})
    current = pd.DataFrame({column: COLUMNS[column](rng, 400)})
    try:
        evidently(reference, current, per_column_method={column: method})
        evidently_refuses = False
    except ValueError as err:
        assert "isn't applicable to feature of type" in str(err)
        evidently_refuses = True
    if evidently_refuses:
        with pytest.raises(D.DriftInputError, match=rf"Method '{method}' needs a (categorical|numerical) column"):
            D.check_drift(reference, current, column_methods={column: method})
    else:
        D.check_drift(reference, current, column_methods={column: method})  # accepted by both
    if method in ("chisquare", "z"):  # the cases the issue names
        assert evidently_refuses is (column in ("continuous", "float_3_values", "int_50_values"))


def test_default_method_on_a_numerical_column_with_few_values_is_still_chisquare_as_in_evidently():
    """Refusing the override must not change the default choice (Evidently picks chi-square there itself)."""
    rng = np.random.default_rng(4)
    reference = pd.DataFrame({"f": rng.integers(0, 4, 300).astype(float)})
    current = pd.DataFrame({"f": rng.integers(0, 4, 300).astype(float)})
    col = D.check_drift(reference, current).columns["f"]
    assert col.method == "chisquare" and abs(col.score - evidently(reference, current)["f"]) <= 1e-9


# ------------------------------------------------------------------ summary names what was left out


def test_summary_names_every_column_left_out_in_reference_order():
    rng = np.random.default_rng(6)
    n = 400
    reference = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "count": pd.array(rng.integers(0, 5, n), dtype="Int64"),
            "gone": rng.normal(size=n),
            "when": pd.date_range("2026-01-01", periods=n, freq="h"),
            "empty": rng.normal(size=n),
            **{f"f{i}": rng.normal(size=n) for i in range(15)},
        }
    )
    current = reference.drop(columns=["gone"]).assign(empty=np.nan, new=1)
    summary = D.check_drift(reference, current).to_summary()
    assert summary["not_tested"] == (
        "4 of 20 columns not tested: gone (missing in current), empty (no values in current (all NaN/inf/missing)), "
        "count (dtype Int64 is not checked by Evidently's defaults), "
        "when (dtype datetime64[ns] is not checked by Evidently's defaults); "
        "1 batch column(s) not in the reference: new"
    )
    assert summary["number_of_columns"] == 18 and summary["number_of_drifted_columns"] == 2
    assert D.check_drift(reference, reference).to_summary()["not_tested"].startswith("2 of 20 columns not tested")
