# -*- coding: utf-8 -*-
"""Which files of a remote WAL archive a PITR downloads, and the refusal of a work_dir the server's OS user cannot
enter. (The downloads themselves, from real S3/Azure/SFTP servers: tests/integration/test_remote_repositories.py.)"""

from __future__ import absolute_import, division, print_function

import os
import shutil
import tempfile

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import pitr_remote

ENTRIES = ["000000010000000000000003.zst", "000000010000000000000004.zst", "000000010000000000000004.zst.meta",
           "000000010000000000000005.zst.age", "000000010000000000000002.00000028.backup.zst", "00000002.history.zst",
           "000000020000000000000006", ".tmp-000000010000000000000007.zst.123", "000000010000000000000001.zst"]


def backup(start):
    return {"id": start, "wal_start_segment": start, "wal_segment_size": 16 * 1024 * 1024}


def test_history_files_and_segments_from_the_oldest_backup_on_of_any_timeline():
    wanted = pitr_remote.wanted_names(ENTRIES, [backup("000000010000000000000004"), backup("000000010000000000000003")])
    assert wanted == ["000000010000000000000003", "000000010000000000000004", "000000010000000000000005",
                      "00000002.history", "000000020000000000000006"]


def test_without_a_backup_only_history_files():
    assert pitr_remote.wanted_names(ENTRIES, []) == ["00000002.history"]


@pytest.fixture
def open_base():
    """A directory below /tmp (whose parents everyone may enter: pytest's own base may be private)."""
    base = tempfile.mkdtemp(prefix="pitr-remote-unit-", dir="/tmp")
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_a_directory_others_cannot_enter_is_refused(open_base):
    closed = os.path.join(open_base, "closed")
    os.mkdir(closed, 0o700)
    inside = os.path.join(closed, "pgbackup-wal-x")
    os.mkdir(inside)
    nobody = (65534, 65534)  # neither the owner (root or the test user) nor its group
    with pytest.raises(PgBackupError, match=r"cannot enter '%s' \(mode 0700\)" % closed):
        pitr_remote.refuse_unreachable(inside, "nobody", nobody)
    os.chmod(closed, 0o711)
    pitr_remote.refuse_unreachable(inside, "nobody", nobody)


STREAM = ["000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
          "000000010000000000000005.partial", "000000010000000000000004.partial", "00000001.history",
          "000000010000000000000006.gz.partial", ".download-x", "000000010000000000000003.partial"]


def test_stream_segments_from_the_oldest_backup_on_and_only_the_newest_partial():
    names, size = pitr_remote.stream_names(STREAM, [backup("000000010000000000000003")])
    assert size == 16 * 1024 * 1024
    # 3.partial and 4.partial are older than the complete segments beside them: only 5.partial is the newest WAL
    assert names == ["00000001.history", "000000010000000000000003", "000000010000000000000004",
                     "000000010000000000000005.partial"]


def test_a_partial_whose_segment_is_complete_is_not_taken():
    names, _newest = pitr_remote.stream_names(["000000010000000000000004", "000000010000000000000004.partial"], [])
    assert names == ["000000010000000000000004"]
