# -*- coding: utf-8 -*-
"""Taking a lab down, and finding labs whose owner died (a killed pytest run, a lost keeper).

A lab's owner is the pid in its id; ``<lab root>/lab.json`` also keeps the owner's start time so
that a pid reused by an unrelated process does not keep a dead lab alive. Everything a lab leaves
on the machine is found by name (``pgl<id>-*`` namespaces and interfaces, ``/var/tmp/pgbackup-lab-<id>``,
mounts below it, processes in its namespaces or naming its root), so even a run killed halfway
through setting up is cleaned up completely.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import fcntl
import json
import os
import shutil
import time

from tests.lib.lab import topology
from tests.lib.lab.hostfs import mount_points, ns_dir, outermost
from tests.lib.lab.commands import run
from tests.lib.lab.network import lab_link_names, lab_netns_names, remove_network
from tests.lib.lab.processes import (describe, is_running, kill_until_gone, namespace_inode, pids_in_namespaces, pids_naming,
                                     start_time)

LOCK_PATH = "/run/lock/pgbackup-lab.lock"


@contextlib.contextmanager
def lab_lock():
    """Serializes subnet choice and stale-lab cleanup between concurrent runs on the machine."""
    with open(LOCK_PATH, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def state_path(lab_id):
    return os.path.join(topology.lab_root(lab_id), "lab.json")


def read_state(lab_id):
    try:
        with open(state_path(lab_id)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def write_state(lab_id, **state):
    with open(state_path(lab_id), "w") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)


def owner_alive(lab_id):
    """False once the owner is gone, a zombie (init may reap a killed run late), or its pid is
    someone else's."""
    owner = topology.owner_pid_of(lab_id)
    if not is_running(owner):
        return False
    recorded = read_state(lab_id).get("owner_start")
    return recorded in (None, start_time(owner))


def known_lab_ids():
    """Ids of every lab that has anything on this machine."""
    ids = {topology.lab_id_of_root(entry) for entry in os.listdir(topology.ROOTS_PARENT)}
    ids.update(topology.lab_id_of_name(name) for name in lab_netns_names() + lab_link_names())
    roots_prefix = os.path.join(topology.ROOTS_PARENT, topology.ROOT_PREFIX)
    for point in mount_points():
        if point.startswith(roots_prefix):
            ids.add(topology.lab_id_of_root(point[len(topology.ROOTS_PARENT) + 1:].split("/")[0]))
    return sorted(lab_id for lab_id in ids if lab_id)


def namespace_inodes(lab_id):
    """Inodes of the lab's namespaces that still exist (network ones by name, the rest by file)."""
    paths = ["/run/netns/" + name for name in lab_netns_names(lab_id)]
    directory = ns_dir(topology.lab_root(lab_id))
    if os.path.isdir(directory):
        paths += [os.path.join(directory, name) for name in os.listdir(directory)]
    return {inode for inode in map(namespace_inode, paths) if inode}


def lab_mounts(lab_id):
    root = topology.lab_root(lab_id)
    return [point for point in mount_points() if point == root or point.startswith(root + "/")]


def lab_processes(lab_id, inodes):
    return sorted(set(pids_in_namespaces(inodes) + pids_naming(topology.lab_root(lab_id) + "/")))


def destroy(lab_id):
    """Remove every trace of the lab: its processes (sshd, PostgreSQL, sessions, SSH connection
    masters), its namespace files and mounts, namespaces, interfaces and root directory."""
    inodes = namespace_inodes(lab_id)
    kill_until_gone(lambda: lab_processes(lab_id, inodes))
    for point in outermost(lab_mounts(lab_id)):
        run(["umount", "-l", point], check=False)
    remove_network(lab_id)
    _wait_for(lambda: not lab_link_names(lab_id), "interfaces of lab %s" % lab_id)
    if os.path.lexists(topology.lab_root(lab_id)):
        shutil.rmtree(topology.lab_root(lab_id))
    return inodes


def _wait_for(condition, what, timeout=10):
    # Deleting a network namespace removes its veth pair asynchronously.
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("%s still present after %ss" % (what, timeout))
        time.sleep(0.05)


def cleanup_stale_labs():
    """Destroy the labs whose owner is dead; returns their ids."""
    with lab_lock():
        stale = [lab_id for lab_id in known_lab_ids() if not owner_alive(lab_id)]
        for lab_id in stale:
            destroy(lab_id)
    return stale


def leftovers(lab_id, inodes=()):
    """What is left of a lab on the machine, one line per thing ([] when nothing is)."""
    found = ["network namespace %s" % name for name in lab_netns_names(lab_id)]
    found += ["interface %s" % name for name in lab_link_names(lab_id)]
    found += ["mount %s" % point for point in lab_mounts(lab_id)]
    found += ["process %s" % describe(pid) for pid in lab_processes(lab_id, inodes)]
    if os.path.lexists(topology.lab_root(lab_id)):
        found.append("directory %s" % topology.lab_root(lab_id))
    return found
