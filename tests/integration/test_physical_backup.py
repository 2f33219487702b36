# -*- coding: utf-8 -*-
"""Physical base backups (todoapi.pgbackup.pg_basebackup) against a real PostgreSQL 15 cluster."""

from __future__ import absolute_import, division, print_function

import json
import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import backup_manifest
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_request
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_names
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository

BACKUP_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Base backup
      todoapi.pgbackup.pg_basebackup:
        repository: "{{ repo }}"
        host: "{{ db.host }}"
        port: "{{ db.port }}"
        user: "{{ db.user }}"
        password: "{{ db.password }}"
        format: "{{ fmt | default('tar') }}"
        compression: "{{ compression | default(omit) }}"
        max_rate: "{{ max_rate | default(omit) }}"
      register: base
"""


def run_backup(ansible_playbook, cluster, repo, check=False, expect_failure=False, **extra):
    variables = {"repo": repo, "db": cluster.conn_params()}
    variables.update(extra)
    return ansible_playbook(BACKUP_PLAY, extra_vars=variables, check=check, expect_failure=expect_failure)


def test_tar_backup_through_module_records_wal_range_and_is_verified(ansible_playbook, todo_db, tmp_repo):
    cluster = todo_db.cluster
    cluster.sql("SELECT pg_switch_wal()")
    before_lsn = cluster.scalar("SELECT pg_current_wal_lsn()::text")
    result = run_backup(ansible_playbook, cluster, tmp_repo, max_rate="500M")
    backup = result.task("Base backup")["backup"]
    after_lsn = cluster.scalar("SELECT pg_current_wal_lsn()::text")

    assert backup["kind"] == "physical" and backup["format"] == "tar"
    assert os.path.isdir(backup["path"]) and backup["path"].endswith(".base")
    files = sorted(os.listdir(backup["path"]))
    # PostgreSQL 15 leaves the streamed WAL uncompressed with server-side zstd: the engine compressed it
    assert files == ["backup_manifest", "base.tar.zst", "pg_wal.tar.zst"]
    wal_tar = backup["compression"]["wal_tar"]
    assert (wal_tar["file"], wal_tar["applied"], wal_tar["method"], wal_tar["level"]) == ("pg_wal.tar.zst", "engine", "zstd", 1)
    assert wal_tar["bytes"] == os.path.getsize(os.path.join(backup["path"], "pg_wal.tar.zst")) < wal_tar["bytes_before"] // 10
    parse = wal_names.parse_lsn
    assert parse(before_lsn) <= parse(backup["start_lsn"]) <= parse(backup["end_lsn"]) <= parse(after_lsn)
    assert backup["timeline"] == 1
    assert backup["wal_start_segment"] == wal_names.segment_for_lsn(1, backup["start_lsn"])
    assert backup["wal_end_segment"] == wal_names.segment_for_lsn(1, backup["end_lsn"])
    assert "START WAL LOCATION: %s" % backup["start_lsn"] in backup["backup_label"]
    assert backup["verified"]["backup_manifest"] is True and backup["verified"]["method"] == "stream"
    assert backup["verified"]["wal_parsed"] is True
    # base.tar was checked while pg_basebackup wrote it, not read again (base_backup_early)
    assert backup["verified"]["read_while_writing"] == ["base.tar.zst"]
    with open(os.path.join(backup["path"], "backup_manifest")) as handle:
        listed_files = [f["Path"] for f in json.load(handle)["Files"] if not backup_manifest.is_ignored(f["Path"])]
    assert backup["verified"]["files"] == len(listed_files)
    assert {backup["wal_start_segment"], backup["wal_end_segment"]} <= set(backup["verified"]["wal_segments"])
    assert backup["compression"]["workers"] == os.cpu_count() and backup["compression"]["level"] == 1
    assert backup["system_identifier"] == cluster.scalar("SELECT system_identifier::text FROM pg_control_system()")
    assert backup["next_xid_at_start"] <= backup["next_xid_at_end"]

    repo = LocalRepository(tmp_repo)
    listed = repo.list(kind="physical")
    assert [m["id"] for m in listed] == [backup["id"]]
    repo.verify_checksum(listed[0])
    assert not [name for name in os.listdir(tmp_repo) if name.startswith(".tmp-")]
    with open(os.path.join(backup["path"], "backup_manifest")) as handle:
        assert json.load(handle)["WAL-Ranges"][0]["Start-LSN"] == backup["start_lsn"]


def test_check_mode_writes_nothing_and_bad_password_publishes_nothing(ansible_playbook, pg, tmp_repo):
    result = run_backup(ansible_playbook, pg, tmp_repo, check=True)
    plan = result.task("Base backup")["backup"]
    assert plan["format"] == "tar" and plan["pg_basebackup"].endswith("pg_basebackup")
    assert os.listdir(tmp_repo) == []

    params = pg.conn_params()
    params["password"] = "wrong"
    failed = ansible_playbook(BACKUP_PLAY, extra_vars={"repo": tmp_repo, "db": params}, expect_failure=True)
    assert "Authentication failed" in failed.task("Base backup")["msg"]
    assert os.listdir(tmp_repo) == []


def test_plain_format_and_damage_is_detected_by_pg_verifybackup(pg, tmp_repo):
    spec = ConnectionSpec(host=pg.host, port=pg.port, user="postgres", password=pg.password)
    repo = LocalRepository(tmp_repo)
    manifest = base_backup.backup(base_backup.PhysicalBackupRequest(repo, spec, fmt="plain",
                                                                    compression="none"))
    artifact = repo.artifact_path(manifest)
    assert os.path.isfile(os.path.join(artifact, "PG_VERSION"))
    assert manifest["verified"]["backup_manifest"] is True and manifest["verified"]["method"] == "pg_verifybackup"
    base_backup.verify_data_directory(artifact, os.path.join(artifact, "backup_manifest"), None)

    with open(os.path.join(artifact, "PG_VERSION"), "a") as handle:
        handle.write("tampered\n")
    with pytest.raises(PgBackupError, match="pg_verifybackup found the base backup damaged"):
        base_backup.verify_data_directory(artifact, os.path.join(artifact, "backup_manifest"), None)
    with pytest.raises(PgBackupError, match="has .* bytes but its manifest says|Checksum mismatch"):
        repo.verify_checksum(manifest)


def test_request_validation():
    repo = LocalRepository("/nonexistent-repo")
    spec = ConnectionSpec()
    with pytest.raises(PgBackupError, match="Client-side compression is not possible"):
        base_backup.PhysicalBackupRequest(repo, spec, fmt="plain", compression="client-zstd")
    with pytest.raises(PgBackupError, match="Unknown base backup compression"):
        base_backup.PhysicalBackupRequest(repo, spec, compression="server-brotli")
    with pytest.raises(PgBackupError, match="is not a transfer rate"):
        base_backup.PhysicalBackupRequest(repo, spec, max_rate="fast")
    assert base_backup_request.compression_argument(base_backup_request.parse_compression("client-gzip:5", "tar")) == "client-gzip:5"
    assert wal_names.segment_for_lsn(1, "0/2000028") == "000000010000000000000002"
    assert wal_names.segment_for_lsn(2, "1/FF000000") == "0000000200000001000000FF"
