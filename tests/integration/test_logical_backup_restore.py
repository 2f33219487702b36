# -*- coding: utf-8 -*-
"""pg_dump / pg_restore modules end to end: real ansible-playbook runs against real PostgreSQL."""

from __future__ import absolute_import, division, print_function

import json
import os
import stat

import pytest
from psycopg2 import sql as pgsql

from tests.lib.dbcompare import assert_same_data, index_and_constraint_defs, run_pg_amcheck, table_fingerprints
from tests.lib.module_run import connection_args, run_module

DUMP = "todoapi.pgbackup.pg_dump"
RESTORE = "todoapi.pgbackup.pg_restore"


def dump(ansible_playbook, db, repo, **extra):
    args = dict(connection_args(db.cluster), database=db.name, repository=repo)
    args.update(extra)
    task, unused_run = run_module(ansible_playbook, DUMP, args)
    return task["backup"]


def restore(ansible_playbook, db, repo, expect_failure=False, check=False, **extra):
    args = dict(connection_args(db.cluster), repository=repo, source_database=db.name)
    args.update(extra)
    task, unused_run = run_module(ansible_playbook, RESTORE, args, expect_failure=expect_failure, check=check)
    return task


def repo_state(repo):
    """Names, sizes and mtimes of everything in the repository, to prove nothing changed."""
    state = {}
    for name in sorted(os.listdir(repo)):
        info = os.stat(os.path.join(repo, name))
        state[name] = (info.st_size, info.st_mtime_ns)
    return state


@pytest.fixture
def target_db(pg):
    name = "Restored Db"  # a space and capitals: names must be handled literally
    yield name
    pg.drop_database(name)


def test_backup_writes_manifest_with_snapshot_counts_and_private_files(ansible_playbook, todo_db, tmp_repo):
    backup = dump(ansible_playbook, todo_db, tmp_repo)
    assert backup["kind"] == "logical" and backup["database"] == todo_db.name
    assert backup["format"] == "custom" and backup["compression"]["method"] == "zstd"
    assert backup["tables"] == {"public.%s" % t: n for t, n in todo_db.row_counts.items()} or \
        all(backup["tables"]["public.%s" % t] == n for t, n in todo_db.row_counts.items())
    assert os.path.isfile(backup["path"]) and os.path.getsize(backup["path"]) == backup["size"]
    with open(os.path.join(tmp_repo, backup["id"] + ".manifest.json")) as handle:
        manifest = json.load(handle)
    for key in ("id", "kind", "database", "server_version", "pg_dump_version", "format", "compression",
                "encryption", "size", "sha256", "started_at", "finished_at", "tables"):
        assert key in manifest, key
    for name in os.listdir(tmp_repo):
        info = os.stat(os.path.join(tmp_repo, name))
        assert stat.S_IMODE(info.st_mode) == 0o600, name
        assert info.st_uid == __import__("pwd").getpwnam("postgres").pw_uid
    assert not [n for n in os.listdir(tmp_repo) if n.startswith(".tmp-")]


def test_full_restore_into_new_database_is_identical(ansible_playbook, todo_db, tmp_repo, target_db):
    dump(ansible_playbook, todo_db, tmp_repo)
    result = restore(ansible_playbook, todo_db, tmp_repo, database=target_db)
    assert result["mode"] == "full" and result["changed"]
    assert_same_data((todo_db.cluster, todo_db.name), (todo_db.cluster, target_db))
    run_pg_amcheck(todo_db.cluster, target_db)


@pytest.mark.parametrize("options", [
    {"format": "directory", "jobs": 2, "compression": "gzip:6"},
    {"format": "plain"},
    {"format": "tar", "compression": "none"},
    {"compression": "gzip:9"},
])
def test_every_format_round_trips(ansible_playbook, todo_db, tmp_repo, target_db, options):
    dump(ansible_playbook, todo_db, tmp_repo, **options)
    restore(ansible_playbook, todo_db, tmp_repo, database=target_db, jobs=options.get("jobs", 1))
    assert_same_data((todo_db.cluster, todo_db.name), (todo_db.cluster, target_db))


def test_parallel_restore_of_compressed_custom_archive(ansible_playbook, todo_db, tmp_repo, target_db):
    dump(ansible_playbook, todo_db, tmp_repo)
    restore(ansible_playbook, todo_db, tmp_repo, database=target_db, jobs=2)
    assert_same_data((todo_db.cluster, todo_db.name), (todo_db.cluster, target_db))
    assert not [n for n in os.listdir("/tmp") if n.startswith("pgbackup-restore-")]


