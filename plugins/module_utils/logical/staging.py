# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The staging database of a full restore: its name, its creation with the backup's properties,
and the swap that puts it in place of the target once its row counts are proven."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

from . import staging_owner
from ..core import pgconn
from ..core.errors import PgBackupError

STAGING_INFIX = "__restore_"
PREVIOUS_INFIX = "__previous_"


def staging_name(database):
    """``<database>__restore_<pid>``, the database name cut so that the whole fits in 63 bytes."""
    suffix = "%s%d" % (STAGING_INFIX, os.getpid())
    return database[:63 - len(suffix)] + suffix


def create_database(admin, name, manifest):
    props = manifest.get("database_properties") or {}
    statement = pgconn.sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(pgconn.sql.Identifier(name))
    options = []
    if props.get("encoding"):
        options.append(pgconn.sql.SQL("ENCODING {}").format(pgconn.sql.Literal(props["encoding"])))
    if props.get("lc_collate"):
        options.append(pgconn.sql.SQL("LC_COLLATE {} LC_CTYPE {}").format(
            pgconn.sql.Literal(props["lc_collate"]), pgconn.sql.Literal(props["lc_ctype"])))
    owner = props.get("owner")
    if owner and pgconn.scalar(admin, "SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)):
        options.append(pgconn.sql.SQL("OWNER {}").format(pgconn.sql.Identifier(owner)))
    try:
        pgconn.query(admin, pgconn.sql.SQL(" ").join([statement] + options))
    except pgconn.psycopg2.Error as exc:
        raise PgBackupError("Cannot create database '%s': %s" % (name, str(exc).strip()))


def drop_database(admin, name, force):
    statement = pgconn.sql.SQL("DROP DATABASE IF EXISTS {}{}").format(
        pgconn.sql.Identifier(name), pgconn.sql.SQL(" WITH (FORCE)" if force else ""))
    pgconn.query(admin, statement)


def _wait_until_unused(admin, name, timeout_seconds=5.0):
    """Wait for the backends of our closed connections to ``name`` to exit: ALTER DATABASE RENAME
    would otherwise find one still there and sleep 100 ms before looking again."""
    deadline = time.monotonic() + timeout_seconds
    while pgconn.scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)):
        if time.monotonic() > deadline:
            return  # the rename waits (and explains) itself
        time.sleep(0.005)


def _rename(admin, name, new_name):
    ident = pgconn.sql.Identifier
    pgconn.query(admin, pgconn.sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(name), ident(new_name)))


def swap_in(admin, staging, target, target_exists, force):
    """Put ``staging`` in place of ``target`` (the old target is dropped once the new one is in place).
    Returns the time.monotonic() at which ``target`` named the restored database."""
    staging_owner.forget_owner(admin, staging)
    _wait_until_unused(admin, staging)
    if not target_exists:
        _rename(admin, staging, target)
        return time.monotonic()
    others = pgconn.scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                           (target,))
    if others and not force:
        raise PgBackupError("Database '%s' has %s open connection(s); cannot replace it." % (target, others),
                            hint="Stop the application first (the seed's 'systemctl stop todoapi'), or set force: true "
                                 "to disconnect them.")
    previous = staging_name(target).replace(STAGING_INFIX, PREVIOUS_INFIX)
    if others:
        pgconn.query(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                            "AND pid <> pg_backend_pid()", (target,))
    _rename(admin, target, previous)
    try:
        _rename(admin, staging, target)
    except BaseException:
        _rename(admin, previous, target)
        raise
    swapped_at = time.monotonic()
    drop_database(admin, previous, force=True)
    return swapped_at
