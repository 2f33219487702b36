# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup verify``: verify the newest backup of each configured database (or one
backup) in one repository (``--repository``; default the first), and fail when the newest is older
than ``max_age_hours``.

A backup in a remote repository is downloaded into a scratch directory (workspace.py) and verified
there; its verification record travels with it and goes back to the remote repository, where
retention and the status check read it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ...core import manifest as manifests
from ...core.errors import PgBackupError
from ...ops import verify as verify_engine
from ...storage.local import LocalRepository
from .. import repositories, workspace
from ..connection import connection_spec
from ..eventlog import as_error
from ..program import EXIT_FAILED, EXIT_OK

NAME = "verify"
HELP = "verify the newest backup of each database, or --backup ID"
TAKES_LOCK = True


def add_arguments(parser):
    repositories.add_argument(parser)
    parser.add_argument("--backup", metavar="ID", help="backup id (default: the newest of each configured database)")
    parser.add_argument("--database", action="append", metavar="DB", help="only this database (repeatable)")
    parser.add_argument("--level", help="verification level (default: verify_level of the config, 'checksum')")
    parser.add_argument("--identity", metavar="FILE",
                        help="age identity (private key) file for encrypted backups (default: identity_file of the config); "
                             "without one the structure and restore levels of an encrypted backup are skipped")


def backups_to_verify(args, config, repository):
    if args.backup and args.backup != "latest":
        return [repository.resolve(args.backup)]
    chosen = []
    for database in args.database or config["databases"]:
        found = repository.list(database=database)
        if not found:
            raise PgBackupError("No backup of database '%s' in repository '%s'." % (database, repository.path),
                                hint="Check that scheduled backups run (see the log file).")
        chosen.append(found[-1])   # the newest, not the newest good one: its damage must show
    return chosen


def verify_one(config, repository, manifest, level, identity_file=None):
    if isinstance(repository, LocalRepository):
        return verify_engine.verify_backup(repository, manifest, level, connection=connection_spec(config),
                                           identity_file=identity_file or config["identity_file"],
                                           pg_bin_dir=config["pg_bin_dir"])
    with workspace.readable_copy(config, repository, manifest) as (local, copy):
        carry_record(repository, local, manifest["id"])
        try:
            return verify_one(config, local, copy, level, identity_file)
        finally:
            carry_record(local, repository, manifest["id"])


def carry_record(source, target, backup_id):
    record = source.read_sidecar(backup_id, verify_engine.SIDECAR)
    if record:
        target.write_sidecar(backup_id, verify_engine.SIDECAR, record)


def stale_backup_problem(config, manifest):
    limit = config["max_age_hours"]
    if not limit:
        return None
    age = (manifests.utcnow() - manifests.parse_time(manifest["finished_at"])).total_seconds() / 3600.0
    if age <= limit:
        return None
    return PgBackupError("The newest backup of '%s' is %.1f hours old (limit %g)." % (manifest["database"], age, limit),
                         hint="Scheduled backups are not running or failing; see the log file.")


def run(args, config, log):
    entry = repositories.choose(config["repositories"], args.repository)
    repository = repositories.open_entry(entry, owner=config["owner"])
    level = args.level or config["verify_level"]
    failures = 0
    try:
        manifests_to_check = backups_to_verify(args, config, repository)
    except PgBackupError as exc:
        log.error("verify_failed", exc)
        return EXIT_FAILED
    for manifest in manifests_to_check:
        started = time.monotonic()
        fields = {"database": manifest["database"], "backup_id": manifest["id"], "size": manifest["size"],
                  "repository": entry["name"]}
        try:
            result = verify_one(config, repository, manifest, level, args.identity)
            age_problem = stale_backup_problem(config, manifest)
            if age_problem:
                raise age_problem
        except Exception as exc:
            failures += 1
            log.error("verify_failed", as_error(exc), duration=round(time.monotonic() - started, 3), level_checked=level, **fields)
            continue
        if result["skipped"]:
            # not a failure: the safe setup keeps the private key off this host (see ops/verify.py)
            log.warning("verify_skipped", result["summary"], duration=round(time.monotonic() - started, 3),
                        level_checked=level, skipped_level=result["skipped"]["level"], result=result, **fields)
            continue
        log.info("verify_ok", "verify (%s) of %s ok" % (level, manifest["id"]), duration=round(time.monotonic() - started, 3),
                 level_checked=level, result=result, **fields)
    return EXIT_FAILED if failures else EXIT_OK
