# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tar-format base backup extracted and checked against its backup_manifest in one pass.

``tar -x`` followed by pg_verifybackup reads the restored cluster twice: once to write it, once more (from
the disk, when the page cache cannot hold it) to check every file's checksum. Here each tar is read once as
a stream (``TarStream``: the decompressor's output, as the stream verification of a new backup reads it),
every member is written to the data directory and its checksum computed from the same bytes
(``backup_manifest.ManifestCheck``: presence, size, checksum, unexpected files, as pg_verifybackup checks).
pg_verifybackup then runs with ``--skip-checksums`` on the result: the files on disk (presence and size)
and the WAL the backup needs (parsed with pg_waldump), without reading the data again.

Members are written only inside the destination: names with '..' or absolute ones, links through a
symbolic link the archive itself made, hard links and device files are refused.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import functools
import os

from . import backup_manifest
from .base_backup_tar import checked_members, member_prefix, read_tar_checked, tar_members
from ..core import fsutil
from ..core.errors import PgBackupError


def can_check_while_extracting(manifest):
    """Whether this host can compute the checksums ``manifest`` uses (CRC32C needs the crc32c module)."""
    return not manifest.needs_crc32c() or backup_manifest.crc32c_available()


def extract_and_check(artifact_dir, destination, manifest, wal=True):
    """Extract the tars of ``artifact_dir`` into the existing directory ``destination`` while checking them
    against ``manifest`` (a ``backup_manifest.BackupManifest``); ``wal=False`` leaves pg_wal.tar out.

    Returns {files, bytes, tars}; raises PgBackupError naming every damaged, missing or unexpected file
    (what was written stays in ``destination``: the caller removes or keeps it)."""
    tars = tar_members(artifact_dir)
    if not any(name.startswith("base.tar") for name in tars):
        raise PgBackupError("Base backup '%s' has no base.tar." % artifact_dir, hint="The backup is unusable.")
    others = [name for name in tars if member_prefix(name) not in ("", "pg_wal")]
    if others:
        raise PgBackupError("Base backup '%s' contains tablespace archives (%s), which this collection cannot "
                            "restore yet." % (artifact_dir, ", ".join(others)),
                            hint="Extract them by hand next to the data directory and fix pg_tblspc links.")
    ordered = [name for name in tars if name.startswith("base.tar")] + \
        [name for name in tars if name.startswith("pg_wal.tar") and wal]
    check = backup_manifest.ManifestCheck(manifest)
    writer = _Writer(destination)
    for name in ordered:
        read_tar_checked(os.path.join(artifact_dir, name), check, functools.partial(
            _write_members, prefix=member_prefix(name), check=check, writer=writer))
    check.finish()
    if check.problem_count:
        raise PgBackupError("The base backup in %s does not match its backup_manifest (%d problem%s): %s." % (
            artifact_dir, check.problem_count, "" if check.problem_count == 1 else "s", check.summary()),
            hint=backup_manifest.DAMAGED_HINT, problems=check.problems)
    return {"files": check.files_checked, "bytes": check.bytes_checked, "tars": ordered}


def _write_members(reader, prefix, check, writer):
    for info, path, kind in checked_members(reader, prefix, check):
        if kind == "dir":
            writer.directory(path, info.mode)
            continue
        if kind == "symlink":
            writer.symlink(path, info.linkname)
            continue
        file_check = check.member(reader.name, path, kind, info.size)
        if kind != "file":
            continue  # ManifestCheck said what it is
        try:
            writer.file(path, info, reader.data(), file_check)
        except FileExistsError:
            check.problem(reader.name, "'%s' is in the backup twice" % path)


class _Writer(object):
    """Creates the members of the archive below ``root``, never through a link the archive made."""

    def __init__(self, root):
        self.root = root
        self.links = set()

    def _target(self, path):
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            if "/".join(parts[:depth]) in self.links:
                raise PgBackupError("Base backup member '%s' would be written through the symbolic link '%s'." % (
                    path, "/".join(parts[:depth])), hint=backup_manifest.DAMAGED_HINT)
        return os.path.join(self.root, path)

    def directory(self, path, mode):
        target = self._target(path)
        if not os.path.isdir(target):
            os.makedirs(target, fsutil.DIR_MODE)
        os.chmod(target, mode & 0o7777 or fsutil.DIR_MODE)

    def symlink(self, path, linkname):
        target = self._target(path)
        self._parent(target)
        os.symlink(linkname, target)
        self.links.add(path)

    @staticmethod
    def _parent(target):
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            os.makedirs(parent, fsutil.DIR_MODE)

    def file(self, path, info, pieces, file_check):
        target = self._target(path)
        self._parent(target)
        mode = info.mode & 0o7777 or fsutil.FILE_MODE
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        try:
            os.fchmod(fd, mode)  # the archive's mode, as tar -x gives it, whatever the umask
            for piece in pieces:
                if file_check is not None:
                    file_check.update(piece)
                while piece:
                    piece = piece[os.write(fd, piece):]
        finally:
            os.close(fd)
        os.utime(target, (info.mtime, info.mtime))
        if file_check is not None:
            file_check.done()
