# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find the PostgreSQL client programs that match a server's major version."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import shutil
import subprocess

from .errors import PgBackupError

DEBIAN_BIN = "/usr/lib/postgresql/%d/bin"


def _version_of(path):
    out = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         check=False).stdout.decode("utf-8", "replace")
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not match:
        raise PgBackupError("Cannot tell the version of '%s' (it printed: %s)." % (path, out.strip()))
    return int(match.group(1)), match.group(0)


def find_tool(name, server_major, bin_dir=None):
    """Path and version of ``name`` (pg_dump, pg_restore, psql, ...) usable with ``server_major``.

    Order: an explicit ``bin_dir``; Debian's per-version directory for the server's major
    version or any newer one installed; then PATH. A tool older than the server is refused:
    pg_dump cannot dump a newer server.
    """
    candidates = []
    if bin_dir:
        candidates.append(os.path.join(bin_dir, name))
    else:
        for major in range(server_major, server_major + 4):
            candidates.append(os.path.join(DEBIAN_BIN % major, name))
        on_path = shutil.which(name)
        if on_path:
            candidates.append(on_path)
    for path in candidates:
        if os.access(path, os.X_OK):
            major, full = _version_of(path)
            if major >= server_major:
                return path, full
    raise PgBackupError("No %s for PostgreSQL %d or newer was found%s." % (
        name, server_major, " in %s" % bin_dir if bin_dir else ""),
        hint="Install postgresql-client-%d (Debian) on this host, or set 'pg_bin_dir'." % server_major)


def tool_path(name, server_major, bin_dir=None):
    """Just the path of ``find_tool``."""
    return find_tool(name, server_major, bin_dir)[0]
