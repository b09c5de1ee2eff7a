"""The drift engine against Evidently itself: same tests, same verdicts, scores within 1e-9.

Evidently 0.7 (``Report([DataDriftPreset()])``) runs on a small generated grid so the module takes
seconds; the big cases live in ``bench/drift.py``.  Also covers profiles and bad input.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from mlops_provider.core import drift as D

INVERSE = {v: k for k, v in D.EVIDENTLY_DISPLAY_NAMES.items()}


def evidently_drift(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[dict[str, tuple], dict]:
    """Per-column (method, score, threshold, drifted) and the drifted-columns count from Evidently."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()]).run(current, reference).dict()
    columns, count = {}, None
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            method = INVERSE[config["method"]]
            score, threshold = float(metric["value"]), float(config["threshold"])
            # Evidently's own comparison per method (stattests/*.py): ks <=, chisquare/z <, distances >=
            columns[config["column"]] = (method, score, threshold, D.is_drifted(method, score, threshold))
        elif config["type"].endswith("DriftedColumnsCount"):
            count = metric["value"]
    return columns, count


def _frame(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    normal = rng.normal(shift, 1, n)
    with_gaps = rng.normal(shift, 1, n)
    with_gaps[rng.random(n) < 0.1] = np.nan
    with_gaps[rng.random(n) < 0.05] = np.inf
    with_gaps[rng.random(n) < 0.02] = -np.inf
    return pd.DataFrame(
        {
            "num": normal,
            "num_nan_inf": with_gaps,
            "int_3": rng.integers(0, 3, n),  # categorical (int, <= 10 unique), chisquare / JS
            "int_5_float": rng.integers(0, 5, n).astype(float),  # numerical with 5 unique
            "int_8": rng.integers(0, 8, n) + (1 if shift else 0),  # unseen value 8 in current
            "int_many": rng.integers(0, 60, n),  # numerical int
            "binary": rng.integers(0, 2, n),
            "flag": rng.random(n) < 0.5 + shift / 8,
            "city": rng.choice(["oslo", "rome", "lima", "kyiv"] + (["pune"] if shift else []), n),
            "yes_no": rng.choice(["yes", "no"], n),
            "constant": np.full(n, 3.0),
        }
    )


GRID = [
    # (reference rows, current rows, shift)
    (200, 200, 0.0),
    (600, 250, 0.25),
    (1000, 1000, 0.1),  # last size with p-value tests
    (1001, 500, 0.1),  # distances, but NaN/inf drop num_nan_inf below 1001 -> ks there
    (1300, 3000, 0.0),
    (2500, 900, 0.4),
]


@pytest.fixture(scope="module", params=GRID, ids=lambda p: f"ref{p[0]}-cur{p[1]}-shift{p[2]}")
def case(request):
    n_ref, n_cur, shift = request.param
    rng = np.random.default_rng(n_ref * 7 + n_cur)
    reference, current = _frame(n_ref, rng), _frame(n_cur, rng, shift)
    return reference, current, evidently_drift(reference, current)


def _assert_same(result: D.DriftResult, expected: dict[str, tuple], count: dict) -> None:
    assert set(result.columns) == set(expected)
    for name, (method, score, threshold, drifted) in expected.items():
        ours = result.columns[name]
        assert ours.method == method, name
        assert ours.threshold == threshold, name
        assert abs(ours.score - score) <= 1e-9, (name, ours.score, score)
        assert ours.drifted == drifted, name
    assert result.number_of_drifted_columns == count["count"]
    assert result.share_of_drifted_columns == pytest.approx(count["share"], abs=1e-12)
    assert result.dataset_drift == (count["share"] >= 0.5)


def test_parity_with_dataframe_reference(case):
    reference, current, (expected, count) = case
    _assert_same(D.check_drift(reference, current), expected, count)


def test_parity_with_stored_profile(case, tmp_path):
    reference, current, (expected, count) = case
    path = D.build_profile(reference).save(tmp_path / "profile.json")
    _assert_same(D.check_drift(D.ReferenceProfile.load(path), current), expected, count)


def test_grid_exercises_every_default_method():
    methods = set()
    for n_ref, n_cur, shift in GRID:
        rng = np.random.default_rng(n_ref * 7 + n_cur)
        result = D.check_drift(_frame(n_ref, rng), _frame(n_cur, rng, shift))
        methods |= {c.method for c in result.columns.values()}
    assert methods == {"ks", "chisquare", "z", "wasserstein", "jensenshannon"}


def _near_threshold_pair(n: int, target: float, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference/current pair whose single column scores close to ``target`` with ``method``."""
    rng = np.random.default_rng(11)
    ref = rng.normal(0, 1, n)
    best = None
    for shift in np.linspace(0, 0.6, 241):
        cur = pd.DataFrame({"x": np.random.default_rng(12).normal(0, 1, n) + shift})
        score = D.check_drift(pd.DataFrame({"x": ref}), cur).columns["x"].score
        if best is None or abs(score - target) < abs(best[0] - target):
            best = (score, cur)
    return pd.DataFrame({"x": ref}), best[1]


@pytest.mark.parametrize(("n", "method", "target"), [(300, "ks", 0.05), (1500, "wasserstein", 0.1)])
def test_parity_near_thresholds(n, method, target):
    reference, current = _near_threshold_pair(n, target, method)
    expected, count = evidently_drift(reference, current)
    result = D.check_drift(reference, current)
    assert result.columns["x"].method == method
    assert abs(result.columns["x"].score - target) < 0.01  # really close to the threshold
    _assert_same(result, expected, count)


def test_parity_categorical_near_threshold():
    """Chi-square p-value and JS distance close to their thresholds, with an unseen category."""
    for n_ref, target in ((500, 0.05), (2000, 0.1)):
        base = ["a"] * (n_ref // 2) + ["b"] * (n_ref // 4) + ["c"] * (n_ref // 4)
        reference = pd.DataFrame({"c": base})
        best = None
        for k in range(0, n_ref // 3, max(1, n_ref // 300)):
            cur = pd.DataFrame(
                {"c": ["a"] * (n_ref // 2 - k) + ["b"] * (n_ref // 4 + k) + ["c"] * (n_ref // 4)}
            )
            score = D.check_drift(reference, cur).columns["c"].score
            if best is None or abs(score - target) < abs(best[0] - target):
                best = (score, cur)
        current = pd.concat([best[1], pd.DataFrame({"c": ["new"]})], ignore_index=True)
        expected, count = evidently_drift(reference, current)
        _assert_same(D.check_drift(reference, current), expected, count)


def test_overrides_psi_and_binned_jensenshannon_match_evidently_functions():
    """Non-default methods: PSI and JS on a binned numerical column (Sturges over both samples)."""
    from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
    from evidently.legacy.calculations.stattests.psi import _psi
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 3000), "k": rng.integers(0, 200, 3000)})
    current = pd.DataFrame({"x": rng.normal(0.2, 1.1, 1700), "k": rng.integers(10, 220, 1700)})
    methods = {"x": "psi", "k": "jensenshannon"}
    result = D.check_drift(D.build_profile(reference), current, column_methods=methods)
    for col, fn in (("x", _psi), ("k", _jensenshannon)):
        score, drifted = fn(reference[col], current[col], ColumnType.Numerical, 0.1)
        assert abs(result.columns[col].score - score) <= 1e-9
        assert result.columns[col].drifted == drifted


# ------------------------------------------------------------------------------------- profiles


def test_profile_round_trip_and_metadata(tmp_path):
    rng = np.random.default_rng(0)
    ref = _frame(1500, rng)
    profile = D.build_profile(ref, metadata={"model_name": "churn", "model_version": "3"})
    data = json.loads(json.dumps(profile.to_dict()))
    assert data["format"] == D.PROFILE_FORMAT and data["version"] == D.PROFILE_VERSION
    again = D.ReferenceProfile.from_dict(data)
    assert again.metadata["model_name"] == "churn" and list(again.columns) == list(ref.columns)
    assert not again.sampled and again.n_rows == 1500
    cur = _frame(700, rng, 0.3)
    assert D.check_drift(again, cur).to_summary() == D.check_drift(ref, cur).to_summary()


def test_profile_samples_above_cap_deterministically():
    rng = np.random.default_rng(1)
    ref = _frame(5000, rng)
    one = D.build_profile(ref, max_rows=2000, seed=4)
    two = D.build_profile(ref, max_rows=2000, seed=4)
    assert one.sampled and one.n_rows == 2000 and one.source_rows == 5000
    assert one.to_dict() == two.to_dict()
    summary = D.check_drift(one, _frame(800, rng)).to_summary()
    assert summary["sampled"] is True and summary["reference_rows"] == 2000
    assert summary["reference_source_rows"] == 5000


def test_summary_is_small_json():
    rng = np.random.default_rng(2)
    summary = D.check_drift(_frame(3000, rng), _frame(3000, rng, 0.5)).to_summary()
    text = json.dumps(summary)
    assert len(text) < 5000
    assert summary["number_of_drifted_columns"] >= 3 and "num" in summary["drifted_columns"]
    assert set(summary["columns"]["num"]) >= {"method", "score", "threshold", "drifted"}


# ------------------------------------------------------------------------------------- bad input


def test_missing_and_extra_columns_are_reported():
    rng = np.random.default_rng(5)
    ref = _frame(500, rng)
    cur = _frame(500, rng).drop(columns=["city", "num"]).assign(extra=1.0)
    summary = D.check_drift(D.build_profile(ref), cur).to_summary()
    assert summary["missing_columns"] == ["num", "city"]
    assert summary["extra_columns"] == ["extra"]
    # a missing reference column counts as drifted (Evidently ignores it); an extra one is only named
    assert summary["columns"]["city"]["drifted"] is True and summary["columns"]["city"]["note"] == "missing in current"
    assert "extra" not in summary["columns"]
    assert "2 of 11 columns not tested: num (missing in current), city (missing in current)" in summary["not_tested"]
    assert "1 batch column(s) not in the reference: extra" in summary["not_tested"]


def test_dtype_change_is_schema_drift():
    rng = np.random.default_rng(6)
    ref = _frame(500, rng)
    cur = _frame(500, rng)
    cur["num"] = cur["num"].round(2).astype(str)  # numeric -> text-like strings
    cur["int_many"] = cur["int_many"].astype(float)  # int -> float: compatible
    result = D.check_drift(ref, cur)
    schema = {s["column"]: s for s in result.schema_drift}
    assert schema["num"]["compatible"] is False and schema["num"]["current_dtype"] == "object"
    assert result.columns["num"].drifted and result.columns["num"].method is None
    assert "dtype changed" in result.columns["num"].note
    assert schema["int_many"]["compatible"] is True and result.columns["int_many"].method is not None


def test_empty_current_batch_raises_clear_error():
    ref = _frame(100, np.random.default_rng(7))
    with pytest.raises(D.DriftInputError, match="current batch has no rows"):
        D.check_drift(ref, ref.iloc[:0])


def test_all_missing_column_drifts_and_datetime_column_is_named_as_not_tested():
    rng = np.random.default_rng(8)
    ref = pd.DataFrame(
        {"x": rng.normal(size=300), "gone": rng.normal(size=300), "note": [f"t{i}" for i in range(300)]}
    )
    cur = ref.copy()
    cur["gone"] = np.nan
    cur["when"] = ref["when"] = pd.Timestamp("2026-01-01")
    result = D.check_drift(ref, cur)
    assert result.columns["gone"].drifted and result.columns["gone"].note == D.NO_VALUES_IN_CURRENT
    assert "datetime64" in result.skipped_columns["when"]
    assert list(result.columns) == ["x", "gone", "note"] and result.columns["note"].method == "perc_text_content_drift"
    assert result.not_tested().startswith("2 of 4 columns not tested: gone (no values in current")


def test_profile_from_other_model_or_version_is_refused(tmp_path):
    ref = _frame(100, np.random.default_rng(9))
    profile = D.build_profile(ref, metadata={"model_name": "churn"})
    with pytest.raises(D.ProfileError, match="belongs to model 'churn'"):
        profile.check_model("fraud")
    data = profile.to_dict()
    data["version"] = 99
    with pytest.raises(D.ProfileError, match="version 99 is not supported"):
        D.ReferenceProfile.from_dict(data)
    with pytest.raises(D.ProfileError, match="Not a drift reference profile"):
        D.ReferenceProfile.from_dict({"format": "something-else"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(D.ProfileError, match="not valid JSON"):
        D.ReferenceProfile.load(tmp_path / "bad.json")


def test_bad_overrides_are_refused():
    ref = _frame(100, np.random.default_rng(10))
    with pytest.raises(D.DriftInputError, match="Unknown drift method"):
        D.check_drift(ref, ref, column_methods={"num": "magic"})
    with pytest.raises(D.DriftInputError, match="not in the reference"):
        D.check_drift(ref, ref, column_thresholds={"nope": 0.1})
    with pytest.raises(D.DriftInputError, match="needs a numerical column"):
        D.check_drift(ref, ref, column_methods={"city": "ks"})
    with pytest.raises(D.DriftInputError, match="drift_share"):
        D.check_drift(ref, ref, drift_share=0)
    with pytest.raises(D.DriftInputError, match="pandas DataFrame"):
        D.check_drift(ref, ref.to_dict())


def test_threshold_override_changes_verdict_only():
    rng = np.random.default_rng(13)
    ref, cur = _frame(2000, rng), _frame(2000, rng, 0.2)
    base = D.check_drift(ref, cur).columns["num"]
    strict = D.check_drift(ref, cur, column_thresholds={"num": base.score + 1e-6}).columns["num"]
    assert strict.score == base.score and strict.threshold == base.score + 1e-6 and not strict.drifted
