# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Asynchronous archive_command, done as pgBackRest's archive-async does it: archive_command still
returns 0 only once *its* segment is stored in the archive; what changes is who stores it and when.

A background pusher (one per spool directory, known by its lock) watches
``pg_wal/archive_status`` for the files PostgreSQL has marked ``.ready`` and stores up to
``process_max`` of them at a time, ahead of PostgreSQL's requests, with the very function the
synchronous mode uses (same checks, same durability). It leaves one acknowledgement per file in
the spool:

    <spool>/<wal name>.ok       "<sha256> <size> <inode> <mtime ns> <archive>": that file stored durably there
    <spool>/<wal name>.error    why storing it failed
    <spool>/pusher.lock         flock-ed by the running pusher
    <spool>/pusher.log          its output

The foreground (``archive_async``, what PostgreSQL runs) returns once the ``.ok`` of its file names
the same file (size, inode and modification time: PostgreSQL never changes a segment while it is
``.ready``, so a file with other content is another file) and the same archive; an ``.error`` is its
failure (PostgreSQL keeps the segment and retries, and the pusher tries again). It starts the pusher when none runs and waits at most
``wait_seconds``. Losing the spool loses nothing: a file without acknowledgement is stored again,
and an archive that holds the same content answers that with success.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ..core import fsutil
from .wal_archive import WAL_NAME, check_wal_name
from .wal_archive_layout import WalArchiveError

OK_SUFFIX = ".ok"
ERROR_SUFFIX = ".error"
LOCK_NAME = "pusher.lock"
LOG_NAME = "pusher.log"
READY_SUFFIX = ".ready"
POLL_SECONDS = 0.02
SCAN_SECONDS = 0.05
RESTART_SECONDS = 5
STALE_STATUS_SECONDS = 3600


