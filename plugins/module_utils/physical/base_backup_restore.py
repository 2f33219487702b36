# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stored base backup, or a chain of them, made into a verified data directory.

A full backup is extracted (tar) or copied (plain) into the data directory. A chain (a full backup and
the incremental ones on top of it, see ``base_backup_chain``) is combined by ``pg_combinebackup``, which
reads plain directories only: each tar-format member is extracted into a scratch directory beside the data
directory first (same file system, so the result can be hard-linked from there with PostgreSQL 18's
``--link`` instead of copied), and the scratch directory is removed afterwards. Plain-format members are
read in place and always copied: a link would let the server write into the repository.
Either way the result is checked with pg_verifybackup against its backup_manifest before it is used.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import tempfile

from . import backup_manifest
from ..core import fsutil
from ..core.errors import PgBackupError
from ..core.pgtools import find_tool
from ..core.pipeline import Pipeline, Stage
from .base_backup_extract import can_check_while_extracting, extract_and_check
from .base_backup_tar import extract_backup, tar_members
from .base_backup_verify import verify_data_directory

COMBINE_ERROR = r"(?m)^pg_combinebackup: error:"
LINK_SINCE_MAJOR = 18


def backup_major(manifest):
    return int(manifest.get("server_version_num") or 0) // 10000


def restore_into(repository, chain, data_dir, bin_dir=None):
    """Fill the empty directory ``data_dir`` from ``chain`` (manifests, full first) and verify it.

    Returns {method: extract|pg_combinebackup, chain: [ids], linked: bool, checked_while_extracting: bool}."""
    last = chain[-1]
    if len(chain) == 1:
        artifact = repository.artifact_path(last)
        checked = _extract_full(artifact, data_dir)
        verify_data_directory(data_dir, os.path.join(artifact, "backup_manifest"), bin_dir, skip_checksums=checked)
        return {"method": "extract", "chain": [last["id"]], "linked": False, "checked_while_extracting": checked}
    combine, version = find_tool("pg_combinebackup", backup_major(last), bin_dir)
    scratch = tempfile.mkdtemp(prefix=".pgbackup-combine-", dir=os.path.dirname(data_dir.rstrip("/")))
    try:
        inputs = [_readable_directory(repository, member, scratch, member is last) for member in chain]
        link = int(version.split(".")[0]) >= LINK_SINCE_MAJOR and all(i.startswith(scratch) for i in inputs)
        argv = [combine, "--output", data_dir, "--no-sync"] + (["--link"] if link else []) + inputs
        try:
            Pipeline([Stage(argv, name="pg_combinebackup", error_pattern=COMBINE_ERROR)]).run()
        except PgBackupError as exc:
            raise PgBackupError("pg_combinebackup could not combine the chain %s: %s" % (
                " + ".join(member["id"] for member in chain), exc.message),
                hint="Restore another backup (an older chain or a full backup); take a full backup now.")
    except OSError as exc:
        raise fsutil.describe_os_error(exc, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    verify_data_directory(data_dir, os.path.join(data_dir, "backup_manifest"), bin_dir)
    return {"method": "pg_combinebackup", "chain": [member["id"] for member in chain], "linked": link,
            "checked_while_extracting": False}


def _extract_full(artifact, data_dir):
    """Extract a full backup into ``data_dir``; True when its checksums were checked on the way (a tar-format
    backup whose checksum algorithm this host can compute), so pg_verifybackup need not read the files again."""
    if tar_members(artifact):
        manifest = backup_manifest.BackupManifest.load(os.path.join(artifact, "backup_manifest"))
        if can_check_while_extracting(manifest):
            extract_and_check(artifact, data_dir, manifest)
            return True
    extract_backup(artifact, data_dir)
    return False


def _readable_directory(repository, member, scratch, last):
    """A plain directory holding ``member`` with its backup_manifest: the artifact itself (plain format), or
    its tars extracted into ``scratch`` (the WAL only of the last member: pg_combinebackup reads no other's)."""
    artifact = repository.artifact_path(member)
    if not tar_members(artifact):
        return artifact
    target = os.path.join(scratch, member["id"])
    os.mkdir(target, fsutil.DIR_MODE)
    extract_backup(artifact, target, wal=last)
    shutil.copy2(os.path.join(artifact, "backup_manifest"), os.path.join(target, "backup_manifest"))
    return target
