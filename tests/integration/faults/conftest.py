# -*- coding: utf-8 -*-
"""Fixtures of the fault-injection suite (see docs/reliability.md).

Each test injects one fault and proves (a) a clear error or alert naming the cause, (b) no
earlier backup damaged or deleted (file names + sha256 before/after), (c) no target database
half-changed (table fingerprints before/after) and (d) that the next normal run succeeds.
Helpers live in ``tests.integration.faults.faultlib``.
"""

from __future__ import absolute_import, division, print_function

import uuid

import pytest

from tests.lib.tododb import create_todo_db

BIG_DB_MB = 30


@pytest.fixture(scope="session")
def big_db(pg):
    """A ~35 MB Todo database (pg_dump runs long enough to be hit mid-stream); read-only for tests."""
    name = "TodoDb_faults_%s" % uuid.uuid4().hex[:6]
    create_todo_db(pg, dbname=name, size_mb=BIG_DB_MB)
    try:
        yield name
    finally:
        pg.drop_database(name)


@pytest.fixture
def scratch_db(pg):
    """Name for a database a test creates (restore target); dropped afterwards."""
    name = "Fault target %s" % uuid.uuid4().hex[:6]
    yield name
    pg.drop_database(name)
