"""Write ``docs/api.md``: every operator, sensor, trigger, hook and pipeline function, from the code.

    .venv/bin/python scripts/api_doc.py          # rewrite docs/api.md
    .venv/bin/python scripts/api_doc.py --check  # exit 1 and print a diff when the page is stale

What each table row holds, and where it comes from:

* argument, type and default: ``inspect.signature`` (the annotation as written in the source);
* allowed values: the parse-time checks of the class (``check_choice`` / ``check_number`` calls in its
  methods, ``_args.py``), evaluated in the module, so the page lists exactly what the code accepts;
* templated: the argument is in ``template_fields`` (Jinja is rendered before ``execute()``);
* description: its ``:param name:`` text in the docstring.

The classes are the modules listed by ``get_provider_info()`` (what Airflow registers); the pipeline
functions are the public functions of ``mlops_provider.pipelines`` and ``mlops_provider.pipeline_dags``.
``tests/unit/test_api_doc.py`` fails when the page and the code differ.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"
PIPELINE_MODULES = ("mlops_provider.pipelines", "mlops_provider.pipeline_dags")
SECTIONS = (("operators", "Operators"), ("sensors", "Sensors"), ("triggers", "Triggers"), ("hooks", "Hooks"))

HEADER = """# API reference

Every operator, sensor, trigger, hook and pipeline function of `airflow-provider-mlops` {version}, with
its arguments, their types, defaults and allowed values. Generated from the code by
`scripts/api_doc.py` (`.venv/bin/python scripts/api_doc.py` rewrites this page);
`tests/unit/test_api_doc.py` fails when the page and the code differ, so it cannot drift.

- **type**: the annotation in the signature. `| str` on a non-string argument means it is templated:
  a Jinja string rendered before `execute()` and checked then.
- **allowed**: what the parse-time checks accept (`_args.py`); a value outside it fails when the DAG
  file is parsed, naming the argument, the value and the allowed ones. Templated values are checked
  after rendering.
- **templated**: the argument is in the class's `template_fields`.
- Operators and sensors also take every `BaseOperator` argument (`task_id`, `retries`, `pool`, ...).

