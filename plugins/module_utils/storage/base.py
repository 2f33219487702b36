# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every remote repository shares (S3 in remote.py, Azure Blob, SFTP): the repository
interface of ``LocalRepository`` (list, load, resolve, verify_checksum,
delete, read_sidecar, write_sidecar, upload, download) built on a handful of storage
primitives that each back-end implements:

    _top_names()                      names directly under the repository root
    _tree(prefix)                     {name: size} of every file whose name starts with prefix (recursive)
    _size(name)                       size of a file, or None when it does not exist
    _read(name)                       content of a small file (manifest, sidecar), or None
    _write(name, data)                replace a small file (as atomically as the storage allows)
    _put_file(path, name, sha256, progress)   streamed upload of a local file (never all in memory)
    _get_file(name, path, progress)   streamed download to a new local file
    _sha256(name)                     (size, sha256) of a stored file, read as a stream
    _remove(names)                    delete files (missing ones are fine)
    check_access()                    raise a clear PgBackupError unless the storage is usable
    url_of(name)                      URL of a file, for messages and results

and, for the WAL archive (physical/wal_remote.py), which keeps single files directly under the root:

    put_new(path, name, metadata)     upload a local file under a name that does not exist yet; False (and
                                      nothing written) when it exists. True only once the file is durable
                                      and the service confirmed its checksum (or it was read back)
    metadata(name)                    the metadata dict stored with a file ({} if none), None if it is absent

The layout is the local repository's (see docs/architecture.md): a backup is listed only
through its manifest, which is written last, after every other file was uploaded and proven
by reading it back (size + streamed sha256). A failed upload removes what it wrote, writes no
manifest and never touches the source.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os

from ..core import fsutil
from ..core import manifest as manifests
from ..core.errors import PgBackupError
from .local import TMP_PREFIX, check_stored_file, files_of, select as select_manifests

READ_CHUNK = 1024 * 1024


def library_present(importer):
    """Whether ``importer()`` succeeds: it imports a remote repository's third-party library (boto3, the Azure SDK,
    paramiko) into its module's globals. Called when a repository of that kind is opened, not when the module is
    imported: each takes 0.1-0.5 s to import, which every module and runner command paid before, for a local
    repository too."""
    try:
        importer()
    except ImportError:
        return False
    return True


def is_remote(repository):
    """True for an S3, Azure or SFTP repository, False for a local (or NFS) directory."""
    return isinstance(repository, RemoteRepository)


def refuse_different_backup(location, backup_id):
    return PgBackupError("'%s' already holds a different backup with the id '%s' (other sha256)." % (location, backup_id),
                         hint="Nothing was overwritten. Use a separate directory/prefix per server, or remove that backup "
                              "there if it is not needed.")


def existing_local_copy(manifest, local_repository):
    """The copy of ``manifest``'s backup already in a LocalRepository if its checksum verifies, else None
    (a damaged copy of this very backup is deleted so that it can be replaced). Refuses another backup
    with the same id."""
    backup_id = manifest["id"]
    if not os.path.exists(local_repository.manifest_path(backup_id)):
        return None
    local = local_repository.load(backup_id)
    if local.get("sha256") != manifest["sha256"]:
        raise refuse_different_backup(local_repository.path, backup_id)
    try:
        local_repository.verify_checksum(local)
        return local
    except PgBackupError:
        local_repository.delete(local)
        return None


def tree_files(path):
    """Relative paths ('/'-separated) of all files below ``path``, sorted."""
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in files:
            found.append(os.path.relpath(os.path.join(root, name), path).replace(os.sep, "/"))
    return sorted(found)


def delta_progress(progress):
    """Turn a callback receiving byte *counts so far* into calls of ``progress(bytes just sent)``."""
    if progress is None:
        return None
    state = {"last": 0}

    def hook(current, total=None):
        current = int(current or 0)
        if current > state["last"]:
            progress(current - state["last"])
            state["last"] = current
    return hook


