# -*- coding: utf-8 -*-
"""What a lab is made of: its hosts, its names, its addresses. No side effects here.

Every name carries the lab id ``<owner pid><letter>`` (e.g. ``48213a``): the pid of the process
that owns the lab (pytest, or the keeper of ``scripts/lab.sh up``) and a letter, so that one
process can own several labs and a later run can tell from a name alone whose lab it was.
"""

from __future__ import absolute_import, division, print_function

import collections
import ipaddress
import os
import re

NAME_PREFIX = "pgl"  # network namespaces and interfaces: pgl<id>-db1, pgl<id>-br, pgl<id>-v1
ROOTS_PARENT = "/var/tmp"
ROOT_PREFIX = "pgbackup-lab-"  # lab root: /var/tmp/pgbackup-lab-<id>
LAB_USER = "pgbackup-lab"
LAB_USER_HOME = "/home/" + LAB_USER
HOST_PYTHON = "/usr/bin/python3"
# Candidate /24s, first free one wins: a second lab running at the same time takes the next.
SUBNET_CANDIDATES = ["10.213.%d.0/24" % third for third in range(77, 127)]
CONTROLLER_OCTET = 1

HostSpec = collections.namedtuple("HostSpec", "name octet group")

HOSTS = (
    HostSpec("db1", 11, "db_hosts"),
    HostSpec("db2", 12, "db_hosts"),
    HostSpec("db3", 13, "db_hosts"),
    HostSpec("backup1", 21, "backup_hosts"),
    HostSpec("app1", 31, "app_hosts"),
    HostSpec("new1", 41, "spare_hosts"),
)
HOST_NAMES = tuple(spec.name for spec in HOSTS)

_ID_PATTERN = r"(\d+)([a-z])"
_ID_RE = re.compile(r"^%s$" % _ID_PATTERN)
_NAME_RE = re.compile(r"^%s%s-" % (NAME_PREFIX, _ID_PATTERN))
_ROOT_RE = re.compile(r"^%s%s$" % (re.escape(ROOT_PREFIX), _ID_PATTERN))


def make_lab_id(owner_pid, letter):
    return "%d%s" % (owner_pid, letter)


def owner_pid_of(lab_id):
    match = _ID_RE.match(lab_id)
    if not match:
        raise ValueError("not a lab id: %r" % lab_id)
    return int(match.group(1))


def lab_root(lab_id):
    return os.path.join(ROOTS_PARENT, ROOT_PREFIX + lab_id)


def lab_id_of_root(basename):
    """The lab id of a /var/tmp entry name, or None if it is not a lab root."""
    match = _ROOT_RE.match(basename)
    return match.group(1) + match.group(2) if match else None


def lab_id_of_name(name):
    """The lab id of a network namespace or interface name, or None if it is not a lab's."""
    match = _NAME_RE.match(name)
    return match.group(1) + match.group(2) if match else None


def name_prefix(lab_id):
    return "%s%s-" % (NAME_PREFIX, lab_id)


def netns_name(lab_id, host):
    return name_prefix(lab_id) + host


def bridge_name(lab_id):
    return name_prefix(lab_id) + "br"  # at most 14 characters: pid_max is 7 digits


def veth_name(lab_id, host):
    """Root-side end of the host's veth pair (the host-side end is eth0 in its namespace)."""
    return name_prefix(lab_id) + "v%d" % (HOST_NAMES.index(host) + 1)


def host_address(network, host):
    octet = [spec.octet for spec in HOSTS if spec.name == host][0]
    return network.network_address + octet


def controller_address(network):
    return network.network_address + CONTROLLER_OCTET


def free_subnet(networks_in_use):
    """The first candidate /24 that overlaps none of the root namespace's networks."""
    for candidate in SUBNET_CANDIDATES:
        network = ipaddress.ip_network(candidate)
        if not any(network.overlaps(used) for used in networks_in_use):
            return network
    raise RuntimeError("no free lab subnet among %s..%s" % (SUBNET_CANDIDATES[0], SUBNET_CANDIDATES[-1]))
