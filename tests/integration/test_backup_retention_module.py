# -*- coding: utf-8 -*-
"""todoapi.pgbackup.backup_retention through ansible-playbook on a generated repository."""

from __future__ import absolute_import, division, print_function

import datetime
import hashlib
import json
import os

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import manifest as manifests

PLAYBOOK = """
- name: Retention
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Apply retention
      todoapi.pgbackup.backup_retention:
        repository: "{{ repo }}"
        database: "{{ db | default(omit) }}"
        daily_days: 10
        weekly_weeks: 4
        monthly_months: 3
"""


def make_backup(repo_path, finished, database="TodoDb", kind="logical"):
    backup_id = manifests.new_backup_id(kind, database, finished)
    data = ("dump of %s" % backup_id).encode()
    with open(os.path.join(repo_path, backup_id + ".dump.zst"), "wb") as handle:
        handle.write(data)
    manifest = {"manifest_version": 1, "id": backup_id, "kind": kind, "database": database,
                "artifact": backup_id + ".dump.zst", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "started_at": manifests.isoformat(finished), "finished_at": manifests.isoformat(finished)}
    with open(os.path.join(repo_path, backup_id + manifests.MANIFEST_SUFFIX), "w") as handle:
        json.dump(manifest, handle)
    return backup_id


def test_check_mode_lists_real_run_deletes_second_run_is_unchanged(tmp_repo, ansible_playbook):
    now = manifests.utcnow().replace(second=0, microsecond=0) - datetime.timedelta(minutes=1)
    backup_ids = [make_backup(tmp_repo, now - datetime.timedelta(days=back)) for back in range(200)]
    other = [make_backup(tmp_repo, now - datetime.timedelta(days=back), database="Other") for back in (401, 400)]
    temp = os.path.join(tmp_repo, ".tmp-in-progress.dump.zst")
    with open(temp, "w") as handle:
        handle.write("partial")
    before = sorted(os.listdir(tmp_repo))

    planned = ansible_playbook(PLAYBOOK, extra_vars={"repo": tmp_repo}, check=True).task("Apply retention")
    assert planned["changed"] is True
    assert sorted(os.listdir(tmp_repo)) == before
    would_go = sorted(entry["id"] for entry in planned["deleted"])
    assert other[0] in would_go and other[1] not in would_go
    assert all(entry["reason"].startswith("outside policy") for entry in planned["deleted"])
    kept = dict((entry["id"], entry["reasons"]) for entry in planned["kept"])
    assert set(backup_ids[:10]) <= set(kept)  # the 10 newest days
    assert any(reason.startswith("daily:") for reason in kept[backup_ids[0]])
    assert "newest backup that verifies (never deleted)" in kept[other[1]]
    assert planned["policy"] == {"daily_days": 10, "weekly_weeks": 4, "monthly_months": 3, "keep_last": 1}
    assert len(kept) + len(would_go) == 202
    assert len(kept) <= 10 + 4 + 3 + 1

    done = ansible_playbook(PLAYBOOK, extra_vars={"repo": tmp_repo}).task("Apply retention")
    assert done["changed"] is True
    assert sorted(entry["id"] for entry in done["deleted"]) == would_go
    left = os.listdir(tmp_repo)
    for backup_id in would_go:
        assert backup_id + ".manifest.json" not in left and backup_id + ".dump.zst" not in left
    for backup_id in kept:
        assert backup_id + ".manifest.json" in left and backup_id + ".dump.zst" in left
    assert os.path.exists(temp)

    again = ansible_playbook(PLAYBOOK, extra_vars={"repo": tmp_repo}).task("Apply retention")
    assert again["changed"] is False
    assert again["deleted"] == []
    assert sorted(entry["id"] for entry in again["kept"]) == sorted(kept)


def test_database_filter_and_missing_repository(tmp_repo, ansible_playbook):
    todo = [make_backup(tmp_repo, datetime.datetime(2020, 1, day, tzinfo=datetime.timezone.utc)) for day in (1, 2)]
    other = [make_backup(tmp_repo, datetime.datetime(2020, 1, day, tzinfo=datetime.timezone.utc), database="Other")
             for day in (1, 2)]
    result = ansible_playbook(PLAYBOOK, extra_vars={"repo": tmp_repo, "db": "Other"}).task("Apply retention")
    assert [entry["id"] for entry in result["deleted"]] == [other[0]]
    assert all(os.path.exists(os.path.join(tmp_repo, backup_id + ".manifest.json")) for backup_id in todo)

    failed = ansible_playbook(PLAYBOOK, extra_vars={"repo": os.path.join(tmp_repo, "missing")},
                              expect_failure=True).task("Apply retention")
    assert failed["failed"] and "does not exist" in failed["msg"]


