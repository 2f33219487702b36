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

from tests.lib.lab import cleanup_stale_labs, running_lab
from tests.lib.lab.shapes import prepare_shapes


@pytest.fixture(scope="session")
def lab(collections_root):
    """A running Lab (tests.lib.lab.Lab): six hosts over SSH; lab.playbook(...) runs ansible-playbook on them."""
    if os.geteuid() != 0:
        pytest.fail("the lab needs root: network and mount namespaces, an sshd per host")
    stale = cleanup_stale_labs()
    if stale:
        sys.stderr.write("removed stale labs: %s\n" % ", ".join(stale))
    yield from running_lab(collections_root)


@pytest.fixture(scope="session")
def shapes(lab, tmp_path_factory):
    """db1 and db2 with a small TodoDb in 15/shapes (port 5441), backup1 with an SFTP account (tests.lib.lab.shapes)."""
    the_shapes = prepare_shapes(lab, tmp_path_factory.mktemp("shapes"))
    yield the_shapes
    for what, seconds in sorted(the_shapes.measured.items()):
        sys.stderr.write("measured on the lab: %s: %.3f s\n" % (what, seconds))
