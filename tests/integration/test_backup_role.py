# -*- coding: utf-8 -*-
"""The backup role end to end: converge it on localhost, then run the installed runner the
way cron does and prove the result is a good backup.

Everything the role writes goes below a temporary directory (repository, config, log,
engine, runner, lock); the only shared place touched is the crontab of OS user postgres,
whose entries carry a unique job name and are removed afterwards.
"""

from __future__ import absolute_import, division, print_function

import fcntl
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import uuid

import pytest
import yaml

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage import factory
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pgconn import ConnectionSpec
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.lib.ansible_run import REPO_ROOT, run_playbook
from tests.lib.crontab import cron_entries, crontab_text, needs_root_and_cron, remove_cron_entries, roles_play, run_as
from tests.lib.procscan import ProcScanner
from tests.lib.servers import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, MotoServer
from tests.lib.tododb import create_todo_db, todo_row_counts

pytestmark = needs_root_and_cron

ROLE_PLAYBOOK = roles_play("todoapi.pgbackup.backup")
OS_USER = "postgres"
HOST_FILES = "todoapi.pgbackup.backup : Make the role's files, directories and cron entries what they should be"


def changed_tasks(result):
    return [(t["task"], [r.get("item") for r in t.get("results", []) if r.get("changed")])
            for t in result.tasks if t.get("changed")]


def log_tail(path, lines=15):
    try:
        with open(path) as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError as exc:
        return "(no log: %s)" % exc


