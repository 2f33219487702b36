# -*- coding: utf-8 -*-
"""``todoapi-pgbackup status`` (plugins/module_utils/runner/commands/status.py): the health check
with the runner's own settings and connection."""

from __future__ import absolute_import, division, print_function

import json

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.commands import backup as backup_command
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.eventlog import utc_timestamp
from tests.lib.sinks import HttpReceiver


def test_status_subcommand_reports_a_failed_last_run(tmp_path, capsys, monkeypatch, write_config, fake_backup):
    config = write_config(max_age_hours=None)
    fake_backup(str(tmp_path / "repo"), finished_at=utc_timestamp())

    def failing_backup(request):
        raise PgBackupError("Cannot reach PostgreSQL at db:5432.", hint="Check the server.")

    monkeypatch.setattr(backup_command.logical_backup, "backup", failing_backup)
    assert cli.main(["--config", config, "backup"]) == 1
    capsys.readouterr()
    assert cli.main(["--config", config, "status", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert "last_run_failed" in report["problem_codes"]


def test_check_archiver_uses_the_runners_connection(tmp_path, capsys, write_config, fake_backup):
    """--check-archiver connects with the runner's connection settings: a passfile libpq would
    ignore stops the check before any connection is tried."""
    passfile = tmp_path / "pgpass"
    passfile.write_text("*:*:*:postgres:secret\n")
    passfile.chmod(0o640)
    fake_backup(str(tmp_path / "repo"), finished_at=utc_timestamp())
    config = write_config(connection={"host": "127.0.0.1", "passfile": str(passfile)})
    assert cli.main(["--config", config, "status", "--check-archiver"]) == 2
    assert "libpq ignores a passfile" in capsys.readouterr().err


def write_monitoring(path, **settings):
    path.write_text(json.dumps(settings))
    path.chmod(0o600)
    return str(path)


def test_a_config_the_check_cannot_read_still_gives_a_metric_and_an_alert(tmp_path, capsys):
    """Cron drops the output of ``status``: exit 78 alone would be heard by nobody."""
    etc = tmp_path / "etc"
    etc.mkdir()
    textfile = tmp_path / "todoapi_pgbackup.prom"
    with HttpReceiver() as hook:
        monitoring = write_monitoring(etc / "monitoring.json", name="pg18", textfile=str(textfile), webhook_url=hook.url,
                                      alert_state_file=str(tmp_path / "alert-state.json"))
        (etc / "config.json").write_text('{"jobs": "many"}')
        assert cli.main(["--config", str(etc / "config.json"), "status", "--monitoring-config", monitoring]) == 78
        post = hook.wait_for(1)[0]["json"]
        assert post["codes"] == ["status_failed"] and "'jobs' in" in post["problems"][0]["message"]
        metrics = textfile.read_text()
        assert 'todoapi_pgbackup_problem{config="pg18",database="",code="status_failed",severity="critical"} 1' in metrics
        assert 'todoapi_pgbackup_status_ok{config="pg18"} 0' in metrics
        assert "must be a whole number" in capsys.readouterr().err
        # the same failure again: on_change stays quiet; once repaired, the recovery is sent
        assert cli.main(["--config", str(etc / "config.json"), "status", "--monitoring-config", monitoring]) == 78
        assert len(hook.collector.items) == 1
        (etc / "config.json").write_text(json.dumps({"name": "pg18", "repositories": [str(tmp_path / "repo")],
                                                     "databases": ["TodoDb"], "state_dir": str(tmp_path / "state")}))
        (tmp_path / "repo").mkdir()
        assert cli.main(["--config", str(etc / "config.json"), "status"]) == 1, "finds monitoring.json by itself"
        post = hook.wait_for(2)[1]["json"]
        assert post["status"] == "problem" and post["codes"] == ["no_backup"] and post["resolved"] == ["*:status_failed"]
        assert 'todoapi_pgbackup_backups{config="pg18",database="TodoDb"} 0' in textfile.read_text()


def test_the_thresholds_are_the_configs(tmp_path, capsys, write_config, fake_backup):
    fake_backup(str(tmp_path / "repo"), finished_at="2024-01-06T02:00:05.000000Z")
    config = write_config(max_age_hours=24 * 365 * 100, size_anomaly_factor=5)
    assert cli.main(["--config", config, "status", "--json"]) == 0
    thresholds = json.loads(capsys.readouterr().out)["status"]["thresholds"]
    assert (thresholds["max_age_hours"], thresholds["size_anomaly_factor"]) == (24 * 365 * 100, 5)
    assert cli.main(["--config", write_config(max_age_hours=0), "status", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["status"]["thresholds"]["max_age_hours"] == 26 and report["problem_codes"] == ["stale"]
