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
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository


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


def test_a_backup_is_copied_to_every_other_repository_and_one_failing_does_not_stop_the_rest(tmp_path, fake_backup):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = check_config({"repositories": [str(tmp_path / "first"), {"name": "broken", "location": str(blocker / "sub")},
                                            {"name": "second", "location": str(tmp_path / "second")}]})
    manifest = fake_backup(str(tmp_path / "first"))
    stream = io.StringIO()
    log = EventLog(None, stream=stream)
    first = LocalRepository(str(tmp_path / "first"))
    assert backup_command.copy_to_repositories(config, first, manifest, config["repositories"][1:], log) == 1
    copy = LocalRepository(str(tmp_path / "second")).load(manifest["id"])
    LocalRepository(str(tmp_path / "second")).verify_checksum(copy)
    text = stream.getvalue()
    assert "copy of %s to broken (%s) failed" % (manifest["id"], blocker / "sub") in text
    assert "copied %s to second" % manifest["id"] in text and "copied to 1 of 2 repositories" in text


def test_copy_to_is_sugar_for_repositories_that_keep_everything():
    warnings = []
    config = check_config({"repository": "/srv/backups", "retention": {"daily_days": 7}, "copy_to": ["/mnt/nfs", "s3://b/p"],
                           "s3": {"region": "eu-west-1", "credentials_file": "/etc/aws"}}, warn=warnings.append)
    assert [(e["name"], e["location"], e["retention"]) for e in config["repositories"]] == [
        ("repo1", "/srv/backups", {"daily_days": 7}), ("repo2", "/mnt/nfs", None), ("repo3", "s3://b/p", None)]
    assert config["repositories"][2]["options"] == {"region": "eu-west-1"}
    assert config["repositories"][2]["credentials_file"] == "/etc/aws"
    assert len(warnings) == 1 and "'copy_to' is deprecated" in warnings[0]
