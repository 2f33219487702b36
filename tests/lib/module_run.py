# -*- coding: utf-8 -*-
"""Run one module of the collection through a real ansible-playbook run on localhost."""

from __future__ import absolute_import, division, print_function

import json

TASK_NAME = "module under test"


def module_playbook(module, args):
    """A one-task playbook; args are written as JSON (valid YAML) so no quoting can go wrong."""
    return "\n".join([
        "- name: Run one module",
        "  hosts: all",
        "  gather_facts: false",
        "  tasks:",
        "    - name: %s" % TASK_NAME,
        "      %s: %s" % (module, json.dumps(args)),
        "",
    ])


def run_module(ansible_playbook, module, args, check=False, expect_failure=False, verbosity=0):
    """Return (task result dict, PlaybookResult)."""
    result = ansible_playbook(module_playbook(module, args), check=check, expect_failure=expect_failure,
                              verbosity=verbosity)
    return result.task(TASK_NAME), result


def connection_args(cluster):
    return {"host": cluster.host, "port": cluster.port, "user": cluster.user, "password": cluster.password}