PREVIEW_PLAYBOOK = PLAYBOOK + '        as_of: "{{ as_of }}"\n'


def daily_backups_2020(repo_path):
    """One backup at 02:00 UTC every day from 2020-01-01 to 2020-03-31: {date: id}."""
    first = datetime.datetime(2020, 1, 1, 2, 0, tzinfo=datetime.timezone.utc)
    moments = [first + datetime.timedelta(days=day) for day in range(91)]
    return dict((moment.date(), make_backup(repo_path, moment)) for moment in moments)


def test_as_of_previews_the_policy_at_another_date_in_check_mode(tmp_repo, ansible_playbook):
    by_day = daily_backups_2020(tmp_repo)
    before = sorted(os.listdir(tmp_repo))

    # 12:00 at +01:00 is 11:00 UTC on Saturday 2020-02-15: that day's 02:00 backup is in the past.
    preview = ansible_playbook(PREVIEW_PLAYBOOK, extra_vars={"repo": tmp_repo, "as_of": "2020-02-15T12:00:00+01:00"},
                               check=True).task("Apply retention")
    assert sorted(os.listdir(tmp_repo)) == before
    assert preview["now"] == "2020-02-15T11:00:00.000000Z"
    day = datetime.date
    # daily_days 10: Feb 6-15; weekly_weeks 4: newest of the ISO weeks starting Feb 10, Feb 3, Jan 27, Jan 20
    # (Feb 15, Feb 9, Feb 2, Jan 26); monthly_months 3: newest of February and January (Feb 15, Jan 31).
    kept_in_the_past = set(day(2020, 2, d) for d in range(6, 16)) | {day(2020, 2, 2), day(2020, 1, 26), day(2020, 1, 31)}
    expected_deleted = sorted(by_day[d] for d in by_day if d < day(2020, 2, 16) and d not in kept_in_the_past)
    assert sorted(entry["id"] for entry in preview["deleted"]) == expected_deleted
    kept = dict((entry["id"], entry["reasons"]) for entry in preview["kept"])
    assert set(kept) == set(by_day[d] for d in kept_in_the_past) | set(by_day[d] for d in by_day if d > day(2020, 2, 15))
    assert kept[by_day[day(2020, 3, 31)]][0].startswith("future-dated")
    assert "keep_last: one of the 1 newest" in kept[by_day[day(2020, 2, 15)]]

    # A date alone is 00:00 UTC: the backup of 02:00 that day is future-dated, keep_last goes to the day before.
    midnight = ansible_playbook(PREVIEW_PLAYBOOK, extra_vars={"repo": tmp_repo, "as_of": "2020-02-15"},
                                check=True).task("Apply retention")
    assert midnight["now"] == "2020-02-15T00:00:00.000000Z"
    kept = dict((entry["id"], entry["reasons"]) for entry in midnight["kept"])
    assert kept[by_day[day(2020, 2, 15)]][0].startswith("future-dated")
    assert "keep_last: one of the 1 newest" in kept[by_day[day(2020, 2, 14)]]
    assert sorted(os.listdir(tmp_repo)) == before


def test_as_of_is_refused_outside_check_mode_and_a_bad_value_is_named(tmp_repo, ansible_playbook):
    by_day = daily_backups_2020(tmp_repo)
    before = sorted(os.listdir(tmp_repo))

    refused = ansible_playbook(PREVIEW_PLAYBOOK, extra_vars={"repo": tmp_repo, "as_of": "2020-02-15"},
                               expect_failure=True).task("Apply retention")
    assert refused["failed"] and "only accepted in check mode" in refused["msg"]
    assert "check_mode: true" in refused["hint"]
    assert "deleted" not in refused
    assert sorted(os.listdir(tmp_repo)) == before

    for value in ("last tuesday", "2020-02-30", "9999-12-31T23:59:59-01:00"):
        bad = ansible_playbook(PREVIEW_PLAYBOOK, extra_vars={"repo": tmp_repo, "as_of": value}, check=True,
                               expect_failure=True).task("Apply retention")
        assert bad["msg"] == "as_of=%r is not an ISO 8601 date or time." % value
        assert "2024-06-30T23:59:59Z" in bad["hint"]
    assert sorted(os.listdir(tmp_repo)) == before
    assert len(by_day) == 91
