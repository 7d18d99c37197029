#!/usr/bin/env bash
# The airflow-init service of docker-compose.yaml (copied into the image as /opt/airflow/scripts/compose-init.sh).
# It runs on every `docker compose up`, before every other Airflow service, and destroys nothing:
#
#   1. checks the Fernet key;
#   2. migrates Airflow's metadata database (`airflow db migrate`);
#   3. creates the suite's database if missing and migrates it;
#   4. creates the warehouse database if missing and its missing tables;
#   5. creates the missing pools and variables of airflow_settings.yaml and, in demo mode only, its missing
#      connections (they point at the local stand-ins); existing ones are kept as they are (edited in the UI);
#   6. creates the missing event targets of airflow_settings.yaml (existing ones are kept);
#   7. writes the admin's password (DEMOBANK_ADMIN_PASSWORD) for Airflow's simple auth manager;
#   8. demo mode only: creates the demo bus on moto, seeds the demo customers and the core banking source.
#      Each seed writes only into a database it created (an empty one) and refuses any other, naming it and the
#      tables it found: then this script fails and nothing was dropped.
#
# Its inputs are the environment that docker-compose.yaml gives the service: the database connections
# (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, AIRFLOW_CONN_DEMOBANK_DB, AIRFLOW_CONN_CORE_BANKING, AIRFLOW_CONN_WAREHOUSE),
# AIRFLOW__CORE__FERNET_KEY, AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE, DEMOBANK_ADMIN_PASSWORD,
# DEMOBANK_SANDBOX_ENABLED (the sandbox is mounted: create the file's connections), DEMOBANK_SEED_DEMO_DATA (seed
# the demo data), DEMOBANK_SANDBOX_URL and DEMOBANK_MOTO_URL. It reads airflow_settings.yaml from the working
# directory (DEMOBANK_SETTINGS_FILE overrides). tests/test_compose_init.py runs this very file.
set -euo pipefail

settings_file="${DEMOBANK_SETTINGS_FILE:-airflow_settings.yaml}"
step="start"
trap 'echo "compose-init: FAILED at step \"${step}\" (exit code $?); nothing after it ran; see the error above" >&2' ERR

# A switch of this script: exactly "true" or "false" (anything else is a mistake, not "off").
switch() {
  local name="$1" value="${!1:-false}"
  case "${value}" in
    true | false) echo "${value}" ;;
    *)
      echo "compose-init: ${name} must be true or false, got '${value}' (docker-compose.yaml sets it from" \
        "DEMOBANK_DEMO_MODE)" >&2
      return 2
      ;;
  esac
}

begin() {
  step="$1"
  echo "== ${step}"
}

sandbox_enabled="$(switch DEMOBANK_SANDBOX_ENABLED)"
seed_demo_data="$(switch DEMOBANK_SEED_DEMO_DATA)"
: "${DEMOBANK_ADMIN_PASSWORD:?DEMOBANK_ADMIN_PASSWORD is not set: run scripts/compose-env.sh}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE is not set}"
echo "compose-init: demo mode: sandbox ${sandbox_enabled}, seeding ${seed_demo_data}"

begin "Fernet key"
python - <<'PYTHON'
import os
import sys

from cryptography.fernet import Fernet

try:
    Fernet(os.environ.get("AIRFLOW__CORE__FERNET_KEY", ""))
except ValueError as error:
    sys.exit(
        f"compose-init: AIRFLOW__CORE__FERNET_KEY (AIRFLOW_FERNET_KEY in .env) is not a Fernet key ({error}): "
        "generate one with python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    )
PYTHON

begin "Airflow metadata database"
airflow db migrate

begin "Demo Bank database (created if missing, then migrated)"
python -m demobank.db upgrade --create-database

begin "Data warehouse (created if missing; missing tables only)"
python -m demobank.data_factory.warehouse init --create-database

if [ "${sandbox_enabled}" = true ]; then
  begin "Pools, variables and connections (missing ones only; the connections point at the stand-ins)"
  python -m demobank.settings_import "${settings_file}"
else
  begin "Pools and variables (missing ones only; no connections outside demo mode: create the vendor ones)"
  python -m demobank.settings_import "${settings_file}" --no-connections
fi

begin "Event targets (missing ones only)"
python -m demobank.events.targets import "${settings_file}"

begin "Admin login"
python - <<'PYTHON'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.write_text(json.dumps({"admin": os.environ["DEMOBANK_ADMIN_PASSWORD"]}), encoding="utf-8")
path.chmod(0o600)
print(f"admin's password written to {path}")
PYTHON

if [ "${seed_demo_data}" = true ]; then
  begin "Demo bus on moto (${DEMOBANK_MOTO_URL:-unset})"
  python -m demobank.standins
  begin "Demo customers (demo seeding; refuses a database that is not the suite's)"
  python -m demobank.db seed
  begin "Core banking source (demo seeding; refuses a database that the generator did not create)"
  python -m demobank.data_factory.core_banking seed --create-database
fi

step="done"
echo "compose-init: done"
