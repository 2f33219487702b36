# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a base backup may ask for, checked before anything is written: format, WAL method, checkpoint,
rate limit, pg_basebackup's --compress (server-side zstd with workers by default, and what to fall back to
when a build lacks the method), the checksum algorithm of PostgreSQL's backup_manifest and the backup type
(full, or incremental: base_backup_chain).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from . import backup_manifest
from .base_backup_chain import BACKUP_TYPES
from ..core.errors import PgBackupError

FORMATS = ("tar", "plain")
COMPRESSION_METHODS = ("none", "gzip", "lz4", "zstd")
# pg_basebackup 15's validate_compress_specification() ranges (zstd also has negative "fast" levels,
# which the collection does not offer).
LEVEL_RANGES = {"gzip": (1, 9), "lz4": (1, 12), "zstd": (1, 22)}
DEFAULT_COMPRESSION = "server-zstd:level=1,workers=auto"
WORKERS_AUTO = "auto"
MANIFEST_CHECKSUMS = ("auto", "CRC32C", "SHA224", "SHA256", "SHA384", "SHA512")
WAL_METHODS = ("stream", "fetch")
MAX_RATE = re.compile(r"^[0-9]+[kM]?$")
# Tried when a build (the server's, then pg_basebackup's) lacks the method asked for: zlib is in nearly every
# build, and level 1 costs the least time.
FALLBACK_COMPRESSION = "server-gzip:1"
UNSUPPORTED_METHOD = r"this build does not support|not supported by this build"
COMPRESSION_HINT = ("Use none, or [client-|server-]gzip|lz4|zstd[:level] or [:level=N,workers=N|auto] "
                    "(workers with zstd only), e.g. server-zstd:level=1,workers=auto.")


def _parse_detail(detail, method, value):
    """pg_basebackup's compression detail: '' , '5' (a level) or 'level=5,workers=4' -> (level, workers)."""
    level = workers = None
    if not detail:
        return level, workers
    if detail.isdigit():
        return int(detail), workers
    for item in detail.split(","):
        key, equals, setting = item.strip().partition("=")
        if key == "level" and setting.isdigit():
            level = int(setting)
        elif key == "workers" and method == "zstd" and (setting.isdigit() or setting == WORKERS_AUTO):
            workers = setting if setting == WORKERS_AUTO else int(setting)
        elif key == "workers" and method != "zstd":
            raise PgBackupError("Compression '%s': only zstd compresses with workers." % value, hint=COMPRESSION_HINT)
        elif key in ("level", "workers"):
            raise PgBackupError("Compression '%s': %s must be a number%s." % (
                value, key, " or auto" if key == "workers" else ""), hint=COMPRESSION_HINT)
        else:
            raise PgBackupError("Compression '%s': unknown setting '%s' (PostgreSQL 15 knows level and workers)."
                                % (value, key), hint=COMPRESSION_HINT)
    return level, workers


def parse_compression(value, fmt):
    """'server-zstd:level=3,workers=auto', 'server-zstd:3', 'client-gzip:6', 'zstd' (= server side), 'none'
    -> dict(method, location, level, workers).

    ``workers`` is None (not zstd), 'auto' (the default for zstd: the CPU count, see
    ``resolve_workers``) or a number; 0 compresses in one thread.
    """
    text = (value or "none").strip().lower()
    location = "server"
    if text.startswith("client-") or text.startswith("server-"):
        location, dash, text = text.partition("-")
    method, colon, detail = text.partition(":")
    if method not in COMPRESSION_METHODS:
        raise PgBackupError("Unknown base backup compression '%s'." % value, hint=COMPRESSION_HINT)
    if method == "none":
        if detail:
            raise PgBackupError("Compression '%s': none takes no level or workers." % value, hint=COMPRESSION_HINT)
        return {"method": "none", "location": None, "level": None, "workers": None}
    level, workers = _parse_detail(detail, method, value)
    if level is not None:
        low, high = LEVEL_RANGES[method]
        if not low <= level <= high:
            raise PgBackupError("Compression level %d is out of range for %s." % (level, method),
                                hint="Use %d to %d." % (low, high))
    if method == "zstd" and workers is None:
        workers = WORKERS_AUTO
    if fmt == "plain" and location == "client":
        raise PgBackupError("Client-side compression is not possible with the plain format.",
                            hint="Use format tar, or server-side compression (it then only saves network traffic).")
    return {"method": method, "location": location, "level": level, "workers": workers}


