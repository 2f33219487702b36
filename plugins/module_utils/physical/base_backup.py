# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Physical base backups of a whole cluster with pg_basebackup, for point-in-time recovery.

Layout in the repository: ``<id>.base/`` (a directory artifact) holding what pg_basebackup
wrote: ``base.tar[.zst|.gz|.lz4]`` and ``pg_wal.tar[...]`` (tar format, the default; the engine compresses
``pg_wal.tar`` with the method of base.tar when pg_basebackup did not, see ``base_backup_wal_tar``) or a
plain data directory copy (plain format), plus PostgreSQL's own ``backup_manifest``.

This module takes the backup (``plan``, ``backup``) and is the entry point callers import; the
parts live in files of their own:

- ``base_backup_request``: the request and its options (format, compression, manifest checksums);
- ``base_backup_tar``: the artifact's tar files (streams, extraction, backup_label);
- ``base_backup_verify``: the check against ``backup_manifest`` (as a stream, or pg_verifybackup);
- ``base_backup_wal``: the WAL range the backup needs, picked from the stream and parsed;
- ``base_backup_wal_tar``: pg_wal.tar compressed like base.tar when pg_basebackup left it uncompressed;
- ``base_backup_chain``: incremental backups (PostgreSQL 17+): the parent of a new one, the chain of a backup;
- ``base_backup_restore``: a backup, or a chain combined with pg_combinebackup, made into a data directory;
- ``base_backup_extract``: a full tar backup extracted and checked against backup_manifest in one pass;
- ``wal_names``: LSNs and WAL segment names.

Defaults, as measured in docs/performance.md:

- tar format with server-side zstd at level 1 and ``workers`` = the CPU count of the host the
  engine runs on (``--compress=server-zstd:level=1,workers=N``; level 1 costs the server about half the
  CPU of level 3 for 4 % more bytes, and the rest of the WAL is compressed anyway): the walsender compresses in
  N threads instead of one (raw pg_basebackup 2.9 -> 1.4 s per GiB on 2 cores). When the server
  refuses workers (a libzstd without multithreading) and workers were not asked for explicitly,
  the backup is taken again in one thread and the manifest says so (``workers_refused``).
- ``--manifest-checksums=CRC32C`` (PostgreSQL's default; 0.8 s per GiB cheaper than SHA256 on the
  server) when the Python module ``crc32c`` can check them here, else SHA256 (hashlib). The
  repository manifest's SHA-256 of each artifact file covers the backup end to end either way.
- verification without extraction (``base_backup_verify``): every tar is read once as a stream and
  checked against ``backup_manifest`` as pg_verifybackup checks a plain directory; only the WAL
  segments the backup needs are written to a scratch directory, no more than the WAL pg_basebackup streamed.
  Plain-format backups are checked in place by pg_verifybackup. A backup that does not verify is
  not published.

The WAL needed to make the backup consistent is streamed into the backup (``-X stream``),
so every base backup is self-contained even without the WAL archive.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time

from ..core import fsutil
from ..core import manifest as manifests
from . import backup_manifest
from . import base_backup_early
from ..core import pgconn
from ..core.errors import PgBackupError
from ..core.pgtools import find_tool
from ..core.pipeline import Pipeline, Stage
from .base_backup_chain import (BACKUP_TYPES, NO_SUMMARIES, USE_INSTEAD, backup_type_of, chain_ids, chain_of,
                                chain_record, chain_root, choose_parent)
from .base_backup_request import (DEFAULT_COMPRESSION, FORMATS, MANIFEST_CHECKSUMS, UNSUPPORTED_METHOD, WAL_METHODS,
                                  WORKERS_AUTO, PhysicalBackupRequest, compression_argument, compression_fallbacks,
                                  resolve_workers)
from .base_backup_restore import backup_major, restore_into
from .base_backup_tar import extract_backup, member_prefix, read_backup_label, read_directory_backup_label
from .base_backup_verify import verify_data_directory, verify_tar_backup
from .base_backup_wal_tar import compress_wal_tar
from .wal_names import DEFAULT_SEGMENT_SIZE, segment_for_lsn

# What callers use from here (the modules, the runner's engines, bench/ and the tests).
__all__ = ["KIND", "ARTIFACT_SUFFIX", "BACKUP_TYPES", "DEFAULT_COMPRESSION", "FORMATS", "MANIFEST_CHECKSUMS",
           "WAL_METHODS", "PhysicalBackupRequest", "plan", "backup", "extract_backup", "verify_data_directory",
           "verify_tar_backup", "backup_major", "backup_type_of", "chain_ids", "chain_of", "chain_root",
           "restore_into"]

