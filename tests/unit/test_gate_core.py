"""Table-driven tests of the pure gate core (TFX blessing semantics)."""

from __future__ import annotations

import json
import math

import pytest

from mlops_provider.core.gate import (
    GateDecision,
    GateSpec,
    GateSpecError,
    evaluate_gate,
)

HIB = "higher_is_better"
LIB = "lower_is_better"


def value(metric, lower=None, upper=None, slices=None):
    t = {"metric": metric, "value": {k: v for k, v in (("lower_bound", lower), ("upper_bound", upper)) if v is not None}}
    if slices:
        t["slices"] = slices
    return t


def change(metric, direction, absolute=None, relative=None, slices=None):
    c = {"direction": direction}
    if absolute is not None:
        c["absolute"] = absolute
    if relative is not None:
        c["relative"] = relative
    t = {"metric": metric, "change": c}
    if slices:
        t["slices"] = slices
    return t


def spec(*thresholds, **kw):
    return {"thresholds": list(thresholds), **kw}


SLICED_CAND = {
    "overall": {"accuracy": 0.90, "recall": 0.80, "n_rows": 300},
    "region=EU": {"accuracy": 0.95, "recall": 0.85, "n_rows": 100},
    "region=US": {"accuracy": 0.70, "recall": 0.60, "n_rows": 200},
}
SLICED_BASE = {
    "overall": {"accuracy": 0.88, "recall": 0.79, "n_rows": 300},
    "region=EU": {"accuracy": 0.90, "recall": 0.80, "n_rows": 100},
    "region=US": {"accuracy": 0.80, "recall": 0.78, "n_rows": 200},
}

