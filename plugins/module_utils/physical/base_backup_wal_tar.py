# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WAL tar of a tar-format base backup, compressed like the rest of the backup.

pg_basebackup compresses the WAL it streams (``-X stream``) into ``pg_wal.tar`` only with client-side
compression (PostgreSQL 15: gzip only). With server-side compression, the default, ``base.tar.zst`` (or
``.gz``, ``.lz4``) lies beside an uncompressed ``pg_wal.tar``: at least one whole 16 MiB segment, mostly zeros
after a short backup. ``compress_wal_tar`` compresses it on this host with the backup's method and level, right
after pg_basebackup and before anything else reads the backup, so that PostgreSQL's check of the backup, the
repository manifest's sha256 and every later read are of the file that is stored.

The compressed file is written under a name that is not a tar of the backup (``.partial-...``), decompressed
again with the decompressor every reader of the backup uses and compared with the original (size and sha256),
and only then renamed into place; ``pg_wal.tar`` is removed last. Any failure leaves ``pg_wal.tar`` as it was.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gzip
import os
import time

from ..core import fsutil
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pipeline import Pipeline
from .base_backup_tar import COMPRESSED_SUFFIXES as SUFFIXES, TarStream, lz4_stage, member_prefix, tar_members

WAL_TAR = "pg_wal.tar"
# Without a level in the compression asked for: zstd's (and PostgreSQL's) default, and the fastest of gzip and lz4.
DEFAULT_LEVELS = {"zstd": 3, "gzip": 1, "lz4": 1}
ZSTD_MAX_LEVEL = streams.LEVEL_RANGES["zstd"][1]  # pg_basebackup allows up to 22; higher needs --ultra and memory
PARTIAL_PREFIX = ".partial-"


def wal_tar_name(artifact_dir):
    """The name of the artifact's WAL tar (``pg_wal.tar`` maybe with a suffix); None when there is none
    (plain format, or ``wal_method: fetch``, which puts the WAL into base.tar)."""
    names = [name for name in tar_members(artifact_dir) if member_prefix(name) == "pg_wal"]
    return names[0] if names else None


def compress_stage(method, level, workers=0):
    """The program that compresses the WAL tar with zstd (the stage logical backups use) or lz4; gzip is
    Python's own (``_write_gzip``)."""
    if method == "lz4":
        return lz4_stage("-%d" % level, "-c")
    return streams.compress_stage("zstd", min(level, ZSTD_MAX_LEVEL), workers or 1)


def compress_wal_tar(artifact_dir, compression):
    """Compress the artifact's ``pg_wal.tar`` like its base.tar (``compression``: what pg_basebackup applied,
    see base_backup._run_basebackup); returns what the stored WAL tar holds, for the manifest, or None when the
    backup has no WAL tar.

    Nothing is done when the backup is not compressed or pg_basebackup compressed the WAL itself (client-side
    compression). A PgBackupError (or OSError) leaves ``pg_wal.tar`` in place and no other WAL tar."""
    name = wal_tar_name(artifact_dir)
    if name is None:
        return None
    method = compression.get("method")
    if name != WAL_TAR:
        return {"file": name, "applied": "applied_by_pg_basebackup"}
    if method not in SUFFIXES:
        return {"file": name, "applied": "none"}
    level = compression.get("level") or DEFAULT_LEVELS[method]
    source = os.path.join(artifact_dir, WAL_TAR)
    final = source + SUFFIXES[method]
    partial = os.path.join(artifact_dir, PARTIAL_PREFIX + WAL_TAR + SUFFIXES[method])
    stage = None if method == "gzip" else compress_stage(method, level, compression.get("workers"))
    clock = time.monotonic()
    try:
        size_before, size_after = _compress_checked(source, partial, stage, level)
        os.rename(partial, final)
    except BaseException:
        fsutil.remove_quietly(partial)
        raise
    os.unlink(source)
    return {"file": os.path.basename(final), "applied": "engine", "method": method, "level": level,
            "bytes_before": size_before, "bytes": size_after, "seconds": round(time.monotonic() - clock, 3)}


def _write_gzip(chunks, partial, level):
    """gzip in this process: zlib at level 1 takes half the time of the gzip program on a WAL segment (measured
    0.036 against 0.080 s for 16 MiB); the check still reads it with the gzip program, as every restore does."""
    with open(partial, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=raw, mtime=0) as out:
            for chunk in chunks:
                out.write(chunk)


def _compress_checked(source, partial, stage, level):
    """Write ``partial`` = ``source`` compressed by ``stage`` (None: gzip at ``level``) and check that it
    decompresses to ``source``: (size of source, size of partial)."""
    digests = {}
    chunks = fsutil.hashing_chunks(source, digests, "source")
    if stage is None:
        _write_gzip(chunks, partial, level)
    else:
        try:
            Pipeline([stage], stdin=chunks, stdout_path=partial).run()
        except PgBackupError as exc:
            raise PgBackupError("Cannot compress %s of the new base backup: %s" % (WAL_TAR, exc.message),
                                hint="The backup was not published. Check that %s works and that the repository's "
                                     "disk has room, then take it again." % stage.name)
    size = os.path.getsize(source)
    stream = TarStream(partial)
    try:
        try:
            digest, decompressed = fsutil.sha256_chunks(stream.chunks)
            stream.finish()
        except PgBackupError as exc:
            digest, decompressed = "cannot be decompressed: %s" % exc.message, None
    finally:
        stream.abort()
    if (digest, decompressed) != (digests.get("source"), size):
        raise PgBackupError("The compressed %s of the new base backup does not decompress to the original (%s bytes, "
                            "sha256 %s; decompressed: %s bytes, %s)." % (WAL_TAR, size, digests.get("source"),
                                                                         decompressed, digest),
                            hint="The backup was not published. Check the memory and disk of this host and the %s "
                                 "program, then take it again." % (stage.name if stage else "gzip"))
    return size, os.path.getsize(partial)