def test_full_restore_reports_when_usable_and_after_swap_validates_keys_in_place(ansible_playbook, todo_db, tmp_repo,
                                                                                 target_db):
    cluster = todo_db.cluster
    dump(ansible_playbook, todo_db, tmp_repo)
    during = restore(ansible_playbook, todo_db, tmp_repo, database=target_db, jobs=2)
    assert 0 < during["checks_finished_after_seconds"] <= during["usable_after_seconds"] <= during["duration_seconds"]
    assert during["validated_foreign_keys"] == []

    after = restore(ansible_playbook, todo_db, tmp_repo, database=target_db, jobs=2, clean=True, force=True,
                    validate_foreign_keys="after_swap")
    assert sorted(key["constraint"] for key in after["validated_foreign_keys"]) == [
        '"FK_Categories_Users_UserId"', '"FK_Todos_Categories_CategoryId"', '"FK_Todos_Users_UserId"']
    assert 0 < after["usable_after_seconds"] <= after["checks_finished_after_seconds"] <= after["duration_seconds"]
    assert_same_data((cluster, todo_db.name), (cluster, target_db))

    # A backup whose rows break a key (written with the key's triggers off): the task fails, the database is in place.
    cluster.psql_as_os_user('SET session_replication_role = replica;\n'
                            'UPDATE "Todos" SET "UserId" = -1 WHERE "Id" = (SELECT min("Id") FROM "Todos");',
                            dbname=todo_db.name)
    dump(ansible_playbook, todo_db, tmp_repo)
    failed = restore(ansible_playbook, todo_db, tmp_repo, database=target_db, jobs=2, clean=True, force=True,
                     validate_foreign_keys="after_swap", expect_failure=True)
    assert "Database '%s' IS in place and usable" % target_db in failed["msg"], failed["msg"]
    assert 'ALTER TABLE ONLY public."Todos" VALIDATE CONSTRAINT "FK_Todos_Users_UserId";' in failed["hint"]
    assert failed["database_in_place"] is True and failed["usable_after_seconds"] > 0
    assert [key["constraint"] for key in failed["failed_foreign_keys"]] == ['"FK_Todos_Users_UserId"']
    assert_same_data((cluster, todo_db.name), (cluster, target_db))


def test_refuses_to_overwrite_populated_database_without_force(ansible_playbook, todo_db, tmp_repo):
    dump(ansible_playbook, todo_db, tmp_repo)
    todo_db.cluster.sql('DELETE FROM "Todos" WHERE "Id" % 2 = 0', dbname=todo_db.name)
    before = table_fingerprints(todo_db.cluster, todo_db.name)
    result = restore(ansible_playbook, todo_db, tmp_repo, database=todo_db.name, expect_failure=True)
    assert "refusing to overwrite" in result["msg"] and "force" in result["msg"]
    assert table_fingerprints(todo_db.cluster, todo_db.name) == before


def test_clean_force_restore_replaces_live_database(ansible_playbook, todo_db, tmp_repo):
    original = table_fingerprints(todo_db.cluster, todo_db.name)
    dump(ansible_playbook, todo_db, tmp_repo)
    todo_db.cluster.sql('DELETE FROM "Todos"; DROP TABLE "Categories" CASCADE', dbname=todo_db.name)
    restore(ansible_playbook, todo_db, tmp_repo, database=todo_db.name, clean=True, force=True, jobs=2)
    assert table_fingerprints(todo_db.cluster, todo_db.name) == original
    assert not [n for n in todo_db.cluster.sql("SELECT datname FROM pg_database") if "__restore_" in n[0]]
    # The staging database's owner record did not come along into the live database.
    assert database_comment(todo_db.cluster, todo_db.name) is None


def database_comment(cluster, name):
    return cluster.scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,))


def test_full_restore_drops_the_staging_databases_dead_restores_left(ansible_playbook, todo_db, tmp_repo, target_db):
    """What a restore killed on another host leaves (the killing itself: faults/test_fault_staging.py)."""
    cluster = todo_db.cluster
    dead = target_db + "__restore_99999"
    unrecorded = target_db + "__restore_99998"
    record = {"owner": "todoapi.pgbackup restore staging", "database": dead, "target": target_db, "host": "gone.example",
              "boot_id": "x", "pid": 99999, "process_start": 1, "backend_pid": 2 ** 30, "backend_start": 0}
    other_target = "Other Db__restore_99999"
    try:
        for name in (dead, unrecorded, other_target):
            cluster.create_database(name)
        cluster.sql(pgsql.SQL("COMMENT ON DATABASE {} IS {}").format(pgsql.Identifier(dead), pgsql.Literal(json.dumps(record))))
        dump(ansible_playbook, todo_db, tmp_repo)
        result = restore(ansible_playbook, todo_db, tmp_repo, database=target_db)
        assert result["dropped_staging_databases"] == [dead]
        assert [(k["database"], "no owner record" in k["reason"]) for k in result["leftover_staging_databases"]] == \
            [(unrecorded, True)]
        assert any(unrecorded in warning for warning in result.get("warnings", []))
        names = [row[0] for row in cluster.sql("SELECT datname FROM pg_database")]
        assert dead not in names and unrecorded in names and other_target in names  # only its own target's
        assert_same_data((cluster, todo_db.name), (cluster, target_db))
    finally:
        for name in (dead, unrecorded, other_target):
            cluster.drop_database(name)


