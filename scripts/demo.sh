#!/usr/bin/env bash
# `make demo`: on this machine, start a PostgreSQL cluster with a generated TodoDb,
# back it up with the collection, drop a table, restore that table, and show that
# the row counts match the backup's manifest. Safe to run again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ROOT}/.venv/bin"
DEMO_DIR="${ROOT}/build/demo"
VERSION="${DEMO_PG_VERSION:-15}"
CLUSTER="${DEMO_CLUSTER:-todoapi_demo}"
PORT="${DEMO_PORT:-55432}"
SIZE_MB="${DEMO_SIZE_MB:-20}"

mkdir -p "${DEMO_DIR}" && chmod 700 "${DEMO_DIR}"
export ANSIBLE_COLLECTIONS_PATH="${ROOT}/build/collections"

if ! pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "${VERSION}/${CLUSTER}"; then
  echo "== creating PostgreSQL ${VERSION} cluster '${CLUSTER}' on 127.0.0.1:${PORT}"
  pg_createcluster "${VERSION}" "${CLUSTER}" -p "${PORT}" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
fi
pg_ctlcluster "${VERSION}" "${CLUSTER}" start 2>/dev/null || true
PORT="$(pg_lsclusters -h | awk -v v="${VERSION}" -v c="${CLUSTER}" '$1==v && $2==c {print $3}')"

PASSWORD_FILE="${DEMO_DIR}/postgres.password"
if [ ! -s "${PASSWORD_FILE}" ]; then
  (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "${PASSWORD_FILE}")
fi
# The password goes to psql on stdin, never on a command line.
printf "ALTER ROLE postgres PASSWORD '%s';\n" "$(cat "${PASSWORD_FILE}")" | runuser -u postgres -- psql -q -X -p "${PORT}" >/dev/null

echo "== generating a ${SIZE_MB} MB TodoDb"
"${BIN}/python" "${ROOT}/scripts/sample_db.py" --port "${PORT}" --password-file "${PASSWORD_FILE}" --size-mb "${SIZE_MB}"

VARS_FILE="${DEMO_DIR}/vars.json"
(umask 077 && "${BIN}/python" - "${PASSWORD_FILE}" "${PORT}" "${DEMO_DIR}" > "${VARS_FILE}" <<'PY'
import json, sys
password = open(sys.argv[1]).read().strip()
print(json.dumps({"pg_host": "127.0.0.1", "pg_port": int(sys.argv[2]), "pg_password": password,
                  "backup_repository": sys.argv[3] + "/repository"}))
PY
)

echo "== backup, drop \"Todos\", per-table restore, compare counts"
"${BIN}/ansible-playbook" -i localhost, -c local -e "ansible_python_interpreter=${BIN}/python" \
  -e "@${VARS_FILE}" "${ROOT}/playbooks/demo.yml"
