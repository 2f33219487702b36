#!/usr/bin/env bash
# `make demo`: on this machine, start a PostgreSQL cluster with a generated TodoDb,
# back it up with the collection, drop a table, restore that table, and show that
# the row counts match the backup's manifest; then destroy the server and rebuild it with
# playbooks/dr_restore.yml (new cluster, app repointed), and print the DR report. Safe to run again.
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
print(json.dumps({"pgbackup_db_host": "127.0.0.1", "pgbackup_db_port": int(sys.argv[2]), "pgbackup_password": password,
                  "pgbackup_repository": sys.argv[3] + "/repository"}))
PY
)

echo "== backup, drop \"Todos\", per-table restore, compare counts"
"${BIN}/ansible-playbook" -i localhost, -c local -e "ansible_python_interpreter=${BIN}/python" \
  -e "@${VARS_FILE}" "${ROOT}/playbooks/demo.yml"

# --- The disaster: the database server is lost; playbooks/dr_restore.yml rebuilds it. ---
DR_CLUSTER="${DEMO_DR_CLUSTER:-todoapi_demo_dr}"; DR_PORT="${DEMO_DR_PORT:-55433}"; APP_PORT="${DEMO_APP_PORT:-55480}"
APP_DIR="${DEMO_DIR}/app"; REPORT_DIR="${DEMO_DIR}/dr-reports"
APP=("${BIN}/python" "${ROOT}/tests/lib/standin_app.py")
mkdir -p "${APP_DIR}" && chmod 700 "${APP_DIR}"
pg_dropcluster --stop "${VERSION}" "${DR_CLUSTER}" 2>/dev/null || true
echo "== a stand-in Todo API on 127.0.0.1:${APP_PORT}, connected to ${CLUSTER}"
(umask 077 && "${BIN}/python" - "${PASSWORD_FILE}" "${PORT}" > "${APP_DIR}/appsettings.json" <<'PY'
import json, sys
password = open(sys.argv[1]).read().strip()
print(json.dumps({"ConnectionStrings": {"DefaultConnection":
      "Host=127.0.0.1;Port=%s;Database=TodoDb;Username=postgres;Password=%s" % (sys.argv[2], password)}}, indent=2))
PY
)
"${APP[@]}" stop --pidfile "${APP_DIR}/app.pid" >/dev/null
"${APP[@]}" start --settings "${APP_DIR}/appsettings.json" --port "${APP_PORT}" --pidfile "${APP_DIR}/app.pid" --log "${APP_DIR}/app.log"
"${APP[@]}" health --port "${APP_PORT}"
echo "== DISASTER: ${CLUSTER} crashes and its data directory is lost"
pg_ctlcluster "${VERSION}" "${CLUSTER}" stop -m immediate
pg_dropcluster "${VERSION}" "${CLUSTER}"
"${APP[@]}" health --port "${APP_PORT}" || true
echo "== playbooks/dr_restore.yml rebuilds it as cluster ${DR_CLUSTER} on port ${DR_PORT} and repoints the app"
DR_VARS="${DEMO_DIR}/dr-vars.json"
(umask 077 && "${BIN}/python" - "${PASSWORD_FILE}" > "${DR_VARS}" <<PY
import json, secrets, sys
print(json.dumps({
    "dr_target": "localhost", "dr_source": "${DEMO_DIR}/repository", "dr_install_packages": False,
    "dr_pg_version": ${VERSION}, "dr_pg_cluster": "${DR_CLUSTER}", "dr_pg_port": ${DR_PORT},
    "dr_listen_addresses": "127.0.0.1", "dr_app_networks": ["127.0.0.1/32"], "dr_app_db_host": "127.0.0.1",
    "dr_admin_password": open(sys.argv[1]).read().strip(), "dr_app_password": secrets.token_urlsafe(18),
    "dr_app_manager": "command",
    "dr_app_stop_command": "${APP[*]} stop --pidfile ${APP_DIR}/app.pid",
    "dr_app_start_command": "${APP[*]} start --settings ${APP_DIR}/appsettings.json --port ${APP_PORT} --pidfile ${APP_DIR}/app.pid --log ${APP_DIR}/app.log",
    "dr_app_health_command": "${APP[*]} health --port ${APP_PORT}",
    "dr_app_connection_file": "${APP_DIR}/appsettings.json",
    "dr_work_dir": "/var/lib/todoapi-dr-demo", "dr_report_dir": "${REPORT_DIR}",
    "postgresql_server_start_at_boot": False}))
PY
)
# become_user postgres cannot run a venv Python under /root: the system Python runs the modules.
ANSIBLE_PIPELINING=1 "${BIN}/ansible-playbook" -i localhost, -c local -e ansible_python_interpreter=/usr/bin/python3 \
  -e "@${DR_VARS}" "${ROOT}/playbooks/dr_restore.yml"
"${APP[@]}" health --port "${APP_PORT}"
echo "== the DR report"
# Report names carry a UTC timestamp, so the last in sort order is the newest.
reports=("${REPORT_DIR}"/dr-report-*.md)
cat "${reports[${#reports[@]}-1]}"
"${APP[@]}" stop --pidfile "${APP_DIR}/app.pid" >/dev/null
