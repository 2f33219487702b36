# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring the globals stored with a backup (roles, tablespaces: pg_dumpall --globals-only)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from . import restore_steps as steps
from ..core import pgconn
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pgtools import tool_path
from ..core.pipeline import Pipeline, Stage


def restore_globals(request, manifest, major):
    entry = (manifest.get("extra_files") or {}).get("globals")
    if not entry:
        raise PgBackupError("Backup '%s' holds no globals (roles, tablespaces)." % manifest["id"],
                            hint="Set globals: false, or use a backup taken with globals: true.")
    stages = []
    if manifest.get("encryption"):
        stages.append(streams.decrypt_stage(request.identity_file))
    if entry.get("compression"):
        stages.append(streams.decompress_stage(entry["compression"]))
    path = os.path.join(request.repository.path, entry["artifact"])
    psql = tool_path("psql", major, request.pg_bin_dir)
    conn = pgconn.connect(request.connection, request.maintenance_db)
    try:
        connecting_role = pgconn.scalar(conn, "SELECT current_user")
    finally:
        conn.close()
    # Without ON_ERROR_STOP: roles that already exist make CREATE ROLE fail, and that is fine.
    argv = [psql, "-X", "-q", "--no-psqlrc", "-d", steps.conninfo(request.maintenance_db)]
    with pgconn.libpq_environment(request.connection) as env:
        script = _decode_small_file(stages, path, env)
        script = keep_own_password(script, connecting_role)
        stderr = steps.run([Stage(argv, name="psql")], env, stdin=iter([script.encode("utf-8")]))[-1]
    errors = [line for line in stderr.splitlines() if "ERROR:" in line and "already exists" not in line]
    if errors:
        raise PgBackupError("Restoring globals failed: %s" % "; ".join(errors[:5]))


def _decode_small_file(stages, path, env):
    if not stages:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    pipeline = Pipeline(stages, env=env, stdin=path, capture_stdout=True).start()
    data = b"".join(pipeline.stdout_chunks())
    steps.finish(pipeline)
    return data.decode("utf-8")


def keep_own_password(script, role):
    """Drop the PASSWORD clause that would reset the role this restore is logged in as: the
    old server's password would lock the running restore (and its operator) out."""
    names = [re.escape(role), re.escape('"%s"' % role.replace('"', '""'))]
    pattern = re.compile(r"^(ALTER ROLE (?:%s) WITH .*?) PASSWORD '(?:[^']|'')*'" % "|".join(names), re.MULTILINE)
    return pattern.sub(r"\1", script)
