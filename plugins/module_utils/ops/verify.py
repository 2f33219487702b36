# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prove that a backup can be restored, at one of three cumulative levels.

``checksum``  every file of the backup exists and matches the manifest's size and sha256.
``structure`` the decoded archive is readable: ``pg_restore --list`` (and a full read of a
              streamed archive), the pg_dump completion marker of a plain script, or for a
              physical backup its check against PostgreSQL's ``backup_manifest`` (tar: streamed,
              see ``base_backup.verify_tar_backup``; plain: ``pg_verifybackup`` in place).
``restore``   the backup is restored into a throwaway database, every table's row count is
              compared with the manifest, ``pg_amcheck --heapallindexed`` checks heap and
              indexes, optional smoke queries run; the throwaway database is always dropped.

Each run is appended to the backup's ``verify`` sidecar (``<id>.verify.json``), in the backup's
own repository; the last entry says whether the backup is currently proven restorable. A level that
needs the private key of an encrypted backup, on a host without it, is ``skipped`` with the reason,
never ``failed``. A backup in a remote repository (S3, Azure, SFTP) is checksummed there as a
stream; the structure and restore levels read a verified download of it in ``work_dir``, removed
afterwards.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time
import uuid

from . import db_checks
from ..logical import restore as logical_restore
from ..core import manifest as manifests
from ..core import pgconn
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pgtools import find_tool
from ..core.pipeline import Pipeline, Stage
from ..storage.base import is_remote
from ..storage.working_copy import LocalCopy

from ..physical import base_backup
from ..physical import base_backup_tar

LEVELS = ("checksum", "structure", "restore")
SIDECAR = "verify"
HISTORY_LIMIT = 50
PLAIN_COMPLETE_MARKER = b"-- PostgreSQL database dump complete"
PLAIN_TAIL_BYTES = 4096
MAX_IDENTIFIER = 63
DEFAULT_PG_MAJOR = 15


class Verification(object):
    """Inputs of one verification run (see ``verify_backup``)."""

    def __init__(self, repository, manifest, level, connection=None, identity_file=None, smoke_queries=None,
                 scratch_prefix="pgbackup_verify", pg_bin_dir=None, maintenance_db="postgres", jobs=0,
                 work_dir=None, no_owner=False):
        if level not in LEVELS:
            raise PgBackupError("Unknown verification level '%s'." % level, hint="Use one of: %s." % ", ".join(LEVELS))
        if level == "restore" and connection is None:
            raise PgBackupError("The restore level needs a PostgreSQL connection to restore into.",
                                hint="Give connection options, or verify at level 'structure'.")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,29}$", scratch_prefix or ""):
            raise PgBackupError("Scratch database prefix '%s' is not a plain identifier of up to 30 characters."
                                % scratch_prefix, hint="Use letters, digits and underscores, e.g. pgbackup_verify.")
        self.repository = repository
        self.manifest = manifest
        self.level = level
        self.connection = connection
        self.identity_file = identity_file
        self.smoke_queries = [q for q in (smoke_queries or []) if q and str(q).strip()]
        self.scratch_prefix = scratch_prefix
        self.pg_bin_dir = pg_bin_dir
        self.maintenance_db = maintenance_db or "postgres"
        self.jobs = int(jobs or 0)  # 0: one connection per CPU (logical_restore.default_jobs)
        self.work_dir = work_dir
        self.no_owner = bool(no_owner)
        self.local_copy = LocalCopy(repository, work_dir)  # the files the structure and restore levels read


def _files(request, manifest=None):
    """The LocalRepository holding the files of ``manifest`` (default: the backup being verified; else a member
    of its chain): the repository, or the verified download of a remote one."""
    return _from_storage(request, request.local_copy.fetch, manifest or request.manifest)