KIND = "physical"
ARTIFACT_SUFFIX = ".base"
WORKERS_REFUSED = r"compression worker count"
BASEBACKUP_ERROR = r"(?m)^pg_basebackup: error:"


def _cluster_facts(conn):
    info = pgconn.server_info(conn)
    rows = pgconn.query(conn, "SELECT current_setting('cluster_name'), current_setting('wal_level'), "
                              "current_setting('archive_mode'), current_setting('wal_segment_size'), "
                              # A login with only REPLICATION may read neither: both are informational.
                              "CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') "
                              "THEN (SELECT system_identifier FROM pg_control_system())::text END, "
                              "CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE') "
                              "THEN current_setting('data_directory') END, "
                              # NULL before PostgreSQL 17, which has no WAL summaries
                              "current_setting('summarize_wal', true)")
    cluster_name, wal_level, archive_mode, segment_size, system_identifier, data_directory, summarize = rows[0]
    info.update({"cluster_name": cluster_name or "", "wal_level": wal_level, "archive_mode": archive_mode,
                 "wal_segment_size": _size_in_bytes(segment_size), "system_identifier": system_identifier,
                 "data_directory": data_directory, "summarize_wal": summarize})
    return info


def _size_in_bytes(text):
    match = re.match(r"^(\d+)\s*(B|kB|MB|GB)?$", str(text).strip())
    if not match:
        return DEFAULT_SEGMENT_SIZE
    factor = {"B": 1, None: 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}[match.group(2)]
    return int(match.group(1)) * factor


def _next_xid(conn):
    return int(pgconn.scalar(conn, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))


def read_backup_manifest(path):
    """PostgreSQL's backup_manifest of a new backup as (data, WAL-Ranges); raises when it has no WAL range."""
    data = fsutil.read_json(path, "pg_basebackup's backup_manifest '%s' cannot be read: %s.",
                            hint="The base backup is unusable; take a new one.")
    ranges = data.get("WAL-Ranges") or []
    if not ranges:
        raise PgBackupError("backup_manifest '%s' has no WAL range." % path)
    return data, ranges


