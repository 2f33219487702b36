# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Grandfather-father-son retention for a backup repository.

The seed's policy ("30 days of daily backups, weekly for 3 months, monthly for 1 year") as
code, applied separately to every (database, kind) group of complete backups:

- ``daily_days``: keep every backup whose UTC calendar date is less than this many days
  before today's (30: today and the 29 days before);
- ``weekly_weeks``: keep the newest backup of each ISO week, for the current ISO week and
  the ``weekly_weeks - 1`` before it;
- ``monthly_months``: keep the newest backup of each calendar month (UTC), for the current
  month and the ``monthly_months - 1`` before it;
- ``keep_last``: always keep the N newest backups.

Safety rules, on top of the policy:

- the newest backup whose files verify (size + sha256, and no failed ``verify`` sidecar) is
  never deleted, however old; if no backup of a group verifies, nothing of that group is
  deleted;
- only complete backups (a valid manifest) are candidates; ``.tmp-*`` work in progress,
  files without a manifest and damaged manifests are never touched (stale temp files are
  only reported);
- a backup finished after ``now`` (clock skew) is kept and left out of every rule, so it
  neither takes a ``keep_last`` slot nor stands in as its week's/month's newest or as the
  newest verified backup: it can never be the reason another backup is deleted;
- a backup's time is its manifest's ``finished_at`` (UTC); file mtimes are ignored;
- an incremental base backup is restored with every backup it depends on: a full backup and the
  backups that depend on it (its chain) are kept or deleted whole, a chain counts as verified only
  when all of its members verify, and dependants are deleted before what they depend on.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime

from ..core import manifest as manifests
from ..core.errors import PgBackupError
from ..physical.base_backup import chain_ids, chain_root
from ..physical.wal_archive import prune_wal
from ..physical.wal_archive_layout import archive_entries
from ..physical.wal_names import SEGMENT

DEFAULT_POLICY = {"daily_days": 30, "weekly_weeks": 13, "monthly_months": 12, "keep_last": 1}
STALE_TEMP_HOURS = 24
KINDS = ("logical", "physical")
VERIFY_SIDECAR = "verify"
SIDECAR_FAILED_STATUSES = ("failed", "failure", "error", "corrupt", "corrupted", "mismatch")


def normalize_policy(policy=None):
    """Defaults filled in, every value a non-negative int; unknown keys are an error."""
    policy = dict(policy or {})
    unknown = sorted(key for key in policy if key not in DEFAULT_POLICY)
    if unknown:
        raise PgBackupError("Unknown retention setting(s): %s." % ", ".join(unknown),
                            hint="Use %s." % ", ".join(sorted(DEFAULT_POLICY)))
    normalized = {}
    for key, default in DEFAULT_POLICY.items():
        value = policy.get(key)
        if value is None:
            value = default
        if isinstance(value, bool):
            value = None
        else:
            try:
                value = int(value)
            except (TypeError, ValueError):
                value = None
        if value is None or value < 0:
            raise PgBackupError("Retention setting %s=%r is not a whole number >= 0." % (key, policy.get(key)),
                                hint="Give a count such as %s=%d (0 disables the rule)." % (key, default))
        normalized[key] = value
    return normalized


def _utc(now):
    if now is None:
        return manifests.utcnow()
    return manifests.parse_time(now).astimezone(datetime.timezone.utc)


def _iso_week_start(day):
    return day - datetime.timedelta(days=day.weekday())


def _week_label(day):
    year, week, _weekday = day.isocalendar()[:3]
    return "%04d-W%02d" % (year, week)


def _month_index(day):
    return day.year * 12 + day.month - 1


def sidecar_says_failed(record):
    """A ``verify`` sidecar whose latest verification failed.

    Understands verify.py's ``{"history": [..., {"outcome": "passed"|"skipped"|"failed"}]}`` and a flat
    ``{"ok": false}`` / ``{"status": "failed"}``; shapes it does not know do not count as failed
    (the checksum is still checked).
    """
    if not isinstance(record, dict):
        return False
    history = record.get("history")
    if isinstance(history, list) and history:
        # verify.py's record: the last run decides ("outcome": passed|failed)
        record = history[-1] if isinstance(history[-1], dict) else {}
        outcome = record.get("outcome")
        # "skipped": a level that needs a private key the host lacks did not run; what ran passed
        return isinstance(outcome, str) and outcome not in ("passed", "skipped")
    for key in ("ok", "verified", "success", "passed"):
        if record.get(key) is False:
            return True
    status = record.get("status", record.get("result"))
    return isinstance(status, str) and status.strip().lower() in SIDECAR_FAILED_STATUSES


def default_verifier(repository):
    """verified(manifest) -> bool: files match the manifest and no sidecar records a failed check."""
    def verified(manifest):
        if sidecar_says_failed(repository.read_sidecar(manifest["id"], VERIFY_SIDECAR)):
            return False
        try:
            repository.verify_checksum(manifest)
        except PgBackupError:
            return False
        return True
    return verified


