# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tar files pg_basebackup writes into a base backup artifact: ``base.tar``, one ``<oid>.tar`` per
tablespace and ``pg_wal.tar`` (each maybe compressed: .gz, .zst, .lz4), read as streams or extracted
into a data directory; and the backup's ``backup_label``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import shutil

from ..core import fsutil
from . import backup_manifest
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pipeline import Pipeline, Stage, require_tool

# The suffix pg_basebackup (and the engine, for pg_wal.tar) gives a tar compressed with each method.
COMPRESSED_SUFFIXES = {"zstd": ".zst", "gzip": ".gz", "lz4": ".lz4"}
TAR_SUFFIX = r"\.tar(\.(gz|zst|lz4))?$"
TABLESPACE_TAR = re.compile(r"^([0-9]+)" + TAR_SUFFIX)
BASE_TAR = re.compile(r"^base" + TAR_SUFFIX)


def tar_members(directory):
    """The tar files of an artifact directory, sorted (none: a plain-format backup)."""
    return sorted(name for name in os.listdir(directory) if re.match(r"^[^.].*" + TAR_SUFFIX, name))


def member_prefix(tar_name):
    """Where the members of one of the artifact's tars belong in the data directory: '' (base.tar),
    'pg_wal' or 'pg_tblspc/<oid>'; None for a tar pg_basebackup does not write."""
    if tar_name.startswith("base.tar"):
        return ""
    if tar_name.startswith("pg_wal.tar"):
        return "pg_wal"
    tablespace = TABLESPACE_TAR.match(tar_name)
    return "pg_tblspc/%s" % tablespace.group(1) if tablespace else None


def lz4_stage(*args):
    return Stage([require_tool("lz4", "the lz4 package"), "-q"] + list(args), name="lz4")


def decompress_stage_for(name):
    for method, suffix in COMPRESSED_SUFFIXES.items():
        if name.endswith(suffix):
            return lz4_stage("-d", "-c") if method == "lz4" else streams.decompress_stage(method)
    return None


def extract_tar(tar_path, destination, exclude_from=None):
    """Extract one (possibly compressed) tar of pg_basebackup into ``destination``; ``exclude_from``: a file
    naming, one per line, members (backup-relative paths, matched literally) that are not to be written."""
    if not os.path.isdir(destination):
        os.makedirs(destination, fsutil.DIR_MODE)
    stages = []
    decompress = decompress_stage_for(tar_path)
    if decompress:
        stages.append(decompress)
    tar = require_tool("tar", "the tar package")
    exclude = ["--anchored", "--no-wildcards", "--exclude-from", exclude_from] if exclude_from else []
    stages.append(Stage([tar, "-x", "-f", "-", "-C", destination, "--no-same-owner"] + exclude, name="tar"))
    Pipeline(stages, stdin=tar_path).run()


def extract_backup(artifact_dir, destination, wal=True, exclude_from=None):
    """Turn a stored base backup (tar or plain) into a data directory at ``destination``; ``wal=False`` leaves
    out the WAL of a tar-format backup (pg_wal.tar), which pg_combinebackup reads from the last backup only;
    ``exclude_from``: a file naming members of base.tar not to write (``extract_tar``)."""
    names = os.listdir(artifact_dir)
    tars = tar_members(artifact_dir)
    if not tars:  # plain format: the artifact is a data directory
        for name in names:
            source = os.path.join(artifact_dir, name)
            target = os.path.join(destination, name)
            if os.path.isdir(source) and not os.path.islink(source):
                shutil.copytree(source, target, symlinks=True)
            else:
                shutil.copy2(source, target, follow_symlinks=False)
        return
    base = [t for t in tars if t.startswith("base.tar")]
    others = [t for t in tars if not t.startswith("base.tar") and not t.startswith("pg_wal.tar")]
    if not base:
        raise PgBackupError("Base backup '%s' has no base.tar." % artifact_dir, hint="The backup is unusable.")
    if others:
        raise PgBackupError("Base backup '%s' contains tablespace archives (%s), which this collection cannot "
                            "restore yet." % (artifact_dir, ", ".join(others)),
                            hint="Extract them by hand next to the data directory and fix pg_tblspc links.")
    extract_tar(os.path.join(artifact_dir, base[0]), destination, exclude_from)
    for name in tars:
        if name.startswith("pg_wal.tar") and wal:
            wal_dir = os.path.join(destination, "pg_wal")
            if not os.path.isdir(wal_dir):
                os.makedirs(wal_dir, 0o700)
            extract_tar(os.path.join(artifact_dir, name), wal_dir)


