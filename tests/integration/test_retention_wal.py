# -*- coding: utf-8 -*-
"""backup_retention with wal_archive on real PostgreSQL 15: WAL older than the oldest kept base backup goes,
the WAL that backup needs for PITR stays, check mode deletes nothing, and no kept physical backup means no WAL
deleted."""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import uuid

import pytest

from tests.lib.ansible_run import run_playbook
from tests.lib.archiving import wait_archived

KEEP_NEWEST = {"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 1}


def play(module, args):
    return "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - name: Run\n      %s: %s\n" % (module, json.dumps(args))


def connection(cluster, **extra):
    args = {"host": cluster.host, "port": cluster.port, "user": cluster.user, "password": cluster.password}
    args.update(extra)
    return args


def segments(archive):
    return sorted(name[:24] for name in os.listdir(archive) if len(name) >= 24 and name[:24].isalnum() and "." not in name[:24])


@pytest.fixture(scope="module")
def two_backups(archiving_pg15, collections_root):
    """Two base backups with WAL between them, and a private copy of the archive (the session's is shared)."""
    source = archiving_pg15.cluster
    repo = archiving_pg15.new_repository("walprune-%s" % uuid.uuid4().hex[:6])
    taken = []
    for _ in range(2):
        result = run_playbook(play("todoapi.pgbackup.pg_basebackup", connection(source, repository=repo)),
                              collections_root=collections_root).task("Run")
        taken.append(result["backup"])
        wait_archived(source)
        wait_archived(source)
    archive = os.path.join(archiving_pg15.base, "walprune-archive-%s" % uuid.uuid4().hex[:6])
    shutil.copytree(archiving_pg15.archive, archive)
    yield repo, archive, taken
    shutil.rmtree(archive, ignore_errors=True)
    shutil.rmtree(repo, ignore_errors=True)


def test_a_missing_wal_archive_fails_before_any_backup_is_deleted(two_backups, ansible_playbook, tmp_path):
    repo, _archive, (older, _newer) = two_backups
    manifests_before = sorted(name for name in os.listdir(repo) if name.endswith(".manifest.json"))
    args = dict(KEEP_NEWEST, repository=repo, keep_last=0, wal_archive=str(tmp_path / "nowhere"))
    failed = ansible_playbook(play("todoapi.pgbackup.backup_retention", args), expect_failure=True).task("Run")
    assert failed["failed"] and "nowhere" in failed["msg"]
    assert older["id"] + ".manifest.json" in manifests_before  # the policy would have deleted it
    assert sorted(name for name in os.listdir(repo) if name.endswith(".manifest.json")) == manifests_before


def test_wal_before_the_oldest_kept_backup_goes_the_rest_stays(two_backups, ansible_playbook):
    repo, archive, (older, newer) = two_backups
    start = json.load(open(os.path.join(repo, newer["id"] + ".manifest.json")))["wal_start_segment"]
    older_start = json.load(open(os.path.join(repo, older["id"] + ".manifest.json")))["wal_start_segment"]
    args = dict(KEEP_NEWEST, repository=repo, kind="physical", wal_archive=archive)
    before = sorted(os.listdir(archive))
    assert any(name[8:24] < start[8:24] for name in segments(archive))

    logical_only = ansible_playbook(play("todoapi.pgbackup.backup_retention", dict(args, kind="logical")),
                                    check=True).task("Run")
    assert logical_only["wal"]["removed"] == [] and "no physical base backup is kept" in logical_only["wal"]["reason"]

    planned = ansible_playbook(play("todoapi.pgbackup.backup_retention", args), check=True).task("Run")
    assert planned["changed"] is True
    assert [entry["id"] for entry in planned["deleted"]] == [older["id"]]
    wal = planned["wal"]
    assert wal["dry_run"] is True and wal["oldest_needed"] == start and wal["oldest_backup"] == newer["id"]
    assert older_start in [name[:24] for name in wal["removed"]]
    assert all(name[8:24] < start[8:24] for name in wal["removed"])
    assert sorted(os.listdir(archive)) == before  # check mode deletes nothing
    assert os.path.exists(os.path.join(repo, older["id"] + ".manifest.json"))

    done = ansible_playbook(play("todoapi.pgbackup.backup_retention", args)).task("Run")
    assert done["changed"] is True and done["wal"]["dry_run"] is False
    assert sorted(done["wal"]["removed"]) == sorted(wal["removed"])
    left = os.listdir(archive)
    assert not set(wal["removed"]) & set(left)
    assert sorted(set(before) - set(left)) == sorted(wal["removed"])
    kept = segments(archive)
    assert start in kept and all(name[8:24] >= start[8:24] for name in kept)  # what PITR from the newer needs
    assert not os.path.exists(os.path.join(repo, older["id"] + ".manifest.json"))

    again = ansible_playbook(play("todoapi.pgbackup.backup_retention", args)).task("Run")
    assert again["changed"] is False and again["wal"]["removed"] == []
