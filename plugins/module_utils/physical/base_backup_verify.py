# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checking a base backup against PostgreSQL's backup_manifest.

A tar-format backup is checked without extraction: every tar is read once as a stream (``zstd -dc``
through a checked pipeline into ``backup_manifest.TarReader``) and checked as pg_verifybackup checks a
plain directory (manifest checksum, every file's presence, size and checksum, no unexpected files);
only the WAL segments the backup needs are written to a scratch directory, for ``pg_waldump`` to parse
the manifest's WAL ranges. A plain-format (or extracted) data directory is checked by pg_verifybackup.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import functools
import os
import re
import shutil
import tempfile

from . import backup_manifest
from .base_backup_tar import (checked_members, extract_backup, member_prefix, read_directory_backup_label,
                              read_tar_checked, tar_members)
from .base_backup_wal import WalCollector, parse_wal
from ..core.errors import PgBackupError
from ..core.pgtools import find_tool
from ..core.pipeline import Pipeline, Stage

VERIFY_ERROR = r"(?m)^pg_verifybackup: error:"
DEFAULT_MAJOR = 15


def data_directory_major(data_dir):
    """Major version of a (restored) data directory, from the number its PG_VERSION file starts with (whether
    the file is intact is pg_verifybackup's to say)."""
    try:
        with open(os.path.join(data_dir, "PG_VERSION")) as handle:
            match = re.match(r"\s*(\d+)", handle.read(64))
    except OSError as exc:
        raise PgBackupError("The base backup in '%s' is damaged: its PG_VERSION cannot be read (%s)." % (
            data_dir, exc.strerror), hint="Do not restore this backup; use another one.")
    if not match:
        raise PgBackupError("The base backup in '%s' is damaged: its PG_VERSION holds no version number." % data_dir,
                            hint="Do not restore this backup; use another one.")
    return int(match.group(1))


def verify_data_directory(data_dir, manifest_path, bin_dir, skip_checksums=False):
    """pg_verifybackup of the data directory's major version on an extracted/plain data directory (checksums
    of every file, WAL range); ``skip_checksums``: presence and size of every file and the WAL range only, for
    a directory whose data was checked while it was written (``base_backup_extract``)."""
    verifier = find_tool("pg_verifybackup", data_directory_major(data_dir), bin_dir)[0]
    argv = [verifier, "-q", "-m", manifest_path] + (["--skip-checksums"] if skip_checksums else [])
    wal_dir = os.path.join(data_dir, "pg_wal")
    waldump = os.path.join(os.path.dirname(verifier), "pg_waldump")
    if not os.path.exists(waldump):
        argv.append("--no-parse-wal")
    else:
        argv += ["--wal-directory", wal_dir]
    argv.append(data_dir)
    try:
        Pipeline([Stage(argv, name="pg_verifybackup", error_pattern=VERIFY_ERROR)]).run()
    except PgBackupError as exc:
        raise PgBackupError("pg_verifybackup found the base backup damaged: %s" % exc.message,
                            hint="Do not restore this backup; take a new one.")


def verify_tar_backup(artifact_dir, work_dir=None, bin_dir=None, server_major=DEFAULT_MAJOR, segment_size=None,
                      digests=None, early=None):
    """Check a tar-format base backup against its backup_manifest without extracting it.

    Each tar is read once as a stream; the manifest's own checksum, every file's presence, size and
    checksum, and unexpected files are checked as pg_verifybackup does; the WAL segments of the
    manifest's WAL-Ranges are written to a scratch directory in ``work_dir`` (None: the system's
    temporary directory) and parsed with pg_waldump. ``digests`` (a dict) gets the sha256 of every tar file
    read to its end (``TarStream``). Without the crc32c module a CRC32C manifest is
    checked the old way (extracted into ``work_dir`` and pg_verifybackup). ``early``: base.tar as read while
    pg_basebackup wrote it (``base_backup_early.EarlyRead``), replayed instead of read again when usable.

    Returns {method, checksum_algorithms, files, bytes, tars, read_while_writing, wal_segments, wal_parsed,
    backup_label};
    raises PgBackupError naming every damaged, missing or unexpected file.
    """
    manifest_path = os.path.join(artifact_dir, "backup_manifest")
    manifest = backup_manifest.BackupManifest.load(manifest_path)
    if manifest.needs_crc32c() and not backup_manifest.crc32c_available():
        return _verify_by_extracting(artifact_dir, manifest, work_dir, bin_dir, server_major)
    tars = tar_members(artifact_dir)
    check = backup_manifest.ManifestCheck(manifest)
    ordered = [t for t in tars if t.startswith("base.tar")] + \
        [t for t in tars if not t.startswith("base.tar") and not t.startswith("pg_wal.tar")] + \
        [t for t in tars if t.startswith("pg_wal.tar")]
    if not any(t.startswith("base.tar") for t in tars):
        check.problem(None, "there is no base.tar in %s" % artifact_dir)
    scratch = tempfile.mkdtemp(prefix="pgbackup-verify-wal-", dir=work_dir)
    label_holder = []
    replayed = _usable_early(early, artifact_dir, manifest)
    try:
        wal = WalCollector(manifest.wal_ranges, scratch, segment_size)
        for name in ordered:
            prefix = member_prefix(name)
            if prefix is None:
                check.problem(name, "this tar is not one pg_basebackup writes (base, pg_wal or a tablespace oid)")
                continue
            if replayed and name == early.name:
                early.replay(check, name)
                label_holder.extend([early.backup_label] if early.backup_label is not None else [])
                if digests is not None:
                    digests[name] = early.sha256
                continue
            read_tar_checked(os.path.join(artifact_dir, name), check, functools.partial(
                _check_tar, prefix=prefix, check=check, wal=wal, label_holder=label_holder), digests)
        check.finish()
        missing = wal.missing()
        for name, (timeline, start, end) in missing:
            check.problem(None, "WAL segment %s, needed for timeline %d from %s to %s (backup_manifest WAL-Ranges), "
                                "is not in the backup" % (name, timeline, start, end))
        wal_parsed = False if missing else parse_wal(check, wal, bin_dir, server_major)
        wal_segments = sorted(wal.written)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if check.problem_count:
        raise PgBackupError("The base backup in %s does not match its backup_manifest (%d problem%s): %s." % (
            artifact_dir, check.problem_count, "" if check.problem_count == 1 else "s", check.summary()),
            hint=backup_manifest.DAMAGED_HINT, problems=check.problems)
    return {"method": "stream", "checksum_algorithms": manifest.algorithms(), "files": check.files_checked,
            "bytes": check.bytes_checked, "tars": ordered, "read_while_writing": [early.name] if replayed else [],
            "wal_segments": wal_segments, "wal_parsed": wal_parsed,
            "backup_label": label_holder[0] if label_holder else None}


def _usable_early(early, artifact_dir, manifest):
    """Whether ``early`` covers a base.tar of ``artifact_dir`` completely, with the checksums the manifest has."""
    return (early is not None and os.path.normpath(early.directory) == os.path.normpath(artifact_dir) and early.usable
            and early.matches(manifest))


def _verify_by_extracting(artifact_dir, manifest, work_dir, bin_dir, server_major):
    """Fallback without the crc32c module: extract into ``work_dir`` and run pg_verifybackup (needs free space
    for the whole cluster there)."""
    scratch = tempfile.mkdtemp(prefix="pgbackup-verify-", dir=work_dir)
    try:
        extract_backup(artifact_dir, scratch)
        verify_data_directory(scratch, os.path.join(artifact_dir, "backup_manifest"), bin_dir)
        label = read_directory_backup_label(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"method": "extract+pg_verifybackup", "checksum_algorithms": manifest.algorithms(),
            "files": len(manifest.files), "bytes": None, "tars": tar_members(artifact_dir), "wal_segments": None,
            "wal_parsed": None, "backup_label": label,
            "note": "the Python module crc32c is missing (install python3-crc32c): the backup was extracted into "
                    "%s and checked with pg_verifybackup" % (work_dir or tempfile.gettempdir())}


def _check_tar(reader, prefix, check, wal, label_holder):
    """Feed one tar stream's members to the ManifestCheck (and the WAL collector)."""
    for info, path, kind in checked_members(reader, prefix, check):
        file_check = check.member(reader.name, path, kind, info.size)
        wal_file = wal.open(path) if kind == "file" and wal.wants(path, info.size) else None
        keep_label = path == "backup_label" and kind == "file"
        if file_check is None and wal_file is None and not keep_label:
            continue
        label = []
        try:
            for piece in reader.data():
                if file_check is not None:
                    file_check.update(piece)
                if wal_file is not None:
                    wal_file.write(piece)
                if keep_label:
                    label.append(piece.tobytes())
        finally:
            if wal_file is not None:
                wal_file.close()
        if wal_file is not None:
            wal.done(path)
        if file_check is not None:
            file_check.done()
        if keep_label:
            label_holder.append(b"".join(label).decode("utf-8", "replace"))
