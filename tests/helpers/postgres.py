"""Fresh PostgreSQL databases on the machine's server (127.0.0.1:5432, trust auth, user postgres)."""

from __future__ import annotations

import uuid

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def postgres_available() -> bool:
    import psycopg2

    try:
        psycopg2.connect(PG_DSN, connect_timeout=3).close()
    except Exception:  # noqa: BLE001
        return False
    return True


def create_database(prefix: str = "mlops_test") -> str:
    """Create an empty database and return its name."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(PG_DSN, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name


def drop_database(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_DSN, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def sqlalchemy_url(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"