def _as_verifier(verified, repository):
    if verified is None:
        return default_verifier(repository)
    if isinstance(verified, dict):
        return lambda manifest: bool(verified.get(manifest["id"], False))
    if callable(verified):
        return verified
    raise PgBackupError("'verified' must be a callable or a dict of backup id -> bool.")


def _chain_verifier(verifier, manifests_by_id):
    """A backup verifies when every backup of its chain is in the repository and verifies."""
    def verified(manifest):
        ids = chain_ids(manifest)
        return all(backup_id in manifests_by_id and verifier(manifests_by_id[backup_id]) for backup_id in ids)
    return verified


def _keep_chains_whole(backups):
    """A chain (a full backup and the backups that depend on it) is kept whole when any member is kept."""
    chains = {}
    for backup in backups:
        chains.setdefault(chain_root(backup.manifest), []).append(backup)
    for members in chains.values():
        kept = [member.id for member in members if member.reasons]
        if not kept or len(members) == 1:
            continue
        for member in members:
            if not member.reasons:
                member.keep("chain of %s: kept whole with %s" % (chain_root(member.manifest), ", ".join(kept)))


class _Backup(object):
    def __init__(self, manifest):
        self.manifest = manifest
        self.id = manifest["id"]
        self.group = (manifest["database"], manifest["kind"])
        self.reasons = []
        try:
            self.finished = manifests.parse_time(manifest["finished_at"]).astimezone(datetime.timezone.utc)
        except PgBackupError:
            self.finished = None

    def keep(self, reason):
        if reason not in self.reasons:
            self.reasons.append(reason)


def _plan_group(backups, policy, now, verifier):
    """Mark the reasons to keep each backup of one (database, kind) group; return the delete reasons."""
    today = now.date()
    dated = []
    for backup in backups:
        if backup.finished is None:
            backup.keep("unreadable finished_at %r: kept, never judged" % backup.manifest.get("finished_at"))
        elif backup.finished > now:
            backup.keep("future-dated: finished_at %s is after now %s (clock skew?); kept and ignored by the other rules"
                        % (backup.manifest["finished_at"], manifests.isoformat(now)))
        else:
            dated.append(backup)
    dated.sort(key=lambda b: (b.finished, b.id))
    newest_first = list(reversed(dated))

    if policy["keep_last"]:
        for backup in newest_first[:policy["keep_last"]]:
            backup.keep("keep_last: one of the %d newest" % policy["keep_last"])

    newest_verified = None
    for backup in newest_first:
        if verifier(backup.manifest):
            newest_verified = backup
            break
    if newest_verified is not None:
        newest_verified.keep("newest backup that verifies (never deleted)")
    elif dated:
        for backup in dated:
            backup.keep("no backup of %s/%s verifies: nothing of this group is deleted" % backup.group)

    this_week = _iso_week_start(today)
    this_month = _month_index(today)
    weeks_seen, months_seen = set(), set()
    for backup in newest_first:
        day = backup.finished.date()
        age_days = (today - day).days
        if age_days < policy["daily_days"]:
            backup.keep("daily: %d day(s) old, within %d days" % (age_days, policy["daily_days"]))
        week_start = _iso_week_start(day)
        weeks_back = (this_week - week_start).days // 7
        if weeks_back < policy["weekly_weeks"] and week_start not in weeks_seen:
            backup.keep("weekly: newest of ISO week %s, within %d weeks" % (_week_label(day), policy["weekly_weeks"]))
        weeks_seen.add(week_start)
        months_back = this_month - _month_index(day)
        if months_back < policy["monthly_months"] and months_back not in months_seen:
            backup.keep("monthly: newest of %04d-%02d, within %d months" % (day.year, day.month, policy["monthly_months"]))
        months_seen.add(months_back)

    _keep_chains_whole(backups)
    delete_reasons = {}
    for backup in dated:
        if not backup.reasons:
            day = backup.finished.date()
            delete_reasons[backup.id] = (
                "outside policy: %d day(s) old (daily keeps < %d); ISO week %s and month %04d-%02d are either outside "
                "the %d-week/%d-month windows or kept by a newer backup" % (
                    (today - day).days, policy["daily_days"], _week_label(day), day.year, day.month,
                    policy["weekly_weeks"], policy["monthly_months"]))
    return delete_reasons


def stale_temp_files(repository, now, hours=STALE_TEMP_HOURS):
    """``.tmp-*`` entries not modified for ``hours``: reported, never deleted (a backup may still be writing)."""
    limit = now.timestamp() - hours * 3600
    return [{"name": name, "age_hours": round((now.timestamp() - mtime) / 3600.0, 1)}
            for name, mtime in repository.temp_entries() if mtime < limit]


def _shares_files_with_other(backup_id, all_ids):
    """True when deleting ``backup_id`` (everything named ``<id>.*``) would also hit another backup's files."""
    prefix = backup_id + "."
    return any(other != backup_id and other.startswith(prefix) for other in all_ids)