def log_events(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Installed(object):
    """What the module fixture set up."""


def snapshot_collection(base):
    """A private copy of the collection (roles, plugins, playbooks, meta): the converges compare
    the installed engine with its source, which must not change under them mid-test."""
    root = os.path.join(base, "collections")
    target = os.path.join(root, "ansible_collections", "todoapi", "pgbackup")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("roles", "plugins", "playbooks", "meta"):
        shutil.copytree(os.path.join(REPO_ROOT, name), os.path.join(target, name), ignore=ignore)
    shutil.copy(os.path.join(REPO_ROOT, "galaxy.yml"), target)
    return root


@pytest.fixture(scope="module")
def installed(pg):
    suffix = uuid.uuid4().hex[:8]
    base = tempfile.mkdtemp(prefix="pgbackup-role-")
    os.chmod(base, 0o755)  # the runner runs as postgres and must reach its files
    collections_root = snapshot_collection(base)
    database = "TodoDb_role_%s" % suffix
    ctx = Installed()
    ctx.base = base
    ctx.database = database
    ctx.pg = pg
    ctx.job_name = "pgbackup-test-%s" % suffix
    ctx.repository = os.path.join(base, "repo")
    ctx.config_dir = os.path.join(base, "etc")
    ctx.config_file = os.path.join(ctx.config_dir, "config.json")
    ctx.passfile = os.path.join(ctx.config_dir, "pgpass")
    # The role creates the missing directories of these three (base/run exists, like /run)
    ctx.log_file = os.path.join(base, "var", "log", "todoapi_backup.log")
    ctx.lock_file = os.path.join(base, "run", "lock", "pgbackup.lock")
    ctx.runner = os.path.join(base, "bin", "todoapi-pgbackup")
    ctx.state_dir = os.path.join(base, "state")
    ctx.password = pg.password
    ctx.extra_vars = {
        "pgbackup_install_packages": False,
        "pgbackup_logrotate_enabled": False,
        "pgbackup_databases": [database],
        "pgbackup_repository": ctx.repository,
        "pgbackup_config_dir": ctx.config_dir,
        "pgbackup_log_file": ctx.log_file,
        "pgbackup_lock_file": ctx.lock_file,
        "pgbackup_engine_dir": os.path.join(base, "lib"),
        "pgbackup_runner_path": ctx.runner,
        "pgbackup_systemd_unit_dir": os.path.join(base, "systemd"),
        "pgbackup_job_name": ctx.job_name,
        "pgbackup_db_host": pg.host,
        "pgbackup_db_port": pg.port,
        "pgbackup_db_user": pg.user,
        "pgbackup_password": pg.password,
        "pgbackup_lock_wait_seconds": 120,
        "pgbackup_state_dir": ctx.state_dir,
    }
    os.makedirs(os.path.join(base, "run"))
    os.chmod(os.path.join(base, "run"), 0o770)
    shutil.chown(os.path.join(base, "run"), OS_USER, OS_USER)  # the pg tool wrappers below write there
    os.makedirs(ctx.extra_vars["pgbackup_systemd_unit_dir"])
    ctx.row_counts = create_todo_db(pg, dbname=database, size_mb=2)
    # pg_dump & co. behind wrappers that record the argv and environment of every call
    ctx.tool_calls = os.path.join(base, "run", "tool-calls.txt")
    wrappers = os.path.join(base, "pgbin")
    os.makedirs(wrappers)
    for tool in ("pg_dump", "pg_dumpall", "pg_restore", "psql"):
        path = os.path.join(wrappers, tool)
        with open(path, "w") as handle:
            handle.write("#!/bin/sh\n{ echo \"%s $*\"; env; } >> %s\nexec %s \"$@\"\n"
                         % (tool, ctx.tool_calls, pg.tool(tool)))
        os.chmod(path, 0o755)
    ctx.extra_vars["pgbackup_pg_bin_dir"] = wrappers

    def converge(**overrides):
        extra = dict(ctx.extra_vars, **overrides.pop("extra_vars", {}))
        return run_playbook(ROLE_PLAYBOOK, extra_vars=extra, collections_root=collections_root, **overrides)

    ctx.converge = converge
    ctx.collections_root = collections_root
    try:
        ctx.check_run = converge(check=True, diff=True)
        ctx.created_in_check_mode = os.path.exists(ctx.config_file) or os.path.exists(ctx.repository)
        ctx.first = converge(diff=True)
        ctx.second = converge()
        ctx.check_after = converge(check=True, diff=True)
        yield ctx
    finally:
        remove_cron_entries(ctx.job_name)
        for name in (database, database + "_restored"):
            pg.drop_database(name)
        shutil.rmtree(base, ignore_errors=True)


def test_converge_check_mode_then_idempotent(installed):
    assert installed.check_run.stats["failures"] == 0
    assert installed.check_run.stats["changed"] > 0
    assert not installed.created_in_check_mode, "check mode must not write anything"
    assert installed.first.stats["changed"] > 0
    assert installed.second.stats["changed"] == 0, changed_tasks(installed.second)
    assert installed.check_after.stats["changed"] == 0, changed_tasks(installed.check_after)
    # the passfile task is no_log: not even --diff shows its content
    assert installed.password not in installed.first.stdout + installed.first.stderr
    assert installed.password not in installed.check_run.stdout + installed.check_run.stderr


def engine_task(result, name):
    """Host result of the engine role's task called name (the json callback prefixes the role)."""
    return result.task("todoapi.pgbackup.engine : " + name)


ENGINE_CHECK = "Compare the installed engine with the archive"
ENGINE_SEND = "Send the engine archive"
ENGINE_UNPACK = "Unpack the engine archive and swap the package in"
ENGINE_PACKAGE = "todoapi_pgbackup_engine"


def engine_check(result):
    """What the engine role's check found: {"archive": ..., "differences": ["<path>: <how>", ...]}."""
    return json.loads(engine_task(result, ENGINE_CHECK)["stdout"])


def engine_tree(top):
    """{path relative to top: (is a directory, mode, uid, gid, sha256 or None)}, __pycache__ left out."""
    tree = {}
    for root, dirs, names in os.walk(top):
        dirs[:] = [name for name in dirs if name != "__pycache__"]
        for name in dirs + names:
            path = os.path.join(root, name)
            info = os.lstat(path)
            content = None
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    content = hashlib.sha256(handle.read()).hexdigest()
            tree[os.path.relpath(path, top)] = (stat.S_ISDIR(info.st_mode), stat.S_IMODE(info.st_mode),
                                                info.st_uid, info.st_gid, content)
    return tree


def test_engine_installed_once_and_repaired_only_where_needed(installed):
    """The engine reaches the host as one archive, kept beside the package: the first converge sends and unpacks
    it, a no-change converge only compares. A tampered file, a file or directory with another mode or owner, a
    stale file and the leftover of an interrupted install are found (check mode reports them and changes nothing)
    and the next converge rebuilds the package from the archive already on the host, without sending it again."""
    collection = os.path.join(installed.collections_root, "ansible_collections", "todoapi", "pgbackup")
    source_dir = os.path.join(collection, "plugins", "module_utils")
    lib = os.path.join(installed.base, "lib")
    package_dir = os.path.join(lib, ENGINE_PACKAGE)
    with open(os.path.join(collection, "roles", "engine", "vars", "main.yml")) as handle:
        packages = set(os.path.normpath(name) for name in yaml.safe_load(handle)["_engine_packages"])

    def packed(name, is_dir):
        """Is name (relative to plugins/module_utils) in the archive: a listed package or its parent, or a *.py in one."""
        if is_dir:
            return any(package == name or package.startswith(name + "/") for package in packages)
        return name.endswith(".py") and (os.path.dirname(name) or ".") in packages

    shipped = dict((name, (is_dir, 0o755 if is_dir else 0o644, 0, 0, content))  # root:root, as the archive holds them
                   for name, (is_dir, _mode, _uid, _gid, content) in engine_tree(source_dir).items() if packed(name, is_dir))

    def assert_installed_like_source():
        assert engine_tree(package_dir) == shipped
        assert sorted(os.listdir(lib)) == sorted([ENGINE_PACKAGE, ENGINE_PACKAGE + ".tar"])  # no staging left
        info = os.stat(package_dir)
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o755, 0, 0)

    assert_installed_like_source()
    assert engine_task(installed.first, ENGINE_SEND)["changed"] and engine_task(installed.first, ENGINE_UNPACK)["changed"]
    assert engine_check(installed.second) == {"archive": "current", "differences": []}
    assert engine_task(installed.second, ENGINE_SEND).get("skipped"), changed_tasks(installed.second)
    assert engine_task(installed.second, ENGINE_UNPACK).get("skipped"), changed_tasks(installed.second)

    postgres = pwd.getpwnam(OS_USER)
    os.chmod(os.path.join(package_dir, "core"), 0o700)
    with open(os.path.join(package_dir, "runner", "cli.py"), "a") as handle:
        handle.write("\nraise SystemExit('tampered')\n")
    os.chmod(os.path.join(package_dir, "core", "manifest.py"), 0o664)
    os.chown(os.path.join(package_dir, "storage", "local.py"), postgres.pw_uid, -1)
    with open(os.path.join(package_dir, "ops", "zz_no_longer_shipped.py"), "w") as handle:
        handle.write("# an engine file an older version shipped\n")
    os.makedirs(os.path.join(lib, "." + ENGINE_PACKAGE + ".interrupted", ENGINE_PACKAGE))
    os.makedirs(os.path.join(package_dir, "runner", "__pycache__"))  # Python's, not the archive's: left alone
    expected = ["%s/%s" % (ENGINE_PACKAGE, line) for line in [  # in path order
        "core: mode 0700, not 0755",
        "core/manifest.py: mode 0664, not 0644",
        "ops/zz_no_longer_shipped.py: not in the archive",
        "runner/cli.py: content differs",
        "storage/local.py: owner %d:0, not 0:0" % postgres.pw_uid,
    ]] + [".%s.interrupted: left by an interrupted install" % ENGINE_PACKAGE]
    damaged = engine_tree(lib)

    check = installed.converge(check=True, diff=True)
    assert engine_check(check) == {"archive": "current", "differences": expected}
    assert engine_task(check, ENGINE_UNPACK)["changed"] and engine_task(check, ENGINE_SEND).get("skipped")
    assert engine_tree(lib) == damaged, "check mode changed the engine"

    repair = installed.converge()
    assert engine_check(repair)["differences"] == expected
    assert engine_task(repair, ENGINE_SEND).get("skipped"), "the archive on the host was sent again"
    assert json.loads(engine_task(repair, ENGINE_UNPACK)["stdout"])["differences"] == expected
    assert_installed_like_source()
    version = subprocess.run([installed.runner, "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0, version.stdout + version.stderr

    again = installed.converge()
    assert again.stats["changed"] == 0, changed_tasks(again)
    assert engine_check(again) == {"archive": "current", "differences": []}


IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys
sys.path.insert(0, sys.argv[1])
import todoapi_pgbackup_engine as engine
names = [m.name for m in pkgutil.walk_packages(engine.__path__, engine.__name__ + ".")]
for name in names:
    importlib.import_module(name)
print("\\n".join(names))
"""


def test_every_engine_module_and_runner_command_imports_from_the_installed_tree(installed):
    """The tree the engine role unpacked is its archive's content and complete on its own: every module imports
    with the host's Python as the backup user, away from the collection, and every runner command parses."""
    lib = os.path.join(installed.base, "lib")
    with tarfile.open(os.path.join(lib, ENGINE_PACKAGE + ".tar")) as archive:
        members = sorted(archive.getnames())
    assert members == sorted([ENGINE_PACKAGE] + [os.path.join(ENGINE_PACKAGE, name)
                                                 for name in engine_tree(os.path.join(lib, ENGINE_PACKAGE))])
    done = subprocess.run(["runuser", "-u", OS_USER, "--", "/usr/bin/python3", "-I", "-c", IMPORT_EVERY_MODULE, lib],
                          capture_output=True, text=True, check=False, cwd="/")
    assert done.returncode == 0, done.stderr
    imported = set(done.stdout.split())
    assert {"todoapi_pgbackup_engine.runner.cli", "todoapi_pgbackup_engine.runner.wal",
            "todoapi_pgbackup_engine.ops.retention", "todoapi_pgbackup_engine.storage.s3"} <= imported
    assert not [name for name in imported if ".ansible_module" in name], "modules-only code was installed on the host"
    for command in ("backup", "basebackup", "list", "verify", "prune", "restore", "status"):
        helped = subprocess.run(["runuser", "-u", OS_USER, "--", installed.runner, command, "--help"],
                                capture_output=True, text=True, check=False, cwd="/")
        assert helped.returncode == 0 and "usage:" in helped.stdout, (command, helped.stdout + helped.stderr)


def test_files_modes_owners_and_no_secret_in_config(installed):
    postgres = pwd.getpwnam(OS_USER)

    def mode_and_owner(path):
        info = os.stat(path)
        return stat.S_IMODE(info.st_mode), info.st_uid

    assert mode_and_owner(installed.repository) == (0o700, postgres.pw_uid)
    assert mode_and_owner(installed.passfile) == (0o600, postgres.pw_uid)
    config_mode, config_uid = mode_and_owner(installed.config_file)
    assert config_uid == 0 and config_mode & 0o007 == 0 and config_mode == 0o640
    assert os.stat(installed.config_file).st_gid == postgres.pw_gid
    assert mode_and_owner(installed.log_file)[0] & 0o007 == 0
    with open(installed.config_file) as handle:
        text = handle.read()
    config = json.loads(text)
    assert installed.password not in text
    assert config["connection"]["passfile"] == installed.passfile and "password" not in config["connection"]
    assert config["databases"] == [installed.database]
    assert config["retention"] == {"daily_days": 30, "weekly_weeks": 13, "monthly_months": 12, "keep_last": 1}
    with open(installed.runner) as handle:
        runner = handle.read()
    assert runner.startswith("#!/usr/bin/python3\n") and len(runner.splitlines()) <= 6 and "cli.main()" in runner
    version = subprocess.run([installed.runner, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("todoapi-pgbackup ")


def test_missing_directories_are_created_and_existing_ones_left_alone(installed):
    """The lock file's new directory belongs to the backup user, who creates the lock file in it; the
    log and runner directories belong to root; a directory that was there keeps its owner and mode."""
    postgres = pwd.getpwnam(OS_USER)

    def owner_and_mode(path):
        info = os.stat(path)
        return info.st_uid, stat.S_IMODE(info.st_mode)

    assert owner_and_mode(os.path.dirname(installed.lock_file)) == (postgres.pw_uid, 0o755)
    assert owner_and_mode(installed.state_dir) == (postgres.pw_uid, 0o700)
    for path in (os.path.dirname(installed.log_file), os.path.dirname(installed.runner)):
        assert owner_and_mode(path) == (0, 0o755), path
    assert owner_and_mode(os.path.join(installed.base, "run")) == (postgres.pw_uid, 0o770)
    with open(installed.config_file) as handle:
        config = json.load(handle)
    assert (config["log_file"], config["lock_file"], config["state_dir"]) == (
        installed.log_file, installed.lock_file, installed.state_dir)


def test_a_value_the_runner_refuses_fails_the_role_before_any_change(installed):
    result = installed.converge(extra_vars={"pgbackup_jobs": 4}, expect_failure=True)
    message = result.task("todoapi.pgbackup.backup : Check the role's variables with the runner's rules")["msg"]
    assert "pgbackup_jobs is not valid: Parallel dump (jobs > 1) needs the directory format." in message
    assert result.stats["changed"] == 0
    with open(installed.config_file) as handle:
        assert json.load(handle)["jobs"] == 1


def test_cron_entries_follow_the_seed(installed):
    entries = cron_entries(installed.job_name)
    assert sorted(entries) == ["backup", "prune", "verify"]
    schedule, command = entries["backup"]
    assert schedule == "0 2 * * *"
    assert command == "%s --config %s backup >> %s 2>&1" % (installed.runner, installed.config_file, installed.log_file)
    assert installed.password not in crontab_text()


def test_cron_command_takes_a_valid_restorable_backup(installed):
    _schedule, command = cron_entries(installed.job_name)["backup"]
    lock = os.open(installed.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    with ProcScanner([installed.password]) as watcher:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the runner waits a moment: long enough to be seen
        run = subprocess.Popen(["runuser", "-u", OS_USER, "--", "sh", "-c", command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        os.close(lock)
        stdout, stderr = run.communicate(timeout=300)
    done = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout + done.stderr + log_tail(installed.log_file)
    assert watcher.saw_command("--config %s backup" % installed.config_file), "the watcher never saw the runner"
    assert not watcher.hits, "the password showed up in a command line or environment: %s" % watcher.hits
    with open(installed.tool_calls) as handle:  # what the pg_dump/pg_dumpall wrappers saw, every call
        calls = handle.read()
    assert "pg_dump " in calls and "pg_dumpall " in calls and "PGPASSFILE=%s" % installed.passfile in calls
    assert installed.password not in calls and "PGPASSWORD" not in calls

    repo = LocalRepository(installed.repository)
    backups = repo.list(database=installed.database)
    assert len(backups) == 1
    manifest = backups[0]
    repo.verify_checksum(manifest)
    assert manifest["tables"]["public.Todos"] == installed.row_counts["Todos"]

    postgres_uid = pwd.getpwnam(OS_USER).pw_uid
    for name in os.listdir(installed.repository):
        info = os.stat(os.path.join(installed.repository, name))
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == postgres_uid, name

    events = log_events(installed.log_file)  # every line of the log is one JSON object
    ok = [e for e in events if e["event"] == "backup_ok"]
    assert ok and ok[-1]["backup_id"] == manifest["id"] and ok[-1]["database"] == installed.database
    assert ok[-1]["size"] == manifest["size"] and ok[-1]["duration"] >= 0
    with open(installed.log_file) as handle:
        assert installed.password not in handle.read()

    spec = ConnectionSpec(host=installed.pg.host, port=installed.pg.port, user=installed.pg.user,
                          password=installed.pg.password)
    target = installed.database + "_restored"
    logical_restore.restore(logical_restore.LogicalRestoreRequest(
        repo, spec, database=target, backup=manifest["id"], source_database=installed.database))
    assert todo_row_counts(installed.pg, target) == installed.row_counts


def test_verify_and_prune_cron_commands(installed):
    entries = cron_entries(installed.job_name)
    for job in ("verify", "prune"):
        done = run_as(entries[job][1])
        assert done.returncode == 0, "%s: %s%s" % (job, done.stdout, done.stderr)
    events = log_events(installed.log_file)
    assert any(e["event"] == "verify_ok" for e in events)
    assert any(e["event"] in ("prune_ok", "prune_skipped") for e in events)
    assert LocalRepository(installed.repository).list(database=installed.database), "prune deleted the only backup"


def test_list_json_as_postgres(installed):
    done = run_as("%s --config %s list --json" % (installed.runner, installed.config_file))
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert [b["database"] for b in listing["backups"]] == [installed.database] * len(listing["backups"])


def test_concurrent_runs_serialize(installed):
    command = "%s --config %s backup" % (installed.runner, installed.config_file)
    seen_before = len(log_events(installed.log_file))
    runs = [subprocess.Popen(["runuser", "-u", OS_USER, "--", "sh", "-c", command], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for attempt in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    events = log_events(installed.log_file)[seen_before:]
    pids = sorted(set(e["pid"] for e in events))
    assert len(pids) == 2, events
    windows = []
    for pid in pids:
        acquired = [e["ts"] for e in events if e.get("pid") == pid and e["event"] == "lock_acquired"]
        released = [e["ts"] for e in events if e.get("pid") == pid and e["event"] == "lock_released"]
        assert len(acquired) == 1 and len(released) == 1, (pid, events[-12:])
        windows.append((acquired[0], released[0]))
    windows.sort()
    assert windows[0][1] <= windows[1][0], "the two runs overlapped: %s" % windows


def test_lock_busy_exits_75(installed):
    fd = os.open(installed.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        done = run_as("%s --config %s --lock-wait 1 verify" % (installed.runner, installed.config_file))
        elapsed = time.monotonic() - started
    finally:
        os.close(fd)
    assert done.returncode == 75, done.stdout + done.stderr
    assert "still holds lock file" in done.stdout and "(pid %d)" % os.getpid() in done.stdout, "names the holder"
    assert 1 <= elapsed < 30
    assert log_events(installed.log_file)[-1]["event"] == "lock_timeout"
    after = run_as("%s --config %s --lock-wait 1 verify" % (installed.runner, installed.config_file))
    assert after.returncode == 0, after.stdout + after.stderr


def test_backup_now_playbook(installed):
    collections_root = installed.collections_root
    repository = os.path.join(installed.base, "repo-now")
    result = run_playbook(os.path.join(REPO_ROOT, "playbooks", "backup_now.yml"), collections_root=collections_root,
                          extra_vars={"target_hosts": "localhost", "pgbackup_become": False,
                                      "pgbackup_databases": [installed.database], "pgbackup_repository": repository,
                                      "pgbackup_db_host": installed.pg.host, "pgbackup_db_port": installed.pg.port,
                                      "pgbackup_password": installed.password})
    assert result.stats["failures"] == 0
    assert installed.password not in result.stdout
    repo = LocalRepository(repository)
    backups = repo.list(database=installed.database)
    assert len(backups) == 1
    repo.verify_checksum(backups[0])
    assert os.stat(repository).st_uid == pwd.getpwnam(OS_USER).pw_uid

    failed = run_playbook(os.path.join(REPO_ROOT, "playbooks", "backup_now.yml"), collections_root=collections_root,
                          expect_failure=True,
                          extra_vars={"target_hosts": "localhost", "pgbackup_become": False,
                                      "pgbackup_databases": ["NoSuchDb", installed.database],
                                      "pgbackup_repository": repository, "pgbackup_db_host": installed.pg.host,
                                      "pgbackup_db_port": installed.pg.port, "pgbackup_password": installed.password})
    assert "NoSuchDb" in failed.task("Fail if any database was not backed up")["msg"]
    assert len(repo.list(database=installed.database)) == 2, "the good database is backed up despite the bad one"


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd runs here; the refusal cannot be shown")
def test_systemd_scheduler_is_refused_without_systemd(installed):
    result = installed.converge(extra_vars={"pgbackup_scheduler": "systemd"}, expect_failure=True)
    assert "systemd does not run this host" in result.task("todoapi.pgbackup.backup : Fail unless systemd is the service manager")["msg"]


def test_scheduler_none_removes_the_cron_entries(installed):
    assert cron_entries(installed.job_name)
    result = installed.converge(extra_vars={"pgbackup_scheduler": "none"}, env={"ANSIBLE_RUN_TAGS": "pgbackup_schedule"})
    assert result.stats["changed"] > 0
    assert cron_entries(installed.job_name) == {}
    assert result.task(HOST_FILES)["paths"] == {}, "--tags pgbackup_schedule changed files"
    again = installed.converge(extra_vars={"pgbackup_scheduler": "none"})
    assert again.stats["changed"] == 0, changed_tasks(again)


def test_an_entry_written_by_ansible_cron_is_updated_not_duplicated(installed):
    """Hosts converged by the role when it wrote its entries with ansible.builtin.cron converge to the same entries."""
    name = "%s backup" % installed.job_name
    installed.converge()  # the entries as the role writes them (a test above removed them)
    old_task = {"ansible.builtin.cron": {"name": name, "user": OS_USER, "minute": "7", "hour": "3", "job": "/old/runner backup"}}
    run_playbook(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [old_task]}]),
                 collections_root=installed.collections_root)
    assert cron_entries(installed.job_name)["backup"] == ("7 3 * * *", "/old/runner backup")
    check = installed.converge(check=True, diff=True)
    assert check.task(HOST_FILES)["cron"] == [name] and cron_entries(installed.job_name)["backup"][1] == "/old/runner backup"
    result = installed.converge()
    assert result.stats["changed"] == 1 and result.task(HOST_FILES)["cron"] == [name]
    assert crontab_text().count("#Ansible: %s\n" % name) == 1
    assert cron_entries(installed.job_name)["backup"][1].startswith(installed.runner)
    assert installed.converge().stats["changed"] == 0


def test_cron_backup_is_copied_to_s3_and_restorable_from_there(installed, tmp_path):
    """copy_to an S3-compatible server (moto on 127.0.0.1): the installed runner, run exactly as
    cron runs it, leaves a verified copy in the bucket that restores; no secret in the config."""
    with MotoServer.start() as s3:
        bucket = s3.create_bucket()
        credentials = os.path.join(installed.config_dir, "aws-credentials")
        with open(credentials, "w") as handle:
            handle.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (S3_ACCESS_KEY, S3_SECRET_KEY))
        os.chmod(credentials, 0o600)
        shutil.chown(credentials, OS_USER, OS_USER)
        target = "s3://%s/db1" % bucket
        s3_settings = {"endpoint_url": s3.endpoint, "region": S3_REGION, "credentials_file": credentials}
        try:
            converged = installed.converge(extra_vars={"pgbackup_copy_to": [target], "pgbackup_s3": s3_settings})
            assert "pgbackup_copy_to (with pgbackup_s3) is deprecated" in converged.stdout + converged.stderr
            with open(installed.config_file) as handle:
                text = handle.read()
            assert S3_SECRET_KEY not in text
            assert [(r["location"], r["retention"]) for r in json.loads(text)["repositories"]] == [
                (installed.repository, {"daily_days": 30, "weekly_weeks": 13, "monthly_months": 12, "keep_last": 1}),
                (target, None)], "a copy_to target is a repository that keeps everything"
            _schedule, command = cron_entries(installed.job_name)["backup"]
            done = subprocess.run(["runuser", "-u", OS_USER, "--", "sh", "-c", command], capture_output=True, text=True,
                                  check=False, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr + log_tail(installed.log_file)
            remote_repo = factory.open_repository(target, **s3.options())
            newest = remote_repo.resolve("latest", database=installed.database)
            remote_repo.verify_checksum(newest)
            assert newest["id"] == LocalRepository(installed.repository).list(database=installed.database)[-1]["id"]
            local_copy = LocalRepository(str(tmp_path / "from-s3"))
            local_copy.prepare()
            remote_repo.download(newest, local_copy)
            spec = ConnectionSpec(host=installed.pg.host, port=installed.pg.port, user=installed.pg.user,
                                  password=installed.pg.password)
            restored = installed.database + "_from_s3"
            try:
                logical_restore.restore(logical_restore.LogicalRestoreRequest(
                    local_copy, spec, database=restored, backup=newest["id"], source_database=installed.database))
                assert todo_row_counts(installed.pg, restored) == installed.row_counts
            finally:
                installed.pg.drop_database(restored)
            with open(installed.log_file) as handle:
                assert S3_SECRET_KEY not in handle.read()
        finally:
            installed.converge()


def test_every_repository_directory_is_created_and_gets_each_backup(installed):
    """pgbackup_repositories: the role creates each directory (0700, the backup user's) and schedules prune
    for a repository's own policy even when pgbackup_retention keeps everything; the cron backup lands in all."""
    first, second = os.path.join(installed.base, "repos", "first"), os.path.join(installed.base, "repos", "second")
    repositories = [{"name": "first", "location": first, "retention": {"daily_days": 7, "weekly_weeks": 0,
                                                                       "monthly_months": 0, "keep_last": 1}},
                    {"name": "second", "location": second}]
    try:
        installed.converge(extra_vars={"pgbackup_repositories": repositories, "pgbackup_retention": {}})
        postgres = pwd.getpwnam(OS_USER)
        for path in (first, second):
            info = os.stat(path)
            assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (postgres.pw_uid, 0o700), path
        with open(installed.config_file) as handle:
            config = json.load(handle)
        assert [(r["name"], r["location"], r["retention"]) for r in config["repositories"]] == [
            ("first", first, repositories[0]["retention"]), ("second", second, None)]
        entries = cron_entries(installed.job_name)
        assert "prune" in entries, "a repository with its own policy is pruned"
        done = run_as(entries["backup"][1])
        assert done.returncode == 0, done.stdout + done.stderr + log_tail(installed.log_file)
        ids = [[b["id"] for b in LocalRepository(path).list(database=installed.database)] for path in (first, second)]
        assert len(ids[0]) == 1 and ids[0] == ids[1]
    finally:
        installed.converge()
