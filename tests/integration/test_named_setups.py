# -*- coding: utf-8 -*-
"""Two setups on one host differ by their name alone: the backup and monitoring roles applied twice,
with nothing but pgbackup_name (and what is backed up, and where) told apart, give two configs, logs,
locks, state directories, cron entries and metric files, and the cron commands back up and monitor
each one.

The paths are the real ones the names give (/etc/todoapi-pgbackup-<name>/, /var/log/todoapi_backup-
<name>.log ...) with unique names, removed afterwards; the engine and the runner, which every setup
shares, go below a temporary directory, and so do the repositories."""

from __future__ import absolute_import, division, print_function

import functools
import json
import os
import shutil
import tempfile
import uuid

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import names
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.ansible_run import run_playbook
from tests.lib.crontab import cron_entries, needs_root_and_cron, remove_cron_entries, roles_play, run_as
from tests.lib.tododb import create_todo_db

pytestmark = needs_root_and_cron

PLAY = roles_play("todoapi.pgbackup.backup", "todoapi.pgbackup.monitoring")


def remove_setup(paths):
    for path in (paths["config_dir"], paths["state_dir"]):
        shutil.rmtree(path, ignore_errors=True)
    for path in (paths["log_file"], paths["lock_file"], paths["textfile"]):
        if os.path.exists(path):
            os.unlink(path)


@pytest.fixture(scope="module")
def two_setups(pg, collections_root):
    suffix = uuid.uuid4().hex[:8]
    base = tempfile.mkdtemp(prefix="pgbackup-setups-")
    os.chmod(base, 0o755)
    at = functools.partial(os.path.join, base)
    textfile_dir = os.path.dirname(names.setup_paths()["textfile"])
    made_textfile_dir = not os.path.isdir(textfile_dir)
    setups = {}
    for letter in ("a", "b"):
        name = "t%s%s" % (suffix, letter)
        setups[name] = {"name": name, "database": "TodoDb_%s" % name, "repository": at("repo-" + letter),
                        "paths": names.setup_paths(name)}
    try:
        for setup in setups.values():
            setup["rows"] = create_todo_db(pg, dbname=setup["database"], size_mb=1)
            setup["converge"] = run_playbook(PLAY, collections_root=collections_root, extra_vars={
                "pgbackup_name": setup["name"], "pgbackup_databases": [setup["database"]],
                "pgbackup_repository": setup["repository"], "pgbackup_install_packages": False,
                "pgbackup_logrotate_enabled": False, "pgbackup_engine_dir": at("lib"),
                "pgbackup_runner_path": at("bin", "todoapi-pgbackup"), "monitoring_runner_path": at("bin", "todoapi-pgbackup"),
                "pgbackup_db_host": pg.host, "pgbackup_db_port": pg.port, "pgbackup_db_user": pg.user,
                "pgbackup_password": pg.password})
        yield setups
    finally:
        for setup in setups.values():
            remove_cron_entries(setup["paths"]["job_name"])
            remove_setup(setup["paths"])
            pg.drop_database(setup["database"])
        if made_textfile_dir and os.path.isdir(textfile_dir) and not os.listdir(textfile_dir):
            os.rmdir(textfile_dir)
        shutil.rmtree(base, ignore_errors=True)


def test_each_name_has_its_own_files_and_cron_entries(two_setups):
    seen = set()
    for setup in two_setups.values():
        paths = setup["paths"]
        with open(paths["config_file"]) as handle:
            config = json.load(handle)
        assert config["name"] == setup["name"] and config["repositories"][0]["location"] == setup["repository"]
        assert (config["log_file"], config["lock_file"], config["state_dir"]) == (
            paths["log_file"], paths["lock_file"], paths["state_dir"])
        assert os.path.isfile(paths["log_file"]) and os.path.isdir(paths["state_dir"])
        assert os.path.isfile(paths["monitoring_file"])
        entries = cron_entries(paths["job_name"])
        assert sorted(entries) == ["backup", "prune", "status", "verify"]
        assert all("--config %s " % paths["config_file"] in command for _schedule, command in entries.values())
        files = set([paths["config_file"], paths["log_file"], paths["lock_file"], paths["state_dir"], paths["textfile"]])
        assert not files & seen, "two setups share a path"
        seen |= files


def test_both_back_up_and_both_are_monitored(two_setups):
    for setup in two_setups.values():
        entries = cron_entries(setup["paths"]["job_name"])
        done = run_as(entries["backup"][1])
        assert done.returncode == 0, done.stdout + done.stderr
        backups = LocalRepository(setup["repository"]).list()
        assert [b["database"] for b in backups] == [setup["database"]]
        assert backups[0]["tables"]["public.Todos"] == setup["rows"]["Todos"]
        done = run_as(entries["status"][1])
        assert done.returncode == 0, done.stdout + done.stderr
    for setup in two_setups.values():
        with open(setup["paths"]["textfile"]) as handle:
            metrics = handle.read()
        assert 'todoapi_pgbackup_backups{config="%s",database="%s"} 1' % (setup["name"], setup["database"]) in metrics
        assert 'todoapi_pgbackup_status_ok{config="%s"} 1' % setup["name"] in metrics
        others = [other["database"] for other in two_setups.values() if other is not setup]
        assert not [database for database in others if database in metrics], "one setup reported the other's backups"
        with open(setup["paths"]["log_file"]) as handle:
            logged = [json.loads(line) for line in handle if line.strip()]
        assert [e["database"] for e in logged if e["event"] == "backup_ok"] == [setup["database"]]


def test_the_runner_finds_a_setup_by_its_name(two_setups):
    for setup in two_setups.values():
        done = run_as("%s --name %s list --json" % (cron_entries(setup["paths"]["job_name"])["backup"][1].split()[0],
                                                    setup["name"]))
        assert done.returncode == 0, done.stderr
        assert [b["database"] for b in json.loads(done.stdout)["backups"]] == [setup["database"]]
