# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Everything PITR decides before the target host is touched: the base backup to start from, the WAL
archive holding every segment after it without a hole, and the target lying inside that WAL (a
restore point that exists, a time before the last commit, an xid that committed, an LSN before the
archive's end). Each failure names its cause.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ..core import manifest as manifests
from ..core.errors import PgBackupError
from .base_backup_chain import chain_of
from .base_backup_restore import backup_major
from .pitr_wal_scan import scan_wal, segment_size_of, segno_of
from .wal_archive_contents import history_timelines, wal_range_present
from .wal_names import format_lsn, parse_lsn


def _before_target(manifest, request, name_lsn=None):
    kind = request.kind
    if kind in ("latest", "immediate"):
        return True
    if kind == "time":
        return manifests.parse_time(manifest["finished_at"]) < request.target_value
    if kind == "xid":
        return int(manifest.get("next_xid_at_end") or 0) <= request.target_value
    lsn = name_lsn if kind == "name" else request.target_value
    return parse_lsn(manifest["end_lsn"]) <= parse_lsn(lsn)


def verified_chain(repository, manifest):
    """The chain of ``manifest`` (full first), every member's files checked against its manifest."""
    chain = chain_of(repository, manifest)
    for member in chain:
        repository.verify_checksum(member)
    return chain


def refuse_other_major(manifest, target_major, target):
    if target_major is not None and backup_major(manifest) != target_major:
        raise PgBackupError("Base backup '%s' is of PostgreSQL %d and %s is PostgreSQL %d: a physical backup "
                            "restores only into the major version it was taken from." % (
                                manifest["id"], backup_major(manifest), target, target_major),
                            hint="Recover into a PostgreSQL %d server (cluster_version, or pg_bin_dir with its "
                                 "programs) and upgrade it with pg_upgrade; or move the data to %d with a logical "
                                 "backup (pg_dump, pg_restore)." % (backup_major(manifest), target_major))


def backups_for_target(backups, target_major, target):
    """The physical backups that can be restored into a server of ``target_major`` (None: any)."""
    if target_major is None or not backups:
        return backups
    usable = [m for m in backups if backup_major(m) == target_major]
    if not usable:
        refuse_other_major(backups[-1], target_major, target)
    return usable


def choose_backup(request, backups, name_lsn=None, target_major=None, target="the target"):
    """The newest verified base backup usable for the target; (its verified chain, full first; skipped problems)."""
    if request.backup:
        manifest = request.repository.resolve(request.backup, kind="physical")
        if manifest.get("kind") != "physical":
            raise PgBackupError("Backup '%s' is not a physical base backup." % manifest["id"],
                                hint="PITR needs a backup taken with todoapi.pgbackup.pg_basebackup.")
        refuse_other_major(manifest, target_major, target)
        if not _before_target(manifest, request, name_lsn):
            raise PgBackupError("Base backup '%s' ends after the recovery target %s." % (
                manifest["id"], request.describe_target()), hint="Choose an older backup, or let the module pick one.")
        return verified_chain(request.repository, manifest), []
    if not backups:
        raise PgBackupError("Repository '%s' holds no physical base backup." % request.repository.path,
                            hint="Take one with todoapi.pgbackup.pg_basebackup first.")
    usable = [m for m in backups if _before_target(m, request, name_lsn)]
    if not usable:
        oldest = backups[0]
        raise PgBackupError("The recovery target %s lies before the end of the oldest base backup '%s' (finished %s, "
                            "end LSN %s)." % (request.describe_target(), oldest["id"], oldest["finished_at"],
                                              oldest["end_lsn"]),
                            hint="A base backup can only be rolled forward; nothing older is kept, so this point "
                                 "in time cannot be recovered.")
    skipped = []
    for manifest in reversed(usable):
        try:
            return verified_chain(request.repository, manifest), skipped
        except PgBackupError as exc:
            skipped.append(str(exc))
    raise PgBackupError("Every base backup usable for %s failed its checksum: %s" % (
        request.describe_target(), "; ".join(skipped)), hint="The repository is damaged; restore it from a copy.")


def check_wal(request, manifest):
    """Contiguous WAL after the backup: returns the range report (raises on holes that matter)."""
    size = segment_size_of(manifest)
    timeline = int(manifest["timeline"])
    in_backup = range(segno_of(manifest["wal_start_segment"], manifest), segno_of(manifest["wal_end_segment"], manifest) + 1)
    report = wal_range_present(request.archive_dir, timeline, manifest["wal_start_segment"],
                               segment_size=size, stream_dirs=request.stream_dirs, also_present=in_backup)
    newer = [t for t in history_timelines(request.archive_dir) if t > timeline]
    report["newer_timelines"] = newer
    if not report["complete"] and request.kind == "latest":
        raise PgBackupError("The WAL archive has a hole after base backup '%s': %d segment(s) missing, first %s "
                            "(WAL is archived up to %s). Recovering to 'latest' would silently stop at the hole."
                            % (manifest["id"], report["missing_count"], report["missing"][0], report["last"]),
                            hint="Recover to a target before %s, or find the missing segments first." % report["missing"][0])
    return report


def locate_target(request, backups, waldump):
    """For a restore point name: the LSN of the newest such restore point in the archive."""
    if request.kind != "name":
        return None
    oldest = backups[0] if backups else None
    if oldest is None:
        return None
    report = wal_range_present(request.archive_dir, int(oldest["timeline"]), oldest["wal_start_segment"],
                               segment_size=segment_size_of(oldest), stream_dirs=request.stream_dirs)
    last = report["last_contiguous"] or oldest["wal_end_segment"]
    events = scan_wal(request, oldest, segno_of(oldest["wal_start_segment"], oldest), segno_of(last, oldest), waldump)
    points = [e for e in events if e["type"] == "restore_point" and e["name"] == request.target_value]
    if not points:
        raise PgBackupError("No restore point named '%s' is in the WAL archive (searched from %s to %s)." % (
            request.target_value, oldest["wal_start_segment"], last),
            hint="Check the name (pg_create_restore_point), or that the WAL holding it was archived.")
    return points[-1]["lsn"]


def check_target_in_archive(request, manifest, report, waldump):
    """Raise when the target lies after the end of the contiguous WAL; returns what is known of that end."""
    size = segment_size_of(manifest)
    end_segno = segno_of(report["last_contiguous"], manifest) if report["last_contiguous"] else \
        segno_of(manifest["wal_end_segment"], manifest)
    end_lsn = (end_segno + 1) * size
    info = {"last_contiguous_segment": report["last_contiguous"], "archive_end_lsn": format_lsn(end_lsn)}
    start = segno_of(manifest["wal_start_segment"], manifest)
    if request.kind == "lsn":
        target = parse_lsn(request.target_value)
        if target >= end_lsn:
            raise PgBackupError("target_lsn %s is after the end of the archived WAL (%s, up to segment %s)." % (
                request.target_value, info["archive_end_lsn"], report["last_contiguous"]),
                hint="Use an earlier LSN, or target latest.")
    elif request.kind == "time":
        last_commit = None
        segno = end_segno
        while segno >= start and last_commit is None:
            first = max(start, segno - 3)
            events = [e for e in scan_wal(request, manifest, first, segno, waldump) if e.get("time")]
            if events:
                last_commit = max(e["time"] for e in events)
            segno = first - 1
        info["last_commit_time"] = manifests.isoformat(last_commit) if last_commit else None
        if last_commit is None or last_commit <= request.target_value:
            raise PgBackupError("target_time %s is after the last transaction in the WAL archive (%s): PostgreSQL "
                                "would end recovery before reaching it." % (
                                    manifests.isoformat(request.target_value), info["last_commit_time"] or "none"),
                                hint="Use target latest to recover everything archived, or an earlier time.")
    elif request.kind == "xid":
        events = scan_wal(request, manifest, start, end_segno, waldump)
        done = [e for e in events if e["type"] in ("commit", "abort", "commit_prepared", "abort_prepared")
                and e["xid"] == request.target_value]
        if not done:
            highest = max([e.get("xid", 0) for e in events] or [0])
            raise PgBackupError("Transaction %d did not commit in the archived WAL after base backup '%s' (highest "
                                "transaction there: %d)." % (request.target_value, manifest["id"], highest),
                                hint="Check the xid; a transaction that never committed cannot be a recovery target.")
        if done[-1]["type"].startswith("abort"):
            raise PgBackupError("Transaction %d was rolled back, so it cannot be a recovery target." % request.target_value,
                                hint="Use the xid of a committed transaction, or a time.")
    return info
