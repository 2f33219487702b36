# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staging databases left behind by full restores that died (killed mid-load, host gone): found
on the server, dropped by the next full restore into the same database, reported by status.

Only a staging database whose owner record shows its restore is gone is dropped (see
staging_owner). One that looks like a staging database by its name but has no record (made by an
older version, or its restore died between CREATE DATABASE and writing the record) is reported,
never dropped: nothing proves whose it is."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from . import staging
from . import staging_owner
from ..core import pgconn

STAGING_NAME = re.compile(r"%s[0-9]+$" % re.escape(staging.STAGING_INFIX))
DATABASES_SQL = "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database ORDER BY datname"
NO_RECORD = ("it has no owner record (left by an older version, or its restore died while creating it): "
             "drop it by hand once no restore into '%s' is running")


def find_leftovers(conn, target=None):
    """The staging databases on the server of ``conn`` whose restore is gone (only those of restores
    into ``target`` when given), as dicts: database, target, owner (the owner record or None)."""
    found = []
    for name, comment in pgconn.query(conn, DATABASES_SQL):
        record = staging_owner.read_owner(name, comment)
        if record is None and not STAGING_NAME.search(name):
            continue
        into = record.get("target") if record else name[:STAGING_NAME.search(name).start()]
        if target is not None and not _restores_into(into, record, target):
            continue
        if staging_owner.still_in_use(conn, name, record) is None:
            found.append({"database": name, "target": into, "owner": record})
    return found


def _restores_into(into, record, target):
    # Without a record the name holds the target cut to fit 63 bytes: a prefix of it.
    return into == target if record else target.startswith(into)


def drop_leftovers(connection, maintenance_db, target):
    """Drop the staging databases that dead restores into ``target`` left. Returns the result keys
    dropped_staging_databases (names) and leftover_staging_databases (database, reason: kept)."""
    dropped, kept = [], []
    admin = pgconn.connect(connection, maintenance_db)
    try:
        for leftover in find_leftovers(admin, target):
            name = leftover["database"]
            if leftover["owner"] is None:
                kept.append({"database": name, "reason": NO_RECORD % target})
                continue
            try:
                # Without FORCE: a session that connected since the check makes the drop fail, not vanish.
                staging.drop_database(admin, name, force=False)
                dropped.append(name)
            except pgconn.psycopg2.Error as exc:
                kept.append({"database": name, "reason": "cannot drop it: %s" % str(exc).strip()})
    finally:
        admin.close()
    return {"dropped_staging_databases": dropped, "leftover_staging_databases": kept}


def describe(leftover):
    """One sentence on a leftover for health reports: what it is and what to do."""
    owner = leftover["owner"]
    if owner is None:
        return "Database '%s' looks like the staging database of a restore into '%s' but %s." % (
            leftover["database"], leftover["target"], NO_RECORD % leftover["target"])
    return ("Database '%s' is the staging database of a restore into '%s' (pid %s on %s) that died; nothing will "
            "use it. The next full restore into '%s' drops it, or drop it by hand." % (
                leftover["database"], leftover["target"], owner.get("pid"), owner.get("host"), leftover["target"]))
