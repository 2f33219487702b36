# -*- coding: utf-8 -*-
"""The Ansible inventory a lab writes to ``<lab root>/inventory.ini``: one group per role of
host, the lab user, the lab key, the system python3, and SSH options from the lab's ssh_config
(known_hosts built from the hosts' keys, StrictHostKeyChecking on)."""

from __future__ import absolute_import, division, print_function

import os
import shlex

from tests.lib.lab import topology
from tests.lib.lab.access import client_key, control_dir, ssh_config
from tests.lib.lab.hostfs import write_file

GROUP_ORDER = ("db_hosts", "backup_hosts", "app_hosts", "spare_hosts")


def inventory_path(root):
    return os.path.join(root, "inventory.ini")


def inventory_text(lab_id, root, network):
    lines = ["# Lab %s (docs/lab.md); written by tests/lib/lab, removed with the lab." % lab_id]
    for group in GROUP_ORDER:
        lines += ["", "[%s]" % group]
        lines += ["%s ansible_host=%s" % (spec.name, topology.host_address(network, spec.name))
                  for spec in topology.HOSTS if spec.group == group]
    lines += ["", "[lab:children]"] + list(GROUP_ORDER)
    lines += [
        "",
        "[all:vars]",
        "ansible_user=%s" % topology.LAB_USER,
        "ansible_ssh_private_key_file=%s" % client_key(root),
        "ansible_ssh_common_args=%s" % shlex.quote("-F %s" % ssh_config(root)),
        "ansible_control_path_dir=%s" % control_dir(root),
        # ssh's own %C (not Ansible's hash) so that Lab.close_connections can name a host's master.
        "ansible_control_path=%(directory)s/%%C",
        "ansible_python_interpreter=%s" % topology.HOST_PYTHON,
        "pgbackup_lab_id=%s" % lab_id,
        "pgbackup_lab_network=%s" % network,
        "pgbackup_lab_controller=%s" % topology.controller_address(network),
    ]
    return "\n".join(lines) + "\n"


def write_inventory(lab_id, root, network):
    path = inventory_path(root)
    write_file(path, inventory_text(lab_id, root, network), 0o644)
    return path
