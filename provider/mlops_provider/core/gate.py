"""Promotion-gate decision logic: TFX "blessing" semantics as a pure function.

Nothing here knows about Airflow or MLflow.  :func:`evaluate_gate` compares the metrics of a candidate
(challenger) with those of a baseline (champion) under a :class:`GateSpec` and returns a
:class:`GateDecision` with one :class:`CheckResult` per check.

Metrics are given per slice: ``{"overall": {"accuracy": 0.91, "n_rows": 1000}, "region=EU": {...}}``.
A flat ``{"accuracy": 0.91}`` mapping means the overall slice only.  Slice keys are ``column=value``.
Reserved metric names: ``n_rows`` (rows in the slice; a slice with 0 rows is *empty*),
``latency_p95_ms_per_1k_rows`` and ``model_size_mb`` (overall slice, for the budgets).

Semantics (see ``docs/operators/gate.md`` for the comparison with TFX and MLflow):

* at least one check must be configured, otherwise :class:`GateSpecError` (nothing is blessed by accident);
* value threshold: ``lower_bound <= metric <= upper_bound`` (unset bounds are -inf/+inf);
* change threshold: ``diff = candidate - baseline``, ``ratio = diff / baseline`` (NaN when the baseline
  is 0); higher_is_better passes when ``diff >= absolute and ratio >= relative``, lower_is_better when
  ``diff <= absolute and ratio <= relative``.  A NaN ratio fails only when a relative bound is set;
* no baseline (first model): change thresholds are dropped and the decision says so; with nothing
  left to check the first model is *not* blessed (as TFX, which then skips validation);
* thresholds apply to each selected slice; any failing slice fails the gate; a missing or NaN metric
  fails its check; a threshold naming a metric computed nowhere is a :class:`GateSpecError` that lists
  the available metrics;
* fairness: the gap ``max - min`` of a metric across the slices of one column must be ``<= max_gap``;
* budgets: ``latency_p95_ms_per_1k_rows <= budget`` and ``model_size_mb <= budget``;
* empty slices are reported; they fail the gate only when ``fail_on_empty_slice`` is true;
* candidate and baseline with the same identity: basis ``same_version`` (nothing to promote).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OVERALL = "overall"
N_ROWS = "n_rows"
LATENCY_METRIC = "latency_p95_ms_per_1k_rows"
MODEL_SIZE_METRIC = "model_size_mb"
#: Per slice, ``{metric: why it is undefined there}`` (e.g. one class in the slice); not a metric.
UNDEFINED = "undefined"
RESERVED_METRICS = frozenset({N_ROWS, LATENCY_METRIC, MODEL_SIZE_METRIC, UNDEFINED})

HIGHER_IS_BETTER = "higher_is_better"
LOWER_IS_BETTER = "lower_is_better"
DIRECTIONS = (HIGHER_IS_BETTER, LOWER_IS_BETTER)

BASIS_COMPARED = "compared"
BASIS_FIRST_MODEL = "first_model"
BASIS_SAME_VERSION = "same_version"

MetricsBySlice = Mapping[str, Mapping[str, Any]]


class GateSpecError(ValueError):
    """The gate specification is unusable (no thresholds, unknown metric, malformed field)."""


# ---------------------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class ValueThreshold:
    lower_bound: float | None = None
    upper_bound: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"lower_bound": self.lower_bound, "upper_bound": self.upper_bound}


@dataclass(frozen=True)
class ChangeThreshold:
    direction: str
    absolute: float | None = None
    relative: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "absolute": self.absolute, "relative": self.relative}


@dataclass(frozen=True)
class MetricThreshold:
    """Thresholds on one metric, applied to each slice matched by ``slices``.

    Slice selectors: ``"overall"``, ``"col=value"`` (one slice), ``"col=*"`` (every slice of a
    column) and ``"*"`` (every slice except overall).
    """

    metric: str
    value: ValueThreshold | None = None
    change: ChangeThreshold | None = None
    slices: tuple[str, ...] = (OVERALL,)


@dataclass(frozen=True)
class FairnessConstraint:
    """The gap (max - min) of ``metric`` across the slices of ``column`` must not exceed ``max_gap``."""

    metric: str
    column: str
    max_gap: float


@dataclass(frozen=True)
class GateSpec:
    """What the gate checks; build it with :meth:`from_dict` from a JSON-safe dict (templatable)."""

    thresholds: tuple[MetricThreshold, ...] = ()
    fairness: tuple[FairnessConstraint, ...] = ()
    latency_p95_ms_per_1k_rows: float | None = None
    max_model_size_mb: float | None = None
    fail_on_empty_slice: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | GateSpec) -> GateSpec:
        """
        Parse a spec such as::

            {
              "thresholds": [
                {"metric": "accuracy", "value": {"lower_bound": 0.8}, "slices": ["overall", "region=*"]},
                {"metric": "accuracy", "change": {"direction": "higher_is_better", "absolute": -0.01}},
              ],
              "fairness": [{"metric": "recall", "column": "sex", "max_gap": 0.1}],
              "latency_p95_ms_per_1k_rows": 50,
              "max_model_size_mb": 200,
              "fail_on_empty_slice": true,
            }
        """
        if isinstance(data, GateSpec):
            data.validate()
            return data
        if not isinstance(data, Mapping):
            raise GateSpecError(f"gate spec must be a mapping, got {type(data).__name__}")
        known = {"thresholds", "fairness", "latency_p95_ms_per_1k_rows", "max_model_size_mb", "fail_on_empty_slice"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GateSpecError(f"gate spec: unknown field(s) {unknown}; known fields: {sorted(known)}")
        raw_thresholds = data.get("thresholds") or []
        if not isinstance(raw_thresholds, Sequence) or isinstance(raw_thresholds, str | bytes):
            raise GateSpecError("gate spec: 'thresholds' must be a list of objects")
        thresholds = tuple(_parse_threshold(i, t) for i, t in enumerate(raw_thresholds))
        raw_fairness = data.get("fairness") or []
        if not isinstance(raw_fairness, Sequence) or isinstance(raw_fairness, str | bytes):
            raise GateSpecError("gate spec: 'fairness' must be a list of objects")
        fairness = tuple(_parse_fairness(i, f) for i, f in enumerate(raw_fairness))
        fail_on_empty = data.get("fail_on_empty_slice", True)
        if not isinstance(fail_on_empty, bool):
            raise GateSpecError(f"gate spec: 'fail_on_empty_slice' must be true or false, got {fail_on_empty!r}")
        spec = cls(
            thresholds=thresholds,
            fairness=fairness,
            latency_p95_ms_per_1k_rows=_opt_number(data, "latency_p95_ms_per_1k_rows", "gate spec", positive=True),
            max_model_size_mb=_opt_number(data, "max_model_size_mb", "gate spec", positive=True),
            fail_on_empty_slice=fail_on_empty,
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        """Refuse a spec with nothing to check (TFX: never bless because thresholds were forgotten)."""
        if not self.has_checks:
            raise GateSpecError(
                "gate spec configures no thresholds, fairness constraints or budgets; refusing to bless "
                "a model without checks (set at least one value or change threshold)"
            )

    @property
    def has_checks(self) -> bool:
        return bool(
            self.thresholds
            or self.fairness
            or self.latency_p95_ms_per_1k_rows is not None
            or self.max_model_size_mb is not None
        )

    @property
    def slice_columns(self) -> list[str]:
        """Columns the spec slices by (from threshold selectors and fairness constraints), in order."""
        columns: list[str] = []
        for threshold in self.thresholds:
            for selector in threshold.slices:
                if "=" in selector:
                    col = selector.split("=", 1)[0]
                    if col not in columns:
                        columns.append(col)
        for constraint in self.fairness:
            if constraint.column not in columns:
                columns.append(constraint.column)
        return columns

    @property
    def metric_names(self) -> list[str]:
        names = [t.metric for t in self.thresholds] + [f.metric for f in self.fairness]
        return list(dict.fromkeys(names))

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": [
                {
                    "metric": t.metric,
                    **({"value": t.value.to_dict()} if t.value else {}),
                    **({"change": t.change.to_dict()} if t.change else {}),
                    "slices": list(t.slices),
                }
                for t in self.thresholds
            ],
            "fairness": [{"metric": f.metric, "column": f.column, "max_gap": f.max_gap} for f in self.fairness],
            "latency_p95_ms_per_1k_rows": self.latency_p95_ms_per_1k_rows,
            "max_model_size_mb": self.max_model_size_mb,
            "fail_on_empty_slice": self.fail_on_empty_slice,
        }


def _opt_number(data: Mapping[str, Any], key: str, where: str, positive: bool = False) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise GateSpecError(f"{where}: {key!r} must be a number, got {value!r}")
    if positive and value <= 0:
        raise GateSpecError(f"{where}: {key!r} must be > 0, got {value!r}")
    return float(value)


def _parse_threshold(index: int, raw: Any) -> MetricThreshold:
    where = f"gate spec: thresholds[{index}]"
    if not isinstance(raw, Mapping):
        raise GateSpecError(f"{where} must be an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"metric", "value", "change", "slices"})
    if unknown:
        raise GateSpecError(f"{where}: unknown field(s) {unknown}; use metric, value, change, slices")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric:
        raise GateSpecError(f"{where}: 'metric' must be a non-empty string")
    where = f"{where} ({metric})"
    value = None
    if raw.get("value") is not None:
        v = raw["value"]
        if not isinstance(v, Mapping) or set(v) - {"lower_bound", "upper_bound"}:
            raise GateSpecError(f"{where}: 'value' must be an object with lower_bound and/or upper_bound")
        value = ValueThreshold(_opt_number(v, "lower_bound", where), _opt_number(v, "upper_bound", where))
        if value.lower_bound is None and value.upper_bound is None:
            raise GateSpecError(f"{where}: 'value' sets neither lower_bound nor upper_bound")
        if value.lower_bound is not None and value.upper_bound is not None and value.lower_bound > value.upper_bound:
            raise GateSpecError(f"{where}: lower_bound {value.lower_bound} > upper_bound {value.upper_bound}")
    change = None
    if raw.get("change") is not None:
        c = raw["change"]
        if not isinstance(c, Mapping) or set(c) - {"direction", "absolute", "relative"}:
            raise GateSpecError(f"{where}: 'change' must be an object with direction, absolute and/or relative")
        direction = c.get("direction")
        if direction not in DIRECTIONS:
            raise GateSpecError(f"{where}: change direction must be one of {list(DIRECTIONS)}, got {direction!r}")
        change = ChangeThreshold(direction, _opt_number(c, "absolute", where), _opt_number(c, "relative", where))
    if value is None and change is None:
        raise GateSpecError(f"{where}: set 'value' and/or 'change'")
    slices = raw.get("slices", [OVERALL])
    if isinstance(slices, str):
        slices = [slices]
    if not isinstance(slices, Sequence) or not slices or not all(isinstance(s, str) and s for s in slices):
        raise GateSpecError(f"{where}: 'slices' must be a non-empty list of selectors like 'overall', 'col=value'")
    for selector in slices:
        if selector not in (OVERALL, "*") and ("=" not in selector or not selector.split("=", 1)[0]):
            raise GateSpecError(
                f"{where}: bad slice selector {selector!r}; use 'overall', '*', 'column=value' or 'column=*'"
            )
    return MetricThreshold(metric=metric, value=value, change=change, slices=tuple(dict.fromkeys(slices)))


def _parse_fairness(index: int, raw: Any) -> FairnessConstraint:
    where = f"gate spec: fairness[{index}]"
    if not isinstance(raw, Mapping) or set(raw) - {"metric", "column", "max_gap"}:
        raise GateSpecError(f"{where} must be an object with metric, column and max_gap")
    metric, column = raw.get("metric"), raw.get("column")
    if not isinstance(metric, str) or not metric or not isinstance(column, str) or not column:
        raise GateSpecError(f"{where}: 'metric' and 'column' must be non-empty strings")
    max_gap = _opt_number(raw, "max_gap", where)
    if max_gap is None or max_gap < 0:
        raise GateSpecError(f"{where}: 'max_gap' must be a number >= 0")
    return FairnessConstraint(metric=metric, column=column, max_gap=max_gap)


# ---------------------------------------------------------------------------------------------- results


@dataclass
class CheckResult:
    """One check on one slice.  ``bound`` is JSON-safe; ``observed``/``baseline``/``diff`` may be None."""

    kind: str  # value | change | fairness | latency | model_size | empty_slice | no_checks
    metric: str | None
    slice: str
    passed: bool
    message: str
    observed: float | None = None
    baseline: float | None = None
    bound: dict[str, Any] = field(default_factory=dict)
    diff: float | None = None
    ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "slice": self.slice,
            "passed": self.passed,
            "observed": _json_num(self.observed),
            "baseline": _json_num(self.baseline),
            "bound": {k: _json_num(v) if isinstance(v, float) else v for k, v in self.bound.items()},
            "diff": _json_num(self.diff),
            "ratio": _json_num(self.ratio),
            "message": self.message,
        }

    def short(self) -> str:
        return f"{self.kind}:{self.metric or '-'}[{self.slice}] {self.message}"


@dataclass
class GateDecision:
    """Outcome of :func:`evaluate_gate`."""

    passed: bool
    basis: str  # compared | first_model | same_version
    checks: list[CheckResult]
    candidate: str | None = None
    baseline: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def first_model(self) -> bool:
        return self.basis == BASIS_FIRST_MODEL

    @property
    def same_version(self) -> bool:
        return self.basis == BASIS_SAME_VERSION

    @property
    def verdict(self) -> str:
        if self.same_version:
            return "same_version"
        return "blessed" if self.passed else "not_blessed"

    def to_dict(self) -> dict[str, Any]:
        """Full JSON-safe record (for the report artifact)."""
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "basis": self.basis,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "notes": list(self.notes),
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_summary(self, max_failures: int = 5) -> dict[str, Any]:
        """Small JSON summary (for XCom and tags): counts and the first failures, one line each."""
        failed = self.failed_checks
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "basis": self.basis,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "n_checks": len(self.checks),
            "n_failed": len(failed),
            "failed": [c.short()[:200] for c in failed[:max_failures]],
        }

    def message(self) -> str:
        """Readable multi-line account of the decision."""
        head = {
            BASIS_COMPARED: f"candidate {self.candidate or '?'} vs baseline {self.baseline or '?'}",
            BASIS_FIRST_MODEL: f"candidate {self.candidate or '?'} is the first model (no baseline)",
            BASIS_SAME_VERSION: f"candidate {self.candidate or '?'} is the baseline (same version): nothing to promote",
        }[self.basis]
        failed = self.failed_checks
        lines = [
            f"Gate {self.verdict.upper().replace('_', ' ')}: {head}; "
            f"{len(self.checks) - len(failed)}/{len(self.checks)} checks passed"
        ]
        lines += [f"  note: {n}" for n in self.notes]
        if failed:
            lines.append("  failed checks:")
            lines += [f"    - {c.short()}" for c in failed]
        return "\n".join(lines)


def _json_num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------- evaluation


def normalize_metrics(metrics: Mapping[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    """Accept ``{slice: {metric: value}}`` or a flat ``{metric: value}`` (overall only)."""
    if metrics is None:
        return None
    if not isinstance(metrics, Mapping):
        raise GateSpecError(f"metrics must be a mapping, got {type(metrics).__name__}")
    if metrics and all(isinstance(v, Mapping) for v in metrics.values()):
        return {str(k): dict(v) for k, v in metrics.items()}
    if any(isinstance(v, Mapping) for v in metrics.values()):
        raise GateSpecError("metrics mix slices ({slice: {metric: value}}) and flat metric values")
    return {OVERALL: dict(metrics)}


def _as_float(value: Any) -> float | None:
    """Metric value as float; None when missing or not numeric. NaN stays NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt(value: float | None) -> str:
    if value is None:
        return "missing"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def _is_empty(slice_metrics: Mapping[str, Any] | None) -> bool:
    if slice_metrics is None:
        return True
    n = _as_float(slice_metrics.get(N_ROWS))
    return n is not None and n == 0


