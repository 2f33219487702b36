# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a logical backup: whole (into a staging database swapped in only after its
row counts match the manifest) or per table (in one transaction that rolls back on any
error), so a failed restore never leaves the target half-changed."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import tempfile
import time

from . import parallel_restore
from ..core import pgconn
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pgtools import tool_path
from ..core.pipeline import Pipeline, Stage

PG_RESTORE_ERROR = r"(?m)^pg_restore: error:"
PSQL_ERROR = r"(?m)^(psql:.*)?ERROR:"
MAX_AUTO_JOBS = 8
DEFAULT_MAINTENANCE_WORK_MEM = "256MB"
# How the restore sessions compress the values PostgreSQL TOASTs (default_toast_compression):
# auto is lz4 when the server has it (PostgreSQL 14+ built with lz4), else the server's setting.
TOAST_COMPRESSION_CHOICES = ("auto", "lz4", "pglz", "server")
DEFAULT_TOAST_COMPRESSION = "auto"
MEMORY_SETTING = re.compile(r"^[0-9]+(kB|MB|GB|TB)?$")
TOC_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
# TOC entries whose data is not a COPY: an archive with them is restored serially by pg_restore.
LARGE_OBJECT_ENTRIES = ("BLOBS ", "BLOB ", "LARGE OBJECT ", "BLOB METADATA ")


class LogicalRestoreRequest(object):
    def __init__(self, repository, connection, database=None, backup="latest", source_database=None,
                 tables=None, clean=False, force=False, jobs=1, globals_=False, identity_file=None,
                 no_owner=False, maintenance_db="postgres", work_dir=None, pg_bin_dir=None,
                 maintenance_work_mem=DEFAULT_MAINTENANCE_WORK_MEM, toast_compression=DEFAULT_TOAST_COMPRESSION):
        if not database and not source_database:
            raise PgBackupError("No target database given.", hint="Set 'database' (and 'source_database' if it differs).")
        self.repository = repository
        self.connection = connection
        self.database = database or source_database
        self.source_database = source_database or database
        self.backup = backup or "latest"
        self.tables = list(tables or [])
        self.clean = bool(clean)
        self.force = bool(force)
        if int(jobs or 0) < 0:
            raise PgBackupError("jobs must be 0 (one per CPU) or a positive number, not %s." % jobs)
        self.jobs = int(jobs) if jobs else default_jobs()
        self.maintenance_work_mem = _memory_setting(maintenance_work_mem)
        self.toast_compression = toast_compression or DEFAULT_TOAST_COMPRESSION
        if self.toast_compression not in TOAST_COMPRESSION_CHOICES:
            raise PgBackupError("toast_compression must be one of %s, not '%s'."
                                % (", ".join(TOAST_COMPRESSION_CHOICES), toast_compression))
        self.session_settings = {}  # set by _target_state() once the server is known
        self.globals = bool(globals_)
        self.identity_file = identity_file
        self.no_owner = bool(no_owner)
        self.maintenance_db = maintenance_db or "postgres"
        self.work_dir = work_dir
        self.pg_bin_dir = pg_bin_dir


def _memory_setting(value):
    value = (value or "").strip()
    if value and not MEMORY_SETTING.match(value):
        raise PgBackupError("maintenance_work_mem '%s' is not a PostgreSQL memory setting." % value,
                            hint="Use a number with kB, MB, GB or TB, for example 256MB, or '' for the server's setting.")
    return value


def default_jobs():
    """jobs: 0 (auto): one connection per CPU of this host, at most MAX_AUTO_JOBS."""
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_JOBS))


def select_backup(request):
    """The manifest to restore, its checksum verified before anything else happens."""
    manifest = request.repository.resolve(request.backup, database=request.source_database, kind="logical")
    if request.backup != "latest":
        request.repository.verify_checksum(manifest)
    return manifest


def _target_state(request):
    conn = pgconn.connect(request.connection, request.maintenance_db)
    try:
        info = pgconn.server_info(conn)
        exists = pgconn.database_exists(conn, request.database)
        request.session_settings = _session_settings(request, conn)
    finally:
        conn.close()
    tables = []
    if exists:
        target = pgconn.connect(request.connection, request.database)
        try:
            tables = pgconn.user_tables(target)
        finally:
            target.close()
    return info, exists, tables


