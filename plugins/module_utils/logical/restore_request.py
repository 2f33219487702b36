# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a logical restore is asked to do, and the checks made before anything changes: the
request's values, the backup it selects, the state of the target and the sessions' settings."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from . import deferred_foreign_keys
from ..core import pgconn
from ..core.errors import PgBackupError

MAX_AUTO_JOBS = 8
DEFAULT_MAINTENANCE_WORK_MEM = "256MB"
# How the restore sessions compress the values PostgreSQL TOASTs (default_toast_compression):
# auto is lz4 when the server has it (PostgreSQL 14+ built with lz4), else the server's setting.
TOAST_COMPRESSION_CHOICES = ("auto", "lz4", "pglz", "server")
DEFAULT_TOAST_COMPRESSION = "auto"
MEMORY_SETTING = re.compile(r"^[0-9]+(kB|MB|GB|TB)?$")


class LogicalRestoreRequest(object):
    def __init__(self, repository, connection, database=None, backup="latest", source_database=None,
                 tables=None, clean=False, force=False, jobs=1, globals_=False, identity_file=None,
                 no_owner=False, maintenance_db="postgres", work_dir=None, pg_bin_dir=None,
                 maintenance_work_mem=DEFAULT_MAINTENANCE_WORK_MEM, toast_compression=DEFAULT_TOAST_COMPRESSION,
                 validate_foreign_keys=deferred_foreign_keys.DURING, build_indexes=deferred_foreign_keys.DURING):
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
        self.validate_foreign_keys = _when("validate_foreign_keys", validate_foreign_keys)
        self.build_indexes = _when("build_indexes", build_indexes)
        self.session_settings = {}  # set by target_state() once the server is known
        self.globals = bool(globals_)
        self.identity_file = identity_file
        self.no_owner = bool(no_owner)
        self.maintenance_db = maintenance_db or "postgres"
        self.work_dir = work_dir
        self.pg_bin_dir = pg_bin_dir
        self.written_by = None  # (program, version) that wrote the archive: set by select_backup


def _when(option, value):
    value = value or deferred_foreign_keys.DURING
    if value not in deferred_foreign_keys.CHOICES:
        raise PgBackupError("%s must be one of %s, not '%s'." % (option, ", ".join(deferred_foreign_keys.CHOICES), value))
    return value


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
    # pg_restore must be at least as new as the pg_dump that wrote the archive (core/pgtools.py chooses)
    request.written_by = ("pg_dump", manifest["pg_dump_version"]) if manifest.get("pg_dump_version") else None
    return manifest


def target_state(request):
    """(server info, whether the target exists, its user tables); also fixes the sessions' settings."""
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


def check_overwrite_allowed(request, exists, tables):
    if exists and tables and not request.force:
        raise PgBackupError(
            "Target database '%s' already holds %d table(s); refusing to overwrite it." % (request.database, len(tables)),
            hint="Set force: true to replace it (with clean: true it is dropped and recreated), "
                 "or restore into another database name.")


def check_target_exists_for_tables(request, exists):
    if not exists:
        raise PgBackupError("Target database '%s' does not exist; a per-table restore needs it." % request.database,
                            hint="Restore the whole backup first, or name an existing database.")


def restores_in_place(request, exists, tables):
    """force without clean over a database that holds tables: no staging database, one transaction."""
    return bool(exists and tables and not request.clean)


def check_foreign_key_validation(request, manifest, exists, tables):
    """validate_foreign_keys or build_indexes: after_swap needs a staging database to swap in and a table of contents."""
    for option in ("validate_foreign_keys", "build_indexes"):
        if getattr(request, option) != deferred_foreign_keys.AFTER_SWAP:
            continue
        what = "foreign keys" if option == "validate_foreign_keys" else "indexes"
        if manifest.get("format") == "plain":
            raise PgBackupError("%s: after_swap cannot defer the %s of a plain-format backup (one SQL script)."
                                % (option, what), hint="Restore it with %s: during." % option)
        if restores_in_place(request, exists, tables):
            raise PgBackupError("%s: after_swap needs a staging database to swap in, and force without clean restores "
                                "in place, in one transaction." % option, hint="Set clean: true, or %s: during." % option)
