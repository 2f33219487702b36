# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disaster recovery: the engine behind playbooks/dr_restore.yml.

``assess()``          the newest backup of a database that verifies (checksum, or also the archive's
                      structure), WITHOUT writing anything into the source repository (no verify
                      sidecar, no temp files); a remote source (S3, Azure, SFTP) is downloaded into
                      a local directory first. It states the data-loss window that backup implies.
``check_database()``  prove a restored, live database: row counts against the backup's manifest,
                      ``pg_amcheck --heapallindexed`` and smoke queries (the seed's
                      ``SELECT COUNT(*) FROM "Users"``). amcheck is installed for the check and
                      dropped again when it was not there before.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os
import time

from . import db_checks
from ..core import manifest as manifests
from ..core import pgconn
from ..core.errors import PgBackupError
from ..storage.base import is_remote as is_remote_repository
from ..storage.local import LocalRepository

from . import verify
from ..physical import base_backup_chain
from ..physical import wal_archive
from ..storage import factory

ASSESS_LEVELS = ("checksum", "structure")
KINDS = ("logical", "physical")
WAL_ENCODINGS = ("", ".zst", ".age", ".zst.age")


def is_remote(source):
    """An URL (s3://, azure://, sftp://), not a path."""
    return isinstance(source, str) and "://" in source


def open_source(source, owner=None, s3_options=None):
    """The repository backups are read from: ``source`` itself when it is a repository already,
    a LocalRepository for paths, open_repository()'s (with ``s3_options``, its keywords for every
    back-end) for URLs."""
    if not source:
        raise PgBackupError("No backup source given.",
                            hint="Set the repository path (local or NFS) or an s3://, azure:// or sftp:// URL.")
    if not isinstance(source, str):
        return source
    if is_remote(source):
        return factory.open_repository(source, owner=owner, **(s3_options or {}))
    return LocalRepository(source, owner=owner)


def _verify_without_record(repository, manifest, level, identity_file, pg_bin_dir):
    """Verify up to ``level`` and record nothing: the source repository must stay byte-identical."""
    if level == "checksum":
        repository.verify_checksum(manifest)
        return "checksum"
    verify.verify_backup(repository, manifest, level, identity_file=identity_file, pg_bin_dir=pg_bin_dir, record=False)
    return level


