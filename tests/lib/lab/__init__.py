# -*- coding: utf-8 -*-
"""A lab of real hosts for the test suite (docs/lab.md): db1, db2, db3, backup1, app1 and new1,
each a network namespace on a private /24 plus its own mount/UTS/IPC namespaces, running its own
sshd; Ansible reaches them over SSH as the non-root user ``pgbackup-lab`` with passwordless sudo.

    from tests.lib.lab import Lab

    lab = Lab.create()                  # owned by this process; ~2 s
    try:
        result = lab.playbook(PLAY)     # ansible-playbook -i lab.inventory
        lab.cut_off("db1")              # cable out, its processes killed
        lab.reconnect("db1")
    finally:
        lab.down()                      # nothing left behind

In pytest, ask for the session fixture ``lab`` (tests/integration/lab/conftest.py). By hand:
``scripts/lab.sh up|status|down``. Needs root.
"""

from __future__ import absolute_import, division, print_function

from tests.lib.lab.cleanup import cleanup_stale_labs, known_lab_ids, leftovers
from tests.lib.lab.lab import Lab, running_lab
from tests.lib.lab.topology import HOST_NAMES, HOSTS, LAB_USER

__all__ = ["Lab", "cleanup_stale_labs", "known_lab_ids", "leftovers", "HOSTS", "HOST_NAMES", "LAB_USER", "running_lab"]
