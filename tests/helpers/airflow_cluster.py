"""The project's local Airflow deployment (scripts/airflow_local.py) set up for system tests and benches.

What it adds to :class:`AirflowLocal`: a fresh PostgreSQL database (tests/helpers/postgres.py, dropped
on stop; SQLite when no server runs on 127.0.0.1:5432), the all-admins API (no login), DAGs unpaused
at creation, a loopback-only api-server with one worker.  Used by ``tests/system/conftest.py`` and
``bench/sensing.py``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from airflow_local import AirflowLocal  # noqa: E402


class AirflowCluster(AirflowLocal):
    """
    :param home: AIRFLOW_HOME (created).
    :param dags_folder: the DAGs the dag-processor parses.
    :param use_postgres: a fresh PostgreSQL database (dropped on stop) instead of SQLite; default: when
        a server answers on 127.0.0.1:5432.
    :param extra_env: more environment for every component (connections, config).
    """

    #: A test DAG folder parsed under load can show a passing import error (a parse timeout): wait for
    #: the DAG, and name the import errors only if it never comes.
    fail_on_import_errors = False

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        *,
        use_postgres: bool | None = None,
        extra_env: dict[str, str] | None = None,
        parallelism: int = 16,
    ) -> None:
        if use_postgres is None:
            from tests.helpers.postgres import postgres_available

            use_postgres = postgres_available()
        self.use_postgres = use_postgres
        self.db_name: str | None = None
        env = {
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
            **(extra_env or {}),
        }
        super().__init__(home, dags_folder, env=env, port=0, all_admins=True, parallelism=parallelism)

    def start(self, timeout: float = 240) -> AirflowCluster:  # type: ignore[override]
        if self.use_postgres:
            from tests.helpers.postgres import create_database, sqlalchemy_url

            self.db_name = create_database("mlops_system")
            self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = sqlalchemy_url(self.db_name)
        try:
            self.init()
            super().start(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        super().stop()
        if self.use_postgres and self.db_name:
            from tests.helpers.postgres import drop_database

            try:
                drop_database(self.db_name)
            except Exception:  # noqa: BLE001 - best effort
                pass
            self.db_name = None

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
