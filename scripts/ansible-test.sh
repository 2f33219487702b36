#!/usr/bin/env bash
# Run ansible-test sanity / units for todoapi.pgbackup from a staged copy.
#
#   scripts/ansible-test.sh sanity [extra ansible-test args]
#   scripts/ansible-test.sh units  [extra ansible-test args]
#
# Why a copy: ansible-test locates the collection from os.getcwd(), which
# resolves symlinks, so a symlinked .../ansible_collections/todoapi/pgbackup
# -> checkout is rejected ("No ansible_collections parent directory was
# found").  We rsync the checkout (honouring .gitignore, without .git) into
# $TMPDIR/.../ansible_collections/todoapi/pgbackup, run there, and copy
# tests/output back into the checkout.
#
# Offline quirk: every ansible-test-managed virtualenv (sanity creates one per
# test) bootstraps pip with ~/.ansible/test/cache/get_pip_<ver>.py, which it
# otherwise downloads from a host that is unreachable here.  We seed that file
# on every run with a small script built on ensurepip.  The pinned sanity
# requirements themselves are then pip-installed from PyPI (reachable) and
# cached under ~/.ansible/test/venv.
#
# Environment:
#   ANSIBLE_TEST_PYTHON   python version for --python (default 3.11)
#   KEEP_TREE=1           keep the staged tree (path is printed)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_BIN="${REPO_ROOT}/.venv/bin"
PYVER="${ANSIBLE_TEST_PYTHON:-3.11}"
NAMESPACE=todoapi
NAME=pgbackup

log() { printf '[ansible-test.sh] %s\n' "$*" >&2; }
die() { printf '[ansible-test.sh] ERROR: %s\n' "$*" >&2; exit 1; }

usage() { echo "usage: $0 {sanity|units} [extra ansible-test args...]" >&2; exit 2; }
(($# >= 1)) || usage
COMMAND="$1"; shift
case "$COMMAND" in sanity|units) ;; *) usage ;; esac

[[ -x "${VENV_BIN}/ansible-test" ]] || die "${VENV_BIN}/ansible-test missing: run 'make venv' (scripts/bootstrap.sh) first"
command -v rsync >/dev/null || die "rsync missing: run scripts/bootstrap.sh"
export PATH="${VENV_BIN}:${PATH}"
# ansible-test points the collection loader at the staged tree itself; a
# collections path inherited from make (build/collections -> checkout) would
# make todoapi.pgbackup resolvable twice.
unset ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS

# ---------------------------------------------------------------------------
# 1. Seed the pip bootstrap script ansible-test wants (file name depends on
#    the pip version pinned inside ansible_test; 24.2 -> get_pip_24_2.py).
# ---------------------------------------------------------------------------
seed_get_pip() {
  local pip_version cache
  pip_version="$("${VENV_BIN}/python" - <<'EOF'
import pathlib, re, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / '_internal' / 'python_requirements.py'
m = re.search(r"default_packages = dict\(\s*pip='([^']+)'", src.read_text())
print(m.group(1) if m else '24.2')
EOF
)"
  cache="${HOME}/.ansible/test/cache/get_pip_${pip_version//./_}.py"
  mkdir -p "$(dirname "$cache")"
  cat >"$cache" <<'EOF'
# Seeded by todoapi.pgbackup scripts/ansible-test.sh: stands in for get-pip.py,
# which ansible-test cannot download here.  ansible-test runs it as
#   python get_pip_X.py --disable-pip-version-check pip==X --no-setuptools --no-wheel
# inside a fresh `python -m venv --without-pip` environment.
import ensurepip
import os
import subprocess
import sys

env = dict(os.environ)  # ensurepip sets PIP_CONFIG_FILE=/dev/null in os.environ
ensurepip.bootstrap(upgrade=True)  # offline: the pip wheel bundled with Python
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
if any(not a.startswith('-') for a in args):
    # Best effort: move to the exact pip ansible-test pins (needs PyPI).
    if subprocess.call([sys.executable, '-m', 'pip', 'install', '-q', '--upgrade'] + args, env=env):
        sys.stderr.write('get_pip seed: could not install %s, keeping the bundled pip\n' % ' '.join(args))
EOF
  log "seeded ${cache}"
}

# ---------------------------------------------------------------------------
# 2. Stage the collection into .../ansible_collections/todoapi/pgbackup
# ---------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/todoapi-pgbackup-ansible-test.XXXXXX")"
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
  if [[ "${KEEP_TREE:-0}" == 1 ]]; then log "kept staged tree: ${WORK}"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