# (id, candidate, baseline, spec, expected passed, expected basis, substring of a failed check or None)
CASES = [
    # value thresholds
    ("value-lower-pass", {"acc": 0.9}, {"acc": 0.5}, spec(value("acc", lower=0.8)), True, "compared", None),
    ("value-lower-fail", {"acc": 0.7}, {"acc": 0.5}, spec(value("acc", lower=0.8)), False, "compared", "< lower bound 0.8"),
    ("value-lower-equal-pass", {"acc": 0.8}, None, spec(value("acc", lower=0.8)), True, "first_model", None),
    ("value-upper-pass", {"loss": 0.2}, None, spec(value("loss", upper=0.3)), True, "first_model", None),
    ("value-upper-fail", {"loss": 0.4}, None, spec(value("loss", upper=0.3)), False, "first_model", "> upper bound"),
    ("value-both-inside", {"x": 0.5}, None, spec(value("x", lower=0.1, upper=0.9)), True, "first_model", None),
    ("value-nan-fails", {"acc": math.nan}, None, spec(value("acc", lower=0.0)), False, "first_model", "metric is NaN"),
    # change thresholds, higher is better
    ("hib-abs-pass", {"acc": 0.90}, {"acc": 0.88}, spec(change("acc", HIB, absolute=0.01)), True, "compared", None),
    ("hib-abs-fail", {"acc": 0.885}, {"acc": 0.88}, spec(change("acc", HIB, absolute=0.01)), False, "compared", "needs diff >= 0.01"),
    ("hib-abs-tolerance", {"acc": 0.875}, {"acc": 0.88}, spec(change("acc", HIB, absolute=-0.01)), True, "compared", None),
    ("hib-rel-pass", {"acc": 0.99}, {"acc": 0.90}, spec(change("acc", HIB, relative=0.05)), True, "compared", None),
    ("hib-rel-fail", {"acc": 0.91}, {"acc": 0.90}, spec(change("acc", HIB, relative=0.05)), False, "compared", "ratio"),
    ("hib-no-bounds-regression", {"acc": 0.5}, {"acc": 0.9}, spec(change("acc", HIB)), True, "compared", None),
    # change thresholds, lower is better
    ("lib-abs-pass", {"loss": 0.20}, {"loss": 0.25}, spec(change("loss", LIB, absolute=0.0)), True, "compared", None),
    ("lib-abs-fail", {"loss": 0.30}, {"loss": 0.25}, spec(change("loss", LIB, absolute=0.0)), False, "compared", "needs diff <= 0"),
    ("lib-rel-pass", {"loss": 0.18}, {"loss": 0.20}, spec(change("loss", LIB, relative=-0.05)), True, "compared", None),
    ("lib-rel-fail", {"loss": 0.195}, {"loss": 0.20}, spec(change("loss", LIB, relative=-0.05)), False, "compared", "ratio"),
    # zero baseline: ratio NaN; fails only when a relative bound is set
    ("zero-base-abs-only-pass", {"fpr": 0.0}, {"fpr": 0.0}, spec(change("fpr", LIB, absolute=0.0)), True, "compared", None),
    ("zero-base-rel-fails", {"acc": 0.1}, {"acc": 0.0}, spec(change("acc", HIB, relative=0.0)), False, "compared", "baseline is 0"),
    ("zero-base-rel-lib-fails", {"fpr": 0.0}, {"fpr": 0.0}, spec(change("fpr", LIB, relative=0.0)), False, "compared", "undefined"),
    # NaN / missing in change
    ("change-nan-candidate", {"acc": math.nan}, {"acc": 0.8}, spec(change("acc", HIB)), False, "compared", "metric is NaN"),
    ("change-nan-baseline", {"acc": 0.8}, {"acc": math.nan}, spec(change("acc", HIB)), False, "compared", "baseline metric is NaN"),
    ("change-missing-baseline", {"acc": 0.8}, {"other": 0.8}, spec(change("acc", HIB)), False, "compared", "baseline metric is missing"),
    # first model: change thresholds dropped, value thresholds judge alone
    ("first-model-value-pass", {"acc": 0.9}, None, spec(value("acc", lower=0.8), change("acc", HIB, absolute=0.5)), True, "first_model", None),
    ("first-model-value-fail", {"acc": 0.7}, None, spec(value("acc", lower=0.8), change("acc", HIB)), False, "first_model", "lower bound"),
    ("first-model-only-change", {"acc": 0.9}, None, spec(change("acc", HIB)), False, "first_model", "only change thresholds"),
    # same version
    ("same-version", {"acc": 0.9}, {"acc": 0.9}, spec(change("acc", HIB, absolute=0.01)), False, "same_version", None),
    # slices
    ("slice-wildcard-fail", SLICED_CAND, SLICED_BASE, spec(value("accuracy", lower=0.75, slices=["overall", "region=*"])), False, "compared", "region=US"),
    ("slice-one-pass", SLICED_CAND, SLICED_BASE, spec(value("accuracy", lower=0.75, slices=["region=EU"])), True, "compared", None),
    ("slice-change-fail", SLICED_CAND, SLICED_BASE, spec(change("accuracy", HIB, absolute=0.0, slices=["*"])), False, "compared", "region=US"),
    ("slice-missing-metric", {"overall": {"acc": 0.9}, "g=a": {"other": 1.0, "n_rows": 5}}, None, spec(value("acc", lower=0.0, slices=["g=a"])), False, "first_model", "metric is missing"),
    # empty slices
    ("empty-slice-fails", {"overall": {"acc": 0.9, "n_rows": 10}, "g=b": {"acc": math.nan, "n_rows": 0}}, None, spec(value("acc", lower=0.5, slices=["overall", "g=b"])), False, "first_model", "no rows"),
    ("empty-slice-reported-only", {"overall": {"acc": 0.9, "n_rows": 10}, "g=b": {"n_rows": 0}}, None, spec(value("acc", lower=0.5, slices=["overall", "g=b"]), fail_on_empty_slice=False), True, "first_model", None),
    ("absent-slice-is-empty", {"overall": {"acc": 0.9}}, None, spec(value("acc", lower=0.5, slices=["overall", "g=zz"])), False, "first_model", "no rows"),
    # fairness
    ("fairness-pass", SLICED_CAND, SLICED_BASE, {"fairness": [{"metric": "recall", "column": "region", "max_gap": 0.3}]}, True, "compared", None),
    ("fairness-gap-fail", SLICED_CAND, SLICED_BASE, {"fairness": [{"metric": "recall", "column": "region", "max_gap": 0.1}]}, False, "compared", "gap 0.25"),
    ("fairness-nan-fail", {"overall": {"r": 0.5}, "s=a": {"r": 0.5, "n_rows": 3}, "s=b": {"r": math.nan, "n_rows": 3}}, None, {"fairness": [{"metric": "r", "column": "s", "max_gap": 1}]}, False, "first_model", "NaN"),
    ("fairness-no-slices", {"overall": {"r": 0.5}}, None, {"fairness": [{"metric": "r", "column": "s", "max_gap": 1}]}, False, "first_model", "no non-empty slices"),
    # budgets
    ("latency-pass", {"acc": 1, "latency_p95_ms_per_1k_rows": 3.0}, None, {"latency_p95_ms_per_1k_rows": 5}, True, "first_model", None),
    ("latency-fail", {"acc": 1, "latency_p95_ms_per_1k_rows": 7.0}, None, {"latency_p95_ms_per_1k_rows": 5}, False, "first_model", "> budget 5"),
    ("size-fail", {"acc": 1, "model_size_mb": 120.0}, None, {"max_model_size_mb": 100}, False, "first_model", "> budget 100"),
    ("size-missing-fails", {"acc": 1}, None, {"max_model_size_mb": 100}, False, "first_model", "metric is missing"),
]


