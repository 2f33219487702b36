# -*- coding: utf-8 -*-
"""A full logical restore says when the database became usable and when every check finished, and
with ``validate_foreign_keys: after_swap`` validates the foreign keys once the database is in place
(plugins/module_utils/logical/deferred_foreign_keys.py).

Everything runs against a real server with real pg_dump/pg_restore: the keys are added NOT VALID
during the load, the database is swapped in, rows written then are checked by the keys (a violating
row is rejected), the validation does not wait for the application's open write transaction, keys
the backup holds NOT VALID stay so, and a backup whose rows break a key is refused with ``during``
and, with ``after_swap``, leaves the database in place with an error that says so. The restore role
passes the option through (and build_indexes, see test_restore_deferred_indexes.py), and so does the runner's
restore (--validate-foreign-keys)."""

from __future__ import absolute_import, division, print_function

import json
import os
import threading

import psycopg2
import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import deferred_foreign_keys
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.integration.faults.faultlib import spec_of, take_backup
from tests.lib.ansible_run import REPO_ROOT
from tests.lib.dbcompare import assert_same_data, index_and_constraint_defs
from tests.lib.scratchdb import scratch_database

SCHEMA = """
CREATE TABLE parent (id int PRIMARY KEY, label text);
CREATE TABLE "Child Table" (
    id int PRIMARY KEY,
    parent_id int CONSTRAINT "FK child -> parent" REFERENCES parent (id) ON DELETE CASCADE,
    other_id int REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED
);
CREATE TABLE parted (id int, parent_id int REFERENCES parent (id)) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000000);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 200) g;
INSERT INTO "Child Table" SELECT g, 1 + g % 200, 1 + g % 7 FROM generate_series(1, 5000) g;
INSERT INTO parted SELECT g, 1 + g % 200 FROM generate_series(1, 300) g;
"""
KEY_STATE = """
SELECT c.conname, c.convalidated FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = %s::regclass ORDER BY 1
"""
CHILD = 'public."Child Table"'
RESTORE_PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "restore.yml")


@pytest.fixture
def source_db(pg):
    with scratch_database(pg, "fkdefer_src_%d" % os.getpid(), SCHEMA) as name:
        yield name


@pytest.fixture
def target_db(pg):
    with scratch_database(pg, "fkdefer_dst_%d" % os.getpid()) as name:
        yield name


def restore(pg, repo, source, target, **options):
    return logical_restore.restore(logical_restore.LogicalRestoreRequest(
        LocalRepository(repo), spec_of(pg), database=target, source_database=source, **options))


def key_state(pg, dbname, table=CHILD):
    return pg.sql(KEY_STATE, (table,), dbname=dbname)


def databases(pg):
    return sorted(row[0] for row in pg.sql("SELECT datname FROM pg_database"))


def hooks_before(monkeypatch, owner, method):
    """A function that adds ``hook(instance)``, run before every call of ``owner.method``."""
    hooks = []
    original = getattr(owner, method)

    def hooked(self, *args, **kwargs):
        for hook in hooks:
            hook(self)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(owner, method, hooked)
    return hooks.append


@pytest.fixture
def before_validation(monkeypatch):
    """Run ``hook()`` between the swap-in and the validation of the deferred keys."""
    return hooks_before(monkeypatch, deferred_foreign_keys.DeferredForeignKeys, "validate")


