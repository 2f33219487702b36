# -*- coding: utf-8 -*-
"""WAL archiving (role wal_archiving), point-in-time recovery (pitr_recovery, playbooks/pitr_restore.yml)
and the measured RPO of archive mode and of synchronous pg_receivewal streaming, on real PostgreSQL 15."""

from __future__ import absolute_import, division, print_function

import glob
import os
import shutil
import signal
import subprocess
import threading
import time

import psycopg2
import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import pitr
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_archive
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.ansible_run import run_playbook
from tests.lib.archiving import archiving_conf, install_wal_tool, postgres_dir, shared_dir, wait_archived
from tests.lib.dbcompare import run_pg_amcheck
from tests.lib.dr_local import SYSTEM_PYTHON
from tests.lib.engine import spec_of
from tests.lib.pgcluster import PgCluster, find_free_port
from tests.lib.tododb import create_todo_db

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCHIVE_TIMEOUT = 5
APP_NAME = "todoapi_receivewal"
ROLE = "todoapi.pgbackup.wal_archiving : "

ROLE_PLAY = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: todoapi.pgbackup.wal_archiving
"""


def drop_with_leftovers(cluster):
    cluster.drop()
    for leftover in glob.glob(cluster.data_dir + ".pre-pitr-*") + glob.glob(cluster.data_dir + ".failed-pitr-*"):
        shutil.rmtree(leftover, ignore_errors=True)


class Source(object):
    pass


@pytest.fixture(scope="module")
def source(collections_root):
    """A cluster archiving through the wal_archiving role (archive_timeout 5 s), a Todo DB and one base backup."""
    src = Source()
    src.base = shared_dir("pgbackup-pitr-")
    src.wal_command = install_wal_tool(src.base)
    src.archive = postgres_dir(src.base, "archive")
    src.repo_dir = postgres_dir(src.base, "repo")
    src.cluster = PgCluster.create()
    try:
        extra = {
            "wal_archiving_pg_version": 15, "wal_archiving_cluster_name": src.cluster.name,
            # the role's default login (Unix socket, no password): its SQL tasks become the postgres OS user
            # (peer authentication), whose Python must be the system's (it cannot run the venv's)
            "ansible_python_interpreter": SYSTEM_PYTHON,
            "wal_archiving_port": src.cluster.port, "wal_archiving_archive_dir": src.archive,
            "wal_archiving_archive_timeout": "%ds" % ARCHIVE_TIMEOUT,
            "wal_archiving_engine_dir": os.path.join(src.base, "role-lib"),
            "wal_archiving_wrapper_path": os.path.join(src.base, "role-bin", "todoapi-pgbackup-wal"),
        }
        os.makedirs(os.path.join(src.base, "role-bin"), 0o755)
        src.role_vars = extra
        src.role_run = run_playbook(ROLE_PLAY, extra_vars=extra, collections_root=collections_root)
        create_todo_db(src.cluster, dbname="TodoDb", size_mb=1)
        src.cluster.sql("CREATE TABLE marks (id serial PRIMARY KEY, phase text NOT NULL, at timestamptz DEFAULT now())",
                        dbname="TodoDb")
        mark(src.cluster, "before_backup")
        src.repo = LocalRepository(src.repo_dir)
        src.backup = base_backup.backup(base_backup.PhysicalBackupRequest(src.repo, spec_of(src.cluster)))
        yield src
    finally:
        src.cluster.drop()
        shutil.rmtree(src.base, ignore_errors=True)


def mark(cluster, phase):
    """Commit one row; returns its transaction id."""
    conn = cluster.connect("TodoDb")
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("INSERT INTO marks (phase) VALUES (%s)", (phase,))
            cur.execute("SELECT txid_current()")
            xid = cur.fetchone()[0]
        conn.commit()
        return xid
    finally:
        conn.close()


def phases(cluster):
    return set(row[0] for row in cluster.sql("SELECT DISTINCT phase FROM marks", dbname="TodoDb"))


@pytest.fixture(scope="module")
def history(source):
    """Marks around every kind of recovery target, all archived."""
    c = source.cluster
    points = {}
    mark(c, "t_before")
    time.sleep(0.3)
    points["time"] = c.scalar("SELECT now()")
    time.sleep(0.3)
    mark(c, "t_after")
    points["xid"] = mark(c, "x_target")
    mark(c, "x_after")
    mark(c, "n_before")
    c.sql("SELECT pg_create_restore_point('before-bad-deploy')")
    mark(c, "n_after")
    mark(c, "l_before")
    points["lsn"] = c.scalar("SELECT pg_current_wal_insert_lsn()::text")
    mark(c, "l_after")
    mark(c, "tail")
    wait_archived(c)
    return points


@pytest.fixture(scope="module")
def target(source):
    """One Debian cluster that every recovery replaces (its data directory is moved aside each time)."""
    cluster = PgCluster.create()
    try:
        yield cluster
    finally:
        drop_with_leftovers(cluster)


def recover(source, target_cluster, **kwargs):
    kwargs.setdefault("stop_server", True)
    kwargs.setdefault("archive_after_recovery", False)
    request = pitr.PitrRequest(source.repo, source.archive, cluster_version=15, cluster_name=target_cluster.name,
                               wal_command=source.wal_command, timeout=120, **kwargs)
    result = pitr.recover(request)
    target_cluster.password = source.cluster.password  # the recovered cluster has the source's roles
    target_cluster.wait_until_ready()
    return result


def test_role_configured_archiving_and_is_idempotent(source, collections_root):
    c = source.cluster
    assert c.scalar("SHOW archive_mode") == "on"
    assert c.scalar("SHOW archive_timeout") == "%ds" % ARCHIVE_TIMEOUT
    command = c.scalar("SHOW archive_command")
    assert command.startswith(source.role_vars["wal_archiving_wrapper_path"] + " archive-wal %p %f --archive-dir ")
    assert "--compress zstd" in command
    # archive_mode changed: the restart handler ran, and the forced switch was seen archived
    assert ROLE + "Note whether PostgreSQL must restart for the new settings" in source.role_run.task_names()
    assert ROLE + "Restart PostgreSQL" in source.role_run.task_names()
    assert source.role_run.task(ROLE + "Wait until PostgreSQL reports the segment archived")["query_result"][0]["done"]
    assert c.scalar("SELECT failed_count FROM pg_stat_archiver") == 0
    # A segment the archiver is writing right now has a temporary name until it is complete (here once
    # the .backup file of the fixture's base backup): only finished files are the archive's content.
    archived = [name for name in os.listdir(source.archive) if not name.startswith(wal_archive.TMP_PREFIX)]
    assert archived and all(name.endswith(".zst") for name in archived)
    assert all(oct(os.stat(os.path.join(source.archive, n)).st_mode & 0o777) == "0o600" for n in archived)
    again = run_playbook(ROLE_PLAY, extra_vars=source.role_vars, collections_root=collections_root)
    assert again.stats["changed"] == 0, [(t["task"], t.get("results", t.get("msg"))) for t in again.tasks if t.get("changed")]


def test_recover_to_a_time_with_the_playbook(source, history, target, collections_root):
    playbook = os.path.join(REPO_ROOT, "playbooks", "pitr_restore.yml")
    when = history["time"].isoformat()
    result = run_playbook(playbook, collections_root=collections_root, extra_vars={
        "pgbackup_repository": source.repo_dir, "wal_archiving_archive_dir": source.archive, "pitr_cluster_name": target.name,
        "pitr_target_time": when, "pitr_stop_server": True, "pitr_archive_after_recovery": False,
        "wal_archiving_wrapper_path": source.wal_command, "pitr_timeout": 120})
    plan = result.task("Plan the recovery (changes nothing)")["recovery"]
    assert plan["backup_id"] == source.backup["id"] and plan["wal"]["complete"]
    recovery = result.task("Recover")["recovery"]
    print("\nPITR to time %s: %s; last replayed transaction %s" % (
        when, recovery["recovery_stop"], recovery["last_replay_timestamp"]))
    assert recovery["timeline"] >= 2 and recovery["previous_data_dir"].startswith(target.data_dir + ".pre-pitr-")
    assert os.path.isdir(recovery["previous_data_dir"])
    target.password = source.cluster.password
    got = phases(target)
    assert {"before_backup", "t_before"} <= got and "t_after" not in got and "tail" not in got
    assert "recovery stopping before commit" in recovery["recovery_stop"]
    assert target.scalar("SELECT pg_is_in_recovery()") is False
    with open(os.path.join(target.data_dir, "postgresql.auto.conf")) as handle:
        auto_conf = handle.read()
    assert "recovery_target_time" not in auto_conf and "restore_command" in auto_conf  # target reset after promotion
    run_pg_amcheck(target, "TodoDb")


@pytest.mark.parametrize("kind", ["xid", "name", "lsn", "latest", "immediate"])
def test_recover_to_xid_restore_point_lsn_latest_and_immediate(source, history, target, kind):
    options = {"xid": {"target_xid": history["xid"]}, "name": {"target_name": "before-bad-deploy"},
               "lsn": {"target_lsn": history["lsn"]}, "latest": {"target": "latest"},
               "immediate": {"target": "immediate"}}[kind]
    result = recover(source, target, **options)
    got = phases(target)
    expected_last = {"xid": "x_target", "name": "n_before", "lsn": "l_before", "latest": "tail",
                     "immediate": "before_backup"}[kind]
    order = ["before_backup", "t_before", "t_after", "x_target", "x_after", "n_before", "n_after", "l_before",
             "l_after", "tail"]
    position = order.index(expected_last)
    assert set(order[:position + 1]) <= got, (kind, got)
    assert not (set(order[position + 1:]) & got), (kind, got)
    assert result["promoted"] and result["timeline"] >= 2
    print("\nPITR to %s: timeline %s, %s" % (kind, result["timeline"], result["recovery_stop"] or "replayed all WAL"))
    run_pg_amcheck(target, "TodoDb")


def test_unreachable_targets_fail_before_anything_changes(source, history, target):
    if not target.is_running():
        target.start()
    marker = os.path.join(target.data_dir, "still-here")
    open(marker, "w").close()
    moved_before = glob.glob(target.data_dir + ".pre-pitr-*")
    with pytest.raises(PgBackupError, match="before the end of the oldest base backup"):
        recover(source, target, target_time="2000-01-01T00:00:00Z")
    with pytest.raises(PgBackupError, match="after the last transaction in the WAL archive"):
        recover(source, target, target_time="2999-01-01T00:00:00Z")
    with pytest.raises(PgBackupError, match="No restore point named 'nope'"):
        recover(source, target, target_name="nope")
    with pytest.raises(PgBackupError, match="after the end of the archived WAL"):
        recover(source, target, target_lsn="FF/0")
    with pytest.raises(PgBackupError, match="did not commit"):
        recover(source, target, target_xid=str(history["xid"] + 100000))
    # a hole in the archive: latest would silently stop there
    mark(source.cluster, "more")
    wait_archived(source.cluster)
    segments = sorted(n for n in os.listdir(source.archive) if wal_archive.SEGMENT.match(n.split(".")[0]))
    victim = [n for n in segments if n.split(".")[0] > source.backup["wal_end_segment"]][0]
    assert victim != segments[-1]
    os.rename(os.path.join(source.archive, victim), os.path.join(source.base, victim))
    try:
        with pytest.raises(PgBackupError, match="hole"):
            recover(source, target, target="latest")
    finally:
        os.rename(os.path.join(source.base, victim), os.path.join(source.archive, victim))
    with pytest.raises(PgBackupError, match="is running"):
        recover(source, target, target="latest", stop_server=False)
    assert os.path.exists(marker) and target.is_running()
    assert glob.glob(target.data_dir + ".pre-pitr-*") == moved_before


def test_check_mode_plans_without_touching(source, history, target, collections_root):
    play = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Plan
      todoapi.pgbackup.pitr_recovery:
        repository: "{{ repo }}"
        archive_dir: "{{ archive }}"
        cluster_version: "15"
        cluster_name: "{{ name }}"
        target_name: before-bad-deploy
      register: plan
"""
    result = run_playbook(play, check=True, collections_root=collections_root,
                          extra_vars={"repo": source.repo_dir, "archive": source.archive, "name": target.name})
    plan = result.task("Plan")["recovery"]
    assert plan["target"]["kind"] == "name" and plan["target"]["restore_point_lsn"]
    assert plan["data_dir"] == target.data_dir


