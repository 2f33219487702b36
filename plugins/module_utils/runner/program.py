# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner as a program: its name, version and exit statuses, and the OS user a run is."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import pwd

from ..core import manifest as manifests

PROG = "todoapi-pgbackup"
VERSION = manifests.TOOL_VERSION

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75   # EX_TEMPFAIL: try again later
EXIT_CONFIG = 78   # EX_CONFIG
EXIT_INTERRUPTED = 130


def current_user():
    """Name of the OS user this process runs as (for messages about permissions)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
