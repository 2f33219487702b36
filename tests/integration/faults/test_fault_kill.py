# -*- coding: utf-8 -*-
"""Fault: a backup process is SIGKILLed half-way (pg_dump, pg_basebackup).

The artifact is written under a ``.tmp-`` name and published (rename + manifest last) only
after every stage exited cleanly, so a killed process leaves no backup behind, no work
file, and the earlier backups byte for byte as they were.
"""

from __future__ import absolute_import, division, print_function

import os
import signal
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.integration.faults.faultlib import (BackgroundCall, assert_earlier_backups_intact, manifest_ids, paused_dump,
                                               descendants, kill_and_reap, repo_snapshot, spec_of, take_backup, temp_entries,
                                               wait_for_descendant, wait_until_gone)
from tests.lib.dbcompare import table_fingerprints


def test_pg_dump_killed_mid_stream_publishes_nothing(pg, big_db, tmp_repo, monkeypatch):
    earlier = take_backup(pg, big_db, tmp_repo)
    before = repo_snapshot(tmp_repo)
    data_before = table_fingerprints(pg, big_db)

    with paused_dump(monkeypatch, after_bytes=1) as (streaming, resume):
        call = BackgroundCall(take_backup, pg, big_db, tmp_repo)
        assert streaming.wait(60), "the backup never started streaming"
        pid = wait_for_descendant("pg_dump")
        assert temp_entries(tmp_repo), "the running backup writes under a .tmp- name"
        os.kill(pid, signal.SIGKILL)
        resume.set()
        with pytest.raises(PgBackupError) as failure:
            call.result()

    assert failure.value.message.startswith("pg_dump was killed by signal 9"), failure.value.message
    assert_earlier_backups_intact(before, tmp_repo)
    assert manifest_ids(tmp_repo) == [earlier["id"]]
    assert table_fingerprints(pg, big_db) == data_before

    following = take_backup(pg, big_db, tmp_repo)
    repo = LocalRepository(tmp_repo)
    assert repo.resolve("latest", database=big_db)["id"] == following["id"]
    repo.verify_checksum(repo.load(earlier["id"]))
    assert following["tables"] == earlier["tables"]


def test_pg_basebackup_killed_mid_copy_publishes_nothing(pg, todo_db, tmp_repo):
    earlier = take_backup(pg, todo_db.name, tmp_repo)
    before = repo_snapshot(tmp_repo)
    repo = LocalRepository(tmp_repo, owner="postgres")

    def take_base_backup(**options):
        return base_backup.backup(base_backup.PhysicalBackupRequest(repo, spec_of(pg), **options))

    def copying():
        return any(name.endswith(".base") and os.listdir(os.path.join(tmp_repo, name)) for name in temp_entries(tmp_repo))

    # Throttled so that it is certainly still copying when it is killed.
    call = BackgroundCall(take_base_backup, max_rate="4M")
    pid = wait_for_descendant("pg_basebackup", condition=copying)
    helpers = [child for child, name in descendants(pid)]
    assert helpers, "pg_basebackup -X stream runs its WAL streamer as a child process"
    os.kill(pid, signal.SIGKILL)
    try:
        with pytest.raises(PgBackupError) as failure:
            call.result()
        # Nothing of the killed run may live on: an orphaned WAL streamer would keep the backup
        # connection (and a walsender) open forever and write into a deleted file.
        assert wait_until_gone(helpers), "pg_basebackup's WAL streamer outlived the killed backup"
    finally:
        kill_and_reap(helpers)

    assert failure.value.message.startswith("pg_basebackup was killed by signal 9"), failure.value.message
    assert_earlier_backups_intact(before, tmp_repo)
    assert manifest_ids(tmp_repo) == [earlier["id"]]
    # The server side of the killed copy goes away too (its temporary replication slot with it).
    deadline = time.monotonic() + 15
    while pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'") == 0
    assert pg.scalar("SELECT count(*) FROM pg_replication_slots") == 0

    following = take_base_backup()
    assert following["verified"]["backup_manifest"] is True
    assert sorted(manifest_ids(tmp_repo)) == sorted([earlier["id"], following["id"]])
    assert temp_entries(tmp_repo) == []