The task-level how-tos are in `docs/operators/`; the pipeline YAML's fields in `docs/pipelines.md`.
"""


# ------------------------------------------------------------------ what the parse-time checks allow


def _number_rule(keywords: dict[str, Any]) -> str:
    kind = "integer" if keywords.get("integer") else "number"
    low, high = keywords.get("low"), keywords.get("high")
    low_open, high_open = keywords.get("low_open", False), keywords.get("high_open", False)
    if low is not None and high is not None:
        rule = f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        rule = f"{kind} {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        rule = f"{kind} {'<' if high_open else '<='} {high:g}"
    else:
        rule = f"finite {kind}"
    return rule + (" or None" if keywords.get("optional") else "")


def _literal_kwargs(call: ast.Call, namespace: dict[str, Any]) -> dict[str, Any] | None:
    out = {}
    for kw in call.keywords:
        try:
            out[kw.arg] = eval(compile(ast.Expression(kw.value), "<kw>", "eval"), namespace)  # noqa: S307
        except Exception:  # noqa: BLE001 - a bound computed at run time: not a documented constant
            return None
    return out


def allowed_values(cls: type) -> dict[str, str]:
    """``argument -> rule`` from the ``check_choice`` / ``check_number`` calls in ``cls``'s own methods."""
    module = sys.modules[cls.__module__]
    rules: dict[str, str] = {}
    trees = []
    for klass in reversed([k for k in cls.__mro__ if k.__module__.startswith("mlops_provider")]):
        try:
            trees.append(ast.parse(textwrap.dedent(inspect.getsource(klass))))
        except (OSError, TypeError):
            continue
    # module-level helpers the class calls (``_check_thresholds(...)`` in ``__init__``), one level deep
    called = {n.func.id for t in trees for n in ast.walk(t) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    helpers = [obj for name, obj in vars(module).items() if name in called and inspect.isfunction(obj)
               and obj.__module__ == module.__name__ and name not in ("check_choice", "check_number")]
    trees = [ast.parse(textwrap.dedent(inspect.getsource(f))) for f in helpers] + trees
    for tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in ("check_choice", "check_number") or len(node.args) < 3:
                continue
            name = node.args[1]
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                continue
            keywords = _literal_kwargs(node, vars(module))
            if keywords is None:
                continue
            if node.func.id == "check_number":
                rules[name.value] = _number_rule(keywords)
            elif len(node.args) >= 4:
                try:
                    values = eval(compile(ast.Expression(node.args[3]), "<allowed>", "eval"), vars(module))  # noqa: S307
                except Exception:  # noqa: BLE001 - computed from the instance: not a constant set
                    continue
                rule = ", ".join(f"`{v!r}`" for v in values)
                rules[name.value] = rule + (" or None" if keywords.get("optional") else "")
    return rules


# ------------------------------------------------------------------ docstrings


def param_docs(*objects: Any) -> dict[str, str]:
    """``:param name: text`` of the docstrings, first sentence, on one line."""
    docs: dict[str, str] = {}
    for obj in objects:
        doc = inspect.getdoc(obj) or ""
        for match in re.finditer(r":param (\w+):(.*?)(?=\n\s*:(?:param|type|raises?|returns?|rtype|yields?)\b|\Z)", doc, re.S):
            docs.setdefault(match.group(1), _markdown(" ".join(match.group(2).split())))
    return docs


def _markdown(text: str) -> str:
    """reStructuredText inline markup of the docstrings as Markdown."""
    text = text.replace("``", "`")
    return re.sub(r":(?:class|func|meth|data|attr|mod):`~?([^`]+)`", r"`\1`", text)


def summary(obj: Any) -> str:
    """The docstring's first paragraph."""
    doc = inspect.getdoc(obj) or ""
    first = doc.strip().split("\n\n")[0]
    return _markdown(" ".join(first.split()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(param: inspect.Parameter) -> str:
    if param.default is inspect.Parameter.empty:
        return "required"
    return f"`{param.default!r}`"


def _annotation(param: inspect.Parameter) -> str:
    if param.annotation is inspect.Parameter.empty:
        return ""
    text = param.annotation if isinstance(param.annotation, str) else inspect.formatannotation(param.annotation)
    return f"`{text}`"


def parameters(func: Any, skip_self: bool = True) -> list[inspect.Parameter]:
    params = list(inspect.signature(func).parameters.values())
    return [p for p in params if not (skip_self and p.name == "self")
            and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]


def table(params: list[inspect.Parameter], docs: dict[str, str], rules: dict[str, str],
          templated: set[str] | None) -> list[str]:
    if not params:
        return ["No arguments.", ""]
    head = ["argument", "type", "default", "allowed"] + (["templated"] if templated is not None else []) + ["description"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in params:
        row = [f"`{p.name}`", _annotation(p), _default(p), rules.get(p.name, "")]
        if templated is not None:
            row.append("yes" if p.name in templated else "")
        row.append(docs.get(p.name, ""))
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines + [""]


# ------------------------------------------------------------------ what is public


def provider_classes() -> dict[str, list[type]]:
    from mlops_provider.get_provider_info import get_provider_info

    info = get_provider_info()
    found: dict[str, list[type]] = {}
    for section, _ in SECTIONS:
        classes: list[type] = []
        for entry in info[section]:
            for name in entry["python-modules"]:
                module = importlib.import_module(name)
                for obj in vars(module).values():
                    if inspect.isclass(obj) and obj.__module__ == name and not obj.__name__.startswith("_") \
                            and _is_airflow_class(obj):
                        classes.append(obj)
        found[section] = classes
    return found


def _is_airflow_class(cls: type) -> bool:
    names = {k.__name__ for k in cls.__mro__}
    return bool(names & {"BaseOperator", "BaseSensorOperator", "BaseTrigger", "BaseHook"})


def pipeline_functions() -> list[Any]:
    """The public functions of ``mlops_provider.pipelines`` (its ``__all__`` when it has one), then the DAG
    builders of ``mlops_provider.pipeline_dags`` (its ``__all__``, else the ``build_*`` functions that
    ``pipelines`` does not already wrap)."""
    funcs: list[Any] = []
    for index, name in enumerate(PIPELINE_MODULES):
        module = importlib.import_module(name)
        public = getattr(module, "__all__", None)
        for attr, obj in vars(module).items():
            if attr.startswith("_") or not inspect.isfunction(obj) or obj.__module__ != name:
                continue
            if public is not None:
                keep = attr in public
            else:
                keep = index == 0 or (attr.startswith("build_") and attr not in {f.__name__ for f in funcs})
            if keep:
                funcs.append(obj)
    return funcs


def same_named(func: Any) -> list[Any]:
    """``func`` and its namesakes in the other pipeline modules (a wrapper documents its arguments there)."""
    found = [func]
    for name in PIPELINE_MODULES:
        other = getattr(importlib.import_module(name), func.__name__, None)
        if inspect.isfunction(other) and other is not func:
            found.append(other)
    return found


def hook_methods(cls: type) -> list[Any]:
    return [obj for attr, obj in vars(cls).items()
            if not attr.startswith("_") and inspect.isfunction(obj)]


# ------------------------------------------------------------------ the page


def render() -> str:
    from mlops_provider import __version__

    out = [HEADER.format(version=__version__)]
    classes = provider_classes()
    for section, title in SECTIONS:
        out += [f"## {title}", ""]
        for cls in classes[section]:
            out += [f"### {cls.__name__}", "", f"`from {cls.__module__} import {cls.__name__}`", ""]
            if summary(cls):
                out += [summary(cls), ""]
            templated = set(getattr(cls, "template_fields", ()) or ()) if section in ("operators", "sensors") else None
            out += table(parameters(cls.__init__), param_docs(cls, cls.__init__), allowed_values(cls), templated)
            if section == "hooks":
                for method in hook_methods(cls):
                    out += [f"#### {cls.__name__}.{method.__name__}", ""]
                    if summary(method):
                        out += [summary(method), ""]
                    out += table(parameters(method), param_docs(method), {}, None)
    out += ["## Pipeline functions", ""]
    for func in pipeline_functions():
        out += [f"### {func.__name__}", "", f"`from {func.__module__} import {func.__name__}`", ""]
        if summary(func):
            out += [summary(func), ""]
        out += table(parameters(func, skip_self=False), param_docs(*same_named(func)), {}, None)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != page:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), page.splitlines(True),
                                                       "docs/api.md", "from the code"))
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