def _from_storage(request, read, *args):
    """``read(*args)`` of the backup's repository. When a remote one does not answer (network, credentials,
    no room for the download) that says nothing about the backup: the error is marked ``unreachable`` and
    verify_backup records nothing. Damage (``reason='damaged'``) stays a failed verification."""
    try:
        return read(*args)
    except PgBackupError as exc:
        if is_remote(request.repository) and exc.details.get("reason") != "damaged":
            exc.details["unreachable"] = True
        raise


def levels_up_to(level):
    return LEVELS[:LEVELS.index(level) + 1]


def scratch_database_name(prefix, backup_id, random_part=None):
    """``<prefix>_<id slug>_<random>``, at most 63 bytes (PostgreSQL's identifier limit)."""
    random_part = random_part or uuid.uuid4().hex[:8]
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", backup_id).strip("_") or "backup"
    room = MAX_IDENTIFIER - len(prefix) - len(random_part) - 2
    return "%s_%s_%s" % (prefix, slug[:max(room, 0)].rstrip("_"), random_part)


def verify_backup(repository, manifest, level, connection=None, identity_file=None, smoke_queries=None,
                  scratch_prefix="pgbackup_verify", pg_bin_dir=None, maintenance_db="postgres", jobs=0,
                  work_dir=None, no_owner=False, record=True):
    """Verify one backup up to ``level``; returns a result dict, raises PgBackupError on failure.

    The outcome (passed or failed) is appended to the backup's ``verify`` sidecar unless
    ``record`` is false. An interrupt (KeyboardInterrupt) is not recorded, but the scratch
    database is dropped all the same.
    """
    request = Verification(repository, manifest, level, connection=connection, identity_file=identity_file,
                           smoke_queries=smoke_queries, scratch_prefix=scratch_prefix, pg_bin_dir=pg_bin_dir,
                           maintenance_db=maintenance_db, jobs=jobs, work_dir=work_dir, no_owner=no_owner)
    started = manifests.utcnow()
    clock = time.monotonic()
    checks = {}
    skipped = None
    try:
        for step in levels_up_to(level):
            skipped = _why_skipped(request, step)
            if skipped:
                break
            checks[step] = STEPS[step](request)
    except PgBackupError as exc:
        if exc.details.get("unreachable"):
            raise
        duration = round(time.monotonic() - clock, 3)
        failed_at = [step for step in levels_up_to(level) if step not in checks][0]
        message = "Verification of backup '%s' failed at level '%s': %s" % (manifest["id"], failed_at, exc.message)
        if record:
            _record(repository, manifest["id"], started, level, "failed", duration, message, failed_at, checks)
        raise PgBackupError(message, hint=exc.hint or "Do not rely on this backup; verify or take another one.",
                            failed_level=failed_at, checks=checks, duration_seconds=duration)
    finally:
        request.local_copy.close()
    duration = round(time.monotonic() - clock, 3)
    result = {"backup_id": manifest["id"], "database": manifest["database"], "kind": manifest["kind"],
              "level": level, "verified": True, "duration_seconds": duration, "checks": checks,
              "started_at": manifests.isoformat(started), "skipped": skipped}
    if record:
        result["recorded"] = _record(repository, manifest["id"], started, level, "skipped" if skipped else "passed",
                                     duration, None, None, checks, skipped)
    result["summary"] = summarize(result)
    return result


# The levels that decrypt the artifact; checksum reads the stored bytes only.
NEEDS_PRIVATE_KEY = ("structure", "restore")


def _why_skipped(request, step):
    """{level, reason} when ``step`` cannot run on this host, else None.

    The documented safe setup of encrypted backups keeps the private key off the database host, so
    a missing key is not damage: the levels that need it are skipped with the reason, and what ran
    before them (the checksum) still stands. A key that is present but wrong is a failure (age says so).
    """
    if step not in NEEDS_PRIVATE_KEY:
        return None
    reason = streams.missing_identity(request.manifest, request.identity_file)
    if not reason:
        return None
    return {"level": step, "reason": "%s; verify at level '%s' where the private key is (identity_file, runner: --identity)"
            % (reason, step)}