def _session_settings(request, conn):
    """Settings of every session that writes the restored data (-c options for pg_restore and psql)."""
    wanted = request.toast_compression
    if wanted == "server":
        return {}
    # None before PostgreSQL 14, which compresses with pglz only and has no such setting.
    methods = pgconn.scalar(conn, "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    if wanted == "auto":
        wanted = "lz4" if methods and "lz4" in methods else None
    elif wanted not in (methods or ["pglz"]):
        raise PgBackupError("This server cannot compress TOAST values with %s (it offers: %s)."
                            % (wanted, ", ".join(methods or ["pglz, not settable"])),
                            hint="Set toast_compression: auto or server.")
    return {"default_toast_compression": wanted} if wanted and methods else {}


def with_settings(env, settings):
    """``env`` whose PGOPTIONS also sets ``settings`` ({name: value}) in the sessions libpq opens."""
    options = " ".join("-c %s=%s" % (name, value) for name, value in sorted(settings.items()) if value)
    if not options:
        return env
    return dict(env, PGOPTIONS=("%s %s" % (env.get("PGOPTIONS", ""), options)).strip())


def plan(request):
    """What a restore would do (check mode): verifies the backup, inspects the target."""
    manifest = select_backup(request)
    info, exists, tables = _target_state(request)
    mode = "tables" if request.tables else "full"
    if mode == "full":
        _check_overwrite_allowed(request, exists, tables)
    else:
        _pick_tables(manifest, request.tables)
        if not exists:
            raise PgBackupError("Target database '%s' does not exist; a per-table restore needs it." % request.database,
                                hint="Restore the whole backup first, or name an existing database.")
    return {"backup": manifest, "mode": mode, "target_exists": exists, "target_tables": len(tables)}


def _check_overwrite_allowed(request, exists, tables):
    if exists and tables and not request.force:
        raise PgBackupError(
            "Target database '%s' already holds %d table(s); refusing to overwrite it." % (request.database, len(tables)),
            hint="Set force: true to replace it (with clean: true it is dropped and recreated), "
                 "or restore into another database name.")


def restore(request):
    started = time.monotonic()
    manifest = select_backup(request)
    info, exists, tables = _target_state(request)
    major = info["server_version_num"] // 10000
    if request.tables:
        if manifest.get("format") == "plain":
            raise PgBackupError("A plain-format backup can only be restored whole.",
                                hint="Use the custom format for backups you may need table by table.")
        if not exists:
            raise PgBackupError("Target database '%s' does not exist; a per-table restore needs it." % request.database,
                                hint="Restore the whole backup first, or name an existing database.")
        result = _restore_tables(request, manifest, major)
    else:
        _check_overwrite_allowed(request, exists, tables)
        if request.globals:
            _restore_globals(request, manifest, major)
        if exists and tables and not request.clean:
            result = _restore_over_existing(request, manifest, major)
        else:
            result = _restore_via_staging(request, manifest, major, exists)
    result.update({"backup_id": manifest["id"], "database": request.database,
                   "duration_seconds": round(time.monotonic() - started, 3)})
    return result


# Helpers shared by the restore modes


def _decoded_input(request, manifest):
    """(stages, stdin) that yield the archive pg_dump wrote, or a path pg_restore can read."""
    path = request.repository.artifact_path(manifest)
    stages = streams.read_stages(manifest, request.identity_file)
    return stages, path


def _holds_large_objects(toc_text):
    return any(match and match.group(4).startswith(LARGE_OBJECT_ENTRIES)
               for match in map(TOC_LINE.match, toc_text.splitlines()))


def _finish(pipeline):
    """Wait for a started pipeline; a failed decryption is explained as such."""
    try:
        pipeline.wait()
    except PgBackupError as exc:
        raise streams.explain_decrypt_failure(exc)


def _run(stages, env, stdin=None):
    try:
        return Pipeline(stages, env=env, stdin=stdin).run()
    except PgBackupError as exc:
        raise streams.explain_decrypt_failure(exc)


def _psql(request, major, dbname, extra=()):
    psql = tool_path("psql", major, request.pg_bin_dir)
    return [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-d", _conninfo(dbname)] + list(extra)


def _conninfo(dbname):
    """A libpq connection string naming only the database (host/user come from the env)."""
    return "dbname='%s'" % dbname.replace("\\", "\\\\").replace("'", "\\'")


def _restore_globals(request, manifest, major):
    entry = (manifest.get("extra_files") or {}).get("globals")
    if not entry:
        raise PgBackupError("Backup '%s' holds no globals (roles, tablespaces)." % manifest["id"],
                            hint="Set globals: false, or use a backup taken with globals: true.")
    stages = []
    if manifest.get("encryption"):
        stages.append(streams.decrypt_stage(request.identity_file))
    if entry.get("compression"):
        stages.append(streams.decompress_stage(entry["compression"]))
    path = os.path.join(request.repository.path, entry["artifact"])
    psql = tool_path("psql", major, request.pg_bin_dir)
    conn = pgconn.connect(request.connection, request.maintenance_db)
    try:
        connecting_role = pgconn.scalar(conn, "SELECT current_user")
    finally:
        conn.close()
    # Without ON_ERROR_STOP: roles that already exist make CREATE ROLE fail, and that is fine.
    argv = [psql, "-X", "-q", "--no-psqlrc", "-d", _conninfo(request.maintenance_db)]
    with pgconn.libpq_environment(request.connection) as env:
        script = _decode_small_file(stages, path, env)
        script = keep_own_password(script, connecting_role)
        stderr = _run([Stage(argv, name="psql")], env, stdin=iter([script.encode("utf-8")]))[-1]
    errors = [line for line in stderr.splitlines() if "ERROR:" in line and "already exists" not in line]
    if errors:
        raise PgBackupError("Restoring globals failed: %s" % "; ".join(errors[:5]))


def _decode_small_file(stages, path, env):
    if not stages:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    pipeline = Pipeline(stages, env=env, stdin=path, capture_stdout=True).start()
    data = b"".join(pipeline.stdout_chunks())
    _finish(pipeline)
    return data.decode("utf-8")


def keep_own_password(script, role):
    """Drop the PASSWORD clause that would reset the role this restore is logged in as: the
    old server's password would lock the running restore (and its operator) out."""
    names = [re.escape(role), re.escape('"%s"' % role.replace('"', '""'))]
    pattern = re.compile(r"^(ALTER ROLE (?:%s) WITH .*?) PASSWORD '(?:[^']|'')*'" % "|".join(names), re.MULTILINE)
    return pattern.sub(r"\1", script)


def _verify_counts(conn, expected):
    actual = pgconn.count_rows(conn, [pgconn.split_table_key(key) for key in expected])
    wrong = ["%s: %d rows, backup has %d" % (key, actual[key], expected[key])
             for key in sorted(expected) if actual[key] != expected[key]]
    if wrong:
        raise PgBackupError("Row counts after restore do not match the backup: %s." % "; ".join(wrong),
                            hint="The restored data is incomplete; the target was left as it was.")
    return actual


# Whole-database restore


def _restore_via_staging(request, manifest, major, target_exists):
    """Restore into a new database, check it, then put it in place of the target."""
    staging = _staging_name(request.database)
    admin = pgconn.connect(request.connection, request.maintenance_db)
    try:
        _create_database(admin, staging, manifest)
        try:
            connections = _load_archive(request, manifest, major, staging)
            conn = pgconn.connect(request.connection, staging)
            try:
                counts = _verify_counts(conn, manifest["tables"])
            finally:
                conn.close()
            _swap_in(admin, staging, request.database, target_exists, request.force)
        except BaseException:
            _drop_database(admin, staging, force=True)
            raise
    finally:
        admin.close()
    return {"mode": "full", "tables": counts, "restored_tables": sorted(counts), "changed": True,
            "connections": connections}


def _staging_name(database):
    suffix = "__restore_%d" % os.getpid()
    return database[:63 - len(suffix)] + suffix


def _create_database(admin, name, manifest):
    props = manifest.get("database_properties") or {}
    statement = pgconn.sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(pgconn.sql.Identifier(name))
    options = []
    if props.get("encoding"):
        options.append(pgconn.sql.SQL("ENCODING {}").format(pgconn.sql.Literal(props["encoding"])))
    if props.get("lc_collate"):
        options.append(pgconn.sql.SQL("LC_COLLATE {} LC_CTYPE {}").format(
            pgconn.sql.Literal(props["lc_collate"]), pgconn.sql.Literal(props["lc_ctype"])))
    owner = props.get("owner")
    if owner and pgconn.scalar(admin, "SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)):
        options.append(pgconn.sql.SQL("OWNER {}").format(pgconn.sql.Identifier(owner)))
    try:
        pgconn.query(admin, pgconn.sql.SQL(" ").join([statement] + options))
    except pgconn.psycopg2.Error as exc:
        raise PgBackupError("Cannot create database '%s': %s" % (name, str(exc).strip()))


def _drop_database(admin, name, force):
    statement = pgconn.sql.SQL("DROP DATABASE IF EXISTS {}{}").format(
        pgconn.sql.Identifier(name), pgconn.sql.SQL(" WITH (FORCE)" if force else ""))
    pgconn.query(admin, statement)


def _wait_until_unused(admin, name, timeout_seconds=5.0):
    """Wait for the backends of our closed connections to ``name`` to exit: ALTER DATABASE RENAME
    would otherwise find one still there and sleep 100 ms before looking again."""
    deadline = time.monotonic() + timeout_seconds
    while pgconn.scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)):
        if time.monotonic() > deadline:
            return  # the rename waits (and explains) itself
        time.sleep(0.005)


def _swap_in(admin, staging, target, target_exists, force):
    ident = pgconn.sql.Identifier
    _wait_until_unused(admin, staging)
    if not target_exists:
        pgconn.query(admin, pgconn.sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(staging), ident(target)))
        return
    others = pgconn.scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                           (target,))
    if others and not force:
        raise PgBackupError("Database '%s' has %s open connection(s); cannot replace it." % (target, others),
                            hint="Stop the application first (the seed's 'systemctl stop todoapi'), or set force: true "
                                 "to disconnect them.")
    previous = _staging_name(target).replace("__restore_", "__previous_")
    if others:
        pgconn.query(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                            "AND pid <> pg_backend_pid()", (target,))
    pgconn.query(admin, pgconn.sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(target), ident(previous)))
    try:
        pgconn.query(admin, pgconn.sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(staging), ident(target)))
    except BaseException:
        pgconn.query(admin, pgconn.sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(previous), ident(target)))
        raise
    _drop_database(admin, previous, force=True)


