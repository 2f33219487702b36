# -*- coding: utf-8 -*-
"""Losing a whole host with synchronous streaming on backup1: RPO 0 (issue 17, item 3).

db1 (15/main, a small TodoDb, the stand-in application's workload from app1) archives its WAL to backup1
over SFTP with a long archive_timeout, so the archive alone would lose the last commits, and backup1 runs
pg_receivewal from db1 through a slot, synchronous (role wal_streaming, entry point primary on db1): a
commit returns only once backup1 has it on disk. A base backup goes to backup1. db1 is lost whole
mid-workload; dr_restore.yml dr_method=pitr on new1 reads the base backup, the archive and the stream
directory (its newest .partial) from backup1 over SFTP itself. Checked: no acknowledged commit is lost, the
.partial was used, the report's RPO.
"""

from __future__ import absolute_import, division, print_function

import time

import pytest

from tests.integration.lab.test_lab_dr import (
    ADMIN_PASSWORD, DR_PLAYBOOK, KEY_ON_DB1, KEY_ON_NEW1, KNOWN_HOSTS_ON_DB1, KNOWN_HOSTS_ON_NEW1, NEW1_ACCESS, PLAY_ENV, SETUP,
    SFTP_REPOSITORY, Workload, backup_vars, base_backup_play, dr_vars, iso, read_report, server_vars, tokens_on)
from tests.lib.lab import running_lab
from tests.lib.tododb import create_todo_db

BASE_REPOSITORY = "/var/backups/base-db1-sync"  # on backup1
WAL_ARCHIVE = "/var/backups/wal-db1-sync"  # on backup1
STREAM_DIR = "/var/backups/stream-db1"  # on backup1, pg_receivewal's output, written as the lab user
ARCHIVE_TIMEOUT = 300  # seconds: the archive alone would lose the last commits; the stream must bring them
LOGIN_PASSWORD = "lab-Stream-Secret-17"
RECOVER_TASK = "todoapi.pgbackup.disaster_recovery : Recover the cluster from the base backup and the WAL archive"

STREAMING = """
- name: db1 admits backup1's replication login
  hosts: db1
  gather_facts: false
  become: true
  roles:
    - role: todoapi.pgbackup.backup_login
      vars:
        backup_login_password: {password}
        backup_login_physical: true
        backup_login_hba_sources: ["{{{{ hostvars['backup1'].ansible_host }}}}/32"]
        backup_login_hba_contype: host

- name: backup1 streams db1's WAL (slot on db1)
  hosts: backup1
  gather_facts: false
  become: true
  roles:
    - role: todoapi.pgbackup.wal_streaming
      vars:
        wal_streaming_name: db1-main
        wal_streaming_host: "{{{{ hostvars['db1'].ansible_host }}}}"
        wal_streaming_password: {password}
        wal_streaming_dir: {stream}
        wal_streaming_os_user: pgbackup-lab
        wal_streaming_os_group: pgbackup-lab

- name: db1's commits wait for backup1
  hosts: db1
  gather_facts: false
  become: true
  tasks:
    - name: Synchronous to backup1's pg_receivewal
      ansible.builtin.include_role:
        name: todoapi.pgbackup.wal_streaming
        tasks_from: primary
      vars:
        wal_streaming_synchronous: true
"""


@pytest.fixture(scope="module")
def lab(collections_root):
    """This module loses db1 for good (disks deleted): it runs on a lab of its own, so the tests after it find the
    session's lab with every host."""
    yield from running_lab(collections_root)


SFTP_PITR_SETUP = """
- name: backup1 keeps db1's base backups and WAL archive
  hosts: backup1
  gather_facts: false
  become: true
  tasks:
    - name: Create the directories
      ansible.builtin.file:
        path: "{{{{ item }}}}"
        state: directory
        owner: pgbackup-lab
        mode: "0700"
      loop: [{base}, {wal}]

- name: db1 archives its WAL to backup1 over SFTP
  hosts: db1
  gather_facts: false
  become: true
  tasks:
    - name: WAL archiving (role wal_archiving, archive_url sftp://backup1)
      ansible.builtin.include_role:
        name: todoapi.pgbackup.wal_archiving
"""


