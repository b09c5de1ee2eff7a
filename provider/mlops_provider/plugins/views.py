"""Server-rendered HTML of the MLOps view (Jinja2, autoescaped; the timeline chart is inline SVG)."""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from typing import Any
from urllib.parse import quote

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{% block title %}MLOps{% endblock %} - MLOps</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:16px 24px;color:#1a202c;
 background:#fff;font-size:14px}
@media (prefers-color-scheme: dark){body{background:#1a202c;color:#e2e8f0}a{color:#90cdf4}
 th{background:#2d3748!important}td,th{border-color:#4a5568!important}.card{border-color:#4a5568!important}}
h1{font-size:22px;margin:4px 0 12px}h2{font-size:17px;margin:20px 0 8px}a{color:#2b6cb0}
table{border-collapse:collapse;margin:6px 0 12px}td,th{border:1px solid #cbd5e0;padding:4px 8px;text-align:left;
 vertical-align:top}th{background:#edf2f7}.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#2f855a;font-weight:600}.fail{color:#c53030;font-weight:600}.muted{color:#718096}
.badge{display:inline-block;border-radius:9px;padding:1px 8px;font-size:12px;font-weight:600;margin-right:4px;
 background:#e2e8f0;color:#2d3748}.badge.champion{background:#c6f6d5;color:#22543d}
.badge.challenger{background:#feebc8;color:#7b341e}.badge.previous-champion{background:#e9d8fd;color:#44337a}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #cbd5e0;border-radius:6px;padding:10px 14px;
 min-width:260px}.crumbs{margin-bottom:8px}tr:target{outline:3px solid #3182ce}
svg text{font-size:12px;fill:currentColor}
</style></head><body>
<div class="crumbs"><a href="{{ u('/') }}">MLOps</a>{% block crumbs %}{% endblock %}</div>
{% block body %}{% endblock %}
</body></html>"""

_MACROS = """
{% macro when(ms) %}{{ fmt_ms(ms) }}{% endmacro %}
{% macro actor_links(a) %}{% if a %}<a target="_top" href="{{ airflow_run(a) }}">{{ a.dag_id }} / {{ a.run_id }}</a>
{% if a.task_id %} (<a target="_top" href="{{ airflow_ti(a) }}">{{ a.task_id }}</a>){% endif %}{% else %}
<span class="muted">-</span>{% endif %}{% endmacro %}
{% macro gate_cell(g) %}{% if g %}<span class="{{ 'pass' if g.passed == 'true' else 'fail' }}">
{{ g.verdict or ('passed' if g.passed == 'true' else 'failed') }}</span>
{% if g.failed %}<br><span class="muted">failed: {{ g.failed|join(', ') }}</span>{% endif %}
{% if g.run_id %}<br><a href="{{ u('/runs/' ~ g.run_id ~ '/gate') }}">gate report</a>{% endif %}
{% else %}<span class="muted">no gate</span>{% endif %}{% endmacro %}
{% macro approval_cell(a) %}{% if a %}<span class="{{ 'pass' if a.decision == 'approved' else 'fail' }}">
{{ a.decision }}</span> by {{ a.by }}{% if a.at %}, {{ a.at }}{% endif %}
{% if a.comment %}<br>"{{ a.comment }}"{% endif %}{% else %}<span class="muted">not required</span>{% endif %}
{% endmacro %}
{% macro data_cell(t) %}{% if t %}{{ t.tags.get('mlops.training_uri', '-') }}<br>
<span class="muted">digest {{ (t.tags.get('mlops.training_digest') or '-')[:12] }},
{{ '%d' % t.metrics['n_train_rows'] if 'n_train_rows' in t.metrics else '?' }} rows</span>
{% else %}<span class="muted">-</span>{% endif %}{% endmacro %}
"""

_MODELS = """{% extends "base" %}{% import "macros" as m with context %}{% block title %}Models{% endblock %}
{% block body %}<h1>Registered models</h1>
{% if not models %}<p>No registered model you may read. Models appear here once a DAG registers one.</p>{% endif %}
{% if hidden %}<p class="muted">{{ hidden }} model(s) hidden: you cannot read their DAGs.</p>{% endif %}
{% for model in models %}
<h2><a href="{{ u('/models/' ~ q(model.name)) }}">{{ model.name }}</a>
<span class="muted">{{ model.versions|length }} version(s); DAGs: {{ model.dags|join(', ') or '-' }}</span></h2>
<table><tr><th>Role</th><th>Version</th><th>Promoted</th><th>Registered by</th><th>Gate</th><th>Approval</th>
<th>Training data</th></tr>
{% for alias in aliases %}{% set v = model.roles.get(alias) %}
<tr><td><span class="badge {{ alias }}">{{ alias }}</span></td>
{% if v %}<td><a href="{{ u('/models/' ~ q(model.name) ~ '/versions/' ~ v.version) }}">v{{ v.version }}</a></td>
<td>{% if v.promoted %}{{ v.promoted.at }}<br>{{ m.actor_links(v.promoted.actor) }}{% else %}
<span class="muted">never champion</span>{% endif %}</td>
<td>{{ m.when(v.created) }}<br>{{ m.actor_links(v.registered_by) }}</td>
<td>{{ m.gate_cell(v.gate) }}</td><td>{{ m.approval_cell(v.approval) }}</td>
<td>{{ m.data_cell(training.get((model.name, v.version))) }}</td>
{% else %}<td colspan="6" class="muted">not set</td>{% endif %}</tr>{% endfor %}
</table>{% endfor %}{% endblock %}"""

_MODEL = """{% extends "base" %}{% import "macros" as m with context %}{% block title %}{{ model.name }}{% endblock %}
{% block crumbs %} / {{ model.name }}{% endblock %}
{% block body %}<h1>{{ model.name }}</h1>
<p>{% for alias in aliases if alias in model.aliases %}<span class="badge {{ alias }}">{{ alias }}
v{{ model.aliases[alias] }}</span>{% endfor %} <span class="muted">DAGs: {{ model.dags|join(', ') or '-' }}</span></p>
<h2>Model timeline</h2>
{{ chart|safe }}
<p class="muted">Each point is a batch; click it for its row below (Airflow run, MLflow runs, reports).
Validation: green passed, red quarantined. Drift share of columns against the threshold; live accuracy against
the champion's evaluation. Vertical lines: versions registered (dashed) and promotions/rollbacks (solid).</p>
<h2>Versions</h2>
<table><tr><th>Version</th><th>Aliases</th><th>Registered</th><th>Gate</th><th>Approval</th><th>Champion since</th></tr>
{% for v in model.versions|reverse %}<tr><td><a href="{{ u('/models/' ~ q(model.name) ~ '/versions/' ~ v.version) }}">
v{{ v.version }}</a></td><td>{% for a in v.aliases %}<span class="badge {{ a }}">{{ a }}</span>{% endfor %}</td>
<td>{{ m.when(v.created) }}<br>{{ m.actor_links(v.registered_by) }}</td><td>{{ m.gate_cell(v.gate) }}</td>
<td>{{ m.approval_cell(v.approval) }}</td><td>{% if v.promoted %}{{ v.promoted.at }}{% else %}-{% endif %}</td></tr>
{% endfor %}</table>
<h2>Promotions and rollbacks</h2>
<table><tr><th>When</th><th>Action</th><th>Alias</th><th>From</th><th>To</th><th>Why</th><th>By</th></tr>
{% for h in model.history|reverse %}<tr><td>{{ h.at }}</td><td>{{ h.action or 'promote' }}</td><td>{{ h.alias }}</td>
<td>{{ h['from'] or '-' }}</td><td>v{{ h.to }}</td><td>{{ h.reason }}</td><td>{{ m.actor_links(h.actor) }}</td></tr>
{% else %}<tr><td colspan="7" class="muted">none yet</td></tr>{% endfor %}</table>
<h2>Batches</h2>{% set shown = (timeline.batches|reverse|list)[:max_rows] %}
{% if timeline.batches|length > max_rows %}<p class="muted">The latest {{ max_rows }} of {{ timeline.batches|length }}
batches; every batch is on the chart (click a point).</p>{% endif %}
<table><tr><th>#</th><th>Batch</th><th>Validation</th><th>Drift share</th><th>Live vs champion</th><th>Model</th>
<th>Airflow run</th><th>MLflow runs and reports</th></tr>
{% for b in shown %}<tr id="batch-{{ b.n }}"><td class="num">{{ b.n }}</td>
<td title="{{ b.uri }}">{{ b.label }}<br><span class="muted">{{ m.when(b.at) }}</span></td>
<td>{% if b.validation is true %}<span class="pass">passed</span>{% elif b.validation is false %}
<span class="fail">quarantined</span>{% else %}-{% endif %}</td>
<td class="num">{% if b.drift_share is not none %}<span class="{{ 'fail' if b.drift else '' }}">{{ '%.2f' % b.drift_share }}
</span>{% if b.drift_threshold is not none %} / {{ '%.2f' % b.drift_threshold }}{% endif %}{% else %}-{% endif %}</td>
<td>{% if b.performance %}{% for k, v in b.performance.live.items() %}{{ k }} {{ '%.3f' % v }}{% if k in b.performance.champion %}
vs {{ '%.3f' % b.performance.champion[k] }}{% endif %}<br>{% endfor %}
<span class="{{ 'fail' if b.performance.verdict == 'decay' else 'pass' }}">{{ b.performance.verdict }}</span>{% else %}-{% endif %}</td>
<td>{% if b.model_version %}v{{ b.model_version }}{% else %}-{% endif %}</td>
<td>{% for kind, r in b.runs.items() if r.lineage %}{% if loop.first %}{{ m.actor_links(r.lineage) }}{% endif %}{% endfor %}</td>
<td>{% for kind, r in b.runs.items() %}<a href="{{ mlflow_run(r) }}">{{ kind }}</a>
{% if kind == 'validation' %}(<a href="{{ u('/runs/' ~ r.run_id ~ '/artifacts/validation/report.html') }}">report</a>){% endif %}
{% if kind == 'drift' %}(<a href="{{ u('/runs/' ~ r.run_id ~ '/artifacts/drift/report.html') }}">report</a>){% endif %}
{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
{% else %}<tr><td colspan="8" class="muted">no monitored batch yet</td></tr>{% endfor %}</table>
{% endblock %}"""

_VERSION = """{% extends "base" %}{% import "macros" as m with context %}{% block title %}{{ model.name }} v{{ v.version }}{% endblock %}
{% block crumbs %} / <a href="{{ u('/models/' ~ q(model.name)) }}">{{ model.name }}</a> / v{{ v.version }}{% endblock %}
{% block body %}<h1>{{ model.name }} v{{ v.version }} {% for a in v.aliases %}<span class="badge {{ a }}">{{ a }}</span>{% endfor %}</h1>
<div class="cards">
<div class="card"><b>Registered</b><br>{{ m.when(v.created) }}<br>{{ m.actor_links(v.registered_by) }}</div>
<div class="card"><b>Gate</b><br>{{ m.gate_cell(v.gate) }}</div>
<div class="card"><b>Approval</b><br>{{ m.approval_cell(v.approval) }}</div>
<div class="card"><b>Training data</b><br>{{ m.data_cell(training) }}</div>
<div class="card"><b>Links</b><br>{% if training %}<a href="{{ mlflow_run(training) }}">MLflow training run</a><br>
{% if training.lineage %}<a target="_top" href="{{ airflow_ti(training.lineage) }}">Airflow task instance</a><br>{% endif %}{% endif %}
{% if model_card %}<a href="{{ model_card }}">Model card</a><br>{% endif %}
{% if mlflow_version %}<a href="{{ mlflow_version }}" target="_blank">MLflow model version</a>{% endif %}</div>
</div>
{% if training %}<h2>Metrics (evaluation)</h2><table><tr><th>Metric</th><th>Value</th></tr>
{% for k, val in training.metrics|dictsort %}<tr><td>{{ k }}</td><td class="num">{{ '%.4g' % val }}</td></tr>{% endfor %}</table>
<h2>Parameters</h2><table>{% for k, val in training.params|dictsort %}<tr><td>{{ k }}</td><td>{{ val }}</td></tr>{% endfor %}</table>{% endif %}
{% if report %}{% include "gate_body" %}{% elif v.gate %}<p class="muted">The gate report of this version could not be read.</p>{% endif %}
{% if validation %}<h2>Training data validation</h2><p><a href="{{ u('/runs/' ~ validation ~ '/artifacts/validation/report.html') }}">Validation report</a></p>{% endif %}
{% if drift_run %}<h2>Latest drift check</h2><p><a href="{{ u('/runs/' ~ drift_run ~ '') }}">Drift run</a>
(<a href="{{ u('/runs/' ~ drift_run ~ '/artifacts/drift/report.html') }}">drift report</a>, when the check logged one)</p>{% endif %}
{% endblock %}"""

_GATE_BODY = """<h2>Gate: <span class="{{ 'pass' if report.decision.passed else 'fail' }}">{{ report.decision.verdict }}</span>
<span class="muted">v{{ report.challenger_version }} against {{ 'v' ~ report.champion_version if report.champion_version else 'no champion' }}
({{ report.decision.basis }})</span></h2>
{% if gate_png %}<p><img alt="gate chart" style="max-width:100%" src="{{ gate_png }}"></p>{% endif %}
<table><tr><th>Check</th><th>Slice</th><th>Observed</th><th>Champion</th><th>Bound</th><th>Result</th><th>Message</th></tr>
{% for c in report.decision.checks %}<tr><td>{{ c.metric }} ({{ c.kind }})</td><td>{{ c.slice }}</td>
<td class="num">{{ fmt(c.observed) }}{% set ci = interval_of(c) %}{% if ci %}<br><span class="muted">{{ ci }}</span>{% endif %}</td><td class="num">{{ fmt(c.baseline) }}</td><td>{{ fmt_bound(c.bound) }}</td>
<td class="{{ 'pass' if c.passed else 'fail' }}">{{ 'pass' if c.passed else 'FAIL' }}</td><td>{{ c.message }}</td></tr>{% endfor %}</table>
{% for note in report.decision.notes or [] %}<p class="muted">{{ note }}</p>{% endfor %}
<h2>Metrics per slice</h2><table><tr><th>Slice</th><th>Metric</th><th>Challenger</th><th>Champion</th></tr>
{% for slice, values in (report.metrics.challenger or {}).items() %}{% for k, val in values.items() %}
<tr><td>{{ slice }}</td><td>{{ k }}</td><td class="num">{{ fmt(val) }}</td>
<td class="num">{{ fmt(((report.metrics.champion or {}).get(slice) or {}).get(k)) }}</td></tr>{% endfor %}{% endfor %}</table>
{% set g = group_table(report) %}{% if g %}<h2>Metrics per group</h2>
<p class="muted">Groups of {{ g.features|join(', ') or '-' }}{% if g.min_group_size is not none %}; groups under
{{ g.min_group_size }} rows are left out{% endif %}.</p>
<table><tr><th>Group</th><th>Rows (challenger / champion)</th>{% for k in g.metrics %}<th>{{ k }} challenger</th>
<th>{{ k }} champion</th>{% endfor %}</tr>
{% for row in g.rows %}<tr><td>{{ row.group }}</td><td class="num">{{ fmt(row.n_challenger) }} / {{ fmt(row.n_champion) }}</td>
{% for k in g.metrics %}<td class="num">{{ fmt(row.challenger.get(k)) }}</td><td class="num">{{ fmt(row.champion.get(k)) }}</td>
{% endfor %}</tr>{% endfor %}</table>
{% if g.excluded %}<p class="muted">Left out: {% for e in g.excluded %}{{ e.group }} ({{ fmt(e.n) }} rows{% if e.reason %}: {{ e.reason }}{% endif %}){% if not loop.last %}; {% endif %}{% endfor %}</p>{% endif %}
{% endif %}
{% set iv = interval_table(report) %}{% if iv %}<h2>Confidence intervals</h2>
<p class="muted">{{ fmt_level(iv.level) }} bootstrap intervals{% if iv.resamples %} ({{ iv.resamples }} resamples{% if iv.seed is not none %}, seed {{ iv.seed }}{% endif %}){% endif %}.</p>
<table><tr><th>Metric</th><th>Challenger</th><th>Champion</th><th>Difference</th></tr>
{% for row in iv.rows %}<tr><td>{{ row.metric }}</td><td class="num">{{ row.challenger }}</td><td class="num">{{ row.champion }}</td>
<td class="num">{{ row.diff }}</td></tr>{% endfor %}</table>{% endif %}
{% set gaps = report.get('fairness_gaps') or report.get('fairness') %}{% if gaps or report.spec.fairness %}
<h2>Fairness gaps</h2>{% if gaps %}<pre>{{ gaps|tojson(indent=1) }}</pre>{% else %}
<p class="muted">Fairness checks are part of the checks above.</p>{% endif %}{% endif %}
<p class="muted">Evaluated on {{ report.dataset.uri }} ({{ report.dataset.n_rows }} rows, digest {{ (report.dataset.digest or '')[:12] }}).
<a href="{{ u('/runs/' ~ gate_run ~ '/artifacts/gate/gate_report.json') }}">JSON</a></p>"""

_GATE = """{% extends "base" %}{% block title %}Gate report{% endblock %}
{% block crumbs %} / <a href="{{ u('/models/' ~ q(report.model_name)) }}">{{ report.model_name }}</a> /
<a href="{{ u('/models/' ~ q(report.model_name) ~ '/versions/' ~ report.challenger_version) }}">v{{ report.challenger_version }}</a> / gate report{% endblock %}
{% block body %}<h1>Gate report: {{ report.model_name }} v{{ report.challenger_version }}</h1>
{% include "gate_body" %}{% endblock %}"""

_RUN = """{% extends "base" %}{% block title %}Run {{ run.name }}{% endblock %}
{% block crumbs %}{% if run.model_name %} / <a href="{{ u('/models/' ~ q(run.model_name)) }}">{{ run.model_name }}</a>{% endif %} / run {{ run.name }}{% endblock %}
{% block body %}<h1>MLflow run: {{ run.name }}</h1>
<p>{{ run.kind or 'run' }}, {{ run.status }}, started {{ fmt_ms(run.start) }}. Run id <code>{{ run.run_id }}</code>,
experiment {{ run.experiment_id }}.
{% if run.lineage %}Written by Airflow <a target="_top" href="{{ airflow_ti(run.lineage) if run.lineage.task_id else airflow_run(run.lineage) }}">
{{ run.lineage.dag_id }} / {{ run.lineage.run_id }}{% if run.lineage.task_id %} / {{ run.lineage.task_id }}{% endif %}</a>.{% endif %}
{% if mlflow_ui %}<a href="{{ mlflow_ui }}" target="_blank">Open in the MLflow UI</a>{% endif %}</p>
{% if run.kind == 'promotion_gate' %}<p><a href="{{ u('/runs/' ~ run.run_id ~ '/gate') }}">Gate report</a></p>{% endif %}
<h2>Artifacts</h2><ul>{% for path in artifacts %}<li><a href="{{ u('/runs/' ~ run.run_id ~ '/artifacts/' ~ path) }}">{{ path }}</a></li>
{% else %}<li class="muted">none</li>{% endfor %}</ul>
<h2>Metrics</h2><table>{% for k, val in run.metrics|dictsort %}<tr><td>{{ k }}</td><td class="num">{{ '%.4g' % val }}</td></tr>
{% else %}<tr><td class="muted">none</td></tr>{% endfor %}</table>
<h2>Parameters</h2><table>{% for k, val in run.params|dictsort %}<tr><td>{{ k }}</td><td>{{ val }}</td></tr>
{% else %}<tr><td class="muted">none</td></tr>{% endfor %}</table>
<h2>Tags</h2><table>{% for k, val in run.tags|dictsort if not k.startswith('mlflow.') %}<tr><td>{{ k }}</td><td>{{ val }}</td></tr>{% endfor %}</table>
{% endblock %}"""

_ERROR = """{% extends "base" %}{% block title %}{{ code }}{% endblock %}{% block body %}
<h1>{{ code }}: {{ title }}</h1><p>{{ detail }}</p>
{% if code == 401 %}<p><a target="_top" href="{{ login }}">Log in to Airflow</a></p>{% endif %}{% endblock %}"""


#: Rows of the batch table (the newest); the chart shows every batch.
MAX_TABLE_ROWS = 100


@cache
def environment() -> Any:
    from jinja2 import DictLoader, Environment, select_autoescape

    env = Environment(
        loader=DictLoader({
            "base": _BASE, "macros": _MACROS, "models": _MODELS, "model": _MODEL, "version": _VERSION,
            "gate_body": _GATE_BODY, "gate": _GATE, "run": _RUN, "error": _ERROR,
        }),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.globals.update(q=lambda s: quote(str(s), safe=""), fmt=fmt, fmt_bound=fmt_bound, fmt_ms=fmt_ms,
                       group_table=group_table, interval_table=interval_table, interval_of=interval_of,
                       fmt_level=fmt_level,
                       aliases=("champion", "challenger", "previous-champion"), max_rows=MAX_TABLE_ROWS)
    return env


TEMPLATES = ("base", "macros", "models", "model", "version", "gate_body", "gate", "run", "error")


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def compile_templates() -> None:
    """Parse and compile every template now (the warm-up does it, so no page view pays for it)."""
    env = environment()
    for name in TEMPLATES:
        env.get_template(name)


# --------------------------------------------------------------------------- optional report sections
# Newer gate reports carry ``groups`` and ``intervals`` (and ``checks[].interval``); older ones do not, and
# nothing here trusts their shape: anything malformed is left out, never an error page.


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def fmt_pair(pair: Any) -> str:
    """``[lo, hi]`` as text; ``-`` when absent or malformed."""
    if isinstance(pair, list | tuple) and len(pair) == 2 and all(_number(x) is not None for x in pair):
        return f"[{fmt(float(pair[0]))}, {fmt(float(pair[1]))}]"
    return "-"


def fmt_level(level: Any) -> str:
    level = _number(level)
    return f"{level * 100:g}%" if level is not None and 0 < level < 1 else "Confidence"


def group_table(report: Any) -> dict[str, Any] | None:
    """The report's ``groups`` as rows (group, rows and metrics of challenger and champion), or ``None``."""
    groups = _dict(_dict(report).get("groups"))
    challenger, champion = _dict(groups.get("challenger")), _dict(groups.get("champion"))
    if not challenger and not champion:
        return None
    labels = list(dict.fromkeys([*challenger, *champion]))
    metrics: list[str] = []
    rows = []
    for label in labels:
        mine, theirs = _dict(challenger.get(label)), _dict(champion.get(label))
        m_mine = {str(k): _number(v) for k, v in _dict(mine.get("metrics")).items()}
        m_theirs = {str(k): _number(v) for k, v in _dict(theirs.get("metrics")).items()}
        metrics.extend(k for k in [*m_mine, *m_theirs] if k not in metrics)
        rows.append({"group": str(label), "n_challenger": _number(mine.get("n")), "n_champion": _number(theirs.get("n")),
                     "challenger": m_mine, "champion": m_theirs})
    features = groups.get("features")
    excluded = [
        {"group": str(e.get("group", "?")), "n": _number(e.get("n")), "reason": str(e.get("reason") or "")}
        for e in (groups.get("excluded") if isinstance(groups.get("excluded"), list) else []) if isinstance(e, dict)
    ]
    return {
        "features": [str(f) for f in features] if isinstance(features, list) else [],
        "min_group_size": _number(groups.get("min_group_size")),
        "metrics": metrics, "rows": rows, "excluded": excluded,
    }


def interval_table(report: Any) -> dict[str, Any] | None:
    """The report's ``intervals`` as rows (metric, challenger, champion, difference), or ``None``."""
    intervals = _dict(_dict(report).get("intervals"))
    metrics = _dict(intervals.get("metrics"))
    if not metrics:
        return None
    rows = [
        {"metric": str(name), **{role: fmt_pair(_dict(values).get(role)) for role in ("challenger", "champion", "diff")}}
        for name, values in metrics.items()
    ]
    return {"level": intervals.get("level"), "resamples": _number(intervals.get("resamples")),
            "seed": _number(intervals.get("seed")), "rows": rows}


def interval_of(check: Any) -> str | None:
    """A check's interval (``checks[].interval``) as one line, or ``None``."""
    interval = _dict(_dict(check).get("interval"))
    observed, diff = fmt_pair(interval.get("observed")), fmt_pair(interval.get("diff"))
    if observed == "-" and diff == "-":
        return None
    parts = [f"{fmt_level(interval.get('level'))} {observed}"] if observed != "-" else []
    if diff != "-":
        parts.append(f"diff {diff}")
    return ", ".join(parts)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fmt_bound(bound: Any) -> str:
    if not isinstance(bound, dict):
        return fmt(bound)
    if "direction" in bound:  # a change check: how much worse than the champion is allowed
        parts = [f"{fmt(abs(bound[k]))}{' relative' if k == 'relative' else ''}"
                 for k in ("absolute", "relative") if bound.get(k) is not None]
        return f"{bound['direction'].replace('_', ' ')}, at most {' / '.join(parts) or '0'} worse than the champion"
    low, high = bound.get("lower_bound"), bound.get("upper_bound")
    if low is not None and high is not None:
        return f"[{fmt(low)}, {fmt(high)}]"
    if low is not None:
        return f">= {fmt(low)}"
    if high is not None:
        return f"<= {fmt(high)}"
    return json.dumps(bound)


def fmt_ms(ms: Any) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------- timeline chart (SVG)

_W, _LEFT, _RIGHT = 1200, 110, 50


def timeline_svg(timeline: dict[str, Any], model: dict[str, Any], run_href: Any = None) -> str:
    """
    Three lanes on one time axis: validation, drift share vs threshold, live accuracy vs champion.

    A point opens its batch's row of the table (the newest :data:`MAX_TABLE_ROWS` batches), or for older
    batches the page of its run (``run_href(run_id)``).
    """
    from html import escape

    batches = timeline["batches"]
    events = timeline["events"]
    times = [b["at"] for b in batches] + [e["at"] for e in events if e["at"]] + [
        t["at"] for t in timeline["training"] if t["at"]
    ]
    if not times:
        return '<p class="muted">Nothing to draw yet.</p>'
    t0, t1 = min(times), max(times)
    span = max(t1 - t0, 1)
    lanes = {"validation": (30, 40), "drift share": (100, 120), "live accuracy": (260, 120)}
    height = 400

    def x(t: int) -> float:
        return _LEFT + (t - t0) / span * (_W - _LEFT - _RIGHT)

    parts = [f'<svg id="timeline" role="img" aria-label="model timeline" width="{_W}" height="{height}" '
             f'viewBox="0 0 {_W} {height}" xmlns="http://www.w3.org/2000/svg" style="max-width:100%">']
    for label, (top, h) in lanes.items():
        parts.append(f'<text x="4" y="{top + h / 2 + 4}">{label}</text>')
        parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{top + h}" y2="{top + h}" stroke="#a0aec0"/>')
    # versions registered (dashed) and alias moves (solid)
    for t in timeline["training"]:
        if t["at"]:
            xx = x(t["at"])
            parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="20" y2="{height - 20}" stroke="#a0aec0" '
                         f'stroke-dasharray="4 3"><title>v{escape(t["version"])} registered</title></line>')
            parts.append(f'<text x="{xx + 2:.1f}" y="{height - 6}">v{escape(t["version"])}</text>')
    for e in events:
        if e["at"]:
            xx = x(e["at"])
            colour = "#c53030" if e["action"] == "rollback" else "#2f855a"
            parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="20" y2="{height - 20}" stroke="{colour}" '
                         f'stroke-width="2"><title>{escape(e["action"])} champion -&gt; v{escape(str(e["to"]))}: '
                         f'{escape(e["reason"])}</title></line>')
    d_top, d_h = lanes["drift share"]
    a_top, a_h = lanes["live accuracy"]
    accs = [v for b in batches if b.get("performance") for v in (
        b["performance"]["live"].get("accuracy"), b["performance"]["champion"].get("accuracy")) if v is not None]
    a_lo = min(accs + [1.0]) - 0.05 if accs else 0.0
    a_lo = max(0.0, min(a_lo, 0.9))

    def ya(v: float) -> float:
        return a_top + a_h - (v - a_lo) / (1 - a_lo) * a_h

    parts.append(f'<text x="{_LEFT - 4}" y="{d_top + 4}" text-anchor="end">1.0</text>')
    parts.append(f'<text x="{_LEFT - 4}" y="{d_top + d_h}" text-anchor="end">0</text>')
    parts.append(f'<text x="{_LEFT - 4}" y="{a_top + 4}" text-anchor="end">1.0</text>')
    parts.append(f'<text x="{_LEFT - 4}" y="{a_top + a_h}" text-anchor="end">{a_lo:.2f}</text>')
    in_table = len(batches) - MAX_TABLE_ROWS
    for b in batches:
        xx = x(b["at"])
        link = f'#batch-{b["n"]}'
        if b["n"] <= in_table and run_href is not None and b["runs"]:
            link = escape(run_href(next(iter(b["runs"].values()))["run_id"]))
        label = escape(b["label"])
        if b.get("validation") is not None:
            colour = "#2f855a" if b["validation"] else "#c53030"
            parts.append(f'<a href="{link}"><circle class="point validation" cx="{xx:.1f}" cy="50" r="7" '
                         f'fill="{colour}"><title>{label}: validation '
                         f'{"passed" if b["validation"] else "failed (quarantined)"}</title></circle></a>')
        if b.get("drift_share") is not None:
            share = b["drift_share"]
            y = d_top + d_h - share * d_h
            colour = "#c53030" if b.get("drift") else "#3182ce"
            parts.append(f'<a href="{link}"><circle class="point drift" cx="{xx:.1f}" cy="{y:.1f}" r="6" '
                         f'fill="{colour}"><title>{label}: drift share {share:.2f}</title></circle></a>')
            parts.append(f'<text x="{xx + 8:.1f}" y="{y - 6:.1f}">{share:.2f}</text>')
            if b.get("drift_threshold") is not None:
                yt = d_top + d_h - b["drift_threshold"] * d_h
                parts.append(f'<line x1="{xx - 10:.1f}" x2="{xx + 10:.1f}" y1="{yt:.1f}" y2="{yt:.1f}" '
                             f'stroke="#c53030" stroke-width="2"><title>threshold {b["drift_threshold"]:.2f}'
                             f'</title></line>')
        perf = b.get("performance")
        if perf and perf["live"].get("accuracy") is not None:
            live = perf["live"]["accuracy"]
            champ = perf["champion"].get("accuracy")
            colour = "#c53030" if perf.get("verdict") == "decay" else "#2f855a"
            if champ is not None:
                parts.append(f'<line x1="{xx - 10:.1f}" x2="{xx + 10:.1f}" y1="{ya(champ):.1f}" '
                             f'y2="{ya(champ):.1f}" stroke="#718096" stroke-width="2"><title>champion '
                             f'{champ:.3f}</title></line>')
            parts.append(f'<a href="{link}"><circle class="point accuracy" cx="{xx:.1f}" cy="{ya(live):.1f}" '
                         f'r="6" fill="{colour}"><title>{label}: live accuracy {live:.3f}'
                         f'{f" vs champion {champ:.3f}" if champ is not None else ""}</title></circle></a>')
            parts.append(f'<text x="{xx + 8:.1f}" y="{ya(live) - 6:.1f}">{live:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)
