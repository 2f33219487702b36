# -*- coding: utf-8 -*-
"""What the WAL archive holds: range checks (holes, last contiguous segment) and pruning."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_archive_contents
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_names


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "archive"
    path.mkdir(mode=0o700)
    return str(path)


def test_range_check_reports_holes(archive):
    for number in (2, 3, 5):
        name = wal_names.segment_file_name(1, number)
        open(os.path.join(archive, name + (".zst" if number == 3 else "")), "wb").close()
    open(os.path.join(archive, wal_names.segment_file_name(2, 9)), "wb").close()
    result = wal_archive_contents.wal_range_present(archive, 1, "000000010000000000000002")
    assert not result["complete"] and result["missing"] == ["000000010000000000000004"]
    assert result["last_contiguous"] == "000000010000000000000003" and result["last"] == "000000010000000000000005"
    assert wal_archive_contents.wal_range_present(archive, 1, "0/2000028", "0/3FFFFFF")["complete"]
    assert wal_archive_contents.wal_range_present(archive, 1, 2, 7)["missing_count"] == 3


def test_prune_keeps_needed_segments_and_history(archive):
    names = [wal_names.segment_file_name(1, n) for n in range(1, 6)]
    extra = ["00000002.history", names[1] + ".00000028.backup", wal_names.segment_file_name(2, 2) + ".zst.age",
             wal_names.segment_file_name(2, 2) + ".zst.age.sha256"]
    for name in names + extra:
        open(os.path.join(archive, name), "wb").close()
    dry = wal_archive_contents.prune_wal(archive, names[3], dry_run=True)
    assert len(os.listdir(archive)) == len(names) + len(extra)
    assert dry["removed"] == sorted(names[:3] + extra[1:])
    result = wal_archive_contents.prune_wal(archive, names[3])
    assert sorted(os.listdir(archive)) == sorted(names[3:] + ["00000002.history"])
    assert result["kept"] == 2
    with pytest.raises(PgBackupError, match="refusing to prune"):
        wal_archive_contents.prune_wal(archive, wal_names.segment_file_name(1, 99))
    with pytest.raises(PgBackupError, match="not a WAL segment name"):
        wal_archive_contents.prune_wal(archive, "latest")


def test_history_timelines_and_stream_dirs_count_whatever_the_encoding(archive, tmp_path):
    for name in ("00000002.history.zst.age", "00000002.history.zst.age.sha256", "00000003.history",
                 ".tmp-00000004.history.123", wal_names.segment_file_name(1, 2)):
        open(os.path.join(archive, name), "wb").close()
    assert wal_archive_contents.history_timelines(archive) == [2, 3]
    stream = tmp_path / "stream"
    stream.mkdir()
    (stream / (wal_names.segment_file_name(1, 3) + ".partial")).write_bytes(b"")
    assert wal_archive_contents.list_segments(archive, 1) == {2: "000000010000000000000002"}
    assert wal_archive_contents.list_segments(archive, 1, stream_dirs=[str(stream)]) == {
        2: "000000010000000000000002", 3: "000000010000000000000003"}
    assert wal_archive_contents.wal_range_present(archive, 1, 2, stream_dirs=[str(stream)])["complete"]
