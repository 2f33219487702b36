#!/usr/bin/env bash
# Bootstrap a Debian 12 (bookworm) machine for developing and testing the
# todoapi.pgbackup collection.  Idempotent; meant to be run as root.
#
#   1. Installs the Debian packages the tests and roles need (apt-get update
#      only when something is missing and the package lists are stale or lack
#      a candidate).  PostgreSQL's default "main" cluster is NOT created/started:
#      the tests create their own clusters.
#   2. Creates .venv with `python3 -m venv` and installs requirements.txt into
#      it, only when requirements.txt (or the interpreter) changed since the
#      last successful install (stamp file: .venv/.requirements.stamp).
#
# Environment knobs:
#   PYTHON=/path/to/python3.11   interpreter for the venv (default: python3)
#   BOOTSTRAP_SKIP_APT=1         skip the Debian package step
#   BOOTSTRAP_FORCE_PIP=1        reinstall requirements even if the stamp matches
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REPO_ROOT}/.venv"
REQS="${REPO_ROOT}/requirements.txt"
STAMP="${VENV}/.requirements.stamp"
PYTHON="${PYTHON:-python3}"

log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

# Debian packages, by real (non-virtual) package name so that dpkg-query can
# tell whether they are installed.  Contrib modules (amcheck, pg_stat_statements,
# ...) ship inside postgresql-15 on Debian, so no separate contrib package.
DEB_PACKAGES=(
  postgresql-15
  postgresql-client-15
  zstd
  age
  python3-venv
  python3-psycopg2
  python3-crc32c
  python3-boto3
  # sftp:// repositories and WAL archives from the hosts' /usr/bin/python3 (the lab's DR test)
  python3-paramiko
  # in-process zstd of the WAL helper's background pusher (tests/lib/archiving.py runs it with /usr/bin/python3)
  python3-zstandard
  pgbackrest
  openssh-client
  openssh-server
  # the test lab's hosts (docs/lab.md): ip netns/veth/bridge; ps for its teardown test
  iproute2
  procps
  cron
  make
  git
  rsync
  acl
  sudo
  locales
  ca-certificates
  shellcheck
)

# ---------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------
missing_packages() {
  local pkg status
  for pkg in "${DEB_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == ii* ]] || printf '%s\n' "$pkg"
  done
}

# True when the apt lists were refreshed less than a day ago.  The list files'
# own mtimes are the archive's Last-Modified dates (can be months old), so use
# the partial/ directory (touched by every `apt-get update`) and our own stamp.
APT_STAMP=/var/lib/apt/lists/partial
apt_lists_fresh() {
  [[ -d "$APT_STAMP" ]] || return 1
  compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || return 1
  [[ -n "$(find "$APT_STAMP" -maxdepth 0 -mmin -1440 2>/dev/null)" ]]
}

# True when every given package has an install candidate in the current lists.
have_candidates() {
  local pkg cand
  for pkg in "$@"; do
    cand="$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [[ -n "$cand" && "$cand" != "(none)" ]] || return 1
  done
}