def _pg_restore_argv(request, major, dbname, extra=()):
    pg_restore = tool_path("pg_restore", major, request.pg_bin_dir)
    argv = [pg_restore, "--exit-on-error", "-d", _conninfo(dbname)]
    if request.no_owner:
        argv += ["--no-owner"]
    return argv + list(extra)


def _load_archive(request, manifest, major, dbname, extra=()):
    """Restore the archive into ``dbname``; returns how many connections loaded it."""
    stages, path = _decoded_input(request, manifest)
    fmt = manifest.get("format", "custom")
    # pg_restore refuses -j with --single-transaction: an in-place restore stays one transaction, run serially.
    jobs = 1 if "--single-transaction" in extra else request.jobs
    with pgconn.libpq_environment(request.connection) as env:
        env = with_settings(env, request.session_settings)
        if fmt == "plain":
            _run(stages + [Stage(_psql(request, major, dbname, ["--single-transaction"]), name="psql",
                                 error_pattern=PSQL_ERROR)], env, stdin=path)
            return 1
        if fmt == "directory":
            argv = _pg_restore_argv(request, major, dbname, ["-j", str(jobs)] + list(extra) + [path])
            _run([Stage(argv, name="pg_restore", error_pattern=PG_RESTORE_ERROR)], env)
            return jobs
        if jobs > 1 and fmt == "custom":
            return _parallel_custom_restore(request, manifest, stages, path, env, major, dbname)
        _serial_custom_restore(request, stages, path, env, major, dbname, extra)
        return 1


