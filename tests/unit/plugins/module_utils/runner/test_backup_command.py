# -*- coding: utf-8 -*-
"""``todoapi-pgbackup backup`` (plugins/module_utils/runner/commands/backup.py) over a local
repository, with the engine's backup replaced where a database must fail."""

from __future__ import absolute_import, division, print_function

import io

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.commands import backup as backup_command
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.config import check_config
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.eventlog import EventLog


def test_backup_runs_every_database_and_fails_if_one_failed(monkeypatch, write_config, log_lines):
    config = write_config(databases=["Good", "Bad", "AlsoGood"])
    calls = []

    def backup(request):
        calls.append(request.database)
        if request.database == "Bad":
            raise PgBackupError("Database 'Bad' does not exist.", hint="Check the name.")
        return {"id": "20240106T020000Z_logical_%s" % request.database, "database": request.database, "size": 42,
                "sha256": "0" * 64, "duration_seconds": 0.5, "tables": {}}

    monkeypatch.setattr(backup_command.logical_backup, "backup", backup)
    assert cli.main(["--config", config, "backup"]) == 1
    assert calls == ["Good", "Bad", "AlsoGood"]
    events = log_lines()
    assert [e["database"] for e in events if e["event"] == "backup_ok"] == ["Good", "AlsoGood"]
    failed = [e for e in events if e["event"] == "backup_failed"]
    assert failed[0]["database"] == "Bad" and failed[0]["hint"] == "Check the name."
    assert events[-1]["event"] == "lock_released" and events[-1]["exit_status"] == 1
    calls[:] = []
    assert cli.main(["--config", config, "backup", "--database", "Good"]) == 0 and calls == ["Good"]


def test_backup_request_follows_the_config():
    config = check_config({"format": "directory", "jobs": 4, "compression": "gzip:6", "exclude_tables": ["Logs"],
                           "globals": False, "pg_bin_dir": "/usr/lib/postgresql/15/bin"})
    request = backup_command.backup_request(config, "TodoDb", None, None)
    assert (request.format, request.jobs, request.compression, request.exclude_tables, request.globals, request.pg_bin_dir) \
        == ("directory", 4, {"method": "gzip", "level": 6}, ["Logs"], False, "/usr/lib/postgresql/15/bin")


def test_copy_to_hook(monkeypatch):
    manifest = {"id": "x", "database": "TodoDb"}
    config = check_config({"copy_to": ["/mnt/nfs/backups"]})
    log = EventLog(None, stream=io.StringIO())
    assert backup_command.copy_to(check_config({}), None, manifest, log) is None

    class FakeRemote(object):
        @staticmethod
        def copy_to_targets(manifest, source, targets, owner=None, s3_options=None):
            return [{"target": target, "size": 1, "changed": True} for target in targets]

    monkeypatch.setattr(backup_command, "transfer", FakeRemote)
    assert backup_command.copy_to(config, None, manifest, log)[0]["target"] == "/mnt/nfs/backups"


def test_s3_credentials_file_goes_to_boto3_through_the_environment(monkeypatch):
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    config = check_config({"s3": {"region": "eu-west-1", "credentials_file": "/etc/todoapi-pgbackup/aws-credentials"}})
    assert backup_command.s3_options(config) == {"region": "eu-west-1"}
    import os
    assert os.environ["AWS_SHARED_CREDENTIALS_FILE"] == "/etc/todoapi-pgbackup/aws-credentials"
