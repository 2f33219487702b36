# -*- coding: utf-8 -*-
"""The extraction of a chain's members before pg_combinebackup: what is left out, in parallel, and a damaged
member named (real gzip and tar; pg_combinebackup itself runs in tests/integration/test_incremental_backup.py)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gzip
import os
import threading

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_restore

from tests.unit.plugins.module_utils.physical.test_backup_manifest import make_manifest, make_tar

FULL = ["backup_label", "global/pg_control", "postgresql.conf", "base/5/16384", "base/5/16390", "base/5/16399"]
# 16384 changed a little (incremental in both), 16390 changed mostly in the first incremental (sent whole),
# 16399 was sent whole by the last one
INCR1 = ["backup_label", "global/pg_control", "postgresql.conf", "base/5/INCREMENTAL.16384", "base/5/16390",
         "base/5/INCREMENTAL.16399"]
INCR2 = ["backup_label", "global/pg_control", "postgresql.conf", "base/5/INCREMENTAL.16384",
         "base/5/INCREMENTAL.16390", "base/5/16399"]


def test_unread_files_are_the_whole_files_a_later_backup_has_again():
    assert base_backup_restore.unread_files([FULL, INCR1, INCR2]) == [
        {"postgresql.conf", "base/5/16390", "base/5/16399"},
        {"postgresql.conf", "base/5/INCREMENTAL.16399"},
        set(),
    ]
    # a relation created after the full backup is read from the backup that has it whole
    assert base_backup_restore.unread_files([FULL[:2], INCR1[:2] + ["base/5/20000"], ["base/5/INCREMENTAL.20000"]]) \
        == [set(), set(), set()]
    # a manifest that could not be read (None) keeps every file of the members before it
    assert base_backup_restore.unread_files([FULL, None, INCR2]) == [set(), set(), set()]
    assert base_backup_restore.unread_files([FULL, INCR1, None]) == [set(), set(), set()]
    unread = base_backup_restore.unread_files([None, INCR1, INCR2])
    assert unread == [set(), {"postgresql.conf", "base/5/INCREMENTAL.16399"}, set()]


class _Repository(object):
    def __init__(self, path):
        self.path = path

    def artifact_path(self, manifest):
        return os.path.join(self.path, manifest["id"])


def _artifact(repo, backup_id, paths):
    directory = os.path.join(repo, backup_id)
    os.makedirs(directory)
    files = [(path, ("%s of %s\n" % (path, backup_id)).encode(), "SHA256") for path in paths]
    with open(os.path.join(directory, "backup_manifest"), "wb") as handle:
        handle.write(make_manifest(files))
    with gzip.open(os.path.join(directory, "base.tar.gz"), "wb", compresslevel=1) as handle:
        handle.write(make_tar([("base", None), ("base/5", None), ("global", None)] + [(p, d) for p, d, a in files]))
    return {"id": backup_id}


def _listing(directory):
    return sorted(os.path.relpath(os.path.join(root, name), directory)
                  for root, dirs, files in os.walk(directory) for name in files)


@pytest.fixture
def chain(tmp_path):
    repo = str(tmp_path / "repo")
    return _Repository(repo), [_artifact(repo, name, paths) for name, paths in
                               (("full", FULL), ("incr1", INCR1), ("incr2", INCR2))]


def test_members_are_extracted_in_parallel_without_the_files_never_read(chain, tmp_path, monkeypatch):
    repository, members = chain
    scratch = str(tmp_path / "scratch")
    os.mkdir(scratch)
    extract = base_backup_restore.extract_backup
    incremental_started = threading.Event()
    overlapped = []

    def extract_backup(artifact, target, **options):
        if artifact.endswith("full"):  # the full backup waits until an incremental one is being extracted
            overlapped.append(incremental_started.wait(10))
        else:
            incremental_started.set()
        return extract(artifact, target, **options)

    monkeypatch.setattr(base_backup_restore, "extract_backup", extract_backup)
    monkeypatch.setattr(base_backup_restore.os, "cpu_count", lambda: 2)
    inputs = base_backup_restore._readable_directories(repository, members, scratch)
    assert inputs == [os.path.join(scratch, name) for name in ("full", "incr1", "incr2")]
    assert overlapped == [True]
    assert _listing(inputs[0]) == ["backup_label", "backup_manifest", "base/5/16384", "global/pg_control"]
    assert _listing(inputs[1]) == ["backup_label", "backup_manifest", "base/5/16390", "base/5/INCREMENTAL.16384",
                                   "global/pg_control"]
    assert _listing(inputs[2]) == sorted(INCR2 + ["backup_manifest"])
    with open(os.path.join(inputs[0], "base/5/16384")) as handle:
        assert handle.read() == "base/5/16384 of full\n"


def test_a_damaged_member_is_named_once_every_extraction_ended(chain, tmp_path, monkeypatch):
    repository, members = chain
    damaged = os.path.join(repository.path, "incr1", "base.tar.gz")
    with open(damaged, "r+b") as handle:
        handle.truncate(os.path.getsize(damaged) // 2)
    scratch = str(tmp_path / "scratch")
    os.mkdir(scratch)
    with pytest.raises(PgBackupError) as failure:
        base_backup_restore._readable_directories(repository, members, scratch)
    assert "'incr1'" in failure.value.message and "gzip" in failure.value.message
    assert sorted(os.listdir(scratch)) == ["full", "full.unread", "incr1", "incr1.unread", "incr2"]
    assert os.path.isfile(os.path.join(scratch, "incr2", "backup_manifest"))  # the others were finished
