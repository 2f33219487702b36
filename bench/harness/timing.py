# -*- coding: utf-8 -*-
"""The measured part of a method: wall time, CPU time (client and server) and extra disk space."""

from __future__ import absolute_import, division, print_function

import time

from harness import processes
from harness.sampling import DiskWatch, cluster_cpu_seconds


class Timed(object):
    """A cold start first (see Workspace.prepare_measurement), then wall time and CPU (client and server)."""

    def __init__(self, workspace, watch=()):
        self.workspace = workspace
        self.watch = DiskWatch(watch)

    def __enter__(self):
        self.load = self.workspace.prepare_measurement()
        self.server0 = cluster_cpu_seconds(self.workspace.postmaster)
        processes.CLIENT_CPU[0] = 0.0
        self.watch.__enter__()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.started
        self.watch.__exit__(*exc)
        self.server_cpu = cluster_cpu_seconds(self.workspace.postmaster) - self.server0
        self.client_cpu = processes.CLIENT_CPU[0]
        return False

    def fields(self):
        return {"seconds": self.seconds, "peak_disk_bytes": self.watch.peak, "final_disk_bytes": self.watch.final,
                "cpu_client_seconds": round(self.client_cpu, 2), "cpu_server_seconds": round(self.server_cpu, 2),
                "loadavg_1m": self.load}