def _select_slices(selector: str, available: Sequence[str]) -> list[str]:
    if selector == OVERALL:
        return [OVERALL]
    if selector == "*":
        return [s for s in available if s != OVERALL]
    column, value = selector.split("=", 1)
    if value == "*":
        return [s for s in available if s != OVERALL and s.split("=", 1)[0] == column]
    return [selector]


def evaluate_gate(
    candidate_metrics: Mapping[str, Any],
    baseline_metrics: Mapping[str, Any] | None,
    spec: GateSpec | Mapping[str, Any],
    *,
    candidate_id: str | None = None,
    baseline_id: str | None = None,
) -> GateDecision:
    """
    Decide whether the candidate is blessed against the baseline.

    :param candidate_metrics: ``{slice: {metric: value}}`` (or flat ``{metric: value}``) of the candidate.
    :param baseline_metrics: the same for the baseline on the same data, or ``None`` for a first model.
    :param spec: a :class:`GateSpec` or its dict form.
    :param candidate_id: identity of the candidate (e.g. model version), recorded in the decision.
    :param baseline_id: identity of the baseline; equal to ``candidate_id`` gives basis ``same_version``.
    :raises GateSpecError: no checks configured, or a threshold names a metric computed for no slice.
    """
    spec = GateSpec.from_dict(spec)
    cand = normalize_metrics(candidate_metrics) or {}
    base = normalize_metrics(baseline_metrics)

    available_metrics = sorted({m for per_slice in cand.values() for m in per_slice} - RESERVED_METRICS)
    unknown = [m for m in spec.metric_names if m not in available_metrics]
    if unknown:
        raise GateSpecError(
            f"gate spec names metric(s) {unknown} that were not computed; available metrics: {available_metrics}"
        )

    if candidate_id is not None and baseline_id is not None and str(candidate_id) == str(baseline_id):
        basis = BASIS_SAME_VERSION
    elif base is None:
        basis = BASIS_FIRST_MODEL
    else:
        basis = BASIS_COMPARED

    checks: list[CheckResult] = []
    notes: list[str] = []
    slices_available = list(cand)
    empty_reported: set[str] = set()
    dropped_change = 0

    def empty_check(slice_key: str, metric: str | None) -> None:
        if slice_key in empty_reported:
            return
        empty_reported.add(slice_key)
        fails = spec.fail_on_empty_slice
        checks.append(
            CheckResult(
                kind="empty_slice",
                metric=metric,
                slice=slice_key,
                passed=not fails,
                message="slice has no rows" + (" (fail_on_empty_slice)" if fails else "; its checks are skipped"),
            )
        )

    for threshold in spec.thresholds:
        slice_keys: list[str] = []
        for selector in threshold.slices:
            matched = _select_slices(selector, slices_available)
            if not matched:
                empty_check(selector, threshold.metric)
            slice_keys += [s for s in matched if s not in slice_keys]
        for slice_key in slice_keys:
            cand_slice = cand.get(slice_key)
            if slice_key != OVERALL and _is_empty(cand_slice):
                empty_check(slice_key, threshold.metric)
                continue
            observed = _as_float((cand_slice or {}).get(threshold.metric))
            why = _undefined_reason(cand_slice, threshold.metric)
            if threshold.value is not None:
                checks.append(_explained(_value_check(threshold.metric, slice_key, observed, threshold.value), why))
            if threshold.change is not None:
                if base is None:
                    dropped_change += 1
                    continue
                baseline = _as_float((base.get(slice_key) or {}).get(threshold.metric))
                check = _change_check(threshold.metric, slice_key, observed, baseline, threshold.change)
                checks.append(_explained(check, why or _undefined_reason(base.get(slice_key), threshold.metric)))

    for constraint in spec.fairness:
        checks.append(_fairness_check(constraint, cand, base, empty_check))

    if spec.latency_p95_ms_per_1k_rows is not None:
        checks.append(_budget_check("latency", LATENCY_METRIC, cand, base, spec.latency_p95_ms_per_1k_rows))
    if spec.max_model_size_mb is not None:
        checks.append(_budget_check("model_size", MODEL_SIZE_METRIC, cand, base, spec.max_model_size_mb))

    if dropped_change:
        notes.append(f"first model: {dropped_change} change threshold check(s) dropped (no baseline)")
    substantive = [c for c in checks if c.kind != "empty_slice"]
    if not substantive:
        reason = (
            "first model and only change thresholds configured: nothing to judge it by, not blessed"
            if dropped_change
            else "no check could be applied (all selected slices are empty)"
        )
        checks.append(CheckResult(kind="no_checks", metric=None, slice=OVERALL, passed=False, message=reason))

    passed = all(c.passed for c in checks)
    return GateDecision(
        passed=passed,
        basis=basis,
        checks=checks,
        candidate=None if candidate_id is None else str(candidate_id),
        baseline=None if baseline_id is None else str(baseline_id),
        notes=notes,
    )


