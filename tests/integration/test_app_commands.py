# -*- coding: utf-8 -*-
"""The application's stop/start commands (pgbackup_app_*_command, dr_app_*_command in dr_restore.yml)
run without a shell, as documented: a redirection is passed to the program as words, so
`echo started >> file` "succeeds" and writes nothing; `sh -c '...'` is how to get a shell. Either
way the words that ran and what they printed are in the play's output, so a command that did
nothing can be seen there. Runs the restore role's app_start entry point (what dr_restore.yml's
application step runs); no database is involved."""

from __future__ import absolute_import, division, print_function

import os

SHOWN = "todoapi.pgbackup.restore : Show what the command ran and printed (%s)"


def app_start(ansible_playbook, stop_command, start_command):
    playbook = ("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                "    - ansible.builtin.include_role:\n        name: todoapi.pgbackup.restore\n        tasks_from: app_start\n")
    return ansible_playbook(playbook, extra_vars={"pgbackup_app_manager": "command",
                                                  "pgbackup_app_stop_command": stop_command,
                                                  "pgbackup_app_start_command": start_command})


def shown(result, which):
    messages = [item["msg"] for item in result.task(SHOWN % which)["results"]]
    assert len(messages) == 1, messages
    return messages[0]


def test_a_redirection_without_a_shell_writes_nothing_and_shows_it(ansible_playbook, tmp_path):
    marker = str(tmp_path / "started")

    result = app_start(ansible_playbook, "true", "echo started >> %s" % marker)

    assert not os.path.exists(marker), "the command ran without a shell: nothing may have been written"
    start = shown(result, "start")
    assert '["echo", "started", ">>", "%s"]' % marker in start, start
    assert "stdout: started >> %s" % marker in start and "exited 0" in start, start
    assert '["true"]' in shown(result, "stop")


def test_sh_c_runs_the_command_through_a_shell(ansible_playbook, tmp_path):
    marker = str(tmp_path / "started")

    result = app_start(ansible_playbook, "true", "sh -c 'echo started >> %s; echo done'" % marker)

    with open(marker) as handle:
        assert handle.read() == "started\n"
    start = shown(result, "start")
    assert '["sh", "-c", "echo started >> %s; echo done"]' % marker in start, start
    assert "stdout: done" in start, start
