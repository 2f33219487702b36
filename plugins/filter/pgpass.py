# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libpq passfile lines for the roles and playbooks: ``pgpass_line`` writes one, ``pgpass_entries``
reads a passfile. Both are plugins/module_utils/core/pgpass.py, which the engine uses too;
their documentation is in pgpass_line.yml and pgpass_entries.yml."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import pgpass
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError


def pgpass_line(entry):
    if not isinstance(entry, dict) or entry.get("password") in (None, ""):
        raise AnsibleFilterError("pgpass_line needs a dict with a non-empty 'password' (and user, host, port, database).")
    unknown = sorted(set(entry) - set(pgpass.FIELDS))
    if unknown:
        raise AnsibleFilterError("pgpass_line: unknown key(s) %s; use %s." % (", ".join(unknown), ", ".join(pgpass.FIELDS)))
    try:
        return pgpass.format_line(entry["password"], user=entry.get("user"), host=entry.get("host"),
                                  port=entry.get("port"), database=entry.get("database"))
    except PgBackupError as exc:
        raise AnsibleFilterError("pgpass_line: %s" % exc)


def pgpass_entries(text):
    if not isinstance(text, str):
        raise AnsibleFilterError("pgpass_entries needs the text of a passfile, not %s." % type(text).__name__)
    return pgpass.entries(text)


class FilterModule(object):
    def filters(self):
        return {"pgpass_line": pgpass_line, "pgpass_entries": pgpass_entries}
