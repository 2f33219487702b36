# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup prune``: delete the runner's own logical backups that the retention policy
no longer keeps (the newest verified backup always stays)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ...ops import retention
from ..config import repository_of
from ..program import EXIT_OK

NAME = "prune"
HELP = "delete backups the retention policy no longer keeps"
TAKES_LOCK = True


def add_arguments(parser):
    parser.add_argument("--dry-run", action="store_true", help="only report what would be deleted")


def run(args, config, log):
    policy = config["retention"]
    if not policy:
        log.info("prune_skipped", "no retention policy configured; nothing pruned")
        return EXIT_OK
    repository = repository_of(config)
    verb = "would delete" if args.dry_run else "deleted"
    reported = set()
    for database in config["databases"]:
        # Only this runner's own backups: other databases or physical backups in a shared
        # repository are someone else's to prune.
        result = retention.apply_retention(repository, policy, dry_run=args.dry_run, database=database, kind="logical")
        for entry in result.get("deleted") or []:
            log.info("prune_deleted" if not args.dry_run else "prune_would_delete",
                     "%s %s (%s)" % (verb, entry["id"], entry.get("reason") or "retention"),
                     database=database, backup_id=entry["id"], reason=entry.get("reason"), dry_run=bool(args.dry_run))
        for problem in result.get("problems") or []:
            log.warning("prune_problem", problem, database=database)
        for temp in result.get("stale_temp") or []:
            name = temp.get("name") if isinstance(temp, dict) else str(temp)
            if name not in reported:
                reported.add(name)
                log.warning("stale_temp", "stale work-in-progress file left by an interrupted run: %s" % name)
        deleted, kept = len(result.get("deleted") or []), len(result.get("kept") or [])
        log.info("prune_ok", "prune of %s: %s %d, kept %d" % (database, verb, deleted, kept),
                 database=database, deleted=deleted, kept=kept, dry_run=bool(args.dry_run))
    return EXIT_OK
