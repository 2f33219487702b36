# -*- coding: utf-8 -*-
"""``todoapi-pgbackup verify`` (plugins/module_utils/runner/commands/verify.py) at checksum level
over a local repository."""

from __future__ import absolute_import, division, print_function

import os

from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli


def test_verify_checks_the_newest_backup(tmp_path, write_config, log_lines, fake_backup):
    repo = str(tmp_path / "repo")
    config = write_config()
    fake_backup(repo)
    newest = fake_backup(repo, backup_id="20240107T020000Z_logical_TodoDb", finished_at="2024-01-07T02:00:05.000000Z")
    assert cli.main(["--config", config, "verify"]) == 0
    ok = [e for e in log_lines() if e["event"] == "verify_ok"]
    assert [e["backup_id"] for e in ok] == [newest["id"]]
    with open(os.path.join(repo, newest["artifact"]), "ab") as handle:
        handle.write(b"rot")
    assert cli.main(["--config", config, "verify"]) == 1, "a damaged newest backup must fail"
    failed = [e for e in log_lines() if e["event"] == "verify_failed"]
    assert failed[-1]["backup_id"] == newest["id"] and failed[-1]["error"]
    assert cli.main(["--config", config, "verify", "--backup", "20240106T020000Z_logical_TodoDb"]) == 0


def test_verify_fails_on_no_backup_or_a_stale_one(tmp_path, write_config, log_lines, fake_backup):
    config = write_config()
    assert cli.main(["--config", config, "verify"]) == 1
    assert "No backup of database 'TodoDb'" in log_lines()[-2]["error"]
    fake_backup(str(tmp_path / "repo"))
    assert cli.main(["--config", write_config(max_age_hours=24), "verify"]) == 1
    assert "hours old" in [e for e in log_lines() if e["event"] == "verify_failed"][-1]["error"]
