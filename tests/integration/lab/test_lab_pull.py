# -*- coding: utf-8 -*-
"""The *pull* deployment shape on the lab (docs/topologies.md), over SSH as pgbackup-lab with become:
backup1 takes the logical backups of db1 and db2 over the network with the least-privilege login of role
backup_login (SCRAM, admitted from backup1 only), one named backup configuration per DB host, and keeps the
repositories; role wal_streaming runs one pg_receivewal per DB host on backup1 through a replication slot on
that DB host, and its entry point ``primary`` makes db1's and db2's commits wait for backup1.

Proven on backup1's own disk: the backups are there and nowhere else; a commit on db1 is in backup1's partial
segment the moment it returns; with backup1's pg_receivewal stopped a commit does not return (until a cancel ends
the wait) and reaches backup1 once the stream is back; with synchronous off again, nothing waits for backup1."""

from __future__ import absolute_import, division, print_function

import glob
import json
import os
import secrets
import subprocess
import time

from tests.lib.lab.hostfs import HOST_ENV
from tests.lib.lab.shapes import DB_HOSTS, PULL_PLAY, SHAPE_PORT, STREAM_STOP_START, SYNC_PLAY

COMMITS = 20
BLOCKED_SECONDS = 3


def partial_segments(lab, host):
    return glob.glob(os.path.join(lab.host_path("backup1", "/var/lib/postgresql/wal-stream/%s" % host), "*.partial"))


def streamed(lab, host, marker, directory=None):
    """True if a segment streamed to backup1 from host (partial or complete) holds marker's row. A WAL page
    header may split the row's bytes at an 8 kB boundary; one half of the marker's 16 random hex digits stays
    whole, so either half is looked for."""
    token = marker.split("-")[-1].encode()
    halves = (token[:8], token[8:])
    directory = directory or lab.host_path("backup1", "/var/lib/postgresql/wal-stream/%s" % host)
    for path in glob.glob(os.path.join(directory, "0*")):
        with open(path, "rb") as handle:
            data = handle.read()
        if any(half in data for half in halves):
            return True
    return False


def commit_marker(shapes, host):
    """INSERT a fresh marker on host (autocommit); (marker, seconds, psql result)."""
    marker = "sync-%s" % secrets.token_hex(8)
    started = time.monotonic()
    done = shapes.psql(host, "CREATE TABLE IF NOT EXISTS probe (note text)", "INSERT INTO probe VALUES ('%s')" % marker)
    return marker, time.monotonic() - started, done


