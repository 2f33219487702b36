# -*- coding: utf-8 -*-
"""The bench's private world: its PostgreSQL cluster, its Todo databases, its work directory and artifacts."""

from __future__ import absolute_import, division, print_function

import contextlib
import os
import time

from harness.common import MIB, log, mkdir, rmtree
from harness.isolation import ColdStart, renice_cluster
from harness.processes import StepFailed

PG_BIN = "/usr/lib/postgresql/15/bin"
IDLE_ARCHIVE_COMMAND = "/bin/true"  # archive_mode is on; WAL archiving must not slow the methods down
REPORTED_SETTINGS = ("shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_level", "fsync", "synchronous_commit",
                     "full_page_writes", "maintenance_work_mem", "max_parallel_maintenance_workers", "wal_compression")


class Workspace(object):
    """What every method works with. ``latest``: method key -> artifact info of its latest successful run."""

    def __init__(self, work_dir, nice=0):
        self.work = work_dir
        self.nice = nice
        self.bin = PG_BIN
        self.cluster = None
        self.postmaster = None
        self.env = None  # libpq environment of the seed's commands (password in PGPASSWORD)
        self.engine_env = None  # the same for the engine child, which takes the password as a module would
        self.latest = {}
        self.cold_start = ColdStart()

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def create_dirs(self):
        mkdir(self.work, mode=0o755)
        for sub in ("logs", "tmp"):
            mkdir(self.path(sub), mode=0o1777)

    def new_cluster(self):
        from tests.lib.pgcluster import PgCluster, cleanup_stale_clusters
        cleanup_stale_clusters()
        log("creating a PostgreSQL 15 cluster (fsync on)")
        return PgCluster.create(fsync=True, extra_conf={
            "archive_mode": True,
            "archive_command": IDLE_ARCHIVE_COMMAND,
        })

    def setup_cluster(self):
        self.cluster = self.new_cluster()
        with open(os.path.join(self.cluster.data_dir, "postmaster.pid")) as handle:
            self.postmaster = int(handle.readline())
        if self.nice:
            renice_cluster(self.postmaster, self.nice)
        self.env = dict(os.environ, PGHOST=self.cluster.host, PGPORT=str(self.cluster.port),
                        PGUSER=self.cluster.user, PGPASSWORD=self.cluster.password)
        for key in ("PGOPTIONS", "PGDATABASE", "PGSERVICE"):
            self.env.pop(key, None)
        self.engine_env = dict(self.env, BENCH_PGPASSWORD=self.cluster.password)
        self.engine_env.pop("PGPASSWORD", None)

    def teardown(self, keep):
        if keep:
            log("kept cluster %s (port %s) and %s" % (self.cluster.name, self.cluster.port, self.work))
            return
        self.cluster.drop()
        rmtree(self.work)

    @contextlib.contextmanager
    def archiving_with(self, command):
        """WAL archiving through ``command`` while the block runs (``IDLE_ARCHIVE_COMMAND`` otherwise)."""
        self.set_archive_command(command)
        try:
            yield
        finally:
            self.set_archive_command(IDLE_ARCHIVE_COMMAND)

    def set_archive_command(self, command):
        self.cluster.sql("ALTER SYSTEM SET archive_command = %s", (command,))
        self.cluster.sql("SELECT pg_reload_conf()")
        deadline = time.time() + 10
        while self.cluster.scalar("SHOW archive_command") != command and time.time() < deadline:
            time.sleep(0.05)

    def cluster_facts(self):
        settings = dict((name, self.cluster.scalar("SELECT current_setting(%s)", (name,))) for name in REPORTED_SETTINGS)
        return {"name": self.cluster.name, "port": self.cluster.port, "fsync": True, "settings": settings}

    def cluster_size(self):
        return int(self.cluster.scalar("SELECT sum(pg_database_size(oid)) FROM pg_database"))

    def create_database(self, dbname, size_mb):
        from tests.lib.tododb import create_todo_db, database_size_bytes
        started = time.monotonic()
        counts = create_todo_db(self.cluster, dbname=dbname, size_mb=size_mb)
        self.cluster.sql("CHECKPOINT")
        size = database_size_bytes(self.cluster, dbname)
        log("%s: %.0f MiB, rows %s, generated in %.1f s" % (dbname, size / MIB, counts, time.monotonic() - started))
        return {"name": dbname, "size_bytes": size, "rows": counts, "generate_seconds": round(time.monotonic() - started, 1)}

    def drop_db(self, name):
        self.cluster.drop_database(name)

    def check_rows(self, dbname, expected):
        from tests.lib.tododb import todo_row_counts
        actual = todo_row_counts(self.cluster, dbname)
        if actual != expected:
            raise StepFailed("restored %s has rows %s, source has %s" % (dbname, actual, expected))

    def prepare_measurement(self):
        return self.cold_start.prepare(self.cluster)

    def tmp_dir(self, name):
        """A private, world-writable TMPDIR for one engine run (its size counts as the run's extra disk)."""
        return mkdir(self.path("tmp", name), mode=0o1777)

    def restore_dir(self, name, owner=None):
        """An empty directory under restore/ (mode 0700, as a data directory must be)."""
        dest = self.path("restore", name)
        rmtree(dest)
        return mkdir(dest, owner=owner, mode=0o700)

    def latest_artifact(self, key, missing):
        """The newest artifact of a method, for the step that restores it; StepFailed "no <missing>" if none."""
        source = self.latest.get(key)
        if not source:
            raise StepFailed("no %s" % missing)
        return source

    def replace_latest(self, key, info, cleanup=True):
        """Record a method's newest artifact; the previous one's directory goes (only the newest is restored)."""
        previous = self.latest.get(key)
        if previous and cleanup and previous.get("dir") and previous["dir"] != info.get("dir"):
            rmtree(previous["dir"])
        self.latest[key] = info

    def cleanup_artifacts(self):
        for info in self.latest.values():
            if info.get("dir"):
                rmtree(info["dir"])
        self.latest = {}