def resolve_workers(compression):
    """The compression with workers 'auto' replaced by the CPU count of this host (the DB host, where the
    backup role and playbooks run the engine)."""
    if compression.get("workers") != WORKERS_AUTO:
        return dict(compression)
    return dict(compression, workers=os.cpu_count() or 1)


def compression_argument(compression):
    """The value of pg_basebackup --compress; workers 'auto' is resolved, workers 0 left out."""
    if compression["method"] == "none":
        return "none"
    compression = resolve_workers(compression)
    text = "%s-%s" % (compression["location"], compression["method"])
    level, workers = compression["level"], compression.get("workers")
    if workers:
        details = (["level=%d" % level] if level is not None else []) + ["workers=%d" % workers]
        text += ":" + ",".join(details)
    elif level is not None:
        text += ":%d" % level
    return text


def compression_fallbacks(compression, fmt):
    """What to try, in order, when a build lacks ``compression``'s method: the same method on the client (tar
    format only: a plain backup is written by the client as files), then FALLBACK_COMPRESSION."""
    if compression["method"] == "none":
        return []
    tries = []
    if compression["location"] == "server" and fmt == "tar":
        tries.append(dict(compression, location="client"))
    fallback = parse_compression(FALLBACK_COMPRESSION, fmt)
    if compression["method"] != fallback["method"]:
        tries.append(fallback)
    return tries


def manifest_checksum_algorithm(requested):
    """What pg_basebackup --manifest-checksums gets: for 'auto', CRC32C (PostgreSQL's default, cheap on the
    server) when the crc32c module can check it here, else SHA256 (hashlib)."""
    if requested in (None, "", "auto"):
        return "CRC32C" if backup_manifest.crc32c_available() else "SHA256"
    algorithm = str(requested).upper()
    if algorithm not in MANIFEST_CHECKSUMS:
        raise PgBackupError("Unknown manifest checksum algorithm '%s'." % requested,
                            hint="Use one of: %s." % ", ".join(MANIFEST_CHECKSUMS))
    return algorithm


class PhysicalBackupRequest(object):
    """A base backup request, validated before anything is written."""

    def __init__(self, repository, connection, fmt="tar", compression=DEFAULT_COMPRESSION, wal_method="stream",
                 max_rate=None, checkpoint="fast", verify=True, label=None, pg_bin_dir=None, cluster_name=None,
                 manifest_checksums="auto", backup_type="full", parents=None, verify_while_writing=True):
        if fmt not in FORMATS:
            raise PgBackupError("Unknown base backup format '%s'." % fmt, hint="Use tar or plain.")
        if wal_method not in WAL_METHODS:
            raise PgBackupError("Unknown WAL method '%s'." % wal_method,
                                hint="Use stream (default) or fetch; both make the backup self-contained.")
        if backup_type not in BACKUP_TYPES:
            raise PgBackupError("Unknown base backup type '%s'." % backup_type,
                                hint="Use full, diff (changes since the newest full backup), incr (changes since the "
                                     "newest backup) or auto (incr when possible, else full); diff and incr need "
                                     "PostgreSQL 17 or newer with summarize_wal on.")
        if checkpoint not in ("fast", "spread"):
            raise PgBackupError("Unknown checkpoint mode '%s'." % checkpoint, hint="Use fast or spread.")
        if max_rate and not MAX_RATE.match(str(max_rate)):
            raise PgBackupError("max_rate '%s' is not a transfer rate." % max_rate,
                                hint="Give kB/s as a number, or a number followed by k or M (e.g. 50M).")
        self.repository = repository
        self.connection = connection
        self.format = fmt
        self.compression = parse_compression(compression, fmt)
        self.wal_method = wal_method
        self.max_rate = str(max_rate) if max_rate else None
        self.checkpoint = checkpoint
        self.verify = bool(verify)
        # check base.tar as pg_basebackup writes it (base_backup_early); False: read it again afterwards (bench)
        self.verify_while_writing = bool(verify_while_writing)
        self.label = label
        self.pg_bin_dir = pg_bin_dir
        self.cluster_name = cluster_name
        self.manifest_checksums = manifest_checksum_algorithm(manifest_checksums)
        self.backup_type = backup_type
        # where an incremental backup finds its parent: the repository itself, or, for a backup taken locally
        # for a remote repository, that repository (physical/remote_backups.RemoteParents)
        self.parents = parents or repository