APT_OPTS=(-y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

apt_update() {
  log "apt-get update"
  apt-get -q -o DPkg::Lock::Timeout=600 update
}

install_debian_packages() {
  if [[ "${BOOTSTRAP_SKIP_APT:-0}" == 1 ]]; then
    log "BOOTSTRAP_SKIP_APT=1: skipping Debian packages"
    return 0
  fi
  command -v dpkg-query >/dev/null || die "this script targets Debian 12 (dpkg-query not found)"

  local -a missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    log "Debian packages: all ${#DEB_PACKAGES[@]} present"
    return 0
  fi
  log "Debian packages missing: ${missing[*]}"
  [[ "$(id -u)" == 0 ]] || die "must run as root to install: ${missing[*]}"

  # Never let the postgresql package create (and start) the default "main"
  # cluster; tests and roles create the clusters they need.
  install -d -m 0755 /etc/postgresql-common/createcluster.d
  local nomain=/etc/postgresql-common/createcluster.d/00-todoapi-pgbackup-no-main.conf
  if [[ ! -f "$nomain" ]]; then
    printf '%s\n' '# Written by todoapi.pgbackup scripts/bootstrap.sh: do not create' \
      '# the default "main" cluster when a postgresql-NN package is installed.' \
      'create_main_cluster = false' >"$nomain"
  fi

  export DEBIAN_FRONTEND=noninteractive
  if ! apt_lists_fresh || ! have_candidates "${missing[@]}"; then
    apt_update
  fi
  if ! apt-get install "${APT_OPTS[@]}" --no-install-recommends "${missing[@]}"; then
    log "install failed; refreshing lists and retrying once"
    apt_update
    apt-get install "${APT_OPTS[@]}" --no-install-recommends "${missing[@]}"
  fi

  mapfile -t missing < <(missing_packages)
  ((${#missing[@]} == 0)) || die "still missing after install: ${missing[*]}"
}

# Runtime directory for PostgreSQL sockets (tmpfs on real machines; may be
# absent in containers).  Harmless when it already exists.
ensure_pg_rundir() {
  if [[ "$(id -u)" == 0 ]] && getent passwd postgres >/dev/null; then
    [[ -d /var/run/postgresql ]] || install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  fi
}

# en_US.UTF-8: ansible-test prefers it (falls back to C.UTF-8 with a warning)
# and initdb in tests may ask for it.  Generated once (~2 s).
ensure_locale() {
  [[ "$(id -u)" == 0 ]] || return 0
  command -v locale-gen >/dev/null || return 0
  if ! locale -a 2>/dev/null | grep -qi '^en_US\.utf-\?8$'; then
    log "generating locale en_US.UTF-8"
    if [[ -f /etc/locale.gen ]] && grep -q '^# *en_US.UTF-8 UTF-8' /etc/locale.gen; then
      sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
    elif ! grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen 2>/dev/null; then
      echo 'en_US.UTF-8 UTF-8' >>/etc/locale.gen
    fi
    locale-gen >/dev/null
  fi
}

# ---------------------------------------------------------------------------
# 2. Python virtualenv
# ---------------------------------------------------------------------------
venv_python_ok() {
  [[ -x "${VENV}/bin/python" ]] &&
    "${VENV}/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null
}

setup_venv() {
  [[ -f "$REQS" ]] || die "missing $REQS"
  command -v "$PYTHON" >/dev/null || die "python interpreter '$PYTHON' not found"
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' ||
    die "$PYTHON is $("$PYTHON" -V 2>&1); ansible-core 2.19 needs Python >= 3.11"

  if [[ -d "$VENV" ]] && ! venv_python_ok; then
    log "existing .venv is broken (interpreter gone?); recreating"
    rm -rf "$VENV"
  fi
  if [[ ! -d "$VENV" ]]; then
    log "creating .venv with $(command -v "$PYTHON") ($("$PYTHON" -V 2>&1))"
    "$PYTHON" -m venv "$VENV"
  fi

  local want
  want="$(sha256sum "$REQS" | cut -d' ' -f1) $("${VENV}/bin/python" -c 'import sys; print(sys.version.split()[0])')"
  if [[ "${BOOTSTRAP_FORCE_PIP:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    log "venv: requirements.txt unchanged, nothing to install"
    return 0
  fi
  log "venv: installing requirements.txt"
  rm -f "$STAMP"
  "${VENV}/bin/python" -m pip install --disable-pip-version-check -q -r "$REQS"
  printf '%s\n' "$want" >"$STAMP"
  log "venv: ready ($("${VENV}/bin/ansible" --version 2>/dev/null | head -n1))"
}

install_debian_packages
ensure_pg_rundir
ensure_locale
setup_venv
sh "${REPO_ROOT}/scripts/install-test-tools.sh"
log "done"