@pytest.mark.parametrize(
    ("candidate", "baseline", "gate_spec", "passed", "basis", "failure"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_gate_table(candidate, baseline, gate_spec, passed, basis, failure):
    ids = {"candidate_id": "2", "baseline_id": "2" if basis == "same_version" else ("1" if baseline else None)}
    decision = evaluate_gate(candidate, baseline, gate_spec, **ids)
    assert decision.basis == basis, decision.message()
    if basis != "same_version":
        assert decision.passed is passed, decision.message()
    if failure is not None:
        assert any(failure in c.short() for c in decision.failed_checks), decision.message()
    # outputs are JSON-safe (NaN/inf become null) and the summary is small
    json.dumps(decision.to_dict(), allow_nan=False)
    summary = decision.to_summary()
    assert len(json.dumps(summary, allow_nan=False)) < 2000
    assert isinstance(decision.message(), str)


def test_first_model_notes_dropped_change_thresholds():
    d = evaluate_gate({"acc": 0.9}, None, spec(value("acc", lower=0.5), change("acc", HIB)))
    assert d.first_model and d.passed
    assert [c.kind for c in d.checks] == ["value"]
    assert "dropped" in d.notes[0]
    assert "first model" in d.message()


def test_same_version_is_not_a_promotion():
    d = evaluate_gate({"acc": 0.9}, {"acc": 0.9}, spec(value("acc", lower=0.5)), candidate_id=3, baseline_id="3")
    assert d.same_version and d.verdict == "same_version"
    assert "nothing to promote" in d.message()


def test_change_check_records_observed_baseline_diff_ratio_bound():
    d = evaluate_gate({"acc": 0.9}, {"acc": 0.8}, spec(change("acc", HIB, absolute=0.05, relative=0.1)))
    (c,) = d.checks
    assert c.observed == 0.9 and c.baseline == 0.8
    assert c.diff == pytest.approx(0.1) and c.ratio == pytest.approx(0.125)
    assert c.bound == {"direction": HIB, "absolute": 0.05, "relative": 0.1}
    assert c.passed


def test_zero_baseline_ratio_is_nan_and_serialised_as_null():
    d = evaluate_gate({"acc": 0.1}, {"acc": 0.0}, spec(change("acc", HIB, absolute=0.0)))
    (c,) = d.checks
    assert c.passed and math.isnan(c.ratio)
    assert c.to_dict()["ratio"] is None


def test_fairness_reports_baseline_gap():
    d = evaluate_gate(SLICED_CAND, SLICED_BASE, {"fairness": [{"metric": "recall", "column": "region", "max_gap": 0.3}]})
    (c,) = d.checks
    assert c.observed == pytest.approx(0.25) and c.baseline == pytest.approx(0.02)


def test_empty_slice_in_fairness_is_reported():
    cand = {"overall": {"r": 0.5}, "s=a": {"r": 0.5, "n_rows": 3}, "s=b": {"n_rows": 0}}
    d = evaluate_gate(cand, None, {"fairness": [{"metric": "r", "column": "s", "max_gap": 1}], "fail_on_empty_slice": False})
    assert d.passed
    assert [c.kind for c in d.checks] == ["empty_slice", "fairness"]


@pytest.mark.parametrize(
    ("bad_spec", "match"),
    [
        ({}, "no thresholds"),
        ({"thresholds": []}, "no thresholds"),
        ({"thresholds": [{"metric": "acc"}]}, "set 'value' and/or 'change'"),
        ({"thresholds": [{"metric": "acc", "change": {"direction": "up"}}]}, "direction must be one of"),
        ({"thresholds": [{"metric": "acc", "value": {}}]}, "neither lower_bound nor upper_bound"),
        ({"thresholds": [{"metric": "acc", "value": {"lower_bound": 2, "upper_bound": 1}}]}, "lower_bound 2.0 > upper_bound"),
        ({"thresholds": [{"metric": "acc", "value": {"lower_bound": "x"}}]}, "must be a number"),
        ({"thresholds": [{"metric": "acc", "value": {"lower_bound": 0}, "slices": ["EU"]}]}, "bad slice selector"),
        ({"thresholds": [], "colour": 1}, "unknown field"),
        ({"fairness": [{"metric": "r", "column": "s", "max_gap": -1}]}, "max_gap"),
        ({"max_model_size_mb": 0}, "must be > 0"),
        ({"fail_on_empty_slice": "yes", "max_model_size_mb": 1}, "true or false"),
    ],
)
def test_bad_specs_are_refused(bad_spec, match):
    with pytest.raises(GateSpecError, match=match):
        GateSpec.from_dict(bad_spec)


def test_unknown_metric_lists_available_metrics():
    with pytest.raises(GateSpecError) as err:
        evaluate_gate(SLICED_CAND, SLICED_BASE, spec(value("f1", lower=0.5)))
    assert "['f1']" in str(err.value)
    assert "available metrics: ['accuracy', 'recall']" in str(err.value)


def test_spec_roundtrip_and_slice_columns():
    raw = spec(
        value("accuracy", lower=0.5, slices=["overall", "region=*"]),
        fairness=[{"metric": "recall", "column": "sex", "max_gap": 0.1}],
    )
    parsed = GateSpec.from_dict(raw)
    assert parsed.slice_columns == ["region", "sex"]
    assert GateSpec.from_dict(parsed.to_dict()) == parsed
    json.dumps(parsed.to_dict())


def test_summary_is_small_with_many_failures():
    cand = {"overall": {"acc": 0.1}} | {f"g={i}": {"acc": 0.1, "n_rows": 1} for i in range(500)}
    d = evaluate_gate(cand, None, spec(value("acc", lower=0.5, slices=["*"])))
    assert isinstance(d, GateDecision) and not d.passed
    assert d.to_summary()["n_failed"] == 500
    assert len(json.dumps(d.to_summary())) < 2000


def test_a_metric_undefined_on_a_slice_says_why_in_its_check():
    from mlops_provider.core.gate import UNDEFINED, evaluate_gate

    why = "roc_auc is undefined: 'label' has one class in slice region=EU (0 in all 40 rows)"
    candidate = {
        "overall": {"roc_auc": 0.9, "n_rows": 100},
        "region=EU": {"roc_auc": float("nan"), "n_rows": 40, UNDEFINED: {"roc_auc": why}},
        "region=US": {"roc_auc": 0.8, "n_rows": 60},
    }
    spec = {"thresholds": [{"metric": "roc_auc", "value": {"lower_bound": 0.7}, "slices": ["overall", "region=*"]}]}
    decision = evaluate_gate(candidate, None, spec)
    [failed] = decision.failed_checks
    assert failed.slice == "region=EU" and failed.message == f"metric is NaN ({why})"
    assert decision.to_summary()["failed"] == [f"value:roc_auc[region=EU] metric is NaN ({why})"[:200]]