def test_per_table_restore_replaces_rows_and_keeps_everything_else(ansible_playbook, todo_db, tmp_repo):
    cluster, name = todo_db.cluster, todo_db.name
    original = table_fingerprints(cluster, name)
    defs = {t: index_and_constraint_defs(cluster, name, t) for t in ("Todos", "Categories")}
    dump(ansible_playbook, todo_db, tmp_repo)
    cluster.sql('DELETE FROM "Todos" WHERE "Id" % 3 = 0; UPDATE "Categories" SET "Name" = \'changed\'; '
                'UPDATE "Users" SET "UserName" = \'later\' WHERE "Id" = 1', dbname=name)
    users_now = table_fingerprints(cluster, name)["public.Users"]
    result = restore(ansible_playbook, todo_db, tmp_repo, database=name, tables=["Todos", "public.Categories"])
    assert result["mode"] == "tables" and result["recreated_tables"] == []
    after = table_fingerprints(cluster, name)
    assert after["public.Todos"] == original["public.Todos"]
    assert after["public.Categories"] == original["public.Categories"]
    assert after["public.Users"] == users_now  # not listed: untouched
    for table, expected in defs.items():
        assert index_and_constraint_defs(cluster, name, table) == expected


def test_per_table_restore_recreates_dropped_table_with_indexes_and_grants(ansible_playbook, todo_db, tmp_repo):
    cluster, name = todo_db.cluster, todo_db.name
    original = table_fingerprints(cluster, name)
    defs = index_and_constraint_defs(cluster, name, "Todos")
    dump(ansible_playbook, todo_db, tmp_repo)
    cluster.sql('DROP TABLE "Todos" CASCADE', dbname=name)
    result = restore(ansible_playbook, todo_db, tmp_repo, database=name, tables=["Todos"])
    assert result["recreated_tables"] == ["public.Todos"]
    assert table_fingerprints(cluster, name)["public.Todos"] == original["public.Todos"]
    assert index_and_constraint_defs(cluster, name, "Todos") == defs
    run_pg_amcheck(cluster, name)


def test_per_table_restore_that_would_break_a_foreign_key_changes_nothing(ansible_playbook, todo_db, tmp_repo):
    cluster, name = todo_db.cluster, todo_db.name
    dump(ansible_playbook, todo_db, tmp_repo)
    cluster.sql('INSERT INTO "Categories" ("Name", "Color", "UserId") VALUES (\'new\', \'#fff\', 1); '
                'UPDATE "Todos" SET "CategoryId" = (SELECT max("Id") FROM "Categories") WHERE "Id" = 1', dbname=name)
    before = table_fingerprints(cluster, name)
    result = restore(ansible_playbook, todo_db, tmp_repo, database=name, tables=["Categories"], expect_failure=True)
    assert "foreign key" in result["msg"]
    assert table_fingerprints(cluster, name) == before


def test_check_mode_changes_nothing(ansible_playbook, todo_db, tmp_repo, target_db):
    args = dict(connection_args(todo_db.cluster), database=todo_db.name, repository=tmp_repo)
    task, unused_run = run_module(ansible_playbook, DUMP, args, check=True)
    assert task["changed"] and "public.Todos" in task["backup"]["tables"]
    assert os.listdir(tmp_repo) == []
    dump(ansible_playbook, todo_db, tmp_repo)
    state = repo_state(tmp_repo)
    result = restore(ansible_playbook, todo_db, tmp_repo, database=target_db, check=True)
    assert result["mode"] == "full"
    assert not todo_db.cluster.database_exists(target_db)
    assert repo_state(tmp_repo) == state


