# -*- coding: utf-8 -*-
"""roles/backup/files/converge_probe.py, run as the role runs it (python3 -, the file on stdin then main(spec)):
a path, crontab entry or unit counts as different exactly when the task the role would run for it changes
something, so that skipping the others loses nothing."""

from __future__ import absolute_import, division, print_function

import grp
import hashlib
import json
import os
import pwd
import subprocess
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PROBE = os.path.join(ROOT, "roles", "backup", "files", "converge_probe.py")
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def probe(spec):
    with open(PROBE) as handle:
        program = handle.read().rstrip("\n") + "\nmain(%s)\n" % json.dumps(json.dumps(spec))
    done = subprocess.run([sys.executable, "-"], input=program, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def want(path, kind="file", mode="0640", content=None):
    entry = {"path": str(path), "type": kind, "owner": USER, "group": GROUP, "mode": mode}
    if content is not None:
        entry["sha1"] = hashlib.sha1(content.encode()).hexdigest()
    return entry


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "dir").mkdir(mode=0o700)
    os.chmod(tmp_path / "dir", 0o700)
    (tmp_path / "config.json").write_text("{}\n")
    os.chmod(tmp_path / "config.json", 0o640)
    return tmp_path


def test_paths_as_wanted_differ_in_nothing(tree):
    result = probe({"paths": [want(tree / "dir", "directory", "0700"), want(tree / "config.json", content="{}\n")]})
    assert result["differ"] == [] and result["reasons"] == []


@pytest.mark.parametrize("change, reason", [
    (lambda tree: os.chmod(tree / "config.json", 0o644), "mode 0644"),
    (lambda tree: (tree / "config.json").write_text('{"jobs": 2}\n'), "content"),
    (lambda tree: os.remove(tree / "config.json"), "missing"),
    (lambda tree: (os.remove(tree / "config.json"), os.mkdir(tree / "config.json")), "not a file"),
    (lambda tree: (os.remove(tree / "config.json"), os.symlink(tree / "dir", tree / "config.json")), "not a file"),
])
def test_each_difference_the_copy_task_would_fix_is_found(tree, change, reason):
    change(tree)
    result = probe({"paths": [want(tree / "dir", "directory", "0700"), want(tree / "config.json", content="{}\n")]})
    assert result["differ"] == [str(tree / "config.json")]
    assert result["reasons"] == ["%s: %s" % (tree / "config.json", reason)]


def test_another_owner_is_a_difference(tree):
    other = dict(want(tree / "dir", "directory", "0700"), owner="someone-else")
    assert probe({"paths": [other]})["differ"] == [str(tree / "dir")]


def test_missing_and_present_and_units(tree):
    units = tree / "units"
    units.mkdir()
    for name in ("job-backup.timer", "job-backup.service", "other-backup.timer", ".job-hidden.timer", "job-x.conf"):
        (units / name).write_text("")
    os.mkdir(units / "job-dir.timer")
    result = probe({"exists": [str(tree / "dir"), str(tree / "nope")], "absent": [str(tree / "config.json"), str(tree / "gone")],
                    "units": {"dir": str(units), "patterns": ["job-*.service", "job-*.timer"]}})
    assert result["missing"] == [str(tree / "nope")]
    assert result["present"] == [str(tree / "config.json")]
    assert result["units"] == [str(units / "job-backup.service"), str(units / "job-backup.timer")]
    assert probe({"units": {"dir": str(tree / "no-such-dir"), "patterns": ["*"]}})["units"] == []


def load_probe():
    namespace = {"__name__": "converge_probe"}
    with open(PROBE) as handle:
        exec(compile(handle.read(), PROBE, "exec"), namespace)  # pylint: disable=exec-used
    return namespace


def test_cron_entries_are_found_as_ansible_cron_finds_them():
    """The line ansible.builtin.cron's find_job takes for a name: the one after its '#Ansible: <name>' header."""
    from ansible.modules.cron import CronTab
    cron_job_line = load_probe()["cron_job_line"]
    lines = ["MAILTO=x", "#Ansible: job backup", "0 2 * * * run backup", "#Ansible: job verify",
             "#Ansible: job prune", "5 3 * * * run prune", "#Ansible: job backup", "9 9 * * * second",
             "#Ansible: job incr"]
    crontab = types.SimpleNamespace(lines=lines, ansible="#Ansible: ")
    for name in ("job backup", "job verify", "job prune", "job incr", "job basebackup-full"):
        found = CronTab.find_job(crontab, name)
        assert cron_job_line(lines, name) == (found[1] if found else None), name
    assert cron_job_line(lines, "job backup") == "0 2 * * * run backup"
    assert cron_job_line(lines, "job prune") is None  # its header was taken as the line of "job verify"
