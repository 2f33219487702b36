# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup list``: the backups of one repository (``--repository``; default the first) as a
table or as JSON. Read-only: no lock, no log."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import sys

from ...physical import base_backup
from .. import repositories
from ..eventlog import human_size
from ..program import EXIT_OK

NAME = "list"
HELP = "list the repository's backups"
TAKES_LOCK = False


def add_arguments(parser):
    repositories.add_argument(parser)
    parser.add_argument("--database", metavar="DB", help="only backups of this database")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def summary(manifest):
    """What `list` shows of a manifest; a base backup also shows its type, parent and chain (full backup first)."""
    shown = {
        "id": manifest["id"],
        "database": manifest["database"],
        "kind": manifest["kind"],
        "finished_at": manifest["finished_at"],
        "size": manifest["size"],
        "sha256": manifest["sha256"],
        "format": manifest.get("format"),
        "compression": (manifest.get("compression") or {}).get("method"),
        "encrypted": bool(manifest.get("encryption")),
        "artifact": manifest["artifact"],
        "tables": manifest.get("tables") or {},
        "server_version": manifest.get("server_version"),
    }
    if manifest["kind"] == "physical":
        shown.update(backup_type=base_backup.backup_type_of(manifest), parent=manifest.get("parent"),
                     chain=base_backup.chain_ids(manifest))
    return shown


def _format(row):
    """format/compression, and a base backup's type (full, diff, incr)."""
    return "%s/%s%s" % (row["format"], row["compression"], (" " + row["backup_type"]) if row.get("backup_type") else "")


def print_table(rows, path):
    if not rows:
        sys.stdout.write("No backups in %s.\n" % path)
        return
    header = ("ID", "DATABASE", "FINISHED (UTC)", "SIZE", "FORMAT", "ENCRYPTED")
    lines = [header] + [(r["id"], r["database"], r["finished_at"][:19].replace("T", " "), human_size(r["size"]),
                         _format(r), "yes" if r["encrypted"] else "no") for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        sys.stdout.write("  ".join(str(value).ljust(width) for value, width in zip(line, widths)).rstrip() + "\n")


def run(args, config, log):
    entry = repositories.choose(config["repositories"], args.repository)
    repository = repositories.open_entry(entry, owner=config["owner"])
    backups = repository.list(database=args.database)
    problems = list(getattr(repository, "problems", []))
    rows = [summary(m) for m in backups]
    if args.json:
        json.dump({"repository": repository.path, "repository_name": entry["name"], "backups": rows, "problems": problems},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(rows, repository.path)
        for problem in problems:
            sys.stderr.write("warning: %s\n" % problem)
    return EXIT_OK
