# -*- coding: utf-8 -*-
"""The runner's command line (plugins/module_utils/runner/cli.py): arguments, exit statuses, and
one command run under the lock with the event log."""

from __future__ import absolute_import, division, print_function

import multiprocessing
import time

from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli, program
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.config import DEFAULT_CONFIG
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.lock import RunLock


def test_version_and_usage(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "todoapi-pgbackup %s" % program.VERSION
    assert cli.main([]) == program.EXIT_USAGE
    assert "a command is required (backup, basebackup, list, prune, restore, status, verify)" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == program.EXIT_USAGE
    assert cli.main(["restore", "--jobs", "many"]) == program.EXIT_USAGE


def test_every_command_has_its_help(capsys):
    for name in ("backup", "basebackup", "list", "verify", "prune", "restore", "status"):
        assert cli.main([name, "--help"]) == 0
        assert capsys.readouterr().out.startswith("usage: todoapi-pgbackup %s" % name)


def test_parse_restore_arguments():
    args = cli.parse_args(["--config", "/x.json", "restore", "--backup", "20240106T020000Z_logical_TodoDb",
                           "--database", "TodoDb_copy", "--tables", "Todos", "Categories", "--tables", "Users",
                           "--force", "--clean", "--jobs", "4", "--identity", "/k.txt"])
    assert args.config == "/x.json" and args.command == "restore"
    assert args.tables == ["Todos", "Categories", "Users"]
    assert (args.force, args.clean, args.jobs, args.identity, args.dry_run) == (True, True, 4, "/k.txt", False)
    defaults = cli.parse_args(["restore"])
    assert defaults.backup == "latest" and defaults.tables is None and defaults.config == DEFAULT_CONFIG
    assert defaults.validate_foreign_keys == "during"
    assert cli.parse_args(["restore", "--validate-foreign-keys", "after_swap"]).validate_foreign_keys == "after_swap"
    assert cli.main(["restore", "--validate-foreign-keys", "later"]) == program.EXIT_USAGE
    assert defaults.build_indexes == "during"
    assert cli.parse_args(["restore", "--build-indexes", "after_swap"]).build_indexes == "after_swap"
    assert cli.main(["restore", "--build-indexes", "later"]) == program.EXIT_USAGE
    backup = cli.parse_args(["--lock-wait", "2.5", "backup", "--database", "A", "--database", "B"])
    assert backup.database == ["A", "B"] and backup.lock_wait == 2.5


def test_missing_or_broken_config_exits_78(tmp_path, capsys):
    assert cli.main(["--config", str(tmp_path / "nope.json"), "list"]) == program.EXIT_CONFIG
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli.main(["--config", str(tmp_path / "bad.json"), "list"]) == program.EXIT_CONFIG
    assert "not valid JSON" in capsys.readouterr().err
    (tmp_path / "wrong.json").write_text('{"jobs": "many"}')
    assert cli.main(["--config", str(tmp_path / "wrong.json"), "list"]) == program.EXIT_CONFIG
    assert "'jobs' in %s must be a whole number, not 'many'." % (tmp_path / "wrong.json") in capsys.readouterr().err


def test_a_bad_passfile_is_a_config_error_in_the_log(tmp_path, write_config, log_lines):
    passfile = tmp_path / "pgpass"
    passfile.write_text("*:*:*:postgres:secret\n")
    passfile.chmod(0o644)
    config = write_config(connection={"passfile": str(passfile)})
    assert cli.main(["--config", config, "backup"]) == program.EXIT_CONFIG
    events = log_lines()
    assert [e["event"] for e in events][-2:] == ["config_error", "lock_released"]
    assert "libpq ignores" in events[-2]["error"] and events[-1]["exit_status"] == program.EXIT_CONFIG


def _hold_lock(path, ready, seconds):
    lock = RunLock(path, 0).acquire()
    ready.set()
    time.sleep(seconds)
    lock.release()


def test_lock_times_out_with_exit_75_naming_the_holder(tmp_path, capsys, write_config, log_lines, fake_backup):
    config = write_config(lock_wait_seconds=0.3)
    fake_backup(str(tmp_path / "repo"))
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path / "run.lock"), ready, 3))
    holder.start()
    try:
        assert ready.wait(10)
        assert cli.main(["--config", config, "verify"]) == program.EXIT_LOCKED
        out = capsys.readouterr().out
        assert "still holds lock file" in out and "(pid %d)" % holder.pid in out
        assert [e["event"] for e in log_lines()][-2:] == ["lock_wait", "lock_timeout"]
        assert cli.main(["--config", config, "--lock-wait", "5", "verify"]) == 0, "waits long enough on request"
    finally:
        holder.join(10)


def test_name_picks_the_config_of_that_setup(capsys):
    assert cli.parse_args(["--name", "pg18", "list"]).config == "/etc/todoapi-pgbackup-pg18/config.json"
    assert cli.parse_args(["--name", "main", "list"]).config == DEFAULT_CONFIG
    assert cli.main(["--name", "../x", "list"]) == program.EXIT_USAGE
    assert "argument --name: must be 1 to 32 lower-case letters" in capsys.readouterr().err
    assert cli.main(["--name", "pg18", "--config", "/x.json", "list"]) == program.EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_deprecated_key_is_logged_on_every_run(tmp_path, write_config, log_lines):
    (tmp_path / "repo").mkdir()
    config = write_config(copy_to=[str(tmp_path / "copy")], retention={"keep_last": 1})
    assert cli.main(["--config", config, "prune", "--dry-run"]) == 0
    deprecated = [e for e in log_lines() if e["event"] == "config_deprecated"]
    assert len(deprecated) == 1 and "'copy_to' is deprecated" in deprecated[0]["message"]
    assert [e["repository"] for e in log_lines() if e["event"] == "prune_skipped"] == ["repo2"], \
        "a copy_to target keeps everything, as it always did"
