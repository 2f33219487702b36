# -*- coding: utf-8 -*-
"""Retention of incremental base backups (ops/retention.py): a full backup and the backups that depend on it
are kept or deleted whole, and only a chain whose members all verify counts as verified. Real manifests with
tiny artifacts, as in test_retention.py."""

from __future__ import absolute_import, division, print_function

import datetime
import json
import os

from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import retention
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical.base_backup_chain import chain_record
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.unit.plugins.module_utils.ops.test_retention import NOW, corrupt, ids, make_backup

POLICY = {"daily_days": 3, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 1}


def chain_backup(repo_path, days_ago, backup_type="full", parent=None):
    finished = NOW.replace(hour=2, minute=0) - datetime.timedelta(days=days_ago)
    manifest = make_backup(repo_path, finished, database="main", kind="physical", globals_=False)
    manifest.update(chain_record(backup_type, parent, manifest["id"]))
    with open(os.path.join(repo_path, manifest["id"] + ".manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return manifest


def weekly_chains(repo_path):
    """Two chains, a full and daily incrementals each: days 9..4 ago and 3..0 ago."""
    old = [chain_backup(repo_path, 9)]
    for days_ago in (8, 7, 6, 5, 4):
        old.append(chain_backup(repo_path, days_ago, "incr", old[-1]))
    new = [chain_backup(repo_path, 3)]
    for days_ago in (2, 1, 0):
        new.append(chain_backup(repo_path, days_ago, "diff", new[0]))
    return old, new


def test_a_kept_backup_keeps_its_whole_chain_and_an_unneeded_chain_goes_whole(tmp_path):
    repo = LocalRepository(str(tmp_path))
    old, new = weekly_chains(repo.path)
    preview = retention.apply_retention(repo, POLICY, now=NOW, dry_run=True)
    assert ids(preview["deleted"]) == sorted(m["id"] for m in old)
    kept = dict((entry["id"], entry) for entry in preview["kept"])
    assert set(kept) == set(m["id"] for m in new)
    assert kept[new[0]["id"]]["reasons"] == ["chain of %s: kept whole with %s" % (
        new[0]["id"], ", ".join(m["id"] for m in new[1:]))]
    assert preview["deleted"][-1]["chain"] == old[-1]["chain"]

    # one daily backup of the old chain still inside the window keeps the old chain, all of it
    preview = retention.apply_retention(repo, dict(POLICY, daily_days=6), now=NOW, dry_run=True)
    assert preview["deleted"] == []
    reasons = dict((entry["id"], entry["reasons"]) for entry in preview["kept"])
    assert reasons[old[0]["id"]] == ["chain of %s: kept whole with %s, %s" % (old[0]["id"], old[-2]["id"], old[-1]["id"])]

    result = retention.apply_retention(repo, POLICY, now=NOW)
    assert ids(result["deleted"]) == sorted(m["id"] for m in old)
    assert sorted(m["id"] for m in repo.list()) == sorted(m["id"] for m in new)


def test_a_chain_with_a_damaged_member_is_not_the_newest_verified(tmp_path):
    repo = LocalRepository(str(tmp_path))
    old, new = weekly_chains(repo.path)
    corrupt(repo.path, new[0])  # every backup of the new chain needs this full backup
    result = retention.apply_retention(repo, dict(POLICY, daily_days=0, keep_last=0), now=NOW, dry_run=True)
    kept = dict((entry["id"], entry["reasons"]) for entry in result["kept"])
    assert "newest backup that verifies (never deleted)" in kept[old[-1]["id"]]
    assert set(m["id"] for m in old) <= set(kept)
    assert ids(result["deleted"]) == sorted(m["id"] for m in new)
