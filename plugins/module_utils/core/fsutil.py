# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durable, private file handling: fsync, atomic replace, checksums, ownership."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import ctypes.util
import errno
import grp
import hashlib
import json
import os
import pwd
import shutil
import threading

from .errors import PgBackupError

CHUNK_SIZE = 1024 * 1024
FILE_MODE = 0o600
DIR_MODE = 0o700


def fsync_path(path):
    """fsync a file or a directory by path."""
    flags = os.O_RDONLY
    if os.path.isdir(path):
        flags |= getattr(os, "O_DIRECTORY", 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path):
    """fsync every file and directory below ``path`` (for directory-format artifacts)."""
    for root, dirs, files in os.walk(path):
        for name in files:
            fsync_path(os.path.join(root, name))
        fsync_path(root)


class BackgroundSync(object):
    """fsync ``paths`` in a thread while the caller goes on with work that does not need them on disk yet.

    A new base backup's ``base.tar`` (~200 MiB per GiB, written with ``pg_basebackup --no-sync``) is written back
    while the WAL tar is compressed and the backup checked, instead of after them. Not while ``pg_basebackup``
    runs: write-back then competes with the server reading the data files (measured slower). ``finish()`` waits
    and raises the first OSError (an fsync error is reported once: it must not be lost in the thread); leaving
    the ``with`` block only waits. Nothing here replaces the fsync of the publishing step; it makes it cheap."""

    def __init__(self, paths):
        self.paths = list(paths)
        self.error = None
        self._thread = threading.Thread(target=self._run, name="background-sync")
        self._thread.daemon = True

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._thread.join()

    def _run(self):
        try:
            for path in self.paths:
                fsync_path(path)
        except OSError as exc:
            self.error = exc

    def finish(self):
        """Wait until every path is fsynced; raises the first write-back error (OSError)."""
        self._thread.join()
        if self.error is not None:
            raise self.error


