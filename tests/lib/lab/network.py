# -*- coding: utf-8 -*-
"""The lab network: one bridge in the root namespace holding the controller's address, and per
host a network namespace joined to it by a veth pair. Hosts get no default route: they reach
their own loopback and the lab /24, nothing else."""

from __future__ import absolute_import, division, print_function

import ipaddress
import os

from tests.lib.lab import topology
from tests.lib.lab.commands import run


ROUTE_TYPES = ("unicast", "local", "broadcast", "multicast", "anycast", "unreachable", "prohibit", "blackhole", "throw")


def networks_in_use():
    """IPv4 networks the root namespace already has addresses or routes for (default route aside)."""
    used = []
    for line in run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        used.append(ipaddress.ip_interface(line.split()[3]).network)
    for line in run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
        fields = line.split()
        if fields and fields[0] in ROUTE_TYPES:
            fields = fields[1:]
        if fields and fields[0] != "default":
            used.append(ipaddress.ip_network(fields[0], strict=False))
    return used


def _disable_ipv6(interface):
    # The lab is IPv4 only; without this the kernel would give lab interfaces link-local addresses.
    path = "/proc/sys/net/ipv6/conf/%s/disable_ipv6" % interface
    if os.path.exists(path):
        with open(path, "w") as handle:
            handle.write("1")


def create_bridge(lab_id, network):
    bridge = topology.bridge_name(lab_id)
    run(["ip", "link", "add", bridge, "type", "bridge"])
    _disable_ipv6(bridge)
    run(["ip", "addr", "add", "%s/%d" % (topology.controller_address(network), network.prefixlen), "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def create_host_network(lab_id, network, host):
    """Namespace pgl<id>-<host> with eth0 at the host's address, plugged into the lab bridge."""
    netns = topology.netns_name(lab_id, host)
    veth = topology.veth_name(lab_id, host)
    run(["ip", "netns", "add", netns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    _disable_ipv6(veth)
    run(["ip", "link", "set", veth, "master", topology.bridge_name(lab_id), "up"])
    inside = ["ip", "-n", netns]
    run(inside + ["link", "set", "lo", "up"])
    run(inside + ["addr", "add", "%s/%d" % (topology.host_address(network, host), network.prefixlen), "dev", "eth0"])
    run(inside + ["link", "set", "eth0", "up"])


def set_host_link(lab_id, host, up):
    """Plug the host's cable in or pull it, from the root side."""
    run(["ip", "link", "set", topology.veth_name(lab_id, host), "up" if up else "down"])


def netns_path(lab_id, host):
    return "/run/netns/" + topology.netns_name(lab_id, host)


def _belongs(name, lab_id):
    """True if name is a lab's name (of lab lab_id, or of any lab when lab_id is None)."""
    owner = topology.lab_id_of_name(name)
    return owner is not None and (lab_id is None or owner == lab_id)


def lab_netns_names(lab_id=None):
    """Network namespaces of one lab (or of all labs), by name."""
    names = [line.split()[0] for line in run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()]
    return [name for name in names if _belongs(name, lab_id)]


def lab_link_names(lab_id=None):
    """Root-namespace interfaces (bridge, veth ends) of one lab (or of all labs)."""
    names = [line.split(":")[1].strip().split("@")[0] for line in run(["ip", "-o", "link", "show"]).stdout.splitlines()]
    return [name for name in names if _belongs(name, lab_id)]


def remove_network(lab_id):
    """Delete the lab's namespaces and interfaces; whatever is already gone is skipped."""
    for netns in lab_netns_names(lab_id):
        run(["ip", "netns", "del", netns], check=False)
    for link in lab_link_names(lab_id):
        run(["ip", "link", "del", link], check=False)
