#!/usr/bin/env bash
# Runs once, on the first start of the postgres container (docker-entrypoint-initdb.d): the image
# created POSTGRES_USER and POSTGRES_DB (Airflow's database); this creates MLflow's database.
set -euo pipefail
: "${MLFLOW_DB_NAME:?MLFLOW_DB_NAME is not set}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v db="$MLFLOW_DB_NAME" -v owner="$POSTGRES_USER" -f /opt/mlops-init/init-databases.sql
