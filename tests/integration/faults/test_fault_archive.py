# -*- coding: utf-8 -*-
"""Fault: archive_command fails (the archive directory disappears, like an unmounted NFS share).
PostgreSQL keeps the segment and retries; status.archiver_status() reads pg_stat_archiver and
reports ``archive_failing`` (sent as an alert), and the problem clears once archiving works again.
(A WAL hole before a PITR is refused in tests/integration/test_pitr.py.)"""

from __future__ import absolute_import, division, print_function

import os
import shutil
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import alerts
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import monitor as monitor_cli
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import status
from tests.integration.faults.faultlib import spec_of
from tests.lib.archiving import archiving_conf, install_wal_tool, postgres_dir, shared_dir
from tests.lib.pgcluster import PgCluster
from tests.lib.sinks import HttpReceiver


@pytest.fixture(scope="module")
def archiving():
    base = shared_dir("pgbackup-archfault-")
    wrapper = install_wal_tool(base)
    archive = postgres_dir(base, "archive")
    cluster = PgCluster.create(extra_conf=archiving_conf(wrapper, archive))
    try:
        yield cluster, archive
    finally:
        cluster.drop()
        shutil.rmtree(base, ignore_errors=True)


def switch_wal(cluster):
    """Write something and finish the current segment; returns that segment's name."""
    cluster.sql("CREATE TABLE IF NOT EXISTS filler (n int); INSERT INTO filler SELECT generate_series(1, 1000)")
    return cluster.scalar("SELECT pg_walfile_name(pg_switch_wal())")


def archiver_when(spec, condition):
    """archiver_status() when ``condition`` holds for it, else None."""
    current = status.archiver_status(spec)
    return current if condition(current) else None


def wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not reached within %ss" % timeout)


def test_failing_archive_command_is_detected_alerted_and_clears(archiving, tmp_path):
    cluster, archive = archiving
    spec = spec_of(cluster)
    first = switch_wal(cluster)
    healthy = wait_for(lambda: archiver_when(spec, lambda s: s["last_archived_wal"] == first))
    assert healthy["failing"] is False and healthy["problems"] == [] and healthy["archive_mode"] == "on"
    assert healthy["last_archived_age"] is not None and healthy["last_archived_age"] < 60

    # The fault: the archive directory is gone.
    aside = archive + ".unmounted"
    os.rename(archive, aside)
    try:
        stuck = switch_wal(cluster)
        failing = wait_for(lambda: archiver_when(spec, lambda s: s["failing"]))
        # The monitoring check (runner 'status' with check_archiver) reports and alerts it too.
        repo = tmp_path / "repo"
        repo.mkdir()
        settings = dict(monitor_cli.DEFAULTS, repository=str(repo), check_archiver=True,
                        alert_state_file=str(tmp_path / "monitor-state.json"))
        with HttpReceiver() as hook:
            settings["webhook_url"] = hook.url
            code, monitored = monitor_cli.check(settings, connection=spec)
            sent = hook.wait_for(1)[0]["json"]
        assert code == monitor_cli.EXIT_PROBLEMS and "archive_failing" in monitored["problem_codes"]
        assert "archive_failing" in sent["codes"]
    finally:
        os.rename(aside, archive)
    assert failing["last_failed_wal"] == stuck and failing["failed_count"] >= 1
    assert [p["code"] for p in failing["problems"]] == ["archive_failing"]
    problem = failing["problems"][0]
    assert problem["severity"] == "critical"
    assert "archive_command is failing on 127.0.0.1:%d" % cluster.port in problem["message"]
    assert "the last for WAL %s" % stuck in problem["message"] and "last successful archive: %s" % first in problem["message"]
    # PostgreSQL kept the segment for a later attempt, and the engine said why in the server log.
    assert os.path.exists(os.path.join(cluster.data_dir, "pg_wal", "archive_status", stuck + ".ready"))
    assert "archive" in cluster.log_tail(200).lower() and archive in cluster.log_tail(200)

    # The alert goes out through the monitoring channels, naming the cause.
    report = {"ok": False, "checked_at": failing["last_failed_time"], "repository": archive, "latest": {},
              "health": failing["problems"], "problem_codes": ["archive_failing"], "metrics": {}}
    decision = alerts.alert_decision(str(tmp_path / "alert-state.json"), report, "on_change")
    assert decision["send"] and "archive_failing" in decision["subject"]
    with HttpReceiver() as hook:
        alerts.post_webhook(hook.url, alerts.webhook_payload(decision, report))
        received = hook.wait_for(1)[0]["json"]
    assert received["codes"] == ["archive_failing"] and stuck in received["text"]
    alerts.save_alert_state(str(tmp_path / "alert-state.json"), decision)

    # Archiving works again (the directory is back): the kept segment is archived, the problem clears.
    after = switch_wal(cluster)
    recovered = wait_for(lambda: archiver_when(spec, lambda s: s["last_archived_wal"] == after and not s["failing"]))
    assert recovered["problems"] == []
    assert any(name.startswith(stuck) for name in os.listdir(archive)), "the segment that failed is archived now"
    cleared = dict(report, ok=True, health=[], problem_codes=[])
    assert alerts.alert_decision(str(tmp_path / "alert-state.json"), cleared, "on_change")["kind"] == "recovery"
