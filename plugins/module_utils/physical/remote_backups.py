# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Physical backups of a remote repository (``s3://``, ``azure://``, ``sftp://``) as the physical
engine reads them, through local files only:

- ``RemoteParents``: the parents an incremental base backup may build on. pg_basebackup needs the
  parent's ``backup_manifest`` as a local file: only that file is fetched (once per backup, into a
  private temporary directory) and checked against its own ``Manifest-Checksum`` before it is used.
- ``DownloadedBackups``: the base backups PITR restores. Listing and loading read the manifests
  there; checking a backup's checksum downloads it (``storage.working_copy.LocalCopy``: streamed,
  under temporary names until its size and sha256 match the manifest), and its artifact path is
  the verified local copy. Without ``download`` (check mode) the checksum is computed as a stream
  and nothing is downloaded, unless the backup's files must be read.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil

from ..core.errors import PgBackupError
from ..storage.working_copy import LocalCopy, private_directory
from .backup_manifest import ManifestError, manifest_checksum

BACKUP_MANIFEST = "backup_manifest"
TEMP_PREFIX = "pgbackup-parents-"


class RemoteParents(object):
    """``list``, ``load`` and ``artifact_path`` of a remote repository for ``base_backup_chain.choose_parent``."""

    def __init__(self, remote, work_dir=None):
        self.remote = remote
        self.url = self.path = remote.url
        self.work_dir = work_dir
        self.directory = None
        self.fetched = {}

    def list(self, database=None, kind=None):
        return self.remote.list(database=database, kind=kind)

    def load(self, backup_id):
        return self.remote.load(backup_id)

    def artifact_path(self, manifest):
        """A local directory holding the backup's ``backup_manifest`` (checked); empty when it is not stored."""
        backup_id = manifest["id"]
        if backup_id not in self.fetched:
            local = os.path.join(self._directory(), backup_id)
            os.mkdir(local, 0o700)
            name = "%s/%s" % (manifest["artifact"], BACKUP_MANIFEST)
            if self.remote.existing([name]):
                self._fetch_checked(name, os.path.join(local, BACKUP_MANIFEST))
            self.fetched[backup_id] = local
        return self.fetched[backup_id]

    def _fetch_checked(self, name, path):
        try:
            self.remote.fetch(name, path)
            with open(path, "rb") as handle:
                recorded, computed = manifest_checksum(handle.read())
        except ManifestError as exc:
            recorded, computed = exc.message, None
        except (OSError, PgBackupError) as exc:
            raise PgBackupError("Cannot fetch '%s', which an incremental backup needs: %s" % (
                self.remote.url_of(name), getattr(exc, "message", None) or exc),
                hint="Check the connection to the storage, or take a full backup (type: full).")
        if recorded != computed:
            os.unlink(path)  # not a usable parent: choose_parent looks for another one

    def _directory(self):
        if self.directory is None:
            self.directory = private_directory(TEMP_PREFIX, self.work_dir, "a directory for the parent's "
                                               "backup_manifest", "(a few MB)")
        return self.directory

    def close(self):
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self.fetched = {}


class DownloadedBackups(object):
    """A remote repository's base backups for PITR: verified by downloading them, restored from the download."""

    def __init__(self, remote, work_dir=None, download=True):
        self.remote = remote
        self.url = self.path = remote.url
        self.download = download
        self.copies = LocalCopy(remote, work_dir)

    def list(self, database=None, kind=None):
        return self.remote.list(database=database, kind=kind)

    def load(self, backup_id):
        return self.remote.load(backup_id)

    def resolve(self, selector, database=None, kind=None):
        return self.remote.resolve(selector, database=database, kind=kind)

    def verify_checksum(self, manifest):
        if not self.download:
            return self.remote.verify_checksum(manifest)
        self.copies.fetch(manifest)
        return manifest["sha256"]

    def artifact_path(self, manifest):
        """The verified local copy's path (a download also in check mode, where only the archiving check reads it)."""
        return self.copies.fetch(manifest).artifact_path(manifest)

    def close(self):
        self.copies.close()
