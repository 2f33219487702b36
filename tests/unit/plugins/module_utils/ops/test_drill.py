# -*- coding: utf-8 -*-
"""The restore drill's settings, report, metrics and plan, without PostgreSQL (the drill itself:
tests/integration/test_restore_drill.py)."""

from __future__ import absolute_import, division, print_function

import io
import json
import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import manifest as manifests
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import drill
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import drill as drill_cli
from tests.lib.backups import synthetic_backup

MANIFEST = {"id": "20240106T020000Z_logical_TodoDb", "database": "TodoDb", "size": 2048,
            "finished_at": "2024-01-06T02:00:00.000000Z"}
STARTED = manifests.parse_time("2024-01-06T06:00:00Z")


def settings(**overrides):
    raw = {"repository": "/var/backups/todoapi", "databases": ["TodoDb", "Other"]}
    raw.update(overrides)
    return drill.check_settings(raw)


def test_settings_fill_the_defaults_and_empty_values_mean_not_set():
    checked = settings(pg_bin_dir="", smoke_queries={"TodoDb": ['SELECT COUNT(*) FROM "Users"']},
                       connection={"host": "", "port": 5433})
    assert checked["pg_bin_dir"] is None and checked["scratch_prefix"] == "pgbackup_drill"
    assert checked["alert_mode"] == "on_change" and checked["storage"] == {}
    spec = drill.connection_of(checked)
    assert (spec.host, spec.port, spec.password) == (None, 5433, None)


@pytest.mark.parametrize("overrides, words", [
    ({"databases": []}, "non-empty list of database names"),
    ({"repository": ""}, "No repository"),
    ({"colour": "red"}, "Unknown setting(s) in the drill settings: colour"),
    ({"smoke_queries": {"Tododb": ["SELECT 1"]}}, "smoke queries for database(s) the drill does not restore: Tododb"),
    ({"smoke_queries": {"TodoDb": "SELECT 1"}}, "must map database names to lists of SQL queries"),
    ({"connection": {"dbname": "x"}}, "Unknown connection setting(s)"),
    ({"alert_mode": "sometimes"}, "Unknown alert mode 'sometimes'"),
    ({"webhook_url": "http://hooks.example/x"}, "no alert state file is set"),
    ({"scratch_prefix": "drill-it"}, "is not a plain identifier"),
    ({"connection": {"port": "fivefourthreetwo"}}, "is not valid"),
])
def test_wrong_settings_are_refused_by_name(overrides, words):
    with pytest.raises(PgBackupError) as caught:
        settings(**overrides)
    assert words in str(caught.value)


def test_unreadable_settings_file(tmp_path):
    with pytest.raises(PgBackupError) as caught:
        drill.load_settings(str(tmp_path / "missing.json"))
    assert "Cannot read the drill settings" in str(caught.value)


def outcomes():
    passed = drill.outcome("TodoDb", MANIFEST, STARTED, 12.5, summary="restored, counts match")
    failed = drill.outcome("Other", dict(MANIFEST, id="20240106T020000Z_logical_Other", database="Other"), STARTED, 3.25,
                           error=PgBackupError("Checksum mismatch", hint="Take another backup.", failed_level="checksum"))
    missing = drill.outcome("Gone", None, STARTED, 0.01, error=PgBackupError("No backup of database 'Gone'."))
    return [passed, failed, missing]


def test_outcome_measures_the_backup_age_when_the_drill_started():
    passed, failed, missing = outcomes()
    assert passed["passed"] and passed["backup_age_seconds"] == 4 * 3600 and passed["error"] is None
    assert (failed["passed"], failed["failed_level"], failed["hint"]) == (False, "checksum", "Take another backup.")
    assert missing["backup_id"] is None and missing["backup_age_seconds"] is None


def test_status_has_one_drill_failed_problem_per_failed_database():
    status = drill.drill_status(outcomes(), "/repo", now="2024-01-06T06:01:00Z")
    assert status["ok"] is False and status["problem_codes"] == ["drill_failed"]
    assert [(p["database"], p["backups"]) for p in status["health"]] == [
        ("Other", ["20240106T020000Z_logical_Other"]), ("Gone", [])]
    assert "The restore drill of 'Other' failed: Checksum mismatch" == status["health"][0]["message"]
    assert status["latest"]["TodoDb"]["verified"] == "drill passed" and status["latest"]["Gone"] is None


