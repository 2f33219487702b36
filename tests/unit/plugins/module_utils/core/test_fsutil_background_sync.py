# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import threading

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil


@pytest.fixture
def synced(monkeypatch):
    """(path, thread name) of every fsync_path call (the real fsync still runs)."""
    calls = []
    real = fsutil.fsync_path

    def recording(path):
        calls.append((os.path.basename(path), threading.current_thread().name))
        real(path)
    monkeypatch.setattr(fsutil, "fsync_path", recording)
    return calls


def test_background_sync_fsyncs_every_path_in_its_thread(tmp_path, synced):
    paths = []
    for name in ("base.tar.zst", "16384.tar.zst"):
        (tmp_path / name).write_bytes(b"x" * 65536)
        paths.append(str(tmp_path / name))
    with fsutil.BackgroundSync(paths) as syncing:
        syncing.finish()
    assert synced == [("base.tar.zst", "background-sync"), ("16384.tar.zst", "background-sync")]


def test_background_sync_reports_a_failed_write_back_on_finish(tmp_path):
    with fsutil.BackgroundSync([str(tmp_path / "gone")]) as syncing:
        with pytest.raises(OSError):
            syncing.finish()


def test_background_sync_is_waited_for_when_the_block_fails(tmp_path, synced):
    (tmp_path / "base.tar").write_bytes(b"x")
    with pytest.raises(RuntimeError):
        with fsutil.BackgroundSync([str(tmp_path / "base.tar")]) as syncing:
            raise RuntimeError("the backup failed")
    assert not syncing._thread.is_alive()
    assert synced == [("base.tar", "background-sync")]