def _undefined_reason(slice_metrics: Mapping[str, Any] | None, metric: str) -> str | None:
    reasons = (slice_metrics or {}).get(UNDEFINED)
    return reasons.get(metric) if isinstance(reasons, Mapping) else None


def _explained(check: CheckResult, why: str | None) -> CheckResult:
    """Put the reason a metric is undefined into a failed check's message (``metric is NaN (roc_auc is undefined: ...)``)."""
    if why and not check.passed and "NaN" in check.message:
        check.message = f"{check.message} ({why})"
    return check


def _value_check(metric: str, slice_key: str, observed: float | None, vt: ValueThreshold) -> CheckResult:
    lower = -math.inf if vt.lower_bound is None else vt.lower_bound
    upper = math.inf if vt.upper_bound is None else vt.upper_bound
    bound = vt.to_dict()
    if observed is None or math.isnan(observed):
        return CheckResult("value", metric, slice_key, False, f"metric is {_fmt(observed)}", observed, bound=bound)
    passed = lower <= observed <= upper
    if passed:
        msg = f"{_fmt(observed)} within [{_fmt(lower)}, {_fmt(upper)}]"
    elif observed < lower:
        msg = f"{_fmt(observed)} < lower bound {_fmt(lower)} (by {_fmt(lower - observed)})"
    else:
        msg = f"{_fmt(observed)} > upper bound {_fmt(upper)} (by {_fmt(observed - upper)})"
    return CheckResult("value", metric, slice_key, passed, msg, observed, bound=bound)