def test_metrics_text():
    text = drill.prometheus_text(drill.drill_status(outcomes(), "/repo", now="2024-01-06T06:01:00Z"))
    lines = text.splitlines()
    assert 'todoapi_pgbackup_drill_success{database="TodoDb"} 1' in lines
    assert 'todoapi_pgbackup_drill_success{database="Other"} 0' in lines
    assert 'todoapi_pgbackup_drill_success{database="Gone"} 0' in lines
    assert 'todoapi_pgbackup_drill_duration_seconds{database="TodoDb"} 12.5' in lines
    assert 'todoapi_pgbackup_drill_backup_age_seconds{database="TodoDb"} 14400.0' in lines
    assert not [line for line in lines if line.startswith('todoapi_pgbackup_drill_backup_age_seconds{database="Gone"}')]
    assert 'todoapi_pgbackup_drill_timestamp_seconds{database="TodoDb"} %r' % STARTED.timestamp() in lines
    assert "todoapi_pgbackup_drill_ok 0" in lines
    assert "todoapi_pgbackup_drill_completed_timestamp_seconds 1704520860.0" in lines
    assert "# TYPE todoapi_pgbackup_drill_success gauge" in lines and text.endswith("\n")


def test_publish_without_alert_channels_writes_the_textfile_only(tmp_path):
    textfile = str(tmp_path / "drill.prom")
    status = drill.drill_status(outcomes()[:1], "/repo")
    report = drill.publish(status, settings(textfile=textfile), deliver=None)
    assert report == {"textfile": textfile, "alert": None, "errors": []}
    assert "todoapi_pgbackup_drill_ok 1" in open(textfile).read()
    report = drill.publish(status, settings(textfile=str(tmp_path / "no-such-dir" / "drill.prom")), deliver=None)
    assert report["textfile"] is None and "Textfile directory" in report["errors"][0]


def test_plan_names_the_newest_backup_and_changes_nothing(tmp_path):
    repo = str(tmp_path / "repo")
    os.makedirs(repo)
    synthetic_backup(repo, 64, backup_id="20240105T020000Z_logical_Big")
    newest = synthetic_backup(repo, 64, backup_id="20240106T020000Z_logical_Big")
    before = sorted(os.listdir(repo))
    config = tmp_path / "drill.json"
    config.write_text(json.dumps({"repository": repo, "databases": ["Big", "Gone"], "smoke_queries": {"Big": ["SELECT 1"]}}))
    out, err = io.StringIO(), io.StringIO()
    assert drill_cli.main(["--config", str(config), "--plan", "--json"], deliver=None, out=out, err=err) == drill.EXIT_PASSED
    planned = json.loads(out.getvalue())["plan"]
    assert planned[0]["backup_id"] == newest["id"] and "1 smoke queries" in planned[0]["steps"][-1]
    assert planned[1]["backup_id"] is None and "No backup of database 'Gone'" in planned[1]["error"]
    assert sorted(os.listdir(repo)) == before and err.getvalue() == ""


def test_command_refuses_bad_settings_with_exit_2(tmp_path):
    config = tmp_path / "drill.json"
    config.write_text(json.dumps({"repository": "/r", "databases": ["TodoDb"], "smtp_host": "mail", "smtp_to": ["a@b"]}))
    out, err = io.StringIO(), io.StringIO()
    assert drill_cli.main(["--config", str(config)], deliver=None, out=out, err=err) == drill.EXIT_ERROR
    assert "todoapi-pgbackup-drill: ERROR: Alerts are configured" in err.getvalue() and out.getvalue() == ""


def test_human_lines():
    status = drill.drill_status(outcomes()[:2], "/repo", now="2024-01-06T06:01:00Z")
    result = dict(ok=status["ok"], checked_at=status["checked_at"], drills=status["drills"],
                  alert={"send": True, "subject": "[todoapi.pgbackup] PROBLEM", "sent": ["webhook"]})
    assert drill_cli.describe(result) == [
        "2024-01-06T06:01:00.000000Z FAILED",
        "PASSED TodoDb: restored, counts match (backup 4.0 h old, drill 12.5 s)",
        "FAILED Other: Checksum mismatch Take another backup.",
        "alert '[todoapi.pgbackup] PROBLEM' sent via webhook"]
