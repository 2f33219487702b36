# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Physical base backups of a whole cluster with pg_basebackup, for point-in-time recovery.

Layout in the repository: ``<id>.base/`` (a directory artifact) holding what pg_basebackup
wrote: ``base.tar[.zst|.gz|.lz4]`` and ``pg_wal.tar[...]`` (tar format, the default) or a
plain data directory copy (plain format), plus PostgreSQL's own ``backup_manifest``.

Format choice: tar with server-side zstd is the default. It is small and fast (the server
compresses while it reads, the client only writes), but PostgreSQL 15's pg_verifybackup
reads only plain directories, so verification extracts the tars into a temporary directory
of the repository and runs pg_verifybackup there (O(verify), on by default; it costs one
extra read+write of the backup). Plain format is verified in place but stored uncompressed.
The WAL needed to make the backup consistent is streamed into the backup (``-X stream``),
so every base backup is self-contained even without the WAL archive.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import shutil
import time

from . import fsutil
from . import manifest as manifests
from . import pgconn
from .errors import PgBackupError
from .pgtools import find_tool
from .pipeline import Pipeline, Stage, require_tool

KIND = "physical"
ARTIFACT_SUFFIX = ".base"
FORMATS = ("tar", "plain")
COMPRESSION_METHODS = ("none", "gzip", "lz4", "zstd")
WAL_METHODS = ("stream", "fetch")
TAR_SUFFIXES = {"none": ".tar", "gzip": ".tar.gz", "lz4": ".tar.lz4", "zstd": ".tar.zst"}
MAX_RATE = re.compile(r"^[0-9]+[kM]?$")
BASEBACKUP_ERROR = r"(?m)^pg_basebackup: error:"
VERIFY_ERROR = r"(?m)^pg_verifybackup: error:"
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


def parse_compression(value, fmt):
    """'server-zstd:3', 'client-gzip:6', 'zstd' (= server side), 'none' -> dict(method, location, level)."""
    text = (value or "none").strip().lower()
    location = "server"
    if text.startswith("client-") or text.startswith("server-"):
        location, dash, text = text.partition("-")
    method, colon, level = text.partition(":")
    if method not in COMPRESSION_METHODS:
        raise PgBackupError("Unknown base backup compression '%s'." % value,
                            hint="Use none, or [client-|server-]gzip|lz4|zstd[:level], e.g. server-zstd:3.")
    if method == "none":
        return {"method": "none", "location": None, "level": None}
    if level:
        if not level.isdigit():
            raise PgBackupError("Compression level '%s' is not a number." % level)
        level = int(level)
    else:
        level = None
    if fmt == "plain" and location == "client":
        raise PgBackupError("Client-side compression is not possible with the plain format.",
                            hint="Use format tar, or server-side compression (it then only saves network traffic).")
    return {"method": method, "location": location, "level": level}


def compression_argument(compression):
    if compression["method"] == "none":
        return "none"
    text = "%s-%s" % (compression["location"], compression["method"])
    if compression["level"] is not None:
        text += ":%d" % compression["level"]
    return text


class PhysicalBackupRequest(object):
    """A base backup request, validated before anything is written."""

    def __init__(self, repository, connection, fmt="tar", compression="server-zstd", wal_method="stream",
                 max_rate=None, checkpoint="fast", verify=True, label=None, pg_bin_dir=None, cluster_name=None):
        if fmt not in FORMATS:
            raise PgBackupError("Unknown base backup format '%s'." % fmt, hint="Use tar or plain.")
        if wal_method not in WAL_METHODS:
            raise PgBackupError("Unknown WAL method '%s'." % wal_method,
                                hint="Use stream (default) or fetch; both make the backup self-contained.")
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
        self.label = label
        self.pg_bin_dir = pg_bin_dir
        self.cluster_name = cluster_name


def _cluster_facts(conn):
    info = pgconn.server_info(conn)
    rows = pgconn.query(conn, "SELECT current_setting('cluster_name'), current_setting('wal_level'), "
                              "current_setting('archive_mode'), current_setting('wal_segment_size'), "
                              # A login with only REPLICATION may read neither: both are informational.
                              "CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') "
                              "THEN (SELECT system_identifier FROM pg_control_system())::text END, "
                              "CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE') "
                              "THEN current_setting('data_directory') END")
    cluster_name, wal_level, archive_mode, segment_size, system_identifier, data_directory = rows[0]
    info.update({"cluster_name": cluster_name or "", "wal_level": wal_level, "archive_mode": archive_mode,
                 "wal_segment_size": _size_in_bytes(segment_size), "system_identifier": system_identifier,
                 "data_directory": data_directory})
    return info


def _size_in_bytes(text):
    match = re.match(r"^(\d+)\s*(B|kB|MB|GB)?$", str(text).strip())
    if not match:
        return DEFAULT_SEGMENT_SIZE
    factor = {"B": 1, None: 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}[match.group(2)]
    return int(match.group(1)) * factor


