# -*- coding: utf-8 -*-
"""The asynchronous archive_command on a real directory archive and a pg_wal laid out as PostgreSQL
lays it out (segments + archive_status/*.ready): the pusher stores ahead and acknowledges, the
foreground trusts only an acknowledgement of the same content and archive."""

from __future__ import absolute_import, division, print_function

import os
import subprocess
import sys

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_archive
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_push_async
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_spool

MB = 1024 * 1024
NAMES = ["00000001000000000000000%d" % n for n in range(2, 7)]


@pytest.fixture
def cluster_dirs(tmp_path):
    """(pg_wal, archive, spool): five ready segments and a timeline history file."""
    pg_wal = tmp_path / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    for number, name in enumerate(NAMES):
        (pg_wal / name).write_bytes((bytes([number]) * 4096 + os.urandom(4096)) * (MB // 8192))
    (pg_wal / "00000002.history").write_text("1\t0/3000000\tno recovery target specified\n")
    for name in NAMES + ["00000002.history"]:
        (pg_wal / "archive_status" / (name + ".ready")).touch()
    archive = tmp_path / "archive"
    archive.mkdir(mode=0o700)
    return str(pg_wal), str(archive), wal_spool.Spool(str(tmp_path / "spool"))


def store_into(archive):
    return lambda: (lambda wal_path, wal_name: wal_archive.archive_segment(wal_path, wal_name, archive, compress="zstd"))


def test_ready_files_come_history_first_then_in_order(cluster_dirs):
    pg_wal, _archive, _spool = cluster_dirs
    open(os.path.join(pg_wal, "archive_status", NAMES[0] + ".done"), "w").close()
    open(os.path.join(pg_wal, "archive_status", "not-a-wal-file.ready"), "w").close()
    assert wal_push_async.ready_files(pg_wal) == ["00000002.history"] + NAMES


def test_the_pusher_stores_every_ready_file_and_acknowledges_it(cluster_dirs):
    pg_wal, archive, spool = cluster_dirs
    assert wal_push_async.run_pusher(pg_wal, spool, store_into(archive), archive, process_max=3, idle_seconds=0.2)
    assert sorted(os.listdir(archive)) == sorted(name + ".zst" for name in NAMES + ["00000002.history"])
    assert spool.acknowledged() == set(NAMES + ["00000002.history"])
    # the foreground: its segment's acknowledgement names the same content and archive -> success, consumed
    result = wal_spool.archive_async(os.path.join(pg_wal, NAMES[0]), NAMES[0], spool, archive,
                                     start_pusher=pytest.fail, wait_seconds=5)
    assert result["status"] == "archived" and result["async"]
    assert spool.read(NAMES[0]) is None


def test_an_acknowledgement_of_other_content_or_another_archive_is_not_trusted(cluster_dirs, tmp_path):
    pg_wal, archive, spool = cluster_dirs
    wal_push_async.run_pusher(pg_wal, spool, store_into(archive), archive, idle_seconds=0.2)
    with open(os.path.join(pg_wal, NAMES[1]), "r+b") as handle:
        handle.write(b"\xff" * 16)  # the file PostgreSQL asks about now is not the one that was stored
    with pytest.raises(wal_archive.WalArchiveError, match="not stored within"):
        wal_spool.archive_async(os.path.join(pg_wal, NAMES[1]), NAMES[1], spool, archive,
                                start_pusher=lambda: None, wait_seconds=0.5)
    assert spool.read(NAMES[1]) is None
    with pytest.raises(wal_archive.WalArchiveError, match="not stored within"):
        wal_spool.archive_async(os.path.join(pg_wal, NAMES[2]), NAMES[2], spool, str(tmp_path / "other"),
                                start_pusher=lambda: None, wait_seconds=0.5)


def test_a_failure_is_the_foregrounds_and_the_next_push_tries_again(cluster_dirs):
    pg_wal, archive, spool = cluster_dirs
    unmounted = archive + "-unmounted"  # every store fails: the archive directory is not there
    wal_push_async.run_pusher(pg_wal, spool, store_into(unmounted), unmounted, idle_seconds=0.2)
    assert spool.read(NAMES[0])[0] == "error"
    with pytest.raises(wal_archive.WalArchiveError, match="could not store .*does not exist"):
        wal_spool.archive_async(os.path.join(pg_wal, NAMES[0]), NAMES[0], spool, unmounted,
                                start_pusher=pytest.fail, wait_seconds=5)
    assert spool.read(NAMES[0]) is None  # consumed: PostgreSQL retries, and the pusher stores it again
    os.mkdir(unmounted, 0o700)
    wal_push_async.run_pusher(pg_wal, spool, store_into(unmounted), unmounted, idle_seconds=0.2)
    assert spool.read(NAMES[0])[0] == "ok" and spool.read(NAMES[1])[0] == "error"  # only the consumed one again


def test_one_pusher_per_spool(cluster_dirs):
    pg_wal, archive, spool = cluster_dirs
    lock = spool.lock()
    try:
        assert spool.pusher_running()
        assert wal_push_async.run_pusher(pg_wal, spool, store_into(archive), archive, idle_seconds=0.2) is False
        assert os.listdir(archive) == []
    finally:
        os.close(lock)
    assert not spool.pusher_running()


def test_the_foreground_starts_the_pusher_and_reports_its_crash(cluster_dirs):
    pg_wal, archive, spool = cluster_dirs
    started = []

    def crashing_pusher():
        started.append(True)
        return subprocess.Popen([sys.executable, "-c", "import sys; sys.stderr.write('no module'); sys.exit(3)"])
    with pytest.raises(wal_archive.WalArchiveError, match="exited with status 3"):
        wal_spool.archive_async(os.path.join(pg_wal, NAMES[0]), NAMES[0], spool, archive, crashing_pusher,
                                wait_seconds=10)
    assert started == [True]
