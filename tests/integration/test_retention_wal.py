# -*- coding: utf-8 -*-
"""backup_retention with wal_archive on real PostgreSQL 15: WAL older than the oldest kept base backup goes,
the WAL that backup needs for PITR stays, check mode deletes nothing, and no kept physical backup means no WAL
deleted; a WAL archive in S3 (moto_server) is cleaned the same way."""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_remote
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.factory import open_repository
from tests.lib.ansible_run import run_playbook
from tests.lib.archiving import wait_archived
from tests.lib.servers import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, moto  # noqa: F401,F811  # pylint: disable=unused-import

KEEP_NEWEST = {"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 1}


def play(module, args):
    return "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - name: Run\n      %s: %s\n" % (module, json.dumps(args))


def connection(cluster, **extra):
    args = {"host": cluster.host, "port": cluster.port, "user": cluster.user, "password": cluster.password}
    args.update(extra)
    return args


def segments(archive):
    """The plain WAL segments of a directory archive (not .backup, .partial, history or sidecar files)."""
    return sorted(name for name in os.listdir(archive) if len(name) == 24 and "." not in name)


@pytest.fixture(scope="module")
def two_backups(archiving_pg15, collections_root):
    """Two base backups with WAL between them, and a private copy of the archive (the session's is shared)."""
    source = archiving_pg15.cluster
    repo = archiving_pg15.new_repository("walprune-%s" % uuid.uuid4().hex[:6])
    taken = []
    for _round in range(2):
        result = run_playbook(play("todoapi.pgbackup.pg_basebackup", connection(source, repository=repo)),
                              collections_root=collections_root).task("Run")
        taken.append(result["backup"])
        wait_archived(source)
        wait_archived(source)
    archive = os.path.join(archiving_pg15.base, "walprune-archive-%s" % uuid.uuid4().hex[:6])
    shutil.copytree(archiving_pg15.archive, archive)
    pristine = archive + "-pristine"
    shutil.copytree(archive, pristine)
    yield repo, archive, taken, pristine
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.rmtree(archive, ignore_errors=True)
    shutil.rmtree(repo, ignore_errors=True)


def test_a_missing_wal_archive_fails_before_any_backup_is_deleted(two_backups, ansible_playbook, tmp_path):
    repo, _archive, (older, _newer), _pristine = two_backups
    manifests_before = sorted(name for name in os.listdir(repo) if name.endswith(".manifest.json"))
    args = dict(KEEP_NEWEST, repository=repo, keep_last=0, wal_archive=str(tmp_path / "nowhere"))
    failed = ansible_playbook(play("todoapi.pgbackup.backup_retention", args), expect_failure=True).task("Run")
    assert failed["failed"] and "nowhere" in failed["msg"]
    assert older["id"] + ".manifest.json" in manifests_before  # the policy would have deleted it
    assert sorted(name for name in os.listdir(repo) if name.endswith(".manifest.json")) == manifests_before


def test_wal_before_the_oldest_kept_backup_goes_the_rest_stays(two_backups, ansible_playbook):
    repo, archive, (older, newer), _pristine = two_backups
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


def test_a_wal_archive_in_s3_is_cleaned_the_same_way(two_backups, moto, ansible_playbook):
    """Runs after the local test: the repository keeps the newer backup only; the S3 archive gets every segment."""
    pytest.importorskip("boto3")
    repo, _archive, (_older, newer), pristine = two_backups
    start = json.load(open(os.path.join(repo, newer["id"] + ".manifest.json")))["wal_start_segment"]
    url = "s3://%s/wal" % moto.create_bucket()
    remote = wal_remote.RemoteWalArchive(open_repository(url, **moto.options()))
    pushed = segments(pristine)
    for name in pushed:
        wal_remote.archive_segment(os.path.join(pristine, name), name, remote)
    args = dict(KEEP_NEWEST, repository=repo, kind="physical", wal_archive=url, s3_endpoint_url=moto.endpoint,
                s3_region=S3_REGION, aws_access_key=S3_ACCESS_KEY, aws_secret_key=S3_SECRET_KEY)
    planned = ansible_playbook(play("todoapi.pgbackup.backup_retention", args), check=True).task("Run")
    older_names = [name for name in pushed if name[8:24] < start[8:24]]
    assert older_names and planned["wal"]["oldest_needed"] == start
    assert sorted(name for name in planned["wal"]["removed"] if name in pushed) == older_names
    assert segments_of(remote) == pushed, "check mode deletes nothing"
    done = ansible_playbook(play("todoapi.pgbackup.backup_retention", args)).task("Run")
    assert done["changed"] is True
    assert segments_of(remote) == [name for name in pushed if name[8:24] >= start[8:24]]


def segments_of(remote):
    return sorted(name for name in remote.entries() if len(name) == 24 and "." not in name)
