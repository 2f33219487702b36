# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The name of a setup (a named configuration, what pgBackRest calls a stanza) and the paths
that follow from it.

Two setups on one host differ by their name alone. The default name, ``main``, keeps the paths
of earlier releases; any other name ``N`` adds ``-N`` to each of them. The backup and monitoring
roles derive their defaults from ``setup_paths`` (filter ``todoapi.pgbackup.setup_paths``) and
``todoapi-pgbackup --name N`` finds the config the same way, so this module is the one owner of
the scheme.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

DEFAULT_NAME = "main"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
NAME_RULE = "1 to 32 lower-case letters, digits, '-' and '_', starting with a letter or digit"


class BadName(ValueError):
    """A setup name that would not make safe file, cron and systemd unit names."""


def check_name(name):
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise BadName("must be %s, not %r." % (NAME_RULE, name))
    return name


def setup_paths(name=DEFAULT_NAME):
    """{config_dir, config_file, monitoring_file, log_file, job_name, lock_file, state_dir, textfile} of a setup."""
    suffix = "" if check_name(name) == DEFAULT_NAME else "-" + name
    config_dir = "/etc/todoapi-pgbackup" + suffix
    job_name = "todoapi-pgbackup" + suffix
    return {
        "config_dir": config_dir,
        "config_file": config_dir + "/config.json",
        "monitoring_file": config_dir + "/monitoring.json",
        "log_file": "/var/log/todoapi_backup%s.log" % suffix,
        "job_name": job_name,
        "lock_file": "/run/lock/%s.lock" % job_name,
        "state_dir": "/var/lib/todoapi-pgbackup" + suffix,
        "textfile": "/var/lib/prometheus/node-exporter/todoapi_pgbackup%s.prom" % suffix,
    }
