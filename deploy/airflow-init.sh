#!/usr/bin/env bash
# One-shot initialisation of the Airflow side of the stack, run by the airflow-init service of
# docker-compose.yml and by scripts/stack (the process twin) with the same environment:
#   1. write the simple auth manager's password file from AIRFLOW_ADMIN_PASSWORD (mode 0600),
#   2. migrate the metadata database.
set -euo pipefail
: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is not set (see .env.example)}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE is not set}"
user="${AIRFLOW_ADMIN_USERNAME:-admin}"
file="$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
umask 077
mkdir -p "$(dirname "$file")"
python - "$file" "$user" <<'PY'
import json, os, sys
path, user = sys.argv[1], sys.argv[2]
with open(path + ".tmp", "w") as fh:
    json.dump({user: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, fh)
os.replace(path + ".tmp", path)
PY
echo "airflow-init: password file for user '$user' written to $file"
exec airflow db migrate