# -- RPO: how much committed work a lost primary takes with it --------------------------------------

class Writer(threading.Thread):
    """Commits one row per transaction as fast as it can; remembers what was acknowledged."""

    def __init__(self, cluster):
        super(Writer, self).__init__(daemon=True)
        self.cluster = cluster
        self.acknowledged = []  # (counter, client time of the acknowledgement)
        self.stopped = threading.Event()

    def run(self):
        conn = psycopg2.connect(host=self.cluster.host, port=self.cluster.port, user="postgres",
                                password=self.cluster.password, dbname="postgres", connect_timeout=5)
        conn.autocommit = True
        counter = 0
        try:
            with conn.cursor() as cur:
                while not self.stopped.is_set():
                    counter += 1
                    cur.execute("INSERT INTO rpo (n) VALUES (%s)", (counter,))
                    self.acknowledged.append((counter, time.time()))
                    time.sleep(0.002)
        except psycopg2.Error:
            pass  # the server went away
        finally:
            try:
                conn.close()
            except psycopg2.Error:
                pass


def crash_and_measure(primary, repo, archive, wal_command, base, stream_dirs=(), seconds=8):
    primary.sql("CREATE TABLE IF NOT EXISTS rpo (n int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
    backup = base_backup.backup(base_backup.PhysicalBackupRequest(repo, spec_of(primary)))
    writer = Writer(primary)
    writer.start()
    time.sleep(seconds)
    crash_time = time.time()
    primary.stop(mode="immediate")
    writer.stopped.set()
    writer.join(10)
    shutil.rmtree(primary.data_dir)  # the primary's disk is gone
    data_dir = os.path.join(base, "recovered")
    port = find_free_port()
    request = pitr.PitrRequest(repo, archive, target="latest", data_dir=data_dir, port=port, stream_dirs=list(stream_dirs),
                               wal_command=wal_command, archive_after_recovery=False, timeout=120)
    result = pitr.recover(request)
    try:
        recovered = PgCluster(15, "recovered", port, password=primary.password)
        present = set(row[0] for row in recovered.sql("SELECT n FROM rpo"))
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(primary.bindir, "pg_ctl"), "-D", data_dir,
                        "-m", "immediate", "stop"], capture_output=True, check=False)
    acknowledged = writer.acknowledged
    lost = [(n, at) for n, at in acknowledged if n not in present]
    window = crash_time - min(at for _n, at in lost) if lost else 0.0
    return {"backup": backup["id"], "committed": len(acknowledged), "lost": len(lost), "lost_seconds": round(window, 2),
            "rate_per_second": round(len(acknowledged) / float(seconds), 1), "result": result}


