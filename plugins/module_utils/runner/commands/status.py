# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup status``: the health check of runner/monitor.py with this runner's settings
(repository, databases, log file, age limit) and, for ``--check-archiver``, its database connection."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from .. import monitor
from ..connection import connection_spec

NAME = "status"
HELP = "check backup health, write metrics, send alerts (monitoring)"
TAKES_LOCK = False


def add_arguments(parser):
    monitor.add_status_arguments(parser)


def run(args, config, log):
    return monitor.run_status_command(args, runner_config=config, connect=lambda: connection_spec(config))
