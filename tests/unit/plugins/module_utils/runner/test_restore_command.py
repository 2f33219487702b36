# -*- coding: utf-8 -*-
"""``todoapi-pgbackup restore`` (plugins/module_utils/runner/commands/restore.py): which backup it
restores when not told (the restores themselves run against PostgreSQL in tests/integration)."""

from __future__ import absolute_import, division, print_function

import argparse

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.commands import restore as restore_command
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.config import check_config, repository_of


def test_source_database(tmp_path, fake_backup):
    fake_backup(str(tmp_path / "repo"), backup_id="20240106T020000Z_logical_Other", database="Other")
    repository = repository_of(check_config({"repository": str(tmp_path / "repo"), "databases": ["A", "B"]}))
    one = check_config({"databases": ["TodoDb"]})
    several = check_config({"databases": ["A", "B"]})
    args = argparse.Namespace(source_database=None)
    assert restore_command.source_database(args, one, repository, "latest") == "TodoDb"
    assert restore_command.source_database(args, several, repository, "20240106T020000Z_logical_Other") == "Other"
    assert restore_command.source_database(argparse.Namespace(source_database="B"), several, repository, "latest") == "B"
    with pytest.raises(PgBackupError, match="Several databases are configured"):
        restore_command.source_database(args, several, repository, "latest")


def test_restore_without_a_source_fails_with_exit_1(write_config, log_lines):
    assert cli.main(["--config", write_config(databases=["A", "B"]), "restore"]) == 1
    assert log_lines()[-2]["event"] == "restore_failed" and "--source-database" in log_lines()[-2]["hint"]