def _serial_custom_restore(request, stages, path, env, major, dbname, extra=()):
    argv = _pg_restore_argv(request, major, dbname, extra)
    if not stages:
        _run([Stage(argv + [path], name="pg_restore", error_pattern=PG_RESTORE_ERROR)], env)
    else:
        _run(stages + [Stage(argv, name="pg_restore", error_pattern=PG_RESTORE_ERROR)], env, stdin=path)


def _parallel_custom_restore(request, manifest, stages, path, env, major, dbname):
    """Whole restore into an empty database over ``jobs`` connections (see parallel_restore)."""
    pg_restore = tool_path("pg_restore", major, request.pg_bin_dir)
    prefix = None
    try:
        if stages:
            try:
                prefix, listing = parallel_restore.write_toc_prefix(stages, path, env, pg_restore, request.work_dir)
            except PgBackupError as exc:
                raise streams.explain_decrypt_failure(exc)
        else:
            listing = _list_archive(request, manifest, major, env)
        if _holds_large_objects(listing):
            _serial_custom_restore(request, stages, path, env, major, dbname)
            return 1
        toc_file = prefix or path
        _run([Stage(_pg_restore_argv(request, major, dbname, ["--section=pre-data", toc_file]),
                    name="pg_restore (pre-data)", error_pattern=PG_RESTORE_ERROR)], env)

        def connect():
            return pgconn.connect(request.connection, dbname)

        with parallel_restore.autovacuum_paused(connect):
            script = Pipeline(stages + [Stage([pg_restore, "--section=data", "-f", "-"] + ([] if stages else [path]),
                                              name="pg_restore (data)", error_pattern=PG_RESTORE_ERROR)],
                              env=env, stdin=path if stages else None, capture_stdout=True).start()
            try:
                parallel_restore.load_data_section(script.stdout_chunks(), connect, request.jobs,
                                                   settings=request.session_settings)
            except parallel_restore.StreamEndedEarly:
                _finish(script)  # its processes have exited: their error is the real one
                raise
            except BaseException:
                script.kill()
                script.wait_quietly()
                raise
            _finish(script)
            post_env = with_settings(env, {"maintenance_work_mem": request.maintenance_work_mem})
            _run([Stage(_pg_restore_argv(request, major, dbname,
                                         ["--section=post-data", "-j", str(request.jobs), toc_file]),
                        name="pg_restore (post-data)", error_pattern=PG_RESTORE_ERROR)], post_env)
        return request.jobs
    finally:
        if prefix:
            os.unlink(prefix)