def summarize(result):
    """One line for people: what was proven."""
    skipped = result.get("skipped")
    if skipped:
        reached = list(result["checks"])[-1] if result["checks"] else None
        return "%s verified at level %s; level %s skipped: %s" % (result["backup_id"], reached, skipped["level"],
                                                                  skipped["reason"])
    parts = ["%s verified at level %s" % (result["backup_id"], result["level"])]
    restore = result["checks"].get("restore")
    if restore:
        parts = ["%s restored, %d tables, counts match, amcheck OK" % (result["backup_id"], len(restore["tables"]))]
        if restore["smoke_queries"]:
            parts.append("%d smoke queries OK" % len(restore["smoke_queries"]))
    return ", ".join(parts)


# Levels


def _chain(request):
    """The backups a restore of this one needs, itself last: an incremental base backup's chain, else itself."""
    if request.manifest.get("kind") != "physical":
        return [request.manifest]
    return base_backup.chain_of(request.repository, request.manifest)


def _with_chain(request, check):
    """``check(request, manifest)`` for every member of the chain; the backup's own result, plus the chain's ids
    when it has one."""
    members = _chain(request)
    for member in members[:-1]:
        try:
            check(request, member)
        except PgBackupError as exc:
            raise PgBackupError("Backup '%s' depends on '%s', which fails: %s" % (
                request.manifest["id"], member["id"], exc.message), hint=exc.hint)
    result = check(request, request.manifest)
    if len(members) > 1:
        result["chain"] = [member["id"] for member in members]
    return result


def _check_checksum(request):
    return _with_chain(request, _checksum_of)


def _checksum_of(request, manifest):
    if manifest.get("size") == 0:
        raise PgBackupError("Backup '%s' is empty: its manifest records 0 bytes." % manifest["id"],
                            hint="The backup holds no data; take a new one.")
    if _from_storage(request, request.repository.artifact_size, manifest) == 0:
        raise PgBackupError("Artifact '%s' of backup '%s' is a zero-byte file (its manifest says %d bytes)."
                            % (manifest["artifact"], manifest["id"], manifest["size"]),
                            hint="The backup is unusable; restore another one.")
    if is_remote(request.repository) and request.level != "checksum" and not _why_skipped(request, "structure"):
        # The next levels read a download, which is checked against the manifest before it is kept:
        # that is the checksum, without reading the remote copy twice.
        digest = _files(request, manifest).verify_checksum(manifest)
    else:
        digest = _from_storage(request, request.repository.verify_checksum, manifest)
    return {"sha256": digest, "size": manifest["size"], "files": len(manifest.get("extra_files") or {}) + 1}


def _major_of(request):
    """PostgreSQL major version whose client tools should read this backup."""
    manifest = request.manifest
    version = manifest.get("pg_dump_version") or manifest.get("pg_basebackup_version") or ""
    match = re.match(r"(\d+)", str(version))
    if match:
        return int(match.group(1))
    if manifest.get("server_version_num"):
        return int(manifest["server_version_num"]) // 10000
    return DEFAULT_PG_MAJOR


def _decode_stages(request):
    stages = streams.read_stages(request.manifest, request.identity_file)
    compression = request.manifest.get("compression") or {}
    # pg_dump's own gzip of a plain script is a .sql.gz file: gunzip it to read it.
    # (Only if streams.read_stages does not already do it.)
    if request.manifest.get("format") == "plain" and compression.get("applied") == "applied_by_pg_dump" \
            and compression.get("method") == "gzip" and not any(stage.name == "gzip" for stage in stages):
        stages.append(streams.decompress_stage("gzip"))
    return stages


