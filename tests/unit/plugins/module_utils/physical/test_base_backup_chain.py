# -*- coding: utf-8 -*-
"""Chains of incremental base backups (physical/base_backup_chain.py): which backup a new one builds on, the
chain of a backup and what depends on it, on repositories of real manifests with tiny artifact directories
(the backups themselves are taken on PostgreSQL 18 in tests/integration/test_incremental_backup.py)."""

from __future__ import absolute_import, division, print_function

import datetime
import json
import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import manifest as manifests
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_chain as chains
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository

START = datetime.datetime(2024, 6, 9, 2, 0, 0, tzinfo=datetime.timezone.utc)
SYSTEM = "7301234567890123456"
FACTS = {"server_version": "18.1", "server_version_num": 180001, "summarize_wal": "on", "system_identifier": SYSTEM}


def physical(repo_path, day, backup_type="full", parent=None, system=SYSTEM, version_num=180001):
    """A physical backup's manifest (chain fields as base_backup writes them) and an artifact directory."""
    finished = START + datetime.timedelta(days=day)
    backup_id = manifests.new_backup_id("physical", "main", finished)
    record = chains.chain_record(backup_type, parent, backup_id)
    os.mkdir(os.path.join(repo_path, backup_id + ".base"))
    with open(os.path.join(repo_path, backup_id + ".base", "backup_manifest"), "w") as handle:
        handle.write("{}\n")
    start_lsn = "0/%X000028" % (day + 2)
    label = "START WAL LOCATION: %s\n" % start_lsn
    if parent:
        label += "INCREMENTAL FROM LSN: %s\nINCREMENTAL FROM TLI: 1\n" % parent["start_lsn"]
    manifest = dict(record, id=backup_id, kind="physical", database="main", artifact=backup_id + ".base", size=1,
                    sha256="0" * 64, started_at=manifests.isoformat(finished), finished_at=manifests.isoformat(finished),
                    server_version_num=version_num, system_identifier=system, start_lsn=start_lsn, backup_label=label)
    with open(os.path.join(repo_path, backup_id + manifests.MANIFEST_SUFFIX), "w") as handle:
        json.dump(manifest, handle)
    return manifest


@pytest.fixture
def repo(tmp_path):
    return LocalRepository(str(tmp_path))


def test_diff_builds_on_the_newest_full_incr_and_auto_on_the_newest_backup(repo):
    full = physical(repo.path, 0)
    incr = physical(repo.path, 1, "incr", full)
    physical(repo.path, 2, system="another cluster")
    assert chains.choose_parent(repo, "diff", FACTS, "main")[:2] == ("diff", full)
    assert chains.choose_parent(repo, "incr", FACTS, "main")[:2] == ("incr", incr)
    assert chains.choose_parent(repo, "auto", FACTS, "main") == ("incr", incr, None)
    assert chains.choose_parent(repo, "full", FACTS, "main") == ("full", None, None)
    assert chains.chain_record("incr", incr, "new") == {"backup_type": "incr", "parent": incr["id"],
                                                        "chain": [full["id"], incr["id"], "new"]}


@pytest.mark.parametrize("facts, expected", [
    (dict(FACTS, server_version="15.8", server_version_num=150008, summarize_wal=None), "need PostgreSQL 17 or newer"),
    (dict(FACTS, summarize_wal="off"), "summarize_wal is off"),
    (FACTS, "holds no complete backup of this cluster"),
])
def test_without_incremental_backups_diff_and_incr_say_why_and_auto_takes_a_full(repo, facts, expected):
    physical(repo.path, 0, version_num=170004)  # another major: not a parent
    with pytest.raises(PgBackupError, match=expected) as raised:
        chains.choose_parent(repo, "incr", facts, "main")
    assert "type: full" in raised.value.hint and "type: auto" in raised.value.hint
    backup_type, parent, note = chains.choose_parent(repo, "auto", facts, "main")
    assert (backup_type, parent) == ("full", None) and expected in note


def test_auto_starts_a_new_chain_when_the_newest_one_is_full_and_incr_does_not(repo):
    chain = [physical(repo.path, 0)]
    for day in range(1, chains.AUTO_CHAIN_LIMIT):
        chain.append(physical(repo.path, day, "incr", chain[-1]))
    backup_type, parent, note = chains.choose_parent(repo, "auto", FACTS, "main")
    assert (backup_type, parent) == ("full", None) and "already holds 7 backups" in note
    assert chains.choose_parent(repo, "incr", FACTS, "main")[:2] == ("incr", chain[-1])
    assert chains.choose_parent(repo, "diff", FACTS, "main")[:2] == ("diff", chain[0])


def test_a_backup_whose_chain_lost_a_member_is_no_parent_and_cannot_be_restored(repo):
    full = physical(repo.path, 0)
    first = physical(repo.path, 1, "incr", full)
    second = physical(repo.path, 2, "incr", first)
    assert [m["id"] for m in chains.chain_of(repo, second)] == second["chain"]
    assert [m["id"] for m in chains.dependants(full, repo.list())] == [first["id"], second["id"]]
    repo.delete(first)
    with pytest.raises(PgBackupError, match="depends on '%s', which is not in the repository" % first["id"]):
        chains.chain_of(repo, second)
    assert chains.choose_parent(repo, "incr", FACTS, "main")[:2] == ("incr", full)


def test_a_chain_whose_labels_do_not_match_is_refused(repo):
    full = physical(repo.path, 0)
    incr = physical(repo.path, 1, "incr", dict(full, start_lsn="0/99000028"))
    with pytest.raises(PgBackupError, match="inconsistent"):
        chains.chain_of(repo, incr)


def test_manifests_from_before_chains_are_full_backups():
    legacy = {"id": "20240101T020000Z_physical_main"}
    assert chains.backup_type_of(legacy) == "full" and chains.chain_ids(legacy) == [legacy["id"]]
    assert chains.incremental_from(legacy) is None
