# -*- coding: utf-8 -*-
"""One lab: six hosts on a private /24, reached over SSH as the lab user (see docs/lab.md)."""

from __future__ import absolute_import, division, print_function

import ipaddress
import os
import shutil
import signal
import subprocess

from tests.lib.lab import access, hostfs, topology
from tests.lib.lab.cleanup import destroy, lab_lock, owner_alive, read_state, write_state
from tests.lib.lab.inventory import inventory_path, write_inventory
from tests.lib.lab.network import (create_bridge, create_host_network, lab_link_names, lab_netns_names, netns_path,
                                   networks_in_use, set_host_link)
from tests.lib.lab.play import run_lab_playbook
from tests.lib.lab.processes import kill_until_gone, namespace_inode, pids_in_namespaces, start_time
from tests.lib.lab.sshd import answers_ssh, start_sshd, wait_until_ready, write_sshd_config


# What lose() deletes: PostgreSQL's configuration, data, sockets and logs, the collection's configuration
# and credentials, and the local backup directory.
LOST_DISKS = ("/etc/postgresql", "/var/lib/postgresql", "/var/run/postgresql", "/var/log/postgresql",
              "/etc/todoapi-pgbackup", "/var/backups")


class Lab(object):
    """A running lab. ``Lab.create()`` builds one owned by the calling process; ``down()`` removes it."""

    def __init__(self, lab_id, network, keeper=False):
        self.id = lab_id
        self.network = ipaddress.ip_network(network)
        self.keeper = keeper
        self.root = topology.lab_root(lab_id)
        self.hosts = topology.HOST_NAMES
        self.controller = topology.controller_address(self.network)
        self.inventory = inventory_path(self.root)
        self.ssh_config = access.ssh_config(self.root)
        self.private_key = access.client_key(self.root)
        self.known_hosts = access.known_hosts(self.root)
        self.collections_root = None  # set by whoever runs plays with the collection (the pytest fixture)

    def __repr__(self):
        return "Lab(%s, %s, %s)" % (self.id, self.network, self.inventory)

    # -- building and removing ---------------------------------------------

    @classmethod
    def create(cls, owner_pid=None, keeper=False):
        """Build a lab owned by owner_pid (default: this process): its id, subnet and bridge are
        chosen under the machine-wide lab lock, the rest in parallel with other runs."""
        owner_pid = owner_pid or os.getpid()
        with lab_lock():
            access.ensure_lab_user()
            lab_id = _unused_lab_id(owner_pid)
            os.mkdir(topology.lab_root(lab_id), 0o700)
        try:
            with lab_lock():
                network = topology.free_subnet(networks_in_use())
                write_state(lab_id, owner_pid=owner_pid, owner_start=start_time(owner_pid), keeper=keeper,
                            network=str(network))
                create_bridge(lab_id, network)
            lab = cls(lab_id, network, keeper)
            lab._build()
        except BaseException:
            destroy(lab_id)
            raise
        return lab

    @classmethod
    def attach(cls, lab_id):
        """The lab lab_id as recorded in its lab.json (KeyError if there is none)."""
        state = read_state(lab_id)
        if not state:
            raise KeyError("no lab %s (no %s/lab.json)" % (lab_id, topology.lab_root(lab_id)))
        return cls(lab_id, state["network"], state.get("keeper", False))

    def _build(self):
        client_public_key = access.create_client_key(self.root, self.id)
        hostfs.prepare_ns_dir(self.root)
        host_keys = {}
        for host in self.hosts:
            hostfs.prepare_host_dirs(self.root, host)
            hostfs.write_identity(self.root, host, self.network)
            access.grant_access(self.root, host, client_public_key)
            host_keys[host] = access.create_host_key(self.root, host, self.id)
            write_sshd_config(self.root, host, self.address(host))
            create_host_network(self.id, self.network, host)
            hostfs.create_host_namespaces(self.root, host, netns_path(self.id, host))
            start_sshd(self.enter_argv(host))
        access.write_known_hosts(self.root, self.network, host_keys)
        access.write_ssh_config(self.root, self.network)
        write_inventory(self.id, self.root, self.network)
        wait_until_ready({host: self.address(host) for host in self.hosts})

    def down(self):
        """Remove the lab completely; a `scripts/lab.sh up` lab's keeper process goes too."""
        keeper_alive = self.keeper and owner_alive(self.id)  # checked first: destroy() removes lab.json
        destroy(self.id)
        if keeper_alive:
            try:
                os.kill(topology.owner_pid_of(self.id), signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- looking at it -------------------------------------------------------

    def address(self, host):
        return topology.host_address(self.network, host)

    def host_path(self, host, path):
        """Where the host's path lives on the controller (see hostfs.host_path)."""
        return hostfs.host_path(self.root, host, path)

    def namespace_inodes(self, host):
        paths = [netns_path(self.id, host)] + [hostfs.ns_file(self.root, host, kind) for kind in hostfs.NAMESPACE_FILES]
        return {inode for inode in map(namespace_inode, paths) if inode}

    def processes(self, host):
        """Pids of every process running in the host."""
        return pids_in_namespaces(self.namespace_inodes(host))

    def status(self):
        """{host: "up" | "down"}: whether the host's sshd answers."""
        return {host: "up" if answers_ssh(self.address(host), timeout=0.5) else "down" for host in self.hosts}

    def owner_alive(self):
        return owner_alive(self.id)

    # -- using it --------------------------------------------------------------

    def enter_argv(self, host):
        return hostfs.enter_argv(self.root, host, netns_path(self.id, host))

    def run(self, host, argv, user=None, check=True, input_text=None, timeout=120):
        """Run argv inside the host, as root or (user=...) as another account, bypassing SSH.
        For setting up and inspecting tests; what a test proves goes over SSH."""
        prefix = self.enter_argv(host) + (["runuser", "-u", user, "--"] if user else [])
        completed = subprocess.run(prefix + list(argv), input=input_text, capture_output=True, text=True,
                                   env=hostfs.HOST_ENV, timeout=timeout, check=False)
        if check and completed.returncode != 0:
            raise AssertionError("on %s: %s failed (rc=%s)\n%s%s" % (host, " ".join(argv), completed.returncode,
                                                                     completed.stdout, completed.stderr))
        return completed

    def ssh(self, host, command, options=(), timeout=60):
        """ssh -F <lab ssh_config> [options] host command, as the lab user."""
        argv = ["ssh", "-F", self.ssh_config] + list(options) + [host, command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def playbook(self, playbook, **options):
        """run_lab_playbook over this lab's inventory (options: extra_vars, limit, forks, expect_failure, env)."""
        return run_lab_playbook(self.inventory, self.collections_root, playbook, **options)

    # -- breaking it -----------------------------------------------------------

    def cut_off(self, host):
        """Lose the host: pull its cable (veth down on the root side), then kill every process in
        it (sshd, PostgreSQL, sessions). Its disks and namespaces stay; see reconnect()."""
        set_host_link(self.id, host, up=False)
        inodes = self.namespace_inodes(host)
        kill_until_gone(lambda: pids_in_namespaces(inodes))

    def lose(self, host, disks=LOST_DISKS):
        """Lose the host whole: cut_off() (cable out, every process killed), then its disks wiped: the
        contents of each of its own directories in disks (by default PostgreSQL's configuration, data,
        sockets and logs, the collection's config and /var/backups). Returns the paths wiped (host paths).
        reconnect() brings back an empty host: sshd only, no PostgreSQL, no backups."""
        self.cut_off(host)
        for path in disks:
            wipe_directory(self.host_path(host, path))
        return list(disks)

    def reconnect(self, host):
        """Bring a cut-off host back: cable in, sshd started, answering. Nothing else is restarted."""
        self.close_connections(host)
        set_host_link(self.id, host, up=True)
        start_sshd(self.enter_argv(host))
        wait_until_ready({host: self.address(host)})

    def close_connections(self, host):
        """Stop Ansible's SSH connection master for the host, if there is one (it may hang on a dead peer)."""
        subprocess.run(["ssh", "-F", self.ssh_config, "-o", "ControlPath=%s/%%C" % access.control_dir(self.root),
                        "-O", "exit", str(self.address(host))], capture_output=True, timeout=30, check=False)


def wipe_directory(path):
    """Delete everything inside path (the directory itself is a host's mount point and stays)."""
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)


def _unused_lab_id(owner_pid):
    for letter in "abcdefghijklmnopqrstuvwxyz":
        lab_id = topology.make_lab_id(owner_pid, letter)
        if not (os.path.lexists(topology.lab_root(lab_id)) or lab_netns_names(lab_id) or lab_link_names(lab_id)):
            return lab_id
    raise RuntimeError("process %d already owns 26 labs" % owner_pid)


def running_lab(collections_root):
    """A new Lab for as long as the generator runs; a module that ruins a host for good
    (``lab.lose``) takes one of its own this way, so the session's lab keeps every host."""
    the_lab = Lab.create()
    the_lab.collections_root = collections_root
    try:
        yield the_lab
    finally:
        the_lab.down()
