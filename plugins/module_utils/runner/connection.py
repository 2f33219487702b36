# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner's database connection: libpq settings from the config, the password only in the
libpq passfile (``connection.passfile``, handed over as PGPASSFILE and checked the way libpq
checks it), and the passwords no log line may carry."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

from ..core import pgconn
from ..core import pgpass
from .config import ConfigError
from .program import current_user


def connection_spec(config):
    """The engine's ConnectionSpec; the password stays in the passfile (PGPASSFILE)."""
    connection = config["connection"]
    passfile = connection.get("passfile")
    if passfile:
        check_passfile(passfile)
        os.environ["PGPASSFILE"] = passfile
    os.environ.pop("PGPASSWORD", None)
    spec = pgconn.ConnectionSpec(host=connection.get("host"), port=connection.get("port"),
                                 user=connection.get("user"), sslmode=connection.get("sslmode"))
    if connection.get("connect_timeout"):
        spec.connect_timeout = int(connection["connect_timeout"])
    return spec


def check_passfile(path):
    """libpq silently ignores a passfile others may read; say so instead of failing to log in."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError("Passfile '%s' cannot be used: %s." % (path, exc.strerror),
                          hint="Create it (the backup role does when pgbackup_password is set) or fix 'connection.passfile'.")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError("Passfile '%s' is not a regular file." % path)
    if info.st_mode & 0o077:
        raise ConfigError("Passfile '%s' has mode %04o; libpq ignores a passfile that group or others can read."
                          % (path, stat.S_IMODE(info.st_mode)), hint="chmod 0600 '%s'." % path)
    if not os.access(path, os.R_OK):
        raise ConfigError("Passfile '%s' is not readable by OS user '%s'." % (path, current_user()),
                          hint="Run as the user that owns it (postgres).")


def passfile_secrets(config):
    """Passwords in the passfile, so that no log line can ever carry one."""
    path = (config.get("connection") or {}).get("passfile")
    if not path:
        return []
    try:
        with open(path) as handle:
            text = handle.read()
    except (IOError, OSError):
        return []
    return [entry["password"] for entry in pgpass.entries(text) if entry["password"]]
