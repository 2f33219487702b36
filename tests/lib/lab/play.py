# -*- coding: utf-8 -*-
"""ansible-playbook over a lab's inventory, with per-host results.

    result = lab.playbook(PLAY, expect_failure=True)
    assert result.unreachable_hosts() == ["db3"]
    assert result.host_results("Ping")["db1"]["ping"] == "pong"
"""

from __future__ import absolute_import, division, print_function

import json
import subprocess
import tempfile

from tests.lib.ansible_run import PlaybookResult, ansible_bin, playbook_env, playbook_file


# A play that touches every host: the quickest proof of which hosts answer.
EVERY_HOST_PLAY = """
- name: Every host
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
    - name: Host name
      ansible.builtin.command: hostname
      changed_when: false
"""


class LabPlaybookResult(PlaybookResult):
    """PlaybookResult (whose task()/stats are the controller's, for plays on localhost) plus
    every lab host's results and stats."""

    def __init__(self, argv, rc, stdout, stderr):
        super(LabPlaybookResult, self).__init__(argv, rc, stdout, stderr)
        self.host_stats = self.report.get("stats", {})

    def host_results(self, task_name):
        """{host: result} of the last task called task_name (KeyError listing the task names if absent)."""
        tasks = [task for play in self.report.get("plays", []) for task in play.get("tasks", [])]
        for task in reversed(tasks):
            if task.get("task", {}).get("name") == task_name:
                return task.get("hosts", {})
        raise KeyError("no task %r; tasks run: %s" % (task_name, [task.get("task", {}).get("name") for task in tasks]))

    def unreachable_hosts(self):
        return sorted(host for host, stats in self.host_stats.items() if stats.get("unreachable"))

    def failed_hosts(self):
        return sorted(host for host, stats in self.host_stats.items() if stats.get("failures"))

    def ok_hosts(self):
        return sorted(host for host, stats in self.host_stats.items() if not stats.get("unreachable") and not stats.get("failures"))


def run_lab_playbook(inventory, collections_root, playbook, extra_vars=None, limit=None, forks=None,
                     expect_failure=False, env=None, timeout=900):
    """Run ansible-playbook (the venv's) over the lab inventory; return LabPlaybookResult.

    playbook is YAML text or a path. Raises AssertionError (with the output) when the run failed
    and expect_failure is False, or succeeded and expect_failure is True.
    """
    with tempfile.TemporaryDirectory(prefix="pgbackup-lab-play-") as work_dir:
        argv = [ansible_bin("ansible-playbook"), "-i", inventory]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        if limit:
            argv += ["--limit", limit]
        if forks:
            argv += ["--forks", str(forks)]
        argv.append(playbook_file(playbook, work_dir))
        run_env = playbook_env(collections_root, work_dir, env)
        if "ANSIBLE_REMOTE_TEMP" not in (env or {}):
            del run_env["ANSIBLE_REMOTE_TEMP"]  # on lab hosts, Ansible's own default (~/.ansible/tmp)
        completed = subprocess.run(argv, cwd=work_dir, env=run_env, capture_output=True, text=True, timeout=timeout,
                                   check=False)
    result = LabPlaybookResult(argv, completed.returncode, completed.stdout, completed.stderr)
    if result.failed != bool(expect_failure):
        raise AssertionError("expected ansible-playbook %s\n%s" % ("to fail" if expect_failure else "to succeed",
                                                                   result.describe()))
    return result
