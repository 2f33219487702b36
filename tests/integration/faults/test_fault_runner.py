# -*- coding: utf-8 -*-
"""Faults around the on-host runner ``todoapi-pgbackup`` (plugins/module_utils/runner/cli.py), run as
its own process the way cron runs it: killed with SIGKILL half-way, and two runs at once."""

from __future__ import absolute_import, division, print_function

import json
import os
import signal
import subprocess
import time

from tests.integration.faults.faultlib import (assert_earlier_backups_intact, descendants, kill_and_reap, log_events,
                                               manifest_ids, repo_snapshot, runner_argv, runner_env, temp_entries,
                                               wait_for_descendant, wait_until_gone, write_runner_config)
from tests.lib.dbcompare import table_fingerprints


def run_runner(config, collections_root, *args, **kwargs):
    return subprocess.run(runner_argv(config, *args), env=runner_env(collections_root), capture_output=True, text=True,
                          timeout=kwargs.get("timeout", 300), check=False)


def listed_ids(config, collections_root):
    done = run_runner(config, collections_root, "list", "--json")
    assert done.returncode == 0, done.stderr
    return sorted(row["id"] for row in json.loads(done.stdout)["backups"])


def test_runner_killed_mid_backup_leaves_no_backup_and_no_stale_lock(pg, big_db, tmp_repo, tmp_path, collections_root):
    config, settings = write_runner_config(str(tmp_path), pg, [big_db], tmp_repo)
    first = run_runner(config, collections_root, "backup")
    assert first.returncode == 0, first.stdout + first.stderr
    earlier = manifest_ids(tmp_repo)
    before = repo_snapshot(tmp_repo)
    data_before = table_fingerprints(pg, big_db)

    runner = subprocess.Popen(runner_argv(config, "backup"), env=runner_env(collections_root),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = []
    try:
        dump = wait_for_descendant("pg_dump", root_pid=runner.pid, condition=lambda: temp_entries(tmp_repo))
        children = [pid for pid, name in descendants(runner.pid)]
        os.kill(dump, signal.SIGSTOP)  # so that the run is certainly unfinished when it is killed
        runner.send_signal(signal.SIGKILL)
        runner.wait(30)
        os.kill(dump, signal.SIGCONT)
        # pg_dump and zstd lose their reader and die of SIGPIPE.
        assert wait_until_gone(children, timeout=30), "children of the killed runner kept running"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        kill_and_reap(children)

    # The killed run's work file stays (nobody was left to remove it), but it is no backup.
    leftovers = temp_entries(tmp_repo)
    assert leftovers, "the run was killed while writing"
    assert manifest_ids(tmp_repo) == earlier
    assert listed_ids(config, collections_root) == earlier
    assert_earlier_backups_intact(before, tmp_repo, allow_tmp=True)
    assert table_fingerprints(pg, big_db) == data_before
    assert os.path.exists(settings["lock_file"]), "the killed run's lock file is still there"

    # The lock of the killed run does not block (lock_wait_seconds is 0), and the next run is good.
    started = time.monotonic()
    following = run_runner(config, collections_root, "backup")
    assert following.returncode == 0, following.stdout + following.stderr
    assert time.monotonic() - started < 60
    ids = manifest_ids(tmp_repo)
    assert len(ids) == 2 and set(earlier) < set(ids)
    verify = run_runner(config, collections_root, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    events = [e["event"] for e in log_events(settings["log_file"])]
    assert events[-1] == "lock_released" and "verify_ok" in events
    # Retention never touches the work file of a run (it might still be writing).
    prune = run_runner(config, collections_root, "prune")
    assert prune.returncode == 0, prune.stdout + prune.stderr
    assert temp_entries(tmp_repo) == leftovers


def holds_flock(pid, path):
    """Whether /proc/locks lists a FLOCK of process ``pid`` on the file at ``path``."""
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return False
    with open("/proc/locks") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[4] == str(pid) and \
                    int(fields[5].rsplit(":", 1)[1]) == inode:
                return True
    return False


def test_second_runner_is_refused_by_the_lock_while_the_first_runs(pg, big_db, tmp_repo, tmp_path, collections_root):
    config, settings = write_runner_config(str(tmp_path), pg, [big_db], tmp_repo)
    first = subprocess.Popen(runner_argv(config, "backup"), env=runner_env(collections_root),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Freeze the first runner as soon as /proc/locks shows it holding the lock, so it certainly
        # holds it meanwhile however fast its pg_dump is (probing with flock would take the lock itself).
        deadline = time.monotonic() + 60
        while not holds_flock(first.pid, settings["lock_file"]):
            assert first.poll() is None and time.monotonic() < deadline, "the first runner never held the lock"
            time.sleep(0.002)
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = run_runner(config, collections_root, "--lock-wait", "0", "backup")
        finally:
            os.kill(first.pid, signal.SIGCONT)
        output = first.communicate(timeout=300)[0]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 75, second.stdout + second.stderr
    assert "still holds lock file" in second.stdout and str(first.pid) in second.stdout, second.stdout
    assert first.returncode == 0, output
    ids = manifest_ids(tmp_repo)
    assert len(ids) == 1, "exactly the first run's backup: %s" % ids
    assert temp_entries(tmp_repo) == []
    events = log_events(settings["log_file"])
    assert [e["pid"] for e in events if e["event"] == "lock_timeout"] != []
    assert [e["event"] for e in events if e["event"].startswith("backup_")] == ["backup_started", "backup_ok"]
    # The next scheduled run goes ahead.
    again = run_runner(config, collections_root, "backup")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(manifest_ids(tmp_repo)) == 2
