# -*- coding: utf-8 -*-
"""How the controller gets into the hosts: the non-root account with passwordless sudo, one key
pair for the lab, a host key per host and the known_hosts and ssh_config built from those keys
(host keys are never learnt on first use)."""

from __future__ import absolute_import, division, print_function

import os
import pwd
import subprocess

from tests.lib.lab import topology
from tests.lib.lab.hostfs import fs_path, host_path, make_dir, write_file
from tests.lib.lab.commands import run

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
SUDOERS_DROP_IN = "/etc/sudoers.d/" + topology.LAB_USER


def ensure_lab_user():
    """The lab's login account, created once on the machine and kept (like the postgres account).
    It has no password and, outside the lab hosts, neither SSH keys nor sudo rights."""
    try:
        return pwd.getpwnam(topology.LAB_USER)
    except KeyError:
        run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", topology.LAB_USER_HOME,
             "--shell", "/bin/bash", topology.LAB_USER])
    # '*' (no password) instead of useradd's '!' (locked): sshd refuses key logins to locked accounts.
    run(["usermod", "-p", "*", topology.LAB_USER])
    return pwd.getpwnam(topology.LAB_USER)


def ssh_dir(root):
    return os.path.join(root, "ssh")


def client_key(root):
    return os.path.join(ssh_dir(root), "id_ed25519")


def known_hosts(root):
    return os.path.join(ssh_dir(root), "known_hosts")


def ssh_config(root):
    return os.path.join(ssh_dir(root), "ssh_config")


def control_dir(root):
    """Where Ansible keeps its SSH connection masters for the lab (ControlPath)."""
    return os.path.join(root, "cp")


def generate_key(path, comment):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
                   check=True, capture_output=True)
    with open(path + ".pub") as handle:
        return handle.read().strip()


def create_client_key(root, lab_id):
    make_dir(ssh_dir(root), "root", "root", 0o700)
    make_dir(control_dir(root), "root", "root", 0o700)
    return generate_key(client_key(root), "pgbackup-lab-%s" % lab_id)


def grant_access(root, host, client_public_key):
    """The lab user's home with the lab key authorized, and its sudo rule; both on this host only."""
    home = fs_path(root, host, topology.LAB_USER_HOME)
    make_dir(home, topology.LAB_USER, topology.LAB_USER, 0o755)
    make_dir(os.path.join(home, ".ssh"), topology.LAB_USER, topology.LAB_USER, 0o700)
    write_file(os.path.join(home, ".ssh", "authorized_keys"), client_public_key + "\n", 0o600,
               topology.LAB_USER, topology.LAB_USER)
    write_file(host_path(root, host, SUDOERS_DROP_IN), "%s ALL=(ALL:ALL) NOPASSWD: ALL\n" % topology.LAB_USER, 0o440)


def create_host_key(root, host, lab_id):
    """The host's own ed25519 key in its /etc/ssh; returns the public key line."""
    path = host_path(root, host, HOST_KEY)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    return generate_key(path, "%s.pgbackup-lab-%s" % (host, lab_id))


def write_known_hosts(root, network, public_host_keys):
    """known_hosts from the keys generated for the hosts: each host under its name and address."""
    lines = []
    for host in topology.HOST_NAMES:
        key_type, key_data = public_host_keys[host].split()[:2]
        lines.append("%s,%s %s %s" % (host, topology.host_address(network, host), key_type, key_data))
    write_file(known_hosts(root), "\n".join(lines) + "\n", 0o644)


def write_ssh_config(root, network):
    """ssh_config for the lab: `ssh -F <lab root>/ssh/ssh_config db1` and Ansible use the same
    options. ServerAlive* make a connection to a host that vanished fail within seconds."""
    lines = []
    for host in topology.HOST_NAMES:
        lines += ["Host %s" % host, "    HostName %s" % topology.host_address(network, host)]
    lines += [
        "Host *",
        "    User %s" % topology.LAB_USER,
        "    IdentityFile %s" % client_key(root),
        "    IdentitiesOnly yes",
        "    UserKnownHostsFile %s" % known_hosts(root),
        "    GlobalKnownHostsFile /dev/null",
        "    StrictHostKeyChecking yes",
        "    HashKnownHosts no",
        "    BatchMode yes",
        "    ConnectTimeout 5",
        "    ServerAliveInterval 2",
        "    ServerAliveCountMax 3",
    ]
    write_file(ssh_config(root), "\n".join(lines) + "\n", 0o644)
