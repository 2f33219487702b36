# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup restore``: restore a backup from one repository (``--repository``; default the
first), the whole database or some tables, or with ``--dry-run`` only check the backup and the
target. A backup in a remote repository is first downloaded and checked (workspace.py)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ...core.errors import PgBackupError
from ...logical import deferred_foreign_keys
from ...logical import restore as logical_restore
from ...storage.local import LocalRepository
from .. import repositories, workspace
from ..connection import connection_spec
from ..eventlog import as_error
from ..program import EXIT_FAILED, EXIT_OK

NAME = "restore"
HELP = "restore a backup (whole database or some tables)"
TAKES_LOCK = True


def add_arguments(parser):
    repositories.add_argument(parser)
    add = parser.add_argument
    add("--backup", metavar="ID", default="latest", help="backup id, or 'latest' (default)")
    add("--database", metavar="DB", help="target database (default: the backup's database)")
    add("--source-database", metavar="DB", help="database whose latest backup to restore (default: the configured one)")
    add("--tables", nargs="+", action="extend", metavar="TABLE", help="restore only these tables into the existing target")
    add("--force", action="store_true", help="replace a target database that holds tables")
    add("--clean", action="store_true", help="with --force: drop and recreate the target")
    add("--jobs", type=int, default=1, help="parallel pg_restore jobs")
    add("--globals", action="store_true", help="also restore roles and tablespaces")
    add("--identity", metavar="FILE", help="age identity (private key) file for encrypted backups")
    add("--validate-foreign-keys", choices=deferred_foreign_keys.CHOICES, default=deferred_foreign_keys.DURING,
        help="during (default): check foreign keys before the swap-in; after_swap: add them NOT VALID, swap the database "
             "in, then validate them while it is in use (event restore_foreign_keys_not_validated if that fails)")
    add("--build-indexes", choices=deferred_foreign_keys.CHOICES, default=deferred_foreign_keys.DURING,
        help="during (default): build every index before the swap-in; after_swap: build the plain (non-unique) indexes "
             "with CREATE INDEX CONCURRENTLY once the database is in use (event restore_indexes_not_built if one fails)")
    add("--dry-run", action="store_true", help="check the backup and the target, change nothing")


def source_database(args, config, repository, selector):
    """The database whose backup is restored: given, named by the backup id, or the one configured."""
    if args.source_database:
        return args.source_database
    if selector != "latest":
        return repository.resolve(selector)["database"]
    if len(config["databases"]) == 1:
        return config["databases"][0]
    raise PgBackupError("Several databases are configured; say which one's latest backup to restore.",
                        hint="Pass --source-database NAME (or --backup ID).")


def run(args, config, log):
    entry = repositories.choose(config["repositories"], args.repository)
    repository = repositories.open_entry(entry, owner=config["owner"])
    selector = args.backup or "latest"
    source = source_database(args, config, repository, selector)
    if isinstance(repository, LocalRepository):
        return restore_from(args, config, log, repository, selector, source)
    with workspace.scratch_repository(config, "restore") as local:
        manifest = download(repository, local, selector, source)
        log.info("download_ok", "downloaded %s from %s and checked it" % (manifest["id"], repositories.describe(entry)),
                 database=source, backup_id=manifest["id"], repository=entry["name"], size=manifest["size"])
        return restore_from(args, config, log, local, manifest["id"], source)


def download(repository, local, selector, source):
    """The backup ``selector`` names, downloaded into ``local`` and checked; for 'latest', the newest
    whose download matches its manifest (as a local restore takes the newest whose checksum verifies)."""
    if selector != "latest":
        return repository.download(repository.resolve(selector), local)
    problems = []
    for manifest in reversed(repository.list(database=source, kind="logical")):
        try:
            return repository.download(manifest, local)
        except PgBackupError as exc:
            problems.append(exc.message)
    raise PgBackupError("No usable backup of database '%s' in '%s'%s." % (
        source, repository.path, (" (%d failed their checksum)" % len(problems)) if problems else ""),
        hint="Take a backup first, or restore from another repository (--repository).")


def restore_from(args, config, log, repository, selector, source):
    connection = connection_spec(config)
    request = logical_restore.LogicalRestoreRequest(
        repository, connection, database=args.database or source, backup=selector, source_database=source,
        tables=args.tables, clean=args.clean, force=args.force, jobs=args.jobs or 1, globals_=args.globals,
        identity_file=args.identity or config["identity_file"], pg_bin_dir=config["pg_bin_dir"],
        validate_foreign_keys=args.validate_foreign_keys, build_indexes=args.build_indexes)
    if args.dry_run:
        plan = logical_restore.plan(request)
        log.info("restore_plan", "would restore %s into %s (%s restore; target %s)" % (
            plan["backup"]["id"], request.database, plan["mode"], "exists" if plan["target_exists"] else "is new"),
            database=request.database, backup_id=plan["backup"]["id"])
        return EXIT_OK
    log.info("restore_started", "restore of %s (%s) into %s started" % (selector, source, request.database),
             database=request.database)
    try:
        result = logical_restore.restore(request)
    except logical_restore.FailedAfterSwap as exc:  # in place and usable: an alert, not a lost restore
        log.error(exc.event, exc, database=request.database,
                  usable_after_seconds=exc.details.get("usable_after_seconds"),
                  failed_foreign_keys=exc.details.get("failed_foreign_keys"),
                  validated_foreign_keys=exc.details.get("validated_foreign_keys"),
                  failed_indexes=exc.details.get("failed_indexes"), database_in_place=True)
        return EXIT_FAILED
    except Exception as exc:
        log.error("restore_failed", as_error(exc), prefix="restore into %s failed: " % request.database,
                  database=request.database)
        return EXIT_FAILED
    usable = result.get("usable_after_seconds")
    log.info("restore_ok", "restore of %s into %s ok: %d table(s) in %.1fs%s" % (
        result["backup_id"], request.database, len(result.get("restored_tables") or []), result["duration_seconds"],
        "" if usable is None else " (usable after %.1fs)" % usable),
        database=request.database, backup_id=result["backup_id"], duration=result["duration_seconds"],
        tables=result.get("tables"), usable_after_seconds=usable,
        checks_finished_after_seconds=result.get("checks_finished_after_seconds"),
        validate_foreign_keys=request.validate_foreign_keys, build_indexes=request.build_indexes,
        built_indexes=[index["index"] for index in result.get("built_indexes") or []] or None,
        validated_foreign_keys=[key["constraint"] for key in result.get("validated_foreign_keys") or []] or None)
    return EXIT_OK
