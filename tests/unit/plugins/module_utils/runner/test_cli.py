# -*- coding: utf-8 -*-
"""The on-host runner (plugins/module_utils/cli.py) without PostgreSQL: argument parsing,
config checks, the run lock, the JSON event log and the commands over a fake repository."""

from __future__ import absolute_import, division, print_function

import io
import json
import multiprocessing
import os
import signal
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import fsutil
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError

SECRET = "pa:ss\\word-7f3a"


def write_config(tmp_path, **overrides):
    config = {"repository": str(tmp_path / "repo"), "databases": ["TodoDb"], "log_file": str(tmp_path / "backup.log"),
              "lock_file": str(tmp_path / "run.lock"), "lock_wait_seconds": 5}
    config.update(overrides)
    config = dict((key, value) for key, value in config.items() if value is not None)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def log_lines(tmp_path):
    path = tmp_path / "backup.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fake_backup(repo_dir, backup_id="20240106T020000Z_logical_TodoDb", database="TodoDb", payload=b"dump bytes",
                finished_at="2024-01-06T02:00:05.000000Z"):
    """A complete backup (artifact + manifest) as the engine writes it."""
    os.makedirs(repo_dir, exist_ok=True)
    artifact = backup_id + ".dump.zst"
    with open(os.path.join(repo_dir, artifact), "wb") as handle:
        handle.write(payload)
    manifest = {"id": backup_id, "kind": "logical", "database": database, "artifact": artifact,
                "size": len(payload), "sha256": fsutil.sha256_file(os.path.join(repo_dir, artifact)),
                "started_at": "2024-01-06T02:00:00.000000Z", "finished_at": finished_at, "format": "custom",
                "compression": {"method": "zstd", "level": 3, "applied": "external"}, "encryption": None,
                "tables": {"public.Todos": 3}}
    with open(os.path.join(repo_dir, backup_id + ".manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return manifest


# Arguments


def test_version_and_usage(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "todoapi-pgbackup %s" % cli.VERSION
    assert cli.main([]) == cli.EXIT_USAGE
    assert "a command is required" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == cli.EXIT_USAGE
    assert cli.main(["restore", "--jobs", "many"]) == cli.EXIT_USAGE


def test_parse_restore_arguments():
    args = cli.parse_args(["--config", "/x.json", "restore", "--backup", "20240106T020000Z_logical_TodoDb",
                           "--database", "TodoDb_copy", "--tables", "Todos", "Categories", "--tables", "Users",
                           "--force", "--clean", "--jobs", "4", "--identity", "/k.txt"])
    assert args.config == "/x.json" and args.command == "restore"
    assert args.tables == ["Todos", "Categories", "Users"]
    assert (args.force, args.clean, args.jobs, args.identity, args.dry_run) == (True, True, 4, "/k.txt", False)
    defaults = cli.parse_args(["restore"])
    assert defaults.backup == "latest" and defaults.tables is None and defaults.config == cli.DEFAULT_CONFIG
    backup = cli.parse_args(["--lock-wait", "2.5", "backup", "--database", "A", "--database", "B"])
    assert backup.database == ["A", "B"] and backup.lock_wait == 2.5


# Config


def test_config_defaults_and_aliases(tmp_path):
    config = cli.load_config(write_config(tmp_path, databases=None, database="TodoDb"))
    assert config["databases"] == ["TodoDb"]
    assert config["format"] == "custom" and config["compression"] == "zstd:1" and config["lock_wait_seconds"] == 5.0
    assert cli.check_config({})["databases"] == ["TodoDb"]
    assert cli.check_config({})["log_file"] == "/var/log/todoapi_backup.log"


@pytest.mark.parametrize("raw, message", [
    ({"databses": ["x"]}, "unknown key(s): databses"),
    ({"connection": {"password": "x"}}, "holds a password"),
    ({"connection": {"hots": "x"}}, "unknown key(s): hots"),
    ({"databases": []}, "non-empty list"),
    ({"lock_wait_seconds": "soon"}, "must be a number"),
    ({"retention": [30]}, "must be an object"),
    ({"s3": {"secret_key": "x"}}, "S3 credentials"),
    ([], "JSON object"),
])
def test_bad_config_is_refused(raw, message):
    with pytest.raises(cli.ConfigError) as failure:
        cli.check_config(raw)
    assert message in str(failure.value)


def test_missing_or_broken_config_exits_78(tmp_path, capsys):
    assert cli.main(["--config", str(tmp_path / "nope.json"), "list"]) == cli.EXIT_CONFIG
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli.main(["--config", str(tmp_path / "bad.json"), "list"]) == cli.EXIT_CONFIG
    assert "not valid JSON" in capsys.readouterr().err


def test_passfile_must_be_private(tmp_path, monkeypatch):
    passfile = tmp_path / "pgpass"
    passfile.write_text("*:*:*:postgres:%s\n" % SECRET.replace("\\", "\\\\").replace(":", "\\:"))
    os.chmod(str(passfile), 0o644)
    config = cli.check_config({"connection": {"host": "db", "port": 5433, "passfile": str(passfile)}})
    with pytest.raises(cli.ConfigError, match="libpq ignores"):
        cli.connection_spec(config)
    os.chmod(str(passfile), 0o600)
    monkeypatch.setenv("PGPASSWORD", "leaked")
    spec = cli.connection_spec(config)
    assert (spec.host, spec.port, spec.password) == ("db", 5433, None)
    assert os.environ["PGPASSFILE"] == str(passfile) and "PGPASSWORD" not in os.environ
    assert cli.passfile_secrets(config) == [SECRET]
    with pytest.raises(cli.ConfigError, match="cannot be used"):
        cli.connection_spec(cli.check_config({"connection": {"passfile": str(tmp_path / "missing")}}))


# Event log


def test_event_log_writes_json_lines_and_masks_secrets(tmp_path):
    stream = io.StringIO()
    log = cli.EventLog(str(tmp_path / "backup.log"), command="backup", secrets=[SECRET], stream=stream)
    log.info("backup_ok", "backup of TodoDb ok", database="TodoDb", backup_id="x", size=10, duration=1.5)
    log.error("backup_failed", PgBackupError("login with %s failed" % SECRET, hint="fix it"), database="TodoDb")
    log.close()
    first, second = log_lines(tmp_path)
    assert set(["ts", "level", "event", "database", "backup_id", "size", "duration"]) <= set(first)
    assert first["event"] == "backup_ok" and first["size"] == 10 and first["ts"].endswith("Z")
    assert second["level"] == "error" and second["error"] == "login with ******** failed" and second["hint"] == "fix it"
    assert SECRET not in (tmp_path / "backup.log").read_text() and SECRET not in stream.getvalue()
    assert "INFO  backup of TodoDb ok" in stream.getvalue()


def test_event_log_does_not_echo_into_itself(tmp_path):
    """The seed's cron line sends stdout to the log file: only JSON lines must end up there."""
    path = str(tmp_path / "backup.log")
    with open(path, "a") as stdout_is_the_log:
        log = cli.EventLog(path, stream=stdout_is_the_log)
        log.info("backup_ok", "human text")
        log.close()
    assert len(log_lines(tmp_path)) == 1


def test_event_log_survives_an_unwritable_log(tmp_path):
    stream = io.StringIO()
    log = cli.EventLog(str(tmp_path / "missing-dir" / "x.log"), stream=stream)
    assert log.open_error and "cannot write log file" in log.open_error
    log.info("backup_ok", "still printed")
    assert "still printed" in stream.getvalue()


# Lock


def _hold_lock(path, ready, seconds):
    lock = cli.RunLock(path, 0).acquire()
    ready.set()
    time.sleep(seconds)
    lock.release()


def _hold_lock_and_die(path, ready):
    cli.RunLock(path, 0).acquire()
    ready.set()
    time.sleep(60)


def test_second_run_waits_for_the_first(tmp_path):
    path = str(tmp_path / "run.lock")
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(path, ready, 1.0))
    holder.start()
    try:
        assert ready.wait(10)
        waits = []
        started = time.monotonic()
        lock = cli.RunLock(path, 10, poll_seconds=0.05).acquire(on_wait=waits.append)
        assert time.monotonic() - started >= 0.5 and lock.waited >= 0.5
        assert waits == [str(holder.pid)], "on_wait gets the holder's pid from the lock file"
        lock.release()
    finally:
        holder.join(10)


def test_lock_times_out_with_exit_75(tmp_path, capsys):
    config = write_config(tmp_path, lock_wait_seconds=0.3)
    fake_backup(str(tmp_path / "repo"))
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path / "run.lock"), ready, 3))
    holder.start()
    try:
        assert ready.wait(10)
        assert cli.main(["--config", config, "verify"]) == cli.EXIT_LOCKED
        assert "still holds lock file" in capsys.readouterr().out
        assert log_lines(tmp_path)[-1]["event"] == "lock_timeout"
        assert cli.main(["--config", config, "--lock-wait", "5", "verify"]) == 0, "waits long enough on request"
    finally:
        holder.join(10)


