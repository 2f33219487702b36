# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup manifest: what a backup is, in one JSON document beside its artifact."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import re
import socket

from .errors import PgBackupError

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
TOOL = "todoapi.pgbackup"
TOOL_VERSION = "0.2.0"
REQUIRED_KEYS = ("id", "kind", "database", "artifact", "sha256", "size", "started_at", "finished_at")
BACKUP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,200}$")  # no dots: "<id>." prefixes only its own files


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def isoformat(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text):
    """Parse the manifest's UTC timestamps (and plain ISO 8601 with an offset)."""
    if isinstance(text, datetime.datetime):
        return text if text.tzinfo else text.replace(tzinfo=datetime.timezone.utc)
    value = str(text).strip().replace("Z", "+00:00")
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise PgBackupError("'%s' is not an ISO 8601 time." % text, hint="Write it like 2024-01-06T14:30:00Z.")
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def data_as_of(manifest):
    """The moment a backup's data is from (the start of a data-loss window). A logical backup holds
    what was committed when pg_dump took its snapshot, at its start: commits during the dump are
    not in it. A physical backup is consistent at its end (its WAL up to then is part of it)."""
    if manifest.get("kind") == "logical" and manifest.get("started_at"):
        return manifest["started_at"]
    return manifest["finished_at"]


def slug(name):
    """A file-name-safe, readable form of a database name (the manifest keeps the real one)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40]
    return cleaned or "db"


def new_backup_id(kind, database, moment):
    return "%s_%s_%s" % (moment.strftime("%Y%m%dT%H%M%SZ"), kind, slug(database))


def check_backup_id(backup_id):
    """Refuse ids that could name anything outside the repository (../, slashes, etc.)."""
    if not BACKUP_ID.match(backup_id or "") or ".." in backup_id:
        raise PgBackupError("'%s' is not a valid backup id." % backup_id,
                            hint="Backup ids look like 20240106T020000Z_logical_TodoDb; see the backup list.")
    return backup_id


def base_manifest(kind, database, backup_id, started_at):
    return {
        "manifest_version": MANIFEST_VERSION,
        "id": backup_id,
        "kind": kind,
        "database": database,
        "started_at": isoformat(started_at),
        "host": socket.gethostname(),
        "tool": {"name": TOOL, "version": TOOL_VERSION},
    }


def validate(manifest, source):
    if not isinstance(manifest, dict):
        raise PgBackupError("Manifest %s is not a JSON object." % source)
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise PgBackupError("Manifest %s is incomplete (missing %s)." % (source, ", ".join(missing)),
                            hint="The backup cannot be trusted; take a new one.")
    check_backup_id(manifest["id"])
    if "/" in manifest["artifact"] or manifest["artifact"].startswith("."):
        raise PgBackupError("Manifest %s names an artifact outside the repository." % source)
    return manifest
