# -*- coding: utf-8 -*-
"""``todoapi-pgbackup status`` (plugins/module_utils/runner/commands/status.py): the health check
with the runner's own settings and connection."""

from __future__ import absolute_import, division, print_function

import json

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.commands import backup as backup_command
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.eventlog import utc_timestamp


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
