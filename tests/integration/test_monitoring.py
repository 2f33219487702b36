# -*- coding: utf-8 -*-
"""Backup monitoring end to end: real backups, the status command, e-mail and webhook receivers, textfile metrics."""

from __future__ import absolute_import, division, print_function

import datetime
import functools
import io
import json
import os
import re
import shutil
import tempfile
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import monitor as monitor_cli
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import manifest as manifests
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.ansible_run import run_playbook
from tests.lib.crontab import cron_entries, needs_root_and_cron, remove_cron_entries, roles_play, run_as
from tests.lib.sinks import HttpReceiver, SmtpSink


def take_backup(db, repo_path):
    params = db.cluster.conn_params()
    spec = ConnectionSpec(host=params["host"], port=params["port"], user=params["user"], password=params["password"])
    repo = LocalRepository(repo_path, owner="postgres")
    return logical_backup.backup(logical_backup.LogicalBackupRequest(db.name, repo, spec, globals_=False))


def age_backup(repo_path, manifest, hours):
    """Pretend the backup finished ``hours`` ago (what a missed night of backups looks like)."""
    moment = manifests.utcnow() - datetime.timedelta(hours=hours)
    manifest = dict(manifest, finished_at=manifests.isoformat(moment),
                    started_at=manifests.isoformat(moment - datetime.timedelta(seconds=5)))
    fsutil.write_json_atomic(os.path.join(repo_path, manifest["id"] + ".manifest.json"), manifest)
    return manifest


@pytest.fixture
def receivers():
    with SmtpSink() as smtp, HttpReceiver() as hook:
        yield smtp, hook


@pytest.fixture
def monitor(tmp_path, tmp_repo, receivers):
    smtp, hook = receivers
    config = {"repository": tmp_repo, "textfile": str(tmp_path / "todoapi_pgbackup.prom"),
              "alert_state_file": str(tmp_path / "alert-state.json"), "smtp_host": smtp.host, "smtp_port": smtp.port,
              "smtp_from": "pgbackup@db1.example", "smtp_to": ["admin@example.com"], "webhook_url": hook.url,
              "alert_mode": "on_change"}
    path = tmp_path / "monitoring.json"

    def run(*extra, **overrides):
        path.write_text(json.dumps(dict(config, **overrides)))
        out, err = io.StringIO(), io.StringIO()
        code = monitor_cli.run_status_command(
            monitor_cli.add_status_arguments(monitor_cli.argparse.ArgumentParser()).parse_args(
                ["--monitoring-config", str(path)] + list(extra)), out=out, err=err)
        metrics = open(config["textfile"]).read() if os.path.exists(config["textfile"]) else ""
        return code, out.getvalue(), err.getvalue(), metrics
    run.config = config
    return run


