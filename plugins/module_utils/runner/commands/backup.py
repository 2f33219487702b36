# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup backup``: back up every configured database, then copy each backup to the
``copy_to`` targets. One database failing does not stop the others; the run then exits 1."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

from ...logical import backup as logical_backup
from ...storage import transfer
from ..config import repository_of
from ..connection import connection_spec
from ..eventlog import as_error, human_size
from ..program import EXIT_FAILED, EXIT_OK

NAME = "backup"
HELP = "back up every configured database (exit 1 if any failed)"
TAKES_LOCK = True


def add_arguments(parser):
    parser.add_argument("--database", action="append", metavar="DB", help="only this database (repeatable)")


def backup_request(config, database, repository, connection):
    return logical_backup.LogicalBackupRequest(
        database, repository, connection, fmt=config["format"], jobs=config["jobs"],
        compression=config["compression"], schemas=config["schemas"], exclude_schemas=config["exclude_schemas"],
        exclude_tables=config["exclude_tables"], globals_=config["globals"],
        encrypt_recipients=config["encrypt_recipients"], pg_bin_dir=config["pg_bin_dir"])


def s3_options(config):
    """S3 settings for copy_to; credentials come from boto3's chain (profile, env, instance role)."""
    options = dict(config["s3"] or {})
    credentials_file = options.pop("credentials_file", None)
    if credentials_file:
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = credentials_file
    return options


def copy_to(config, repository, manifest, log):
    """Copy a finished backup to every ``copy_to`` target (second path, NFS or s3:// URL)."""
    targets = config["copy_to"]
    if not targets:
        return None
    started = time.monotonic()
    results = transfer.copy_to_targets(manifest, repository, targets, owner=config["owner"], s3_options=s3_options(config))
    for result in results:
        log.info("copy_ok", "copied %s to %s" % (manifest["id"], result.get("target")),
                 database=manifest["database"], backup_id=manifest["id"], target=result.get("target"),
                 size=result.get("size"), changed=result.get("changed"))
    log.info("copy_done", "%s copied to %d target(s) in %.1fs" % (manifest["id"], len(results), time.monotonic() - started),
             database=manifest["database"], backup_id=manifest["id"], duration=round(time.monotonic() - started, 3))
    return results


def run(args, config, log):
    repository = repository_of(config)
    connection = connection_spec(config)
    databases = args.database or config["databases"]
    failed = []
    for database in databases:
        log.info("backup_started", "backup of %s started" % database, database=database)
        started = time.monotonic()
        try:
            manifest = logical_backup.backup(backup_request(config, database, repository, connection))
        except Exception as exc:  # one database failing must not stop the others
            failed.append(database)
            log.error("backup_failed", as_error(exc), prefix="backup of %s failed: " % database, database=database,
                      duration=round(time.monotonic() - started, 3))
            continue
        log.info("backup_ok", "backup of %s ok: %s, %s in %.1fs" % (
            database, manifest["id"], human_size(manifest["size"]), manifest.get("duration_seconds", 0)),
            database=database, backup_id=manifest["id"], size=manifest["size"],
            duration=manifest.get("duration_seconds"), sha256=manifest["sha256"], tables=len(manifest.get("tables") or {}))
        try:
            copy_to(config, repository, manifest, log)
        except Exception as exc:
            failed.append(database)
            log.error("copy_failed", as_error(exc), prefix="copy of %s failed: " % manifest["id"], database=database,
                      backup_id=manifest["id"])
    if failed:
        log.event("run_failed", "%d of %d backup(s) failed: %s" % (len(failed), len(databases), ", ".join(failed)),
                  level="error")
        return EXIT_FAILED
    return EXIT_OK
