# -*- coding: utf-8 -*-
"""The runner's event log (plugins/module_utils/runner/eventlog.py): JSON lines in the log file,
human lines on stdout, secrets masked in both."""

from __future__ import absolute_import, division, print_function

import io

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.eventlog import EventLog, as_error, human_size

SECRET = "pa:ss\\word-7f3a"


def test_event_log_writes_json_lines_and_masks_secrets(tmp_path, log_lines):
    stream = io.StringIO()
    log = EventLog(str(tmp_path / "backup.log"), command="backup", secrets=[SECRET], stream=stream)
    log.info("backup_ok", "backup of TodoDb ok", database="TodoDb", backup_id="x", size=10, duration=1.5)
    log.error("backup_failed", PgBackupError("login with %s failed" % SECRET, hint="fix it"), database="TodoDb")
    log.close()
    first, second = log_lines()
    assert set(["ts", "level", "event", "database", "backup_id", "size", "duration"]) <= set(first)
    assert first["event"] == "backup_ok" and first["size"] == 10 and first["ts"].endswith("Z")
    assert second["level"] == "error" and second["error"] == "login with ******** failed" and second["hint"] == "fix it"
    assert SECRET not in (tmp_path / "backup.log").read_text() and SECRET not in stream.getvalue()
    assert "INFO  backup of TodoDb ok" in stream.getvalue()


def test_event_log_does_not_echo_into_itself(tmp_path, log_lines):
    """The seed's cron line sends stdout to the log file: only JSON lines must end up there."""
    path = str(tmp_path / "backup.log")
    with open(path, "a") as stdout_is_the_log:
        log = EventLog(path, stream=stdout_is_the_log)
        log.info("backup_ok", "human text")
        log.close()
    assert len(log_lines()) == 1


def test_event_log_survives_an_unwritable_log(tmp_path):
    stream = io.StringIO()
    log = EventLog(str(tmp_path / "missing-dir" / "x.log"), stream=stream)
    assert log.open_error and "cannot write log file" in log.open_error
    log.info("backup_ok", "still printed")
    assert "still printed" in stream.getvalue()


def test_unexpected_errors_carry_their_traceback():
    error = None
    try:
        {}["missing"]
    except KeyError as exc:
        error = as_error(exc)
    assert error.message == "Unexpected KeyError: 'missing'" and "bug" in error.hint
    assert "Traceback" in error.details["traceback"]
    known = PgBackupError("known")
    assert as_error(known) is known


def test_human_size():
    assert [human_size(size) for size in (None, 512, 1536, 5 * 1024 ** 3)] == ["-", "512 B", "1.5 KiB", "5.0 GiB"]
