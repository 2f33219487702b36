# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stored base backup, or a chain of them, made into a verified data directory.

A full backup is extracted (tar) or copied (plain) into the data directory. A chain (a full backup and
the incremental ones on top of it, see ``base_backup_chain``) is combined by ``pg_combinebackup``, which
reads plain directories only: each tar-format member is extracted into a scratch directory beside the data
directory first (same file system, so the result can be hard-linked from there with PostgreSQL 18's
``--link`` instead of copied), the members in parallel and without the files pg_combinebackup does not read
(``unread_files``), and the scratch directory is removed while pg_verifybackup checks the result, before the
data directory is made durable. Plain-format members are read in place and always copied: a link would let
the server write into the repository.
Either way the result is checked with pg_verifybackup against its backup_manifest before it is used.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

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
MAX_EXTRACT_WORKERS = 4
INCREMENTAL_PREFIX = "INCREMENTAL."
# what pg_combinebackup reads of every backup of a chain (the chain's consistency)
ALWAYS_READ = frozenset(["backup_label", "global/pg_control"])


def backup_major(manifest):
    return int(manifest.get("server_version_num") or 0) // 10000


def restore_into(repository, chain, data_dir, bin_dir=None):
    """Fill the empty directory ``data_dir`` from ``chain`` (manifests, full first) and verify it.

    Returns {method: extract|pg_combinebackup, chain: [ids], linked: bool, checked_while_extracting: bool,
    seconds: {step: seconds}}."""
    last = chain[-1]
    if len(chain) > 1:
        return _combine_chain(repository, chain, data_dir, bin_dir)
    artifact = repository.artifact_path(last)
    clock = time.monotonic()
    checked = _extract_full(artifact, data_dir)
    extracted = time.monotonic()
    verify_data_directory(data_dir, os.path.join(artifact, "backup_manifest"), bin_dir, skip_checksums=checked)
    return {"method": "extract", "chain": [last["id"]], "linked": False, "checked_while_extracting": checked,
            "seconds": {"extract": round(extracted - clock, 3), "verify": round(time.monotonic() - extracted, 3)}}


def _combine_chain(repository, chain, data_dir, bin_dir):
    """pg_combinebackup of the chain's members (extracted into a scratch directory beside ``data_dir``, in
    parallel) into ``data_dir``; the scratch directory is removed while pg_verifybackup checks the result, and
    is gone when this returns: before the caller makes the data directory durable, so that the write-back
    of the file system never has to write the members' copies, deleted anyway."""
    seconds = {}
    scratch = tempfile.mkdtemp(prefix=".pgbackup-combine-", dir=os.path.dirname(data_dir.rstrip("/")))
    removal = None
    try:
        try:
            clock = time.monotonic()
            inputs = _readable_directories(repository, chain, scratch)
            seconds["extract"] = round(time.monotonic() - clock, 3)
            clock = time.monotonic()
            link = _combine(chain, inputs, data_dir, scratch, bin_dir)
            seconds["combine"] = round(time.monotonic() - clock, 3)
        except OSError as exc:
            raise fsutil.describe_os_error(exc, scratch)
        finally:
            removal = _Removal(scratch)
        clock = time.monotonic()
        verify_data_directory(data_dir, os.path.join(data_dir, "backup_manifest"), bin_dir)
        seconds["verify"] = round(time.monotonic() - clock, 3)
    finally:
        if removal is not None:
            seconds["scratch_removal_wait"] = removal.wait()
            seconds["scratch_removal"] = removal.seconds
    return {"method": "pg_combinebackup", "chain": [member["id"] for member in chain], "linked": link,
            "checked_while_extracting": False, "seconds": seconds}


def _combine(chain, inputs, data_dir, scratch, bin_dir):
    """Run pg_combinebackup; True when it hard-linked the files it did not have to rewrite (PostgreSQL 18's
    --link, for members extracted into ``scratch``: a plain-format member in the repository is copied)."""
    combine, version = find_tool("pg_combinebackup", backup_major(chain[-1]), bin_dir)
    link = int(version.split(".")[0]) >= LINK_SINCE_MAJOR and all(i.startswith(scratch) for i in inputs)
    argv = [combine, "--output", data_dir, "--no-sync"] + (["--link"] if link else []) + inputs
    try:
        Pipeline([Stage(argv, name="pg_combinebackup", error_pattern=COMBINE_ERROR)]).run()
    except PgBackupError as exc:
        raise PgBackupError("pg_combinebackup could not combine the chain %s: %s" % (
            " + ".join(member["id"] for member in chain), exc.message),
            hint="Restore another backup (an older chain or a full backup); take a full backup now.")
    return link