def assess(source, database, kind="logical", level="structure", download_to=None, owner=None, s3_options=None,
           identity_file=None, pg_bin_dir=None, wal_archive_dir=None, incident_time=None, now=None, backup="latest"):
    """Pick the newest backup of ``database`` that verifies (or check the one ``backup`` names);
    raise PgBackupError when none does.

    Returns {backup, repository (local path to restore from), source, downloaded, level, candidates
    [{id, finished_at, usable, error}], backup_finished_at, backup_data_as_of, assessed_at, reference_time,
    data_loss_seconds (from backup_data_as_of, see manifest.data_as_of), wal (or None)}.
    """
    if level not in ASSESS_LEVELS:
        raise PgBackupError("Unknown assessment level '%s'." % level, hint="Use checksum or structure.")
    if kind not in KINDS:
        raise PgBackupError("Unknown backup kind '%s'." % kind, hint="Use logical or physical.")
    now = now or manifests.utcnow()
    repository = open_source(source, owner=owner, s3_options=s3_options)
    if not isinstance(source, str):
        source = factory.describe_location(repository)
    remote_source = is_remote_repository(repository)
    if remote_source and not download_to:
        raise PgBackupError("A remote backup source (S3, Azure, SFTP) needs a local directory to download the backup into.",
                            hint="Set download_to (dr_work_dir in dr_restore.yml).")
    if not remote_source and not repository.exists():
        raise PgBackupError("Backup repository '%s' does not exist or is not mounted." % source,
                            hint="Mount the backup storage (read-only) or give the right path.")
    if backup and backup != "latest":
        candidates = [_named_backup(repository, backup, database, kind)]
        problems = []
    else:
        # A physical base backup holds the whole cluster; its manifest names the cluster, not a database.
        candidates = list(reversed(repository.list(database=database if kind == "logical" else None, kind=kind)))
        problems = list(getattr(repository, "problems", []) or [])
    checked = []
    chosen, restore_repository, used_level = None, repository, level
    for manifest in candidates:
        entry = {"id": manifest["id"], "finished_at": manifest["finished_at"], "usable": False, "error": None}
        checked.append(entry)
        try:
            local = repository
            if remote_source:
                local = LocalRepository(download_to, owner=owner)
                manifest = download_with_chain(repository, manifest, local)
            used_level = _verify_without_record(local, manifest, level, identity_file, pg_bin_dir)
        except PgBackupError as exc:
            entry["error"] = exc.message
            continue
        entry["usable"] = True
        chosen, restore_repository = manifest, local
        break
    if chosen is None:
        raise _nothing_usable(source, database, kind, checked, problems)
    data_from = manifests.parse_time(manifests.data_as_of(chosen))
    reference = manifests.parse_time(incident_time) if incident_time else now
    result = {
        "backup": chosen,
        "repository": restore_repository.path,
        "source": source,
        "downloaded": remote_source,
        "level": used_level,
        "candidates": checked,
        "skipped_newer": [c["id"] for c in checked if not c["usable"]],
        "manifest_problems": problems,
        "backup_finished_at": chosen["finished_at"],
        "assessed_at": manifests.isoformat(now),
        "reference_time": manifests.isoformat(reference),
        "backup_data_as_of": manifests.data_as_of(chosen),
        "data_loss_seconds": round(max(0.0, (reference - data_from).total_seconds()), 3),
        "wal": None,
    }
    if wal_archive_dir:
        result["wal"] = newest_archived_wal(wal_archive_dir)
        if result["wal"] and kind == "physical":
            last = manifests.parse_time(result["wal"]["archived_at"])
            result["data_loss_seconds"] = round(max(0.0, (reference - last).total_seconds()), 3)
    return result


def download_with_chain(repository, manifest, local):
    """Download ``manifest``'s backup into the LocalRepository ``local`` with every backup it needs to be
    restored (an incremental base backup's chain, full first), each one's checksum proven before it is kept;
    members already there and intact are not fetched again. Returns the backup's manifest."""
    members = [manifest]
    if manifest.get("kind") == "physical":
        members = base_backup_chain.chain_of(repository, manifest)
    for member in members:
        downloaded = repository.download(member, local)
    return downloaded


def probe(source, database, kind="logical", backup="latest", owner=None, s3_options=None):
    """What assess() would consider, read-only (check mode): the candidates, newest first, listed
    without downloading or verifying anything; a remote source must answer (credentials, network)."""
    if kind not in KINDS:
        raise PgBackupError("Unknown backup kind '%s'." % kind, hint="Use logical or physical.")
    repository = open_source(source, owner=owner, s3_options=s3_options)
    repository.check_access()
    if backup and backup != "latest":
        candidates = [_named_backup(repository, backup, database, kind)]
    else:
        candidates = list(reversed(repository.list(database=database if kind == "logical" else None, kind=kind)))
    return {"candidates": [{"id": manifest["id"], "finished_at": manifest["finished_at"], "usable": None, "error": None}
                           for manifest in candidates],
            "downloaded": False, "manifest_problems": list(getattr(repository, "problems", []) or [])}


def _named_backup(repository, backup_id, database, kind):
    manifest = repository.load(backup_id)
    if manifest["kind"] != kind or (kind == "logical" and manifest["database"] != database):
        raise PgBackupError("Backup '%s' is a %s backup of database '%s', not a %s backup of '%s'." % (
            backup_id, manifest["kind"], manifest["database"], kind, database),
            hint="Name a backup of the database being recovered, or use 'latest'.")
    return manifest


