# -*- coding: utf-8 -*-
"""Each host's OpenSSH server: /usr/sbin/sshd with the host's own /etc/ssh/sshd_config, listening
on port 22 of the host's lab address, keys only, no root login, logging to the host's
/var/log/sshd.log."""

from __future__ import absolute_import, division, print_function

import socket
import time

from tests.lib.lab.access import HOST_KEY
from tests.lib.lab.hostfs import HOST_ENV, host_path, write_file
from tests.lib.lab.commands import LabCommandError, run

SSHD = "/usr/sbin/sshd"
CONFIG = "/etc/ssh/sshd_config"
LOG = "/var/log/sshd.log"
PORT = 22
READY_TIMEOUT = 20


def write_sshd_config(root, host, address):
    lines = [
        "# The lab host %s's sshd (tests/lib/lab/sshd.py)." % host,
        "ListenAddress %s" % address,
        "Port %d" % PORT,
        "HostKey %s" % HOST_KEY,
        "PidFile /run/sshd.pid",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        # PAM would try to register sessions with a systemd-logind the hosts do not have.
        "UsePAM no",
        "UseDNS no",
        "PrintMotd no",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp internal-sftp",
        # Ansible opens many sessions at once per host (forks, connection masters).
        "MaxStartups 100:30:200",
        "MaxSessions 100",
        "LogLevel VERBOSE",
    ]
    write_file(host_path(root, host, CONFIG), "\n".join(lines) + "\n", 0o644)


def start_sshd(enter_argv):
    """Start the host's sshd (it daemonizes inside the host's namespaces)."""
    run(enter_argv + [SSHD, "-f", CONFIG, "-E", LOG], env=HOST_ENV)


def answers_ssh(address, timeout=1.0):
    """True if something at address:22 speaks SSH (reads the server's identification line)."""
    try:
        with socket.create_connection((str(address), PORT), timeout=timeout) as connection:
            connection.settimeout(timeout)
            return connection.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def wait_until_ready(addresses, timeout=READY_TIMEOUT):
    """Wait until every host's sshd answers; raise LabCommandError naming the ones that do not."""
    pending = dict(addresses)
    deadline = time.monotonic() + timeout
    while pending:
        pending = {host: address for host, address in pending.items() if not answers_ssh(address)}
        if pending and time.monotonic() > deadline:
            raise LabCommandError("sshd does not answer on %s after %ss (see each host's %s)"
                                  % (", ".join("%s (%s)" % item for item in sorted(pending.items())), timeout, LOG))
        if pending:
            time.sleep(0.05)


def host_log(root, host):
    """The host's sshd log as text ('' if it has none yet)."""
    try:
        with open(host_path(root, host, LOG)) as handle:
            return handle.read()
    except OSError:
        return ""