def _run_capture(stages, stdin=None, env=None, keep="all", tolerate_sigpipe=False):
    """Run stages, return their stdout (everything, or only the tail when keep='tail')."""
    pipeline = Pipeline(stages, env=env, stdin=stdin, capture_stdout=True, tolerate_sigpipe=tolerate_sigpipe)
    pipeline.start()
    chunks, tail = [], b""
    try:
        for chunk in pipeline.stdout_chunks():
            if keep == "tail":
                tail = (tail + chunk)[-PLAIN_TAIL_BYTES:]
            else:
                chunks.append(chunk)
    except BaseException:
        pipeline.kill()
        pipeline.wait_quietly()
        raise
    try:
        pipeline.wait()
    except PgBackupError as exc:
        raise streams.explain_decrypt_failure(exc)
    return tail if keep == "tail" else b"".join(chunks)


def _check_structure(request):
    manifest = request.manifest
    if manifest.get("kind") == "physical":
        return _with_chain(request, _check_physical_structure)
    if manifest.get("kind") != "logical":
        raise PgBackupError("Backup '%s' is of kind '%s', which this version cannot verify." % (
            manifest["id"], manifest.get("kind")), hint="Verify it at level 'checksum'.")
    fmt = manifest.get("format", "custom")
    path = _files(request).artifact_path(manifest)
    stages = _decode_stages(request)
    if fmt == "plain":
        tail = _run_capture(stages or [Stage(["cat"], name="cat")], stdin=path, keep="tail")
        if PLAIN_COMPLETE_MARKER not in tail.rstrip()[-len(PLAIN_COMPLETE_MARKER) - 200:]:
            raise PgBackupError("The SQL script of backup '%s' does not end with pg_dump's completion marker "
                                "('%s'): it is truncated." % (manifest["id"], PLAIN_COMPLETE_MARKER.decode()),
                                hint="The backup is incomplete; restore another one.")
        return {"format": fmt, "complete_marker": True}
    pg_restore = find_tool("pg_restore", _major_of(request), request.pg_bin_dir)[0]
    try:
        if fmt == "directory" or not stages:
            listing = _run_capture([Stage([pg_restore, "--list", path], name="pg_restore")])
            # A full read of every data block, without a database (the output is discarded).
            Pipeline([Stage([pg_restore, "-f", os.devnull, path], name="pg_restore")]).run()
        else:
            # pg_restore --list stops after the table of contents: the decoders' SIGPIPE is expected.
            listing = _run_capture(stages + [Stage([pg_restore, "--list"], name="pg_restore")], stdin=path,
                                   tolerate_sigpipe=True)
            Pipeline(stages + [Stage([pg_restore, "-f", os.devnull], name="pg_restore")], stdin=path).run()
    except PgBackupError as exc:
        raise PgBackupError("The archive of backup '%s' is not readable (pg_restore --list failed): %s"
                            % (manifest["id"], exc.message),
                            hint="The backup is damaged; restore another one.")
    text = listing.decode("utf-8", "replace")
    entries = [line for line in text.splitlines() if line and not line.startswith(";")]
    data_entries = [line for line in entries if " TABLE DATA " in line]
    missing = _tables_without_data(manifest.get("tables") or {}, data_entries)
    if missing:
        raise PgBackupError("The archive of backup '%s' holds no data for table(s) its manifest lists: %s."
                            % (manifest["id"], ", ".join(missing)),
                            hint="The artifact does not match its manifest; restore another backup.")
    return {"format": fmt, "entries": len(entries), "table_data_entries": len(data_entries)}


def _tables_without_data(tables, data_entries):
    missing = []
    for key in sorted(tables):
        schema, table = pgconn.split_table_key(key)
        forms = ("TABLE DATA %s %s " % (schema, table), 'TABLE DATA %s "%s" ' % (schema, table.replace('"', '""')))
        if not any(form in line for line in data_entries for form in forms):
            missing.append(key)
    return missing


