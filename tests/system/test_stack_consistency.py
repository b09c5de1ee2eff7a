"""docker-compose.yml and its process twin (scripts/stack_twin.py) describe the same stack.

No services needed: parses the compose file with PyYAML and compares it with the twin's component
table (services, commands, environment keys and values, replicas, depends_on); validates the compose
file with Debian's ``docker-compose config`` (1.29, works without a Docker engine) when it is
installed, and always with a structural check; checks the env-file handling (missing or wrong
values are refused with their name) and that no secret is baked into the images.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import stack_twin  # noqa: E402
from stack_twin import BY_NAME, COMPONENTS, Stack, StackConfigError, interpolate, read_env_file  # noqa: E402

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
AIRFLOW_IMAGE_SERVICES = {n for n, s in COMPOSE["services"].items() if "airflow" in str(s.get("image", ""))
                          and "mlflow" not in str(s.get("image", ""))}



def _require_docker_compose() -> None:
    """Fail, never skip: .ci/run installs Debian's docker-compose when it is missing."""
    assert shutil.which("docker-compose"), "Debian's docker-compose is needed: apt-get install docker-compose"

def valid_env(tmp_path: Path, **override: str) -> Path:
    from cryptography.fernet import Fernet

    values = read_env_file(ROOT / ".env.example")
    values.update(
        POSTGRES_PASSWORD="pg-secret-1", AIRFLOW_FERNET_KEY=Fernet.generate_key().decode(),
        AIRFLOW_JWT_SECRET="j" * 40, AIRFLOW_API_SECRET_KEY="k" * 20, AIRFLOW_ADMIN_PASSWORD="admin-pw-1",
        MLFLOW_ADMIN_PASSWORD="mlflow-pw-1", MLFLOW_FLASK_SERVER_SECRET_KEY="f" * 20, MINIO_ROOT_PASSWORD="minio-pw-1",
    )
    values.update(override)
    path = tmp_path / "stack.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items() if v is not None))
    return path


def _compose_command(service: str) -> list[str]:
    cmd = COMPOSE["services"][service].get("command", [])
    argv = cmd.split() if isinstance(cmd, str) else [str(a) for a in cmd]
    if service in AIRFLOW_IMAGE_SERVICES and argv and argv[0] != "bash":
        argv = ["airflow", *argv]  # the image's entrypoint runs airflow subcommands
    return argv


#: Services behind a compose profile (started only on request, e.g. ``--profile lineage``) are not part
#: of the default stack and have no twin.
PROFILE_SERVICES = {n for n, s in COMPOSE["services"].items() if s.get("profiles")}


#: Services that run once and exit (the others restart always and have a healthcheck).
ONESHOT = {c.name for c in COMPONENTS if c.kind == "oneshot"}


def test_same_services():
    assert set(COMPOSE["services"]) - PROFILE_SERVICES == {c.name for c in COMPONENTS}
    assert {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "airflow-worker", "postgres", "redis", "mlflow"} <= set(COMPOSE["services"])


@pytest.mark.parametrize("service", [c.name for c in COMPONENTS if c.kind != "external"])
def test_same_command_environment_and_dependencies(service):
    compose, twin = COMPOSE["services"][service], BY_NAME[service]
    assert _compose_command(service) == list(twin.command)
    env = {k: str(v) for k, v in (compose.get("environment") or {}).items()}
    assert set(env) == set(twin.env), f"env keys differ: {set(env) ^ set(twin.env)}"
    assert env == twin.env
    depends = {k: v["condition"] for k, v in (compose.get("depends_on") or {}).items()}
    assert depends == twin.depends_on
    assert int((compose.get("deploy") or {}).get("replicas", 1)) == twin.replicas
    assert compose.get("working_dir") == twin.working_dir


def test_twin_runs_two_celery_workers_with_celery_executor():
    assert BY_NAME["airflow-worker"].replicas == 2
    assert BY_NAME["airflow-worker"].env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_every_compose_variable_is_documented_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    documented = set(read_env_file(ROOT / ".env.example"))
    assert used - {"AIRFLOW_PROJ_DIR"} <= documented, used - documented