class _Removal(object):
    """The scratch directory removed by a thread of its own: unlinking a file the kernel is writing back waits
    for that write, which need not hold up pg_verifybackup. ``wait`` returns the seconds it still waited."""

    def __init__(self, path):
        self.path = path
        self.seconds = None
        self._thread = threading.Thread(target=self._remove, name="remove-scratch")
        self._thread.daemon = True
        self._thread.start()

    def _remove(self):
        clock = time.monotonic()
        shutil.rmtree(self.path, ignore_errors=True)
        self.seconds = round(time.monotonic() - clock, 3)

    def wait(self):
        clock = time.monotonic()
        self._thread.join()
        return round(time.monotonic() - clock, 3)


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


def _readable_directories(repository, chain, scratch):
    """Plain directories holding the members of ``chain``, in its order (``_readable_directory``), extracted in
    parallel: decompressing is CPU-bound and each extraction runs its own processes (gzip/zstd | tar), so the
    full backup is extracted on one worker while the incremental ones are extracted one after another on the
    others (up to one worker per core). Every extraction ends before a failure is raised: the first in the
    chain's order."""
    skipped = unread_files([_manifest_paths(repository, member) for member in chain])
    workers = max(1, min(len(chain), os.cpu_count() or 1, MAX_EXTRACT_WORKERS))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_readable_directory, repository, member, scratch, member is chain[-1], skip)
                   for member, skip in zip(chain, skipped)]  # the full backup first: a worker of its own
    return [future.result() for future in futures]


def _manifest_paths(repository, member):
    """The paths the backup_manifest of ``member``'s artifact lists; None when it cannot be read here (then
    nothing of the members before it is left out: pg_combinebackup and pg_verifybackup judge the manifest)."""
    try:
        return list(backup_manifest.BackupManifest.load(
            os.path.join(repository.artifact_path(member), "backup_manifest")).files)
    except (PgBackupError, OSError, ValueError):
        return None


def unread_files(members):
    """For each member of a chain (the paths its backup_manifest lists, None if unknown; full backup first): the
    files that pg_combinebackup never reads, which need not be extracted. For every file of the last backup that
    is an incremental one (``INCREMENTAL.<name>``) it reads the backups before, newest first, up to the first
    that has the whole file; of every backup it reads backup_label and global/pg_control; the last one it reads
    whole. Everything else (the whole files that a later backup has again: configuration, pg_xact, relations
    sent whole) is not read."""
    skipped = [set()]
    wanted = _incremental_names(members[-1])  # None: not known, every file is wanted
    for paths in reversed(members[:-1]):
        if paths is None or wanted is None:
            skipped.insert(0, set())
        else:
            skipped.insert(0, set(path for path in paths if _whole_name(path) not in wanted and path not in ALWAYS_READ))
        if wanted is not None:
            names = _incremental_names(paths)
            wanted = None if names is None else wanted & names
    return skipped


def _incremental_names(paths):
    """The whole files' paths of the incremental files among ``paths`` (None: not known)."""
    if paths is None:
        return None
    return set(_whole_name(path) for path in paths if _is_incremental(path))


def _is_incremental(path):
    return path.rsplit("/", 1)[-1].startswith(INCREMENTAL_PREFIX)


def _whole_name(path):
    """'base/5/INCREMENTAL.16384' -> 'base/5/16384' (a whole file's path unchanged)."""
    head, _sep, name = path.rpartition("/")
    if name.startswith(INCREMENTAL_PREFIX):
        name = name[len(INCREMENTAL_PREFIX):]
    return head + _sep + name


def _readable_directory(repository, member, scratch, last, skip=()):
    """A plain directory holding ``member`` with its backup_manifest: the artifact itself (plain format), or
    its tars extracted into ``scratch`` (the WAL only of the last member: pg_combinebackup reads no other's;
    the files of ``skip`` left out, see ``unread_files``)."""
    artifact = repository.artifact_path(member)
    if not tar_members(artifact):
        return artifact
    target = os.path.join(scratch, member["id"])
    os.mkdir(target, fsutil.DIR_MODE)
    exclude_from = None
    if skip:
        exclude_from = os.path.join(scratch, member["id"] + ".unread")
        with open(exclude_from, "w") as handle:
            handle.write("".join(path + "\n" for path in sorted(skip)))
    try:
        extract_backup(artifact, target, wal=last, exclude_from=exclude_from)
    except PgBackupError as exc:
        raise PgBackupError("Backup '%s' of the chain could not be extracted: %s" % (member["id"], exc.message),
                            hint="Restore another backup (an older chain or a full backup); take a full backup now.")
    shutil.copy2(os.path.join(artifact, "backup_manifest"), os.path.join(target, "backup_manifest"))
    return target