def plan(request):
    conn = pgconn.connect(request.connection)
    try:
        facts = _cluster_facts(conn)
    finally:
        conn.close()
    tool, version = find_tool("pg_basebackup", facts["server_version_num"] // 10000, request.pg_bin_dir)
    cluster = request.cluster_name or facts["cluster_name"] or "cluster"
    backup_type, parent, type_note = choose_parent(request.parents, request.backup_type, facts, cluster)
    return {"repository": request.repository.path, "format": request.format, "backup_type": backup_type,
            "parent": parent["id"] if parent else None, "type_note": type_note,
            "compression": resolve_workers(request.compression), "compress": compression_argument(request.compression),
            "manifest_checksums": request.manifest_checksums, "wal_method": request.wal_method,
            "server_version": facts["server_version"], "cluster_name": facts["cluster_name"],
            "archive_mode": facts["archive_mode"], "pg_basebackup": tool, "verify": request.verify,
            "verify_method": _verify_method(request) if request.verify else None}


def _verify_method(request):
    if request.format == "plain":
        return "pg_verifybackup"
    if request.manifest_checksums == "CRC32C" and not backup_manifest.crc32c_available():
        return "extract+pg_verifybackup"
    return "stream"


def _empty_directory(path):
    for name in os.listdir(path):
        fsutil.remove_quietly(os.path.join(path, name))


def _error_line(text, pattern):
    """The line of pg_basebackup's error output that matches ``pattern`` (all of it when none does)."""
    lines = [line.strip() for line in text.splitlines() if re.search(pattern, line)]
    return re.split(r"(?i)\berror:\s+", lines[0])[-1] if lines else text.strip()


def _without_workers(request, compression, exc):
    """The compression to take the backup with after ``exc``: one thread when the server refused workers
    and workers=auto; otherwise ``exc`` is raised."""
    if not compression.get("workers") or not re.search(WORKERS_REFUSED, exc.message):
        raise exc
    if request.compression.get("workers") != WORKERS_AUTO:
        raise PgBackupError("The server refused zstd compression with %d workers: %s" % (
            compression["workers"], exc.message),
            hint="Its libzstd cannot compress in threads (PostgreSQL 15 needs libzstd 1.5 or newer, built with "
                 "threads). Use workers=0, or workers=auto, which falls back to one thread by itself.")
    return dict(compression, workers=0, workers_refused=compression["workers"])


def _follow(request, compression):
    """Whether to check base.tar while pg_basebackup writes it (base_backup_early): a tar backup to verify as a
    stream, written by pg_basebackup's plain writer (server-side compression, or none), WAL in pg_wal.tar."""
    return (request.verify and request.verify_while_writing and request.format == "tar"
            and request.wal_method == "stream" and compression.get("location") in ("server", None)
            and _verify_method(request) == "stream")


def _run_once(argv, env, temp_dir, algorithm, early):
    """Run pg_basebackup once; with an ``algorithm``, base.tar is read as it is written and ``early`` gets the
    EarlyRead (base_backup_early). pg_basebackup's own failure is what is raised."""
    pipeline = Pipeline([Stage(argv, name="pg_basebackup", error_pattern=BASEBACKUP_ERROR)], env=env).start()
    try:
        if algorithm is not None:
            read = base_backup_early.follow_base_tar(temp_dir, lambda: pipeline.processes[0].poll() is None,
                                                     algorithm)
            if read is not None:
                early.append(read)
        pipeline.wait()
    except BaseException:
        pipeline.kill()
        pipeline.wait_quietly()
        raise


def _run_basebackup(request, argv, temp_dir, env, early):
    """Run pg_basebackup with ``argv + --compress=...``; returns the compression actually applied (``early``, a
    list, gets what was read of base.tar while it was written, see ``_run_once``).

    A server whose libzstd cannot compress with workers refuses them ("could not set compression worker
    count"): with workers=auto the backup is taken again in one thread; workers asked for by number fail.
    A build (the server's, or pg_basebackup's) without the method asked for refuses it before the backup
    starts: the backup is taken with the next of ``compression_fallbacks`` (the same method on the client,
    then gzip), and the result says what was asked for (``requested``) and why it was not used (``unsupported``).
    """
    compression = resolve_workers(request.compression)
    fallbacks = compression_fallbacks(compression, request.format)
    unsupported = []
    while True:
        try:
            early[:] = []
            _run_once(argv + ["--compress=%s" % compression_argument(compression)], env, temp_dir,
                      request.manifest_checksums if _follow(request, compression) else None, early)
            break
        except PgBackupError as exc:
            if fallbacks and re.search(UNSUPPORTED_METHOD, exc.message):
                unsupported.append("%s: %s" % (compression_argument(compression),
                                               _error_line(exc.message, UNSUPPORTED_METHOD)))
                compression = resolve_workers(fallbacks.pop(0))
            else:
                compression = _without_workers(request, compression, exc)
            _empty_directory(temp_dir)
    if unsupported:
        compression.update(requested=compression_argument(resolve_workers(request.compression)),
                           unsupported=unsupported)
    return compression


def _take(request, tool, temp_dir, backup_id, env, chosen, early):
    """Run pg_basebackup for the type ``chosen`` = (type, parent, note); returns (compression, chosen).

    pg_basebackup refuses an incremental backup when the server lacks the WAL summaries back to the
    parent's start (summarize_wal was off then, or they were removed after wal_summary_keep_time):
    ``auto`` then takes a full backup, ``diff`` and ``incr`` fail saying so."""
    backup_type, parent, note = chosen
    try:
        argv = _basebackup_argv(request, tool, temp_dir, backup_id, parent)
        return _run_basebackup(request, argv, temp_dir, env, early), chosen
    except PgBackupError as exc:
        if parent is None or not re.search(NO_SUMMARIES, exc.message):
            raise
        why = "the server has no WAL summaries back to the start of '%s': %s" % (
            parent["id"], _error_line(exc.message, NO_SUMMARIES))
        if request.backup_type != "auto":
            raise PgBackupError("pg_basebackup refused the %s backup: %s" % (backup_type, why),
                                hint=USE_INSTEAD + " Summaries exist only from when summarize_wal was turned on, for "
                                                   "wal_summary_keep_time (10 days by default).")
    _empty_directory(temp_dir)
    argv = _basebackup_argv(request, tool, temp_dir, backup_id, None)
    return _run_basebackup(request, argv, temp_dir, env, early), ("full", None, why)


def backup(request):
    """Take a base backup into the repository; returns its manifest (published only when complete)."""
    repo = request.repository
    taken = {"started": manifests.utcnow(), "clock": time.monotonic()}
    conn = pgconn.connect(request.connection)
    temp_dir = None
    try:
        facts = _cluster_facts(conn)
        if facts["wal_level"] == "minimal":
            raise PgBackupError("The server runs with wal_level=minimal; base backups need replica or logical.",
                                hint="Set wal_level=replica (role todoapi.pgbackup.wal_archiving) and restart.")
        major = facts["server_version_num"] // 10000
        tool, taken["tool_version"] = find_tool("pg_basebackup", major, request.pg_bin_dir)
        taken["cluster"] = request.cluster_name or facts["cluster_name"] or "cluster"
        chosen = choose_parent(request.parents, request.backup_type, facts, taken["cluster"])
        repo.prepare()
        backup_id = taken["id"] = repo.unique_id(KIND, taken["cluster"], taken["started"])
        temp_dir = repo.temp_path(backup_id, ARTIFACT_SUFFIX)
        os.mkdir(temp_dir, fsutil.DIR_MODE)
        taken["next_xid_at_start"] = _next_xid(conn)
        early = []  # base.tar as read while pg_basebackup wrote it
        with pgconn.libpq_environment(request.connection) as env:
            taken["compression"], chosen = _take(request, tool, temp_dir, backup_id, env, chosen, early)
        # base.tar's write-back overlaps the WAL tar step and the check instead of following them (commit fsyncs again)
        with fsutil.BackgroundSync(_written_back_early(temp_dir, request.format)) as syncing:
            taken["chain"] = dict(chain_record(chosen[0], chosen[1], backup_id), requested_type=request.backup_type,
                                  type_note=chosen[2])
            taken["next_xid_at_end"] = _next_xid(conn)
            taken["finished"] = manifests.utcnow()
            # before anything reads or checksums the backup: every check is of what is stored
            taken["wal_tar"] = compress_wal_tar(temp_dir, taken["compression"]) if request.format == "tar" else None
            taken["pg_manifest"], taken["wal_ranges"] = read_backup_manifest(os.path.join(temp_dir, "backup_manifest"))
            taken["digests"] = {}  # sha256 of the tars, computed while the check reads them
            taken["verified"], taken["backup_label"] = _check_before_publishing(
                request, temp_dir, backup_id, request.pg_bin_dir or os.path.dirname(tool), major,
                facts["wal_segment_size"], taken["digests"], early[0] if early else None)
            syncing.finish()
        manifest = _repository_manifest(request, facts, temp_dir, taken)
        repo.commit(manifest, {temp_dir: manifest["artifact"]})
        temp_dir = None
        return manifest
    except OSError as exc:
        raise fsutil.describe_os_error(exc, repo.path)
    finally:
        if temp_dir:
            _remove_leftover(temp_dir)
        conn.close()


def _written_back_early(temp_dir, fmt):
    """The files of a new tar backup written back while it is checked: base.tar and the tablespaces' tars (not
    pg_wal.tar, replaced by its compressed copy, nor the small backup_manifest)."""
    if fmt != "tar":
        return []
    return [os.path.join(temp_dir, name) for name in sorted(os.listdir(temp_dir))
            if member_prefix(name) not in (None, "pg_wal")]


def _basebackup_argv(request, tool, temp_dir, backup_id, parent=None):
    """pg_basebackup's command line, without --compress (``_run_basebackup`` adds it)."""
    argv = [tool, "-D", temp_dir, "-F", request.format[0], "-X", request.wal_method,
            "--checkpoint=%s" % request.checkpoint, "--label=%s" % (request.label or backup_id),
            "--no-sync", "--no-password", "--manifest-checksums=%s" % request.manifest_checksums]
    if request.max_rate:
        argv.append("--max-rate=%s" % request.max_rate)
    if parent is not None:
        argv.append("--incremental=%s" % os.path.join(request.parents.artifact_path(parent), "backup_manifest"))
    return argv


def _remove_leftover(path):
    """Clean up after a failure without hiding it: an error while removing is not the news."""
    try:
        fsutil.remove_quietly(path)
    except OSError:
        pass


def _check_before_publishing(request, temp_dir, backup_id, bin_dir, major, segment_size, digests=None, early=None):
    """Verify the backup just taken (when asked) and read its backup_label: (verification result or None, label).

    A tar backup is checked in a scratch directory of the repository, removed afterwards."""
    if request.format == "plain":
        verified = None
        if request.verify:
            verify_data_directory(temp_dir, os.path.join(temp_dir, "backup_manifest"), bin_dir)
            verified = {"method": "pg_verifybackup", "checksum_algorithms": [request.manifest_checksums]}
        return verified, read_directory_backup_label(temp_dir)
    if not request.verify:
        return None, read_backup_label(temp_dir)
    verify_dir = request.repository.temp_path(backup_id, ".verify")
    os.mkdir(verify_dir, fsutil.DIR_MODE)
    try:
        verified = _verify_new_tar_backup(temp_dir, verify_dir, bin_dir, major, segment_size, digests, early)
    except BaseException:
        _remove_leftover(verify_dir)
        raise
    fsutil.remove_quietly(verify_dir)
    label = verified.pop("backup_label")
    return verified, label


def _verify_new_tar_backup(temp_dir, verify_dir, bin_dir, major, segment_size, digests=None, early=None):
    try:
        return verify_tar_backup(temp_dir, work_dir=verify_dir, bin_dir=bin_dir, server_major=major,
                                 segment_size=segment_size, digests=digests, early=early)
    except PgBackupError as exc:
        if not (exc.details.get("problems") or isinstance(exc, backup_manifest.ManifestError)):
            raise  # not a verdict on the backup (e.g. zstd is not installed): as it is
        raise PgBackupError("The new base backup does not verify, so it was not published: %s" % exc.message,
                            hint="Take it again; if it fails again, check the disk and memory of this host "
                                 "and the server's log.", **exc.details)


def _repository_manifest(request, facts, temp_dir, taken):
    """The collection's manifest of the backup just taken (what the repository lists and restores from)."""
    ranges = taken["wal_ranges"]
    segment_size = facts["wal_segment_size"]
    start_lsn, end_lsn = ranges[0]["Start-LSN"], ranges[-1]["End-LSN"]
    timeline = int(ranges[-1]["Timeline"])
    pg_manifest = taken["pg_manifest"]
    manifest = manifests.base_manifest(KIND, taken["cluster"], taken["id"], taken["started"])
    manifest.update({
        "artifact": taken["id"] + ARTIFACT_SUFFIX,
        "size": fsutil.artifact_size(temp_dir),
        "sha256": fsutil.sha256_tree(temp_dir, taken.get("digests")),
        "finished_at": manifests.isoformat(taken["finished"]),
        "duration_seconds": round(time.monotonic() - taken["clock"], 3),
        "format": request.format,
        "compression": dict(taken["compression"], applied="applied_by_pg_basebackup", wal_tar=taken["wal_tar"]),
        "backup_type": taken["chain"]["backup_type"],
        "parent": taken["chain"]["parent"],
        "chain": taken["chain"]["chain"],
        "requested_type": taken["chain"]["requested_type"],
        "type_note": taken["chain"]["type_note"],
        "encryption": None,
        "wal_method": request.wal_method,
        "server_version": facts["server_version"],
        "server_version_num": facts["server_version_num"],
        "pg_basebackup_version": taken["tool_version"],
        "source": {"host": request.connection.host, "port": request.connection.port,
                   "data_directory": facts["data_directory"]},
        "system_identifier": facts["system_identifier"],
        "timeline": timeline,
        "start_lsn": start_lsn,
        "end_lsn": end_lsn,
        "wal_segment_size": segment_size,
        "wal_start_segment": segment_for_lsn(int(ranges[0]["Timeline"]), start_lsn, segment_size),
        "wal_end_segment": segment_for_lsn(timeline, end_lsn, segment_size),
        "next_xid_at_start": taken["next_xid_at_start"],
        "next_xid_at_end": taken["next_xid_at_end"],
        "backup_label": taken["backup_label"],
        "backup_manifest": {"file": "backup_manifest",
                            "version": pg_manifest.get("PostgreSQL-Backup-Manifest-Version"),
                            "files": len(pg_manifest.get("Files") or []), "wal_ranges": ranges,
                            "checksum_algorithm": request.manifest_checksums},
        "verified": _verified_record(taken["verified"]),
        "archive_mode": facts["archive_mode"],
        "tables": {},
        "extra_files": {},
    })
    return manifest


def _verified_record(result):
    """The manifest's ``verified``: whether (and how) the backup was checked against backup_manifest."""
    if not result:
        return {"backup_manifest": False, "method": None, "at": None}
    record = {"backup_manifest": True, "method": result["method"], "at": manifests.isoformat(manifests.utcnow()),
              "checksum_algorithms": result.get("checksum_algorithms")}
    for key in ("files", "bytes", "tars", "read_while_writing", "wal_segments", "wal_parsed", "note"):
        if key in result:
            record[key] = result[key]
    return record
