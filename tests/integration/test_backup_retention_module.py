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
