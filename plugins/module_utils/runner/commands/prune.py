# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup prune``: in every repository with a retention policy (its own, e.g. 7 days
local and monthly for a year in S3), delete the runner's own backups that the policy no longer keeps:
the logical backups of its databases and the base backups of its ``cluster_name`` (the newest verified
backup of each always stays; a chain of incremental base backups is kept or deleted whole, by the
engine's retention, ops/retention.py). A repository with a ``wal_archive`` then has the WAL that no kept
base backup of ``cluster_name`` needs deleted from that archive (the archive is listed before any backup
is deleted; with no kept base backup no WAL is deleted). ``--dry-run`` reports, per repository, what
would go. A repository that cannot be pruned does not stop the others; the run then exits 1."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ...ops import retention
from .. import repositories
from ..eventlog import as_error
from ..program import EXIT_FAILED, EXIT_OK

NAME = "prune"
HELP = "delete backups each repository's retention policy no longer keeps"
TAKES_LOCK = True


def add_arguments(parser):
    parser.add_argument("--dry-run", action="store_true", help="only report what would be deleted")


def prune_repository(config, entry, dry_run, log):
    repository = repositories.open_entry(entry, owner=config["owner"])
    archive = repositories.open_wal_archive(entry) if entry.get("wal_archive") else None
    if archive is not None:
        retention.check_wal_archive(archive)  # a wrong archive fails before any backup is deleted
    reported = set()
    # Only this runner's own backups: other databases, or base backups of another cluster, in a shared
    # repository are someone else's to prune.
    groups = [(database, "logical") for database in config["databases"]] + [(config["cluster_name"], "physical")]
    for database, kind in groups:
        # a base backup's chain (the full backup and the incremental ones on it) is kept or deleted whole
        result = retention.apply_retention(repository, entry["retention"], dry_run=dry_run, database=database, kind=kind)
        if kind == "physical" and archive is not None:
            _prune_wal(retention.prune_wal_for_kept(result, repository, archive, dry_run=dry_run), entry, log)
        if kind == "physical" and not (result["kept"] or result["deleted"]):
            continue  # no base backups: nothing to say
        _report(result, entry, database, dry_run, reported, log)


def _prune_wal(wal, entry, log):
    where = {"repository": entry["name"], "dry_run": wal["dry_run"], "wal_archive": entry["wal_archive"]}
    if wal["oldest_needed"] is None:
        log.info("prune_wal_skipped", "%s: %s" % (entry["wal_archive"], wal["reason"]), **where)
        return
    verb = "would delete" if wal["dry_run"] else "deleted"
    log.info("prune_wal_ok", "prune of WAL archive %s: %s %d file(s) before %s (start of %s), kept %d segment(s)"
             % (entry["wal_archive"], verb, len(wal["removed"]), wal["oldest_needed"], wal["oldest_backup"], wal["kept"]),
             removed=len(wal["removed"]), oldest_needed=wal["oldest_needed"], oldest_backup=wal["oldest_backup"], **where)


def _report(result, entry, database, dry_run, reported, log):
    verb = "would delete" if dry_run else "deleted"
    where = {"repository": entry["name"], "dry_run": bool(dry_run)}
    for found in result.get("deleted") or []:
        log.info("prune_would_delete" if dry_run else "prune_deleted",
                 "%s %s from %s (%s)" % (verb, found["id"], entry["name"], found.get("reason") or "retention"),
                 database=database, backup_id=found["id"], reason=found.get("reason"), chain=found.get("chain"), **where)
    for problem in result.get("problems") or []:
        log.warning("prune_problem", problem, database=database, repository=entry["name"])
    for temp in result.get("stale_temp") or []:
        name = temp.get("name") if isinstance(temp, dict) else str(temp)
        if name not in reported:
            reported.add(name)
            log.warning("stale_temp", "stale work-in-progress file left by an interrupted run: %s" % name,
                        repository=entry["name"])
    deleted, kept = len(result.get("deleted") or []), len(result.get("kept") or [])
    log.info("prune_ok", "prune of %s in %s: %s %d, kept %d" % (database, entry["name"], verb, deleted, kept),
             database=database, deleted=deleted, kept=kept, **where)


def run(args, config, log):
    with_policy = [entry for entry in config["repositories"] if entry["retention"]]
    for entry in config["repositories"]:
        if not entry["retention"]:
            log.info("prune_skipped", "no retention policy for repository %s; nothing pruned there" % entry["name"],
                     repository=entry["name"])
    failures = 0
    for entry in with_policy:
        try:
            prune_repository(config, entry, args.dry_run, log)
        except Exception as exc:  # one repository failing must not keep the others growing
            failures += 1
            log.error("prune_failed", as_error(exc), prefix="prune of %s failed: " % repositories.describe(entry),
                      repository=entry["name"])
    return EXIT_FAILED if failures else EXIT_OK