def median_commit(shapes, synchronous_commit):
    """Median seconds of COMMITS one-row commits on db1 in one psql session (psql's \\timing)."""
    script = "SET synchronous_commit = %s;\n\\timing on\n" % synchronous_commit
    script += "INSERT INTO probe VALUES ('timing');\n" * COMMITS
    done = shapes.psql("db1", script=script)
    assert done.returncode == 0, done.stderr
    times = sorted(float(line.split()[1]) / 1000.0 for line in done.stdout.splitlines() if line.startswith("Time: "))
    assert len(times) == COMMITS, done.stdout
    return times[COMMITS // 2]


def test_pull_backups_over_the_network_and_a_synchronous_stream_on_backup1(lab, shapes):
    started = time.monotonic()
    result = lab.playbook(PULL_PLAY, extra_vars=shapes.pull_vars(synchronous=True))
    shapes.measured["pull play (2 DB hosts: login, 2 backup configs, 2 streams, sync on)"] = time.monotonic() - started

    backups = result.host_results("Run each scheduled backup job now (what cron runs)")["backup1"]["results"]
    assert [item["rc"] for item in backups] == [0, 0]
    for host in DB_HOSTS:
        repo = lab.host_path("backup1", "/var/backups/todoapi-%s" % host)
        manifests = [name for name in os.listdir(repo) if name.endswith(".manifest.json")]
        assert len(manifests) == 1, manifests
        with open(os.path.join(repo, manifests[0])) as handle:
            manifest = json.load(handle)
        assert manifest["tables"]["public.todos"] == shapes.rows[host], "backup1 did not back up %s's TodoDb" % host
        shapes.measured["pull backup of %s (%d bytes), duration_seconds of its manifest" % (host, manifest["size"])] = manifest["duration_seconds"]
        assert not os.path.exists(lab.host_path(host, "/var/backups/todoapi-%s" % host)), "the DB host holds no repository"
        # The slot is on the DB host, used by backup1's connection with the least-privilege login.
        slot = shapes.psql(host, "SELECT s.active, r.usename, r.client_addr, r.sync_state FROM pg_replication_slots s"
                                 " JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'todoapi_wal_streaming'")
        assert slot.stdout.split("|") == ["t", "todoapi_backup", str(lab.address("backup1")), "sync\n"], slot.stdout
        # The login's password is only in backup1's 0600 passfiles, never in the settings files.
        env_file = lab.host_path("backup1", "/etc/todoapi-pgbackup/wal-streaming-%s.env" % host)
        with open(env_file) as handle:
            assert shapes.login_password not in handle.read()
        assert os.stat(lab.host_path("backup1", "/etc/todoapi-pgbackup/wal-streaming-%s.pgpass" % host)).st_mode & 0o077 == 0

    # Synchronous: a commit on db1 has returned => its WAL is on backup1's disk.
    latencies = []
    for number in range(COMMITS):
        marker, seconds, done = commit_marker(shapes, "db1")
        assert done.returncode == 0, done.stderr
        own_wal = lab.host_path("db1", "/var/lib/postgresql/15/shapes/pg_wal")
        assert streamed(lab, "db1", marker), "commit %d returned before backup1 had it (%s; in db1's own pg_wal: %s)" % (
            number, marker, streamed(lab, "db1", marker, own_wal))
        latencies.append(seconds)
    shapes.measured["psql run with one commit on db1, synchronous to backup1 (median of %d)" % COMMITS] = sorted(latencies)[COMMITS // 2]
    for mode in ("on", "local"):  # local: the same commit without waiting for backup1
        shapes.measured["commit on db1, synchronous_commit=%s (median of %d)" % (mode, COMMITS)] = median_commit(shapes, mode)

    # backup1's pg_receivewal stopped: the commit does not return. statement_timeout does not end the wait
    # (PostgreSQL disarms it before the commit); a cancel does, as a client's own query timeout sends it.
    stopped = lab.ssh("backup1", STREAM_STOP_START % ("stop", "db1"))
    assert stopped.returncode == 0, stopped.stderr
    try:
        marker = "blocked-%s" % secrets.token_hex(8)
        waiting = subprocess.Popen(lab.enter_argv("db1") + ["runuser", "-u", "postgres", "--", "psql", "-p", str(SHAPE_PORT),
                                                            "-d", "postgres", "-Atq", "-c",
                                                            "INSERT INTO probe VALUES ('%s')" % marker],
                                   env=HOST_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(BLOCKED_SECONDS)
        assert waiting.poll() is None, "the commit returned without backup1: %s" % (waiting.communicate(),)
        cancelled = shapes.psql("db1", "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                                       " WHERE wait_event = 'SyncRep' AND query LIKE '%%%s%%'" % marker)
        assert cancelled.stdout.strip() == "t", cancelled.stdout + cancelled.stderr
        _stdout, stderr = waiting.communicate(timeout=30)
        assert "canceling wait for synchronous replication" in stderr, stderr
        assert not streamed(lab, "db1", marker)
        assert shapes.psql("db1", "SELECT count(*) FROM probe WHERE note = '%s'" % marker).stdout.strip() == "1", \
            "the cancelled commit is committed on db1 (only backup1 does not have it yet)"
    finally:
        restarted = lab.ssh("backup1", STREAM_STOP_START % ("start", "db1"))
    assert restarted.returncode == 0, restarted.stderr
    deadline = time.monotonic() + 30
    while not streamed(lab, "db1", marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert streamed(lab, "db1", marker), "the slot did not keep the WAL written while backup1 was away"

    # Synchronous off again (entry point primary): nothing waits for backup1 any more.
    lab.playbook(SYNC_PLAY, extra_vars=shapes.pull_vars(synchronous=False))
    assert shapes.psql("db1", "SHOW synchronous_standby_names").stdout.strip() == ""
    stopped = lab.ssh("backup1", STREAM_STOP_START % ("stop", "db1"))
    assert stopped.returncode == 0, stopped.stderr
    marker, seconds, done = commit_marker(shapes, "db1")
    assert done.returncode == 0 and seconds < BLOCKED_SECONDS, (seconds, done.stderr)
    assert lab.ssh("backup1", STREAM_STOP_START % ("start", "db1")).returncode == 0
