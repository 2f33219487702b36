# -*- coding: utf-8 -*-
"""A PITR drill next to a live primary cannot hurt it: playbooks/pitr_restore.yml has no default cluster to
recover over, a recovered server archives nothing unless asked, and even when asked it never archives into the
WAL archive the recovery reads (refused before anything changes, also when the archive is read through a
symbolic link). Real PostgreSQL 15: a primary archiving through role wal_archiving (test_pitr's fixture)."""

from __future__ import absolute_import, division, print_function

import glob
import os
import subprocess
import time

import pytest

from tests.integration import test_pitr
from tests.integration.test_pitr import drop_with_leftovers, mark, phases
from tests.lib.ansible_run import run_playbook
from tests.lib.archiving import postgres_dir, wait_archived
from tests.lib.pgcluster import PgCluster

source = test_pitr.source  # the archiving primary with a Todo DB and one base backup (a fixture of this module too)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PITR_PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "pitr_restore.yml")
MODULE_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Recover
      todoapi.pgbackup.pitr_recovery:
        repository: "{{ pitr_args.repository }}"
        archive_dir: "{{ pitr_args.archive_dir }}"
        cluster_version: "{{ pitr_args.cluster_version | default(omit) }}"
        cluster_name: "{{ pitr_args.cluster_name | default(omit) }}"
        wal_command: "{{ pitr_args.wal_command }}"
        stop_server: "{{ pitr_args.stop_server }}"
        timeout: "{{ pitr_args.timeout }}"
        archive_after_recovery: "{{ pitr_args.archive_after_recovery | default(omit) }}"
"""


@pytest.fixture(scope="module")
def drill(source):
    """An existing cluster next to the primary, running, that the tests recover into."""
    mark(source.cluster, "before_drills")
    wait_archived(source.cluster)
    cluster = PgCluster.create()
    try:
        yield cluster
    finally:
        drop_with_leftovers(cluster)


def playbook_vars(source, **extra):
    return dict({"pgbackup_repository": source.repo_dir, "wal_archiving_archive_dir": source.archive,
                 "wal_archiving_wrapper_path": source.wal_command, "pitr_timeout": 120}, **extra)


def module_args(source, drill, **extra):
    return dict({"repository": source.repo_dir, "archive_dir": source.archive, "cluster_version": "15",
                 "cluster_name": drill.name, "wal_command": source.wal_command, "stop_server": True,
                 "timeout": 120}, **extra)


def foreign_timelines(archive):
    """Files of any timeline but the primary's first one: a recovered server's history file or segments."""
    return sorted(name for name in os.listdir(archive)
                  if name.endswith(".history") or (name[:8].isdigit() and name[:8] != "00000001"))


def moved_aside(drill):
    return sorted(glob.glob(drill.data_dir + ".pre-pitr-*"))


def test_the_playbook_has_no_cluster_to_recover_over_by_default(source, drill, collections_root):
    failed = run_playbook(PITR_PLAYBOOK, extra_vars=playbook_vars(source, pitr_stop_server=True),
                          collections_root=collections_root, expect_failure=True)
    message = failed.task("Require the cluster to recover into")["msg"]
    assert "Name the Debian cluster to recover into: -e pitr_cluster_name=<name>" in message
    assert "Nothing was changed" in message
    assert "Plan the recovery (changes nothing)" not in failed.task_names()


def test_the_module_needs_a_cluster_name_or_a_data_directory(source, drill, collections_root):
    args = module_args(source, drill)
    del args["cluster_name"]
    del args["cluster_version"]
    failed = run_playbook(MODULE_PLAY, extra_vars={"pitr_args": args}, collections_root=collections_root,
                          expect_failure=True)
    assert "one of the following is required: cluster_name, data_dir" in failed.task("Recover")["msg"]


def test_a_recovered_server_archives_nothing_by_default(source, drill, collections_root):
    result = run_playbook(PITR_PLAYBOOK, collections_root=collections_root,
                          extra_vars=playbook_vars(source, pitr_cluster_name=drill.name, pitr_stop_server=True))
    recovery = result.task("Recover")["recovery"]
    assert recovery["timeline"] >= 2
    drill.password = source.cluster.password
    drill.wait_until_ready()
    assert drill.scalar("SHOW archive_mode") == "off"
    assert "before_drills" in phases(drill)
    mark(drill, "written_on_the_new_timeline")
    drill.sql("SELECT pg_switch_wal()")
    time.sleep(2)
    assert foreign_timelines(source.archive) == []


def test_archiving_into_the_archive_read_is_refused_before_anything_changes(source, drill, collections_root, tmp_path):
    marker = os.path.join(drill.data_dir, "still-here")
    open(marker, "w").close()
    moved_before = moved_aside(drill)
    # The playbook, with the archive read through a symbolic link: the plan already refuses.
    link = str(tmp_path / "archive-link")
    os.symlink(source.archive, link)
    failed = run_playbook(PITR_PLAYBOOK, collections_root=collections_root, expect_failure=True, extra_vars=playbook_vars(
        source, wal_archiving_archive_dir=link, pitr_cluster_name=drill.name, pitr_stop_server=True,
        pitr_archive_after_recovery=True))
    plan = failed.task("Plan the recovery (changes nothing)")
    assert "would archive WAL into %s, which this recovery reads from" % link in plan["msg"], plan["msg"]
    assert "Nothing was changed" in plan["msg"] and "archive_after_recovery: false" in plan["hint"]
    assert "Recover" not in failed.task_names()
    # The module outside check mode: the running cluster is neither stopped nor moved aside.
    refused = run_playbook(MODULE_PLAY, collections_root=collections_root, expect_failure=True,
                           extra_vars={"pitr_args": module_args(source, drill, archive_after_recovery=True)})
    assert "would archive WAL into %s" % source.archive in refused.task("Recover")["msg"]
    assert drill.is_running() and os.path.exists(marker) and moved_aside(drill) == moved_before
    assert foreign_timelines(source.archive) == []


def test_archiving_elsewhere_is_kept_when_asked_for(source, drill, collections_root):
    """Recovering from a copy of the archive (another host's view of it), the recovered server may archive: its
    archive_command writes into the primary's archive, not into the copy this recovery reads."""
    copy = postgres_dir(source.base, "archive-copy")
    subprocess.run(["runuser", "-u", "postgres", "--", "cp", "-a", source.archive + "/.", copy], check=True)
    result = run_playbook(MODULE_PLAY, collections_root=collections_root, extra_vars={"pitr_args": module_args(
        source, drill, archive_dir=copy, archive_after_recovery=True)})
    assert result.task("Recover")["recovery"]["timeline"] >= 2
    drill.password = source.cluster.password
    drill.wait_until_ready()
    assert drill.scalar("SHOW archive_mode") == "on"
    assert "--archive-dir %s" % source.archive in drill.scalar("SHOW archive_command")
    assert foreign_timelines(copy) == []