def _change_check(
    metric: str, slice_key: str, observed: float | None, baseline: float | None, ct: ChangeThreshold
) -> CheckResult:
    bound = ct.to_dict()
    if observed is None or math.isnan(observed):
        return CheckResult("change", metric, slice_key, False, f"metric is {_fmt(observed)}", observed, baseline, bound)
    if baseline is None or math.isnan(baseline):
        return CheckResult(
            "change", metric, slice_key, False, f"baseline metric is {_fmt(baseline)}", observed, baseline, bound
        )
    diff = observed - baseline
    # TFX: ratio is NaN when the baseline is 0 (math.isclose(b, 0.0) with default tolerances means b == 0).
    ratio = math.nan if baseline == 0 else diff / baseline
    higher = ct.direction == HIGHER_IS_BETTER
    default = -math.inf if higher else math.inf
    absolute = default if ct.absolute is None else ct.absolute
    abs_ok = diff >= absolute if higher else diff <= absolute
    if ct.relative is None:
        rel_ok = True  # an unset relative bound is not compared (NaN ratio does not fail it)
    elif math.isnan(ratio):
        rel_ok = False
    else:
        rel_ok = ratio >= ct.relative if higher else ratio <= ct.relative
    passed = abs_ok and rel_ok
    op = ">=" if higher else "<="
    parts = [f"diff {_fmt(diff)} (from {_fmt(baseline)} to {_fmt(observed)})"]
    if not abs_ok:
        parts.append(f"needs diff {op} {_fmt(absolute)}")
    if not rel_ok:
        if math.isnan(ratio):
            parts.append(f"relative change undefined (baseline is 0), needs ratio {op} {_fmt(ct.relative)}")
        else:
            parts.append(f"ratio {_fmt(ratio)} needs {op} {_fmt(ct.relative)}")
    if passed:
        parts.append(f"ok ({ct.direction})")
    return CheckResult("change", metric, slice_key, passed, "; ".join(parts), observed, baseline, bound, diff, ratio)


