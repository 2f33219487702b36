# -*- coding: utf-8 -*-
"""The foundation's acceptance check at size: a ~200 MB TodoDb round-trips exactly,
full and per table, with and without parallel jobs."""

from __future__ import absolute_import, division, print_function

import pytest

from tests.lib.dbcompare import assert_same_data, index_and_constraint_defs, run_pg_amcheck, table_fingerprints
from tests.lib.module_run import connection_args, run_module
from tests.lib.tododb import create_todo_db

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def large_db(pg):
    name = "TodoDb_large"
    create_todo_db(pg, dbname=name, size_mb=200)
    yield name
    pg.drop_database(name)


def test_200mb_database_round_trips_full_and_per_table(ansible_playbook, pg, large_db, tmp_repo):
    args = dict(connection_args(pg), database=large_db, repository=tmp_repo)
    backup, unused_run = run_module(ansible_playbook, "todoapi.pgbackup.pg_dump", args)
    source = table_fingerprints(pg, large_db)
    assert all(backup["backup"]["tables"][key] == value["rows"] for key, value in source.items())
    for jobs, target in ((1, "Large serial"), (2, "Large parallel")):
        restore = dict(connection_args(pg), repository=tmp_repo, source_database=large_db, database=target, jobs=jobs)
        try:
            run_module(ansible_playbook, "todoapi.pgbackup.pg_restore", restore)
            assert_same_data(source, (pg, target))
            run_pg_amcheck(pg, target)
        finally:
            pg.drop_database(target)
    defs = index_and_constraint_defs(pg, large_db, "Todos")
    pg.sql('DELETE FROM "Todos" WHERE "Id" % 2 = 0', dbname=large_db)
    per_table = dict(connection_args(pg), repository=tmp_repo, database=large_db, tables=["Todos"])
    run_module(ansible_playbook, "todoapi.pgbackup.pg_restore", per_table)
    assert_same_data(source, (pg, large_db))
    assert index_and_constraint_defs(pg, large_db, "Todos") == defs
