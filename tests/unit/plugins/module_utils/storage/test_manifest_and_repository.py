# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import hashlib
import json
import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import manifest as manifests
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec, libpq_environment
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository


def publish(repo, database, when, payload=b"data"):
    backup_id = repo.unique_id("logical", database, when)
    tmp = repo.temp_path(backup_id, ".dump")
    with open(tmp, "wb") as handle:
        handle.write(payload)
    manifest = manifests.base_manifest("logical", database, backup_id, when)
    manifest.update(artifact=backup_id + ".dump", size=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
                    finished_at=manifests.isoformat(when))
    repo.commit(manifest, {tmp: manifest["artifact"]})
    return manifest


@pytest.fixture
def repo(tmp_path):
    repository = LocalRepository(str(tmp_path / "repo"))
    repository.prepare()
    return repository


def test_ids_are_sortable_and_safe():
    when = datetime.datetime(2024, 1, 6, 2, 0, tzinfo=datetime.timezone.utc)
    assert manifests.new_backup_id("logical", "Todo Db/../x", when) == "20240106T020000Z_logical_Todo-Db-x"


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "..", "", ".hidden", "x;rm -rf"])
def test_backup_ids_that_could_escape_are_refused(bad):
    with pytest.raises(PgBackupError):
        manifests.check_backup_id(bad)


def test_published_backup_is_listed_and_verifies(repo):
    when = manifests.utcnow()
    first = publish(repo, "TodoDb", when)
    second = publish(repo, "TodoDb", when)  # same second: still a distinct id
    assert first["id"] != second["id"]
    assert [m["id"] for m in repo.list(database="TodoDb")] == [first["id"], second["id"]]
    assert repo.resolve("latest", database="TodoDb")["id"] == second["id"]
    assert oct(os.stat(repo.artifact_path(first)).st_mode & 0o777) == "0o600"


def test_latest_skips_a_corrupted_newest_backup(repo):
    old = publish(repo, "TodoDb", manifests.utcnow() - datetime.timedelta(days=1))
    new = publish(repo, "TodoDb", manifests.utcnow())
    with open(repo.artifact_path(new), "wb") as handle:
        handle.write(b"DATA")
    assert repo.resolve("latest", database="TodoDb")["id"] == old["id"]
    with pytest.raises(PgBackupError, match="Checksum mismatch"):
        repo.verify_checksum(new)


def test_work_in_progress_and_damaged_manifests_are_not_backups(repo):
    with open(os.path.join(repo.path, ".tmp-20240101T000000Z_logical_TodoDb.dump"), "w") as handle:
        handle.write("partial")
    with open(os.path.join(repo.path, "broken.manifest.json"), "w") as handle:
        handle.write("{not json")
    assert repo.list() == []
    assert repo.problems and "not valid JSON" in repo.problems[0]


def test_manifest_naming_an_outside_artifact_is_refused(repo):
    manifest = publish(repo, "TodoDb", manifests.utcnow())
    manifest["artifact"] = "../../etc/shadow"
    with open(repo.manifest_path(manifest["id"]), "w") as handle:
        json.dump(manifest, handle)
    with pytest.raises(PgBackupError, match="outside the repository"):
        repo.load(manifest["id"])


def test_delete_removes_manifest_and_every_file_of_the_backup(repo):
    keep = publish(repo, "TodoDb", manifests.utcnow() - datetime.timedelta(days=2))
    gone = publish(repo, "TodoDb", manifests.utcnow())
    repo.write_sidecar(gone["id"], "verify", {"ok": True})
    repo.delete(gone)
    assert sorted(os.listdir(repo.path)) == sorted([keep["artifact"], keep["id"] + ".manifest.json"])


def test_passfile_escapes_and_is_private_and_removed():
    spec = ConnectionSpec(host="db", port=5432, user="back:up", password="p:a\\ss")
    with libpq_environment(spec, base_env={"PGPASSWORD": "leak"}) as env:
        assert "PGPASSWORD" not in env
        path = env["PGPASSFILE"]
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        with open(path) as handle:
            assert handle.read() == "*:*:*:back\\:up:p\\:a\\\\ss\n"
    assert not os.path.exists(path)


def test_missing_repository_is_reported_as_such_not_as_a_missing_backup(tmp_path):
    repo = LocalRepository(str(tmp_path / "nowhere"))
    with pytest.raises(PgBackupError, match="Cannot read repository"):
        repo.load("20240106T020000Z_logical_TodoDb")