def causes(exc):
    """exc and the exceptions it was raised from/while handling (SDKs wrap their errors; s3transfer's
    RetriesExceededError keeps the last one as ``last_exception``)."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "last_exception", None)
    return seen


def options_from_params(params, argument_spec):
    """Module parameters of a back-end's argument spec that are set -> keywords for open_repository()."""
    return dict((key, params.get(key)) for key in argument_spec if params.get(key) is not None)


def pick_options(options, prefix, names):
    """open_repository()'s keywords meant for one back-end (``<prefix><name>``, set), without the prefix."""
    chosen = {}
    for key, value in options.items():
        if key.startswith(prefix) and key[len(prefix):] in names and value is not None:
            chosen[key[len(prefix):]] = value
    return chosen


def split_bucket_url(url, scheme):
    """``<scheme>bucket/some/prefix/`` -> ('bucket', 'some/prefix', prefix_is_valid) (no '', '.' or '..' parts)."""
    rest = url[len(scheme):]
    bucket, prefix = (rest.split("/", 1) + [""])[:2]
    prefix = prefix.strip("/")
    return bucket, prefix, not any(part in ("", ".", "..") for part in prefix.split("/") if prefix)


def file_md5(path):
    """(md5 as bytes, size) of a local file: what S3 and Azure check an upload against."""
    md5, size = hashlib.md5(), 0
    for chunk in fsutil.file_chunks(path):
        md5.update(chunk)
        size += len(chunk)
    return md5.digest(), size


def damaged_upload(url, noun):
    return PgBackupError("The %s uploaded to '%s' does not match the local file (checksum); it was removed." % (noun, url),
                         hint="Something between this host and the storage damages data; nothing was kept. Retry.",
                         reason="damaged")


def interrupted_upload(path, url, reason):
    """An upload broken by something other than the storage (a signal, a local error)."""
    return PgBackupError("Upload of '%s' to '%s' was interrupted: %s." % (path, url, reason),
                         hint="The partial copy was removed and no manifest was written; the local backup was not touched. "
                              "Retry the copy.")


def upload_error(error, path):
    """``error`` (from the storage), unless the real cause is that the source file disappeared meanwhile."""
    if os.path.exists(path):
        return error
    return PgBackupError("Upload interrupted: source file '%s' disappeared during the upload (%s)." % (path, error.message),
                         hint="The partial copy was removed and no manifest was written. Retry the copy.")


