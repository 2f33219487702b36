# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup basebackup [--type full|diff|incr|auto]``: one physical base backup of the whole
cluster into the first repository, then copied to the others (as ``backup`` copies its dumps).

The engine (physical/base_backup.py) chooses and checks everything: ``diff`` builds on the newest full
backup, ``incr`` on the newest backup of the cluster, ``auto`` on the newest when it can and takes a full
backup otherwise (and starts a new chain after AUTO_CHAIN_LIMIT backups). On a server that cannot take an
incremental backup (PostgreSQL before 17, summarize_wal off, no WAL summaries back to the parent) ``diff``
and ``incr`` fail with the engine's message saying why and what to use, and the run exits 1. The backups
are named after the config's ``cluster_name`` (default: the setup's name), which ``prune`` uses to find
them. The first repository must be a directory: an incremental backup is taken against its parent's
``backup_manifest`` there."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ...core.errors import PgBackupError
from ...physical import base_backup
from .. import repositories
from ..connection import connection_spec
from ..eventlog import human_size
from ..program import EXIT_FAILED, EXIT_OK
from .backup import copy_to_repositories

NAME = "basebackup"
HELP = "take a physical base backup (full, diff, incr or auto) into the first repository and copy it to the others"
TAKES_LOCK = True


def add_arguments(parser):
    parser.add_argument("--type", dest="backup_type", choices=base_backup.BACKUP_TYPES, default="full",
                        help="full (default); diff: the changes since the newest full backup; incr: since the newest "
                             "backup; auto: incr when possible, else full (diff and incr need PostgreSQL 17+ with "
                             "summarize_wal on)")


def first_directory(config):
    entry = config["repositories"][0]
    if repositories.is_remote(entry):
        raise PgBackupError("Base backups are taken into a directory and the first repository, %s, is remote."
                            % repositories.describe(entry),
                            hint="List a directory first in the repositories (pgbackup_repositories); the remote ones "
                                 "after it get a copy of each base backup.")
    return repositories.open_entry(entry, owner=config["owner"])


def run(args, config, log):
    repository = first_directory(config)
    cluster = config["cluster_name"]
    request = base_backup.PhysicalBackupRequest(repository, connection_spec(config), pg_bin_dir=config["pg_bin_dir"],
                                                cluster_name=cluster, backup_type=args.backup_type)
    log.info("basebackup_started", "%s base backup of %s started" % (args.backup_type, cluster), database=cluster,
             requested_type=args.backup_type)
    try:
        manifest = base_backup.backup(request)
    except PgBackupError as exc:
        # keyed by the cluster like the other events, so that status reports it as last_run_failed
        log.error("basebackup_failed", exc, prefix="%s base backup of %s failed: " % (args.backup_type, cluster),
                  database=cluster, requested_type=args.backup_type)
        return EXIT_FAILED
    chain = manifest["chain"]
    log.info("basebackup_ok", "%s base backup of %s ok: %s, %s in %.1fs%s" % (
        manifest["backup_type"], cluster, manifest["id"], human_size(manifest["size"]), manifest["duration_seconds"],
        " (chain of %d from %s)" % (len(chain), chain[0]) if len(chain) > 1 else ""),
        database=cluster, backup_id=manifest["id"], size=manifest["size"], duration=manifest["duration_seconds"],
        requested_type=args.backup_type, backup_type=manifest["backup_type"], parent=manifest["parent"], chain=chain,
        type_note=manifest.get("type_note"))
    if manifest.get("type_note"):
        log.warning("basebackup_full_instead", "type %s took a full backup: %s" % (args.backup_type, manifest["type_note"]),
                    database=cluster, backup_id=manifest["id"])
    if copy_to_repositories(config, repository, manifest, config["repositories"][1:], log):
        return EXIT_FAILED
    return EXIT_OK