@pytest.mark.parametrize("damage, message", [
    ("bitflip", "Checksum mismatch"),
    ("truncate", "truncated"),
    ("zero", "truncated"),
    ("swap", "replaced"),
])
def test_damaged_backup_is_refused_before_touching_the_target(ansible_playbook, todo_db, tmp_repo, damage, message):
    cluster, name = todo_db.cluster, todo_db.name
    first = dump(ansible_playbook, todo_db, tmp_repo)
    cluster.sql('INSERT INTO "Users" ("Email", "UserName", "PasswordHash", "CreatedAt") '
                'VALUES (\'x@y\', \'x\', \'h\', now())', dbname=name)
    second = dump(ansible_playbook, todo_db, tmp_repo)
    path = second["path"]
    if damage == "bitflip":
        with open(path, "r+b") as handle:
            handle.seek(second["size"] // 2)
            byte = handle.read(1)
            handle.seek(second["size"] // 2)
            handle.write(bytes([byte[0] ^ 0x01]))
    elif damage == "truncate":
        os.truncate(path, second["size"] // 2)
    elif damage == "zero":
        os.truncate(path, 0)
    else:  # the manifest now describes an artifact that belongs to another backup
        with open(first["path"], "rb") as src, open(path, "wb") as dst:
            dst.write(src.read())
    cluster.sql('DELETE FROM "Todos"', dbname=name)
    before = table_fingerprints(cluster, name)
    result = restore(ansible_playbook, todo_db, tmp_repo, database=name, backup=second["id"],
                     tables=["Todos"], expect_failure=True)
    assert message in result["msg"]
    assert table_fingerprints(cluster, name) == before
    # 'latest' skips the damaged newest backup and uses the older good one.
    result = restore(ansible_playbook, todo_db, tmp_repo, database=name, tables=["Todos"])
    assert result["backup"]["id"] == first["id"]


@pytest.mark.parametrize("case, message", [
    ("missing_database", "does not exist"),
    ("wrong_password", "Authentication failed"),
    ("unreachable", "Cannot reach PostgreSQL"),
    ("unknown_table", "not found"),
    ("repository_is_a_file", "not a directory"),
    ("bad_compression", "Unknown compression method"),
])
def test_bad_backup_input_gives_one_clear_error_and_keeps_earlier_backups(ansible_playbook, todo_db, tmp_repo, case,
                                                                          message):
    dump(ansible_playbook, todo_db, tmp_repo)
    state = repo_state(tmp_repo)
    args = dict(connection_args(todo_db.cluster), database=todo_db.name, repository=tmp_repo)
    if case == "missing_database":
        args["database"] = "NoSuchDb"
    elif case == "wrong_password":
        args["password"] = "wrong-" + todo_db.cluster.password
    elif case == "unreachable":
        args["port"] = 1
    elif case == "unknown_table":
        args["tables"] = ["NoSuchTable"]
    elif case == "repository_is_a_file":
        args["repository"] = os.path.join(tmp_repo, os.listdir(tmp_repo)[0])
    else:
        args["compression"] = "brotli"
    task, playbook = run_module(ansible_playbook, DUMP, args, expect_failure=True)
    assert message in task["msg"], task["msg"]
    assert repo_state(tmp_repo) == state
    assert todo_db.cluster.password not in playbook.stdout + playbook.stderr


def test_full_disk_fails_cleanly_and_leaves_no_partial_backup(ansible_playbook, todo_db, tmp_path):
    mount_point = str(tmp_path / "small")
    os.mkdir(mount_point)
    if os.system("mount -t tmpfs -o size=64k tmpfs '%s'" % mount_point) != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        args = dict(connection_args(todo_db.cluster), database=todo_db.name, repository=mount_point, globals=False)
        task, unused_run = run_module(ansible_playbook, DUMP, args, expect_failure=True)
        assert "No space left" in task["msg"]
        assert os.listdir(mount_point) == []
    finally:
        os.system("umount '%s'" % mount_point)


def test_unwritable_repository_is_reported(ansible_playbook, todo_db, tmp_path):
    mount_point = str(tmp_path / "ro")
    os.mkdir(mount_point)
    if os.system("mount -t tmpfs -o ro,size=1m tmpfs '%s'" % mount_point) != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        args = dict(connection_args(todo_db.cluster), database=todo_db.name, repository=mount_point)
        task, unused_run = run_module(ansible_playbook, DUMP, args, expect_failure=True)
        assert "not writable" in task["msg"] or "Permission denied" in task["msg"] or "Read-only" in task["msg"], task["msg"]
    finally:
        os.system("umount '%s'" % mount_point)


def test_gzip_plain_script_restores(ansible_playbook, todo_db, tmp_repo, target_db):
    dump(ansible_playbook, todo_db, tmp_repo, format="plain", compression="gzip:6")
    restore(ansible_playbook, todo_db, tmp_repo, database=target_db)
    assert_same_data((todo_db.cluster, todo_db.name), (todo_db.cluster, target_db))


def test_new_server_restore_brings_roles_and_keeps_operators_login(ansible_playbook, todo_db, tmp_repo, fresh_pg):
    dump(ansible_playbook, todo_db, tmp_repo)
    args = dict(connection_args(fresh_pg), repository=tmp_repo, source_database=todo_db.name, globals=True)
    run_module(ansible_playbook, RESTORE, args)
    assert fresh_pg.scalar("SELECT count(*) FROM pg_roles WHERE rolname = 'todoapi_app'") == 1
    assert_same_data((todo_db.cluster, todo_db.name), (fresh_pg, todo_db.name))
    # The old server's password for postgres was not applied: the password we restored with still works.
    assert fresh_pg.scalar("SELECT 1") == 1
