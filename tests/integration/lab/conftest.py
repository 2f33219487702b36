# -*- coding: utf-8 -*-
"""The lab of real hosts (docs/lab.md) as a session fixture.

``lab`` is built once, the first time a test asks for it, after removing the labs of runs that
died (their owner pid is gone), and removed at the end of the session. Tests that take a host
away (``lab.cut_off``) bring it back (``lab.reconnect``) before they end.
"""

from __future__ import absolute_import, division, print_function

import os
import sys

import pytest

from tests.lib.lab import Lab, cleanup_stale_labs


@pytest.fixture(scope="session")
def lab(collections_root):
    """A running Lab (tests.lib.lab.Lab): six hosts over SSH; lab.playbook(...) runs ansible-playbook on them."""
    if os.geteuid() != 0:
        pytest.fail("the lab needs root: network and mount namespaces, an sshd per host")
    stale = cleanup_stale_labs()
    if stale:
        sys.stderr.write("removed stale labs: %s\n" % ", ".join(stale))
    the_lab = Lab.create()
    the_lab.collections_root = collections_root
    try:
        yield the_lab
    finally:
        the_lab.down()
