"""docs/deployment.md can be followed: the newcomer's commands, run as written, end with a promoted champion.

The page's shell blocks marked ``<!-- run: newcomer -->`` are run in order in a copy of the checkout (its
tracked and new files, modification times kept) whose ``.venv`` links to the virtualenv this suite runs in:
the page's install step (``make install``) is the one thing not run, since it would rebuild that virtualenv.
Between ``gen-env`` and ``up`` the test edits ``.env`` as the page tells a reader to: free ports, fresh
database names, its own Redis database.  The remaining blocks run in one ``bash -eu`` shell (the page's
variables carry over from block to block, as in a reader's terminal).

Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (marked ``postgres``): starts its own twin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deployment.md"
sys.path.insert(0, str(ROOT / "scripts"))
RUN = re.compile(r"<!-- run: newcomer -->\n```bash\n(.*?)```", re.S)

pytestmark = pytest.mark.postgres


def newcomer_blocks() -> list[str]:
    return RUN.findall(DOC.read_text())


def test_page_marks_its_newcomer_commands():
    """The page has the steps a newcomer needs, each in a marked block (install, gen-env, up, seed, run, down)."""
    blocks = newcomer_blocks()
    text = "\n".join(blocks)
    for command in ("scripts/stack gen-env", "scripts/stack up", "scripts/stack seed", '"is_paused": false',
                    "alias=champion", "scripts/stack down"):
        assert command in text, command
    assert blocks[0].strip().startswith("scripts/stack gen-env"), blocks[0]
    # the one unmarked step is the install, and it is what builds the virtualenv scripts/stack runs with
    page = DOC.read_text()
    assert "```bash\ngit clone <this repository> airflow-provider-mlops && cd airflow-provider-mlops\nmake install\n```" in page
    assert re.search(r"(?m)^install: \$\(STAMP\)$", (ROOT / "Makefile").read_text())


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "_AIRFLOW", "MLOPS_"))}
    env["PATH"] = f"/usr/local/bin:/usr/bin:/bin:{env.get('PATH', '')}"
    return env


def _set_env(path: Path, **values: str) -> None:
    lines = path.read_text().splitlines()
    for key, value in values.items():
        lines = [line for line in lines if not line.startswith(f"{key}=")] + [f"{key}={value}"]
    path.write_text("\n".join(lines) + "\n")


def test_newcomer_commands_reach_a_promoted_champion(tmp_path):
    from stack_twin import Stack, free_port, redis_ping

    from tests.helpers.postgres import postgres_available

    if not (postgres_available() and redis_ping()):
        pytest.fail("PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 are needed (never skipped)")
    clone = tmp_path / "airflow-provider-mlops"
    _copy_checkout(clone)
    first, *rest = newcomer_blocks()
    env = _clean_env()
    started = time.monotonic()
    gen = subprocess.run(["bash", "-eu", "-c", first], cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stdout + gen.stderr
    tag = uuid.uuid4().hex[:8]
    _set_env(  # the reader's `$EDITOR .env`: ports and names that collide with nothing on this machine
        clone / ".env", AIRFLOW_API_PORT=str(free_port()), MLFLOW_PORT=str(free_port()), MLFLOW_WORKERS="1",
        STACK_MINIO_PORT=str(free_port()),
        AIRFLOW_DB_NAME=f"doc_airflow_{tag}", MLFLOW_DB_NAME=f"doc_mlflow_{tag}", REDIS_DB=str(1 + int(tag, 16) % 15),
        POSTGRES_USER="mlops_stack",
    )
    script = "\n".join(rest)
    proc = subprocess.Popen(["bash", "-eu", "-c", script], cwd=clone, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise AssertionError(f"the page's commands did not finish within 1200 s:\n{output[-4000:]}") from None
    finally:
        stack = Stack(clone / ".env", clone / ".stack", clone / "dags")
        stack.down(volumes=True)  # whatever the page left running, and both databases
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, output[-6000:]
    states = [line for line in output.splitlines() if line in ("queued", "running", "success", "failed")]
    assert states and states[-1] == "success", output[-6000:]
    start = output.rindex("{", 0, output.index('"model_version"'))
    champion, _ = json.JSONDecoder().raw_decode(output[start:])
    assert champion["model_version"]["name"] == "loan_default" and champion["model_version"]["version"] == "1", champion
    assert "champion" in champion["model_version"]["aliases"], champion
    assert "stack down" in output, output[-2000:]
    print(f"\nthe page's commands: {elapsed:.0f} s from gen-env to down")
