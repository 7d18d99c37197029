#!/usr/bin/env bash
# Write the secrets that docker-compose.yaml requires into an .env file (default: .env beside docker-compose.yaml,
# which docker compose reads by itself), each one random, and only where it is missing: a secret already in the
# file is kept (changing the Fernet key would make the stored connections unreadable; changing POSTGRES_PASSWORD
# would lock the services out of an existing database volume). The file is created readable by its owner only.
#
#   scripts/compose-env.sh [ENV_FILE]
#
# For local use. For anything shared, keep the secrets in your secret store and export them instead.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_file="${1:-${root}/.env}"

# Each secret and how to make it: a Fernet key is 32 random bytes in URL-safe base64 (what
# cryptography.fernet.Fernet.generate_key() returns); POSTGRES_PASSWORD goes into database URLs, so hex only.
secret() {
  python3 - "$1" <<'PYTHON'
import base64
import os
import secrets
import sys

makers = {
    "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_hex(32),
    "AIRFLOW_API_SECRET_KEY": lambda: secrets.token_hex(32),
    "POSTGRES_PASSWORD": lambda: secrets.token_hex(24),
    "DEMOBANK_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
}
print(makers[sys.argv[1]]())
PYTHON
}

if [ ! -e "${env_file}" ]; then
  (umask 077 && printf '# docker-compose.yaml secrets, written by scripts/compose-env.sh. Keep this file private.\n' \
    >"${env_file}")
fi

for name in AIRFLOW_FERNET_KEY AIRFLOW_JWT_SECRET AIRFLOW_API_SECRET_KEY POSTGRES_PASSWORD DEMOBANK_ADMIN_PASSWORD; do
  if grep -Eq "^[[:space:]]*(export[[:space:]]+)?${name}=[^[:space:]]" "${env_file}"; then
    echo "${name}: kept (already in ${env_file})"
  else
    printf '%s=%s\n' "${name}" "$(secret "${name}")" >>"${env_file}"
    echo "${name}: created"
  fi
done
echo "Secrets are in ${env_file}; the admin's password is its DEMOBANK_ADMIN_PASSWORD."
echo "Demo data, the vendor sandbox and its connections: add DEMOBANK_DEMO_MODE=true to ${env_file} (off by default)."