def _check_physical_structure(request, manifest):
    """A base backup against PostgreSQL's own backup_manifest: a plain one with pg_verifybackup in place, a tar
    one as a stream (nothing is extracted; only the WAL segments it needs go to ``work_dir`` for pg_waldump).
    The programs are those of the backup's major version (pg_waldump reads no other)."""
    path = _files(request, manifest).artifact_path(manifest)
    pg_manifest = os.path.join(path, "backup_manifest")
    if not (os.path.isdir(path) and os.path.isfile(pg_manifest)):
        raise PgBackupError("The structure level for physical backups needs a base backup directory holding "
                            "backup_manifest; '%s' is not one." % manifest["artifact"],
                            hint="Verify this backup at level 'checksum'.")
    plain = not base_backup_tar.tar_members(path)
    if plain:
        tool = find_tool("pg_verifybackup", base_backup.backup_major(manifest), request.pg_bin_dir)[0]
        _pg_verifybackup(tool, pg_manifest, path, manifest)
        return {"format": "plain", "method": "pg_verifybackup", "pg_verifybackup": "ok"}
    try:
        result = base_backup.verify_tar_backup(path, work_dir=request.work_dir, bin_dir=request.pg_bin_dir,
                                               server_major=base_backup.backup_major(manifest),
                                               segment_size=manifest.get("wal_segment_size"))
    except PgBackupError as exc:
        raise PgBackupError("Backup '%s' does not match its backup_manifest: %s" % (manifest["id"], exc.message),
                            hint=exc.hint or "The base backup is damaged; restore another one.")
    result.pop("backup_label", None)
    return dict(result, format=manifest.get("format") or "tar")


def _pg_verifybackup(tool, pg_manifest, data_dir, manifest):
    argv = [tool, "--quiet", "--no-parse-wal", "--manifest-path", pg_manifest, data_dir]
    try:
        Pipeline([Stage(argv, name="pg_verifybackup", error_pattern=r"(?m)^pg_verifybackup: error:")]).run()
    except PgBackupError as exc:
        raise PgBackupError("pg_verifybackup found problems in backup '%s': %s" % (manifest["id"], exc.message),
                            hint="The base backup is damaged; restore another one.")


def _check_restore(request):
    manifest = request.manifest
    if manifest.get("kind") != "logical":
        raise PgBackupError("The restore level is implemented only for logical backups, not '%s'."
                            % manifest.get("kind"), hint="Verify this backup at level 'structure'.")
    scratch = scratch_database_name(request.scratch_prefix, manifest["id"])
    restore_request = logical_restore.LogicalRestoreRequest(
        _files(request), request.connection, database=scratch, backup=manifest["id"],
        source_database=manifest["database"], jobs=request.jobs, identity_file=request.identity_file,
        no_owner=request.no_owner, maintenance_db=request.maintenance_db, work_dir=request.work_dir,
        pg_bin_dir=request.pg_bin_dir)
    try:
        restored = logical_restore.restore(restore_request)
        counts = restored["tables"]
        expected = manifest.get("tables") or {}
        wrong = sorted(key for key in expected if counts.get(key) != expected[key])
        if wrong:
            raise PgBackupError("Row counts in the restored copy differ from the manifest for: %s." % ", ".join(wrong))
        amcheck = _run_amcheck(request, scratch)
        smoke = _run_smoke_queries(request, scratch)
    finally:
        drop_scratch_database(request.connection, request.maintenance_db, scratch)
    return {"scratch_database": scratch, "scratch_dropped": True, "tables": counts, "counts_match": True,
            "amcheck": amcheck, "smoke_queries": smoke, "restore_seconds": restored.get("duration_seconds")}


def drop_scratch_database(connection, maintenance_db, scratch):
    """Drop the scratch database and logical_restore's staging database for it, if present."""
    names = [scratch, logical_restore._staging_name(scratch)]
    admin = pgconn.connect(connection, maintenance_db)
    try:
        for name in names:
            pgconn.query(admin, pgconn.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgconn.sql.Identifier(name)))
    finally:
        admin.close()


