# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a logical backup: whole (into a staging database swapped in only after its row counts
match the manifest) or per table (in one transaction that rolls back on any error), so a failed
restore never leaves the target half-changed. With build_indexes: after_swap the plain indexes are built,
and with validate_foreign_keys: after_swap the foreign keys are validated, once the restored database is
in place (and usable), see deferred_indexes and deferred_foreign_keys.

The entry point callers use (``LogicalRestoreRequest``, ``plan``, ``restore``); the work is done in
restore_request (the request and its checks), restore_full, restore_tables, restore_globals,
restore_steps (what the modes share), deferred_foreign_keys, deferred_indexes, staging (the staging database),
staging_owner and staging_leftovers (staging databases that restores which died left behind)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from . import restore_full
from . import restore_steps
from . import restore_tables
from . import staging_leftovers
from .deferred_foreign_keys import FailedAfterSwap, ForeignKeysNotValidated
from .deferred_indexes import IndexesNotBuilt
from .restore_globals import keep_own_password, restore_globals
from .restore_request import (MAX_AUTO_JOBS, LogicalRestoreRequest, check_foreign_key_validation, check_overwrite_allowed,
                              check_target_exists_for_tables, default_jobs, restores_in_place, select_backup, target_state)
from .staging import staging_name as _staging_name  # ops/verify.py drops a scratch database's staging copy
from ..core.errors import PgBackupError

__all__ = ["FailedAfterSwap", "ForeignKeysNotValidated", "IndexesNotBuilt", "LogicalRestoreRequest", "MAX_AUTO_JOBS",
           "default_jobs", "keep_own_password", "plan", "restore", "_staging_name"]


def plan(request):
    """What a restore would do (check mode): verifies the backup, inspects the target."""
    manifest = select_backup(request)
    info, exists, tables = target_state(request)
    check_programs(request, manifest, info)
    mode = "tables" if request.tables else "full"
    if mode == "full":
        check_overwrite_allowed(request, exists, tables)
        check_foreign_key_validation(request, manifest, exists, tables)
    else:
        restore_tables.pick_tables(manifest, request.tables)
        check_target_exists_for_tables(request, exists)
    return {"backup": manifest, "mode": mode, "target_exists": exists, "target_tables": len(tables)}


def check_programs(request, manifest, info):
    """The target's major version, once a pg_restore that can read the archive is known to be there (before
    anything changes: a pg_restore older than the pg_dump that wrote it fails naming both versions)."""
    major = info["server_version_num"] // 10000
    if manifest.get("format") != "plain":
        restore_steps.pg_restore_path(request, major)
    return major


def restore(request):
    started = time.monotonic()
    manifest = select_backup(request)
    info, exists, tables = target_state(request)
    major = check_programs(request, manifest, info)
    if request.tables:
        if manifest.get("format") == "plain":
            raise PgBackupError("A plain-format backup can only be restored whole.",
                                hint="Use the custom format for backups you may need table by table.")
        check_target_exists_for_tables(request, exists)
        result = restore_tables.restore_tables(request, manifest, major)
        committed = round(time.monotonic() - started, 3)  # the rows and their checks, in one transaction
        result.update(usable_after_seconds=committed, checks_finished_after_seconds=committed)
    else:
        check_overwrite_allowed(request, exists, tables)
        check_foreign_key_validation(request, manifest, exists, tables)
        leftovers = staging_leftovers.drop_leftovers(request.connection, request.maintenance_db, request.database)
        if request.globals:
            restore_globals(request, manifest, major)
        if restores_in_place(request, exists, tables):
            result = restore_full.restore_over_existing(request, manifest, major, started)
        else:
            result = restore_full.restore_via_staging(request, manifest, major, exists, started)
        result.update(leftovers)
    result.update({"backup_id": manifest["id"], "database": request.database,
                   "duration_seconds": round(time.monotonic() - started, 3)})
    return result
