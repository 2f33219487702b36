# -*- coding: utf-8 -*-
"""Finding and killing the processes of a lab: those inside a host's namespaces, and those on
the controller side that name the lab root (ssh connection masters, a stray sshd)."""

from __future__ import absolute_import, division, print_function

import os
import signal
import time

from tests.lib.procscan import _stat_fields, proc_state

NAMESPACE_KINDS = ("net", "mnt", "uts", "ipc")
_NSFS_DEV = os.stat("/proc/self/ns/net").st_dev


def namespace_inode(path):
    """Inode of the namespace bound at path, or None if path is missing or not a namespace
    (a namespace file before unshare bound it is a plain empty file)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino if stat.st_dev == _NSFS_DEV else None


def _process_namespaces(pid):
    inodes = set()
    for kind in NAMESPACE_KINDS:
        try:
            link = os.readlink("/proc/%d/ns/%s" % (pid, kind))  # e.g. "net:[4026532301]"
        except OSError:
            continue
        inodes.add(int(link[link.index("[") + 1:-1]))
    return inodes


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _other_pids():
    me = os.getpid()
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != me]


def pids_in_namespaces(inodes):
    """Processes that live in any of the given namespaces."""
    inodes = set(inodes)
    if not inodes:
        return []
    return [pid for pid in _other_pids() if _process_namespaces(pid) & inodes]


def pids_naming(text):
    """Processes whose command line contains text (e.g. "ssh: <lab root>/cp/... [mux]")."""
    return [pid for pid in _other_pids() if text in _cmdline(pid)]


def describe(pid):
    return "%d %s" % (pid, _cmdline(pid).strip()[:160])


def kill_until_gone(find_pids, timeout=15):
    """SIGKILL whatever find_pids() returns until it returns nothing (processes may fork while
    being killed). Returns the pids killed; raises RuntimeError listing survivors at timeout."""
    killed = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for pid in find_pids() if is_running(pid)]
        if not pids:
            return sorted(killed)
        if time.monotonic() > deadline:
            raise RuntimeError("processes survived SIGKILL: %s" % ", ".join(describe(pid) for pid in pids))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def is_running(pid):
    """True if the process exists and is not a zombie waiting to be reaped."""
    return proc_state(pid) not in (None, "Z")


def start_time(pid):
    """Start time of a process in clock ticks since boot (tells a reused pid apart), or None."""
    fields = _stat_fields(pid)
    return int(fields[1][19]) if fields else None
