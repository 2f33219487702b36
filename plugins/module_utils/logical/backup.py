# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical backup of one database: pg_dump in an exported snapshot, streamed through
compression and encryption into the repository, with a manifest of exact row counts."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import threading
import time

from ..core import fsutil
from ..core import manifest as manifests
from ..core import pgconn
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pgtools import find_tool, tool_path
from ..core.pipeline import Pipeline, Stage

FORMATS = ("custom", "directory", "plain", "tar")
PG_DUMP_ERROR = r"(?m)^pg_dump(all)?: error:"


class LogicalBackupRequest(object):
    """Everything a logical backup needs; validated before anything is touched."""

    def __init__(self, database, repository, connection, fmt="custom", jobs=1, compression=None,
                 schemas=None, exclude_schemas=None, tables=None, exclude_tables=None, globals_=True,
                 encrypt_recipients=None, pg_bin_dir=None):
        if not database:
            raise PgBackupError("No database given.", hint="Set 'database' to the database to back up.")
        if fmt not in FORMATS:
            raise PgBackupError("Unknown format '%s'." % fmt, hint="Use one of: %s." % ", ".join(FORMATS))
        jobs = int(jobs or 1)
        if jobs < 1:
            raise PgBackupError("'jobs' must be 1 or more.")
        if jobs > 1 and fmt != "directory":
            raise PgBackupError("Parallel dump (jobs > 1) needs the directory format.",
                                hint="Set format: directory, or jobs: 1.")
        self.database = database
        self.repository = repository
        self.connection = connection
        self.format = fmt
        self.jobs = jobs
        self.compression = streams.parse_compression(compression)
        self.schemas = list(schemas or [])
        self.exclude_schemas = list(exclude_schemas or [])
        self.tables = list(tables or [])
        self.exclude_tables = list(exclude_tables or [])
        self.globals = bool(globals_)
        self.recipients = streams.validate_recipients(encrypt_recipients)
        self.pg_bin_dir = pg_bin_dir


def _selected_tables(conn, request):
    """The tables whose data this dump holds, resolved to exact names (errors on unknown ones)."""
    include_tables = pgconn.resolve_tables(conn, request.tables)
    exclude_tables = set(pgconn.resolve_tables(conn, request.exclude_tables))
    include_schemas = set(pgconn.existing_schemas(conn, request.schemas))
    exclude_schemas = set(request.exclude_schemas)
    tables = pgconn.user_tables(conn)
    if include_tables or include_schemas:
        tables = [t for t in tables if t in include_tables or t[0] in include_schemas]
    return [t for t in tables if t not in exclude_tables and t[0] not in exclude_schemas], include_tables, \
        exclude_tables, include_schemas


def _filter_args(include_tables, exclude_tables, include_schemas, exclude_schemas):
    args = []
    for schema, table in include_tables:
        args += ["-t", pgconn.dump_pattern(schema, table)]
    for schema, table in sorted(exclude_tables):
        args += ["-T", pgconn.dump_pattern(schema, table)]
    for schema in sorted(include_schemas):
        args += ["-n", pgconn.dump_pattern(schema)]
    for schema in sorted(exclude_schemas):
        args += ["-N", pgconn.dump_pattern(schema)]
    return args


def plan(request):
    """What a backup would do, for check mode: connects read-only, writes nothing."""
    conn = pgconn.connect(request.connection, request.database)
    try:
        info = pgconn.server_info(conn)
        tables = _selected_tables(conn, request)[0]
        size = pgconn.scalar(conn, "SELECT pg_database_size(current_database())")
    finally:
        conn.close()
    major = info["server_version_num"] // 10000
    pg_dump, version = find_tool("pg_dump", major, request.pg_bin_dir)
    streams.dump_plan(request.format, request.compression, bool(request.recipients), int(version.split(".")[0]))
    return {"database": request.database, "repository": request.repository.path, "format": request.format,
            "compression": request.compression, "encrypted": bool(request.recipients),
            "tables": [pgconn.table_key(*t) for t in tables], "database_size": size,
            "server_version": info["server_version"], "pg_dump": pg_dump}