def apply_retention(repository, policy, now=None, dry_run=False, database=None, kind=None, verified=None):
    """Apply the GFS ``policy`` to ``repository`` (any repository of storage.factory.open_repository:
    local, S3, Azure, SFTP; read and deleted through its interface); delete unless ``dry_run``.

    ``database``/``kind`` restrict which groups are looked at (``kind`` None or 'all': both);
    ``now`` (datetime or ISO 8601, default: the current UTC time) is what ages are measured
    from; ``verified`` replaces the built-in verification: a callable(manifest) -> bool or a
    dict {id: bool}. Returns {"kept": [...], "deleted": [...], "policy": ..., ...}; in a dry
    run "deleted" lists what would be deleted.
    """
    policy = normalize_policy(policy)
    now = _utc(now)
    if kind == "all":
        kind = None
    if kind is not None and kind not in KINDS:
        raise PgBackupError("Unknown backup kind '%s'." % kind, hint="Use logical, physical or all.")
    repository.check_access()  # retention never creates a repository; a remote one names the cause (credentials...)
    every_manifest = repository.list()
    problems = list(getattr(repository, "problems", []))
    all_ids = [manifest["id"] for manifest in every_manifest]
    manifests_by_id = dict((manifest["id"], manifest) for manifest in every_manifest)
    verifier = _chain_verifier(_as_verifier(verified, repository), manifests_by_id)
    groups = {}
    for manifest in every_manifest:
        if database is not None and manifest["database"] != database:
            continue
        if kind is not None and manifest["kind"] != kind:
            continue
        backup = _Backup(manifest)
        groups.setdefault(backup.group, []).append(backup)

    kept, deleted = [], []
    for group in sorted(groups):
        backups = groups[group]
        delete_reasons = _plan_group(backups, policy, now, verifier)
        for backup in sorted(backups, key=lambda b: b.id):
            reason = delete_reasons.get(backup.id)
            if reason and _shares_files_with_other(backup.id, all_ids):
                backup.keep("not deleted: another backup's id starts with '%s.', deleting would remove its files"
                            % backup.id)
                problems.append("Backup '%s' was due for deletion but kept: its id is a prefix of another backup's id."
                                % backup.id)
                reason = None
            entry = {"id": backup.id, "database": group[0], "kind": group[1],
                     "finished_at": backup.manifest.get("finished_at")}
            if len(chain_ids(backup.manifest)) > 1:
                entry["chain"] = chain_ids(backup.manifest)
            if reason:
                entry["reason"] = reason
                deleted.append(entry)
            else:
                entry["reasons"] = backup.reasons
                kept.append(entry)

    if not dry_run:
        # newest first: an interrupted run never leaves a backup whose chain lost a member
        for entry in sorted(deleted, key=lambda item: (item["finished_at"] or "", item["id"]), reverse=True):
            repository.delete(manifests_by_id[entry["id"]])

    return {
        "kept": kept,
        "deleted": deleted,
        "policy": policy,
        "now": manifests.isoformat(now),
        "dry_run": bool(dry_run),
        "stale_temp": stale_temp_files(repository, now),
        "problems": problems,
    }


def check_wal_archive(archive):
    """Raise a clear error unless the WAL archive (directory or remote archive) can be listed: called
    before any backup is deleted, so a wrong archive never leaves retention half done."""
    archive_entries(archive)


def prune_wal_for_kept(result, repository, archive, dry_run=False):
    """Delete archived WAL older than the oldest kept physical base backup of ``result`` needs.

    ``result`` is apply_retention()'s for ``repository``; ``archive`` a WAL archive directory or a
    ``wal_remote.RemoteWalArchive``. The oldest needed segment is the smallest ``wal_start_segment``
    of the kept physical backups, each chain counted by its full backup. When no physical backup is
    kept, or one lacks a ``wal_start_segment``, no WAL is deleted and ``reason`` says why. Returns
    {"archive", "oldest_needed", "oldest_backup", "removed", "kept", "dry_run", "reason"}.
    """
    report = {"archive": getattr(archive, "url", archive), "oldest_needed": None, "oldest_backup": None,
              "removed": [], "kept": None, "dry_run": bool(dry_run), "reason": ""}
    roots = sorted(set((entry.get("chain") or [entry["id"]])[0] for entry in result["kept"] if entry["kind"] == "physical"))
    if not roots:
        report["reason"] = ("no WAL deleted: no physical base backup is kept in this repository (for the database and "
                            "kind looked at), so nothing tells which WAL is still needed")
        return report
    starts = []
    for backup_id in roots:
        segment = repository.load(backup_id).get("wal_start_segment")
        if not SEGMENT.match(segment or ""):
            report["reason"] = ("no WAL deleted: kept physical backup '%s' has no wal_start_segment in its manifest"
                                % backup_id)
            return report
        starts.append((segment[8:], segment, backup_id))
    _position, oldest, backup_id = min(starts)
    pruned = prune_wal(archive, oldest, dry_run=dry_run)
    report.update(oldest_needed=oldest, oldest_backup=backup_id, removed=pruned["removed"], kept=pruned["kept"],
                  reason="WAL before %s (start of kept base backup '%s') is not needed by any kept backup"
                         % (oldest, backup_id))
    return report