def archiving_db1(lab, workload, base, wal, archive_timeout, more_play=""):
    """db1 again (empty), archiving its WAL to backup1's directory wal (archive_timeout seconds), with a small TodoDb
    under the workload and a base backup in backup1's directory base; new1 empty, with its key for backup1.
    more_play: more plays to run with the setup. The number of acknowledged commits before this one's."""
    workload.stop()
    lab.lose("db1")
    lab.reconnect("db1")
    lab.run("new1", ["pg_dropcluster", "--stop", "15", "main"], check=False)  # new1 empty again (after another DR)
    sftp = {"sftp_key_file": KEY_ON_DB1, "sftp_known_hosts": KNOWN_HOSTS_ON_DB1, "sftp_timeout": 10}
    extra = dict(server_vars(lab), **backup_vars(lab))
    extra.update({"wal_archiving_archive_url": "sftp://pgbackup-lab@backup1%s" % wal,
                  "wal_archiving_storage_options": sftp, "wal_archiving_archive_timeout": "%ds" % archive_timeout,
                  "wal_archiving_spool_dir": "/var/lib/postgresql/wal-spool",  # /var/spool is the machine's
                  "wal_archiving_login_host": "127.0.0.1", "wal_archiving_login_password": ADMIN_PASSWORD})
    lab.playbook(SETUP.format(sftp_repository=SFTP_REPOSITORY, key=lab.private_key, key_on_db1=KEY_ON_DB1,
                              known_hosts=lab.known_hosts, known_hosts_on_db1=KNOWN_HOSTS_ON_DB1)
                 + SFTP_PITR_SETUP.format(base=base, wal=wal)
                 + NEW1_ACCESS.format(key=lab.private_key, key_on_new1=KEY_ON_NEW1, known_hosts=lab.known_hosts,
                                      known_hosts_on_new1=KNOWN_HOSTS_ON_NEW1) + more_play,
                 extra_vars=extra, env=PLAY_ENV)
    create_todo_db({"host": str(lab.address("db1")), "port": 5432, "user": "postgres", "password": ADMIN_PASSWORD},
                   size_mb=1)
    before = len(workload.acks())
    workload.start_on("db1")
    lab.playbook(base_backup_play("sftp://pgbackup-lab@backup1%s" % base,
                                  {"sftp_key_file": KEY_ON_DB1, "sftp_known_hosts": KNOWN_HOSTS_ON_DB1}), env=PLAY_ENV)
    return before


def pitr_storage_vars(base, wal):
    """dr_restore.yml's extra vars for a PITR on new1 from backup1's base and wal directories over SFTP."""
    return {"dr_method": "pitr", "dr_backup_host": "", "dr_source": "sftp://pgbackup-lab@backup1%s" % base,
            "dr_wal_archive": "sftp://pgbackup-lab@backup1%s" % wal, "dr_fence_hosts": ["db1"],
            "dr_storage": {"sftp_key_file": KEY_ON_NEW1, "sftp_known_hosts": KNOWN_HOSTS_ON_NEW1, "sftp_timeout": 10}}


def test_pitr_with_synchronous_stream_on_backup1_loses_no_acknowledged_commit(lab):
    workload = Workload(lab)
    before = archiving_db1(lab, workload, BASE_REPOSITORY, WAL_ARCHIVE, ARCHIVE_TIMEOUT,
                           more_play=STREAMING.format(password=LOGIN_PASSWORD, stream=STREAM_DIR))
    workload.wait_for_acks(before + 40)
    time.sleep(3)  # commits after the base backup, acknowledged: only backup1's stream holds the newest

    lost_at = time.time()
    lab.lose("db1")
    acked = workload.acks()[before:]
    started = time.time()
    result = lab.playbook(DR_PLAYBOOK, extra_vars=dr_vars(
        lab, workload, iso(lost_at), dr_wal_stream="sftp://pgbackup-lab@backup1%s" % STREAM_DIR,
        **pitr_storage_vars(BASE_REPOSITORY, WAL_ARCHIVE)), env=PLAY_ENV)
    wall = time.time() - started
    report = read_report(lab, "new1")
    assert report["outcome"] == "succeeded" and report["context"]["method"] == "pitr", report
    recovery = result.host_results(RECOVER_TASK)["new1"]["recovery"]
    streams = recovery["stream_downloads"]
    assert len(streams) == 1 and streams[0]["partial"], streams  # the newest WAL came from backup1's .partial

    on_new1 = tokens_on(lab, "new1")
    lost = [token for token, _at in acked if token not in on_new1]
    print("\nlab DR pitr + synchronous stream on backup1: %d of %d acknowledged commits lost (archive_timeout %d s); "
          "%d stream files downloaded; report RPO %.1f s, RTO %.1f s (play %.1f s); steps %s; load %s" % (
              len(lost), len(acked), ARCHIVE_TIMEOUT, streams[0]["files"], report["rpo_seconds"], report["rto_seconds"],
              wall, ", ".join("%s %.1f s" % (s["name"], s["duration_seconds"] or 0) for s in report["steps"]),
              open("/proc/loadavg").read().split()[:3]))
    assert not lost, "acknowledged commits lost although backup1 streamed synchronously: %s" % lost[:5]
    count = len(workload.acks())
    newer = {token for token, _at in workload.wait_for_acks(count + 10)[count:]}
    assert newer <= tokens_on(lab, "new1")
    workload.stop()
