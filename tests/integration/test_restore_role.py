# -*- coding: utf-8 -*-
"""Role todoapi.pgbackup.restore through playbooks/restore.yml, against a real cluster and a stand-in
application: full restore with confirmation (app stopped and started, data equal to the backup),
refusal without confirmation (nothing changed, app never stopped), per-table restore."""

from __future__ import absolute_import, division, print_function

import os
import shutil
import tempfile

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.dbcompare import assert_same_data, table_fingerprints
from tests.lib.pgcluster import find_free_port
from tests.lib.standin_app import StandinApp

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESTORE_PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "restore.yml")


def take_backup(cluster, database, repository):
    spec = ConnectionSpec(host=cluster.host, port=cluster.port, user=cluster.user, password=cluster.password)
    request = logical_backup.LogicalBackupRequest(database, LocalRepository(repository), spec)
    return logical_backup.backup(request)


@pytest.fixture
def app(pg, todo_db):
    work_dir = tempfile.mkdtemp(prefix="pgbackup-standin-")
    standin = StandinApp(work_dir, find_free_port())
    standin.write_settings(pg.host, pg.port, todo_db.name, pg.user, pg.password)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


def restore_vars(pg, todo_db, repository, app=None, **overrides):
    values = {
        "pgbackup_restore_repository": repository,
        "pgbackup_restore_database": todo_db.name,
        "pgbackup_restore_db_host": pg.host,
        "pgbackup_restore_db_port": pg.port,
        "pgbackup_restore_db_password": pg.password,
    }
    if app is not None:
        values.update({
            "pgbackup_app_manager": "command",
            "pgbackup_app_stop_command": app.command_line("stop"),
            "pgbackup_app_start_command": app.command_line("start"),
            "pgbackup_app_health_command": app.command_line("health"),
            "pgbackup_app_health_retries": 10,
            "pgbackup_app_health_delay": 1,
        })
    values.update(overrides)
    return values


def damage(pg, database):
    pg.sql('DELETE FROM "Todos" WHERE "Id" % 3 = 0', dbname=database)
    pg.sql('UPDATE "Users" SET "UserName" = \'changed\' WHERE "Id" < 5', dbname=database)


def test_full_restore_with_confirmation(ansible_playbook, pg, todo_db, tmp_repo, app):
    manifest = take_backup(pg, todo_db.name, tmp_repo)
    at_backup = table_fingerprints(pg, todo_db.name)
    damage(pg, todo_db.name)
    assert table_fingerprints(pg, todo_db.name) != at_backup
    pid_before = open(app.pidfile).read()

    extra_vars = restore_vars(pg, todo_db, tmp_repo, app, pgbackup_restore_confirm=True)
    result = ansible_playbook(RESTORE_PLAYBOOK, extra_vars=extra_vars)

    assert_same_data(at_backup, (pg, todo_db.name))
    restored = result.task("todoapi.pgbackup.restore : Restore the whole database")
    assert restored["backup"]["id"] == manifest["id"]
    check = result.task("todoapi.pgbackup.restore : Check the restored data (row counts, pg_amcheck, smoke queries)")
    assert check["amcheck"] == "ok" and check["counts_match"]
    assert check["smoke_queries"][0]["first_row"] == [todo_db.row_counts["Users"]]
    assert result.task("todoapi.pgbackup.restore : Stop the application with its stop command")["changed"]
    # Stopped and started again: a new process, healthy on the restored database.
    assert app.is_running() and open(app.pidfile).read() != pid_before
    code, body = app.health()
    assert code == 200 and body["users"] == todo_db.row_counts["Users"], body
    assert not pg.scalar("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (todo_db.name + "\\_\\_%",))


def test_refuses_without_confirmation_and_changes_nothing(ansible_playbook, pg, todo_db, tmp_repo, app):
    take_backup(pg, todo_db.name, tmp_repo)
    damage(pg, todo_db.name)
    before = table_fingerprints(pg, todo_db.name)
    pid_before = open(app.pidfile).read()

    result = ansible_playbook(RESTORE_PLAYBOOK, extra_vars=restore_vars(pg, todo_db, tmp_repo, app),
                              expect_failure=True)

    refusal = result.task("todoapi.pgbackup.restore : Refuse to replace data without confirmation")
    assert refusal["failed"]
    assert "Nothing was changed" in refusal["msg"] and "pgbackup_restore_confirm=true" in refusal["msg"]
    assert_same_data(before, (pg, todo_db.name))
    assert open(app.pidfile).read() == pid_before, "the application must not have been stopped"
    assert app.health()[0] == 200


def test_partial_restore_of_listed_tables(ansible_playbook, pg, todo_db, tmp_repo):
    take_backup(pg, todo_db.name, tmp_repo)
    at_backup = table_fingerprints(pg, todo_db.name)
    damage(pg, todo_db.name)
    damaged = table_fingerprints(pg, todo_db.name)

    result = ansible_playbook(RESTORE_PLAYBOOK, extra_vars=restore_vars(
        pg, todo_db, tmp_repo, pgbackup_restore_confirm=True, pgbackup_restore_tables=["Todos"]))

    restored = result.task("todoapi.pgbackup.restore : Restore the listed tables")
    assert restored["restored_tables"] == ["public.Todos"]
    after = table_fingerprints(pg, todo_db.name)
    assert after["public.Todos"] == at_backup["public.Todos"]
    assert after["public.Users"] == damaged["public.Users"], "tables not listed must stay as they are"
    check = result.task("todoapi.pgbackup.restore : Check the restored data (row counts, pg_amcheck, smoke queries)")
    assert list(check["tables"]) == ["public.Todos"]


def test_pre_change_backup_verifies_and_makes_a_copy(ansible_playbook, pg, todo_db, tmp_repo, app):
    before = table_fingerprints(pg, todo_db.name)
    copy = todo_db.name + "_premigration"
    extra_vars = restore_vars(pg, todo_db, tmp_repo, app)
    extra_vars.update({"pre_change_database": todo_db.name, "pgbackup_repository": tmp_repo, "pre_change_stop_app": True,
                       "pre_change_become": False, "pgbackup_db_host": pg.host, "pgbackup_db_port": pg.port,
                       "pgbackup_password": pg.password})
    pid_before = open(app.pidfile).read()
    # A copy left from an earlier run (the migration was tested on it) is replaced without complaint.
    pg.create_database(copy)
    pg.sql("CREATE TABLE migrated (id int)", dbname=copy)
    try:
        result = ansible_playbook(os.path.join(REPO_ROOT, "playbooks", "pre_change_backup.yml"), extra_vars=extra_vars)
        assert_same_data(before, (pg, copy))
        verified = result.task("Verify the backup (restored into a throwaway database, counts, pg_amcheck, smoke queries)")
        assert verified["verified"] and verified["level"] == "restore"
        rollback = " ".join(result.task("Rollback procedure")["msg"])
        assert "pgbackup_restore_backup=%s" % verified["backup_id"] in rollback
        assert open(app.pidfile).read() != pid_before and app.health()[0] == 200, "stopped for the backup, then resumed"
    finally:
        pg.drop_database(copy)
