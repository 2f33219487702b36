# -*- coding: utf-8 -*-
"""A database of its own for one test, in a shared cluster::

    from tests.lib.scratchdb import scratch_database

    @pytest.fixture
    def source_db(pg):
        with scratch_database(pg, "mytest_src_%d" % os.getpid(), "CREATE TABLE t (id int);") as name:
            yield name
"""

from __future__ import absolute_import, division, print_function

import contextlib


@contextlib.contextmanager
def scratch_database(cluster, name, schema=None):
    """``name``, dropped first (a killed earlier run may have left it) and afterwards. With ``schema`` (SQL,
    possibly empty) the database is created and the SQL run in it; without, only the name is kept free
    (for a database the test itself creates, such as a restore target)."""
    cluster.drop_database(name)
    try:
        if schema is not None:
            cluster.create_database(name)
            if schema.strip():
                cluster.psql_as_os_user(schema, dbname=name)
        yield name
    finally:
        cluster.drop_database(name)
