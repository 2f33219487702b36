# -*- coding: utf-8 -*-
"""Health rules, Prometheus textfile format and alert decisions, without PostgreSQL."""

from __future__ import absolute_import, division, print_function

import datetime
import json
import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import alerts
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import status
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import manifest as manifests
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository

NOW = manifests.parse_time("2024-01-10T12:00:00Z")


def add_backup(repo_path, hours_ago, size=1000, database="TodoDb", fmt="custom", write_size=None):
    finished = NOW - datetime.timedelta(hours=hours_ago)
    backup_id = "%s_logical_%s" % (finished.strftime("%Y%m%dT%H%M%SZ"), manifests.slug(database))
    artifact = backup_id + ".dump.zst"
    with open(os.path.join(repo_path, artifact), "wb") as handle:
        handle.write(b"x" * (size if write_size is None else write_size))
    manifest = {"id": backup_id, "kind": "logical", "database": database, "artifact": artifact, "size": size,
                "sha256": "0" * 64, "started_at": manifests.isoformat(finished - datetime.timedelta(seconds=30)),
                "finished_at": manifests.isoformat(finished), "duration_seconds": 30.5, "format": fmt}
    fsutil.write_json_atomic(os.path.join(repo_path, backup_id + ".manifest.json"), manifest)
    return manifest


def codes(result, database="TodoDb"):
    return sorted(p["code"] for p in result["health"] if p["database"] == database)


def check(tmp_path, **kwargs):
    return status.backup_status(LocalRepository(str(tmp_path)), now=NOW, **kwargs)


def test_healthy_repository(tmp_path):
    for hours in (72, 48, 24, 2):
        add_backup(str(tmp_path), hours)
    result = check(tmp_path)
    assert result["ok"] is True and result["health"] == []
    latest = result["latest"]["TodoDb"]
    assert latest["age_hours"] == 2 and latest["verified"] == "unverified"
    metrics = result["metrics"]["TodoDb"]
    assert metrics["age_seconds"] == 7200 and metrics["size_bytes"] == 1000 and metrics["verified"] == 0
    assert metrics["last_success_timestamp"] == (NOW - datetime.timedelta(hours=2)).timestamp()
    assert metrics["duration_seconds"] == 30.5 and metrics["backups"] == 4


def test_empty_repository_and_expected_database(tmp_path):
    assert codes(check(tmp_path), None) == ["no_backup"]
    result = check(tmp_path, database="TodoDb")
    assert codes(result) == ["no_backup"] and result["latest"] == {"TodoDb": None}
    assert codes(check(tmp_path / "missing"), None) == ["no_backup"]
    add_backup(str(tmp_path), 1, database="Other")
    assert codes(check(tmp_path, expected_databases=["TodoDb"])) == ["no_backup"]


@pytest.mark.parametrize("hours, limit, expected", [(24.9, 25, []), (25.1, 25, ["stale"]), (3, 2, ["stale"])])
def test_stale_threshold(tmp_path, hours, limit, expected):
    add_backup(str(tmp_path), hours)
    assert codes(check(tmp_path, max_age_hours=limit)) == expected


def test_empty_missing_and_truncated(tmp_path):
    good = add_backup(str(tmp_path), 30)
    zero = add_backup(str(tmp_path), 20, write_size=0)
    result = check(tmp_path)
    assert codes(result) == ["empty", "stale"]  # the only usable backup is 30 h old
    assert result["latest"]["TodoDb"]["id"] == good["id"]
    empty = [p for p in result["health"] if p["code"] == "empty"][0]
    assert empty["backups"] == [zero["id"]]
    short = add_backup(str(tmp_path), 1, write_size=500)
    os.unlink(os.path.join(str(tmp_path), good["artifact"]))
    result = check(tmp_path)
    assert codes(result) == ["empty", "no_backup", "truncated"]
    assert [p for p in result["health"] if p["code"] == "truncated"][0]["backups"] == [short["id"]]
    assert "last_success_timestamp" not in result["metrics"]["TodoDb"]


@pytest.mark.parametrize("newest, expected", [(1000, []), (2900, []), (3100, ["size_anomaly"]), (340, []),
                                              (320, ["size_anomaly"])])
