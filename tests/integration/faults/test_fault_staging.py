# -*- coding: utf-8 -*-
"""Fault: a full restore is SIGKILLed while it loads its staging database (``<db>__restore_<pid>``).

The killed restore cannot drop the staging database it was loading, so it stays on the server.
The next full restore into the same database finds it (its owner record says whose it is, and
that restore's session to the server is gone) and drops it, saying so in its result; until then
backup_info and the runner's status report it. A staging database whose restore still runs is
never touched.

The restores that get killed or held run in their own process group (``python -c``, the engine
as the modules call it), so the fault is real: the process and its pg_restore die together.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import staging_owner
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical.staging_leftovers import find_leftovers
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import pgconn
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import status
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import monitor as monitor_cli
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.integration.faults.faultlib import spec_of, take_backup, wait_for_descendant
from tests.lib.dbcompare import table_fingerprints
from tests.lib.module_run import connection_args, run_module

RESTORE_CODE = """
import json, sys
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
args = json.loads(sys.stdin.readline())
result = restore.restore(restore.LogicalRestoreRequest(LocalRepository(args.pop("repository")),
                                                       ConnectionSpec(**args.pop("connection")), **args))
print(json.dumps(result, default=str))
"""


class RestoreProcess(object):
    """A full restore in a process group of its own (the password goes through stdin, not argv)."""

    def __init__(self, cluster, collections_root, repository, **options):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([collections_root] + sys.path))
        env.pop("PGPASSWORD", None)
        connection = {"host": cluster.host, "port": cluster.port, "user": cluster.user, "password": cluster.password}
        reading, writing = os.pipe()
        os.write(writing, (json.dumps(dict(options, repository=repository, connection=connection)) + "\n").encode())
        os.close(writing)
        try:
            self.process = subprocess.Popen([sys.executable, "-c", RESTORE_CODE], stdin=reading, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, env=env, start_new_session=True)
        finally:
            os.close(reading)
        self.staging = "%s__restore_%d" % (options["database"], self.process.pid)  # short names: not cut to 63 bytes

    def signal(self, number):
        os.killpg(self.process.pid, number)

    def finish(self, timeout=120):
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out.decode(), err.decode()

    def kill(self):
        try:
            self.signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.communicate()


def loading(cluster, name):
    """True while a COPY into database ``name`` runs."""
    return bool(cluster.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query LIKE 'COPY %%'",
                               (name,)))


def wait_until(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("%s not reached within %ss" % (what, timeout))


def databases(cluster):
    return sorted(row[0] for row in cluster.sql("SELECT datname FROM pg_database"))


def restore_in_process(cluster, repository, source, target, **options):
    return logical_restore.restore(logical_restore.LogicalRestoreRequest(
        LocalRepository(repository), spec_of(cluster), database=target, source_database=source, **options))


@pytest.fixture
def restore_process(pg, collections_root, tmp_repo):
    started = []

    def start(**options):
        started.append(RestoreProcess(pg, collections_root, tmp_repo, **options))
        return started[-1]
    yield start
    for process in started:
        if process.process.poll() is None:
            process.signal(signal.SIGCONT)
            process.kill()


def test_restore_killed_mid_load_leaves_a_staging_database_the_next_restore_drops(
        pg, big_db, tmp_repo, scratch_db, restore_process, ansible_playbook):
    manifest = take_backup(pg, big_db, tmp_repo)
    killed = restore_process(database=scratch_db, source_database=big_db, jobs=1)
    wait_for_descendant("pg_restore", root_pid=killed.process.pid, condition=lambda: loading(pg, killed.staging))
    killed.signal(signal.SIGKILL)
    killed.finish()
    wait_until(lambda: not pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (killed.staging,)),
               what="the killed restore's sessions ending")

    # Left behind, with the record of the restore that owned it; the target was never created.
    assert killed.staging in databases(pg) and scratch_db not in databases(pg)
    comment = pg.scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                        (killed.staging,))
    record = staging_owner.read_owner(killed.staging, comment)
    assert record["pid"] == killed.process.pid and record["target"] == scratch_db

    # Reported: by the engine's status, the runner's status (its server check) and backup_info.
    problems = status.backup_status(LocalRepository(tmp_repo), connection=spec_of(pg))["health"]
    leftover = [p for p in problems if p["code"] == "leftover_staging_database"]
    assert [(p["database"], p["severity"], p["backups"]) for p in leftover] == [(scratch_db, "warning", [killed.staging])]
    assert "pid %d" % killed.process.pid in leftover[0]["message"]
    settings = dict(monitor_cli.DEFAULTS, repository=tmp_repo, check_archiver=True)
    code, report = monitor_cli.check(settings, connection=spec_of(pg))
    assert code == monitor_cli.EXIT_PROBLEMS and report["problem_codes"] == ["leftover_staging_database"]
    info = run_module(ansible_playbook, "todoapi.pgbackup.backup_info",
                      dict(connection_args(pg), repository=tmp_repo, check_staging_databases=True))[0]
    assert info["ok"] is False
    assert [p["backups"] for p in info["health"] if p["code"] == "leftover_staging_database"] == [[killed.staging]]

    # The next full restore into the same database drops it and says so.
    result = restore_in_process(pg, tmp_repo, big_db, scratch_db, jobs=2)
    assert result["dropped_staging_databases"] == [killed.staging]
    assert result["leftover_staging_databases"] == []
    assert killed.staging not in databases(pg)
    assert result["tables"] == manifest["tables"]
    assert table_fingerprints(pg, scratch_db) == table_fingerprints(pg, big_db)
    assert not [d for d in databases(pg) if "__restore_" in d or "__previous_" in d]
    assert status.backup_status(LocalRepository(tmp_repo), connection=spec_of(pg))["ok"] is True


def test_a_running_restore_keeps_its_staging_database(pg, big_db, tmp_repo, scratch_db, restore_process):
    take_backup(pg, big_db, tmp_repo)
    running = restore_process(database=scratch_db, source_database=big_db, jobs=1)
    wait_for_descendant("pg_restore", root_pid=running.process.pid, condition=lambda: loading(pg, running.staging))
    running.signal(signal.SIGSTOP)  # held mid-load: its sessions stay open
    try:
        assert status.backup_status(LocalRepository(tmp_repo), connection=spec_of(pg))["ok"] is True
        result = restore_in_process(pg, tmp_repo, big_db, scratch_db, jobs=2)
        assert result["dropped_staging_databases"] == [] and result["leftover_staging_databases"] == []
        assert running.staging in databases(pg)
        assert table_fingerprints(pg, scratch_db) == table_fingerprints(pg, big_db)
    finally:
        running.signal(signal.SIGCONT)
    # It carries on, and fails only at its swap-in (the target now exists, it had been new): it drops its own staging.
    code, out, err = running.finish()
    assert code != 0 and "already exists" in err, err
    assert running.staging not in databases(pg)
    assert table_fingerprints(pg, scratch_db) == table_fingerprints(pg, big_db)


def test_owner_session_and_process_decide_whether_a_staging_database_is_left_over(pg, scratch_db):
    """The rule without a restore around it: the owner's session (any host), then its process (this host)."""
    spec = spec_of(pg)
    name = logical_restore._staging_name(scratch_db)
    pg.create_database(name)
    try:
        owner = pgconn.connect(spec)
        record = staging_owner.record_owner(owner, name, scratch_db)
        check = pgconn.connect(spec)
        try:
            assert "session of its restore" in staging_owner.still_in_use(check, name, record)
            assert find_leftovers(check, scratch_db) == []
            owner.close()
            wait_until(lambda: not check_session(pg, record["backend_pid"]), what="the owner's backend exiting")
            # Same host and boot, and this process (the recorded pid) still runs: kept.
            assert "is still running" in staging_owner.still_in_use(check, name, record)
            # Recorded on another host: the session was the only proof, and it is gone.
            elsewhere = dict(record, host="another-host")
            pg.sql(pgconn.sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                pgconn.sql.Identifier(name), pgconn.sql.Literal(json.dumps(elsewhere))))
            assert staging_owner.still_in_use(check, name, elsewhere) is None
            assert [f["database"] for f in find_leftovers(check, scratch_db)] == [name]
            # Someone connected to it: kept whatever the record says.
            visitor = pgconn.connect(spec, name)
            try:
                assert "connected" in staging_owner.still_in_use(check, name, elsewhere)
            finally:
                visitor.close()
        finally:
            check.close()
    finally:
        pg.drop_database(name)


def check_session(cluster, backend_pid):
    return cluster.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend_pid,))