@pytest.mark.parametrize("options", [
    {"jobs": 2},                                   # streamed, parallel data, post-data with -L
    {"jobs": 1},                                   # one pg_restore reading the decoded stream with -L
    {"jobs": 1, "backup_options": {"compression": "none"}},   # one pg_restore reading the archive file
    {"jobs": 2, "backup_options": {"fmt": "directory", "jobs": 2, "compression": "gzip:1"}},
], ids=["parallel", "serial-stream", "serial-file", "directory"])
def test_after_swap_the_database_is_usable_and_checks_new_rows_before_its_keys_are_validated(
        pg, source_db, target_db, tmp_repo, tmp_path, before_validation, options):
    options = dict(options)
    take_backup(pg, source_db, tmp_repo, **options.pop("backup_options", {}))
    seen = {}

    def application_writes(deferred):
        seen["keys"] = key_state(pg, target_db)  # the target name already holds the restored database
        pg.sql("INSERT INTO \"Child Table\" VALUES (90001, 5, 5)", dbname=target_db)
        with pytest.raises(psycopg2.errors.ForeignKeyViolation):
            pg.sql("INSERT INTO \"Child Table\" VALUES (90002, 4242, 1)", dbname=target_db)
        with pytest.raises(psycopg2.errors.ForeignKeyViolation):
            pg.sql("UPDATE \"Child Table\" SET other_id = 4242 WHERE id = 7", dbname=target_db)
        seen["work_dir"] = sorted(os.listdir(str(tmp_path)))
    before_validation(application_writes)

    result = restore(pg, tmp_repo, source_db, target_db, validate_foreign_keys="after_swap", work_dir=str(tmp_path),
                     **options)

    assert seen["keys"] == [("Child Table_other_id_fkey", False), ("FK child -> parent", False)]
    assert seen["work_dir"] == [], "the list files are gone once the load is over"
    assert sorted(key_state(pg, target_db)) == [("Child Table_other_id_fkey", True), ("FK child -> parent", True)]
    assert key_state(pg, target_db, "public.parted") == [("parted_parent_id_fkey", True)]
    assert sorted((k["table"], k["constraint"]) for k in result["validated_foreign_keys"]) == [
        (CHILD, '"Child Table_other_id_fkey"'), (CHILD, '"FK child -> parent"')]
    assert all(k["seconds"] >= 0 for k in result["validated_foreign_keys"])
    assert 0 < result["usable_after_seconds"] <= result["checks_finished_after_seconds"] <= result["duration_seconds"]
    pg.sql("DELETE FROM \"Child Table\" WHERE id = 90001", dbname=target_db)
    assert_same_data((pg, source_db), (pg, target_db))
    for table in ("parent", "Child Table", "parted"):
        assert index_and_constraint_defs(pg, target_db, table) == index_and_constraint_defs(pg, source_db, table)


def test_the_validation_does_not_wait_for_the_application_s_open_write_transaction(
        pg, source_db, target_db, tmp_repo, before_validation):
    take_backup(pg, source_db, tmp_repo)
    app = {}

    def application_holds_a_write_transaction(deferred):
        app["conn"] = pg.connect(target_db)
        with app["conn"].cursor() as cursor:
            cursor.execute("INSERT INTO \"Child Table\" VALUES (90003, 3, 3)")  # ROW EXCLUSIVE, kept until commit
        # Should the validation wait for this transaction, it is rolled back after a minute (and the test fails).
        app["timer"] = threading.Timer(60, lambda: app.setdefault("rolled_back", app["conn"].rollback()))
        app["timer"].start()
    before_validation(application_holds_a_write_transaction)

    try:
        result = restore(pg, tmp_repo, source_db, target_db, jobs=2, validate_foreign_keys="after_swap")
        app["timer"].cancel()
        assert "rolled_back" not in app, "the validation waited for the application's transaction"
        app["conn"].commit()
    finally:
        if "conn" in app:
            app["timer"].cancel()
            app["conn"].close()
    assert len(result["validated_foreign_keys"]) == 2
    assert pg.scalar("SELECT count(*) FROM \"Child Table\" WHERE id = 90003", dbname=target_db) == 1


def test_keys_the_backup_holds_not_valid_stay_not_valid(pg, source_db, target_db, tmp_repo):
    pg.sql("CREATE TABLE loose (id int, parent_id int)", dbname=source_db)
    pg.sql("INSERT INTO loose VALUES (1, 1), (2, 4242)", dbname=source_db)
    pg.sql("ALTER TABLE loose ADD CONSTRAINT loose_fk FOREIGN KEY (parent_id) REFERENCES parent (id) NOT VALID",
           dbname=source_db)
    take_backup(pg, source_db, tmp_repo)

    for mode in ("after_swap", "during"):
        result = restore(pg, tmp_repo, source_db, target_db, jobs=2, validate_foreign_keys=mode, force=True, clean=True)
        assert key_state(pg, target_db, "public.loose") == [("loose_fk", False)], mode
        assert [k["constraint"] for k in result["validated_foreign_keys"]] == (
            ['"Child Table_other_id_fkey"', '"FK child -> parent"'] if mode == "after_swap" else [])
        with pytest.raises(psycopg2.errors.ForeignKeyViolation):
            pg.sql("INSERT INTO loose VALUES (3, 4343)", dbname=target_db)


