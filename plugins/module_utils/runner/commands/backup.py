# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup backup``: back up every configured database into the first repository, then
copy each backup to the other repositories. When the first repository is remote, each backup is
taken into a local scratch repository, copied to every repository and removed there. One database
failing does not stop the others; the run then exits 1."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ...logical import backup as logical_backup
from ...storage import transfer
from .. import repositories, workspace
from ..connection import connection_spec
from ..eventlog import as_error, human_size
from ..program import EXIT_FAILED, EXIT_OK

NAME = "backup"
HELP = "back up every configured database into the first repository and copy it to the others (exit 1 if any failed)"
TAKES_LOCK = True


def add_arguments(parser):
    parser.add_argument("--database", action="append", metavar="DB", help="only this database (repeatable)")


def backup_request(config, database, repository, connection):
    return logical_backup.LogicalBackupRequest(
        database, repository, connection, fmt=config["format"], jobs=config["jobs"],
        compression=config["compression"], schemas=config["schemas"], exclude_schemas=config["exclude_schemas"],
        exclude_tables=config["exclude_tables"], globals_=config["globals"],
        encrypt_recipients=config["encrypt_recipients"], pg_bin_dir=config["pg_bin_dir"])


def copy_to_repositories(config, source, manifest, entries, log):
    """Copy a finished backup to each repository of ``entries``; every one is tried. Returns how many failed."""
    started = time.monotonic()
    failures = 0
    for entry in entries:
        fields = {"database": manifest["database"], "backup_id": manifest["id"], "repository": entry["name"]}
        try:
            result = transfer.copy_backup(manifest, source, repositories.open_entry(entry, owner=config["owner"]))
        except Exception as exc:
            failures += 1
            log.error("copy_failed", as_error(exc), prefix="copy of %s to %s failed: " % (
                manifest["id"], repositories.describe(entry)), target=entry["location"], **fields)
            continue
        log.info("copy_ok", "copied %s to %s" % (manifest["id"], repositories.describe(entry)), target=entry["location"],
                 size=result.get("size"), changed=result.get("changed"), **fields)
    if entries:
        log.info("copy_done", "%s copied to %d of %d repositories in %.1fs" % (
            manifest["id"], len(entries) - failures, len(entries), time.monotonic() - started),
            database=manifest["database"], backup_id=manifest["id"], duration=round(time.monotonic() - started, 3))
    return failures


def back_up(config, database, source, connection, log):
    """One database into ``source``; returns its manifest, or None when it failed (logged)."""
    log.info("backup_started", "backup of %s started" % database, database=database)
    started = time.monotonic()
    try:
        manifest = logical_backup.backup(backup_request(config, database, source, connection))
    except Exception as exc:  # one database failing must not stop the others
        log.error("backup_failed", as_error(exc), prefix="backup of %s failed: " % database, database=database,
                  duration=round(time.monotonic() - started, 3))
        return None
    log.info("backup_ok", "backup of %s ok: %s, %s in %.1fs" % (
        database, manifest["id"], human_size(manifest["size"]), manifest.get("duration_seconds", 0)),
        database=database, backup_id=manifest["id"], size=manifest["size"],
        duration=manifest.get("duration_seconds"), sha256=manifest["sha256"], tables=len(manifest.get("tables") or {}))
    return manifest


def run_into(args, config, log, source, copies, scratch):
    """Back up into ``source`` and copy to ``copies``; a ``scratch`` source keeps nothing once copied."""
    connection = connection_spec(config)
    databases = args.database or config["databases"]
    failed = []
    for database in databases:
        manifest = back_up(config, database, source, connection, log)
        if manifest is None or copy_to_repositories(config, source, manifest, copies, log):
            failed.append(database)
        if manifest is not None and scratch:
            source.delete(manifest)
    if failed:
        log.event("run_failed", "%d of %d backup(s) failed: %s" % (len(failed), len(databases), ", ".join(failed)),
                  level="error")
        return EXIT_FAILED
    return EXIT_OK


def run(args, config, log):
    entries = config["repositories"]
    if repositories.is_remote(entries[0]):
        with workspace.scratch_repository(config, "backup") as scratch:
            return run_into(args, config, log, scratch, entries, scratch=True)
    first = repositories.open_entry(entries[0], owner=config["owner"])
    return run_into(args, config, log, first, entries[1:], scratch=False)
