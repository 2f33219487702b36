#!/bin/sh
# Test tools for the storage back-ends (idempotent; called from scripts/bootstrap.sh):
#   - Azurite (the Azure Storage emulator, npm) pinned, into .cache/npm-tools of the checkout;
#   - OpenSSH server (sshd, apt) for the SFTP repository tests, if it is missing.
# Tests look for Azurite at .cache/npm-tools/node_modules/.bin/azurite-blob and for /usr/sbin/sshd,
# and skip (with a reason naming this script) when they are absent.
set -eu

AZURITE_VERSION="${AZURITE_VERSION:-3.37.0}"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS_DIR="${PGBACKUP_NPM_TOOLS_DIR:-$REPO_ROOT/.cache/npm-tools}"

installed_azurite_version() {
    package_json="$TOOLS_DIR/node_modules/azurite/package.json"
    [ -f "$package_json" ] || return 0
    sed -n 's/^  "version": "\([^"]*\)".*/\1/p' "$package_json" | head -n 1
}

if command -v npm >/dev/null 2>&1; then
    if [ "$(installed_azurite_version)" = "$AZURITE_VERSION" ] && [ -x "$TOOLS_DIR/node_modules/.bin/azurite-blob" ]; then
        echo "azurite $AZURITE_VERSION already in $TOOLS_DIR"
    else
        mkdir -p "$TOOLS_DIR"
        npm install --prefix "$TOOLS_DIR" --no-audit --no-fund --save-exact "azurite@$AZURITE_VERSION"
    fi
else
    echo "warning: npm not found; Azure Blob tests will be skipped (apt-get install nodejs npm)" >&2
fi

if [ ! -x /usr/sbin/sshd ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server \
            || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server; }
        # The tests start their own sshd on a free port; the system service is not needed.
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            systemctl disable --now ssh.service >/dev/null 2>&1 || true
        fi
    else
        echo "warning: /usr/sbin/sshd missing; SFTP tests will be skipped (apt-get install openssh-server as root)" >&2
    fi
else
    echo "openssh-server already installed"
fi