def test_lock_of_a_killed_run_does_not_block(tmp_path):
    path = str(tmp_path / "run.lock")
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock_and_die, args=(path, ready))
    holder.start()
    assert ready.wait(10)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    assert os.path.exists(path), "the killed run leaves its lock file behind"
    started = time.monotonic()
    cli.RunLock(path, 0).acquire().release()
    assert time.monotonic() - started < 1


def test_lock_file_in_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(PgBackupError, match="Cannot open lock file") as failure:
        cli.RunLock(str(tmp_path / "no" / "run.lock"), 0).acquire()
    assert "directory" in failure.value.hint


# Commands over a fake repository (no PostgreSQL)


def test_list_table_and_json(tmp_path, capsys):
    config = write_config(tmp_path)
    fake_backup(str(tmp_path / "repo"))
    fake_backup(str(tmp_path / "repo"), backup_id="20240107T020000Z_logical_Other", database="Other",
                finished_at="2024-01-07T02:00:05.000000Z")
    assert cli.main(["--config", config, "list"]) == 0
    out = capsys.readouterr().out
    assert "20240106T020000Z_logical_TodoDb" in out and "custom/zstd" in out and out.startswith("ID ")
    assert cli.main(["--config", config, "list", "--json", "--database", "TodoDb"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [b["id"] for b in listing["backups"]] == ["20240106T020000Z_logical_TodoDb"]
    assert listing["backups"][0]["tables"] == {"public.Todos": 3}
    assert not (tmp_path / "backup.log").exists(), "list is read-only: no lock, no log"


def test_verify_checks_the_newest_backup(tmp_path, capsys):
    repo = str(tmp_path / "repo")
    config = write_config(tmp_path)
    fake_backup(repo)
    newest = fake_backup(repo, backup_id="20240107T020000Z_logical_TodoDb", finished_at="2024-01-07T02:00:05.000000Z")
    assert cli.main(["--config", config, "verify"]) == 0
    ok = [e for e in log_lines(tmp_path) if e["event"] == "verify_ok"]
    assert [e["backup_id"] for e in ok] == [newest["id"]]
    with open(os.path.join(repo, newest["artifact"]), "ab") as handle:
        handle.write(b"rot")
    assert cli.main(["--config", config, "verify"]) == cli.EXIT_FAILED, "a damaged newest backup must fail"
    failed = [e for e in log_lines(tmp_path) if e["event"] == "verify_failed"]
    assert failed[-1]["backup_id"] == newest["id"] and failed[-1]["error"]
    assert cli.main(["--config", config, "verify", "--backup", "20240106T020000Z_logical_TodoDb"]) == 0


def test_verify_fails_on_no_backup_or_a_stale_one(tmp_path):
    config = write_config(tmp_path)
    assert cli.main(["--config", config, "verify"]) == cli.EXIT_FAILED
    assert "No backup of database 'TodoDb'" in log_lines(tmp_path)[-2]["error"]
    fake_backup(str(tmp_path / "repo"))
    assert cli.main(["--config", write_config(tmp_path, max_age_hours=24), "verify"]) == cli.EXIT_FAILED
    assert "hours old" in [e for e in log_lines(tmp_path) if e["event"] == "verify_failed"][-1]["error"]


def test_backup_runs_every_database_and_fails_if_one_failed(tmp_path, monkeypatch):
    config = write_config(tmp_path, databases=["Good", "Bad", "AlsoGood"])
    calls = []

    def backup(request):
        calls.append(request.database)
        if request.database == "Bad":
            raise PgBackupError("Database 'Bad' does not exist.", hint="Check the name.")
        return {"id": "20240106T020000Z_logical_%s" % request.database, "database": request.database, "size": 42,
                "sha256": "0" * 64, "duration_seconds": 0.5, "tables": {}}

    monkeypatch.setattr(cli.logical_backup, "backup", backup)
    assert cli.main(["--config", config, "backup"]) == cli.EXIT_FAILED
    assert calls == ["Good", "Bad", "AlsoGood"]
    events = log_lines(tmp_path)
    assert [e["database"] for e in events if e["event"] == "backup_ok"] == ["Good", "AlsoGood"]
    failed = [e for e in events if e["event"] == "backup_failed"]
    assert failed[0]["database"] == "Bad" and failed[0]["hint"] == "Check the name."
    assert events[-1]["event"] == "lock_released" and events[-1]["exit_status"] == 1
    calls[:] = []
    assert cli.main(["--config", config, "backup", "--database", "Good"]) == 0 and calls == ["Good"]


def test_copy_to_hook(tmp_path, monkeypatch):
    manifest = {"id": "x", "database": "TodoDb"}
    config = cli.check_config({"copy_to": ["/mnt/nfs/backups"]})
    log = cli.EventLog(None, stream=io.StringIO())
    assert cli.copy_to(cli.check_config({}), None, manifest, log) is None

    class FakeRemote(object):
        @staticmethod
        def copy_to_targets(manifest, source, targets, owner=None, s3_options=None):
            return [{"target": target, "size": 1, "changed": True} for target in targets]

    monkeypatch.setattr(cli, "transfer", FakeRemote)
    assert cli.copy_to(config, None, manifest, log)[0]["target"] == "/mnt/nfs/backups"


def test_prune_without_policy(tmp_path):
    assert cli.main(["--config", write_config(tmp_path), "prune"]) == 0
    assert log_lines(tmp_path)[-2]["event"] == "prune_skipped"


def test_prune_dry_run_with_the_retention_engine(tmp_path):
    repo = str(tmp_path / "repo")
    for day in range(1, 6):
        fake_backup(repo, backup_id="202401%02dT020000Z_logical_TodoDb" % day,
                    finished_at="2024-01-%02dT02:00:05.000000Z" % day)
    config = write_config(tmp_path, retention={"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 2})
    assert cli.main(["--config", config, "prune", "--dry-run"]) == 0
    prunable = [e["backup_id"] for e in log_lines(tmp_path) if e["event"] == "prune_would_delete"]
    assert len(prunable) == 3 and len(os.listdir(repo)) == 10, "a dry run deletes nothing"
    assert not [e for e in log_lines(tmp_path) if e["event"].startswith("backup_")], \
        "prune events must not look like backup runs to the monitoring (status.read_run_log)"
    assert cli.main(["--config", config, "prune"]) == 0
    assert sorted(name for name in os.listdir(repo) if name.endswith(".manifest.json")) == [
        "20240104T020000Z_logical_TodoDb.manifest.json", "20240105T020000Z_logical_TodoDb.manifest.json"]


def test_status_subcommand_reports_a_failed_last_run(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path, max_age_hours=None)
    fake_backup(str(tmp_path / "repo"), finished_at=cli.utc_timestamp())

    def failing_backup(request):
        raise PgBackupError("Cannot reach PostgreSQL at db:5432.", hint="Check the server.")

    monkeypatch.setattr(cli.logical_backup, "backup", failing_backup)
    assert cli.main(["--config", config, "backup"]) == cli.EXIT_FAILED
    capsys.readouterr()
    assert cli.main(["--config", config, "status", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert "last_run_failed" in report["problem_codes"]
