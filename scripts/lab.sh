#!/usr/bin/env bash
# The lab of real hosts (docs/lab.md) by hand, for demos and debugging. Needs root.
#
#   scripts/lab.sh up       build a lab (db1 db2 db3 backup1 app1 new1) and print its inventory path;
#                           it stays up until `down` (a detached keeper process owns it)
#   scripts/lab.sh status   list the labs on this machine, their inventory and which hosts answer SSH
#   scripts/lab.sh down     remove the labs `up` built, and the labs of killed test runs
#   scripts/lab.sh hold     build a lab owned by this command; Ctrl-C removes it
#
# Then: .venv/bin/ansible-playbook -i <inventory> play.yml, or ssh -F <lab root>/ssh/ssh_config db1
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${ROOT}/.venv/bin/python"
[[ -x "${PYTHON}" ]] || PYTHON=python3

cd "${ROOT}"
exec "${PYTHON}" -m tests.lib.lab "$@"
