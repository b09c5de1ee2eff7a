"""The provider as a user installs it: a built wheel in a clean virtualenv, one per supported Airflow.

Used by ``tests/system/test_installed_wheel.py``.

* :func:`build_dist` builds the sdist and the wheel with ``python -m build`` from a copy of the files the
  ``Dockerfile``'s ``wheel`` stage copies, so the checkout gets no ``build/`` or ``*.egg-info`` (an
  ``*.egg-info`` beside the editable install would make Airflow load the plugin twice).
* :func:`clean_venv` returns a virtualenv holding everything the wheel needs under one constraints file,
  but not the provider itself.  Creating one takes minutes (about 1.5 GB), so it is cached outside the
  checkout, in ``~/.cache/airflow-provider-mlops/venvs/<sha256>`` (``MLOPS_VENV_CACHE`` moves it), keyed by
  the constraints file, the wheel's ``Requires-Dist`` (without extras) and the Python version: a new pin or a new
  dependency makes a new venv.  A venv is complete only once its ``.complete`` marker exists (an
  interrupted creation is started again), and a file lock keeps two test sessions from sharing one at the
  same time.  Caches older than the current key are left alone (delete the folder to reclaim the space).
* :func:`install_wheel` uninstalls any earlier provider from that venv and installs the fresh wheel.
"""

from __future__ import annotations

import email.parser
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIST_NAME = "airflow-provider-mlops"
PYTHON = os.environ.get("MLOPS_VENV_PYTHON", "python3.11")

#: The supported Airflow range, lowest and highest, each with the constraints file it is proven with.
CONSTRAINTS = {
    "3.3.0": ROOT / "constraints" / "airflow-3.3.0.txt",
    "3.3.2": ROOT / "constraints.txt",
}


def cache_root() -> Path:
    return Path(os.environ.get("MLOPS_VENV_CACHE") or Path.home() / ".cache" / "airflow-provider-mlops" / "venvs")


def dockerfile_sources() -> list[str]:
    """The files and folders the Dockerfile's ``wheel`` stage copies to ``/src`` (the build's inputs)."""
    sources: list[str] = []
    stage = None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            stage = words[-1]
        elif stage == "wheel" and words[:1] == ["COPY"]:
            *args, dest = words[1:]
            if dest.startswith("/src"):
                sources += [a for a in args if not a.startswith("--")]
    return sources


def build_dist(out: Path, python: str = sys.executable, env: dict[str, str] | None = None) -> tuple[Path, Path]:
    """``python -m build`` (sdist, then the wheel from it) on a copy of the build inputs; ``(sdist, wheel)``."""
    src = out / "src"
    for name in dockerfile_sources():
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    # the sdist also carries the constraints files (MANIFEST.in); the Dockerfile's stage needs only the wheel
    shutil.copytree(ROOT / "constraints", src / "constraints", dirs_exist_ok=True)
    subprocess.run([python, "-m", "build", "--outdir", str(out / "dist"), str(src)], check=True,
                   capture_output=True, text=True, env=env)
    (sdist,) = (out / "dist").glob("*.tar.gz")
    (wheel,) = (out / "dist").glob("*.whl")
    return sdist, wheel


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def venv_key(constraints: Path, wheel: Path) -> str:
    digest = hashlib.sha256()
    digest.update(constraints.read_bytes())
    for req in sorted(wheel_metadata(wheel).get_all("Requires-Dist") or []):
        if "extra ==" not in req:  # the venv installs no extra: a new dev tool needs no new venv
            digest.update(req.encode() + b"\n")
    version = subprocess.run([PYTHON, "-c", "import sys; print(sys.version)"], capture_output=True, text=True,
                             check=True).stdout
    digest.update(version.encode())
    return digest.hexdigest()[:32]


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell in ``venv``: its ``bin`` first on ``PATH``, no checkout anywhere."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("AIRFLOW", "MLOPS_", "MLFLOW_"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT / ".venv" / "bin"]
    env.update(PATH=os.pathsep.join([str(venv / "bin"), *path]), VIRTUAL_ENV=str(venv), PYTHONNOUSERSITE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip(venv: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", *args], capture_output=True, text=True,
                          env=clean_env(venv), timeout=timeout, check=True)


def create_venv(venv: Path, constraints: Path, wheel: Path, log: list[str]) -> None:
    """A fresh venv with every dependency of ``wheel`` pinned by ``constraints``, without the provider.

    With ``uv`` (the dev extra installs it) the venv is made by ``uv venv --seed`` and filled by
    ``uv pip install`` (parallel downloads, files linked from uv's cache: minutes faster on a cold cache);
    without it, by ``python -m venv`` and pip.  Either way the venv has pip, which the README's install
    step uses, and ``pip check`` must pass.
    """
    shutil.rmtree(venv, ignore_errors=True)
    started = time.monotonic()
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv:
        env = clean_env(venv)
        subprocess.run([uv, "venv", "-q", "--seed", "--python", PYTHON, str(venv)], check=True, env=env,
                       capture_output=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel),
                        "-c", str(constraints)], check=True, env=env, capture_output=True, timeout=1800)
        tool = "uv"
    else:
        subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
        _pip(venv, "install", "-q", "--upgrade", "pip")  # as the Makefile does: the bundled pip is older
        _pip(venv, "install", "-q", str(wheel), "-c", str(constraints))
        tool = "pip"
    _pip(venv, "uninstall", "-y", "-q", DIST_NAME)
    _pip(venv, "check")
    assert (venv / "bin" / "airflow").exists(), f"{tool} left {venv} without Airflow"
    (venv / ".complete").write_text(f"{constraints.name}\n{tool}: {time.monotonic() - started:.0f} s\n")
    log.append(f"created {venv} with {tool} in {time.monotonic() - started:.0f} s")


@contextmanager
def clean_venv(constraints: Path, wheel: Path, log: list[str]) -> Iterator[Path]:
    """The cached venv for ``constraints`` + the wheel's dependencies, locked while the caller uses it."""
    key = venv_key(constraints, wheel)
    venv = cache_root() / key
    with locked(cache_root() / f"{key}.lock"):
        if not (venv / ".complete").exists():
            create_venv(venv, constraints, wheel, log)
        else:
            log.append(f"reused {venv}")
        yield venv


def install_wheel(venv: Path, wheel: Path) -> None:
    """Uninstall an earlier provider (a previous run's wheel), then install ``wheel`` without touching the rest."""
    _pip(venv, "uninstall", "-y", "-q", DIST_NAME)
    _pip(venv, "install", "-q", "--no-deps", str(wheel))
