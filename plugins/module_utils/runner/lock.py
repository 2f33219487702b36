# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run at a time: an exclusive ``flock`` on the lock file.

The kernel drops the lock when the holding process exits, so a lock file left behind by a killed
run never blocks the next one. Who holds the lock is asked of the kernel (/proc/locks), not read
from the file: the pid a run writes there outlives the run.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import time

from ..core.errors import PgBackupError
from .program import PROG, current_user

PROC_LOCKS = "/proc/locks"


class LockBusy(PgBackupError):
    """Another run holds the lock for longer than we may wait."""


class RunLock(object):
    """Exclusive flock on ``path``, waiting at most ``wait_seconds`` for another run."""

    def __init__(self, path, wait_seconds, poll_seconds=0.2):
        self.path = path
        self.wait_seconds = max(0.0, float(wait_seconds))
        self.poll_seconds = poll_seconds
        self.fd = None
        self.waited = 0.0

    def _open(self):
        """(fd, flags): read-write if possible; read-only is enough for flock."""
        # Open without O_CREAT first: with fs.protected_regular, O_CREAT on another user's file in
        # a sticky directory (/run/lock) is refused even when the mode would allow the open.
        attempts = [os.O_RDWR, os.O_RDWR | os.O_CREAT, os.O_RDONLY]
        failure = None
        for flags in attempts:
            try:
                return os.open(self.path, flags, 0o644), flags
            except OSError as exc:
                if failure is None or exc.errno != errno.ENOENT:
                    failure = exc
                if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
                    break
        if failure.errno == errno.ENOENT:
            hint = "Create its directory, or set 'lock_file' to a path in an existing directory."
        else:
            hint = "Let OS user '%s' create or open it (e.g. keep it in /run/lock), or set 'lock_file'." % current_user()
        raise PgBackupError("Cannot open lock file '%s': %s." % (self.path, failure.strerror), hint=hint)

    def holder(self):
        """Pid of the process holding the flock on our lock file, or None if the kernel names none."""
        if self.fd is None:
            return None
        info = os.fstat(self.fd)
        wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
        try:
            with open(PROC_LOCKS) as handle:
                lines = handle.read().splitlines()
        except (IOError, OSError):
            return None
        for line in lines:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 4711 fe:00:2146313 0 EOF"; a blocked waiter's line has "->"
            if len(fields) < 6 or fields[1] != "FLOCK":
                continue
            pid, device = fields[4], fields[5].split(":")
            try:
                found = (int(device[0], 16), int(device[1], 16), int(device[2]))
            except (IndexError, ValueError):
                continue
            if found == wanted and pid.isdigit() and int(pid) not in (0, os.getpid()):
                return int(pid)
        return None

    def try_acquire(self):
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except (IOError, OSError) as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise

    def acquire(self, on_wait=None):
        """Take the lock, waiting up to ``wait_seconds``; raises LockBusy after that.

        ``on_wait(holder_pid_or_None)`` is called once, when the lock turns out to be taken."""
        self.fd, flags = self._open()
        started = time.monotonic()
        deadline = started + self.wait_seconds
        announced = False
        while not self.try_acquire():
            if not announced and on_wait is not None:
                on_wait(self.holder())
                announced = True
            if time.monotonic() >= deadline:
                self._give_up()
            time.sleep(self.poll_seconds)
        self.waited = time.monotonic() - started
        if flags != os.O_RDONLY:
            try:  # for people looking at the file; holder() asks the kernel
                os.ftruncate(self.fd, 0)
                os.write(self.fd, ("%d\n" % os.getpid()).encode("ascii"))
            except OSError:
                pass
        return self

    def _give_up(self):
        holder = self.holder()
        os.close(self.fd)
        self.fd = None
        raise LockBusy(
            "Another %s run%s still holds lock file '%s' after %ds of waiting; this run was skipped."
            % (PROG, (" (pid %s)" % holder) if holder else "", self.path, int(self.wait_seconds)),
            hint="The next scheduled run retries; if runs keep overlapping, spread the schedules or raise "
                 "lock_wait_seconds. A crashed run never leaves a stale lock (the kernel releases it).")

    def release(self):
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None
