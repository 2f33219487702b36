# -*- coding: utf-8 -*-
"""A host lost in the middle of things (cable pulled from the root side, its processes killed)
fails a play over all hosts for that host only, and the play's stats say which."""

from __future__ import absolute_import, division, print_function

import subprocess
import time

from tests.lib.lab import HOST_NAMES
from tests.lib.lab.play import EVERY_HOST_PLAY
from tests.lib.lab.topology import veth_name

LOST = "db3"
OTHERS = sorted(set(HOST_NAMES) - {LOST})
ANSIBLE_UNREACHABLE_RC = 4


def link_is_down(lab, host):
    shown = subprocess.run(["ip", "-o", "link", "show", veth_name(lab.id, host)], capture_output=True, text=True, check=True)
    return "state DOWN" in shown.stdout


def test_a_cut_off_host_fails_alone_and_comes_back(lab):
    lab.playbook(EVERY_HOST_PLAY)  # every host answers; Ansible now holds a connection to each
    lab.cut_off(LOST)
    try:
        assert link_is_down(lab, LOST)
        assert lab.processes(LOST) == [], "processes survived in the cut-off host"

        started = time.monotonic()
        result = lab.playbook(EVERY_HOST_PLAY, expect_failure=True)
        elapsed = time.monotonic() - started

        assert result.rc == ANSIBLE_UNREACHABLE_RC, result.describe()
        assert result.unreachable_hosts() == [LOST]
        assert result.failed_hosts() == []
        assert result.ok_hosts() == OTHERS
        assert result.host_results("Ping")[LOST]["unreachable"] is True
        assert sorted(result.host_results("Host name")) == OTHERS, "a task ran on the lost host or skipped a live one"
        assert elapsed < 60, "finding the lost host took %.0fs" % elapsed
    finally:
        lab.reconnect(LOST)

    again = lab.playbook(EVERY_HOST_PLAY)
    assert again.ok_hosts() == sorted(HOST_NAMES)
    assert again.host_results("Host name")[LOST]["stdout"] == LOST
