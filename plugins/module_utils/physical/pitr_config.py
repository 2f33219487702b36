# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recovery configuration PITR writes into the restored data directory: restore_command, the
target and ``recovery_target_action = 'promote'`` in our own block of postgresql.auto.conf, and
recovery.signal (without it PostgreSQL does crash recovery only and ignores every recovery setting).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ..core.errors import PgBackupError
from .pitr_server import SOCKET_DIR

MANAGED_KEYS = ("restore_command", "recovery_target", "recovery_target_time", "recovery_target_xid",
                "recovery_target_lsn", "recovery_target_name", "recovery_target_action", "recovery_target_inclusive",
                "recovery_target_timeline", "recovery_end_command", "archive_cleanup_command")
# Settings of its own the recovery decides (archive_after_recovery; the port: the cluster's postgresql.conf or option port)
RESERVED_KEYS = MANAGED_KEYS + ("archive_mode", "synchronous_standby_names", "port")
BEGIN_MARK = "# BEGIN todoapi.pgbackup pitr_recovery"
END_MARK = "# END todoapi.pgbackup pitr_recovery"


def _quote(value):
    return "'%s'" % str(value).replace("'", "''")


def restore_command_for(request):
    if request.restore_command:
        return request.restore_command
    parts = [request.wal_command, "restore-wal", "%f", "%p", "--archive-dir", request.archive_dir]
    if request.identity_file:
        parts += ["--identity", request.identity_file]
    for directory in request.stream_dirs:
        parts += ["--stream-dir", directory]
    return " ".join(_shell_quote(p) if p not in ("%f", "%p") else p for p in parts)


def _shell_quote(text):
    if re.match(r"^[A-Za-z0-9_./:=@%+-]+$", text):
        return text
    return "'%s'" % text.replace("'", "'\"'\"'")


def checked_server_settings(settings):
    """The target server's own settings (name: value) as [(name, value)], written before its first start; a name
    that is not a plain setting name, one the recovery decides itself, or a value with a line break is refused."""
    checked = []
    for name, value in (settings or {}).items():
        key = str(name).strip().lower()
        if not re.match(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$", key):
            raise PgBackupError("server_settings: '%s' is not a setting name." % name,
                                hint="Use PostgreSQL's names, e.g. listen_addresses.")
        if key in RESERVED_KEYS:
            raise PgBackupError("server_settings: %s is set by the recovery itself." % key,
                                hint="archive_mode: use archive_after_recovery; port: the Debian cluster's own "
                                     "(its postgresql.conf) or option port; the recovery target: the target options.")
        text = "on" if value is True else "off" if value is False else str(value)
        if "\n" in text or "\r" in text:
            raise PgBackupError("server_settings: the value of %s has a line break." % key)
        checked.append((key, text))
    return checked


def recovery_settings(request, target_server):
    settings = [("restore_command", restore_command_for(request)), ("recovery_target_action", "promote")]
    if request.kind == "immediate":
        settings.append(("recovery_target", "immediate"))
    elif request.kind == "time":
        settings.append(("recovery_target_time", request.target_value.strftime("%Y-%m-%d %H:%M:%S.%f+00")))
    elif request.kind == "xid":
        settings.append(("recovery_target_xid", str(request.target_value)))
    elif request.kind == "lsn":
        settings.append(("recovery_target_lsn", request.target_value))
    elif request.kind == "name":
        settings.append(("recovery_target_name", request.target_value))
    if request.kind in ("time", "xid", "lsn"):
        settings.append(("recovery_target_inclusive", "on" if request.target_inclusive else "off"))
    # A recovered server has no synchronous standby (pg_receivewal) yet: keeping the backup's
    # synchronous_standby_names would make every commit hang. Re-run role wal_archiving to re-enable it.
    settings.append(("synchronous_standby_names", ""))
    if not request.archive_after_recovery:
        settings.append(("archive_mode", "off"))
    if request.mode == "plain":
        settings.append(("port", str(target_server.port)))
    # the new server's own (listen_addresses, ...): in place before its first start, nothing to restart afterwards
    return settings + request.server_settings


def write_recovery_config(data_dir, settings):
    """Replace our block (and any line setting the same keys) in postgresql.auto.conf; add recovery.signal."""
    path = os.path.join(data_dir, "postgresql.auto.conf")
    keys = set(MANAGED_KEYS) | set(pair[0] for pair in settings)
    kept = []
    if os.path.exists(path):
        with open(path) as handle:
            inside = False
            for line in handle.read().splitlines():
                if line.strip() == BEGIN_MARK:
                    inside = True
                    continue
                if line.strip() == END_MARK:
                    inside = False
                    continue
                key = line.split("=", 1)[0].strip().lower() if "=" in line and not line.lstrip().startswith("#") else None
                if inside or key in keys:
                    continue
                kept.append(line)
    if not kept:
        kept = ["# Do not edit this file manually!", "# It will be overwritten by the ALTER SYSTEM command."]
    lines = kept + [BEGIN_MARK] + ["%s = %s" % (key, _quote(value)) for key, value in settings] + [END_MARK]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    with open(os.path.join(data_dir, "recovery.signal"), "w"):
        pass


def ensure_plain_config(data_dir, port):
    """A data directory taken from a Debian cluster has no postgresql.conf/pg_hba.conf: add minimal ones."""
    conf = os.path.join(data_dir, "postgresql.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as handle:
            handle.write("# written by todoapi.pgbackup pitr_recovery (the backup came without one)\n"
                         "listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n" % (port, SOCKET_DIR))
    hba = os.path.join(data_dir, "pg_hba.conf")
    if not os.path.exists(hba):
        with open(hba, "w") as handle:
            handle.write("# written by todoapi.pgbackup pitr_recovery\nlocal all all peer\n"
                         "host all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n")
    ident = os.path.join(data_dir, "pg_ident.conf")
    if not os.path.exists(ident):
        open(ident, "w").close()


def reset_recovery_targets(server):
    """After promotion the target settings are no longer wanted (a later restart must not reuse them)."""
    for key in ("recovery_target", "recovery_target_time", "recovery_target_xid", "recovery_target_lsn",
                "recovery_target_name", "recovery_target_action", "recovery_target_inclusive"):
        server.sql("ALTER SYSTEM RESET %s" % key)
    server.sql("SELECT pg_reload_conf()")