class Spool(object):
    """The acknowledgements and the pusher's lock, in a private local directory (one per cluster)."""

    def __init__(self, path):
        if not path:
            raise WalArchiveError("Asynchronous archiving needs a spool directory.",
                                  hint="Set spool_dir (--spool-dir): a local directory of the PostgreSQL user.")
        self.path = path
        try:
            os.mkdir(path, fsutil.DIR_MODE)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise WalArchiveError("Cannot create spool directory '%s': %s." % (path, exc.strerror))

    def _file(self, wal_name, suffix):
        return os.path.join(self.path, wal_name + suffix)

    @property
    def log_path(self):
        return os.path.join(self.path, LOG_NAME)

    def read(self, wal_name):
        """('ok' | 'error', text) of ``wal_name``'s acknowledgement, or None."""
        for kind, suffix in (("ok", OK_SUFFIX), ("error", ERROR_SUFFIX)):
            try:
                with open(self._file(wal_name, suffix)) as handle:
                    return kind, handle.read().strip()
            except (IOError, OSError) as exc:
                if exc.errno != errno.ENOENT:
                    raise
        return None

    def _write(self, wal_name, suffix, text):
        temp = self._file(".tmp-" + wal_name, suffix)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, fsutil.FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
        os.rename(temp, self._file(wal_name, suffix))

    def acknowledge(self, wal_name, sha256, identity, location):
        self._write(wal_name, OK_SUFFIX, "%s %s %s" % (sha256, identity, location))

    def fail(self, wal_name, message):
        self._write(wal_name, ERROR_SUFFIX, message)

    def clear(self, wal_name):
        for suffix in (OK_SUFFIX, ERROR_SUFFIX):
            fsutil.remove_quietly(self._file(wal_name, suffix))

    def acknowledged(self):
        """The WAL file names that have an acknowledgement."""
        names = set()
        for entry in os.listdir(self.path):
            for suffix in (OK_SUFFIX, ERROR_SUFFIX):
                if entry.endswith(suffix) and not entry.startswith("."):
                    names.add(entry[:-len(suffix)])
        return names

    def forget_stale(self, ready):
        """Remove old acknowledgements of files PostgreSQL no longer asks for."""
        for name in self.acknowledged() - set(ready):
            for suffix in (OK_SUFFIX, ERROR_SUFFIX):
                path = self._file(name, suffix)
                try:
                    if time.time() - os.path.getmtime(path) > STALE_STATUS_SECONDS:
                        fsutil.remove_quietly(path)
                except OSError:
                    pass

    def lock(self):
        """The pusher's lock as an open descriptor, or None when another process holds it."""
        fd = os.open(os.path.join(self.path, LOCK_NAME), os.O_RDWR | os.O_CREAT, fsutil.FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        return fd

    def pusher_running(self):
        fd = self.lock()
        if fd is None:
            return True
        os.close(fd)
        return False

    def log_tail(self, lines=5):
        try:
            with open(self.log_path) as handle:
                return " | ".join(line.strip() for line in handle.readlines()[-lines:])
        except (IOError, OSError):
            return ""


def file_identity(path):
    """'<size> <inode> <mtime ns>' of a file: tells it from another file of the same name."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise WalArchiveError("Cannot read WAL file '%s': %s." % (path, exc.strerror))
    return "%d %d %d" % (info.st_size, info.st_ino, info.st_mtime_ns)


def archive_async(wal_path, wal_name, spool, location, start_pusher, wait_seconds=60):
    """archive_command in asynchronous mode. ``location``: the archive (URL or directory) that an
    acknowledgement must name; ``start_pusher()`` starts the background pusher and returns its
    process (a ``subprocess.Popen``)."""
    check_wal_name(wal_name)
    deadline = time.monotonic() + wait_seconds
    expected = " %s %s" % (file_identity(wal_path), location)
    pusher, started_at = None, None
    while True:
        status = spool.read(wal_name)
        if status and status[0] == "ok":
            spool.clear(wal_name)
            if status[1].endswith(expected):
                return {"status": "archived", "sha256": status[1].split()[0], "async": True}
            continue  # about another file or another archive: store it again
        if status:
            spool.clear(wal_name)
            raise WalArchiveError("The background pusher could not store '%s': %s" % (wal_name, status[1]))
        if pusher is not None and pusher.poll():
            raise WalArchiveError("The background pusher exited with status %d: %s" % (pusher.returncode, spool.log_tail()),
                                  hint="See %s; PostgreSQL keeps the segment and retries." % spool.log_path)
        if time.monotonic() >= deadline:
            raise WalArchiveError("'%s' was not stored within %d s." % (wal_name, wait_seconds),
                                  hint="PostgreSQL keeps the segment and retries; see %s." % spool.log_path)
        if (started_at is None or time.monotonic() - started_at > RESTART_SECONDS) and not spool.pusher_running():
            pusher, started_at = start_pusher(), time.monotonic()
        time.sleep(POLL_SECONDS)


def ready_files(pg_wal):
    """The WAL files PostgreSQL waits to see archived, timeline history files first (as it archives them)."""
    names = []
    for entry in os.listdir(os.path.join(pg_wal, "archive_status")):
        name = entry[:-len(READY_SUFFIX)]
        if entry.endswith(READY_SUFFIX) and WAL_NAME.match(name):
            names.append(name)
    return sorted(names, key=lambda name: (not name.endswith(".history"), name))


def run_pusher(pg_wal, spool, make_push, location, process_max=4, idle_seconds=10):
    """The background pusher: stores ``.ready`` files until none came for ``idle_seconds``. ``make_push()``
    returns a ``push(wal_path, wal_name)`` (one per thread: each keeps its own connection) that stores
    one file and returns a dict with its sha256. Returns False when another pusher runs."""
    lock = spool.lock()
    if lock is None:
        return False
    local = threading.local()

    def push(name):
        if getattr(local, "push", None) is None:
            local.push = make_push()
        path = os.path.join(pg_wal, name)
        identity = file_identity(path)  # before reading it: a file changed meanwhile is not acknowledged
        return local.push(path, name)["sha256"], identity

    try:
        with ThreadPoolExecutor(max_workers=max(1, int(process_max))) as pool:
            _push_until_idle(pg_wal, spool, pool, push, location, max(1, int(process_max)), idle_seconds)
    finally:
        os.close(lock)
    return True


def _push_until_idle(pg_wal, spool, pool, push, location, process_max, idle_seconds):
    running = {}
    idle_since = time.monotonic()
    while True:
        ready = ready_files(pg_wal)
        done = spool.acknowledged()
        waiting = [name for name in ready if name not in running and name not in done]
        for name in waiting[:process_max - len(running)]:
            running[name] = pool.submit(push, name)
        for name in [name for name, future in running.items() if future.done()]:
            _acknowledge(spool, name, running.pop(name), location)
        if running or waiting:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > idle_seconds:
            spool.forget_stale(ready)
            return
        if running:
            wait(list(running.values()), timeout=SCAN_SECONDS, return_when=FIRST_COMPLETED)
        else:
            time.sleep(SCAN_SECONDS)


def _acknowledge(spool, name, future, location):
    try:
        sha256, identity = future.result()
    except Exception as exc:  # every failure becomes the foreground's, which reports it to PostgreSQL
        spool.fail(name, str(exc) or type(exc).__name__)
        return
    spool.acknowledge(name, sha256, identity, location)