def _gap(metrics: Mapping[str, Mapping[str, Any]], constraint: FairnessConstraint) -> tuple[float | None, list[str], list[str], list[str]]:
    """(gap, non-empty slices, empty slices, slices with a missing/NaN value) for one column."""
    prefix = f"{constraint.column}="
    keys = [k for k in metrics if k.startswith(prefix)]
    non_empty = [k for k in keys if not _is_empty(metrics[k])]
    empty = [k for k in keys if _is_empty(metrics[k])]
    values = {k: _as_float(metrics[k].get(constraint.metric)) for k in non_empty}
    bad = [k for k, v in values.items() if v is None or math.isnan(v)]
    good = [v for v in values.values() if v is not None and not math.isnan(v)]
    gap = (max(good) - min(good)) if good and not bad else None
    return gap, non_empty, empty, bad


def _fairness_check(constraint, cand, base, empty_check) -> CheckResult:
    label = f"{constraint.column}=*"
    bound = {"max_gap": constraint.max_gap}
    gap, non_empty, empty, bad = _gap(cand, constraint)
    for key in empty:
        empty_check(key, constraint.metric)
    base_gap = _gap(base, constraint)[0] if base else None
    if not non_empty:
        return CheckResult(
            "fairness", constraint.metric, label, False, f"no non-empty slices of column {constraint.column!r}",
            bound=bound,
        )
    if bad:
        return CheckResult(
            "fairness", constraint.metric, label, False, f"metric missing or NaN in slice(s) {bad}",
            baseline=base_gap, bound=bound,
        )
    values = {k: float(cand[k][constraint.metric]) for k in non_empty}
    worst, best = min(values, key=values.get), max(values, key=values.get)
    passed = gap <= constraint.max_gap
    msg = (
        f"gap {_fmt(gap)} between {best} ({_fmt(values[best])}) and {worst} ({_fmt(values[worst])}) "
        f"{'<=' if passed else '>'} max_gap {_fmt(constraint.max_gap)}"
    )
    if len(non_empty) == 1:
        msg += " (only one non-empty slice)"
    return CheckResult("fairness", constraint.metric, label, passed, msg, gap, base_gap, bound)