def metric(text, name, **labels):
    wanted = ",".join('%s="%s"' % item for item in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("todoapi_pgbackup_%s{" % name) or line.startswith("todoapi_pgbackup_%s " % name):
            label_text = re.search(r"\{(.*)\}", line)
            have = ",".join(sorted(label_text.group(1).split(","))) if label_text else ""
            if not labels or have == wanted or all(('%s="%s"' % i) in have for i in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_stale_backup_alerts_once_then_recovers(todo_db, tmp_repo, receivers, monitor):
    smtp, hook = receivers
    manifest = take_backup(todo_db, tmp_repo)
    code, out, err, metrics = monitor()
    assert code == 0 and "OK (1 backups)" in out and err == ""
    assert smtp.received == [] and hook.received == []  # healthy from the start: nothing to say
    assert metric(metrics, "ok", database=todo_db.name) == 1 and metric(metrics, "status_ok") == 1
    finished = manifests.parse_time(manifest["finished_at"]).timestamp()
    assert metric(metrics, "last_success_timestamp_seconds", database=todo_db.name) == pytest.approx(finished, abs=0.01)
    assert metric(metrics, "last_size_bytes", database=todo_db.name) == manifest["size"]
    assert metric(metrics, "last_verified", database=todo_db.name) == 0

    age_backup(tmp_repo, manifest, hours=30)
    code, out, err, metrics = monitor()
    assert code == 1 and "stale" in out
    mail = smtp.wait_for(1)[0]
    assert mail["to"] == ["admin@example.com"] and "PROBLEM" in mail["subject"] and "stale" in mail["subject"]
    assert todo_db.name in mail["body"] and "30.0 hours old" in mail["body"]
    post = hook.wait_for(1)[0]
    assert post["json"]["status"] == "problem" and post["json"]["codes"] == ["stale"]
    assert post["headers"]["Content-Type"] == "application/json"
    assert metric(metrics, "problem", database=todo_db.name, code="stale") == 1
    assert metric(metrics, "last_age_seconds", database=todo_db.name) == pytest.approx(30 * 3600, abs=60)
    assert metric(metrics, "ok", database=todo_db.name) == 0 and metric(metrics, "status_ok") == 0

    code, out, err, metrics = monitor()  # same problem again: on_change stays quiet
    assert code == 1
    assert len(smtp.received) == 1 and len(hook.received) == 1

    take_backup(todo_db, tmp_repo)
    code, out, err, metrics = monitor()
    assert code == 0
    mail = smtp.wait_for(2)[1]
    assert "RECOVERED" in mail["subject"]
    assert hook.wait_for(2)[1]["json"]["status"] == "recovered"
    assert hook.received[1]["json"]["resolved"] == ["%s:stale" % todo_db.name]
    assert metric(metrics, "problem") is None and metric(metrics, "status_ok") == 1


def test_missing_artifact_is_reported_and_older_backup_counts(todo_db, tmp_repo, receivers, monitor):
    smtp, hook = receivers
    older = take_backup(todo_db, tmp_repo)
    newer = take_backup(todo_db, tmp_repo)
    os.unlink(os.path.join(tmp_repo, newer["artifact"]))
    code, out, err, metrics = monitor()
    assert code == 1
    assert hook.wait_for(1)[0]["json"]["codes"] == ["empty"]
    problem = hook.received[0]["json"]["problems"][0]
    assert problem["backups"] == [newer["id"]] and "missing or has zero bytes" in problem["message"]
    assert "empty" in smtp.wait_for(1)[0]["subject"]
    finished = manifests.parse_time(older["finished_at"]).timestamp()
    assert metric(metrics, "last_success_timestamp_seconds", database=todo_db.name) == pytest.approx(finished, abs=0.01)
    assert metric(metrics, "problem", database=todo_db.name, code="empty") == 1


def test_truncated_artifact(todo_db, tmp_repo, monitor, receivers):
    manifest = take_backup(todo_db, tmp_repo)
    with open(os.path.join(tmp_repo, manifest["artifact"]), "r+b") as handle:
        handle.truncate(manifest["size"] // 2)
    code, out, err, metrics = monitor()
    assert code == 1
    assert set(receivers[1].wait_for(1)[0]["json"]["codes"]) == {"truncated", "no_backup"}
    assert metric(metrics, "problem", database=todo_db.name, code="truncated") == 1
    assert metric(metrics, "last_success_timestamp_seconds", database=todo_db.name) is None


def test_size_anomaly_and_always_on_failure(todo_db, tmp_repo, receivers, monitor):
    smtp, hook = receivers
    for unused_number in range(4):
        take_backup(todo_db, tmp_repo)
    assert monitor(alert_mode="always_on_failure")[0] == 0
    todo_db.cluster.sql('DELETE FROM "Todos" WHERE "Id" % 20 <> 0', dbname=todo_db.name)
    small = take_backup(todo_db, tmp_repo)
    for attempt in (1, 2):
        code, out, err, metrics = monitor(alert_mode="always_on_failure")
        assert code == 1
        assert hook.wait_for(attempt)[-1]["json"]["codes"] == ["size_anomaly"]
        assert "size_anomaly" in smtp.wait_for(attempt)[-1]["subject"]
    assert len(hook.received) == 2  # always_on_failure repeats the alert on every failing check
    assert small["id"] in hook.received[0]["json"]["problems"][0]["message"]
    assert metric(metrics, "problem", database=todo_db.name, code="size_anomaly") == 1
    assert metric(metrics, "backups", database=todo_db.name) == 5


def test_no_backup_and_failed_runner_run(tmp_path, tmp_repo, receivers, monitor):
    smtp, hook = receivers
    log = tmp_path / "todoapi_backup.log"
    log.write_text("\n".join([
        json.dumps({"ts": "2024-01-06T02:00:00Z", "level": "info", "event": "backup_started", "database": "TodoDb"}),
        "not json at all {",
        json.dumps({"ts": "2024-01-06T02:00:01Z", "level": "error", "event": "backup_failed", "database": "TodoDb",
                    "error": "Cannot reach PostgreSQL at db1:5432"}),
    ]) + "\n")
    code, out, err, metrics = monitor(log_file=str(log), database="TodoDb")
    assert code == 1
    payload = hook.wait_for(1)[0]["json"]
    assert payload["codes"] == ["last_run_failed", "no_backup"]
    assert "Cannot reach PostgreSQL" in smtp.wait_for(1)[0]["body"]
    assert metric(metrics, "backups", database="TodoDb") == 0


def test_undeliverable_alert_is_retried(todo_db, tmp_repo, receivers, monitor):
    smtp, hook = receivers
    manifest = take_backup(todo_db, tmp_repo)
    age_backup(tmp_repo, manifest, hours=48)
    with HttpReceiver(status_code=500) as broken:
        code, out, err, unused_metrics = monitor(webhook_url=broken.url)
        assert code == 2 and "ALERT NOT DELIVERED" in err and "HTTP 500" in err
        assert "secret-token" not in err
    code, out, err, unused_metrics = monitor()
    assert code == 1 and hook.wait_for(1)[0]["json"]["codes"] == ["stale"]


def test_backup_info_module_is_read_only(ansible_playbook, todo_db, tmp_repo):
    manifest = take_backup(todo_db, tmp_repo)
    before = sorted(os.listdir(tmp_repo))
    playbook = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Info
      todoapi.pgbackup.backup_info:
        repository: "{{ repo }}"
        database: "{{ db }}"
        max_age_hours: 25
"""
    for check in (False, True):
        task = ansible_playbook(playbook, extra_vars={"repo": tmp_repo, "db": todo_db.name}, check=check).task("Info")
        assert task["changed"] is False and task["ok"] is True and task["health"] == []
        assert [b["id"] for b in task["backups"]] == [manifest["id"]]
        assert task["latest"][todo_db.name]["id"] == manifest["id"]
        assert task["metrics"][todo_db.name]["size_bytes"] == manifest["size"]
    age_backup(tmp_repo, manifest, hours=26)
    task = ansible_playbook(playbook, extra_vars={"repo": tmp_repo, "db": todo_db.name}).task("Info")
    assert task["ok"] is False and [p["code"] for p in task["health"]] == ["stale"]
    assert sorted(os.listdir(tmp_repo)) == before


@needs_root_and_cron
def test_monitoring_role_with_every_path_elsewhere_alerts_and_writes_metrics(pg, todo_db, collections_root, receivers):
    """The check the monitoring role schedules reads the backup role's config wherever it is (it used to run
    without --config and exit 78 unheard), and still alerts and writes metrics when that config breaks."""
    smtp, hook = receivers
    name = "mon%s" % uuid.uuid4().hex[:8]
    base = tempfile.mkdtemp(prefix="pgbackup-monitoring-")
    os.chmod(base, 0o755)
    at = functools.partial(os.path.join, base)
    os.makedirs(at("run"))
    shutil.chown(at("run"), "postgres", "postgres")
    variables = {
        "pgbackup_name": name, "pgbackup_install_packages": False, "pgbackup_logrotate_enabled": False,
        "pgbackup_scheduler": "none", "pgbackup_databases": [todo_db.name], "pgbackup_repository": at("repo"),
        "pgbackup_config_dir": at("etc"), "pgbackup_log_file": at("log", "backup.log"),
        "pgbackup_lock_file": at("run", "backup.lock"), "pgbackup_state_dir": at("state"),
        "pgbackup_engine_dir": at("lib"), "pgbackup_runner_path": at("bin", "todoapi-pgbackup"),
        "pgbackup_systemd_unit_dir": at("systemd"), "pgbackup_db_host": pg.host, "pgbackup_db_port": pg.port,
        "pgbackup_db_user": pg.user, "pgbackup_password": pg.password,
        "monitoring_runner_path": at("bin", "todoapi-pgbackup"), "monitoring_textfile_path": at("metrics", "backups.prom"),
        "monitoring_webhook_url": hook.url, "monitoring_smtp_host": smtp.host, "monitoring_smtp_port": smtp.port,
        "monitoring_email_to": ["admin@example.com"], "monitoring_email_from": "pgbackup@db1.example",
    }
    cron_name = "todoapi-pgbackup-%s" % name
    try:
        run_playbook(roles_play("todoapi.pgbackup.backup", "todoapi.pgbackup.monitoring"), extra_vars=variables, collections_root=collections_root)
        schedule, command = cron_entries(cron_name)["status"]
        assert schedule == "*/15 * * * *"
        assert "--config %s status --monitoring-config %s" % (at("etc", "config.json"), at("etc", "monitoring.json")) \
            in command
        with open(at("etc", "monitoring.json")) as handle:
            settings = json.load(handle)
        assert settings["name"] == name and "max_age_hours" not in settings, "the thresholds are the config's"
        assert settings["alert_state_file"] == at("state", "alert-state.json")

        done = run_as(command)
        assert done.returncode == 1, done.stdout + done.stderr
        post = hook.wait_for(1)[0]["json"]
        assert post["codes"] == ["no_backup"] and post["repository"] == at("repo")
        assert todo_db.name in smtp.wait_for(1)[0]["subject"]
        with open(at("metrics", "backups.prom")) as handle:
            metrics = handle.read()
        assert metric(metrics, "backups", database=todo_db.name, config=name) == 0
        assert metric(metrics, "status_ok", config=name) == 0

        os.rename(at("etc", "config.json"), at("etc", "config.json.moved"))  # what a wrong pgbackup_config_dir looked like
        done = run_as(command)
        assert done.returncode == 78 and "does not exist" in done.stderr
        post = hook.wait_for(2)[1]["json"]
        assert post["codes"] == ["status_failed"] and post["resolved"] == ["%s:no_backup" % todo_db.name]
        with open(at("metrics", "backups.prom")) as handle:
            metrics = handle.read()
        assert metric(metrics, "problem", code="status_failed", config=name) == 1
        assert metric(metrics, "status_ok", config=name) == 0
    finally:
        remove_cron_entries(cron_name)
        shutil.rmtree(base, ignore_errors=True)
