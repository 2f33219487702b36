# -*- coding: utf-8 -*-
"""Fault: the disk fills up, under the repository during a backup, and under the restore's
work directory (jobs > 1 writes the archive's table of contents there) during a restore."""

from __future__ import absolute_import, division, print_function

import os
import shutil

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.integration.faults.faultlib import (assert_earlier_backups_intact, manifest_ids, repo_snapshot, spec_of,
                                               take_backup, temp_entries, tmpfs)
from tests.lib.dbcompare import assert_same_data, table_fingerprints


def fill(path, leave_bytes):
    """Create ``path`` so that only about ``leave_bytes`` stay free on its file system."""
    info = os.statvfs(os.path.dirname(path))
    size = max(0, info.f_bavail * info.f_frsize - leave_bytes)
    with open(path, "wb") as handle:
        handle.truncate(size)
        handle.seek(0)
        block = b"\xff" * (1024 * 1024)
        written = 0
        while written < size:  # tmpfs allocates pages only when written
            part = block[:min(len(block), size - written)]
            handle.write(part)
            written += len(part)


def test_repository_disk_full_during_backup(pg, todo_db, tmp_path):
    with tmpfs(str(tmp_path / "disk"), "8m") as disk:
        repo = os.path.join(disk, "repo")
        os.mkdir(repo, 0o700)
        shutil.chown(repo, "postgres", "postgres")
        earlier = take_backup(pg, todo_db.name, repo)
        filler = os.path.join(disk, "other-data")
        fill(filler, 64 * 1024)
        before = repo_snapshot(repo)
        data_before = table_fingerprints(pg, todo_db.name)

        with pytest.raises(PgBackupError) as failure:
            take_backup(pg, todo_db.name, repo)
        assert failure.value.message == "No space left on the device holding '%s'." % repo
        assert "earlier backups were not touched" in failure.value.hint
        assert_earlier_backups_intact(before, repo)
        assert temp_entries(repo) == []
        assert table_fingerprints(pg, todo_db.name) == data_before

        os.unlink(filler)
        following = take_backup(pg, todo_db.name, repo)
        assert manifest_ids(repo) == sorted([earlier["id"], following["id"]])
        LocalRepository(repo).verify_checksum(following)


def test_work_dir_full_during_parallel_restore_leaves_target_unchanged(pg, todo_db, tmp_repo, scratch_db, tmp_path):
    manifest = take_backup(pg, todo_db.name, tmp_repo)  # zstd: jobs > 1 copies its table of contents to work_dir
    assert manifest["compression"]["applied"] == "external"
    repo = LocalRepository(tmp_repo)

    def restore(work_dir):
        return logical_restore.restore(logical_restore.LogicalRestoreRequest(
            repo, spec_of(pg), database=scratch_db, source_database=todo_db.name, force=True, clean=True, jobs=2,
            work_dir=work_dir))

    restore(str(tmp_path))
    pg.sql('DELETE FROM "Todos" WHERE "Id" % 3 = 0', dbname=scratch_db)  # the target now differs from the backup
    target_before = table_fingerprints(pg, scratch_db)
    repo_before = repo_snapshot(tmp_repo)
    databases_before = sorted(row[0] for row in pg.sql("SELECT datname FROM pg_database"))

    with tmpfs(str(tmp_path / "work"), "64k") as work_dir:
        with pytest.raises(PgBackupError) as failure:
            restore(work_dir)
        assert "No space left on device" in failure.value.message, failure.value.message
        assert os.listdir(work_dir) == [], "the partly decoded archive was removed"

    assert table_fingerprints(pg, scratch_db) == target_before
    assert sorted(row[0] for row in pg.sql("SELECT datname FROM pg_database")) == databases_before
    assert_earlier_backups_intact(repo_before, tmp_repo)

    restore(str(tmp_path))
    assert_same_data((pg, todo_db.name), (pg, scratch_db))