def _budget_check(kind: str, metric: str, cand, base, budget: float) -> CheckResult:
    observed = _as_float(cand.get(OVERALL, {}).get(metric))
    baseline = _as_float((base or {}).get(OVERALL, {}).get(metric)) if base else None
    bound = {"upper_bound": budget}
    if observed is None or math.isnan(observed):
        return CheckResult(kind, metric, OVERALL, False, f"metric is {_fmt(observed)}", observed, baseline, bound)
    passed = observed <= budget
    msg = f"{_fmt(observed)} {'<=' if passed else '>'} budget {_fmt(budget)}"
    return CheckResult(kind, metric, OVERALL, passed, msg, observed, baseline, bound)


# ---------------------------------------------------------------------------------------------- evaluation data

#: Metrics that are undefined when the evaluation target holds a single class.
ONE_CLASS_UNDEFINED = frozenset({"roc_auc", "roc_auc_ovr", "roc_auc_ovo", "average_precision", "log_loss", "brier_score"})
_EXAMPLES = 3


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _examples(values: Any) -> str:
    return ", ".join(repr(_plain(v)) for v in list(values)[:_EXAMPLES])


def column_problems(frame: Any, columns: Sequence[Any]) -> dict[str, dict[Any, str]]:
    """
    What an sklearn model may refuse in ``frame[columns]``, by kind: ``{"nan"|"inf"|"non_numeric"|"datetime": {column: text}}``.

    ``non_numeric``: values of a text column that do not read as numbers (a column of numbers written as
    text is not listed: sklearn converts it).  Models with their own handling (an imputer, an encoder)
    accept some of these, so this describes, it does not judge: call it once scoring has failed.
    """
    import numpy as np
    import pandas as pd

    found: dict[str, dict[Any, str]] = {"nan": {}, "inf": {}, "non_numeric": {}, "datetime": {}}
    n = len(frame)
    for column in columns:
        s = frame[column]
        if pd.api.types.is_datetime64_any_dtype(s) or isinstance(s.dtype, pd.PeriodDtype):
            found["datetime"][column] = (
                f"{column!r} is a datetime column ({s.dtype}): models take numbers; derive numeric features "
                "from it (e.g. age in days) or leave it out of feature_columns"
            )
            continue
        n_nan = int(s.isna().sum())
        if n_nan:
            found["nan"][column] = f"{column!r} has {n_nan} missing value(s) (NaN) of {n} rows"
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            values = s.to_numpy(dtype=float, na_value=np.nan)
            n_inf = int(np.isinf(values).sum())
            if n_inf:
                found["inf"][column] = f"{column!r} has {n_inf} infinite value(s) of {n} rows"
        elif not pd.api.types.is_bool_dtype(s):
            present = s.dropna()
            if present.map(lambda v: isinstance(v, _dt_types())).any():
                found["datetime"][column] = f"{column!r} holds dates or times ({s.dtype}): models take numbers"
                continue
            bad = present[pd.to_numeric(present, errors="coerce").isna()]
            if len(bad) and len(bad) == len(present) and _reads_as_dates(bad):
                found["datetime"][column] = (
                    f"{column!r} holds dates as text, e.g. {_examples(bad.unique())}: models take numbers; derive "
                    "numeric features from it (e.g. age in days) or leave it out of feature_columns"
                )
                continue
            if len(bad):
                found["non_numeric"][column] = (
                    f"{column!r} ({s.dtype}) has {len(bad)} non-numeric value(s) of {n} rows, e.g. {_examples(bad.unique())}"
                )
            numbers = pd.to_numeric(present, errors="coerce")
            n_inf = int(np.isinf(numbers.to_numpy(dtype=float, na_value=np.nan)).sum())
            if n_inf:
                found["inf"][column] = f"{column!r} has {n_inf} infinite value(s) of {n} rows"
    return found


