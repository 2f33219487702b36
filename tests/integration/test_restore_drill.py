# -*- coding: utf-8 -*-
"""Restore drills end to end: playbooks/restore_drill.yml (role restore_drill) on localhost against a
real cluster, then the scheduled command the way cron runs it.

Everything the role writes goes below a temporary directory (settings, engine, command, metrics,
alert state, log); the only shared place touched is the crontab of OS user postgres, whose entry
carries a unique job name and is removed afterwards. The scratch server is the session cluster;
the throwaway databases carry a unique prefix so that their absence can be checked.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import backup as logical_backup
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.ansible_run import REPO_ROOT, run_playbook
from tests.lib.engine import spec_of
from tests.lib.sinks import HttpReceiver
from tests.lib.tododb import create_todo_db

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("crontab") or not shutil.which("runuser"),
                                reason="needs root, crontab and runuser")

PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "restore_drill.yml")
OS_USER = "postgres"
# become_user postgres from root on localhost: the system Python (postgres cannot run the test venv's)
# and pipelining, so that no temporary file must be readable by postgres.
SYSTEM_PYTHON = "/usr/bin/python3"
PLAYBOOK_ENV = {"ANSIBLE_PIPELINING": "1"}
DRILL_HOUR, DRILL_MINUTE = 4, 17


def crontab_text():
    done = subprocess.run(["crontab", "-l", "-u", OS_USER], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def cron_entry(job_name):
    """(schedule, command) of the role's entry ('#Ansible: <job_name>' + the next line), or None."""
    lines = crontab_text().splitlines()
    for index, line in enumerate(lines[:-1]):
        if line == "#Ansible: %s" % job_name:
            fields = lines[index + 1].split(None, 5)
            return " ".join(fields[:5]), fields[5]
    return None


def remove_cron_entry(job_name):
    lines = crontab_text().splitlines()
    kept = [line for index, line in enumerate(lines)
            if line != "#Ansible: %s" % job_name and (index == 0 or lines[index - 1] != "#Ansible: %s" % job_name)]
    if kept != lines:
        subprocess.run(["crontab", "-u", OS_USER, "-"], input="".join(line + "\n" for line in kept), text=True, check=True)


