# -*- coding: utf-8 -*-
"""The run lock (plugins/module_utils/runner/lock.py): one run at a time, no stale lock after a
killed run, and the process really holding the lock named, never a stale pid from the file."""

from __future__ import absolute_import, division, print_function

import multiprocessing
import os
import signal
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.lock import LockBusy, RunLock


def _hold_lock(path, ready, seconds):
    lock = RunLock(path, 0).acquire()
    ready.set()
    time.sleep(seconds)
    lock.release()


def _hold_lock_and_die(path, ready):
    RunLock(path, 0).acquire()
    ready.set()
    time.sleep(60)


def _hold_lock_without_writing_the_pid(path, ready, seconds):
    import fcntl
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    time.sleep(seconds)


def test_second_run_waits_for_the_first(tmp_path):
    path = str(tmp_path / "run.lock")
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(path, ready, 1.0))
    holder.start()
    try:
        assert ready.wait(10)
        waits = []
        started = time.monotonic()
        lock = RunLock(path, 10, poll_seconds=0.05).acquire(on_wait=waits.append)
        assert time.monotonic() - started >= 0.5 and lock.waited >= 0.5
        assert waits == [holder.pid], "on_wait gets the holder's pid"
        with open(path) as handle:
            assert handle.read() == "%d\n" % os.getpid(), "the file tells who took the lock last"
        lock.release()
    finally:
        holder.join(10)


def test_lock_of_a_killed_run_does_not_block(tmp_path):
    path = str(tmp_path / "run.lock")
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock_and_die, args=(path, ready))
    holder.start()
    assert ready.wait(10)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    assert os.path.exists(path), "the killed run leaves its lock file behind"
    started = time.monotonic()
    RunLock(path, 0).acquire().release()
    assert time.monotonic() - started < 1


def test_timeout_names_the_real_holder_not_the_pid_in_the_file(tmp_path):
    """A holder that could not write its pid (read-only open) leaves the previous run's pid in the
    file: the message must name the process that holds the lock, not that stale pid."""
    path = str(tmp_path / "run.lock")
    with open(path, "w") as handle:
        handle.write("999999\n")   # a run long gone
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock_without_writing_the_pid, args=(path, ready, 3))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockBusy) as busy:
            RunLock(path, 0.2, poll_seconds=0.05).acquire()
        assert "(pid %d)" % holder.pid in busy.value.message and "999999" not in busy.value.message
    finally:
        holder.terminate()
        holder.join(10)


def test_free_lock_has_no_holder(tmp_path):
    path = str(tmp_path / "run.lock")
    with open(path, "w") as handle:
        handle.write("999999\n")
    lock = RunLock(path, 0)
    lock.fd = os.open(path, os.O_RDONLY)
    try:
        assert lock.holder() is None, "the pid in the file is not a holder"
    finally:
        os.close(lock.fd)


def test_lock_file_in_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(PgBackupError, match="Cannot open lock file") as failure:
        RunLock(str(tmp_path / "no" / "run.lock"), 0).acquire()
    assert "directory" in failure.value.hint
