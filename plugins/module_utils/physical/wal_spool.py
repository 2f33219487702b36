# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The asynchronous archive_command's side (the background pusher is ``wal_push_async``): the spool
of acknowledgements, one local directory per cluster,

    <spool>/<wal name>.ok       "<sha256 or -> <size> <inode> <mtime ns> <archive>": that file stored durably there
    <spool>/<wal name>.error    why storing it failed
    <spool>/pusher.lock         flock-ed by the running pusher
    <spool>/pusher.log          its output

and ``archive_async``, what PostgreSQL runs for each segment: it returns once the ``.ok`` of its file
names the same file (size, inode and modification time: PostgreSQL never changes a segment while it
is ``.ready``, so other content is another file) and the same archive; an ``.error`` is its failure
(PostgreSQL keeps the segment and retries, and the pusher tries again).

PostgreSQL runs one process per segment, one after the other, so this side imports as little as it
can: its start-up time bounds the archive's throughput.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import time

from ..core import fsutil
from .wal_ack import ERROR_SUFFIX, LOCK_NAME, OK_SUFFIX, POLL_SECONDS, clear_status, identity, lock_held
from .wal_ack import read_status
from .wal_archive_layout import WalArchiveError, check_wal_name

LOG_NAME = "pusher.log"
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
        return read_status(self.path, wal_name)

    def _write(self, wal_name, suffix, text):
        temp = self._file(".tmp-" + wal_name, suffix)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, fsutil.FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
        os.rename(temp, self._file(wal_name, suffix))

    def acknowledge(self, wal_name, sha256, identity, location):
        """``sha256``: None when the archive did not need it (a new file in a directory archive)."""
        self._write(wal_name, OK_SUFFIX, "%s %s %s" % (sha256 or "-", identity, location))

    def fail(self, wal_name, message):
        self._write(wal_name, ERROR_SUFFIX, message)

    def clear(self, wal_name):
        clear_status(self.path, wal_name)

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
        return lock_held(self.path)

    def log_tail(self, lines=5):
        try:
            with open(self.log_path) as handle:
                return " | ".join(line.strip() for line in handle.readlines()[-lines:])
        except (IOError, OSError):
            return ""


def file_identity(path):
    """'<size> <inode> <mtime ns>' of a file: tells it from another file of the same name."""
    try:
        return identity(path)
    except OSError as exc:
        raise WalArchiveError("Cannot read WAL file '%s': %s." % (path, exc.strerror))


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
