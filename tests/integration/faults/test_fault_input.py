# -*- coding: utf-8 -*-
"""Faults in what the engine is given: a backup whose manifest is missing, restores that must
not overwrite, keys that are not keys, hostile database/table/path names and backup ids."""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess
import uuid

import pytest
from psycopg2 import sql

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import retention
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.integration.faults.faultlib import (assert_earlier_backups_intact, manifest_ids, repo_snapshot, spec_of,
                                               take_backup)
from tests.lib.dbcompare import assert_same_data, table_fingerprints
from tests.lib.module_run import connection_args, run_module
from tests.lib.tododb import create_todo_db

DUMP = "todoapi.pgbackup.pg_dump"
RESTORE = "todoapi.pgbackup.pg_restore"


def restore_request(cluster, repo_path, source, target, **options):
    return logical_restore.LogicalRestoreRequest(LocalRepository(repo_path), spec_of(cluster), database=target,
                                                 source_database=source, **options)


def test_missing_manifest_means_no_backup_and_the_artifact_is_left_alone(pg, todo_db, tmp_repo, scratch_db):
    older = take_backup(pg, todo_db.name, tmp_repo)
    orphan = take_backup(pg, todo_db.name, tmp_repo)
    os.unlink(os.path.join(tmp_repo, orphan["id"] + ".manifest.json"))
    before = repo_snapshot(tmp_repo)
    repo = LocalRepository(tmp_repo)

    assert [m["id"] for m in repo.list()] == [older["id"]]
    with pytest.raises(PgBackupError, match="^Backup '%s' was not found in repository" % orphan["id"]):
        logical_restore.restore(restore_request(pg, tmp_repo, todo_db.name, scratch_db, backup=orphan["id"]))
    with pytest.raises(PgBackupError, match="^No manifest describes"):
        repo.resolve(os.path.join(tmp_repo, orphan["artifact"]))
    assert not pg.database_exists(scratch_db)
    # Retention with the harshest policy: the unlisted artifact is nobody's to delete.
    retention.apply_retention(repo, {"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 1})
    assert_earlier_backups_intact(before, tmp_repo)
    # 'latest' is the older, complete backup.
    result = logical_restore.restore(restore_request(pg, tmp_repo, todo_db.name, scratch_db))
    assert result["backup_id"] == older["id"]
    assert_same_data((pg, todo_db.name), (pg, scratch_db))


def test_force_restore_over_a_populated_database_with_parallel_jobs(pg, todo_db, tmp_repo):
    """force without clean replaces the objects in place in one transaction; pg_restore refuses
    --single-transaction with -j, so the in-place restore must run serially instead of failing."""
    take_backup(pg, todo_db.name, tmp_repo)
    source = table_fingerprints(pg, todo_db.name)
    pg.sql('DELETE FROM "Todos" WHERE "Id" % 2 = 0', dbname=todo_db.name)
    changed = table_fingerprints(pg, todo_db.name)
    with pytest.raises(PgBackupError, match="already holds .* refusing to overwrite it"):
        logical_restore.restore(restore_request(pg, tmp_repo, todo_db.name, todo_db.name, jobs=2))
    assert table_fingerprints(pg, todo_db.name) == changed
    result = logical_restore.restore(restore_request(pg, tmp_repo, todo_db.name, todo_db.name, jobs=2, force=True))
    assert result["tables"] == dict((k, v["rows"]) for k, v in source.items())
    assert_same_data(source, (pg, todo_db.name))


def test_identity_that_is_not_a_private_key_is_a_clear_error(pg, todo_db, tmp_repo, tmp_path, scratch_db):
    key = str(tmp_path / "restore.key")
    subprocess.run(["age-keygen", "-o", key], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", key], check=True, capture_output=True, text=True).stdout.strip()
    take_backup(pg, todo_db.name, tmp_repo, encrypt_recipients=[recipient], globals_=False)
    public_only = tmp_path / "public.key"
    public_only.write_text(recipient + "\n")  # the usual mix-up: the recipient instead of the identity
    before = repo_snapshot(tmp_repo)
    with pytest.raises(PgBackupError) as failure:
        logical_restore.restore(restore_request(pg, tmp_repo, todo_db.name, scratch_db, identity_file=str(public_only)))
    # Not "the encrypted artifact is damaged": that would send the operator after a good backup.
    assert failure.value.message.startswith("The age identity file cannot be used (it is not an age private key)"), \
        failure.value.message
    assert "AGE-SECRET-KEY" in failure.value.hint
    assert not pg.database_exists(scratch_db)
    assert_earlier_backups_intact(before, tmp_repo)
    logical_restore.restore(restore_request(pg, tmp_repo, todo_db.name, scratch_db, identity_file=key))
    assert_same_data((pg, todo_db.name), (pg, scratch_db))


# Hostile names: handled literally, never run as shell

def hostile(marker):
    return {
        # 56 bytes: quotes, $(...), backticks, ;, a backslash and non-ASCII, inside PostgreSQL's 63-byte limit.
        "database": "Todo $(touch %s) \"x\" 'y'; DROP \\ é✓" % marker,
        "table": "T `touch %s`; \"q\" 'r' ✓" % marker,
        "column": "c $(touch %s) ;" % marker,
        "directory": "repo $(touch %s) 'q' \"d\"; ls ✓ &" % marker,
    }


def test_hostile_names_round_trip_through_the_modules_and_nothing_runs_as_shell(ansible_playbook, pg, tmp_path):
    marker = "/tmp/pwned-%s" % uuid.uuid4().hex[:8]
    names = hostile(marker)
    assert len(names["database"].encode("utf-8")) <= 63
    target = names["database"][:-2] + " ↩"
    repo = str(tmp_path / names["directory"])  # the marker's slashes make it a few nested directories
    os.makedirs(repo, 0o700)
    shutil.chown(repo, "postgres", "postgres")
    create_todo_db(pg, dbname=names["database"], size_mb=1)
    try:
        conn = pg.connect(names["database"])
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE TABLE {} ({} text PRIMARY KEY, n int)").format(
                sql.Identifier(names["table"]), sql.Identifier(names["column"])))
            cursor.execute(sql.SQL("INSERT INTO {} SELECT 'v' || g || $$ $(touch {}) ';$$, g FROM generate_series(1, 500) g")
                           .format(sql.Identifier(names["table"]), sql.SQL(marker)))
        conn.close()
        source = table_fingerprints(pg, names["database"])
        login = connection_args(pg)

        dumped = run_module(ansible_playbook, DUMP, dict(login, database=names["database"], repository=repo))[0]["backup"]
        assert dumped["database"] == names["database"]
        assert dumped["tables"]["public." + names["table"]] == 500
        assert os.path.dirname(dumped["path"]) == repo and "/" not in dumped["id"] and ".." not in dumped["id"]

        run_module(ansible_playbook, RESTORE, dict(login, repository=repo, source_database=names["database"],
                                                   database=target))
        assert_same_data(source, (pg, target))

        # Per-table restore of the hostile table into the hostile target, after damaging it there.
        pg.sql(sql.SQL("DELETE FROM {} WHERE n > 100").format(sql.Identifier(names["table"])), dbname=target)
        run_module(ansible_playbook, RESTORE, dict(login, repository=repo, source_database=names["database"],
                                                   database=target, tables=[names["table"]]))
        assert_same_data(source, (pg, target))
        assert not os.path.exists(marker), "a name was run as shell"
    finally:
        pg.drop_database(target)
        pg.drop_database(names["database"])
        if os.path.exists(marker):
            os.unlink(marker)


@pytest.mark.parametrize("backup", ["../../../etc/passwd", "..", "x/../../y", "/etc/passwd", "20240106T020000Z_logical_x.."])
def test_backup_ids_that_escape_the_repository_are_refused(ansible_playbook, pg, todo_db, tmp_repo, backup):
    take_backup(pg, todo_db.name, tmp_repo)
    before = repo_snapshot(tmp_repo)
    data_before = table_fingerprints(pg, todo_db.name)
    task, unused = run_module(ansible_playbook, RESTORE, dict(connection_args(pg), repository=tmp_repo, backup=backup,
                                                              database=todo_db.name, force=True, clean=True),
                              expect_failure=True)
    assert "is not a valid backup id" in task["msg"] or "is not inside repository" in task["msg"], task["msg"]
    assert_earlier_backups_intact(before, tmp_repo)
    assert table_fingerprints(pg, todo_db.name) == data_before


def test_planted_manifests_naming_files_outside_the_repository_are_not_backups(pg, todo_db, tmp_repo, tmp_path):
    good = take_backup(pg, todo_db.name, tmp_repo)
    outside = tmp_path / "precious"
    outside.write_text("not a backup")
    for name, changes in (("evil1", {"id": "evil1", "artifact": "../precious"}),
                          ("evil2", {"id": "../evil2", "artifact": "evil2.dump"}),
                          ("evil3", {"id": "evil3", "artifact": str(outside)})):
        planted = dict(good, **changes)
        with open(os.path.join(tmp_repo, name + ".manifest.json"), "w") as handle:
            json.dump(planted, handle)
    repo = LocalRepository(tmp_repo)
    assert [m["id"] for m in repo.list()] == [good["id"]]
    assert len(repo.problems) == 3
    for backup_id in ("evil1", "evil3"):
        with pytest.raises(PgBackupError, match="names an artifact outside the repository"):
            repo.load(backup_id)
    result = retention.apply_retention(repo, {"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 0})
    assert result["deleted"] == [] and len(result["problems"]) == 3
    assert outside.read_text() == "not a backup"
    assert manifest_ids(tmp_repo) == sorted([good["id"], "evil1", "evil2", "evil3"])
