# -*- coding: utf-8 -*-
"""Faults around retention: it runs while a backup is being written or published, and a host
clock was skewed into the future when a backup was taken. Real backups, real deletions."""

from __future__ import absolute_import, division, print_function

import datetime

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import manifest as manifests
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import retention
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.integration.faults.faultlib import (BackgroundCall, manifest_ids, paused_dump, repo_snapshot, rewrite_manifest,
                                               take_backup, temp_entries)

# Keeps only the newest backup (and the safety rules): the harshest policy there is.
KEEP_ONE = {"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 1}


def backdate(repo_path, manifest, days):
    moment = manifests.utcnow() - datetime.timedelta(days=days)
    return rewrite_manifest(repo_path, manifest["id"], finished_at=manifests.isoformat(moment),
                            started_at=manifests.isoformat(moment - datetime.timedelta(seconds=5)))


def test_retention_during_a_backup_never_touches_its_work_files_nor_the_backup_it_publishes(
        monkeypatch, pg, todo_db, tmp_repo):
    old = backdate(tmp_repo, take_backup(pg, todo_db.name, tmp_repo), 90)
    newest = backdate(tmp_repo, take_backup(pg, todo_db.name, tmp_repo), 60)
    repo = LocalRepository(tmp_repo)

    with paused_dump(monkeypatch, after_bytes=1) as (streaming, resume):
        running = BackgroundCall(take_backup, pg, todo_db.name, tmp_repo, compression="none")
        assert streaming.wait(60)
        work_files = temp_entries(tmp_repo)
        assert work_files
        work_state = dict((k, v) for k, v in repo_snapshot(tmp_repo).items() if k.startswith(".tmp-"))

        # Retention while the backup is half-written: its .tmp- files are no candidates.
        result = retention.apply_retention(repo, KEEP_ONE)
        assert [entry["id"] for entry in result["deleted"]] == [old["id"]]
        assert temp_entries(tmp_repo) == work_files
        assert dict((k, v) for k, v in repo_snapshot(tmp_repo).items() if k.startswith(".tmp-")) == work_state

        # Retention during which the backup gets published: it decided on the backups it listed.
        published = []

        def verified_while_publishing(manifest):
            if not published:
                resume.set()
                published.append(running.result())
            return True

        result = retention.apply_retention(repo, KEEP_ONE, verified=verified_while_publishing)
        fresh = published[0]
        assert fresh["id"] not in [entry["id"] for entry in result["deleted"] + result["kept"]]

    assert manifest_ids(tmp_repo) == sorted([newest["id"], fresh["id"]])
    repo.verify_checksum(repo.load(fresh["id"]))
    assert temp_entries(tmp_repo) == []
    # The next run of retention, with the published backup in view, keeps it (the newest).
    result = retention.apply_retention(repo, KEEP_ONE)
    assert manifest_ids(tmp_repo) == [fresh["id"]]
    assert [entry["id"] for entry in result["kept"]] == [fresh["id"]]


def test_future_dated_backup_does_not_cost_the_good_one(pg, todo_db, tmp_repo):
    """A backup taken on a host whose clock ran a year ahead must not push the real newest
    backup out of keep_last / newest-verified: it is kept, and so is the correctly dated one."""
    good = backdate(tmp_repo, take_backup(pg, todo_db.name, tmp_repo), 40)
    older = backdate(tmp_repo, take_backup(pg, todo_db.name, tmp_repo), 50)
    skewed = take_backup(pg, todo_db.name, tmp_repo)
    future = manifests.utcnow() + datetime.timedelta(days=365)
    rewrite_manifest(tmp_repo, skewed["id"], finished_at=manifests.isoformat(future),
                     started_at=manifests.isoformat(future - datetime.timedelta(seconds=5)))
    repo = LocalRepository(tmp_repo)
    for manifest in repo.list():
        repo.verify_checksum(manifest)  # all three are intact: only their times differ

    result = retention.apply_retention(repo, KEEP_ONE)

    assert [entry["id"] for entry in result["deleted"]] == [older["id"]]
    assert manifest_ids(tmp_repo) == sorted([good["id"], skewed["id"]])
    kept = dict((entry["id"], entry["reasons"]) for entry in result["kept"])
    assert any("future-dated" in reason for reason in kept[skewed["id"]])
    assert any("keep_last" in reason for reason in kept[good["id"]])
    repo.verify_checksum(repo.load(good["id"]))
