# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The spool's acknowledgement files (format in ``wal_spool``), read with nothing but ``os``, ``errno``
and ``fcntl``: the asynchronous archive_command's fast path (``runner/wal_fast.py``) answers from here
before the engine is imported, and ``wal_spool`` reads and writes the same files through it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import time

OK_SUFFIX = ".ok"
ERROR_SUFFIX = ".error"
LOCK_NAME = "pusher.lock"
POLL_SECONDS = 0.02


def status_path(spool_dir, wal_name, suffix):
    return os.path.join(spool_dir, wal_name + suffix)


def read_status(spool_dir, wal_name):
    """('ok' | 'error', text) of ``wal_name``'s acknowledgement, or None. OSError but ENOENT passes through."""
    for kind, suffix in (("ok", OK_SUFFIX), ("error", ERROR_SUFFIX)):
        try:
            with open(status_path(spool_dir, wal_name, suffix), "rb") as handle:
                return kind, handle.read().decode("utf-8", "replace").strip()
        except (IOError, OSError) as exc:
            if exc.errno != errno.ENOENT:
                raise
    return None


def clear_status(spool_dir, wal_name):
    for suffix in (OK_SUFFIX, ERROR_SUFFIX):
        try:
            os.unlink(status_path(spool_dir, wal_name, suffix))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise


def identity(path):
    """'<size> <inode> <mtime ns>' of a file: tells it from another file of the same name. OSError passes through."""
    info = os.stat(path)
    return "%d %d %d" % (info.st_size, info.st_ino, info.st_mtime_ns)


def lock_held(spool_dir):
    """Whether a process holds the pusher's lock (a missing lock file: nobody does)."""
    try:
        fd = os.open(os.path.join(spool_dir, LOCK_NAME), os.O_RDWR)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError) as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return True
        raise
    finally:
        os.close(fd)
    return False


def wait_acknowledged(spool_dir, wal_name, expected, wait_seconds):
    """True once ``wal_name`` has an ``.ok`` ending with ``expected`` (' <identity> <archive>'), which is
    then consumed. False, leaving everything as it is, as soon as anything else is the case: another
    acknowledgement, an ``.error``, no pusher running, ``wait_seconds`` gone. The full archive_command
    then does what that needs (report, store again, start the pusher)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        status = read_status(spool_dir, wal_name)
        if status is not None:
            if status[0] == "ok" and status[1].endswith(expected):
                clear_status(spool_dir, wal_name)
                return True
            return False
        if time.monotonic() >= deadline or not lock_held(spool_dir):
            return False
        time.sleep(POLL_SECONDS)
