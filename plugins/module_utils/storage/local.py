# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup repository on a local (or NFS-mounted) directory.

Layout: ``<id><suffix>`` (the artifact: a file, or a directory for pg_dump's directory
format) and ``<id>.manifest.json`` beside it. Work in progress lives under names that
start with ``.tmp-``; a manifest appears only after its artifact is complete and fsynced,
so anything listed here is a finished backup.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ..core import fsutil
from ..core import manifest as manifests
from ..core.errors import PgBackupError

TMP_PREFIX = ".tmp-"


def select(manifests, database=None, kind=None):
    """The manifests of ``database`` and ``kind`` (None: any), oldest first: how every repository lists."""
    found = [m for m in manifests if (database is None or m["database"] == database) and (kind is None or m["kind"] == kind)]
    found.sort(key=lambda m: (m["finished_at"], m["id"]))
    return found


def files_of(manifest):
    """The manifest's checksummed files: the artifact, then any extra (e.g. globals)."""
    entries = [{"artifact": manifest["artifact"], "size": manifest["size"], "sha256": manifest["sha256"]}]
    for extra in (manifest.get("extra_files") or {}).values():
        entries.append(extra)
    return entries


def check_stored_file(backup_id, entry, size, sha256_of, location=None, noun="file"):
    """Raise the PgBackupError saying how a stored backup file differs from its manifest entry.

    ``size``: the stored file's size, None when it is missing; ``sha256_of()``: its sha256, only
    computed when the size matches. ``location``: None for a LocalRepository; a remote
    repository's URL, which the messages then name (blaming "the remote copy"), and the errors
    carry ``reason='damaged'`` so callers can tell them from transport errors.
    """
    name = entry["artifact"]
    if location is None:
        where, subject, advice, replaced, details = "", "backup", "restore another one.", "truncated, or replaced by another file", {}
    else:
        where, subject, advice, replaced = " in '%s'" % location, "remote copy", "copy the backup again or use another one.", "truncated or replaced"
        details = {"reason": "damaged"}
    if size is None:
        raise PgBackupError("File '%s' of backup '%s' is missing%s." % (name, backup_id, where),
                            hint="The %s is unusable; %s" % (subject, advice), **details)
    if size != entry["size"]:
        raise PgBackupError("File '%s' of backup '%s' has %d bytes%s but its manifest says %d (%s)."
                            % (name, backup_id, size, where, entry["size"], replaced),
                            hint="The %s is damaged; %s" % (subject, advice), **details)
    if sha256_of() != entry["sha256"]:
        raise PgBackupError("Checksum mismatch for '%s' of backup '%s'%s: the %s is corrupted or does not belong "
                            "to this manifest." % (name, backup_id, where, noun),
                            hint="The %s is damaged; %s" % (subject, advice), **details)


