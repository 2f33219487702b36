# -*- coding: utf-8 -*-
"""Faults on the PostgreSQL side: wrong password, server down, server restarted while pg_dump
streams, database dropped while pg_dump streams. Runs on its own cluster, which it restarts."""

from __future__ import absolute_import, division, print_function

import re
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.integration.faults.faultlib import (BackgroundCall, assert_earlier_backups_intact, manifest_ids, paused_dump,
                                               repo_snapshot, spec_of, take_backup, temp_entries, wait_for_descendant)
from tests.lib.dbcompare import assert_same_data, table_fingerprints
from tests.lib.pgcluster import PgCluster
from tests.lib.tododb import create_todo_db

DB_MB = 10
# What pg_dump reports when the server ends its connection (restart, DROP DATABASE ... WITH (FORCE)).
CONNECTION_LOST = re.compile(r"server closed the connection unexpectedly|terminating connection due to administrator command")


@pytest.fixture(scope="module")
def own_pg():
    with PgCluster.create() as cluster:  # dropped on exit
        yield cluster


@pytest.fixture
def server_db(own_pg):
    name = "TodoDb_srv_%s" % uuid.uuid4().hex[:6]
    create_todo_db(own_pg, dbname=name, size_mb=DB_MB)
    try:
        yield name
    finally:
        if not own_pg.is_running():
            own_pg.start()
        own_pg.drop_database(name)


def restore_request(cluster, repo_path, source, target, **options):
    return logical_restore.LogicalRestoreRequest(LocalRepository(repo_path), spec_of(cluster, **options.pop("login", {})),
                                                 database=target, source_database=source, **options)


def held_backup_with_fault(monkeypatch, cluster, database, repo_path, fault):
    """Start a backup, hold it mid-stream (pg_dump connected, snapshot open), run ``fault()``,
    let it go on; returns the PgBackupError it must end with."""
    with paused_dump(monkeypatch, after_bytes=1) as (streaming, resume):
        call = BackgroundCall(take_backup, cluster, database, repo_path, compression="none")
        assert streaming.wait(60), "the backup never started streaming"
        wait_for_descendant("pg_dump")
        assert temp_entries(repo_path)
        fault()
        resume.set()
        with pytest.raises(PgBackupError) as failure:
            call.result()
    return failure.value


def test_wrong_password_and_server_down_change_nothing(own_pg, server_db, tmp_repo):
    earlier = take_backup(own_pg, server_db, tmp_repo)
    own_pg.sql('DELETE FROM "Todos" WHERE "Id" % 5 = 0', dbname=server_db)  # the live data differs from the backup
    data_before = table_fingerprints(own_pg, server_db)
    before = repo_snapshot(tmp_repo)
    wrong = {"password": "wrong-" + own_pg.password}

    with pytest.raises(PgBackupError, match="^Authentication failed for 127.0.0.1:%d as postgres" % own_pg.port) as bad:
        logical_backup.backup(logical_backup.LogicalBackupRequest(server_db, LocalRepository(tmp_repo),
                                                                  spec_of(own_pg, **wrong)))
    assert wrong["password"] not in str(bad.value)
    with pytest.raises(PgBackupError, match="^Authentication failed"):
        logical_restore.restore(restore_request(own_pg, tmp_repo, server_db, server_db, force=True, clean=True,
                                                login=wrong))

    own_pg.stop()
    try:
        with pytest.raises(PgBackupError, match="^Cannot reach PostgreSQL at 127.0.0.1:%d" % own_pg.port) as down:
            take_backup(own_pg, server_db, tmp_repo)
        assert "server is running" in down.value.hint
        with pytest.raises(PgBackupError, match="^Cannot reach PostgreSQL"):
            logical_restore.restore(restore_request(own_pg, tmp_repo, server_db, server_db, force=True, clean=True))
    finally:
        own_pg.start()

    assert_earlier_backups_intact(before, tmp_repo)
    assert table_fingerprints(own_pg, server_db) == data_before
    following = take_backup(own_pg, server_db, tmp_repo)
    assert manifest_ids(tmp_repo) == sorted([earlier["id"], following["id"]])


def test_server_restarted_while_pg_dump_streams(monkeypatch, own_pg, server_db, tmp_repo):
    earlier = take_backup(own_pg, server_db, tmp_repo)
    before = repo_snapshot(tmp_repo)
    data_before = table_fingerprints(own_pg, server_db)

    error = held_backup_with_fault(monkeypatch, own_pg, server_db, tmp_repo, own_pg.restart)

    assert error.message.startswith("pg_dump exited with status 1: pg_dump: error: Dumping the contents of table"), error
    assert CONNECTION_LOST.search(error.message), error.message
    assert_earlier_backups_intact(before, tmp_repo)
    assert manifest_ids(tmp_repo) == [earlier["id"]]
    assert table_fingerprints(own_pg, server_db) == data_before
    following = take_backup(own_pg, server_db, tmp_repo)
    assert following["tables"] == earlier["tables"]


def test_database_dropped_while_pg_dump_streams(monkeypatch, own_pg, server_db, tmp_repo):
    earlier = take_backup(own_pg, server_db, tmp_repo)
    before = repo_snapshot(tmp_repo)
    data_before = table_fingerprints(own_pg, server_db)

    error = held_backup_with_fault(monkeypatch, own_pg, server_db, tmp_repo,
                                   lambda: own_pg.drop_database(server_db))

    assert error.message.startswith("pg_dump exited with status 1: pg_dump: error:"), error.message
    assert CONNECTION_LOST.search(error.message), error.message
    assert_earlier_backups_intact(before, tmp_repo)  # now the only copy of the data: untouched
    assert manifest_ids(tmp_repo) == [earlier["id"]]
    with pytest.raises(PgBackupError, match="^Database '%s' does not exist" % server_db):
        take_backup(own_pg, server_db, tmp_repo)
    # The next run that matters: the database comes back from its last backup, complete.
    logical_restore.restore(restore_request(own_pg, tmp_repo, server_db, server_db))
    assert table_fingerprints(own_pg, server_db) == data_before
    assert_same_data(data_before, (own_pg, server_db))
