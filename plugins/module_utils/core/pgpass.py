# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libpq password file (``~/.pgpass``, ``PGPASSFILE``), written and read the way libpq does.

A line is ``host:port:database:user:password``; ``\\`` escapes the next character (so ``\\:`` and
``\\\\`` stand for ``:`` and ``\\``), a lone ``*`` field matches anything, and a line whose first
character is ``#`` is a comment. The engine, the runner and the ``todoapi.pgbackup.pgpass_line``
and ``pgpass_entries`` filters (used by the roles and playbooks) all go through these functions.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from .errors import PgBackupError

FIELDS = ("host", "port", "database", "user", "password")
WILDCARD = "*"


def _escaped(value):
    text = str(value)
    if "\n" in text or "\r" in text:
        raise PgBackupError("A libpq passfile field cannot hold a line break.",
                            hint="Remove the line break from the password or user name.")
    return text.replace("\\", "\\\\").replace(":", "\\:")


def format_line(password, user=None, host=None, port=None, database=None):
    """One passfile line (without the newline); a field given as None or '' matches anything."""
    matched = [WILDCARD if value in (None, "") else _escaped(value) for value in (host, port, database, user)]
    return ":".join(matched + [_escaped("" if password is None else password)])


def split_line(line):
    """The fields of one line, unescaped: split at every ':' that no backslash escapes."""
    fields, current, escaped = [], [], False
    for char in line.rstrip("\r\n"):
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:  # libpq keeps a backslash that ends the line
        current.append("\\")
    fields.append("".join(current))
    return fields


def entries(text):
    """Every entry of a passfile's text as a dict with FIELDS as keys; comments, blank lines and
    lines with fewer than five fields (libpq never matches those) are left out."""
    found = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = split_line(line)
        if len(fields) >= len(FIELDS):
            found.append(dict(zip(FIELDS, fields)))
    return found
