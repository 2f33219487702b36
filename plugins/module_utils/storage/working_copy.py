# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local files of backups that live in a remote repository, for the operations that must read them
(restore, structure and restore verification, a copy from one remote repository to another), and
the local repository a backup for a remote one is taken in before its upload (StagingRepository).

A backup of an S3, Azure or SFTP repository is downloaded as a stream into a private temporary
directory under ``work_dir`` (RemoteRepository.download: temporary names until every file is
complete and matches the manifest's size and sha256, the manifest last), so nothing half-downloaded
is ever read; the directory is removed when the work is done, whatever happened. A local
repository is used in place.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import shutil
import tempfile

from ..core.errors import PgBackupError
from .base import is_remote
from .local import LocalRepository

TEMP_PREFIX = "pgbackup-download-"


class LocalCopy(object):
    """``with LocalCopy(repository, work_dir) as copies: local = copies.fetch(manifest)``."""

    def __init__(self, repository, work_dir=None):
        self.repository = repository
        self.work_dir = work_dir
        self.directory = None
        self.fetched = set()

    def fetch(self, manifest):
        """A LocalRepository holding ``manifest``'s backup, its checksum proven: the repository itself
        when it is local, else a download (once per backup)."""
        if not is_remote(self.repository):
            return self.repository
        local = LocalRepository(self._directory())
        if manifest["id"] not in self.fetched:
            try:
                self.repository.download(manifest, local)
            except PgBackupError as exc:
                raise _download_failed(manifest, self.repository, exc)
            self.fetched.add(manifest["id"])
        return local

    def fetch_selected(self, selector, database=None, kind=None):
        """(repository to read, selector for it) for a backup ``selector`` names ('latest', an id, a
        path or URL): a local repository and the selector unchanged (its reader resolves and checks
        it), or the downloaded copy and the backup's id. 'latest' of a remote repository is the newest
        backup whose download matches its manifest; damaged copies are skipped, transport errors raised."""
        if not is_remote(self.repository):
            return self.repository, selector
        if selector and selector != "latest":
            manifest = self.repository.resolve(selector, database=database, kind=kind)
            return self.fetch(manifest), manifest["id"]
        damaged = []
        for manifest in reversed(self.repository.list(database=database, kind=kind)):
            try:
                return self.fetch(manifest), manifest["id"]
            except PgBackupError as exc:
                if exc.details.get("reason") != "damaged":
                    raise
                damaged.append(exc.message)
        what = "of database '%s' " % database if database else ""
        raise PgBackupError("No usable backup %sfound in repository '%s'%s." % (
            what, self.repository.url, (" (%d failed their checksum: %s)" % (len(damaged), "; ".join(damaged[:3])))
            if damaged else ""), hint="Copy a backup there first, or check the URL and database name.")

    def _directory(self):
        if self.directory is None:
            self.directory = private_directory(TEMP_PREFIX, self.work_dir, "a download directory",
                                               "with room for the backup")
        return self.directory

    def close(self):
        """Remove the downloads (nothing to do for a local repository)."""
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self.fetched = set()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()


def private_directory(prefix, work_dir, what, room):
    """A new 0700 directory below ``work_dir`` (default: the system's temporary directory); a clear error when
    it cannot be made. ``what``: what it is for the message; ``room``: what it needs room for, for the hint."""
    try:
        return tempfile.mkdtemp(prefix=prefix, dir=work_dir)
    except OSError as exc:
        where = work_dir or tempfile.gettempdir()
        raise PgBackupError("Cannot create %s in '%s': %s." % (what, where, exc.strerror or exc),
                            hint="Set work_dir to a writable local directory %s." % room)


def _download_failed(manifest, repository, exc):
    """``exc`` of a download, saying that nothing of it is used (``details`` kept: 'damaged' is told apart)."""
    if exc.details.get("reason") == "damaged":
        hint = exc.hint
    else:
        hint = ("Nothing of it was kept (the partial download was removed) and nothing was changed; check the "
                "connection to the storage and its credentials, then retry.")
    return PgBackupError("Download of backup '%s' from '%s' failed: %s" % (manifest["id"], repository.url, exc.message),
                         hint=hint, **exc.details)


class StagingRepository(LocalRepository):
    """A local repository in which a backup for ``remote`` is taken before it is uploaded there: a
    new backup's id is unique in both, so the upload never meets another backup of the same id."""

    def __init__(self, path, remote, owner=None):
        super(StagingRepository, self).__init__(path, owner=owner)
        self.remote = remote

    def _artifact_exists(self, backup_id):
        return (super(StagingRepository, self)._artifact_exists(backup_id)
                or bool(self.remote._tree(backup_id + ".")))
