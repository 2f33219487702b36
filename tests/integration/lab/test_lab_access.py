# -*- coding: utf-8 -*-
"""Every lab host is reached over SSH as the non-root lab user; become gives root; host keys are
checked against the known_hosts the lab wrote; hosts reach nothing outside the lab."""

from __future__ import absolute_import, division, print_function

import pwd

from tests.lib.lab import HOST_NAMES, LAB_USER

WHO_AM_I = """
- name: Who and where am I
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
    - name: Without become
      ansible.builtin.command: id -un
      changed_when: false
    - name: Uid without become
      ansible.builtin.command: id -u
      changed_when: false
    - name: Uid with become
      ansible.builtin.command: id -u
      become: true
      changed_when: false
    - name: Host name
      ansible.builtin.command: hostname
      changed_when: false
"""

# Run on a host: connect to an address outside the lab (TEST-NET-2), print the error.
OUTSIDE_PROBE = ("/usr/bin/python3 -c 'import socket; s = socket.socket(); s.settimeout(3)\n"
                 "try:\n    s.connect((\"198.51.100.1\", 22)); print(\"connected\")\n"
                 "except OSError as exc:\n    print(exc.strerror)'")


def stdout_by_host(result, task):
    return {host: value["stdout"] for host, value in result.host_results(task).items()}


def test_every_host_over_ssh_as_the_lab_user_and_root_with_become(lab):
    result = lab.playbook(WHO_AM_I)

    assert result.ok_hosts() == sorted(HOST_NAMES), result.describe()
    assert {host: value["ping"] for host, value in result.host_results("Ping").items()} == dict.fromkeys(HOST_NAMES, "pong")
    assert stdout_by_host(result, "Without become") == dict.fromkeys(HOST_NAMES, LAB_USER)
    lab_uid = str(pwd.getpwnam(LAB_USER).pw_uid)
    assert lab_uid != "0"
    assert stdout_by_host(result, "Uid without become") == dict.fromkeys(HOST_NAMES, lab_uid)
    assert stdout_by_host(result, "Uid with become") == dict.fromkeys(HOST_NAMES, "0")
    assert stdout_by_host(result, "Host name") == {host: host for host in HOST_NAMES}


def test_host_keys_are_checked_against_the_generated_known_hosts(lab):
    known = lab.ssh("db1", "hostname")
    assert (known.returncode, known.stdout.strip()) == (0, "db1"), known.stderr

    unknown = lab.ssh("db1", "hostname", options=["-o", "UserKnownHostsFile=/dev/null"])
    assert unknown.returncode == 255 and "Host key verification failed" in unknown.stderr, unknown.stderr

    # db2 answering at db1's address with its own key must be refused: each host has its own key.
    impostor = lab.ssh("db1", "hostname", options=["-o", "HostName=%s" % lab.address("db2"), "-o", "HostKeyAlias=db1"])
    assert impostor.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in impostor.stderr, impostor.stderr


def test_hosts_reach_their_loopback_and_the_lab_only(lab):
    routes = lab.ssh("db1", "ip -4 route show table all | grep -v ' table local '")
    assert routes.returncode == 0, routes.stderr
    assert [line.split()[0] for line in routes.stdout.splitlines()] == [str(lab.network)], routes.stdout

    outside = lab.ssh("db1", OUTSIDE_PROBE)
    assert outside.stdout.strip() == "Network is unreachable", outside.stdout + outside.stderr

    neighbour = lab.ssh("db1", "ssh-keyscan -T 3 -t ed25519 backup1 2>/dev/null | cut -d' ' -f2-")
    with open(lab.known_hosts) as handle:
        backup1_key = [line.split(None, 1)[1].strip() for line in handle if line.startswith("backup1,")]
    assert neighbour.stdout.strip() and [neighbour.stdout.strip()] == backup1_key, neighbour.stdout + neighbour.stderr
