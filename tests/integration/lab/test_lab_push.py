# -*- coding: utf-8 -*-
"""The *push* deployment shape on the lab (docs/topologies.md), over SSH as pgbackup-lab with become:
db1 and db2 back up with role todoapi.pgbackup.backup into their own repository and copy every backup to
sftp:// on backup1 (the second entry of pgbackup_repositories); role wal_archiving pushes their WAL to
sftp:// on backup1 as well. The test then looks on backup1's own disk: each backup is there, byte for byte
the one in the DB host's repository, and so are the WAL segments both primaries archived."""

from __future__ import absolute_import, division, print_function

import hashlib
import json
import os
import time

from tests.lib.lab.shapes import PUSH_PLAY, SHAPE_CLUSTER

REPO_ROOT = "/var/backups/fleet"


def sha256_of(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_push_backups_and_wal_land_on_backup1(lab, shapes):
    started = time.monotonic()
    result = lab.playbook(PUSH_PLAY, extra_vars=shapes.push_vars())
    shapes.measured["push play (2 DB hosts: backup role, wal_archiving to SFTP, a backup, a segment)"] = time.monotonic() - started

    for host in ("db1", "db2"):
        local_repo = lab.host_path(host, "/var/backups/todoapi-%s" % SHAPE_CLUSTER)
        remote_repo = lab.host_path("backup1", "%s/%s/logical" % (REPO_ROOT, host))
        manifests = sorted(name for name in os.listdir(local_repo) if name.endswith(".manifest.json"))
        assert manifests, "no backup in %s's own repository" % host
        assert sorted(name for name in os.listdir(remote_repo) if name.endswith(".manifest.json")) == manifests
        for name in manifests:
            with open(os.path.join(remote_repo, name)) as handle:
                manifest = json.load(handle)
            assert manifest["database"] == "TodoDb"
            assert manifest["tables"]["public.todos"] == shapes.rows[host]
            assert sha256_of(os.path.join(remote_repo, manifest["artifact"])) == manifest["sha256"]
            assert sha256_of(os.path.join(local_repo, manifest["artifact"])) == manifest["sha256"]
            shapes.measured["push backup of %s (%d bytes), duration_seconds of its manifest" % (
                host, manifest["size"])] = manifest["duration_seconds"]

        # The segment the play switched to last is on backup1, archived through the SFTP account.
        archived = result.host_results("Switch to a new segment")[host]["stdout"].strip()
        wal_dir = lab.host_path("backup1", "%s/%s/wal" % (REPO_ROOT, host))
        stored = os.listdir(wal_dir)
        assert any(name.startswith(archived) for name in stored), (archived, sorted(stored))
        owner = os.stat(os.path.join(wal_dir, sorted(stored)[0])).st_uid
        assert owner == shapes.sftp_uid, "segments are not the SFTP account's"