def test_rpo_archive_mode_loses_at_most_archive_timeout():
    base = shared_dir("pgbackup-rpo-")
    wal_command = install_wal_tool(base)
    archive = postgres_dir(base, "archive")
    repo = LocalRepository(postgres_dir(base, "repo"))
    primary = PgCluster.create(fsync=True, extra_conf=archiving_conf(wal_command, archive, compress="zstd",
                                                                     archive_timeout=ARCHIVE_TIMEOUT))
    try:
        measured = crash_and_measure(primary, repo, archive, wal_command, base)
        print("\nRPO archive mode (archive_timeout=%ds): %d of %d acknowledged commits lost, covering the last %.2f s "
              "before the crash (%.0f commits/s)" % (ARCHIVE_TIMEOUT, measured["lost"], measured["committed"],
                                                     measured["lost_seconds"], measured["rate_per_second"]))
        assert measured["committed"] > 100
        assert measured["lost_seconds"] <= ARCHIVE_TIMEOUT + 2.0, measured
        assert measured["lost"] < measured["committed"]
    finally:
        primary.drop()
        shutil.rmtree(base, ignore_errors=True)


def test_rpo_synchronous_pg_receivewal_loses_nothing():
    base = shared_dir("pgbackup-rpo-sync-")
    wal_command = install_wal_tool(base)
    archive = postgres_dir(base, "archive")
    stream = postgres_dir(base, "stream")
    repo = LocalRepository(postgres_dir(base, "repo"))
    primary = PgCluster.create(fsync=True, extra_conf=archiving_conf(wal_command, archive, compress="zstd",
                                                                     archive_timeout=60, synchronous_commit="on"))
    receiver = None
    try:
        primary.sql("SELECT pg_create_physical_replication_slot('todoapi_receivewal')")
        conninfo = "host=127.0.0.1 port=%d user=postgres password=%s application_name=%s" % (
            primary.port, primary.password, APP_NAME)
        receiver = subprocess.Popen(["runuser", "-u", "postgres", "--", primary.tool("pg_receivewal"), "-D", stream,
                                     "-S", "todoapi_receivewal", "--synchronous", "-n", "-d", conninfo],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = '%s'" % APP_NAME)
        primary.sql("SELECT pg_reload_conf()")
        deadline = time.time() + 30
        while primary.scalar("SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                             (APP_NAME,)) != "sync":
            assert time.time() < deadline, "pg_receivewal never became a synchronous standby"
            time.sleep(0.2)
        measured = crash_and_measure(primary, repo, archive, wal_command, base, stream_dirs=[stream], seconds=5)
        print("\nRPO synchronous pg_receivewal: %d of %d acknowledged commits lost (%.0f commits/s)" % (
            measured["lost"], measured["committed"], measured["rate_per_second"]))
        assert measured["committed"] > 100
        assert measured["lost"] == 0, measured
    finally:
        if receiver is not None and receiver.poll() is None:
            os.killpg(receiver.pid, signal.SIGTERM)
            receiver.wait(10)
        primary.drop()
        shutil.rmtree(base, ignore_errors=True)