def metric(text, name, **labels):
    """Value of todoapi_pgbackup_drill_<name> with exactly these labels (None when absent)."""
    wanted = ",".join('%s="%s"' % item for item in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^todoapi_pgbackup_drill_%s(?:\{(.*)\})? (\S+)$" % re.escape(name), line)
        if match and ",".join(sorted((match.group(1) or "").split(","))).strip(",") == wanted:
            return float(match.group(2))
    return None


def task(result, name):
    return result.task("todoapi.pgbackup.restore_drill : " + name)


def preinstall_engine(engine_dir):
    """The engine package as role engine installs it (root-owned 0644 files of every layer but
    ansible_module), so that its converge here copies nothing: file by file that costs minutes on a
    busy host, and roles/engine is tested on its own. What this test installs is the drill."""
    package = os.path.join(engine_dir, "todoapi_pgbackup_engine")
    shutil.copytree(os.path.join(REPO_ROOT, "plugins", "module_utils"), package,
                    ignore=shutil.ignore_patterns("ansible_module", "__pycache__", "*.pyc"))
    for root, dirs, files in os.walk(engine_dir):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


class Drill(object):
    """What the module fixture set up."""

    def take_backup(self, database):
        return logical_backup.backup(logical_backup.LogicalBackupRequest(
            database, LocalRepository(self.repository, owner=OS_USER), spec_of(self.pg), globals_=False))

    def converge(self, check=False, expect_failure=False, **overrides):
        return run_playbook(PLAYBOOK, extra_vars=dict(self.extra_vars, **overrides), check=check,
                            expect_failure=expect_failure, collections_root=self.collections_root, env=PLAYBOOK_ENV)

    def run_scheduled(self):
        """The cron entry's command, as cron runs it (as postgres, through sh)."""
        unused_schedule, command = cron_entry(self.job_name)
        done = subprocess.run(["runuser", "-u", OS_USER, "--", "sh", "-c", command], capture_output=True, text=True,
                              timeout=600, check=False)
        return done.returncode

    def metrics(self):
        with open(self.textfile) as handle:
            return handle.read()

    def throwaway_databases(self):
        return [row[0] for row in self.pg.sql("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                              (self.prefix + "%",))]


@pytest.fixture(scope="module")
def drill(pg, collections_root):
    suffix = uuid.uuid4().hex[:8]
    base = tempfile.mkdtemp(prefix="pgbackup-drill-")
    os.chmod(base, 0o755)  # the drill runs as postgres and must reach its files
    ctx = Drill()
    ctx.pg = pg
    ctx.collections_root = collections_root
    ctx.base = base
    ctx.databases = ["TodoDb_drill_a_%s" % suffix, "TodoDb_drill_b_%s" % suffix]
    ctx.repository = os.path.join(base, "repo")
    os.makedirs(ctx.repository, mode=0o700)
    shutil.chown(ctx.repository, OS_USER, OS_USER)
    ctx.job_name = "pgbackup-drill-test-%s" % suffix
    ctx.prefix = "drill_%s" % suffix
    ctx.config = os.path.join(base, "etc", "drill.json")
    ctx.command = os.path.join(base, "bin", "todoapi-pgbackup-drill")
    ctx.textfile = os.path.join(base, "metrics", "todoapi_pgbackup_drill.prom")
    ctx.state_file = os.path.join(base, "state", "drill-alert-state.json")
    ctx.log_file = os.path.join(base, "drill.log")
    ctx.hook = HttpReceiver().__enter__()  # pylint: disable=unnecessary-dunder-call
    ctx.extra_vars = {
        "target_hosts": "localhost", "ansible_python_interpreter": SYSTEM_PYTHON,
        "restore_drill_install_packages": False,
        "restore_drill_repository": ctx.repository,
        "restore_drill_databases": ctx.databases,
        "restore_drill_smoke_queries": {ctx.databases[0]: ['SELECT COUNT(*) FROM "Users"'],
                                        ctx.databases[1]: ['SELECT 1 FROM "Todos" LIMIT 1']},
        "restore_drill_db_host": pg.host, "restore_drill_db_port": pg.port, "restore_drill_db_user": pg.user,
        "restore_drill_password": pg.password, "restore_drill_pg_bin_dir": pg.bindir,
        "restore_drill_scratch_prefix": ctx.prefix, "restore_drill_jobs": 1,
        "restore_drill_hour": DRILL_HOUR, "restore_drill_minute": DRILL_MINUTE, "restore_drill_job_name": ctx.job_name,
        "restore_drill_textfile_path": ctx.textfile, "restore_drill_state_dir": os.path.dirname(ctx.state_file),
        "restore_drill_webhook_url": ctx.hook.url,
        "restore_drill_config_path": ctx.config, "restore_drill_log_file": ctx.log_file,
        "restore_drill_engine_dir": os.path.join(base, "lib"), "restore_drill_command_path": ctx.command,
        "restore_drill_systemd_unit_dir": os.path.join(base, "systemd"),
    }
    try:
        for database in ctx.databases:
            create_todo_db(pg, dbname=database, size_mb=1)
            ctx.take_backup(database)
        preinstall_engine(ctx.extra_vars["restore_drill_engine_dir"])
        ctx.check_run = ctx.converge(check=True)
        ctx.after_check = {"files": sorted(os.listdir(base)), "repository": len(os.listdir(ctx.repository)),
                           "cron": cron_entry(ctx.job_name), "databases": ctx.throwaway_databases()}
        ctx.first = ctx.converge()
        yield ctx
    finally:
        ctx.hook.__exit__(None, None, None)
        remove_cron_entry(ctx.job_name)
        for database in ctx.databases:
            pg.drop_database(database)
        for database in ctx.throwaway_databases():
            pg.drop_database(database)
        shutil.rmtree(base, ignore_errors=True)


def test_check_mode_changes_nothing(drill):
    assert drill.check_run.stats["failures"] == 0 and drill.check_run.stats["changed"] > 0
    # nothing below the base directory but the repository, nothing new in it (no verification record)
    assert drill.after_check == {"files": ["lib", "repo"], "repository": 4, "cron": None, "databases": []}


def test_drill_over_two_databases_passes_and_writes_metrics(drill):
    judged = task(drill.first, "Judge the drill")
    assert not judged.get("failed")
    assert len(judged["msg"]) == 2 and all("counts match, amcheck OK, 1 smoke queries OK" in line for line in judged["msg"])
    metrics = drill.metrics()
    for database in drill.databases:
        assert metric(metrics, "success", database=database) == 1
        assert metric(metrics, "duration_seconds", database=database) > 0
        assert 0 <= metric(metrics, "backup_age_seconds", database=database) < 3600
        assert metric(metrics, "timestamp_seconds", database=database) > 1.7e9
    assert metric(metrics, "ok") == 1 and metric(metrics, "completed_timestamp_seconds") > 1.7e9
    assert oct(os.stat(drill.textfile).st_mode & 0o777) == "0o644"
    assert drill.throwaway_databases() == []
    assert drill.hook.received == []  # passing from the start: nothing to say
    records = sorted(name for name in os.listdir(drill.repository) if name.endswith(".verify.json"))
    assert len(records) == 2  # each drilled backup's verification record says it restored
    for name in records:
        with open(os.path.join(drill.repository, name)) as handle:
            last = json.load(handle)["history"][-1]
        assert (last["level"], last["outcome"]) == ("restore", "passed")


def test_schedule_entry_runs_daily_at_the_configured_time(drill):
    schedule, command = cron_entry(drill.job_name)
    assert schedule == "%d %d * * *" % (DRILL_MINUTE, DRILL_HOUR)
    assert command.startswith("%s --config %s" % (drill.command, drill.config)) and drill.log_file in command
    assert oct(os.stat(drill.config).st_mode & 0o777) == "0o600"
    assert drill.pg.password not in crontab_text()
    again = drill.converge(restore_drill_run_now=False)
    assert again.stats["changed"] == 0, [t["task"] for t in again.tasks if t.get("changed")]


def flip_a_byte(repository, manifest):
    path = os.path.join(repository, manifest["artifact"])
    with open(path, "r+b") as handle:
        handle.seek(manifest["size"] // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_damaged_newest_backup_fails_the_drill_alerts_once_then_recovers(drill):
    damaged_db, good_db = drill.databases
    newest = drill.take_backup(damaged_db)  # an older, good backup stays: the drill must still take the newest
    flip_a_byte(drill.repository, newest)

    failed = drill.converge(expect_failure=True)
    message = task(failed, "Judge the drill")["msg"]
    assert "RESTORE DRILL FAILED (exit 1)" in message and damaged_db in message and "Checksum mismatch" in message
    metrics = drill.metrics()
    assert metric(metrics, "success", database=damaged_db) == 0
    assert metric(metrics, "success", database=good_db) == 1 and metric(metrics, "ok") == 0
    assert metric(metrics, "duration_seconds", database=damaged_db) > 0
    alert = drill.hook.wait_for(1)[0]["json"]
    assert alert["status"] == "problem" and alert["codes"] == ["drill_failed"]
    assert [(p["database"], p["backups"]) for p in alert["problems"]] == [(damaged_db, [newest["id"]])]
    assert "secret-token" not in failed.stdout
    assert drill.throwaway_databases() == []

    assert drill.run_scheduled() == 1  # the same failure the next day: on_change stays quiet
    assert len(drill.hook.received) == 1
    with open(drill.log_file) as handle:
        assert "FAILED %s: " % damaged_db in handle.read()

    drill.take_backup(damaged_db)
    assert drill.run_scheduled() == 0
    recovered = drill.hook.wait_for(2)[1]["json"]
    assert recovered["status"] == "recovered" and recovered["resolved"] == ["%s:drill_failed" % damaged_db]
    assert metric(drill.metrics(), "success", database=damaged_db) == 1 and metric(drill.metrics(), "ok") == 1
    assert drill.throwaway_databases() == []
