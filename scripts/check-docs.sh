#!/usr/bin/env bash
# Render the documentation of every module in plugins/modules with ansible-doc
# and fail if ansible-doc fails, reports an error/warning for the module, or
# prints no OPTIONS section.  Used by `make lint`.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_BIN="${REPO_ROOT}/.venv/bin"
NAMESPACE=todoapi
NAME=pgbackup

[[ -x "${VENV_BIN}/ansible-doc" ]] || { echo "check-docs: ${VENV_BIN}/ansible-doc missing; run make venv" >&2; exit 1; }

# Resolve todoapi.pgbackup from the checkout (same link as `make collection-link`).
link="${REPO_ROOT}/build/collections/ansible_collections/${NAMESPACE}/${NAME}"
mkdir -p "$(dirname "$link")"
if [[ ! -L "$link" || "$(readlink "$link")" != "../../../.." ]]; then
  rm -rf "$link"
  ln -s ../../../.. "$link"
fi
export ANSIBLE_COLLECTIONS_PATH="${REPO_ROOT}/build/collections"
export PATH="${VENV_BIN}:${PATH}"
export ANSIBLE_NOCOLOR=1

shopt -s nullglob
modules=()
for f in "${REPO_ROOT}"/plugins/modules/*.py; do
  base="$(basename "$f" .py)"
  [[ "$base" == __init__ ]] && continue
  modules+=("$base")
done

if ((${#modules[@]} == 0)); then
  echo "check-docs: no modules in plugins/modules yet; nothing to check"
  exit 0
fi

failed=0
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for m in "${modules[@]}"; do
  fqcn="${NAMESPACE}.${NAME}.${m}"
  rc=0
  ansible-doc -t module "$fqcn" >"$out" 2>&1 || rc=$?
  problem=""
  if ((rc != 0)); then
    problem="ansible-doc exited ${rc}"
  elif grep -qE '^\[(ERROR|WARNING)\]' "$out"; then
    problem="ansible-doc reported errors/warnings"
  elif ! grep -q '^OPTIONS' "$out"; then
    problem="no OPTIONS section rendered"
  fi
  if [[ -n "$problem" ]]; then
    echo "check-docs: FAIL ${fqcn}: ${problem}" >&2
    sed 's/^/    /' "$out" >&2
    failed=1
  else
    echo "check-docs: ok   ${fqcn}"
  fi
done
exit "$failed"