def _nothing_usable(source, database, kind, checked, problems):
    if not checked:
        detail = ("it holds no logical backup of database '%s'" % database if kind == "logical"
                  else "it holds no physical base backup")
        if problems:
            detail += " (%d damaged manifest(s): %s)" % (len(problems), "; ".join(problems[:3]))
        return PgBackupError("No backup to restore in '%s': %s." % (source, detail),
                             hint="Check the source path/URL and the database name; nothing was changed.",
                             candidates=checked)
    reasons = "; ".join("%s: %s" % (c["id"], c["error"]) for c in checked[:5])
    return PgBackupError("None of the %d backup(s) of database '%s' in '%s' verifies: %s." % (
        len(checked), database, source, reasons),
        hint="Do not restore from this repository; look for another copy (off-site, NFS, S3). Nothing was changed.",
        candidates=checked)


def newest_archived_wal(archive_dir):
    """{segment, file, archived_at} of the newest archived WAL segment (by name), or None."""
    if not os.path.isdir(archive_dir):
        raise PgBackupError("WAL archive '%s' does not exist or is not mounted." % archive_dir,
                            hint="Mount it, or leave the WAL archive unset.")
    pattern = wal_archive.SEGMENT
    newest = None
    for name in os.listdir(archive_dir):
        segment = name
        for suffix in sorted(WAL_ENCODINGS, key=len, reverse=True):
            if suffix and name.endswith(suffix):
                segment = name[:-len(suffix)]
                break
        if len(segment) != 24 or (pattern and not pattern.match(segment)):
            continue
        if newest is None or segment > newest[0]:
            newest = (segment, name)
    if newest is None:
        return None
    mtime = os.stat(os.path.join(archive_dir, newest[1])).st_mtime
    moment = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc)
    return {"segment": newest[0], "file": newest[1], "archived_at": manifests.isoformat(moment)}


# Checking a restored database


def check_database(connection, database, expected_tables=None, smoke_queries=None, amcheck=True, pg_bin_dir=None):
    """Row counts vs ``expected_tables`` ({schema.table: rows}), pg_amcheck, smoke queries.

    Raises PgBackupError naming the first failed check; returns {tables, amcheck, smoke_queries,
    duration_seconds}.
    """
    started = time.monotonic()
    conn = pgconn.connect(connection, database)
    try:
        major = pgconn.server_info(conn)["server_version_num"] // 10000
        counts = _compare_counts(conn, expected_tables or {})
        smoke = _smoke(conn, smoke_queries or [])
        had_amcheck = bool(pgconn.scalar(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'"))
    finally:
        conn.close()
    amcheck_result = "skipped"
    if amcheck:
        try:
            amcheck_result = _pg_amcheck(connection, database, major, pg_bin_dir)
        finally:
            if not had_amcheck:
                conn = pgconn.connect(connection, database)
                try:
                    pgconn.query(conn, "DROP EXTENSION IF EXISTS amcheck")
                finally:
                    conn.close()
    return {"database": database, "tables": counts, "counts_match": True, "amcheck": amcheck_result,
            "smoke_queries": smoke, "duration_seconds": round(time.monotonic() - started, 3)}


def _compare_counts(conn, expected):
    if not expected:
        return {}
    existing = set(pgconn.table_key(*t) for t in pgconn.user_tables(conn))
    missing = sorted(key for key in expected if key not in existing)
    if missing:
        raise PgBackupError("Table(s) of the backup missing in database: %s." % ", ".join(missing),
                            hint="The restore is incomplete; restore again.")
    actual = pgconn.count_rows(conn, [pgconn.split_table_key(key) for key in expected])
    wrong = ["%s: %d rows, backup has %d" % (key, actual[key], int(expected[key]))
             for key in sorted(expected) if actual[key] != int(expected[key])]
    if wrong:
        raise PgBackupError("Row counts differ from the backup's manifest: %s." % "; ".join(wrong),
                            hint="The restored data is incomplete or was changed since; restore again.")
    return actual


def _smoke(conn, queries):
    return db_checks.run_smoke_queries(conn, queries, "",
                                       "The restored database does not answer what the application asks; investigate.")


def _pg_amcheck(connection, database, major, pg_bin_dir):
    return db_checks.run_pg_amcheck(connection, database, major, pg_bin_dir, "database '%s'" % database,
                                    "The restored database is damaged; do not put it into service.")
