# -*- coding: utf-8 -*-
"""Resource sampling: the cluster's processes and CPU time, disk space used under some directories."""

from __future__ import absolute_import, division, print_function

import os
import threading


def cluster_processes(postmaster):
    """[(pid, /proc/<pid>/stat fields after the command name)] of the postmaster and its children."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            pid, ppid = int(entry), int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
        if pid == postmaster or ppid == postmaster:
            out.append((pid, fields))
    return out


def cluster_cpu_seconds(postmaster):
    """CPU seconds used so far by a cluster: its live processes plus the backends the postmaster reaped."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    total = 0
    for dummy, fields in cluster_processes(postmaster):
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        total += utime + stime + cutime + cstime  # cutime: e.g. archive_command runs of the archiver
    return total / tick


def tree_bytes(path):
    """Disk space used under path (allocated blocks), 0 if it does not exist."""
    total = 0
    try:
        if not os.path.isdir(path):
            return os.lstat(path).st_blocks * 512
    except OSError:
        return 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


class DiskWatch(object):
    """Peak growth of the space used under some directories while a step runs (polled every 0.1 s)."""

    def __init__(self, paths, interval=0.1):
        self.paths = [p for p in paths if p]
        self.interval = interval
        self.baseline = sum(tree_bytes(p) for p in self.paths)
        self.peak = 0
        self.final = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.daemon = True

    def _sample(self):
        self.peak = max(self.peak, sum(tree_bytes(p) for p in self.paths) - self.baseline)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        self.final = sum(tree_bytes(p) for p in self.paths) - self.baseline
        return False