def test_rows_that_break_a_key_are_refused_during_and_leave_the_database_in_place_after_swap(
        pg, source_db, target_db, tmp_repo):
    pg.psql_as_os_user("SET session_replication_role = replica;\n"  # no foreign-key triggers: a broken backup
                       "INSERT INTO \"Child Table\" VALUES (6001, 4242, 1), (6002, 4343, 1);", dbname=source_db)
    take_backup(pg, source_db, tmp_repo)
    before = databases(pg)

    with pytest.raises(PgBackupError, match="FK child -> parent"):
        restore(pg, tmp_repo, source_db, target_db, jobs=2)
    assert databases(pg) == before, "with during, nothing was replaced"

    with pytest.raises(logical_restore.ForeignKeysNotValidated) as failure:
        restore(pg, tmp_repo, source_db, target_db, jobs=2, validate_foreign_keys="after_swap")
    error = failure.value
    assert "Database '%s' IS in place and usable" % target_db in error.message
    assert '"FK child -> parent" on public."Child Table"' in error.message and "4242" in error.message
    assert 'ALTER TABLE ONLY public."Child Table" VALIDATE CONSTRAINT "FK child -> parent";' in error.hint
    assert error.details["database_in_place"] is True and error.details["usable_after_seconds"] > 0
    assert [k["constraint"] for k in error.details["failed_foreign_keys"]] == ['"FK child -> parent"']
    assert [k["constraint"] for k in error.details["validated_foreign_keys"]] == ['"Child Table_other_id_fkey"']
    # In place: the data, with the failed key still checking new rows, the others validated.
    assert pg.scalar("SELECT count(*) FROM \"Child Table\"", dbname=target_db) == 5002
    assert sorted(key_state(pg, target_db)) == [("Child Table_other_id_fkey", True), ("FK child -> parent", False)]
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        pg.sql("INSERT INTO \"Child Table\" VALUES (90004, 4444, 1)", dbname=target_db)


def test_after_swap_refuses_what_it_cannot_defer_before_touching_anything(pg, source_db, target_db, tmp_repo):
    take_backup(pg, source_db, tmp_repo, fmt="plain")
    before = databases(pg)
    for action in (logical_restore.plan, logical_restore.restore):
        with pytest.raises(PgBackupError, match="plain-format backup"):
            action(logical_restore.LogicalRestoreRequest(LocalRepository(tmp_repo), spec_of(pg), database=target_db,
                                                         source_database=source_db, validate_foreign_keys="after_swap"))
    assert databases(pg) == before
    with pytest.raises(PgBackupError, match="validate_foreign_keys must be one of during, after_swap"):
        restore(pg, tmp_repo, source_db, target_db, validate_foreign_keys="later")

    take_backup(pg, source_db, tmp_repo)
    restore(pg, tmp_repo, source_db, target_db, backup="latest")
    with pytest.raises(PgBackupError, match="force without clean restores in place"):
        restore(pg, tmp_repo, source_db, target_db, force=True, validate_foreign_keys="after_swap")


def test_during_reports_its_checks_before_the_swap_in_and_in_place_after_the_commit(pg, source_db, target_db, tmp_repo):
    take_backup(pg, source_db, tmp_repo)
    staged = restore(pg, tmp_repo, source_db, target_db, jobs=2)
    assert 0 < staged["checks_finished_after_seconds"] <= staged["usable_after_seconds"] <= staged["duration_seconds"]
    assert staged["validated_foreign_keys"] == []

    in_place = restore(pg, tmp_repo, source_db, target_db, force=True)
    assert 0 < in_place["usable_after_seconds"] <= in_place["checks_finished_after_seconds"] <= in_place["duration_seconds"]

    tables = restore(pg, tmp_repo, source_db, target_db, tables=["parent"])
    assert 0 < tables["usable_after_seconds"] == tables["checks_finished_after_seconds"] <= tables["duration_seconds"]


