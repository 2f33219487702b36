# -*- coding: utf-8 -*-
"""docs/pitr.md "Recovering to just before a mistake", followed as written: a mistake (all todos
deleted) is committed on an archiving primary; playbooks/pitr_restore.yml (run by its collection
name on this machine, as the docs show) is asked for the moment before it, into ANOTHER cluster next
to the live primary. While the mistake's WAL segment is not archived the plan step refuses - the
archive holds no transaction after the target - and nothing changes. After `SELECT pg_switch_wal()`
and waiting for pg_stat_archiver to report that segment, the same command recovers the data as it
was before the mistake, and the primary and its archive are left alone."""

from __future__ import absolute_import, division, print_function

import glob
import os
import shutil
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.ansible_run import run_playbook
from tests.lib.archiving import archiving_conf, install_wal_tool, postgres_dir, shared_dir, wait_archived
from tests.lib.engine import spec_of
from tests.lib.pgcluster import PgCluster
from tests.lib.tododb import create_todo_db

PITR_PLAYBOOK = "- ansible.builtin.import_playbook: todoapi.pgbackup.pitr_restore\n"
SYSTEM_PYTHON = "/usr/bin/python3"  # what docs/pitr.md tells a local run to use
NOT_ARCHIVED = "is after the last transaction in the WAL archive"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (clusters)")


@pytest.fixture
def primary():
    base = shared_dir("pgbackup-mistake-")
    wal_command = install_wal_tool(base)
    archive = postgres_dir(base, "archive")
    repository = postgres_dir(base, "repository")
    # No archive_timeout: the segment holding the mistake stays unarchived until it is switched.
    cluster = PgCluster.create(extra_conf=archiving_conf(wal_command, archive))
    try:
        create_todo_db(cluster, dbname="TodoDb", size_mb=1)
        base_backup.backup(base_backup.PhysicalBackupRequest(LocalRepository(repository), spec_of(cluster)))
        wait_archived(cluster)
        yield cluster, wal_command, archive, repository
    finally:
        cluster.drop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def elsewhere():
    """The other place: a new, empty cluster (its fresh data directory is moved aside by the recovery)."""
    cluster = PgCluster.create()
    try:
        yield cluster
    finally:
        cluster.drop()
        for leftover in glob.glob(cluster.data_dir + ".pre-pitr-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def archive_state(archive):
    return sorted(name for name in os.listdir(archive) if not name.startswith(".tmp-"))


def test_recover_to_just_before_a_mistake_once_its_segment_is_archived(collections_root, primary, elsewhere):
    cluster, wal_command, archive, repository = primary
    todos = cluster.scalar('SELECT count(*) FROM "Todos"', dbname="TodoDb")
    time.sleep(0.3)
    before_mistake = cluster.scalar("SELECT now()")
    time.sleep(0.3)
    cluster.sql('DELETE FROM "Todos"', dbname="TodoDb")  # the mistake
    extra_vars = {
        "ansible_python_interpreter": SYSTEM_PYTHON,
        "pgbackup_repository": repository, "wal_archiving_archive_dir": archive, "wal_archiving_wrapper_path": wal_command,
        "pitr_cluster_name": elsewhere.name, "pitr_target_time": before_mistake.isoformat(),
        "pitr_stop_server": True, "pitr_archive_after_recovery": False, "pitr_timeout": 120,
    }

    refused = run_playbook(PITR_PLAYBOOK, extra_vars=extra_vars, collections_root=collections_root, expect_failure=True)
    plan = refused.task("Plan the recovery (changes nothing)")
    assert NOT_ARCHIVED in plan["msg"] and "Use target latest" in plan["msg"], plan["msg"]
    assert "Recover" not in refused.task_names()
    assert elsewhere.is_running() and not glob.glob(elsewhere.data_dir + ".pre-pitr-*")

    # What the docs tell the operator to do on the primary: switch the segment, wait for the archiver.
    segment = cluster.scalar("SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.time() + 30
    while cluster.scalar("SELECT last_archived_wal FROM pg_stat_archiver") < segment:
        assert time.time() < deadline, cluster.sql("SELECT * FROM pg_stat_archiver")
        time.sleep(0.2)
    archived = archive_state(archive)

    recovered = run_playbook(PITR_PLAYBOOK, extra_vars=extra_vars, collections_root=collections_root)
    recovery = recovered.task("Recover")["recovery"]
    assert "recovery stopping before commit" in recovery["recovery_stop"], recovery
    elsewhere.password = cluster.password  # the recovered cluster has the primary's roles
    elsewhere.wait_until_ready()
    assert elsewhere.scalar('SELECT count(*) FROM "Todos"', dbname="TodoDb") == todos > 0
    assert elsewhere.scalar("SHOW archive_mode") == "off"
    assert cluster.scalar('SELECT count(*) FROM "Todos"', dbname="TodoDb") == 0, "the primary is left alone"
    assert archive_state(archive) == archived, "the recovery must not write into the primary's archive"