class LocalRepository(object):
    def __init__(self, path, owner=None):
        if not path:
            raise PgBackupError("No repository given.", hint="Set 'repository' to a directory path.")
        self.path = os.path.abspath(path)
        self.owner = owner
        self._ids = None

    @property
    def ids(self):
        if self._ids is None:
            self._ids = fsutil.resolve_owner(self.owner)
        return self._ids

    def prepare(self):
        fsutil.ensure_private_dir(self.path, self.ids)

    def exists(self):
        return os.path.isdir(self.path)

    def check_access(self):
        """Raise a clear PgBackupError unless the repository is a directory this user may read."""
        if not self.exists():
            raise PgBackupError("Repository '%s' does not exist (or is not a directory)." % self.path,
                                hint="Check the repository path, or mount the backup storage.")
        self._names()

    def temp_entries(self):
        """[(name, modification time)] of the ``.tmp-*`` work in progress (or leftovers of killed runs)."""
        entries = []
        for name in sorted(self._names()):
            if name.startswith(TMP_PREFIX):
                try:
                    entries.append((name, os.lstat(os.path.join(self.path, name)).st_mtime))
                except OSError:
                    continue
        return entries

    # Writing

    def unique_id(self, kind, database, moment):
        base = manifests.new_backup_id(kind, database, moment)
        candidate, number = base, 1
        while os.path.exists(self.manifest_path(candidate)) or self._artifact_exists(candidate):
            number += 1
            candidate = "%s-%d" % (base, number)
        return candidate

    def _artifact_exists(self, backup_id):
        prefix = backup_id + "."
        return any(name.startswith(prefix) for name in self._names())

    def temp_path(self, backup_id, suffix):
        return os.path.join(self.path, "%s%s%s" % (TMP_PREFIX, backup_id, suffix))

    def manifest_path(self, backup_id):
        return os.path.join(self.path, backup_id + manifests.MANIFEST_SUFFIX)

    def commit(self, manifest, temp_files):
        """Publish a finished backup: fsync and rename its files, then write the manifest.

        ``temp_files`` maps each temporary path to its final name in the repository.
        """
        renamed = []
        try:
            for temp, name in temp_files.items():
                fsutil.set_private_tree(temp, self.ids)
                if os.path.isdir(temp):
                    fsutil.fsync_tree(temp)
                else:
                    fsutil.fsync_path(temp)
            for temp, name in temp_files.items():
                final = os.path.join(self.path, name)
                os.rename(temp, final)
                renamed.append(final)
            fsutil.fsync_path(self.path)
            fsutil.write_json_atomic(self.manifest_path(manifest["id"]), manifest, self.ids)
        except OSError as exc:
            for path in list(temp_files) + renamed:
                fsutil.remove_quietly(path)
            raise fsutil.describe_os_error(exc, self.path)
        return os.path.join(self.path, manifest["artifact"])

    def discard(self, *temp_paths):
        for path in temp_paths:
            if path:
                fsutil.remove_quietly(path)

    def write_sidecar(self, backup_id, name, data):
        """Extra JSON beside a backup (e.g. its verification record), replaced atomically."""
        fsutil.write_json_atomic(os.path.join(self.path, "%s.%s.json" % (backup_id, name)), data, self.ids)

    def read_sidecar(self, backup_id, name):
        path = os.path.join(self.path, "%s.%s.json" % (backup_id, name))
        if not os.path.exists(path):
            return None
        try:
            with open(path) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def delete(self, manifest):
        """Delete a backup: the manifest first (it stops being a backup), then everything else."""
        backup_id = manifests.check_backup_id(manifest["id"])
        fsutil.remove_quietly(self.manifest_path(backup_id))
        for name in self._names():
            if name.startswith(backup_id + "."):
                fsutil.remove_quietly(os.path.join(self.path, name))
        fsutil.fsync_path(self.path)

    # Reading

    def _names(self):
        try:
            return os.listdir(self.path)
        except OSError as exc:
            raise PgBackupError("Cannot read repository '%s': %s." % (self.path, exc.strerror),
                                hint="Check that it exists and this user may read it.")

    def artifact_path(self, manifest):
        return os.path.join(self.path, manifest["artifact"])

    def artifact_size(self, manifest):
        """Bytes of the backup's artifact as stored (a directory artifact: all its files), None when missing."""
        try:
            return fsutil.artifact_size(self.artifact_path(manifest))
        except OSError:
            return None

    def load(self, backup_id):
        manifests.check_backup_id(backup_id)
        path = self.manifest_path(backup_id)
        if not os.path.exists(path):
            self._names()  # an unreadable repository is reported as such, not as a missing backup
            raise PgBackupError("Backup '%s' was not found in repository '%s'." % (backup_id, self.path),
                                hint="List the repository's backups to see the ids.")
        return self._read_manifest(path)

    def _read_manifest(self, path):
        try:
            with open(path) as handle:
                data = json.load(handle)
        except ValueError:
            raise PgBackupError("Manifest '%s' is not valid JSON." % path,
                                hint="The backup cannot be trusted; take a new one.")
        except OSError as exc:
            raise PgBackupError("Cannot read manifest '%s': %s." % (path, exc.strerror))
        return manifests.validate(data, path)

    def list(self, database=None, kind=None):
        """Complete backups, oldest first; damaged manifests are skipped (see ``problems``)."""
        self.problems = []
        found = []
        if not self.exists():
            return found
        for name in sorted(self._names()):
            if name.startswith(TMP_PREFIX) or not name.endswith(manifests.MANIFEST_SUFFIX):
                continue
            try:
                found.append(self._read_manifest(os.path.join(self.path, name)))
            except PgBackupError as exc:
                self.problems.append(str(exc))
        return select(found, database, kind)

    def verify_checksum(self, manifest):
        """Raise unless every file of the backup exists and matches its size and sha256."""
        for entry in files_of(manifest):
            self._verify_file(manifest["id"], entry)
        return manifest["sha256"]

    def _verify_file(self, backup_id, entry):
        path = os.path.join(self.path, entry["artifact"])
        size = fsutil.artifact_size(path) if os.path.exists(path) else None
        check_stored_file(backup_id, entry, size, lambda: fsutil.artifact_checksum(path))

    def resolve(self, selector, database=None, kind=None):
        """Find one backup: 'latest' (newest whose checksum verifies), an id, or a file path."""
        selector = selector or "latest"
        if selector == "latest":
            candidates = self.list(database=database, kind=kind)
            errors = []
            for manifest in reversed(candidates):
                try:
                    self.verify_checksum(manifest)
                    return manifest
                except PgBackupError as exc:
                    errors.append(str(exc))
            what = "of database '%s' " % database if database else ""
            raise PgBackupError("No usable backup %sfound in repository '%s'%s." % (
                what, self.path, (" (%d failed their checksum)" % len(errors)) if errors else ""),
                hint="Take a backup first, or check the repository path and database name.")
        if os.sep in selector:
            return self._resolve_path(selector)
        return self.load(selector)

    def _resolve_path(self, path):
        path = os.path.abspath(path)
        if os.path.dirname(path) != self.path:
            raise PgBackupError("Backup path '%s' is not inside repository '%s'." % (path, self.path),
                                hint="Give the backup's id, or a path inside the repository.")
        name = os.path.basename(path)
        if name.endswith(manifests.MANIFEST_SUFFIX):
            return self.load(name[:-len(manifests.MANIFEST_SUFFIX)])
        for manifest in self.list():
            if manifest["artifact"] == name:
                return manifest
        raise PgBackupError("No manifest describes '%s'." % path,
                            hint="Only backups written by this collection (artifact + manifest) can be restored.")
