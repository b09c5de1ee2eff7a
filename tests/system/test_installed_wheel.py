"""The provider as a user installs it: the built wheel in a clean virtualenv, on the lowest and the highest
supported Airflow (``tests/helpers/installed.py``).

For each supported Airflow series this runs the README's quick start "add it to an existing Airflow 3"
block by block, as written: install the wheel with that Airflow's constraints file, add the ``mlflow``
connection, write the training data, the DAG file and the pipeline YAML (with its contracts), then check
that the DAG folder parses with no import error and run the level-1 pipeline once with
``airflow dags test``, against a ``sqlite:///`` MLflow store, until a champion is promoted.  The venv holds
no editable install and the commands run from a temporary folder, so nothing of the checkout is on
``sys.path`` (checked).  The venvs are cached by constraints hash outside the checkout; a cold cache
builds them (minutes, see docs/performance.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers.installed import (
    CONSTRAINTS,
    DIST_NAME,
    ROOT,
    clean_env,
    clean_venv,
    dockerfile_sources,
    wheel_metadata,
)

QUICK_START = "## Quick start: add it to an existing Airflow 3"
MODEL = "breast_cancer"
#: The DAGs the quick start's one DAG file builds from its one pipeline YAML.
DAG_IDS = {f"continuous_training__{MODEL}", f"drift_monitor__{MODEL}", f"performance_monitor__{MODEL}",
           f"cicd_pipeline__{MODEL}"}
#: What each run took (printed at the end of the module: cold and warm venv times for docs/performance.md).
TIMINGS: list[str] = []


def quick_start_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block of the README's second quick start, in order."""
    text = (ROOT / "README.md").read_text()
    start = text.index(QUICK_START)
    end = text.index("\n## ", start + len(QUICK_START))
    return re.findall(r"```(\w+)\n(.*?)```", text[start:end], re.S)


def run_block(code: str, cwd: Path, env: dict[str, str], timeout: float = 900) -> tuple[str, dict[str, str]]:
    """Run a bash block as a user's shell would (``set -e``); returns its output and the environment it
    leaves behind (``export`` carries over to the next block, as in one terminal)."""
    env_file = cwd / ".block-env"
    script = f"set -euo pipefail\n{code}\nenv -0 > {env_file}\n"
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"README block failed ({proc.returncode}):\n{code}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    after = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
    env_file.unlink()
    return proc.stdout + proc.stderr, {k: v for k, v in after.items() if k not in ("SHLVL", "_", "PWD", "OLDPWD")}


@pytest.fixture(scope="module", autouse=True)
def report_timings(request):
    """Prints what the module's steps took (cold or warm venv cache) when it ends, for docs/performance.md."""
    yield
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even when every test passed
            reporter.write_line("")
            for line in TIMINGS:
                reporter.write_line(f"installed-wheel timing: {line}")


# ---------------------------------------------------------------- the distribution (built once)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of what a checkout gives a user (the build inputs and the constraints files), built with the
    README's first block: ``dist/`` holds the sdist and the wheel.  The real checkout gets no build output."""
    src = tmp_path_factory.mktemp("checkout")
    for name in [*dockerfile_sources(), "constraints"]:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    lang, build = quick_start_blocks()[0]
    assert lang == "bash" and "python -m build" in build
    started = time.monotonic()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run_block(build, src, env)
    TIMINGS.append(f"build sdist + wheel: {time.monotonic() - started:.0f} s")
    return src


@pytest.fixture(scope="module")
def wheel(checkout) -> Path:
    (path,) = (checkout / "dist").glob("*.whl")
    return path


def test_sdist_and_wheel_pass_twine_check(checkout):
    files = sorted((checkout / "dist").iterdir())
    assert sorted(f.suffix for f in files) == [".gz", ".whl"], files
    out = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASSED") == 2, out.stdout


