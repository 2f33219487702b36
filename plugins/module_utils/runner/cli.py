# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The on-host runner ``todoapi-pgbackup`` (cron / systemd): a thin adapter over the engine.

    todoapi-pgbackup [--name NAME | --config PATH] backup  [--database DB ...]
    todoapi-pgbackup [--name NAME | --config PATH] basebackup [--type full|diff|incr|auto]
    todoapi-pgbackup [--name NAME | --config PATH] list    [--repository R] [--database DB] [--json]
    todoapi-pgbackup [--name NAME | --config PATH] verify  [--repository R] [--backup ID] [--database DB] [--level LEVEL] ...
    todoapi-pgbackup [--name NAME | --config PATH] prune   [--dry-run]
    todoapi-pgbackup [--name NAME | --config PATH] restore [--repository R] [--backup ID] [--database DB] [--tables T ...] ...
    todoapi-pgbackup [--name NAME | --config PATH] status  [--monitoring-config PATH] ...   (health check, see monitor.py)
    todoapi-pgbackup --version

This file parses the command line and runs one command (commands/<name>.py) under the run lock
(lock.py) with the event log (eventlog.py). The config is a JSON file written by the
``todoapi.pgbackup.backup`` role (config.py), one per setup: ``--name NAME`` reads the config of
that name (names.py), ``--config PATH`` any file. It never holds a password: ``connection.passfile``
names a 0600 libpq passfile that is handed to libpq through PGPASSFILE (connection.py), and each
remote repository's secrets are in its own 0600 credentials file (repositories.py).

Exit status: 0 success, 1 a backup/verify/prune/restore failed, 2 usage error,
75 another run held the lock for longer than ``lock_wait_seconds``, 78 bad config.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import os
import sys

from ..core.errors import PgBackupError
from . import monitor, names
from .commands import backup, basebackup, listing, prune, restore, status, verify
from .config import DEFAULT_CONFIG, ConfigError, load_config
from .connection import passfile_secrets
from .eventlog import EventLog, as_error
from .lock import LockBusy, RunLock
from .repositories import UnknownRepository
from .program import (EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_LOCKED, EXIT_OK, EXIT_USAGE, PROG,
                      VERSION)

COMMANDS = dict((command.NAME, command) for command in (backup, basebackup, listing, verify, prune, restore, status))


class _Parser(argparse.ArgumentParser):
    def exit(self, status=0, message=None):
        if message:
            self._print_message(message, sys.stderr)
        raise _ParserExit(status)


class _ParserExit(Exception):
    def __init__(self, status):
        super(_ParserExit, self).__init__(status)
        self.status = status


def build_parser():
    parser = _Parser(prog=PROG, description="Scheduled PostgreSQL backups of the Todo API (todoapi.pgbackup runner).",
                     epilog="Exit status: 0 ok, 1 failure, 2 usage, 75 lock busy (another run), 78 bad config.")
    parser.add_argument("--version", action="version", version="%s %s" % (PROG, VERSION))
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--config", default=os.environ.get("TODOAPI_PGBACKUP_CONFIG", DEFAULT_CONFIG),
                       help="JSON config file (default: %(default)s)")
    which.add_argument("--name", help="the config of the setup of this name (%s, the default name: %s; any other adds "
                                      "-NAME to its directory)" % (names.DEFAULT_NAME, DEFAULT_CONFIG))
    parser.add_argument("--lock-wait", type=float, metavar="SECONDS",
                        help="wait at most this long for another run's lock (default: lock_wait_seconds of the config)")
    parser.add_argument("--quiet", action="store_true", help="no human lines on stdout (the log file still gets events)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_arguments(subparsers.add_parser(name, help=command.HELP))
    return parser


def parse_args(argv=None):
    """Parsed arguments, or an int exit status (help, --version, usage errors)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ParserExit as exc:
        return exc.status
    if not args.command:
        parser.print_usage(sys.stderr)
        sys.stderr.write("%s: error: a command is required (%s)\n" % (PROG, ", ".join(sorted(COMMANDS))))
        return EXIT_USAGE
    if args.name is not None:
        try:
            args.config = names.setup_paths(args.name)["config_file"]
        except names.BadName as exc:
            parser.print_usage(sys.stderr)
            sys.stderr.write("%s: error: argument --name: %s\n" % (PROG, exc))
            return EXIT_USAGE
    return args


def take_lock(args, config, log):
    wait = config["lock_wait_seconds"] if args.lock_wait is None else args.lock_wait
    lock = RunLock(config["lock_file"], wait)
    lock.acquire(on_wait=lambda holder: log.info(
        "lock_wait", "waiting up to %ds for another run%s to finish" % (int(wait), (" (pid %s)" % holder) if holder else ""),
        lock_file=config["lock_file"]))
    log.info("lock_acquired", "%s started (lock %s)" % (args.command, config["lock_file"]), waited=round(lock.waited, 3))
    return lock


def run_command(args, config, log, command):
    """Run ``command`` (under the lock when it takes one); returns the exit status."""
    lock = None
    status = EXIT_FAILED
    try:
        if command.TAKES_LOCK:
            lock = take_lock(args, config, log)
        status = command.run(args, config, log)
    except LockBusy as exc:
        log.error("lock_timeout", exc)
        status = EXIT_LOCKED
    except ConfigError as exc:
        log.error("config_error", exc)
        status = EXIT_CONFIG
    except UnknownRepository as exc:
        log.error("usage_error", exc)
        status = EXIT_USAGE
    except PgBackupError as exc:
        log.error("%s_failed" % args.command, exc)
        status = EXIT_FAILED
    except KeyboardInterrupt:
        log.event("interrupted", "%s interrupted" % args.command, level="error")
        status = EXIT_INTERRUPTED
    except Exception as exc:
        log.error("%s_failed" % args.command, as_error(exc))
        status = EXIT_FAILED
    finally:
        if lock is not None and lock.fd is not None:
            lock.release()
            log.event("lock_released", "%s finished (exit %d)" % (args.command, status),
                      level="info" if status == EXIT_OK else "error", exit_status=status)
    return status


def main(argv=None):
    args = parse_args(argv)
    if isinstance(args, int):
        return args
    deprecations = []
    try:
        config = load_config(args.config, warn=deprecations.append)
    except PgBackupError as exc:
        sys.stderr.write("%s: error: %s\n" % (PROG, exc))
        if args.command == status.NAME:  # monitoring must hear of it: cron drops this message
            monitor.publish_failure(args, exc)
        return EXIT_CONFIG
    command = COMMANDS[args.command]
    log = EventLog(config["log_file"] if command.TAKES_LOCK else None, command=args.command,
                   secrets=passfile_secrets(config), quiet=args.quiet)
    if log.open_error:
        log.warn(log.open_error)
    for message in deprecations:
        log.warning("config_deprecated", message)
    code = run_command(args, config, log, command)
    log.close()
    return code
