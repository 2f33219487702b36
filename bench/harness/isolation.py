# -*- coding: utf-8 -*-
"""Equal starts for every measurement: CHECKPOINT, an empty page cache, the bench's CPU priority."""

from __future__ import absolute_import, division, print_function

import os
import subprocess

from harness.common import log
from harness.sampling import cluster_processes


def drop_caches():
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


def renice_cluster(postmaster, nice):
    """Give the cluster's processes the bench's priority (backends forked later inherit the postmaster's)."""
    for pid, dummy in cluster_processes(postmaster):
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        except OSError:
            pass


class ColdStart(object):
    """Checkpoint and drop the page cache before a measurement (cold cache, as for a nightly job)."""

    def __init__(self):
        self.caches_dropped = None  # None until the first measurement tried

    def prepare(self, cluster):
        """Returns the 1-minute load average at the start (other work on the machine shows there)."""
        cluster.sql("CHECKPOINT")
        dropped = drop_caches()
        if self.caches_dropped is None:
            self.caches_dropped = dropped
            if not dropped:
                log("cannot drop the page cache (no permission): measurements run with a warm cache")
        return os.getloadavg()[0]
