# -*- coding: utf-8 -*-
"""Backup verification against real PostgreSQL: every level, every kind of damage, no leftover scratch database."""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import verify
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "pgbackup_verify"


def spec_of(cluster):
    params = cluster.conn_params()
    return ConnectionSpec(host=params["host"], port=params["port"], user=params["user"], password=params["password"])


def take_backup(db, repo_path, **options):
    repo = LocalRepository(repo_path, owner="postgres")
    request = logical_backup.LogicalBackupRequest(db.name, repo, spec_of(db.cluster), **options)
    return repo, logical_backup.backup(request)


def scratch_databases(cluster):
    return [row[0] for row in cluster.sql("SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX + "%",))]


def verify_at(repo, manifest, level, db=None, **kwargs):
    connection = spec_of(db.cluster) if db is not None else None
    return verify.verify_backup(repo, manifest, level, connection=connection, **kwargs)


def history(repo, backup_id):
    return repo.read_sidecar(backup_id, "verify")["history"]


def rewrite_manifest(repo, manifest):
    """Make the manifest agree with the (damaged) artifact: damage that a checksum cannot see."""
    path = repo.artifact_path(manifest)
    manifest = dict(manifest, size=os.path.getsize(path))
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
    manifest["sha256"] = fsutil.sha256_file(path)
    fsutil.write_json_atomic(repo.manifest_path(manifest["id"]), manifest)
    return manifest


@pytest.mark.parametrize("options", [
    {},
    {"fmt": "plain", "compression": "zstd"},
    {"fmt": "tar", "compression": "none"},
    {"fmt": "directory", "compression": "gzip:1", "jobs": 2},
], ids=["custom-zstd", "plain-zstd", "tar-none", "directory-gzip"])
def test_good_backup_passes_every_level_and_leaves_no_scratch_database(todo_db, tmp_repo, options):
    repo, manifest = take_backup(todo_db, tmp_repo, **options)
    for level in verify.LEVELS:
        result = verify_at(repo, manifest, level, todo_db, smoke_queries=['SELECT COUNT(*) FROM "Users"'], jobs=2)
        assert result["verified"] is True and result["level"] == level
        assert sorted(result["checks"]) == sorted(verify.levels_up_to(level))
    restore = result["checks"]["restore"]
    assert restore["tables"] == manifest["tables"] and restore["amcheck"] == "ok"
    assert restore["smoke_queries"][0]["first_row"] == [todo_db.row_counts["Users"]]
    assert restore["scratch_database"].startswith(PREFIX + "_") and len(restore["scratch_database"]) <= 63
    assert "restored, %d tables, counts match, amcheck OK" % len(manifest["tables"]) in result["summary"]
    assert scratch_databases(todo_db.cluster) == []
    records = history(repo, manifest["id"])
    assert [(r["level"], r["outcome"]) for r in records] == [(lvl, "passed") for lvl in verify.LEVELS]
    assert all(r["error"] is None and r["duration_seconds"] >= 0 for r in records)
    assert verify.verification_state(repo, manifest["id"])["state"] == "verified"
    if manifest["format"] != "directory":
        assert os.stat(os.path.join(tmp_repo, manifest["id"] + ".verify.json")).st_mode & 0o777 == 0o600


def assert_failed(repo, manifest, level, db, fragment, failed_level, **kwargs):
    with pytest.raises(PgBackupError) as caught:
        verify_at(repo, manifest, level, db, **kwargs)
    message = str(caught.value)
    assert fragment in message, message
    assert "failed at level '%s'" % failed_level in message, message
    assert caught.value.details["failed_level"] == failed_level
    last = history(repo, manifest["id"])[-1]
    assert last["outcome"] == "failed" and fragment in last["error"] and last["failed_level"] == failed_level
    assert verify.verification_state(repo, manifest["id"])["state"] == "failed"
    if db is not None:
        assert scratch_databases(db.cluster) == []
    return message


def test_bit_flip_is_caught_by_the_checksum(todo_db, tmp_repo):
    repo, manifest = take_backup(todo_db, tmp_repo)
    verify_at(repo, manifest, "checksum")
    with open(repo.artifact_path(manifest), "r+b") as handle:
        handle.seek(manifest["size"] // 2)
        byte = handle.read(1)
        handle.seek(manifest["size"] // 2)
        handle.write(bytes([byte[0] ^ 0x01]))
    for level in verify.LEVELS:
        assert_failed(repo, manifest, level, todo_db, "Checksum mismatch", "checksum")
    assert verify.verification_state(repo, manifest["id"])["state"] == "failed"


def test_truncation_is_caught_by_size(todo_db, tmp_repo):
    repo, manifest = take_backup(todo_db, tmp_repo)
    with open(repo.artifact_path(manifest), "r+b") as handle:
        handle.truncate(manifest["size"] - 100)
    message = assert_failed(repo, manifest, "restore", todo_db, "truncated", "checksum")
    assert "%d bytes but its manifest says %d" % (manifest["size"] - 100, manifest["size"]) in message


def test_zero_byte_artifact_is_named_as_such(todo_db, tmp_repo):
    repo, manifest = take_backup(todo_db, tmp_repo)
    open(repo.artifact_path(manifest), "w").close()
    assert_failed(repo, manifest, "checksum", None, "is a zero-byte file", "checksum")


def test_missing_artifact_is_reported(todo_db, tmp_repo):
    repo, manifest = take_backup(todo_db, tmp_repo)
    os.unlink(repo.artifact_path(manifest))
    assert_failed(repo, manifest, "structure", None, "is missing", "checksum")


def test_manifest_of_another_backup_is_a_checksum_mismatch(todo_db, tmp_repo):
    repo, first = take_backup(todo_db, tmp_repo, compression="none")
    todo_db.cluster.sql('DELETE FROM "Todos" WHERE ctid IN (SELECT ctid FROM "Todos" LIMIT 1)', dbname=todo_db.name)
    unused_repo, second = take_backup(todo_db, tmp_repo, compression="none")
    assert first["sha256"] != second["sha256"]
    # Artifact of the second backup under the first backup's name (same size is likely: uncompressed).
    shutil.copyfile(repo.artifact_path(second), repo.artifact_path(first))
    with open(repo.artifact_path(first), "r+b") as handle:
        handle.truncate(first["size"])  # make the sizes agree so only the checksum can tell
        if os.path.getsize(repo.artifact_path(first)) < first["size"]:
            handle.seek(first["size"] - 1)
            handle.write(b"\0")
    assert_failed(repo, first, "restore", todo_db, "does not belong to this manifest", "checksum")


def test_damaged_archive_with_matching_checksum_fails_structure(todo_db, tmp_repo):
    repo, manifest = take_backup(todo_db, tmp_repo, compression="none")
    with open(repo.artifact_path(manifest), "r+b") as handle:
        handle.write(b"XXXXX")  # custom archives start with PGDMP
    manifest = rewrite_manifest(repo, manifest)
    verify_at(repo, manifest, "checksum")
    message = assert_failed(repo, manifest, "restore", todo_db, "pg_restore --list failed", "structure")
    assert "pg_restore" in message


def test_truncated_plain_script_fails_structure(todo_db, tmp_repo):
    repo, manifest = take_backup(todo_db, tmp_repo, fmt="plain", compression="none")
    with open(repo.artifact_path(manifest), "r+b") as handle:
        handle.truncate(manifest["size"] // 2)
    manifest = rewrite_manifest(repo, manifest)
    assert_failed(repo, manifest, "structure", None, "completion marker", "structure")


def test_row_count_mismatch_fails_restore_and_drops_the_scratch_database(todo_db, tmp_repo):
    repo, manifest = take_backup(todo_db, tmp_repo)
    # The manifest (not the checksummed artifact) claims another count: the restore must notice.
    manifest["tables"]["public.Todos"] += 1
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
    fsutil.write_json_atomic(repo.manifest_path(manifest["id"]), manifest)
    assert_failed(repo, manifest, "restore", todo_db, "Row counts", "restore")


def test_failing_smoke_query_fails_restore_and_drops_the_scratch_database(todo_db, tmp_repo):
    repo, manifest = take_backup(todo_db, tmp_repo)
    message = assert_failed(repo, manifest, "restore", todo_db, "Smoke query 2", "restore",
                            smoke_queries=['SELECT COUNT(*) FROM "Users"', 'SELECT * FROM "NoSuchTable"'])
    assert "NoSuchTable" in message
    assert_failed(repo, manifest, "restore", todo_db, "returned no rows", "restore",
                  smoke_queries=['SELECT 1 WHERE false'])


def test_interrupt_during_restore_still_drops_the_scratch_database(todo_db, tmp_repo, monkeypatch):
    repo, manifest = take_backup(todo_db, tmp_repo)
    seen = []

    def interrupted(request, scratch):
        seen.append(todo_db.cluster.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", (scratch,)))
        raise KeyboardInterrupt()

    monkeypatch.setattr(verify, "_run_amcheck", interrupted)
    with pytest.raises(KeyboardInterrupt):
        verify_at(repo, manifest, "restore", todo_db)
    assert seen == [1]
    assert scratch_databases(todo_db.cluster) == []
    assert repo.read_sidecar(manifest["id"], "verify") is None  # an interrupt proves nothing either way


def test_scratch_database_name_fits_postgres_limit():
    name = verify.scratch_database_name("pgbackup_verify", "20240106T020000Z_logical_" + "x" * 80, "abcd1234")
    assert len(name) <= 63 and name.startswith("pgbackup_verify_20240106T020000Z_logical_x") and name.endswith("_abcd1234")


# Module and playbook


def module_args(db, repo, **extra):
    params = db.cluster.conn_params()
    args = dict(host=params["host"], port=params["port"], user=params["user"], password=params["password"],
                repository=repo, owner="postgres")
    args.update(extra)
    return args


def run_task(ansible_playbook, module, args, check=False, expect_failure=False):
    playbook = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Run it
      %s: "{{ args }}"
""" % module
    result = ansible_playbook(playbook, extra_vars={"args": args}, check=check, expect_failure=expect_failure)
    return result.task("Run it")


def test_backup_verify_module_levels_check_mode_and_failure(ansible_playbook, todo_db, tmp_repo):
    repo, manifest = take_backup(todo_db, tmp_repo)
    planned = run_task(ansible_playbook, "todoapi.pgbackup.backup_verify",
                       module_args(todo_db, tmp_repo, database=todo_db.name), check=True)
    assert planned["changed"] is False and planned["verified"] is False
    assert planned["backup_id"] == manifest["id"] and len(planned["details"]["steps"]) == 3
    assert repo.read_sidecar(manifest["id"], "verify") is None

    task = run_task(ansible_playbook, "todoapi.pgbackup.backup_verify",
                    module_args(todo_db, tmp_repo, database=todo_db.name, smoke_queries=['SELECT COUNT(*) FROM "Users"'],
                                jobs=2))
    assert task["verified"] is True and task["level"] == "restore" and task["changed"] is True
    assert task["details"]["restore"]["tables"] == manifest["tables"]
    assert scratch_databases(todo_db.cluster) == []

    with open(repo.artifact_path(manifest), "r+b") as handle:
        handle.truncate(10)
    failed = run_task(ansible_playbook, "todoapi.pgbackup.backup_verify",
                      module_args(todo_db, tmp_repo, backup=manifest["id"], level="checksum"), expect_failure=True)
    assert failed["failed"] and "truncated" in failed["msg"] and failed["failed_level"] == "checksum"
    assert verify.verification_state(repo, manifest["id"])["state"] == "failed"


def test_verify_backup_playbook_prints_a_verdict(ansible_playbook, todo_db, tmp_repo):
    repo, manifest = take_backup(todo_db, tmp_repo)
    params = todo_db.cluster.conn_params()
    extra = {"pgbackup_repository": tmp_repo, "verify_database": todo_db.name, "pgbackup_db_host": params["host"],
             "pgbackup_db_port": params["port"], "pgbackup_db_user": params["user"],
             "pgbackup_password": params["password"], "target_hosts": "localhost"}
    result = ansible_playbook(os.path.join(REPO_ROOT, "playbooks", "verify_backup.yml"), extra_vars=extra)
    verdict = result.task("Verdict")
    assert verdict["msg"].startswith("VERIFIED: %s restored, %d tables, counts match, amcheck OK"
                                     % (manifest["id"], len(manifest["tables"])))
    assert result.task("Warn about deprecated variable names")["used"] == {}
    with open(repo.artifact_path(manifest), "ab") as handle:
        handle.write(b"garbage")
    # The names before 0.2.0 still work, with a deprecation warning each; their values win over the
    # new names' (a wrong new repository here), so an old command line does what it did.
    old_names = {"repository": tmp_repo, "database": todo_db.name, "pg_host": params["host"], "pg_port": params["port"],
                 "pg_user": params["user"], "pg_password": params["password"], "backup": manifest["id"],
                 "pgbackup_repository": "/nonexistent", "target_hosts": "localhost"}
    failed = ansible_playbook(os.path.join(REPO_ROOT, "playbooks", "verify_backup.yml"), extra_vars=old_names,
                              expect_failure=True)
    assert "NOT VERIFIED: %s" % manifest["id"] in json.dumps(failed.report)
    verdict = failed.task("Verdict (failed)")["msg"]
    assert "/nonexistent" not in verdict and "No backup" not in verdict, verdict  # the damaged backup was found
    warned = failed.task("Warn about deprecated variable names")
    assert warned["used"] == {"repository": "pgbackup_repository", "database": "verify_database", "pg_host": "pgbackup_db_host",
                              "pg_port": "pgbackup_db_port", "pg_user": "pgbackup_db_user",
                              "pg_password": "pgbackup_password", "backup": "verify_backup"}
    messages = [d["msg"] for d in warned["deprecations"]]
    assert "The variable 'pg_port' is deprecated: use 'pgbackup_db_port' (docs/playbooks.md)." in " ".join(messages)
    assert all(d["version"] == "0.3.0" and d["collection_name"] == "todoapi.pgbackup" for d in warned["deprecations"])
    assert scratch_databases(todo_db.cluster) == []
