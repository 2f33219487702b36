# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who owns a staging database, and whether that restore is still running.

A full restore writes an owner record into ``COMMENT ON DATABASE`` of its staging database as
soon as it has created it: the restore's host, boot id, pid and process start time, and the
server session (backend pid and start) it holds open from before the CREATE until the swap-in.

The restore may run on another host than PostgreSQL, so its pid alone proves nothing here. The
session is what the server itself can vouch for: every restore keeps it open until it has
swapped the staging database in or dropped it, and it ends when the restore process dies (at
once for a killed process, after TCP keepalive for a host that vanished, during which the staging
database is kept). A staging database is left over only when that session is gone, nobody is
connected to it, and, when the record names this very host and boot, the process is gone too.
Whatever cannot be decided (no record, no right to see the session) counts as still in use."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import socket

from ..core import pgconn

OWNER_MARK = "todoapi.pgbackup restore staging"
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"

# A session is its backend pid plus its start (in microseconds: text would follow DateStyle and TimeZone).
BACKEND_START = "(extract(epoch FROM backend_start) * 1000000)::bigint"
OWN_SESSION_SQL = "SELECT pid, %s FROM pg_stat_activity WHERE pid = pg_backend_pid()" % BACKEND_START
# NULL backend_start: a session of another role this one may not inspect; it may be the owner's.
SESSION_ALIVE_SQL = "SELECT backend_start IS NULL OR %s = %%s FROM pg_stat_activity WHERE pid = %%s" % BACKEND_START
CONNECTED_SQL = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"


def boot_id():
    try:
        with open(BOOT_ID_FILE) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def process_start(pid):
    """Start time of process ``pid`` (clock ticks after boot, from /proc), or None if it does not run."""
    try:
        with open("/proc/%d/stat" % int(pid)) as handle:
            stat = handle.read()
    except (OSError, TypeError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def record_owner(admin, name, target):
    """Write the owner record of staging database ``name`` (a restore into ``target``) with the
    session ``admin``, which the restore must keep open until the swap-in."""
    backend_pid, backend_start = pgconn.query(admin, OWN_SESSION_SQL)[0]
    record = {"owner": OWNER_MARK, "database": name, "target": target, "host": socket.gethostname(),
              "boot_id": boot_id(), "pid": os.getpid(), "process_start": process_start(os.getpid()),
              "backend_pid": backend_pid, "backend_start": backend_start}
    _comment(admin, name, json.dumps(record, sort_keys=True))
    return record


def forget_owner(admin, name):
    """Remove the record before the staging database takes the target's name."""
    _comment(admin, name, None)


def _comment(admin, name, text):
    pgconn.query(admin, pgconn.sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        pgconn.sql.Identifier(name), pgconn.sql.Literal(text)))


def read_owner(name, comment):
    """The owner record in ``comment`` of database ``name``, or None. A record naming another
    database (one renamed after a restore) is not this database's."""
    try:
        record = json.loads(comment or "")
    except ValueError:
        return None
    if isinstance(record, dict) and record.get("owner") == OWNER_MARK and record.get("database") == name:
        return record
    return None


def still_in_use(conn, name, record):
    """Why staging database ``name`` must be kept (its restore may still be running), or None."""
    connected = pgconn.scalar(conn, CONNECTED_SQL, (name,)) or 0
    if connected:
        return "%d session(s) are connected to it" % connected
    if record is None:
        return None
    try:
        alive = pgconn.scalar(conn, SESSION_ALIVE_SQL, (int(record.get("backend_start")), int(record.get("backend_pid"))))
    except (TypeError, ValueError):
        return "its owner record cannot be read"
    if alive:
        return "the session of its restore (backend pid %s) is still open" % record["backend_pid"]
    started = record.get("process_start")
    if started is not None and _on_this_boot(record) and process_start(record.get("pid")) == started:
        return "its restore (pid %s on this host) is still running" % record["pid"]
    return None


def _on_this_boot(record):
    own_boot = boot_id()
    return bool(own_boot) and record.get("boot_id") == own_boot and record.get("host") == socket.gethostname()