def _restore_over_existing(request, manifest, major):
    """force without clean: replace the backup's objects in place, in one transaction."""
    connections = _load_archive(request, manifest, major, request.database,
                                ["--clean", "--if-exists", "--single-transaction"])
    conn = pgconn.connect(request.connection, request.database)
    try:
        counts = _verify_counts(conn, manifest["tables"])
    finally:
        conn.close()
    return {"mode": "full", "tables": counts, "restored_tables": sorted(counts), "changed": True,
            "connections": connections}


# Per-table restore


def _pick_tables(manifest, names):
    """Map user-given names ('Todos' or 'public.Todos') to the backup's table keys."""
    keys = list(manifest.get("tables") or {})
    picked, missing = [], []
    for name in names:
        if name in keys:
            picked.append(name)
            continue
        matches = [key for key in keys if pgconn.split_table_key(key)[1] == name]
        if len(matches) == 1:
            picked.append(matches[0])
        elif matches:
            raise PgBackupError("Table name '%s' is ambiguous in backup '%s': %s." % (name, manifest["id"], ", ".join(matches)),
                                hint="Qualify it with its schema.")
        else:
            missing.append(name)
    if missing:
        raise PgBackupError("Backup '%s' holds no table named %s." % (manifest["id"], ", ".join(repr(m) for m in missing)),
                            hint="Names are case-sensitive; the backup's tables are: %s." % ", ".join(sorted(keys)))
    return sorted(set(picked))


def _quoted(name):
    return '"%s"' % name.replace('"', '""')


def _toc_selection(toc_text, manifest, present, missing):
    """The pg_restore list lines to restore: data (and sequence values) of tables that exist
    in the target, everything (definition, data, indexes, constraints, triggers, grants,
    comments, and foreign keys pointing at it) of tables that do not."""
    objects = manifest.get("objects") or {}
    data_oids, all_oids, seq_names, full_names = set(), set(), set(), set()
    for key in present + missing:
        entry = objects.get(key)
        if entry is None:
            raise PgBackupError("Backup '%s' does not record the objects of '%s' (made by an older version)." % (
                manifest["id"], key), hint="Restore the whole backup into a new database instead.")
        schema, table = pgconn.split_table_key(key)
        data_oids.add(entry["oids"][0])
        for seq_schema, seq in entry["sequences"]:
            seq_names.add((seq_schema, seq))
        if key in missing:
            all_oids.update(entry["oids"])
            all_oids.update(ref["oid"] for ref in entry["referenced_by"])
            full_names.add((schema, table))
    selected = []
    for line in toc_text.splitlines():
        match = TOC_LINE.match(line)
        if not match:
            continue
        objid, rest = int(match.group(3)), match.group(4)
        if rest.startswith("TABLE DATA ") and objid in data_oids:
            selected.append(line)
        elif objid and objid in all_oids:
            selected.append(line)
        elif any(rest.startswith("SEQUENCE SET %s %s " % s) for s in seq_names):
            selected.append(line)
        elif any(_is_dependent_entry(rest, schema, table) for schema, table in full_names) or \
                any(_is_sequence_entry(rest, schema, seq) for schema, seq in seq_names
                    if _owner_missing(schema, seq, manifest, missing)):
            selected.append(line)
    return selected


