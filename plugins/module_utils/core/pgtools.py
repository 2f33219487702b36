# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find the PostgreSQL programs that fit a server's major version.

Which version of a program may talk to which server is decided here, and only here:

- programs that read or write the server's own files (WAL, data directory, base backups) must be of the
  server's major version: pg_waldump cannot read the WAL of another major, pg_ctl starts only its own;
- pg_dump and pg_dumpall: the newest installed, as PostgreSQL recommends for dumping an older server;
- everything else (pg_restore, psql, pg_basebackup, pg_amcheck, ...): the server's major version, else
  the nearest newer one (a program older than the server is refused);
- a program that reads what another one wrote (pg_restore reading pg_dump's archive) must also be at least
  as new as the writer (``written_by``): pg_restore cannot read the archive of a newer pg_dump.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import shutil
import subprocess

from .errors import PgBackupError

# Per-version program directories of the usual packagings: Debian/Ubuntu, then PGDG's RPMs.
VERSIONED_BIN_DIRS = ("/usr/lib/postgresql/%d/bin", "/usr/pgsql-%d/bin")
NEWER_MAJORS_SEARCHED = 4
SAME_MAJOR_ONLY = ("pg_waldump", "pg_verifybackup", "pg_combinebackup", "pg_walsummary", "pg_ctl", "postgres",
                   "initdb", "pg_controldata", "pg_resetwal", "pg_archivecleanup")
NEWEST_FIRST = ("pg_dump", "pg_dumpall")


def _version_of(path):
    out = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         check=False).stdout.decode("utf-8", "replace")
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not match:
        raise PgBackupError("Cannot tell the version of '%s' (it printed: %s)." % (path, out.strip()))
    return int(match.group(1)), match.group(0)


def program_major(path):
    """Major version of a PostgreSQL program (``pg_ctl --version`` and the like)."""
    return _version_of(path)[0]


def _fits(name, major, server_major):
    return major == server_major if name in SAME_MAJOR_ONLY else major >= server_major


def _candidates(name, server_major, bin_dir):
    if bin_dir:
        return [os.path.join(bin_dir, name)]
    majors = [server_major] if name in SAME_MAJOR_ONLY else \
        list(range(server_major, server_major + NEWER_MAJORS_SEARCHED))
    if name in NEWEST_FIRST:
        majors.reverse()
    candidates = [pattern % major for major in majors for pattern in VERSIONED_BIN_DIRS]
    candidates = [os.path.join(directory, name) for directory in candidates]
    on_path = shutil.which(name)
    return candidates + ([on_path] if on_path else [])


def find_tool(name, server_major, bin_dir=None, written_by=None):
    """Path and version of ``name`` (pg_dump, pg_restore, pg_waldump, ...) for a server of ``server_major``.

    Looked for in ``bin_dir`` only when it is given; otherwise in the per-version directories (Debian's
    /usr/lib/postgresql/<major>/bin, PGDG's /usr/pgsql-<major>/bin) and then on PATH. ``written_by``
    (program, version), e.g. ("pg_dump", "18.1"): the program reads that one's output, so it must be of
    that major version or newer too.
    """
    writer_major = major_of_version(written_by[1]) if written_by and written_by[1] else None
    need_major = max(server_major, writer_major or 0)
    seen = []
    for path in _candidates(name, need_major, bin_dir):
        if os.access(path, os.X_OK):
            major, full = _version_of(path)
            if _fits(name, major, server_major) and major >= need_major:
                return path, full
            seen.append("%s is %s" % (path, full))
    if need_major > server_major:
        raise PgBackupError("No %s of PostgreSQL %d or newer was found%s%s: the backup was written by %s %s, and an "
                            "older %s cannot read it (the server is PostgreSQL %d)." % (
                                name, need_major, " in pg_bin_dir %s" % bin_dir if bin_dir else "",
                                " (%s)" % "; ".join(seen) if seen else "", written_by[0], written_by[1], name,
                                server_major),
                            hint="Set 'pg_bin_dir' to the programs of PostgreSQL %d or newer, or leave it empty to use "
                                 "the newest installed (Debian: install postgresql-client-%d)." % (need_major, need_major))
    need = "PostgreSQL %d" % server_major if name in SAME_MAJOR_ONLY else "PostgreSQL %d or newer" % server_major
    raise PgBackupError("No %s for %s was found%s%s." % (
        name, need, " in %s" % bin_dir if bin_dir else "", " (%s)" % "; ".join(seen) if seen else ""),
        hint="Install the programs of PostgreSQL %d on this host (Debian: postgresql-client-%d; pg_waldump, "
             "pg_verifybackup, pg_combinebackup and pg_ctl come with postgresql-%d), or set 'pg_bin_dir' to their "
             "directory." % (server_major, server_major, server_major))


def major_of_version(version):
    """18 of "18.1" (or of "PostgreSQL 18.1"); None when it names none."""
    match = re.search(r"(\d+)", str(version or ""))
    return int(match.group(1)) if match else None


def tool_path(name, server_major, bin_dir=None, written_by=None):
    """Just the path of ``find_tool``."""
    return find_tool(name, server_major, bin_dir, written_by)[0]
