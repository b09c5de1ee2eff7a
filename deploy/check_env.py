#!/usr/bin/env python3
"""Refuse a missing, placeholder or malformed setting of the stack, naming each one.

The one check of the stack's settings, used by both ways of running it:

* the ``env-check`` service of docker-compose.yml runs ``check_env.py --environ`` on the values
  compose interpolated from ``.env``; every other service waits for it to complete successfully
  (``depends_on: condition: service_completed_successfully``), so nothing starts with a
  placeholder secret;
* ``scripts/stack`` (the process twin) runs the same command as its ``env-check`` component and
  calls :func:`problems` itself before it starts anything.

Usage: ``python deploy/check_env.py [ENV_FILE]`` (default ``.env``) or ``--environ``.  Exit 0 when
every setting is good; exit 1 and one line per bad setting on stderr otherwise.  Standard library
only: it runs in a bare ``python`` image, without Docker, and in tests.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

_SAFE = re.compile(r"^[A-Za-z0-9._~\-]+$")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
PLACEHOLDERS = {"change-me", "changeme", "secret", "password", "xxx"}


def _fernet_ok(value: str) -> bool:
    import base64
    import binascii

    try:
        return len(base64.urlsafe_b64decode(value.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def _int_in(lo: int, hi: int):
    return lambda v: v.isdigit() and lo <= int(v) <= hi


REQUIRED: dict[str, tuple[Any, str]] = {
    "POSTGRES_USER": (lambda v: bool(_IDENT.match(v)), "a PostgreSQL role name (lower-case letters, digits, _)"),
    "POSTGRES_PASSWORD": (lambda v: bool(_SAFE.match(v)), "a non-empty URL-safe secret (letters, digits, . _ ~ -)"),
    "AIRFLOW_FERNET_KEY": (_fernet_ok, "a Fernet key (32 url-safe base64-encoded bytes)"),
    "AIRFLOW_JWT_SECRET": (lambda v: len(v) >= 32, "a secret of at least 32 characters"),
    "AIRFLOW_API_SECRET_KEY": (lambda v: len(v) >= 16, "a secret of at least 16 characters"),
    "AIRFLOW_ADMIN_PASSWORD": (lambda v: len(v) >= 8, "a password of at least 8 characters"),
    "MLFLOW_ADMIN_PASSWORD": (
        lambda v: len(v) >= 8 and bool(_SAFE.match(v)), "a URL/JSON-safe password of at least 8 characters",
    ),
    "MLFLOW_FLASK_SERVER_SECRET_KEY": (lambda v: len(v) >= 16, "a secret of at least 16 characters"),
    "MINIO_ROOT_PASSWORD": (
        lambda v: len(v) >= 8 and bool(_SAFE.match(v)), "a URL/JSON-safe password of at least 8 characters",
    ),
}
OPTIONAL: dict[str, tuple[Any, str]] = {
    "AIRFLOW_DB_NAME": (lambda v: bool(_IDENT.match(v)), "a database name (lower-case letters, digits, _)"),
    "MLFLOW_DB_NAME": (lambda v: bool(_IDENT.match(v)), "a database name (lower-case letters, digits, _)"),
    "REDIS_DB": (_int_in(0, 15), "a redis database number 0-15"),
    "AIRFLOW_API_PORT": (_int_in(1, 65535), "a TCP port"),
    "MLFLOW_PORT": (_int_in(1, 65535), "a TCP port"),
    "MLFLOW_WORKERS": (_int_in(1, 64), "a number of server workers 1-64"),
    "AIRFLOW_WORKER_CONCURRENCY": (_int_in(1, 256), "a number of task slots 1-256"),
    "AIRFLOW_TASK_HEARTBEAT_TIMEOUT": (_int_in(5, 86400), "seconds, 5-86400"),
    "AIRFLOW_ADMIN_USERNAME": (lambda v: bool(re.match(r"^[A-Za-z0-9_.\-]+$", v)), "a user name"),
    "MLFLOW_ADMIN_USERNAME": (lambda v: bool(re.match(r"^[A-Za-z0-9_.\-]+$", v)), "a user name"),
    "MLOPS_DATA_DIR": (lambda v: v.startswith("/") and ".." not in v.split("/"), "an absolute path"),
    "MINIO_ROOT_USER": (lambda v: bool(re.match(r"^[A-Za-z0-9_.\-]{3,}$", v)), "a user name of at least 3 characters"),
    "MLOPS_BUCKET": (lambda v: bool(re.match(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$", v)), "an S3 bucket name"),
}


class EnvFileError(ValueError):
    """The env file is missing or has a line that is not ``KEY=VALUE``."""


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a compose ``.env`` file: ``KEY=VALUE`` lines, ``#`` comments, optional quotes."""
    path = Path(path)
    if not path.is_file():
        raise EnvFileError(f"env file {path} not found: copy .env.example to {path.name} and fill in the secrets")
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise EnvFileError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def problems(values: dict[str, str]) -> list[str]:
    """One line per missing, placeholder or malformed setting of ``values`` (empty when all are good)."""
    found = []
    for key, (check, expected) in REQUIRED.items():
        value = values.get(key, "")
        if not value:
            found.append(f"{key} is missing (expected {expected})")
        elif value.lower() in PLACEHOLDERS:
            found.append(f"{key} is still the placeholder {value!r} (expected {expected})")
        elif not check(value):
            found.append(f"{key} is wrong (expected {expected})")
    for key, (check, expected) in OPTIONAL.items():
        value = values.get(key)
        if value not in (None, "") and not check(value):
            found.append(f"{key}={value!r} is wrong (expected {expected})")
    if (values.get("AIRFLOW_DB_NAME") or "airflow") == (values.get("MLFLOW_DB_NAME") or "mlflow"):
        found.append("AIRFLOW_DB_NAME and MLFLOW_DB_NAME must name two different databases")
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--environ"]:
        source = "the environment"
        values = {key: os.environ.get(key, "") for key in (*REQUIRED, *OPTIONAL)}
    elif len(args) <= 1 and not any(a.startswith("-") for a in args):
        source = args[0] if args else ".env"
        try:
            values = read_env_file(Path(source))
        except EnvFileError as err:
            print(f"check_env: {err}", file=sys.stderr)
            return 2
    else:
        print("usage: check_env.py [ENV_FILE] | --environ", file=sys.stderr)
        return 2
    found = problems(values)
    if found:
        print(f"check_env: the stack refuses to start ({source}):\n  " + "\n  ".join(found), file=sys.stderr)
        return 1
    print(f"check_env: every setting of {source} is good")
    return 0


if __name__ == "__main__":
    sys.exit(main())