def _owner_missing(seq_schema, seq, manifest, missing):
    for key in missing:
        if [seq_schema, seq] in (manifest["objects"][key]["sequences"]):
            return True
    return False


def _is_dependent_entry(rest, schema, table):
    for form in (table, _quoted(table)):
        for kind in ("COMMENT", "ACL", "SECURITY LABEL"):
            if rest.startswith("%s %s TABLE %s " % (kind, schema, form)) or \
                    rest.startswith("%s %s COLUMN %s." % (kind, schema, form)):
                return True
    return False


def _is_sequence_entry(rest, schema, seq):
    if rest.startswith("SEQUENCE OWNED BY %s %s " % (schema, seq)):
        return True
    for form in (seq, _quoted(seq)):
        for kind in ("COMMENT", "ACL"):
            if rest.startswith("%s %s SEQUENCE %s " % (kind, schema, form)):
                return True
    return False


def _list_archive(request, manifest, major, env):
    stages, path = _decoded_input(request, manifest)
    pg_restore = tool_path("pg_restore", major, request.pg_bin_dir)
    if manifest.get("format") == "directory" or not stages:
        pipeline = Pipeline([Stage([pg_restore, "-l", path], name="pg_restore")], env=env, capture_stdout=True)
    else:
        pipeline = Pipeline(stages + [Stage([pg_restore, "-l"], name="pg_restore")], env=env, stdin=path,
                            capture_stdout=True, tolerate_sigpipe=True)
    pipeline.start()
    text = b"".join(pipeline.stdout_chunks()).decode("utf-8", "replace")
    _finish(pipeline)
    return text


FK_SQL = """
SELECT c.conname, cn.nspname, cr.relname, pn.nspname, pr.relname,
       ARRAY(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
       ARRAY(SELECT attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
  FROM pg_constraint c
  JOIN pg_class cr ON cr.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cr.relnamespace
  JOIN pg_class pr ON pr.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pr.relnamespace
 WHERE c.contype = 'f'
"""


def _foreign_keys(conn):
    """Every foreign key as (name, child key, parent key, child columns, parent columns)."""
    return [(row[0], pgconn.table_key(row[1], row[2]), pgconn.table_key(row[3], row[4]), row[5], row[6])
            for row in pgconn.query(conn, FK_SQL)]


def _fk_checks(conn, foreign_keys, keys):
    """(probe SQL, message) per foreign key touching ``keys``: the probe finds a violating row."""
    ident, text = pgconn.sql.Identifier, pgconn.sql.SQL
    checks = []
    for name, child, parent, child_cols, parent_cols in foreign_keys:
        if child not in keys and parent not in keys:
            continue
        not_null = text(" AND ").join(text("c.{} IS NOT NULL").format(ident(col)) for col in child_cols)
        join = text(" AND ").join(text("p.{} = c.{}").format(ident(p), ident(c)) for p, c in zip(parent_cols, child_cols))
        probe = text("SELECT 1 FROM ONLY {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM ONLY {} p WHERE {})").format(
            pgconn.qualified(*pgconn.split_table_key(child)), not_null,
            pgconn.qualified(*pgconn.split_table_key(parent)), join).as_string(conn)
        checks.append((probe, "foreign key %s (%s -> %s) would be violated by the restored rows" % (name, child, parent)))
    return checks


def _dollar_quote(text):
    tag = "chk"
    while "$%s$" % tag in text:
        tag += "x"
    return "$%s$%s$%s$" % (tag, text, tag)


