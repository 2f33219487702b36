#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: backup_retention
short_description: Delete old backups from a repository by a daily/weekly/monthly (GFS) policy
version_added: 0.1.0
description:
  - Applies a grandfather-father-son retention policy to the complete backups (those with a manifest) of a
    repository, separately for every database and kind (logical/physical).
  - A backup is kept when it is younger than O(daily_days) UTC calendar days, or is the newest backup of an ISO
    week within the last O(weekly_weeks) weeks, or the newest backup of a calendar month within the last
    O(monthly_months) months, or one of the O(keep_last) newest. Everything else is deleted, artifact, extra files
    (globals), sidecars and manifest together.
  - The defaults implement "30 days of daily backups, weekly for 3 months, monthly for 1 year". Unlike an
    mtime-based C(find -mtime +30 -delete), the weekly and monthly backups really survive.
  - The backup time is the manifest's C(finished_at) (UTC), never a file's modification time.
  - "Safety rules: the newest backup whose files match their manifest's size and sha256 (and whose latest
    C(verify) sidecar entry, if any, did not fail) is never deleted, however old it is; if no backup of a group
    verifies, nothing of that group is deleted; C(.tmp-*) work in progress, files without a manifest and damaged
    manifests are never touched (temp files older than 24 hours are only reported in RV(stale_temp))."
  - A backup whose C(finished_at) lies after the current time (clock skew) is kept, and ignored by every other
    rule, so it can never be the reason another backup is deleted.
  - O(as_of) previews the policy at another date in check mode; outside check mode it is refused.
  - A URL O(repository) (C(s3://), C(azure://), C(sftp://)) is pruned the same way, through its storage. The
    manifests and verification records are read there, the checksum of the newest backups is read as a stream
    (nothing is downloaded), and a backup is deleted manifest first, then its artifact, extra files and sidecars.
    Each repository has its own policy, one task per repository (for example 7 days locally, a year of
    monthly backups in S3).
extends_documentation_fragment:
  - todoapi.pgbackup.remote.repository
  - todoapi.pgbackup.remote
options:
  database:
    description:
      - Only apply retention to backups of this database (exact, case-sensitive name). By default every database
        in the repository is handled, each on its own.
    type: str
  kind:
    description: Which kind of backups to apply retention to; V(all) handles logical and physical groups separately.
    type: str
    choices: [logical, physical, all]
    default: all
  daily_days:
    description:
      - Keep every backup whose UTC calendar date is less than this many days before today's (V(30) keeps today and
        the 29 days before). V(0) disables the rule.
    type: int
    default: 30
  weekly_weeks:
    description:
      - Keep the newest backup of each ISO week (Monday to Sunday, UTC), for the current week and the
        O(weekly_weeks) - 1 weeks before it. V(13) is about 3 months. V(0) disables the rule.
    type: int
    default: 13
  monthly_months:
    description:
      - Keep the newest backup of each calendar month (UTC), for the current month and the O(monthly_months) - 1
        months before it. V(0) disables the rule.
    type: int
    default: 12
  keep_last:
    description:
      - Always keep this many of the newest backups of each group, whatever their age. V(0) disables the rule
        (the newest backup that verifies is kept regardless).
    type: int
    default: 1
  as_of:
    description:
      - Measure ages from this moment instead of the current time, to preview what the policy would keep and
        delete at another date (for example at the end of the month, or after a change of O(daily_days)).
      - An ISO 8601 date or date and time, such as V(2024-06-30) or V(2024-06-30T23:59:59+02:00); a value
        without a zone is UTC, and a date alone means 00:00:00 UTC of that day, so backups finished later that day
        count as future-dated (kept and ignored by the other rules). Give V(2024-06-30T23:59:59Z) to judge them too.
      - Only accepted in check mode, which deletes nothing. Outside check mode the task fails before it looks at
        the repository, so a mistyped date can never delete backups the policy still keeps today.
      - RV(now) returns this moment in UTC; the 24-hour C(.tmp-*) check of RV(stale_temp) is measured from it too.
    type: str
    version_added: 0.2.0
  wal_archive:
    description:
      - The WAL archive of the cluster whose physical backups this repository holds; a directory or a C(s3://),
        C(azure://) or C(sftp://) URL, read with the same storage options as O(repository).
      - After the policy is applied, archived WAL older than the C(wal_start_segment) of the oldest kept physical
        base backup (for an incremental backup, of its chain's full backup) is deleted, with its sidecar files;
        timeline history files are always kept. In check mode nothing is deleted and RV(wal.removed) lists what
        would go.
      - When no physical backup is kept (for the O(database) and O(kind) looked at), no WAL is deleted and
        RV(wal.reason) says why; the archive is never emptied.
      - The archive is listed before any backup is deleted, so a wrong path or URL fails the task with nothing
        deleted.
    type: str
    version_added: 0.2.0
notes:
  - Supports check mode, which deletes nothing and returns in RV(deleted) what would be deleted and why, and in
    RV(kept) which rules keep each other backup.
  - Verifying the newest backups reads their files completely (sha256); usually only the newest one per group.
  - O(owner) is accepted for uniformity with the other modules; retention only deletes and changes no ownership.
  - Options that only matter for uploads (O(s3_sse), O(s3_kms_key_id), chunk sizes) have no effect here.
requirements:
  - boto3 for C(s3://), azure-storage-blob for C(azure://), paramiko for C(sftp://) repositories
seealso:
  - module: todoapi.pgbackup.pg_dump
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Apply the default policy (30 days daily, 13 weeks weekly, 12 months monthly)
  todoapi.pgbackup.backup_retention:
    repository: /var/backups/todoapi
  become: true
  become_user: postgres

- name: Show what a shorter policy would delete for TodoDb's logical backups
  todoapi.pgbackup.backup_retention:
    repository: /var/backups/todoapi
    database: TodoDb
    kind: logical
    daily_days: 7
    weekly_weeks: 4
    monthly_months: 6
    keep_last: 3
  check_mode: true
  register: retention

- name: List the backups that would go
  ansible.builtin.debug:
    msg: "{{ retention.deleted | map(attribute='id') | list }}"

- name: Preview which backups the default policy still keeps at the end of the year
  todoapi.pgbackup.backup_retention:
    repository: /var/backups/todoapi
    as_of: "2024-12-31T23:59:59Z"
  check_mode: true
  register: year_end

- name: Keep a year of monthly backups off-site, on an SFTP server
  todoapi.pgbackup.backup_retention:
    repository: sftp://backup@vault.example.com/srv/backups/todoapi
    sftp_key_file: /etc/todoapi-pgbackup/sftp_key
    daily_days: 7
    weekly_weeks: 0
    monthly_months: 12

- name: Apply the policy and delete the WAL no kept base backup needs
  todoapi.pgbackup.backup_retention:
    repository: /var/backups/todoapi
    kind: physical
    wal_archive: /var/lib/postgresql/wal_archive
  become: true
  become_user: postgres

- name: The same for a repository and WAL archive in S3
  todoapi.pgbackup.backup_retention:
    repository: s3://todoapi-backups/basebackups
    wal_archive: s3://todoapi-backups/wal
    s3_region: eu-west-1
    daily_days: 7
'''

RETURN = r'''
kept:
  description: Backups that are kept, with every rule that keeps them.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Backup id.
      type: str
      sample: 20240106T020000Z_logical_TodoDb
    database:
      description: Database of the backup.
      type: str
    kind:
      description: V(logical) or V(physical).
      type: str
    finished_at:
      description: The manifest's C(finished_at) (UTC, ISO 8601).
      type: str
    reasons:
      description: Why it is kept.
      type: list
      elements: str
      sample: ["daily: 3 day(s) old, within 30 days", "weekly: newest of ISO week 2024-W01, within 13 weeks"]
deleted:
  description: Backups deleted (in check mode, those that would be deleted), with the reason.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Backup id.
      type: str
    database:
      description: Database of the backup.
      type: str
    kind:
      description: V(logical) or V(physical).
      type: str
    finished_at:
      description: The manifest's C(finished_at) (UTC, ISO 8601).
      type: str
    reason:
      description: Why it is (or would be) deleted.
      type: str
policy:
  description: The policy applied, with defaults filled in.
  returned: always
  type: dict
  sample: {"daily_days": 30, "weekly_weeks": 13, "monthly_months": 12, "keep_last": 1}
now:
  description: The time ages were measured from (UTC, ISO 8601); O(as_of) when given, else the current time.
  returned: always
  type: str
  sample: "2024-12-31T23:59:59.000000Z"
stale_temp:
  description:
    - C(.tmp-*) entries not modified for 24 hours (likely left by a killed backup or upload); reported, not deleted.
    - Always empty for S3 and Azure, where a file appears only when complete.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: File or directory name in the repository.
      type: str
    age_hours:
      description: Hours since its last modification.
      type: float
wal:
  description: What O(wal_archive) cleanup did (in check mode, would do).
  returned: when O(wal_archive) is given
  type: dict
  contains:
    archive:
      description: The WAL archive, as given.
      type: str
    oldest_needed:
      description: The oldest WAL segment kept (the start of RV(wal.oldest_backup)); null when no WAL was deleted.
      type: str
      sample: 000000010000000000000042
    oldest_backup:
      description: The kept base backup whose start decides RV(wal.oldest_needed).
      type: str
    removed:
      description: Archive entries deleted (in check mode, that would be deleted), sidecars included.
      type: list
      elements: str
    kept:
      description: Number of WAL segments at or after RV(wal.oldest_needed) that stay; null when nothing was looked at.
      type: int
    dry_run:
      description: True in check mode.
      type: bool
    reason:
      description: Why WAL was or was not deleted.
      type: str
      sample: "no WAL deleted: no physical base backup is kept in this repository (for the database and kind looked at), ..."
problems:
  description: Manifests that could not be read, and backups kept for safety reasons worth a look.
  returned: always
  type: list
  elements: str
'''

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import manifest as manifests
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import retention
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import STORAGE_ARGS, archive_from, repository_from
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import run_or_fail


def preview_time(module):
    """O(as_of) as the moment to measure ages from, or None for the current time.

    Refused outside check mode: a date in the future would make a real run delete backups the
    policy still keeps today.
    """
    as_of = module.params["as_of"]
    if as_of is None:
        return None
    if not module.check_mode:
        module.fail_json(msg="as_of=%r previews the policy at another date and is only accepted in check mode, "
                             "which deletes nothing." % as_of,
                         hint="Run the task with check_mode: true (or ansible-playbook --check), or leave as_of out "
                              "to apply the policy as of now.")
    try:
        return manifests.parse_time(as_of).astimezone(datetime.timezone.utc)
    except (PgBackupError, OverflowError):  # OverflowError: an offset pushes year 1 or 9999 out of range
        module.fail_json(msg="as_of=%r is not an ISO 8601 date or time." % as_of,
                         hint="Write it like 2024-06-30 (00:00:00 UTC) or 2024-06-30T23:59:59Z; "
                              "a time without a zone is UTC.")


def main():
    spec = dict(STORAGE_ARGS)
    spec.update(
        database=dict(type="str"),
        kind=dict(type="str", default="all", choices=["logical", "physical", "all"]),
        daily_days=dict(type="int", default=retention.DEFAULT_POLICY["daily_days"]),
        weekly_weeks=dict(type="int", default=retention.DEFAULT_POLICY["weekly_weeks"]),
        monthly_months=dict(type="int", default=retention.DEFAULT_POLICY["monthly_months"]),
        keep_last=dict(type="int", default=retention.DEFAULT_POLICY["keep_last"]),
        as_of=dict(type="str"),
        wal_archive=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    now = preview_time(module)
    params = module.params
    policy = dict((key, params[key]) for key in retention.DEFAULT_POLICY)
    repository = repository_from(module)
    archive = archive_from(module, "wal_archive") if params["wal_archive"] else None
    if archive is not None:
        run_or_fail(module, retention.check_wal_archive, archive)
    result = run_or_fail(module, retention.apply_retention, repository, policy, now=now,
                         dry_run=module.check_mode, database=params["database"], kind=params["kind"])
    result.pop("dry_run", None)
    if archive is not None:
        prune_wal(module, result, repository, archive)
    module.exit_json(changed=bool(result["deleted"]) or bool(result.get("wal", {}).get("removed")), **result)


def prune_wal(module, result, repository, archive):
    """Add ``wal`` to ``result``; on failure report what retention already deleted, then fail."""
    try:
        result["wal"] = retention.prune_wal_for_kept(result, repository, archive, dry_run=module.check_mode)
    except PgBackupError as exc:
        module.fail_json(msg="Retention was applied, but the WAL archive was not cleaned: %s" % exc,
                         hint=exc.hint or "Fix the cause and run the task again; the kept backups are unchanged.",
                         **result)


if __name__ == "__main__":
    main()