def _stream_to_file(pipeline, path):
    """Write the pipeline's output to ``path`` while hashing it; returns (size, sha256)."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsutil.FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        for chunk in pipeline.stdout_chunks():
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return size, digest.hexdigest()


def _run_to_file(stages, env, path):
    pipeline = Pipeline(stages, env=env, capture_stdout=True).start()
    try:
        size, digest = _stream_to_file(pipeline, path)
    except BaseException:
        pipeline.kill()
        raise
    pipeline.wait()
    return size, digest


def _output_stages(request, external_method):
    stages = []
    if external_method:
        stages.append(streams.compress_stage(external_method, request.compression["level"]))
    if request.recipients:
        stages.append(streams.encrypt_stage(request.recipients))
    return stages


def _dump_globals(request, env, major, path):
    """pg_dumpall --globals-only (roles, tablespaces), compressed/encrypted like the dump."""
    pg_dumpall = tool_path("pg_dumpall", major, request.pg_bin_dir)
    conn = pgconn.connect(request.connection, request.database)
    try:
        superuser = pgconn.scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    finally:
        conn.close()
    argv = [pg_dumpall, "--globals-only"]
    if not superuser:
        argv.append("--no-role-passwords")  # a non-superuser may not read pg_authid
    method = request.compression["method"] if request.compression["method"] != "none" else None
    stages = [Stage(argv, name="pg_dumpall", error_pattern=PG_DUMP_ERROR)] + _output_stages(request, method)
    size, digest = _run_to_file(stages, env, path)
    return {"size": size, "sha256": digest, "compression": method, "role_passwords": bool(superuser)}


def backup(request):
    """Take the backup; returns its manifest. Nothing is published unless all steps succeed."""
    repo = request.repository
    started = manifests.utcnow()
    clock = time.monotonic()
    conn = pgconn.connect(request.connection, request.database)
    snapshot_conn = None
    temp_paths = []
    try:
        source = _inspect_source(conn, request)
        repo.prepare()
        backup_id = repo.unique_id("logical", request.database, started)
        suffix = streams.artifact_suffix(request.format, request.compression, source["applied"], bool(request.recipients))
        artifact_tmp = repo.temp_path(backup_id, suffix)
        temp_paths.append(artifact_tmp)

        # One REPEATABLE READ transaction exports the snapshot pg_dump uses and counts the
        # rows in it, so the manifest's counts are exactly what the dump holds.
        snapshot_conn = pgconn.connect(request.connection, request.database, autocommit=False)
        snapshot_conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        snapshot = pgconn.scalar(snapshot_conn, "SELECT pg_export_snapshot()")
        with pgconn.libpq_environment(request.connection) as env:
            env["PGDATABASE"] = request.database
            dumped = _dump(request, source, snapshot, snapshot_conn, env, artifact_tmp)
            dumped["objects"] = pgconn.table_objects(snapshot_conn, source["tables"])
            snapshot_conn.rollback()
            temp_files = {artifact_tmp: backup_id + suffix}
            extra_files = {}
            if request.globals:
                extra_files["globals"] = _globals_file(request, env, source["major"], backup_id, temp_paths, temp_files)
        if dumped["size"] == 0:
            raise PgBackupError("pg_dump produced an empty artifact.", hint="See the PostgreSQL server log.")
        manifest = _manifest(request, source, dumped, backup_id, backup_id + suffix, started, clock, snapshot, extra_files)
        repo.commit(manifest, temp_files)
        return manifest
    except OSError as exc:
        raise fsutil.describe_os_error(exc, repo.path)
    finally:
        for path in temp_paths:
            try:
                fsutil.remove_quietly(path)
            except OSError:
                pass
        if snapshot_conn is not None:
            snapshot_conn.close()
        conn.close()


def _inspect_source(conn, request):
    """What the backup needs to know of the server and database before it starts."""
    info = pgconn.server_info(conn)
    major = info["server_version_num"] // 10000
    tables, inc_tables, exc_tables, inc_schemas = _selected_tables(conn, request)
    pg_dump, pg_dump_version = find_tool("pg_dump", major, request.pg_bin_dir)
    native_args, external, applied = streams.dump_plan(request.format, request.compression, bool(request.recipients),
                                                       int(pg_dump_version.split(".")[0]))
    return {"info": info, "major": major, "tables": tables, "pg_dump": pg_dump, "pg_dump_version": pg_dump_version,
            "native_args": native_args, "external": external, "applied": applied,
            "filter_args": _filter_args(inc_tables, exc_tables, inc_schemas, request.exclude_schemas),
            "database_properties": pgconn.database_properties(conn, request.database),
            "database_size": pgconn.scalar(conn, "SELECT pg_database_size(current_database())")}


def _dump(request, source, snapshot, snapshot_conn, env, artifact_tmp):
    """Run pg_dump in ``snapshot`` into ``artifact_tmp`` while counting the rows of that snapshot;
    returns {"size", "sha256", "tables": {table key: rows}}."""
    argv = [source["pg_dump"], "-F", request.format[0], "--snapshot=%s" % snapshot] + source["native_args"]
    argv += source["filter_args"]
    if request.format == "directory":
        argv += ["-j", str(request.jobs), "-f", artifact_tmp, "--no-sync"]
        dump = Pipeline([Stage(argv, name="pg_dump", error_pattern=PG_DUMP_ERROR)], env=env).start()
        counts = pgconn.count_rows(snapshot_conn, source["tables"])
        dump.wait()
        return {"size": fsutil.artifact_size(artifact_tmp), "sha256": fsutil.sha256_tree(artifact_tmp), "tables": counts}
    stages = [Stage(argv, name="pg_dump", error_pattern=PG_DUMP_ERROR)] + _output_stages(request, source["external"])
    counter = _CountInBackground(snapshot_conn, source["tables"])
    size, digest = _run_to_file(stages, env, artifact_tmp)
    return {"size": size, "sha256": digest, "tables": counter.result()}


def _globals_file(request, env, major, backup_id, temp_paths, temp_files):
    """Dump the globals beside the artifact; returns their manifest entry (temp file registered)."""
    globals_suffix = ".globals.sql" + {"zstd": ".zst", "gzip": ".gz"}.get(
        request.compression["method"], "") + (".age" if request.recipients else "")
    globals_tmp = request.repository.temp_path(backup_id, globals_suffix)
    temp_paths.append(globals_tmp)
    entry = _dump_globals(request, env, major, globals_tmp)
    entry["artifact"] = backup_id + globals_suffix
    temp_files[globals_tmp] = entry["artifact"]
    return entry


def _manifest(request, source, dumped, backup_id, artifact, started, clock, snapshot, extra_files):
    info = source["info"]
    manifest = manifests.base_manifest("logical", request.database, backup_id, started)
    manifest.update({
        "artifact": artifact,
        "size": dumped["size"],
        "sha256": dumped["sha256"],
        "finished_at": manifests.isoformat(manifests.utcnow()),
        "duration_seconds": round(time.monotonic() - clock, 3),
        "format": request.format,
        "compression": dict(request.compression, applied=source["applied"]),
        "encryption": {"method": "age", "recipients": request.recipients} if request.recipients else None,
        "server_version": info["server_version"],
        "server_version_num": info["server_version_num"],
        "pg_dump_version": source["pg_dump_version"],
        "source": {"host": request.connection.host, "port": request.connection.port},
        "database_properties": source["database_properties"],
        "database_size": source["database_size"],
        "snapshot": snapshot,
        "selection": {"schemas": request.schemas, "exclude_schemas": request.exclude_schemas,
                      "tables": request.tables, "exclude_tables": request.exclude_tables},
        "tables": dumped["tables"],
        "objects": dumped["objects"],
        "extra_files": extra_files,
    })
    return manifest


class _CountInBackground(object):
    """Count rows while pg_dump streams: both read the same snapshot, on separate backends."""

    def __init__(self, conn, tables):
        self._result = {}
        self._error = []
        self._thread = threading.Thread(target=self._run, args=(conn, tables))
        self._thread.daemon = True
        self._thread.start()

    def _run(self, conn, tables):
        try:
            self._result = pgconn.count_rows(conn, tables)
        except Exception as exc:  # re-raised in the caller's thread
            self._error.append(exc)

    def result(self):
        self._thread.join()
        if self._error:
            raise PgBackupError("Counting rows in the dump's snapshot failed: %s" % self._error[0])
        return self._result