def _reads_as_dates(values: Any) -> bool:
    import warnings

    import pandas as pd

    sample = values.head(20).astype(str)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pd.to_datetime(sample, errors="raise", format="mixed")
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _dt_types() -> tuple[type, ...]:
    import datetime

    return (datetime.date, datetime.time)


def explain_scoring_error(frame: Any, columns: Sequence[Any], error: str) -> str | None:
    """
    The evaluation columns that explain a model's scoring error (``error``), one clause each; None if none does.

    The kind is read from the error (NaN, infinity, a string or a datetime that could not be converted);
    when the error names none of them every problem found is listed.
    """
    problems = column_problems(frame, columns)
    text = error.lower()
    kinds = [
        kind
        for kind, words in (
            ("nan", ("nan", "missing value")),
            ("inf", ("infinity", "too large")),
            ("non_numeric", ("convert string", "could not convert", "string", " str")),
            ("datetime", ("datetime", "timestamp", "date")),
        )
        if any(w in text for w in words)
    ]
    chosen = [problems[k] for k in kinds if problems[k]] or [p for p in problems.values() if p]
    clauses = [text for found in chosen for text in found.values()]
    return "; ".join(clauses) if clauses else None


def target_problem(y: Any, column: str, model_classes: Any | None) -> str | None:
    """
    Why the evaluation target ``y`` (column ``column``) cannot be scored, or None.

    Missing or infinite labels; for a classifier (``model_classes`` = its ``classes_``), labels of another
    type than the classes it predicts (``'yes'/'no'`` against ``0/1``), so nothing can match.
    """
    import numpy as np
    import pandas as pd

    s = pd.Series(y)
    n = len(s)
    n_nan = int(s.isna().sum())
    if n_nan:
        return f"evaluation column {column!r} has {n_nan} missing label(s) (NaN) of {n} rows; every row needs a label"
    if model_classes is None:
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            bad = s[pd.to_numeric(s, errors="coerce").isna()]
            if len(bad):
                return (
                    f"evaluation column {column!r} ({s.dtype}) has non-numeric value(s) in {len(bad)} of {n} rows, "
                    f"e.g. {_examples(bad.unique())}; a regression model predicts numbers"
                )
            return None
        n_inf = int(np.isinf(s.to_numpy(dtype=float)).sum())
        if n_inf:
            return f"evaluation column {column!r} has {n_inf} infinite value(s) of {n} rows"
        return None
    classes = list(np.asarray(model_classes).tolist())
    values = list(pd.unique(s))
    if not any(v in classes for v in values):
        return (
            f"evaluation column {column!r} holds {_examples(values)} ({s.dtype}), none of which the models predict: "
            f"their classes are {_examples(classes)}{' ...' if len(classes) > _EXAMPLES else ''} "
            f"({np.asarray(model_classes).dtype}); the labels must use the same values and type as in training"
        )
    return None


def one_class_message(metric: str, column: str, y: Any, where: str = "the evaluation data") -> str:
    """``roc_auc is undefined: 'defaulted' has one class in the evaluation data (0 in all 500 rows)``."""
    import pandas as pd

    s = pd.Series(y)
    value = _plain(s.iloc[0]) if len(s) else None
    return f"{metric} is undefined: {column!r} has one class in {where} ({value!r} in all {len(s)} rows)"