def _next_xid(conn):
    return int(pgconn.scalar(conn, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))


def parse_lsn(text):
    high, slash, low = str(text).partition("/")
    try:
        return (int(high, 16) << 32) + int(low, 16)
    except ValueError:
        raise PgBackupError("'%s' is not a WAL location (LSN)." % text, hint="Write it like 0/3000060.")


def format_lsn(value):
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def segment_name(timeline, lsn, segment_size=DEFAULT_SEGMENT_SIZE):
    """The WAL file name holding ``lsn`` (an int or 'X/Y') on ``timeline``."""
    if not isinstance(lsn, int):
        lsn = parse_lsn(lsn)
    segno = lsn // segment_size
    per_xlogid = 0x100000000 // segment_size
    return "%08X%08X%08X" % (timeline, segno // per_xlogid, segno % per_xlogid)


def read_backup_manifest(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise PgBackupError("pg_basebackup's backup_manifest '%s' cannot be read: %s." % (path, exc),
                            hint="The base backup is unusable; take a new one.")
    ranges = data.get("WAL-Ranges") or []
    if not ranges:
        raise PgBackupError("backup_manifest '%s' has no WAL range." % path)
    return data, ranges


def _tar_members(directory):
    return sorted(name for name in os.listdir(directory) if re.match(r"^[^.].*\.tar(\.(gz|zst|lz4))?$", name))


def decompress_stage_for(name):
    if name.endswith(".zst"):
        return Stage([require_tool("zstd", "the zstd package"), "-q", "-d", "-c"], name="zstd")
    if name.endswith(".gz"):
        return Stage([require_tool("gzip", "the gzip package"), "-d", "-c"], name="gzip")
    if name.endswith(".lz4"):
        return Stage([require_tool("lz4", "the lz4 package"), "-q", "-d", "-c"], name="lz4")
    return None


def extract_tar(tar_path, destination):
    """Extract one (possibly compressed) tar of pg_basebackup into ``destination``."""
    if not os.path.isdir(destination):
        os.makedirs(destination, fsutil.DIR_MODE)
    stages = []
    decompress = decompress_stage_for(tar_path)
    if decompress:
        stages.append(decompress)
    tar = require_tool("tar", "the tar package")
    stages.append(Stage([tar, "-x", "-f", "-", "-C", destination, "--no-same-owner"], name="tar"))
    Pipeline(stages, stdin=tar_path).run()


def extract_backup_label(artifact_dir, destination):
    """Extract only backup_label from base.tar (tar still reads the whole stream, but writes one file)."""
    base = [t for t in _tar_members(artifact_dir) if t.startswith("base.tar")]
    if not base:
        raise PgBackupError("Base backup '%s' has no base.tar." % artifact_dir, hint="The backup is unusable.")
    stages = []
    decompress = decompress_stage_for(base[0])
    if decompress:
        stages.append(decompress)
    stages.append(Stage([require_tool("tar", "the tar package"), "-x", "-f", "-", "-C", destination,
                         "--no-same-owner", "backup_label"], name="tar"))
    Pipeline(stages, stdin=os.path.join(artifact_dir, base[0])).run()


def extract_backup(artifact_dir, destination):
    """Turn a stored base backup (tar or plain) into a data directory at ``destination``."""
    names = os.listdir(artifact_dir)
    tars = _tar_members(artifact_dir)
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
    extract_tar(os.path.join(artifact_dir, base[0]), destination)
    for name in tars:
        if name.startswith("pg_wal.tar"):
            wal_dir = os.path.join(destination, "pg_wal")
            if not os.path.isdir(wal_dir):
                os.makedirs(wal_dir, 0o700)
            extract_tar(os.path.join(artifact_dir, name), wal_dir)


def verify_data_directory(data_dir, manifest_path, bin_dir):
    """pg_verifybackup on an extracted/plain data directory (checksums of every file, WAL range)."""
    verifier = find_tool("pg_verifybackup", 15, bin_dir)[0]
    argv = [verifier, "-q", "-m", manifest_path]
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


def _read_backup_label(data_dir):
    path = os.path.join(data_dir, "backup_label")
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def plan(request):
    conn = pgconn.connect(request.connection)
    try:
        facts = _cluster_facts(conn)
    finally:
        conn.close()
    tool, version = find_tool("pg_basebackup", facts["server_version_num"] // 10000, request.pg_bin_dir)
    return {"repository": request.repository.path, "format": request.format,
            "compression": request.compression, "wal_method": request.wal_method,
            "server_version": facts["server_version"], "cluster_name": facts["cluster_name"],
            "archive_mode": facts["archive_mode"], "pg_basebackup": tool, "verify": request.verify}


def backup(request):
    """Take a base backup into the repository; returns its manifest (published only when complete)."""
    repo = request.repository
    started = manifests.utcnow()
    clock = time.monotonic()
    conn = pgconn.connect(request.connection)
    temp_dir = verify_dir = None
    try:
        facts = _cluster_facts(conn)
        if facts["wal_level"] == "minimal":
            raise PgBackupError("The server runs with wal_level=minimal; base backups need replica or logical.",
                                hint="Set wal_level=replica (role todoapi.pgbackup.wal_archiving) and restart.")
        major = facts["server_version_num"] // 10000
        tool, tool_version = find_tool("pg_basebackup", major, request.pg_bin_dir)
        cluster = request.cluster_name or facts["cluster_name"] or "cluster"
        repo.prepare()
        backup_id = repo.unique_id(KIND, cluster, started)
        temp_dir = repo.temp_path(backup_id, ARTIFACT_SUFFIX)
        os.mkdir(temp_dir, fsutil.DIR_MODE)
        next_xid_start = _next_xid(conn)
        argv = [tool, "-D", temp_dir, "-F", request.format[0], "-X", request.wal_method,
                "--checkpoint=%s" % request.checkpoint, "--label=%s" % (request.label or backup_id),
                "--compress=%s" % compression_argument(request.compression), "--no-sync", "--no-password",
                "--manifest-checksums=SHA256"]
        if request.max_rate:
            argv.append("--max-rate=%s" % request.max_rate)
        with pgconn.libpq_environment(request.connection) as env:
            Pipeline([Stage(argv, name="pg_basebackup", error_pattern=BASEBACKUP_ERROR)], env=env).run()
        next_xid_end = _next_xid(conn)
        finished = manifests.utcnow()

        pg_manifest_path = os.path.join(temp_dir, "backup_manifest")
        pg_manifest, ranges = read_backup_manifest(pg_manifest_path)
        segment_size = facts["wal_segment_size"]
        start_lsn, end_lsn = ranges[0]["Start-LSN"], ranges[-1]["End-LSN"]
        timeline = int(ranges[-1]["Timeline"])
        if request.format == "plain":
            data_dir = temp_dir
        else:
            verify_dir = repo.temp_path(backup_id, ".verify")
            os.mkdir(verify_dir, fsutil.DIR_MODE)
            data_dir = verify_dir
            if request.verify:
                extract_backup(temp_dir, verify_dir)
            else:
                extract_backup_label(temp_dir, verify_dir)
        verified = False
        if request.verify:
            verify_data_directory(data_dir, pg_manifest_path, request.pg_bin_dir or os.path.dirname(tool))
            verified = True
        label = _read_backup_label(data_dir)
        if verify_dir:
            fsutil.remove_quietly(verify_dir)
            verify_dir = None

        manifest = manifests.base_manifest(KIND, cluster, backup_id, started)
        manifest.update({
            "artifact": backup_id + ARTIFACT_SUFFIX,
            "size": fsutil.artifact_size(temp_dir),
            "sha256": fsutil.sha256_tree(temp_dir),
            "finished_at": manifests.isoformat(finished),
            "duration_seconds": round(time.monotonic() - clock, 3),
            "format": request.format,
            "compression": dict(request.compression, applied="applied_by_pg_basebackup"),
            "encryption": None,
            "wal_method": request.wal_method,
            "server_version": facts["server_version"],
            "server_version_num": facts["server_version_num"],
            "pg_basebackup_version": tool_version,
            "source": {"host": request.connection.host, "port": request.connection.port,
                       "data_directory": facts["data_directory"]},
            "system_identifier": facts["system_identifier"],
            "timeline": timeline,
            "start_lsn": start_lsn,
            "end_lsn": end_lsn,
            "wal_segment_size": segment_size,
            "wal_start_segment": segment_name(int(ranges[0]["Timeline"]), start_lsn, segment_size),
            "wal_end_segment": segment_name(timeline, end_lsn, segment_size),
            "next_xid_at_start": next_xid_start,
            "next_xid_at_end": next_xid_end,
            "backup_label": label,
            "backup_manifest": {"file": "backup_manifest", "version": pg_manifest.get("PostgreSQL-Backup-Manifest-Version"),
                                "files": len(pg_manifest.get("Files") or []), "wal_ranges": ranges},
            "verified": {"pg_verifybackup": verified, "at": manifests.isoformat(manifests.utcnow()) if verified else None},
            "archive_mode": facts["archive_mode"],
            "tables": {},
            "extra_files": {},
        })
        repo.commit(manifest, {temp_dir: manifest["artifact"]})
        temp_dir = None
        return manifest
    except OSError as exc:
        raise fsutil.describe_os_error(exc, repo.path)
    finally:
        for path in (temp_dir, verify_dir):
            if path:
                try:
                    fsutil.remove_quietly(path)
                except OSError:
                    pass
        conn.close()