def read_directory_backup_label(data_dir):
    """backup_label of a data directory (a plain-format backup, or one extracted); None when absent."""
    path = os.path.join(data_dir, "backup_label")
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


class TarStream(object):
    """One tar of the artifact as byte chunks: straight from the file, or through its decompressor.

    ``digests``: a dict that gets ``{file name: sha256}`` of the (compressed) file once it was read to its end,
    so that a caller reading it anyway need not read it again for its checksum. ``chunks``: the file's bytes,
    given by the caller instead of read from ``path``."""

    def __init__(self, path, digests=None, chunks=None):
        self.path = path
        self.name = os.path.basename(path)
        self.pipeline = None
        stage = decompress_stage_for(path)
        if chunks is not None:  # the file's bytes from elsewhere (base_backup_early: a file still being written)
            source = chunks
        else:
            source = path if digests is None else fsutil.hashing_chunks(path, digests, self.name)
        if stage is None:
            self.chunks = fsutil.file_chunks(path) if source is path else source
        else:
            self.pipeline = Pipeline([stage], stdin=source, capture_stdout=True).start()
            self.chunks = self.pipeline.stdout_chunks()

    def drain(self):
        for chunk in self.chunks:
            pass

    def finish(self):
        """Wait for the decompressor; a PgBackupError says it could not decode the file."""
        if self.pipeline is not None:
            pipeline, self.pipeline = self.pipeline, None
            pipeline.wait()

    def abort(self):
        """Stop reading (what was not read is not needed, or a failure is already being reported)."""
        if self.pipeline is not None:
            pipeline, self.pipeline = self.pipeline, None
            pipeline.kill()
            pipeline.wait_quietly()
        if hasattr(self.chunks, "close"):
            self.chunks.close()  # a file read directly is closed with its generator


def read_tar_checked(path, check, handle_members, digests=None):
    """Read one tar of the artifact as a stream, handing its ``backup_manifest.TarReader`` to ``handle_members``;
    a damaged archive or a decompressor that fails is a problem of ``check`` (a ``ManifestCheck``)."""
    stream = TarStream(path, digests)
    try:
        try:
            handle_members(backup_manifest.TarReader(stream.chunks, stream.name))
        except backup_manifest.TarDamaged as exc:
            stream.drain()  # let a decompressor that failed say why, rather than "truncated"
            _finish_checked(stream, check, exc)
            return
        _finish_checked(stream, check, None)
    finally:
        stream.abort()


def _finish_checked(stream, check, damage):
    try:
        stream.finish()
    except PgBackupError as failure:
        check.problem(stream.name, "cannot be decompressed: %s" % failure.message)
        return
    if damage is not None:
        check.problem(None, damage.message)


def checked_members(reader, prefix, check):
    """(TarInfo, backup-relative path, kind) of each member of ``reader`` with a path inside the data directory
    under ``prefix`` (see ``member_prefix``); the others are problems of ``check``."""
    for info in reader:
        path = backup_manifest.member_path(info.name, prefix)
        if path is None:
            check.problem(reader.name, "'%s' has a path outside the data directory" % info.name)
            continue
        if path:
            yield info, path, backup_manifest.member_kind(info)


def read_backup_label(artifact_dir):
    """backup_label of a tar-format backup: base.tar is read only up to that member (its first one)."""
    base = [t for t in tar_members(artifact_dir) if t.startswith("base.tar")]
    if not base:
        raise PgBackupError("Base backup '%s' has no base.tar." % artifact_dir, hint="The backup is unusable.")
    stream = TarStream(os.path.join(artifact_dir, base[0]))
    label = None
    try:
        reader = backup_manifest.TarReader(stream.chunks, stream.name)
        for info in reader:
            if backup_manifest.member_path(info.name) == "backup_label":
                label = b"".join(piece.tobytes() for piece in reader.data()).decode("utf-8", "replace")
                break
    except backup_manifest.TarDamaged:
        label = None
    finally:
        stream.abort()  # stop reading: the rest of base.tar is not needed
    return label