def _server_major(request, dbname):
    conn = pgconn.connect(request.connection, dbname)
    try:
        return pgconn.server_info(conn)["server_version_num"] // 10000
    finally:
        conn.close()


def _run_amcheck(request, scratch):
    return db_checks.run_pg_amcheck(request.connection, scratch, _server_major(request, scratch), request.pg_bin_dir,
                                    "the restored copy", "The backup restores into a damaged database; do not rely on it.",
                                    jobs=request.jobs)


def _run_smoke_queries(request, scratch):
    if not request.smoke_queries:
        return []
    conn = pgconn.connect(request.connection, scratch)
    try:
        return db_checks.run_smoke_queries(conn, request.smoke_queries, " on the restored copy",
                                           "Fix the query, or investigate the backup.")
    finally:
        conn.close()


STEPS = {"checksum": _check_checksum, "structure": _check_structure, "restore": _check_restore}


# The verification record


def _record(repository, backup_id, started, level, outcome, duration, error, failed_level, checks, skipped=None):
    entry = {"time": manifests.isoformat(started), "level": level, "outcome": outcome,
             "duration_seconds": duration, "error": error}
    if failed_level:
        entry["failed_level"] = failed_level
    if skipped:
        # outcome "skipped": the levels in "passed_levels" passed, skipped["level"] and above did not run
        entry["passed_levels"] = list(checks)
        entry["skipped"] = skipped
    if "restore" in checks:
        entry["tables"] = checks["restore"]["tables"]
    try:
        previous = repository.read_sidecar(backup_id, SIDECAR) or {}
        history = previous.get("history") if isinstance(previous.get("history"), list) else []
        history = (history + [entry])[-HISTORY_LIMIT:]
        repository.write_sidecar(backup_id, SIDECAR, {"backup_id": backup_id, "history": history})
    except OSError as exc:
        return "not recorded: cannot write the verify sidecar (%s)" % (exc.strerror or exc)
    except PgBackupError as exc:  # a remote repository that stopped answering
        return "not recorded: cannot write the verify sidecar (%s)" % exc.message
    return "%s.%s.json" % (backup_id, SIDECAR)


def verification_state(repository, backup_id):
    """What the last verification of a backup said: state verified|failed|unverified, level, time, error."""
    record = repository.read_sidecar(backup_id, SIDECAR) or {}
    history = record.get("history") if isinstance(record, dict) else None
    if not isinstance(history, list) or not history or not isinstance(history[-1], dict):
        return {"state": "unverified", "level": None, "time": None, "error": None}
    last = history[-1]
    if last.get("outcome") == "skipped":
        # What ran passed: the backup counts as verified at the highest level reached, never as failed.
        passed = last.get("passed_levels") or []
        return {"state": "verified" if passed else "unverified", "level": passed[-1] if passed else None,
                "time": last.get("time"), "error": None, "skipped": last.get("skipped")}
    state = "verified" if last.get("outcome") == "passed" else "failed"
    return {"state": state, "level": last.get("level"), "time": last.get("time"), "error": last.get("error")}


def plan(repository, manifest, level, connection=None, scratch_prefix="pgbackup_verify", smoke_queries=None):
    """What a verification would do (check mode); touches nothing."""
    steps = list(levels_up_to(level))
    description = {"checksum": "compare size and sha256 of %d file(s) with the manifest"
                               % (len(manifest.get("extra_files") or {}) + 1),
                   "structure": "read the archive (pg_restore --list / completion marker; a base backup: check "
                                "every file against backup_manifest as a stream, or pg_verifybackup if plain)",
                   "restore": "restore into a throwaway database %s_*, compare %d table row counts, run pg_amcheck "
                              "--heapallindexed and %d smoke queries, then drop it"
                              % (scratch_prefix, len(manifest.get("tables") or {}), len(smoke_queries or []))}
    return {"backup_id": manifest["id"], "level": level, "steps": [description[s] for s in steps]}
