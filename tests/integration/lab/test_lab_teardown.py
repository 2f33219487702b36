# -*- coding: utf-8 -*-
"""Taking a lab down leaves nothing on the machine, and neither does a run killed with SIGKILL:
the next run finds its lab by the dead owner pid and removes it.

What is left is looked up here with the system's own tools (ip, /proc), not with the lab's code."""

from __future__ import absolute_import, division, print_function

import os
import subprocess
import sys
import time

import pytest

from tests.lib.lab import Lab, cleanup_stale_labs, known_lab_ids
from tests.lib.lab.cleanup import namespace_inodes
from tests.lib.lab.play import EVERY_HOST_PLAY
from tests.lib.lab.processes import is_running, pids_in_namespaces, start_time
from tests.lib.lab.topology import lab_root, name_prefix

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def traces(lab_id, inodes):
    """Everything of lab lab_id still on the machine, as seen by ip, ps and /proc."""
    prefix, root = name_prefix(lab_id), lab_root(lab_id)
    found = []
    for argv in (["ip", "netns", "list"], ["ip", "-o", "link", "show"], ["ps", "-eo", "pid,args"]):
        listing = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        found += ["%s: %s" % (argv[1], line.strip()) for line in listing.splitlines() if prefix in line or root in line]
    with open("/proc/self/mountinfo") as handle:
        found += ["mount: " + line.strip() for line in handle if root in line]
    found += ["process in a lab namespace: %d" % pid for pid in pids_in_namespaces(inodes)]
    if os.path.lexists(root):
        found.append("directory %s" % root)
    return found


def all_namespace_inodes(a_lab):
    return set().union(*(a_lab.namespace_inodes(host) for host in a_lab.hosts))


def postmaster_pid(a_lab, host):
    with open(a_lab.host_path(host, "/var/lib/postgresql/15/main/postmaster.pid")) as handle:
        return int(handle.readline())


def still_running(pid, started):
    """True if the process that started at `started` runs (a zombie waiting for init does not)."""
    return is_running(pid) and start_time(pid) == started


def test_down_leaves_nothing_even_with_postgresql_running(lab):
    second = Lab.create()  # beside the session's lab: it must take another subnet
    try:
        assert second.network != lab.network
        second.collections_root = lab.collections_root
        second.run("db1", ["pg_createcluster", "15", "main", "--start"])
        postmaster = postmaster_pid(second, "db1")
        postmaster_started = start_time(postmaster)
        assert still_running(postmaster, postmaster_started)
        second.playbook(EVERY_HOST_PLAY)  # leaves Ansible's SSH connection masters behind on the controller
        inodes = all_namespace_inodes(second)
        assert len(inodes) == 4 * len(second.hosts)
        assert traces(second.id, inodes), "the lab left no trace to look for: the check below would prove nothing"
    finally:
        second.down()

    assert traces(second.id, inodes) == []
    assert not still_running(postmaster, postmaster_started), "the host's PostgreSQL survived the teardown"


def start_holding_lab():
    child = subprocess.Popen([sys.executable, "-m", "tests.lib.lab", "hold"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    return child, "%da" % child.pid


def wait_for(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.01)


@pytest.mark.parametrize("moment", ["mid-setup", "once-up"])
def test_a_killed_run_is_cleaned_up_by_the_next(moment):
    child, lab_id = start_holding_lab()
    try:
        if moment == "mid-setup":
            wait_for(lambda: subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.count(
                name_prefix(lab_id)) >= 2, "the child's second host")
        else:
            wait_for(lambda: child.stdout.readline().startswith("holding"), "the child's lab")
    finally:
        child.kill()
        child.wait()
    child.stdout.close()
    inodes = namespace_inodes(lab_id)
    assert traces(lab_id, inodes), "the killed run left nothing: nothing to clean up"

    assert lab_id in cleanup_stale_labs()

    assert traces(lab_id, inodes) == []
    assert lab_id not in known_lab_ids()
