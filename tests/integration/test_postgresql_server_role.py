# -*- coding: utf-8 -*-
"""Role todoapi.pgbackup.postgresql_server: provisions a real cluster (packages skipped), is
idempotent, lets the application role log in over 127.0.0.1 with scram-sha-256."""

from __future__ import absolute_import, division, print_function

import psycopg2
import pytest

from tests.lib.pgcluster import PgCluster, drop_cluster, find_free_port, next_cluster_name

PLAYBOOK = """
- name: Provision
  hosts: all
  gather_facts: false
  roles:
    - role: todoapi.pgbackup.postgresql_server
"""
APP_PASSWORD = "app-Secret-4711"
ADMIN_PASSWORD = "admin-Secret-0815"
# Module code goes to the become user's Python on stdin, so no temp files must be readable by postgres.
PLAYBOOK_ENV = {"ANSIBLE_PIPELINING": "1"}
SYSTEM_PYTHON = "/usr/bin/python3"


def role_vars(name, port, **overrides):
    values = {
        # become_user postgres cannot run the test venv's Python (it lives under /root): use the system one.
        "ansible_python_interpreter": SYSTEM_PYTHON,
        "postgresql_server_install_packages": False,
        "postgresql_server_cluster_name": name,
        "postgresql_server_port": port,
        "postgresql_server_start_at_boot": False,
        "postgresql_server_listen_addresses": "127.0.0.1",
        "postgresql_server_app_networks": ["127.0.0.1/32"],
        "postgresql_server_app_user": "todoapi_app",
        "postgresql_server_app_password": APP_PASSWORD,
        "postgresql_server_app_database": "TodoDb",
        "postgresql_server_admin_password": ADMIN_PASSWORD,
        "postgresql_server_initdb_options": ["--data-checksums", "--no-sync"],
        "postgresql_server_settings": {"fsync": "off"},
    }
    values.update(overrides)
    return values


def role_task(result, name):
    return result.task("todoapi.pgbackup.postgresql_server : " + name)


@pytest.fixture
def new_cluster():
    """Name and port for a cluster the role creates (harness-style name, so a crash leaves nothing for long)."""
    name, port = next_cluster_name(15), find_free_port()
    try:
        yield name, port
    finally:
        drop_cluster(15, name)


def test_provision_is_idempotent_and_lets_the_app_in(ansible_playbook, new_cluster):
    name, port = new_cluster
    first = ansible_playbook(PLAYBOOK, extra_vars=role_vars(name, port), env=PLAYBOOK_ENV)
    assert first.stats["changed"] > 0
    assert role_task(first, "Create the cluster")["changed"]
    # A new cluster gets listen_addresses before its first start: started once, never restarted.
    assert role_task(first, "Start the cluster with pg_ctlcluster")["changed"]
    assert not role_task(first, "Set listen_addresses")["changed"]
    # pg_createcluster --start-conf wrote start.conf: nothing to rewrite in the first run, nothing in the second
    assert role_task(first, "Start the cluster at boot, or not").get("skipped")
    with open("/etc/postgresql/15/%s/start.conf" % name) as handle:
        assert [line for line in handle.read().splitlines() if line and not line.startswith("#")] == ["manual"]
    assert "todoapi.pgbackup.postgresql_server : Restart PostgreSQL with pg_ctlcluster" not in first.task_names()

    second = ansible_playbook(PLAYBOOK, extra_vars=role_vars(name, port), env=PLAYBOOK_ENV)
    changed = [t["task"] for t in second.tasks if t.get("changed")]
    assert second.stats["changed"] == 0, "second run changed: %s" % changed
    assert "todoapi.pgbackup.postgresql_server : Restart PostgreSQL with pg_ctlcluster" not in second.task_names()

    cluster = PgCluster(15, name, port, password=ADMIN_PASSWORD)
    assert cluster.scalar("SHOW listen_addresses") == "127.0.0.1"
    assert cluster.scalar("SHOW fsync") == "off"
    assert cluster.scalar("SELECT rolpassword LIKE 'SCRAM-SHA-256$%%' AND rolcanlogin FROM pg_authid WHERE rolname = %s",
                          ("todoapi_app",))
    rules = cluster.sql("SELECT type, database, user_name, address, netmask, auth_method FROM pg_hba_file_rules "
                        "WHERE error IS NULL ORDER BY line_number")
    assert ("host", ["TodoDb"], ["todoapi_app"], "127.0.0.1", "255.255.255.255", "scram-sha-256") in rules, rules

    cluster.create_database("TodoDb")
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="todoapi_app", password=APP_PASSWORD, dbname="TodoDb",
                            connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == "todoapi_app"
    finally:
        conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host="127.0.0.1", port=port, user="todoapi_app", password="wrong", dbname="TodoDb",
                         connect_timeout=5).close()

    # On an existing cluster a new listen_addresses goes through ALTER SYSTEM and restarts the server.
    third = ansible_playbook(PLAYBOOK, extra_vars=role_vars(name, port, postgresql_server_listen_addresses="localhost"),
                             env=PLAYBOOK_ENV)
    assert role_task(third, "Restart PostgreSQL with pg_ctlcluster")["changed"], "listen_addresses change must restart"
    assert cluster.scalar("SHOW listen_addresses") == "localhost"