def test_size_anomaly_both_ways(tmp_path, newest, expected):
    for index, size in enumerate([900, 1000, 1100, 1000, 950, 1050, 1000, 10]):  # 10: older than the window
        add_backup(str(tmp_path), 200 - index * 24 if size != 10 else 300, size=size)
    add_backup(str(tmp_path), 1, size=newest)
    assert codes(check(tmp_path)) == expected


def test_size_anomaly_needs_history_and_same_format(tmp_path):
    add_backup(str(tmp_path), 50, size=1000)
    add_backup(str(tmp_path), 1, size=100000)
    assert codes(check(tmp_path)) == []
    assert status.size_anomaly([1000, 1000, 1000, 5000], 3.0) == (1000.0, 5.0)
    assert status.size_anomaly([1000, 1000, 1000, 2000], 3.0) is None
    for hours in (90, 80, 70):
        add_backup(str(tmp_path), hours, size=100, fmt="plain")
    assert codes(check(tmp_path)) == []  # plain dumps are not compared with custom ones


def add_base_backup(repo_path, hours_ago, backup_type, size, parent=None):
    """A physical backup's manifest and a directory artifact of ``size`` bytes; ``parent``: its parent's manifest."""
    finished = NOW - datetime.timedelta(hours=hours_ago)
    backup_id = "%s_physical_main" % finished.strftime("%Y%m%dT%H%M%SZ")
    os.mkdir(os.path.join(repo_path, backup_id + ".base"))
    with open(os.path.join(repo_path, backup_id + ".base", "base.tar.gz"), "wb") as handle:
        handle.write(b"x" * size)
    manifest = {"id": backup_id, "kind": "physical", "database": "main", "artifact": backup_id + ".base", "size": size,
                "sha256": "0" * 64, "started_at": manifests.isoformat(finished - datetime.timedelta(seconds=30)),
                "finished_at": manifests.isoformat(finished), "duration_seconds": 30.5, "format": "tar",
                "backup_type": backup_type, "parent": parent["id"] if parent else None,
                "chain": (parent["chain"] if parent else []) + [backup_id]}
    fsutil.write_json_atomic(os.path.join(repo_path, backup_id + ".manifest.json"), manifest)
    return manifest


def test_a_compressed_wal_tar_is_no_size_anomaly(tmp_path):
    """After the engine began to compress pg_wal.tar, a small cluster's backups shrink by the 16 MiB segment."""
    repo = str(tmp_path)
    for day in range(4):
        add_base_backup(repo, 100 - day * 24, "full", 17 * 1024 * 1024)
    newest = add_base_backup(repo, 1, "full", 1024 * 1024)
    path = os.path.join(repo, newest["id"] + ".manifest.json")
    assert codes(check(tmp_path, database="main"), "main") == ["size_anomaly"]  # the same backup without the record
    newest["compression"] = {"method": "zstd", "wal_tar": {"file": "pg_wal.tar.zst", "applied": "engine"}}
    fsutil.write_json_atomic(path, newest)
    result = check(tmp_path, database="main")
    assert codes(result, "main") == []
    assert [entry["wal_tar"] for entry in result["backups"]][-2:] == [None, {"file": "pg_wal.tar.zst", "applied": "engine"}]


def test_physical_entries_show_their_chain_and_sizes_compare_within_a_type(tmp_path):
    repo = str(tmp_path)
    parent, days = None, []
    for day in range(4):  # a full backup a day, then hourly incrementals on top of the last one
        days.append(add_base_backup(repo, 100 - day * 24, "full", 100000))
    parent = days[-1]
    for hour in range(4):
        parent = add_base_backup(repo, 20 - hour, "incr", 2000, parent)
    result = check(tmp_path, database="main")
    assert codes(result, "main") == []  # an incremental far smaller than the full backups is no anomaly
    entries = dict((entry["id"], entry) for entry in result["backups"])
    assert entries[parent["id"]]["backup_type"] == "incr" and entries[parent["id"]]["parent"] == parent["parent"]
    assert entries[parent["id"]]["chain"][0] == days[-1]["id"] and len(entries[parent["id"]]["chain"]) == 5
    assert entries[days[0]["id"]]["chain"] == [days[0]["id"]] and entries[days[0]["id"]]["parent"] is None
    add_base_backup(repo, 1, "incr", 20000, parent)  # ten times the incrementals before it
    problems = check(tmp_path, database="main")["health"]
    assert [p["code"] for p in problems] == ["size_anomaly"] and "of the 4 incr backups before it" in problems[0]["message"]
    add_backup(repo, 1, database="TodoDb")
    assert "backup_type" not in check(tmp_path, database="TodoDb")["backups"][0]