TREE="${WORK}/ansible_collections/${NAMESPACE}/${NAME}"

stage_tree() {
  mkdir -p "$TREE"
  rsync -a --delete \
    --exclude=/.git --exclude=/.venv --exclude=/build --exclude=/tests/output \
    --exclude=/.cache --exclude=/.ansible --exclude=/bench/results \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude='*.pyc' \
    --filter=':- .gitignore' \
    "${REPO_ROOT}/" "${TREE}/"

  # Make declared dependencies (galaxy.yml) importable from the collection
  # tree by linking them from the `ansible` package in the venv.
  local site dep ns name
  site="$("${VENV_BIN}/python" -c 'import ansible_collections, os; print(os.path.dirname(list(ansible_collections.__path__)[0]))' 2>/dev/null || true)"
  [[ -n "$site" ]] || return 0
  while read -r dep; do
    [[ -n "$dep" ]] || continue
    ns="${dep%%.*}"; name="${dep#*.}"
    if [[ -d "${site}/ansible_collections/${ns}/${name}" && ! -e "${WORK}/ansible_collections/${ns}/${name}" ]]; then
      mkdir -p "${WORK}/ansible_collections/${ns}"
      ln -s "${site}/ansible_collections/${ns}/${name}" "${WORK}/ansible_collections/${ns}/${name}"
    fi
  done < <("${VENV_BIN}/python" - "${REPO_ROOT}/galaxy.yml" <<'EOF'
import sys, yaml
with open(sys.argv[1]) as f:
    data = yaml.safe_load(f) or {}
for dep in sorted((data.get('dependencies') or {})):
    print(dep)
EOF
)
}

copy_back_output() {
  if [[ -d "${TREE}/tests/output" ]]; then
    mkdir -p "${REPO_ROOT}/tests/output"
    rsync -a "${TREE}/tests/output/" "${REPO_ROOT}/tests/output/"
  fi
}

seed_get_pip
stage_tree
cd "$TREE"
rm -rf tests/output

# ---------------------------------------------------------------------------
# 3. Run
# ---------------------------------------------------------------------------
rc=0
case "$COMMAND" in
  sanity)
    # All sanity tests run; their pinned requirements come from PyPI into
    # ansible-test's own venvs.  Tests whose tool is absent skip themselves:
    #   pslint (needs pwsh; no .ps1/.psm1 files here).
    log "ansible-test sanity --local --python ${PYVER} $*"
    ansible-test sanity --local --python "$PYVER" --color no "$@" || rc=$?
    copy_back_output
    ;;
  units)
    if [[ -z "$(find tests/unit -name 'test_*.py' -print -quit 2>/dev/null)" ]]; then
      die "no unit tests found (tests/unit/**/test_*.py); refusing to pass with zero tests"
    fi
    # --requirements: installs ansible-test's unit-test extras (pytest-xdist,
    # pytest-mock, mock) into .venv when missing (unpinned; no-op once present).
    log "ansible-test units --local --python ${PYVER} --requirements $*"
    ansible-test units --local --python "$PYVER" --requirements --color no "$@" || rc=$?
    copy_back_output
    if ((rc == 0)); then
      # ansible-test treats "no tests"/"all skipped" as success (it swallows
      # pytest's exit 5).  We do not: count what actually ran in the JUnit XML.
      counts="$("${VENV_BIN}/python" - tests/output/junit <<'EOF'
import glob, os, sys
import xml.etree.ElementTree as ET
tests = failures = skipped = 0
for path in glob.glob(os.path.join(sys.argv[1], '*-units.xml')):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == 'testsuite' else root.iter('testsuite')
    for s in suites:
        tests += int(s.get('tests', 0))
        failures += int(s.get('failures', 0)) + int(s.get('errors', 0))
        skipped += int(s.get('skipped', 0))
print(tests, failures, skipped)
EOF
)"
      read -r n_tests n_fail n_skip <<<"$counts"
      log "unit tests: ${n_tests} collected, $((n_tests - n_skip)) executed, ${n_fail} failed/errored, ${n_skip} skipped"
      if ((n_tests - n_skip <= 0)); then
        die "ansible-test units executed zero tests; failing on purpose"
      fi
      ((n_fail == 0)) || rc=1
    fi
    ;;
esac
exit "$rc"