def test_wheel_holds_the_runtime_files_and_nothing_else(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "provider" / "mlops_provider"
    modules = {f"mlops_provider/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    schemas = {f"mlops_provider/lineage/schemas/{p.name}" for p in (package / "lineage" / "schemas").glob("*.json")}
    assert schemas and schemas <= names
    static = {f"mlops_provider/{p.relative_to(package).as_posix()}" for p in package.rglob("*")
              if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert static <= names, f"package data missing from the wheel: {sorted(static - names)}"
    top = {n.split("/")[0] for n in names}
    assert top == {"mlops_provider", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, top
    assert not [n for n in names if "tests/" in n or n.startswith(("dags/", "scripts/")) or n.endswith(".pyc")]


def test_version_lives_in_one_place(checkout, wheel):
    import tomllib

    from mlops_provider import __version__
    from mlops_provider.get_provider_info import get_provider_info

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    meta = wheel_metadata(wheel)
    assert meta["Version"] == __version__ and f"-{__version__}-" in wheel.name
    assert get_provider_info()["versions"][0] == __version__
    assert f"## {__version__} " in (ROOT / "CHANGELOG.md").read_text()
    for doc in (ROOT / "README.md", ROOT / "docs" / "index.md"):  # wheel names written out in the docs
        assert set(re.findall(r"airflow_provider_mlops-([0-9][^-]*)-py3", doc.read_text())) <= {__version__}, doc
    requires = meta.get_all("Requires-Dist")
    assert any(re.fullmatch(r"apache-airflow<4,>=3\.3\.0", r.replace(" ", "")) for r in requires), requires
    assert "Programming Language :: Python :: 3.11" in meta.get_all("Classifier")
    (sdist,) = (checkout / "dist").glob("*.tar.gz")
    members = {m.split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m}
    assert {"CHANGELOG.md", "LICENSE", "README.md", "constraints.txt", "constraints/airflow-3.3.0.txt"} <= members


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_supported_airflow_range_is_what_the_constraints_prove(wheel):
    """The lower bound in the metadata is the Airflow of the lowest constraints file; the docs name both."""
    pins = {}
    for series, path in CONSTRAINTS.items():
        (pin,) = re.findall(r"^apache-airflow==(\S+)$", path.read_text(), re.M)
        assert pin == series, (series, pin)
        pins[series] = pin
    lowest, highest = min(pins.values(), key=_version), max(pins.values(), key=_version)
    requires = [r.replace(" ", "") for r in wheel_metadata(wheel).get_all("Requires-Dist")]
    assert f"apache-airflow<4,>={lowest}" in requires, requires
    for doc in ("README.md", "docs/index.md", "CHANGELOG.md"):
        text = (ROOT / doc).read_text()
        assert lowest in text and highest in text, doc


# ---------------------------------------------------------------- installed, per supported Airflow


@pytest.fixture(scope="module", params=sorted(CONSTRAINTS))
def installed(request, checkout, wheel, tmp_path_factory):
    """The README's install block in the cached clean venv of one Airflow series, then an Airflow home
    (a fresh SQLite metadata DB, like an existing deployment) with the quick start's files and data."""
    series = request.param
    constraints = CONSTRAINTS[series]
    log: list[str] = []
    started = time.monotonic()
    with clean_venv(constraints, wheel, log) as venv:
        TIMINGS.append(f"Airflow {series} venv: {log[-1]} ({time.monotonic() - started:.0f} s)")
        home = tmp_path_factory.mktemp(f"airflow-{series}")
        env = clean_env(venv, AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", DIST_NAME],
                       env=env, check=True, capture_output=True)
        blocks = quick_start_blocks()[1:]
        lang, install = blocks[0]
        relative = constraints.relative_to(ROOT).as_posix()
        if relative != "constraints.txt":  # the block's comment names the other constraints file
            assert relative in install
            install = install.replace("-c constraints.txt", f"-c {relative}")
        step = time.monotonic()
        out, env = run_block(install, checkout, env)
        TIMINGS.append(f"Airflow {series}: README install (wheel + resolve against the venv): {time.monotonic() - step:.0f} s")
        assert "airflow-provider-mlops" in out
        subprocess.run(["airflow", "db", "migrate"], cwd=checkout, env=env, check=True, capture_output=True, timeout=600)
        yield {"series": series, "venv": venv, "home": home, "env": env, "blocks": blocks[1:], "cwd": checkout,
               "install_output": out}
    TIMINGS.append(f"Airflow {series}: whole module fixture {time.monotonic() - started:.0f} s")


def _airflow(installed, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["airflow", *args], cwd=installed["cwd"], env=installed["env"], capture_output=True,
                          text=True, timeout=timeout)


def _json(stdout: str):
    """The JSON document of a CLI's ``-o json`` output (log lines may come first)."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("[", "{")):
            try:
                return json.loads("\n".join(lines[i:]))
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"no JSON in the output:\n{stdout[-3000:]}")


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    probe = ("import json, sys, airflow, mlops_provider, importlib.metadata as m; print(json.dumps("
             "{'file': mlops_provider.__file__, 'path': sys.path, 'airflow': airflow.__version__, "
             "'dist': m.distribution('airflow-provider-mlops').read_text('direct_url.json')}))")
    out = subprocess.run(["python", "-c", probe], cwd=installed["home"], env=installed["env"], capture_output=True,
                         text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(info["file"]).is_relative_to(installed["venv"]), info["file"]
    assert not [p for p in info["path"] if p and Path(p).resolve().is_relative_to(ROOT)], info["path"]
    assert info["airflow"] == installed["series"], info["airflow"]
    assert '"editable": true' not in (info["dist"] or "")


def test_airflow_providers_list_and_get_show_it(installed):
    from mlops_provider import __version__

    listed = _airflow(installed, "providers", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    versions = {p["package_name"]: p["version"] for p in _json(listed.stdout)}
    assert versions.get("airflow-provider-mlops") == __version__, versions
    got = _airflow(installed, "providers", "get", "airflow-provider-mlops", "-o", "json")
    assert got.returncode == 0, got.stderr[-3000:]
    assert "airflow-provider-mlops" in got.stdout and __version__ in got.stdout
    assert "airflow-provider-mlops" in installed["install_output"] and __version__ in installed["install_output"]


def test_quick_start_folder_parses_and_the_level_one_pipeline_promotes_a_champion(installed):
    env, cwd, home = installed["env"], installed["cwd"], installed["home"]
    files = []
    outputs = []
    started = time.monotonic()
    for lang, code in installed["blocks"]:
        first = code.splitlines()[0]
        if first.startswith("# file: "):
            path = Path(first[len("# file: "):].replace("$AIRFLOW_HOME", str(home)))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
            files.append(path.relative_to(home).as_posix())
        else:
            assert lang == "bash", code
            out, env = run_block(code, cwd, env)
            outputs.append(out)
    elapsed = time.monotonic() - started
    TIMINGS.append(f"Airflow {installed['series']}: quick start (connection, data, parse, dags test): {elapsed:.0f} s")
    # the DAG folder holds only the user's DAG file and the pipeline YAML (with the contracts it names)
    dags = home / "dags"
    on_disk = sorted(p.relative_to(home).as_posix() for p in dags.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert on_disk == sorted(files) == ["dags/mlops_pipelines.py", "dags/pipelines/breast_cancer.yaml",
                                        "dags/pipelines/contracts/breast_cancer_batch.yaml",
                                        "dags/pipelines/contracts/breast_cancer_training.yaml"]
    assert len((dags / "mlops_pipelines.py").read_text().strip().splitlines()) <= 6
    # it parses with no import error, into the four DAGs
    assert "No data found" in outputs[-1], outputs[-1][:3000]  # the README block's list-import-errors
    errors = _airflow(installed, "dags", "list-import-errors", "--local", "-o", "json")
    assert errors.returncode == 0 and _json(errors.stdout) == [], errors.stdout[-3000:] + errors.stderr[-3000:]
    listed = _airflow(installed, "dags", "list", "--local", "-o", "json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert DAG_IDS <= {d["dag_id"] for d in _json(listed.stdout)}
    # the last block ran the level-1 pipeline: every task succeeded (or was skipped by design) and v1 is champion
    run = outputs[-1]
    assert "champion: version 1" in run, run[-6000:]
    assert not re.search(r"Marking task as FAILED|state=failed|\bTask failed\b", run), run[-6000:]