def test_verify_failed_uses_last_verification(tmp_path):
    manifest = add_backup(str(tmp_path), 1)
    repo = LocalRepository(str(tmp_path))
    repo.write_sidecar(manifest["id"], "verify", {"history": [
        {"time": "t1", "level": "restore", "outcome": "passed", "error": None},
        {"time": "t2", "level": "checksum", "outcome": "failed", "error": "Checksum mismatch"}]})
    result = check(tmp_path)
    assert codes(result) == ["no_backup", "verify_failed"]
    assert "Checksum mismatch" in [p for p in result["health"] if p["code"] == "verify_failed"][0]["message"]
    repo.write_sidecar(manifest["id"], "verify", {"history": [{"time": "t3", "level": "restore", "outcome": "passed"}]})
    result = check(tmp_path)
    assert result["ok"] and result["latest"]["TodoDb"]["verified"] == "verified"
    assert result["metrics"]["TodoDb"]["verified"] == 1
    repo.write_sidecar(manifest["id"], "verify", ["garbage"])
    assert check(tmp_path)["latest"]["TodoDb"]["verified"] == "unverified"


def test_last_run_failed_from_json_lines_log(tmp_path):
    add_backup(str(tmp_path), 1)
    log = tmp_path / "log"
    lines = [{"ts": "a", "level": "error", "event": "backup_failed", "database": "TodoDb", "error": "disk full"},
             {"ts": "b", "level": "info", "event": "verify_ok", "database": "TodoDb"},
             {"ts": "c", "level": "error", "event": "backup_failed", "database": "Other", "error": "refused"}]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n{torn line\n[1, 2]\n")
    result = check(tmp_path, log_file=str(log))
    assert codes(result) == ["last_run_failed"]
    assert "disk full" in [p for p in result["health"] if p["database"] == "TodoDb"][0]["message"]
    assert codes(result, "Other") == ["last_run_failed", "no_backup"]
    with open(str(log), "a") as handle:
        handle.write(json.dumps({"ts": "d", "level": "info", "event": "backup_ok", "database": "TodoDb"}) + "\n")
    assert codes(check(tmp_path, log_file=str(log))) == []
    assert check(tmp_path, log_file=str(tmp_path / "absent"))["ok"]


def test_a_failed_scheduled_base_backup_is_the_last_run(tmp_path):
    """The runner's basebackup command logs under the cluster name: its failure is that name's last run."""
    add_backup(str(tmp_path), 1)
    log = tmp_path / "log"
    log.write_text(json.dumps({"ts": "a", "level": "error", "event": "basebackup_failed", "database": "TodoDb",
                               "error": "summarize_wal is off"}) + "\n")
    result = check(tmp_path, log_file=str(log))
    assert codes(result) == ["last_run_failed"]
    assert "summarize_wal is off" in result["health"][0]["message"]


def test_damaged_manifest_is_a_problem(tmp_path):
    add_backup(str(tmp_path), 1)
    (tmp_path / "broken.manifest.json").write_text("{not json")
    assert codes(check(tmp_path), None) == ["damaged_manifest"]


def test_prometheus_textfile(tmp_path):
    add_backup(str(tmp_path), 30, database='Todo"Db\\x')
    result = check(tmp_path)
    path = str(tmp_path / "metrics.prom")
    status.write_prometheus_textfile(path, result)
    text = open(path).read()
    label = 'database="Todo\\"Db\\\\x"'
    assert "# HELP todoapi_pgbackup_last_success_timestamp_seconds " in text
    assert "# TYPE todoapi_pgbackup_last_success_timestamp_seconds gauge" in text
    assert "todoapi_pgbackup_last_success_timestamp_seconds{%s} %r\n" % (
        label, (NOW - datetime.timedelta(hours=30)).timestamp()) in text
    assert "todoapi_pgbackup_last_size_bytes{%s} 1000\n" % label in text
    assert "todoapi_pgbackup_last_age_seconds{%s} 108000.0\n" % label in text
    assert 'todoapi_pgbackup_problem{%s,code="stale",severity="critical"} 1\n' % label in text
    assert "todoapi_pgbackup_status_ok 0\n" in text
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert [name for name in os.listdir(str(tmp_path)) if ".tmp-" in name] == []
    for line in text.splitlines():  # every sample line: name{labels} value
        if not line.startswith("#"):
            assert line.startswith("todoapi_pgbackup_") and len(line.rsplit(" ", 1)) == 2
            float(line.rsplit(" ", 1)[1])
    with pytest.raises(PgBackupError, match="does not exist"):
        status.write_prometheus_textfile(str(tmp_path / "nodir" / "x.prom"), result)


def fake_status(*problem_codes):
    health = [{"code": code, "database": "TodoDb", "severity": "critical", "message": "m " + code} for code in problem_codes]
    return {"ok": not health, "health": health, "checked_at": "2024-01-10T12:00:00Z", "repository": "/r",
            "latest": {"TodoDb": None}, "problem_codes": sorted(problem_codes), "metrics": {}}


def test_alert_decision_on_change(tmp_path):
    state = str(tmp_path / "state.json")
    decision = alerts.alert_decision(state, fake_status(), "on_change")
    assert decision["send"] is False and decision["kind"] is None
    alerts.save_alert_state(state, decision)
    decision = alerts.alert_decision(state, fake_status("stale"), "on_change")
    assert decision["send"] and decision["kind"] == "problem" and decision["new"] == ["TodoDb:stale"]
    assert "PROBLEM" in decision["subject"] and "stale" in decision["subject"] and "m stale" in decision["body"]
    assert alerts.alert_decision(state, fake_status("stale"), "on_change")["send"]  # not saved: not delivered yet
    alerts.save_alert_state(state, decision)
    assert alerts.alert_decision(state, fake_status("stale"), "on_change")["send"] is False
    changed = alerts.alert_decision(state, fake_status("stale", "empty"), "on_change")
    assert changed["send"] and changed["new"] == ["TodoDb:empty"]
    alerts.save_alert_state(state, changed)
    recovery = alerts.alert_decision(state, fake_status(), "on_change")
    assert recovery["send"] and recovery["kind"] == "recovery" and "RECOVERED" in recovery["subject"]
    assert recovery["resolved"] == ["TodoDb:empty", "TodoDb:stale"]
    alerts.save_alert_state(state, recovery)
    assert alerts.alert_decision(state, fake_status(), "on_change")["send"] is False


def test_alert_decision_always_on_failure_and_bad_input(tmp_path):
    state = str(tmp_path / "state.json")
    for unused_number in range(3):
        decision = alerts.alert_decision(state, fake_status("stale"), "always_on_failure")
        assert decision["send"]
        alerts.save_alert_state(state, decision)
    (tmp_path / "state.json").write_text("garbage")
    assert alerts.alert_decision(state, fake_status("stale"), "on_change")["send"]  # unreadable state: alert
    with pytest.raises(PgBackupError, match="Unknown alert mode"):
        alerts.alert_decision(state, fake_status(), "sometimes")


def test_webhook_and_email_refuse_bad_input():
    with pytest.raises(PgBackupError, match="not an http"):
        alerts.post_webhook("file:///etc/passwd", {})
    with pytest.raises(PgBackupError, match="No e-mail recipients"):
        alerts.send_email("127.0.0.1", 25, "a@b", [], "s", "b")
    with pytest.raises(PgBackupError, match="could not be reached"):
        alerts.post_webhook("http://127.0.0.1:1/x", {}, timeout=2)
