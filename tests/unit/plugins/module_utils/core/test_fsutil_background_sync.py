# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil


@pytest.fixture
def synced(monkeypatch):
    """The paths fsync_path was called for (the real fsync still runs)."""
    calls = []
    real = fsutil.fsync_path

    def recording(path):
        calls.append(os.path.basename(path))
        real(path)
    monkeypatch.setattr(fsutil, "fsync_path", recording)
    return calls


def test_sync_behind_writes_back_the_wanted_files_while_they_grow(tmp_path, synced):
    with fsutil.SyncBehind(str(tmp_path), lambda name: name.startswith("base.tar"), interval=0.01) as behind:
        with open(str(tmp_path / "base.tar.zst"), "wb") as growing, open(str(tmp_path / "pg_wal.tar"), "wb") as other:
            for dummy in range(20):
                growing.write(b"x" * 65536)
                growing.flush()
                other.write(b"y" * 65536)
                time.sleep(0.005)
        while_writing = len(synced)
        behind.finish()
    assert while_writing >= 1  # before finish(): behind the writer
    assert set(synced) == {"base.tar.zst"}
    assert len(synced) == while_writing + 1  # finish() syncs to the end once more


def test_sync_behind_reports_a_failed_write_back_on_finish(tmp_path):
    directory = tmp_path / "backup"
    directory.mkdir()
    behind = fsutil.SyncBehind(str(directory), lambda name: True, interval=0.01)
    with behind:
        shutil.rmtree(str(directory))  # listing it now fails in the thread: the error must reach the caller
        time.sleep(0.1)
        directory.mkdir()  # back again: only the error the thread met can make finish() fail
        with pytest.raises(OSError):
            behind.finish()


def test_sync_behind_stops_quietly_when_the_block_fails(tmp_path, synced):
    with pytest.raises(RuntimeError):
        with fsutil.SyncBehind(str(tmp_path), lambda name: True, interval=0.01) as behind:
            raise RuntimeError("the backup failed")
    assert not behind._thread.is_alive()
    count = len(synced)
    time.sleep(0.05)
    assert len(synced) == count