def test_localised_values_point_at_the_machine(tmp_path):
    stack = Stack(valid_env(tmp_path, AIRFLOW_API_PORT="18080", MLFLOW_PORT="15000"), tmp_path / "state")
    env = stack.component_env("airflow-scheduler")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://airflow:pg-secret-1@127.0.0.1:5432/airflow"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert '"host": "http://127.0.0.1:15000"' in env["AIRFLOW_CONN_MLFLOW_DEFAULT"]
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith(str(tmp_path / "state"))
    mlflow_cmd = stack.component_command("mlflow")
    assert mlflow_cmd[mlflow_cmd.index("--port") + 1] == "15000"
    assert "pg-secret-1" not in " ".join(mlflow_cmd)  # the store URI (with the password) is in the env
    twin_only = set(env) - set(BY_NAME["airflow-scheduler"].env) - set(os.environ)
    assert twin_only <= set(stack_twin.TWIN_ONLY_ENV)


def test_interpolation_matches_compose_semantics():
    assert interpolate("${A:-x}/${B-y}/$${C}", {"A": "", "B": ""}) == "x//${C}"
    with pytest.raises(StackConfigError, match="REQUIRED_ONE"):
        interpolate("${REQUIRED_ONE:?set it}", {})


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"POSTGRES_PASSWORD": ""}, "POSTGRES_PASSWORD is missing"),
        ({"AIRFLOW_FERNET_KEY": "not-a-key"}, "AIRFLOW_FERNET_KEY is wrong"),
        ({"AIRFLOW_JWT_SECRET": "short"}, "AIRFLOW_JWT_SECRET is wrong"),
        ({"MLFLOW_ADMIN_PASSWORD": "change-me"}, "MLFLOW_ADMIN_PASSWORD is still the placeholder"),
        ({"MLFLOW_ADMIN_PASSWORD": 'has"quote'}, "MLFLOW_ADMIN_PASSWORD is wrong"),
        ({"REDIS_DB": "99"}, "REDIS_DB='99' is wrong"),
        ({"MLFLOW_DB_NAME": "airflow"}, "two different databases"),
    ],
)
def test_twin_refuses_a_missing_or_wrong_value_naming_it(tmp_path, override, named):
    env = valid_env(tmp_path, **override)
    with pytest.raises(StackConfigError, match=re.escape(named)):
        Stack(env, tmp_path / "state")
    cli = subprocess.run([str(ROOT / "scripts" / "stack"), "--env-file", str(env), "--state-dir",
                          str(tmp_path / "state"), "up"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and named in cli.stderr, cli.stderr
    assert not (tmp_path / "state").exists()  # nothing was started


def test_twin_refuses_a_missing_env_file(tmp_path):
    with pytest.raises(StackConfigError, match="not found: copy .env.example"):
        Stack(tmp_path / "nope.env", tmp_path / "state")


def test_compose_structure():
    """A structural check that runs everywhere (the docker-compose check below needs the package)."""
    services = COMPOSE["services"]
    assert "version" not in COMPOSE  # Compose Specification, like Airflow's official file
    for name, svc in services.items():
        assert "image" in svc, name
        assert svc.get("restart") == "always" or name in ONESHOT, name
        if name not in ONESHOT:
            assert "healthcheck" in svc and svc["healthcheck"]["test"], name
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            assert spec["condition"] in ("service_healthy", "service_completed_successfully"), (name, dep)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)
            elif not source.startswith("$"):
                assert source in COMPOSE["volumes"], (name, source)
    assert services["airflow-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "./dags" in " ".join(services["airflow-scheduler"]["volumes"]) or "/dags:" in " ".join(
        services["airflow-scheduler"]["volumes"])
    assert services["mlflow"]["build"]["target"] == "mlflow"
    assert "--serve-artifacts" in services["mlflow"]["command"]
    assert services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")


def test_docker_compose_config_accepts_the_file(tmp_path):
    """``docker-compose config`` (Debian's docker-compose 1.29, no engine needed) with a filled-in env file."""
    env = valid_env(tmp_path)
    _require_docker_compose()
    ok = subprocess.run(["docker-compose", "--env-file", str(env), "-f", str(ROOT / "docker-compose.yml"), "config"],
                        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    resolved = yaml.safe_load(ok.stdout)
    assert resolved["services"]["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # a missing secret: compose refuses too, naming it
    bad = valid_env(tmp_path, MLFLOW_ADMIN_PASSWORD=None)
    refused = subprocess.run(["docker-compose", "--env-file", str(bad), "-f", str(ROOT / "docker-compose.yml"), "config"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path,
                             env={k: v for k, v in os.environ.items() if k != "MLFLOW_ADMIN_PASSWORD"})
    assert refused.returncode != 0 and "MLFLOW_ADMIN_PASSWORD" in refused.stderr, refused.stderr


def test_no_secret_in_images():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^\s*(ENV|ARG)\s+\S*(PASSWORD|SECRET|FERNET|TOKEN)", dockerfile, re.M | re.I)
    assert not re.search(r"COPY[^\n]*\.env\b", dockerfile)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".stack" in ignored
    ini = (ROOT / "deploy" / "mlflow" / "basic_auth.ini").read_text()
    assert not re.search(r"^\s*admin_password\s*=", ini, re.M)


def test_gen_env_writes_a_valid_private_env_file(tmp_path):
    from stack_twin import generate_env

    path = generate_env(tmp_path / ".env")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    stack = Stack(path, tmp_path / "state")  # validates
    assert stack.get("AIRFLOW_FERNET_KEY") != read_env_file(ROOT / ".env.example")["AIRFLOW_FERNET_KEY"]
    cli = subprocess.run([str(ROOT / "scripts" / "stack"), "--env-file", str(path), "gen-env"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "not overwriting" in cli.stderr


def test_lineage_profile_is_optional_and_wired():
    """Marquez (docs/lineage.md) only under ``--profile lineage``; the default stack does not depend on it."""
    services = COMPOSE["services"]
    assert PROFILE_SERVICES == {"marquez", "marquez-db", "marquez-web"}
    assert all(services[n]["profiles"] == ["lineage"] for n in PROFILE_SERVICES)
    for name, svc in services.items():
        if name not in PROFILE_SERVICES:
            assert not set(svc.get("depends_on") or {}) & PROFILE_SERVICES, name
    config = yaml.safe_load((ROOT / "deploy" / "marquez" / "marquez.yml").read_text())
    assert config["db"]["url"].endswith("//marquez-db:5432/marquez")
    assert config["db"]["password"] == "${MARQUEZ_DB_PASSWORD}"  # from the environment, not the file
    override = yaml.safe_load((ROOT / "deploy" / "marquez" / "docker-compose.lineage.yml").read_text())
    for name in ("airflow-scheduler", "airflow-worker"):
        transport = json.loads(override["services"][name]["environment"]["AIRFLOW__OPENLINEAGE__TRANSPORT"])
        assert transport == {"type": "http", "url": "http://marquez:5000", "endpoint": "api/v1/lineage"}
    assert "openlineage" in (ROOT / "Dockerfile").read_text()  # the image has the extra


# ---- secrets refused everywhere: the env-check service (deploy/check_env.py)

CHECK_ENV = ROOT / "deploy" / "check_env.py"
PLACEHOLDER_SECRETS = sorted(k for k, v in read_env_file(ROOT / ".env.example").items()
                             if k in stack_twin.REQUIRED and v == "change-me")


def _check_env(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """deploy/check_env.py as the env-check container runs it: a bare python, no project packages."""
    return subprocess.run([sys.executable, "-I", str(CHECK_ENV), *args], capture_output=True, text=True,
                          timeout=60, env=env if env is not None else {"PATH": os.environ["PATH"]})


def test_one_settings_check_for_compose_and_the_twin():
    import check_env

    assert stack_twin.REQUIRED is check_env.REQUIRED and stack_twin.OPTIONAL is check_env.OPTIONAL
    assert stack_twin.read_env_file(ROOT / ".env.example") == check_env.read_env_file(ROOT / ".env.example")
    # the compose service hands the check every setting it checks
    env = COMPOSE["services"]["env-check"]["environment"]
    assert set(env) == set(check_env.REQUIRED) | set(check_env.OPTIONAL)


def test_every_other_service_waits_for_the_env_check():
    for name, svc in COMPOSE["services"].items():
        if name in PROFILE_SERVICES or name == "env-check":
            continue
        assert svc["depends_on"]["env-check"] == {"condition": "service_completed_successfully"}, name


def test_env_check_refuses_env_example_naming_each_placeholder():
    assert len(PLACEHOLDER_SECRETS) == 8, PLACEHOLDER_SECRETS
    proc = _check_env(str(ROOT / ".env.example"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for key in PLACEHOLDER_SECRETS:
        assert f"{key} is still the placeholder 'change-me'" in proc.stderr, (key, proc.stderr)


def test_env_check_names_each_empty_secret(tmp_path):
    env = valid_env(tmp_path, POSTGRES_PASSWORD="", AIRFLOW_JWT_SECRET="", MLFLOW_ADMIN_PASSWORD="change-me")
    proc = _check_env(str(env))
    assert proc.returncode == 1
    assert "POSTGRES_PASSWORD is missing" in proc.stderr and "AIRFLOW_JWT_SECRET is missing" in proc.stderr
    assert "MLFLOW_ADMIN_PASSWORD is still the placeholder" in proc.stderr
    assert "AIRFLOW_FERNET_KEY" not in proc.stderr  # only the bad ones are named
    assert "pg-secret-1" not in proc.stderr + proc.stdout  # a good secret is never printed


def test_env_check_passes_a_generated_env(tmp_path):
    from stack_twin import generate_env

    proc = _check_env(str(generate_env(tmp_path / ".env")))
    assert proc.returncode == 0, proc.stderr
    assert "every setting" in proc.stdout


@pytest.mark.parametrize("example", [True, False], ids=["env-example-refused", "generated-env-passes"])
def test_env_check_service_as_compose_resolves_it(tmp_path, example):
    """The env-check service's environment as ``docker-compose config`` resolves it, run through its command."""
    from stack_twin import generate_env

    env_file = ROOT / ".env.example" if example else generate_env(tmp_path / ".env")
    _require_docker_compose()
    resolved = subprocess.run(["docker-compose", "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"),
                               "config"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={k: v for k, v in os.environ.items() if k not in stack_twin.REQUIRED})
    assert resolved.returncode == 0, resolved.stderr  # compose alone accepts the placeholders
    service = yaml.safe_load(resolved.stdout)["services"]["env-check"]
    assert service["command"] == ["python", "/opt/mlops/deploy/check_env.py", "--environ"]
    assert f"{CHECK_ENV}:/opt/mlops/deploy/check_env.py:ro" in service["volumes"]
    proc = _check_env("--environ", env={"PATH": os.environ["PATH"], **service["environment"]})
    if example:
        assert proc.returncode == 1
        assert [k for k in PLACEHOLDER_SECRETS if f"{k} is still the placeholder" in proc.stderr] == PLACEHOLDER_SECRETS
    else:
        assert proc.returncode == 0, proc.stderr


def test_twin_runs_the_env_check_component(tmp_path):
    """The twin's env-check component is compose's command with the localised path, and it passes a good env."""
    stack = Stack(valid_env(tmp_path), tmp_path / "state")
    argv = stack.component_command("env-check")
    assert argv[1:] == [str(CHECK_ENV), "--environ"]
    stack.run_env_check()  # raises StackConfigError otherwise
    bad = stack.component_env("env-check") | {"AIRFLOW_ADMIN_PASSWORD": "change-me"}
    proc = subprocess.run(argv, env=bad, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "AIRFLOW_ADMIN_PASSWORD is still the placeholder" in proc.stderr


# ---- listening addresses


def _listen_settings(stack: Stack) -> dict[str, str]:
    """Every listening address the twin gives its components: command ``--host`` and ``*HOST`` settings."""
    found = {}
    for comp in COMPONENTS:
        if not comp.command:
            continue
        argv = stack.component_command(comp.name)
        if "--host" in argv:
            found[f"{comp.name} --host"] = argv[argv.index("--host") + 1]
        for key, value in stack.component_env(comp.name).items():
            if key.endswith("_HOST") and key.startswith("AIRFLOW__"):
                found[f"{comp.name} {key}"] = value
    return found


def test_twin_listens_on_loopback_unless_configured(tmp_path):
    stack = Stack(valid_env(tmp_path), tmp_path / "state")
    hosts = _listen_settings(stack)
    assert set(hosts.values()) == {"127.0.0.1"}, hosts
    assert hosts["mlflow --host"] == "127.0.0.1"
    for name in ("airflow-apiserver", "airflow-scheduler"):
        env = stack.component_env(name)
        assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
        assert env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] == "127.0.0.1"  # Airflow's default: 0.0.0.0
    # Airflow 3.3.2's log servers bind every interface (no host setting): not started on loopback
    for name in ("airflow-worker", "airflow-triggerer"):
        assert stack.component_command(name)[-1] == "--skip-serve-logs", name
    for name in ("airflow-scheduler", "airflow-apiserver", "airflow-dag-processor", "mlflow"):
        assert "--skip-serve-logs" not in stack.component_command(name), name
    assert "0.0.0.0" not in json.dumps([stack.component_command(c.name) for c in COMPONENTS if c.command])

    everywhere = Stack(valid_env(tmp_path, STACK_BIND_HOST="0.0.0.0"), tmp_path / "state")
    assert set(_listen_settings(everywhere).values()) == {"0.0.0.0"}
    assert "--skip-serve-logs" not in everywhere.component_command("airflow-worker")
    with pytest.raises(StackConfigError, match=re.escape("STACK_BIND_HOST='10.0.0.1' is wrong")):
        Stack(valid_env(tmp_path, STACK_BIND_HOST="10.0.0.1"), tmp_path / "state")


def test_published_ports_are_documented():
    header = "\n".join(line for line in (ROOT / "docker-compose.yml").read_text().splitlines() if line.startswith("#"))
    docs = (ROOT / "docs" / "deployment.md").read_text()
    published = {name: svc["ports"] for name, svc in COMPOSE["services"].items() if svc.get("ports")}
    assert set(published) == {"airflow-apiserver", "mlflow", "marquez", "marquez-web"}, published
    for name, ports in published.items():
        for mapping in ports:
            host_port = re.match(r"^(\$\{[^}]*\}|\d+):", mapping).group(1)  # "${MLFLOW_PORT:-5000}"
            assert re.search(rf"^#\s+{re.escape(name)}\s+{re.escape(host_port)}\s", header, re.M), (name, host_port)
            variable = re.match(r"\$\{(\w+)", host_port).group(1)
            assert f"`{variable}`" in docs.split("### Ports and listening addresses")[1], variable
    for unpublished in ("postgres 5432", "redis 6379", "8793", "8794", "8974"):
        assert unpublished in header, unpublished
    for name, svc in COMPOSE["services"].items():
        assert name in published or not svc.get("ports"), name


def test_restart_names_the_components(tmp_path):
    env = valid_env(tmp_path)
    cli = subprocess.run([str(ROOT / "scripts" / "stack"), "--env-file", str(env), "--state-dir", str(tmp_path / "state"),
                          "restart", "airflow-worker"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2, cli.stderr
    assert "no component 'airflow-worker': one of minio, mlflow, airflow-apiserver" in cli.stderr
    assert "airflow-worker-1, airflow-worker-2" in cli.stderr
    assert not (tmp_path / "state").exists()  # nothing was started


def test_supervise_refuses_a_stack_that_is_not_running(tmp_path):
    cli = subprocess.run([str(ROOT / "scripts" / "stack"), "--env-file", str(valid_env(tmp_path)), "--state-dir",
                          str(tmp_path / "state"), "supervise"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "not running" in cli.stderr, cli.stderr