def test_the_restore_role_passes_the_option_through_and_says_when_the_database_was_usable(
        ansible_playbook, pg, todo_db, tmp_repo):
    take_backup(pg, todo_db.name, tmp_repo)
    result = ansible_playbook(RESTORE_PLAYBOOK, extra_vars={
        "pgbackup_restore_repository": tmp_repo, "pgbackup_restore_database": todo_db.name,
        "pgbackup_restore_db_host": pg.host, "pgbackup_restore_db_port": pg.port,
        "pgbackup_restore_db_password": pg.password, "pgbackup_restore_confirm": True, "pgbackup_restore_amcheck": False,
        "pgbackup_restore_validate_foreign_keys": "after_swap", "pgbackup_restore_build_indexes": "after_swap"})

    restored = result.task("todoapi.pgbackup.restore : Restore the whole database")
    assert len(restored["validated_foreign_keys"]) == 3
    assert '"IX_Categories_UserId"' in [index["index"] for index in restored["built_indexes"]], restored
    said = result.task("todoapi.pgbackup.restore : Say what was restored")["msg"]
    assert "(usable after %s s, checks done after %s s)" % (
        restored["usable_after_seconds"], restored["checks_finished_after_seconds"]) in said


def run_runner(pg, tmp_path, repo, database, *argv):
    """The runner's restore in this process (as root, password only in a 0600 passfile): (exit status, events)."""
    passfile = tmp_path / "pgpass"
    passfile.write_text("*:*:*:%s:%s\n" % (pg.user, pg.password))
    passfile.chmod(0o600)
    log_file = tmp_path / "runner.log"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "repository": repo, "databases": [database], "owner": "postgres", "log_file": str(log_file),
        "lock_file": str(tmp_path / "run.lock"), "connection": {"host": pg.host, "port": pg.port, "user": pg.user,
                                                                "passfile": str(passfile)}}))
    code = cli.main(["--config", str(config), "--quiet", "restore"] + list(argv))
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    log_file.unlink()
    return code, {event["event"]: event for event in events}


def test_the_runner_restores_after_swap_logs_when_usable_and_alerts_on_keys_that_fail(
        pg, source_db, target_db, tmp_repo, tmp_path):
    take_backup(pg, source_db, tmp_repo)
    code, events = run_runner(pg, tmp_path, tmp_repo, source_db, "--database", target_db, "--force", "--clean",
                              "--jobs", "2", "--validate-foreign-keys", "after_swap")
    assert code == 0, events
    done = events["restore_ok"]
    assert done["validate_foreign_keys"] == "after_swap"
    assert 0 < done["usable_after_seconds"] <= done["checks_finished_after_seconds"] <= done["duration"]
    assert done["validated_foreign_keys"] == ['"Child Table_other_id_fkey"', '"FK child -> parent"']
    assert "usable after" in done["message"]

    pg.psql_as_os_user("SET session_replication_role = replica;\n"
                       "INSERT INTO \"Child Table\" VALUES (6001, 4242, 1);", dbname=source_db)
    take_backup(pg, source_db, tmp_repo)
    code, events = run_runner(pg, tmp_path, tmp_repo, source_db, "--database", target_db, "--force", "--clean",
                              "--validate-foreign-keys", "after_swap")
    assert code == 1 and "restore_ok" not in events and "restore_failed" not in events
    alert = events["restore_foreign_keys_not_validated"]
    assert alert["level"] == "error"
    assert alert["database_in_place"] is True and alert["usable_after_seconds"] > 0
    assert [key["constraint"] for key in alert["failed_foreign_keys"]] == ['"FK child -> parent"']
    assert "IS in place and usable" in alert["message"] and "VALIDATE CONSTRAINT" in alert["message"]
    assert pg.scalar("SELECT count(*) FROM \"Child Table\"", dbname=target_db) == 5001
