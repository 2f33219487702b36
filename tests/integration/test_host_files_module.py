# -*- coding: utf-8 -*-
"""The module todoapi.pgbackup.host_files through ansible-playbook, on paths below a temporary directory and
the crontab of a throwaway user: check mode changes nothing, diff mode shows each path but never a secret,
a second run changes nothing, and an entry ansible.builtin.cron wrote is updated, not duplicated."""

from __future__ import absolute_import, division, print_function

import json
import os
import stat
import subprocess
import uuid

import pytest

from tests.lib.ansible_run import run_playbook
from tests.lib.crontab import crontab_text, needs_root_and_cron

pytestmark = needs_root_and_cron
SECRET = "s3cr3t-%s" % uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def user():
    name = "hfm%s" % uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    yield name
    subprocess.run(["crontab", "-r", "-u", name], check=False, stderr=subprocess.DEVNULL)
    subprocess.run(["userdel", name], check=True)


def play(base, user, job):
    task = {"todoapi.pgbackup.host_files": {
        "paths": [
            {"path": os.path.join(base, "etc", "app"), "state": "directory", "owner": "root", "group": user, "mode": "0750"},
            {"path": os.path.join(base, "etc", "app", "config.json"), "content": '{"job": "%s"}\n' % job,
             "owner": "root", "group": user, "mode": "0640"},
            {"path": os.path.join(base, "etc", "app", "pgpass"), "secret_content": "*:*:*:u:%s\n" % SECRET,
             "owner": user, "group": user, "mode": "0600"},
            {"path": os.path.join(base, "app.log"), "state": "touch", "owner": user, "group": user, "mode": "0640"}],
        "cron": {"user": user, "entries": [{"name": "app backup", "minute": "5", "job": job},
                                           {"name": "app prune", "state": "absent"}]},
        "list_files": {"dir": base, "patterns": ["*.log"]}},
        "register": "made"}
    return json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}])


def module_result(result):
    return result.task("todoapi.pgbackup.host_files")


def test_check_diff_apply_and_no_change(tmp_path, user):
    base = str(tmp_path)
    # what ansible.builtin.cron wrote for the same entries
    subprocess.run(["crontab", "-u", user, "-"], input="#Ansible: app backup\n0 1 * * * old\n#Ansible: app prune\n0 2 * * * prune\n",
                   universal_newlines=True, check=True)
    checked = run_playbook(play(base, user, "new"), check=True, diff=True)
    assert checked.stats["changed"] == 1 and os.listdir(base) == []
    assert crontab_text(user).count("#Ansible:") == 2
    assert SECRET not in checked.stdout + checked.stderr
    made = module_result(checked)
    assert sorted(made["paths"]) == sorted(os.path.join(base, *p) for p in (["etc", "app"], ["etc", "app", "config.json"],
                                                                            ["etc", "app", "pgpass"], ["app.log"]))
    assert made["cron"] == ["app backup", "app prune"]
    shown = json.dumps(made["diff"])
    assert '{\\"job\\": \\"new\\"}' in shown and "5 * * * * new" in shown and "0 1 * * * old" in shown  # per path and crontab
    first = run_playbook(play(base, user, "new"), diff=True)
    assert first.stats["changed"] == 1 and SECRET not in first.stdout + first.stderr
    assert crontab_text(user) == "#Ansible: app backup\n5 * * * * new\n"
    passfile = os.stat(os.path.join(base, "etc", "app", "pgpass"))
    assert stat.S_IMODE(passfile.st_mode) == 0o600
    assert module_result(first)["files"] == [os.path.join(base, "app.log")]
    second = run_playbook(play(base, user, "new"))
    assert second.stats["changed"] == 0 and module_result(second)["paths"] == {}
    with open(os.path.join(base, "etc", "app", "pgpass")) as handle:
        assert handle.read() == "*:*:*:u:%s\n" % SECRET
