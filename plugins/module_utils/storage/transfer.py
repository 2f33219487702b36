# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copying a complete backup from one repository to another (local, NFS, S3, Azure, SFTP):
data first, checked against the manifest, the manifest last; the source is never modified.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os

from ..core import fsutil
from ..core import manifest as manifests
from ..core.errors import PgBackupError
from .base import READ_CHUNK, existing_local_copy, is_remote, tree_files
from .factory import describe_location, open_repository
from .local import files_of
from .working_copy import LocalCopy


def _copy_stream(source, target, progress=None):
    """Copy a file with O_EXCL to a private file, fsync it; returns its sha256."""
    digest = hashlib.sha256()
    with open(source, "rb") as reader:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsutil.FILE_MODE)
        with os.fdopen(fd, "wb") as writer:
            while True:
                chunk = reader.read(READ_CHUNK)
                if not chunk:
                    break
                writer.write(chunk)
                digest.update(chunk)
                if progress:
                    progress(len(chunk))
            writer.flush()
            os.fsync(writer.fileno())
    return digest.hexdigest()


def copy_to_local(manifest, source, target, progress=None):
    """Copy a complete backup between two local (or NFS) repositories: temporary names, fsync,
    rename, manifest last; then re-read the copy and compare with the manifest."""
    backup_id = manifests.check_backup_id(manifest["id"])
    if os.path.realpath(source.path) == os.path.realpath(target.path):
        raise PgBackupError("Copy target '%s' is the backup's own repository." % target.path,
                            hint="Give another directory (e.g. an NFS mount) or an s3:// URL.")
    target.prepare()
    if existing_local_copy(manifest, target) is not None:
        return {"target": target.path, "id": backup_id, "changed": False, "verified": True,
                "artifact": target.artifact_path(manifest), "size": manifest["size"], "sha256": manifest["sha256"]}
    temp_files = {}
    try:
        for entry in files_of(manifest):
            name = entry["artifact"]
            local = os.path.join(source.path, name)
            temp = target.temp_path(backup_id, name[len(backup_id):] if name.startswith(backup_id) else "." + name)
            temp_files[temp] = name
            if os.path.isdir(local):
                os.mkdir(temp, fsutil.DIR_MODE)
                for relative in tree_files(local):
                    destination = os.path.join(temp, *relative.split("/"))
                    if not os.path.isdir(os.path.dirname(destination)):
                        os.makedirs(os.path.dirname(destination), fsutil.DIR_MODE)
                    _copy_stream(os.path.join(local, relative), destination, progress)
                digest = fsutil.sha256_tree(temp)
            else:
                digest = _copy_stream(local, temp, progress)
            if digest != entry["sha256"]:
                raise PgBackupError("Checksum mismatch while copying '%s' of backup '%s' to '%s': the source changed "
                                    "or is damaged." % (name, backup_id, target.path),
                                    hint="Nothing was published on the target; verify the source backup.")
        target.commit(manifest, temp_files)
    except OSError as exc:
        raise fsutil.describe_os_error(exc, target.path)
    finally:
        target.discard(*temp_files)
    try:
        target.verify_checksum(manifest)
    except PgBackupError as exc:
        fsutil.remove_quietly(target.manifest_path(backup_id))
        raise PgBackupError("Checksum mismatch after copying to '%s': %s" % (target.path, exc.message),
                            hint="The copy's manifest was removed; the source was not touched. Check the target storage.")
    return {"target": target.path, "id": backup_id, "changed": True, "verified": True,
            "artifact": target.artifact_path(manifest), "size": manifest["size"], "sha256": manifest["sha256"]}


def copy_backup(manifest, source_repo, target_repo, progress=None, work_dir=None):
    """Copy one COMPLETE backup (artifact, extra files, manifest last) to another repository.

    ``source_repo``/``target_repo``: any repository of open_repository(). The source is verified
    first (a remote one by its download, which is checked before anything is kept) and never
    modified. From one remote repository to another the backup goes through a temporary local
    copy in ``work_dir`` (default: the system's temporary directory), removed afterwards. Returns
    {target, id, changed, verified, artifact, size, sha256}; raises PgBackupError naming the
    cause, with no manifest on the target. ``progress``: optional callable receiving the number of
    bytes just transferred.
    """
    manifests.validate(manifest, "of backup '%s'" % manifest.get("id"))
    source_is_s3 = is_remote(source_repo)  # S3, Azure or SFTP: upload()/download()
    target_is_s3 = is_remote(target_repo)
    if source_is_s3 and target_is_s3:
        with LocalCopy(source_repo, work_dir) as copies:
            return target_repo.upload(manifest, copies.fetch(manifest), progress=progress)
    if not source_is_s3:
        try:
            source_repo.verify_checksum(manifest)
        except PgBackupError as exc:
            raise PgBackupError("Backup '%s' in '%s' fails its checksum, so it was not copied: %s" % (
                manifest["id"], describe_location(source_repo), exc.message),
                hint="Take a new backup; do not spread a damaged one.")
    if target_is_s3:
        return target_repo.upload(manifest, source_repo, progress=progress)
    if source_is_s3:
        existed = os.path.exists(target_repo.manifest_path(manifest["id"]))
        source_repo.download(manifest, target_repo, progress=progress)
        return {"target": target_repo.path, "id": manifest["id"], "changed": not existed, "verified": True,
                "artifact": target_repo.artifact_path(manifest), "size": manifest["size"], "sha256": manifest["sha256"]}
    return copy_to_local(manifest, source_repo, target_repo, progress=progress)


def copy_to_targets(manifest, source_repo, targets, owner=None, s3_options=None, check_mode=False, progress=None,
                    work_dir=None):
    """Copy a backup to every target (paths or s3:// URLs) — what ``copy_to`` means for the
    pg_dump module, the backup_copy module and the runner.

    Every target is attempted even when one fails. Returns one result per target (with
    ``failed``/``msg`` for failures); raises PgBackupError (``details['results']``) after all
    targets were tried if any failed. In check mode only resolves the targets and reports
    whether each would be copied (the bucket is checked for reachability). ``s3_options``: the
    open_repository() keywords of every back-end; ``work_dir``: see copy_backup.
    """
    results = []
    failures = []
    for target in targets or []:
        try:
            repo = open_repository(target, owner=owner, **(s3_options or {}))
            if check_mode:
                results.append(_plan_copy(manifest, repo))
            else:
                results.append(copy_backup(manifest, source_repo, repo, progress=progress, work_dir=work_dir))
        except PgBackupError as exc:
            failures.append("%s: %s" % (target, exc.message))
            results.append({"target": target, "id": manifest["id"], "changed": False, "failed": True,
                            "msg": str(exc)})
    if failures:
        copied = len(results) - len(failures)
        raise PgBackupError("Copying backup '%s' failed for %d of %d target(s): %s" % (
            manifest["id"], len(failures), len(results), "; ".join(failures)),
            hint="The local backup is intact%s; fix the cause and copy again (todoapi.pgbackup.backup_copy)." % (
                " and %d target(s) got their copy" % copied if copied else ""),
            results=results)
    return results


def _plan_copy(manifest, repo):
    """Check mode: would ``manifest`` be copied to ``repo`` (a remote one must answer, see check_reachable)?"""
    if is_remote(repo):
        repo.check_reachable()
        present = repo.has_manifest(manifest["id"])
    else:
        present = os.path.exists(repo.manifest_path(manifest["id"]))
    return {"target": describe_location(repo), "id": manifest["id"], "changed": not present, "verified": False,
            "artifact": repo.artifact_path(manifest), "size": manifest["size"], "sha256": manifest["sha256"]}
