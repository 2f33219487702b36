# -*- coding: utf-8 -*-
"""``build_indexes: after_swap``: a full logical restore leaves the plain indexes out of the load, swaps the
database in, then builds them with CREATE INDEX CONCURRENTLY (plugins/module_utils/logical/deferred_indexes.py).

Against a real server: the database is in place and answers queries while a deferred build is held (the
application's open write transaction on the table, which CONCURRENTLY waits for); at the end every index is
valid and defined as in the source; the indexes that are not plain (unique, commented, CLUSTER ON,
partitioned) are built during the load; a build that fails is dropped, reported and fails the restore with the
database in place; a per-table restore is unaffected; the runner passes the option; PostgreSQL 18's
pg_restore gives the same listing and script."""

from __future__ import absolute_import, division, print_function

import os
import threading
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import deferred_indexes
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from tests.integration.faults.faultlib import take_backup
from tests.integration.test_restore_time_to_usable import hooks_before, restore, run_runner
from tests.lib.dbcompare import assert_same_data, index_and_constraint_defs
from tests.lib.scratchdb import scratch_database

SCHEMA = """
CREATE TABLE parent (id int PRIMARY KEY, label text);
CREATE INDEX "IX parent label" ON parent (label);
CREATE UNIQUE INDEX parent_upper_label ON parent (upper(label));
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id), weight int, note text);
CREATE INDEX ix_child_parent ON child (parent_id);
CREATE INDEX ix_child_ratio ON child ((100 / weight)) WHERE weight IS NOT NULL;
CREATE INDEX ix_child_note ON child (note);
COMMENT ON INDEX ix_child_note IS 'a comment depends on it';
CREATE INDEX ix_child_weight ON child (weight);
ALTER TABLE child CLUSTER ON ix_child_weight;
CREATE TABLE parted (id int, v int) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100000);
CREATE INDEX ix_parted_v ON parted (v);
CREATE INDEX ix_parted_1_id ON parted_1 (id);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 200) g;
INSERT INTO child SELECT g, 1 + g % 200, 1 + g % 9, 'n' || g FROM generate_series(1, 3000) g;
INSERT INTO parted SELECT g, g % 50 FROM generate_series(1, 300) g;
"""
DEFERRED = ['"IX parent label"', "ix_child_parent", "ix_child_ratio", "ix_parted_1_id"]
TABLES = ("parent", "child", "parted", "parted_1")
INDEX_STATE = """
SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1
"""
BUILD_WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = %s AND query LIKE 'CREATE INDEX CONCURRENTLY ix_child_%%' AND wait_event_type = 'Lock'
"""


@pytest.fixture(scope="module")
def source_db(pg):
    with scratch_database(pg, "idxdefer_src_%d" % os.getpid(), SCHEMA) as name:
        yield name


@pytest.fixture(scope="module")
def backed_up(pg, source_db, tmp_path_factory):
    repo = str(tmp_path_factory.mktemp("idxdefer_repo"))
    take_backup(pg, source_db, repo)
    return repo


@pytest.fixture
def target_db(pg):
    with scratch_database(pg, "idxdefer_dst_%d" % os.getpid()) as name:
        yield name


@pytest.fixture
def before_builds(monkeypatch):
    """Run ``hook()`` between the swap-in and the deferred index builds."""
    return hooks_before(monkeypatch, deferred_indexes.DeferredIndexes, "build")


def index_state(pg, dbname):
    return dict(pg.sql(INDEX_STATE, dbname=dbname))


def assert_same_indexes(pg, source_db, target_db):
    assert all(index_state(pg, target_db).values()), index_state(pg, target_db)
    for table in TABLES:
        assert index_and_constraint_defs(pg, target_db, table) == index_and_constraint_defs(pg, source_db, table)


def test_the_database_answers_before_its_plain_indexes_exist_and_gets_them_all_valid(
        pg, source_db, backed_up, target_db, before_builds):
    seen = {}

    def application_holds_a_write_transaction(deferred):
        seen["deferred"] = sorted(index.name for index in deferred.indexes)
        writer = pg.connect(target_db)
        writer.autocommit = False
        with writer.cursor() as cursor:
            cursor.execute("INSERT INTO child VALUES (90001, 5, 2, 'new')")  # ROW EXCLUSIVE until commit

        def watch():
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not pg.scalar(BUILD_WAITING, (target_db,)):
                    time.sleep(0.1)
                seen["held"] = time.monotonic() < deadline
                seen["answer"] = pg.scalar("SELECT count(*) FROM child WHERE parent_id = 6", dbname=target_db)
                seen["while_held"] = index_state(pg, target_db)
            finally:
                writer.commit()
                writer.close()
        seen["watcher"] = threading.Thread(target=watch)
        seen["watcher"].start()
    before_builds(application_holds_a_write_transaction)

    result = restore(pg, backed_up, source_db, target_db, jobs=2, build_indexes="after_swap",
                     validate_foreign_keys="after_swap")
    seen["watcher"].join()

    assert seen["deferred"] == sorted(DEFERRED)
    assert seen["held"], "no CREATE INDEX CONCURRENTLY waited for the application's transaction"
    assert seen["answer"] == 15
    held = seen["while_held"]
    assert not held.get("ix_child_parent") and not held.get("ix_child_ratio"), held  # absent or not valid yet
    assert all(held[name] for name in ("child_pkey", "ix_child_note", "ix_child_weight", "parent_upper_label",
                                       "ix_parted_v", "parted_1_v_idx")), held
    assert sorted(item["index"] for item in result["built_indexes"]) == sorted(DEFERRED)
    assert len(result["validated_foreign_keys"]) == 1
    assert 0 < result["usable_after_seconds"] < result["checks_finished_after_seconds"] <= result["duration_seconds"]
    pg.sql("DELETE FROM child WHERE id = 90001", dbname=target_db)
    assert_same_data((pg, source_db), (pg, target_db))
    assert_same_indexes(pg, source_db, target_db)
    assert pg.scalar("SELECT count(*) FROM pg_index WHERE indisclustered", dbname=target_db) == 1


@pytest.mark.parametrize("options", [
    {"jobs": 1},
    {"jobs": 2, "fmt": "directory"},
], ids=["serial-stream", "directory"])
def test_every_path_builds_the_same_indexes(pg, source_db, target_db, tmp_repo, options):
    take_backup(pg, source_db, tmp_repo, **({"fmt": "directory", "jobs": 2, "compression": "gzip:1"} if "fmt" in options else {}))
    result = restore(pg, tmp_repo, source_db, target_db, jobs=options["jobs"], build_indexes="after_swap")
    assert sorted(item["index"] for item in result["built_indexes"]) == sorted(DEFERRED)
    assert result["validated_foreign_keys"] == []
    assert_same_indexes(pg, source_db, target_db)


def test_a_build_that_fails_is_dropped_and_reported_with_the_database_in_place(
        pg, source_db, backed_up, target_db, before_builds):
    before_builds(lambda deferred: pg.sql("INSERT INTO child VALUES (90002, 7, 0, 'zero')", dbname=target_db))

    with pytest.raises(logical_restore.IndexesNotBuilt) as failure:
        restore(pg, backed_up, source_db, target_db, jobs=2, build_indexes="after_swap",
                validate_foreign_keys="after_swap")
    error = failure.value
    assert isinstance(error, logical_restore.FailedAfterSwap)
    assert "Database '%s' IS in place and usable" % target_db in error.message and "division by zero" in error.message
    assert "CREATE INDEX CONCURRENTLY ix_child_ratio ON public.child USING btree" in error.hint
    assert error.details["database_in_place"] is True and error.details["usable_after_seconds"] > 0
    assert [item["index"] for item in error.details["failed_indexes"]] == ["ix_child_ratio"]
    assert sorted(item["index"] for item in error.details["built_indexes"]) == sorted(set(DEFERRED) - {"ix_child_ratio"})
    assert len(error.details["validated_foreign_keys"]) == 1, "the keys are validated even so"
    state = index_state(pg, target_db)
    assert "ix_child_ratio" not in state and all(state.values()), state
    assert pg.scalar("SELECT count(*) FROM child", dbname=target_db) == 3001


def test_per_table_restore_and_refusals(pg, source_db, backed_up, target_db):
    restore(pg, backed_up, source_db, target_db)
    pg.sql("DROP TABLE child", dbname=target_db)
    result = restore(pg, backed_up, source_db, target_db, tables=["child"], build_indexes="after_swap")
    assert result["usable_after_seconds"] == result["checks_finished_after_seconds"]
    assert index_and_constraint_defs(pg, target_db, "child") == index_and_constraint_defs(pg, source_db, "child")
    with pytest.raises(PgBackupError, match="build_indexes: after_swap needs a staging database"):
        restore(pg, backed_up, source_db, target_db, force=True, build_indexes="after_swap")
    with pytest.raises(PgBackupError, match="build_indexes must be one of during, after_swap"):
        restore(pg, backed_up, source_db, target_db, build_indexes="later")


def test_the_runner_passes_build_indexes(pg, source_db, backed_up, target_db, tmp_path):
    code, events = run_runner(pg, tmp_path, backed_up, source_db, "--database", target_db, "--jobs", "2",
                              "--build-indexes", "after_swap")
    assert code == 0, events
    done = events["restore_ok"]
    assert done["build_indexes"] == "after_swap" and sorted(done["built_indexes"]) == sorted(DEFERRED)
    assert 0 < done["usable_after_seconds"] < done["checks_finished_after_seconds"]


def test_postgresql_18_defers_and_builds_the_same_indexes(pg18, tmp_path):
    with scratch_database(pg18, "idxdefer_src18_%d" % os.getpid(), SCHEMA) as source, \
            scratch_database(pg18, "idxdefer_dst18_%d" % os.getpid()) as target:
        take_backup(pg18, source, str(tmp_path), pg_bin_dir=pg18.bindir)
        result = restore(pg18, str(tmp_path), source, target, jobs=2, build_indexes="after_swap",
                         validate_foreign_keys="after_swap", pg_bin_dir=pg18.bindir)
        assert sorted(item["index"] for item in result["built_indexes"]) == sorted(DEFERRED)
        assert_same_indexes(pg18, source, target)