def _libc_syncfs():
    """libc's syncfs(2), or None (not Linux, or a libc without it)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def sync_filesystem(path):
    """Make everything written below ``path`` durable: one syncfs(2) of the file system holding it instead of
    an fsync per file (a restored data directory has thousands: each is a journal commit of its own).

    syncfs writes back the whole file system, other programs' dirty data too, and reports write-back errors
    only since Linux 5.8 (as PostgreSQL's recovery_init_sync_method=syncfs). Where libc has no syncfs (not
    Linux) or the kernel refuses it (ENOSYS), every file and directory is fsynced (``fsync_tree``).
    Returns "syncfs" or "fsync"; an error of the write-back itself is raised (OSError)."""
    syncfs = _libc_syncfs()
    if syncfs is not None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            if syncfs(fd) == 0:
                return "syncfs"
            code = ctypes.get_errno()
            if code != errno.ENOSYS:
                raise OSError(code, "syncfs failed: %s" % os.strerror(code), path)
        finally:
            os.close(fd)
    fsync_tree(path)
    return "fsync"


def file_chunks(path):
    """The bytes of a file, CHUNK_SIZE at a time."""
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK_SIZE)
            if not chunk:
                return
            yield chunk


def sha256_file(path):
    return sha256_chunks(file_chunks(path))[0]


def sha256_chunks(chunks, write=None):
    """(sha256, size) of a stream of byte chunks, read to the end; each chunk is also handed to
    ``write`` (a copy's target) when given."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        if write is not None:
            write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def hashing_chunks(path, digests, key):
    """``file_chunks(path)``; once the file was read to its end, its sha256 is put into ``digests[key]`` (a
    reader that stops early leaves no entry)."""
    digest = hashlib.sha256()
    for chunk in file_chunks(path):
        digest.update(chunk)
        yield chunk
    digests[key] = digest.hexdigest()


def sha256_tree(path, known=None):
    """Checksum of a directory: sha256 over the sorted ``name sha256`` lines of its files. ``known``: the sha256
    of some files (relative path -> hex), computed while they were read for something else."""
    lines = []
    known = known or {}
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            lines.append("%s %s\n" % (rel, known.get(rel) or sha256_file(full)))
    return hashlib.sha256("".join(sorted(lines)).encode("utf-8")).hexdigest()


def artifact_checksum(path):
    return sha256_tree(path) if os.path.isdir(path) else sha256_file(path)


def artifact_size(path):
    if not os.path.isdir(path):
        return os.path.getsize(path)
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def resolve_owner(owner):
    """Return (uid, gid) for an OS user name, or None when ``owner`` is empty.

    When the engine does not run as root it cannot give files away, so files keep the
    running user's ownership (the runner normally already runs as the owner).
    """
    if not owner:
        return None
    try:
        entry = pwd.getpwnam(owner)
    except KeyError:
        raise PgBackupError("OS user '%s' does not exist." % owner,
                            hint="Set 'owner' to the user that runs PostgreSQL backups (usually postgres).")
    if os.geteuid() != 0:
        return None
    return entry.pw_uid, entry.pw_gid


def set_private(path, ids, is_dir=False):
    os.chmod(path, DIR_MODE if is_dir else FILE_MODE)
    if ids:
        os.chown(path, ids[0], ids[1])


def set_private_tree(path, ids):
    if not os.path.isdir(path):
        set_private(path, ids)
        return
    for root, dirs, files in os.walk(path):
        set_private(root, ids, is_dir=True)
        for name in files:
            set_private(os.path.join(root, name), ids)


def ensure_private_dir(path, ids):
    """Create ``path`` (0700, owned by ``ids``) if missing; refuse one that is not a directory."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise PgBackupError("Repository path '%s' exists but is not a directory." % path,
                            hint="Point 'repository' at a directory.")
    if not os.path.isdir(path):
        try:
            os.makedirs(path, DIR_MODE)
        except OSError as exc:
            raise PgBackupError("Cannot create repository directory '%s': %s." % (path, exc.strerror),
                                hint="Create it or choose a writable path.")
        set_private(path, ids, is_dir=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PgBackupError("Repository directory '%s' is not writable by this user." % path,
                            hint="Fix its owner/mode or run as the backup user.")


def read_json(path, message, hint=None):
    """The JSON document in ``path``; an unreadable or invalid file raises PgBackupError(``message`` %
    (path, cause), hint) - the one way the engine reads a settings or manifest file it was handed."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise PgBackupError(message % (path, exc), hint=hint)


def write_text_atomic(path, text, mode=FILE_MODE, ids=None):
    """``write_bytes_atomic`` of ``text`` encoded as UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"), mode, ids)


def write_bytes_atomic(path, data, mode=FILE_MODE, ids=None):
    """Write ``data`` to ``path`` through a fsynced temporary file beside it and a rename, so no reader
    ever sees half a file; mode (and ``ids`` (uid, gid), when given) are set before the rename. OSError passes
    through."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    remove_quietly(tmp)  # left by a killed run of this pid; O_EXCL below never follows a link planted there
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if ids:
            os.chown(tmp, ids[0], ids[1])
        os.rename(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_path(os.path.dirname(os.path.abspath(path)))


def write_json_atomic(path, data, ids=None):
    """Write JSON to ``path`` atomically (``write_text_atomic``), private to ``ids``."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", ids=ids)


def remove_quietly(path):
    """Remove a file or directory tree, ignoring 'does not exist'."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def describe_os_error(exc, path):
    """One sentence for an OSError while writing ``path``, with the usual remedies."""
    if exc.errno == errno.ENOSPC:
        return PgBackupError("No space left on the device holding '%s'." % path,
                             hint="Free space or point the repository elsewhere; earlier backups were not touched.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PgBackupError("Permission denied writing '%s'." % path,
                             hint="Fix the repository's owner/mode or run as the backup user.")
    return PgBackupError("Cannot write '%s': %s." % (path, exc.strerror or exc))


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