class RemoteRepository(object):
    """Base class; see the module docstring for what a back-end implements."""

    kind = "remote"          # 's3', 'azure', 'sftp' (results, messages)
    noun = "file"            # what a stored file is called in messages ('object' on S3)
    url = None               # repository URL without a trailing slash
    path = None              # = url, for messages shared with LocalRepository

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.url)

    # Names

    def manifest_name(self, backup_id):
        return manifests.check_backup_id(backup_id) + manifests.MANIFEST_SUFFIX

    def artifact_path(self, manifest):
        """The artifact's URL (for messages and results; restores use download())."""
        return self.url_of(manifest["artifact"])

    def artifact_size(self, manifest):
        """Bytes of the backup's artifact as stored (a directory artifact: all its files), None when missing."""
        size = self._size(manifest["artifact"])
        if size is None:
            files = self._directory_files(manifest["artifact"])
            size = sum(files.values()) if files else None
        return size

    def temp_entries(self):
        """[(name, modification time)] of work in progress; none here: objects appear only when complete."""
        return []

    def exists(self):
        try:
            self.check_access()
            return True
        except PgBackupError:
            return False

    def prepare(self):
        self.check_access()

    def check_reachable(self):
        """Check mode of a write: raise unless the storage answers with these credentials and could take it."""
        self.check_access()

    def has_manifest(self, backup_id):
        return self._size(self.manifest_name(backup_id)) is not None

    # JSON documents

    def _parse_json(self, name, body):
        if body is None:
            return None
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise PgBackupError("'%s' is not valid JSON." % self.url_of(name),
                                hint="The backup cannot be trusted; take a new one.")

    def _read_json(self, name):
        return self._parse_json(name, self._read(name))

    def _write_json(self, name, data):
        self._write(name, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))

    # Repository interface (mirrors LocalRepository)

    def load(self, backup_id):
        name = self.manifest_name(backup_id)
        data = self._read_json(name)
        if data is None:
            raise PgBackupError("Backup '%s' was not found in repository '%s'." % (backup_id, self.url),
                                hint="List the repository's backups to see the ids.")
        return manifests.validate(data, self.url_of(name))

    def list(self, database=None, kind=None):
        """Complete backups (those with a manifest), oldest first; damaged manifests are in ``problems``."""
        self.problems = []
        found = []
        for name in sorted(self._top_names()):
            if name.startswith(TMP_PREFIX) or not name.endswith(manifests.MANIFEST_SUFFIX):
                continue
            body = self._read(name)  # transport errors are raised, not skipped
            if body is None:  # deleted between listing and reading
                continue
            try:
                found.append(manifests.validate(self._parse_json(name, body), self.url_of(name)))
            except PgBackupError as exc:
                self.problems.append(str(exc))
        return select_manifests(found, database, kind)

    def resolve(self, selector, database=None, kind=None):
        """'latest' (newest backup whose checksum verifies), a backup id, or its URL."""
        selector = selector or "latest"
        if selector == "latest":
            errors = []
            for manifest in reversed(self.list(database=database, kind=kind)):
                try:
                    self.verify_checksum(manifest)
                    return manifest
                except PgBackupError as exc:
                    if exc.details.get("reason") != "damaged":
                        raise
                    errors.append(str(exc))
            what = "of database '%s' " % database if database else ""
            raise PgBackupError("No usable backup %sfound in repository '%s'%s." % (
                what, self.url, (" (%d failed their checksum)" % len(errors)) if errors else ""),
                hint="Copy a backup there first, or check the URL and database name.")
        if "://" in selector:
            prefix = self.url + "/"
            if not selector.startswith(prefix) or "/" in selector[len(prefix):]:
                raise PgBackupError("Backup URL '%s' is not inside repository '%s'." % (selector, self.url),
                                    hint="Give the backup's id.")
            selector = selector[len(prefix):]
        if selector.endswith(manifests.MANIFEST_SUFFIX):
            return self.load(selector[:-len(manifests.MANIFEST_SUFFIX)])
        if manifests.BACKUP_ID.match(selector) and self.has_manifest(selector):
            return self.load(selector)
        for manifest in self.list():
            if manifest["artifact"] == selector:
                return manifest
        return self.load(selector)

    def verify_checksum(self, manifest):
        """Raise unless every file of the backup is stored with its size and sha256 (streamed)."""
        for entry in files_of(manifest):
            self._verify_entry(manifest["id"], entry)
        return manifest["sha256"]

    def _verify_entry(self, backup_id, entry):
        name = entry["artifact"]
        size, digest = self._size(name), None
        if size is None:  # a directory artifact (pg_dump's directory format, a base backup), or missing
            size, digest = self._tree_checksum(name)
        check_stored_file(backup_id, entry, size, lambda: digest if digest is not None else self._sha256(name)[1],
                          location=self.url, noun=self.noun)

    def _stored_files(self, backup_id, entry):
        """{relative path: size} of a directory artifact, {} for a single file. Raises (reason 'damaged')
        when the file is missing or its size is not the manifest's; its sha256 is checked once downloaded."""
        name = entry["artifact"]
        size, files = self._size(name), {}
        if size is None:
            files = self._directory_files(name)
            size = sum(files.values()) if files else None
        check_stored_file(backup_id, entry, size, lambda: entry["sha256"], location=self.url, noun=self.noun)
        return files

    def _directory_files(self, dir_name):
        """{relative path: size} of the files of a directory-format artifact."""
        base = dir_name + "/"
        return dict((name[len(base):], size) for name, size in self._tree(base).items())

    def _tree_checksum(self, dir_name):
        """(total size, checksum like fsutil.sha256_tree) of a directory artifact; (None, None) if absent."""
        files = self._directory_files(dir_name)
        if not files:
            return None, None
        lines = []
        for relative in sorted(files):
            lines.append("%s %s\n" % (relative, self._sha256("%s/%s" % (dir_name, relative))[1]))
        return sum(files.values()), hashlib.sha256("".join(sorted(lines)).encode("utf-8")).hexdigest()

    def delete(self, manifest):
        """Delete a backup: the manifest first (it stops being a backup), then its other files."""
        backup_id = manifests.check_backup_id(manifest["id"])
        self._remove([self.manifest_name(backup_id)])
        self._remove(sorted(self._tree(backup_id + ".")))

    def write_sidecar(self, backup_id, name, data):
        manifests.check_backup_id(backup_id)
        self._write_json("%s.%s.json" % (backup_id, name), data)

    def read_sidecar(self, backup_id, name):
        manifests.check_backup_id(backup_id)
        try:
            return self._read_json("%s.%s.json" % (backup_id, name))
        except PgBackupError as exc:
            if "not valid JSON" in exc.message:
                return None
            raise

    # Transfers

    def upload(self, manifest, source, progress=None):
        """Copy a complete backup from a LocalRepository into this repository; manifest last.

        Returns a result dict like copy_backup's. On any failure the files this call uploaded
        are removed (best effort), no manifest is written, and the source is left as it was.
        """
        backup_id = manifests.check_backup_id(manifest["id"])
        self.prepare()
        manifest_name = self.manifest_name(backup_id)
        existing = self._read_json(manifest_name)
        if existing is not None and existing.get("sha256") != manifest["sha256"]:
            raise refuse_different_backup(self.url, backup_id)
        if existing is not None:
            try:
                self.verify_checksum(manifest)
                return self._result(manifest, changed=False)
            except PgBackupError as exc:
                if exc.details.get("reason") != "damaged":
                    raise  # e.g. the connection broke: do not touch the remote copy
            # Whatever is there stops being a backup before its files are replaced.
            self._remove([manifest_name])
        uploaded = []
        try:
            for entry in files_of(manifest):
                local = os.path.join(source.path, entry["artifact"])
                if os.path.isdir(local):
                    for relative in tree_files(local):
                        name = "%s/%s" % (entry["artifact"], relative)
                        uploaded.append(name)
                        self._put_file(os.path.join(local, relative), name, None, progress)
                else:
                    uploaded.append(entry["artifact"])
                    self._put_file(local, entry["artifact"], entry["sha256"], progress)
            for entry in files_of(manifest):
                try:
                    self._verify_entry(backup_id, entry)
                except PgBackupError as exc:
                    if exc.details.get("reason") == "damaged":
                        raise PgBackupError("Checksum mismatch after upload: %s" % exc.message,
                                            hint="The copy in '%s' was removed and no manifest was written; the local "
                                                 "backup was not touched. Retry the copy." % self.url, reason="damaged")
                    raise
            self._write_json(manifest_name, manifest)
        except BaseException:
            self._remove_quietly(uploaded)
            raise
        return self._result(manifest, changed=True)

    def _result(self, manifest, changed):
        return {"target": self.url, "id": manifest["id"], "changed": changed, "verified": True,
                "artifact": self.artifact_path(manifest), "size": manifest["size"], "sha256": manifest["sha256"]}

    def _remove_quietly(self, names):
        """Best-effort removal of partly uploaded files (the storage may be gone)."""
        try:
            self._remove(names)
        except Exception:  # nothing more to do; without a manifest they are never listed
            pass

    def download(self, manifest, local_repository, progress=None):
        """Fetch a complete backup into a LocalRepository (for restores) and verify its checksum
        there before publishing it (temp names, fsync, rename, manifest last). Returns the manifest.

        A backup already present locally whose checksum verifies is not downloaded again.
        """
        backup_id = manifests.check_backup_id(manifest["id"])
        local_repository.prepare()
        local = existing_local_copy(manifest, local_repository)
        if local is not None:
            return local
        temp_files = {}
        try:
            for entry in files_of(manifest):
                name = entry["artifact"]
                temp = local_repository.temp_path(backup_id, name[len(backup_id):] if name.startswith(backup_id)
                                                  else "." + name)
                files = self._stored_files(backup_id, entry)
                temp_files[temp] = name
                if files:
                    os.mkdir(temp, fsutil.DIR_MODE)
                    for relative in sorted(files):
                        target = os.path.join(temp, *relative.split("/"))
                        if not os.path.isdir(os.path.dirname(target)):
                            os.makedirs(os.path.dirname(target), fsutil.DIR_MODE)
                        self._get_file("%s/%s" % (name, relative), target, progress)
                else:
                    self._get_file(name, temp, progress)
                size, digest = fsutil.artifact_size(temp), fsutil.artifact_checksum(temp)
                if size != entry["size"] or digest != entry["sha256"]:
                    raise PgBackupError("Checksum mismatch for '%s' of backup '%s' downloaded from '%s'." % (
                        name, backup_id, self.url),
                        hint="The remote copy is damaged; nothing was kept locally. Use another backup.", reason="damaged")
            local_repository.commit(manifest, temp_files)
        except OSError as exc:
            raise fsutil.describe_os_error(exc, local_repository.path)
        finally:
            local_repository.discard(*temp_files)
        return manifest

    # Single files (the WAL archive)

    list_by_prefix = False  # True where listing the names that start with a prefix is one request (S3, Azure)

    def names(self):
        """Names of the files directly under the repository root."""
        return self._top_names()

    def existing(self, names):
        """{name: size} of those of ``names`` that are stored (one listing where that is cheap)."""
        names = list(names)
        if self.list_by_prefix:
            tree = self._tree(os.path.commonprefix(names))
            return dict((name, tree[name]) for name in names if name in tree)
        sizes = [(name, self._size(name)) for name in names]
        return dict((name, size) for name, size in sizes if size is not None)

    def fetch(self, name, path):
        """Streamed download of one file to the new private local file ``path``, fsynced."""
        self._get_file(name, path)

    def remove_files(self, names):
        """Delete files (missing ones are fine)."""
        self._remove(names)

    def _confirm_upload(self, name, size, sha256):
        """Read an uploaded file back (when the service's checksum could not vouch for it) and compare it with
        what was sent; a copy that differs is removed, then refused."""
        if self._sha256(name) != (size, sha256):
            self._remove_quietly([name])
            raise damaged_upload(self.url_of(name), self.noun)

    def close(self):
        """Release connections (no-op unless the back-end keeps one)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()


def check_private_file(path, what, option):
    """Refuse a secret file (private key, credentials) that group or others may read, as ssh does."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise PgBackupError("%s '%s' cannot be used: %s." % (what, path, exc.strerror),
                            hint="Create it (mode 0600, owned by the backup user) or fix %s." % option)
    if info.st_mode & 0o077:
        raise PgBackupError("%s '%s' has mode %04o: group or others may read it, so it is refused." % (
            what, path, info.st_mode & 0o7777), hint="chmod 0600 '%s' (owned by the backup user)." % path)


def open_local_source(path):
    """Open a local file to upload; a vanished or unreadable file becomes a clear error."""
    try:
        return open(path, "rb")
    except (IOError, OSError) as exc:
        raise PgBackupError("Upload interrupted: cannot read source file '%s' (%s)." % (path, exc.strerror or exc),
                            hint="The partial copy was removed and no manifest was written. Retry the copy.")


def open_local_target(path):
    """A new private (0600, O_EXCL) local file for a download."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsutil.FILE_MODE)
    return os.fdopen(fd, "wb")