def _restore_tables(request, manifest, major):
    keys = _pick_tables(manifest, request.tables)
    conn = pgconn.connect(request.connection, request.database)
    try:
        existing = set(pgconn.table_key(*t) for t in pgconn.user_tables(conn))
        present = [k for k in keys if k in existing]
        missing = [k for k in keys if k not in existing]
        prologue, epilogue = _table_restore_wrapping(conn, manifest, keys, present)
    finally:
        conn.close()
    with pgconn.libpq_environment(request.connection) as env:
        toc = _list_archive(request, manifest, major, env)
        selection = _toc_selection(toc, manifest, present, missing)
        handle, listfile = tempfile.mkstemp(prefix="pgbackup-toc-", suffix=".list")
        try:
            with os.fdopen(handle, "w") as out:
                out.write("\n".join(selection) + "\n")
            _stream_script(request, manifest, major, with_settings(env, request.session_settings), listfile,
                           prologue, epilogue)
        finally:
            os.unlink(listfile)
    conn = pgconn.connect(request.connection, request.database)
    try:
        counts = pgconn.count_rows(conn, [pgconn.split_table_key(k) for k in keys])
    finally:
        conn.close()
    return {"mode": "tables", "tables": counts, "restored_tables": keys, "recreated_tables": missing, "changed": True}


def _table_restore_wrapping(conn, manifest, keys, present):
    """SQL around pg_restore's output: empty the present tables first; afterwards check
    every foreign key touching them and each table's row count, then COMMIT."""
    def quoted(key):
        return pgconn.qualified(*pgconn.split_table_key(key)).as_string(conn)

    foreign_keys = _foreign_keys(conn)
    prologue = ["BEGIN;"]
    if present:
        # Replace rows without firing FK triggers; the checks below prove integrity instead.
        # TRUNCATE refuses a table that other (not restored) tables reference: DELETE those.
        referenced = set(fk[2] for fk in foreign_keys if fk[1] not in present)
        prologue.append("SET LOCAL session_replication_role = replica;")
        truncatable = [quoted(key) for key in present if key not in referenced]
        if truncatable:  # one statement: tables referencing each other must be truncated together
            prologue.append("TRUNCATE ONLY " + ", ".join(truncatable) + ";")
        for key in present:
            if key in referenced:
                prologue.append("DELETE FROM ONLY " + quoted(key) + ";")
    epilogue = ["SET LOCAL session_replication_role = origin;"]
    for probe, message in _fk_checks(conn, foreign_keys, set(present)):
        body = "BEGIN IF EXISTS (" + probe + ") THEN RAISE EXCEPTION '%', " + _sql_literal(message) + "; END IF; END"
        epilogue.append("DO " + _dollar_quote(body) + ";")
    for key in keys:
        expected = int(manifest["tables"][key])
        body = ("DECLARE n bigint; BEGIN SELECT count(*) INTO n FROM ONLY " + quoted(key) + "; IF n <> " + str(expected)
                + " THEN RAISE EXCEPTION 'row count mismatch for %: % rows restored, backup has " + str(expected)
                + "', " + _sql_literal(key) + ", n; END IF; END")
        epilogue.append("DO " + _dollar_quote(body) + ";")
    epilogue.append("COMMIT;")
    return prologue, epilogue


def _sql_literal(text):
    return "'%s'" % text.replace("'", "''")


def _stream_script(request, manifest, major, env, listfile, prologue, epilogue):
    """psql runs prologue + pg_restore's script for the selected entries + epilogue as one
    transaction. The epilogue (with COMMIT) is sent only if pg_restore and its decoders
    succeeded; otherwise psql sees end of input inside the transaction and rolls back."""
    stages, path = _decoded_input(request, manifest)
    pg_restore = tool_path("pg_restore", major, request.pg_bin_dir)
    argv = [pg_restore, "-f", "-", "-L", listfile]
    if request.no_owner:
        argv.append("--no-owner")
    if manifest.get("format") == "directory" or not stages:
        producer = Pipeline([Stage(argv + [path], name="pg_restore", error_pattern=PG_RESTORE_ERROR)], env=env,
                            capture_stdout=True)
    else:
        producer = Pipeline(stages + [Stage(argv, name="pg_restore", error_pattern=PG_RESTORE_ERROR)], env=env,
                            stdin=path, capture_stdout=True, tolerate_sigpipe=True)

    def script():
        yield ("\n".join(prologue) + "\n").encode("utf-8")
        yield from producer.stdout_chunks()
        producer.wait()
        yield ("\n" + "\n".join(epilogue) + "\n").encode("utf-8")

    consumer = Pipeline([Stage(_psql(request, major, request.database), name="psql", error_pattern=PSQL_ERROR)],
                        env=env, stdin=script())
    producer.start()
    try:
        consumer.run()
    except PgBackupError as exc:
        producer.kill()
        producer.wait_quietly()
        raise streams.explain_decrypt_failure(exc)
