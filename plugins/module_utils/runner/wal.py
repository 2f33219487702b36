# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup-wal``: PostgreSQL's archive_command / restore_command, and archive checks.

    archive_command = '/usr/local/bin/todoapi-pgbackup-wal archive-wal %p %f --archive-dir /var/lib/pgbackup/wal'
    restore_command = '/usr/local/bin/todoapi-pgbackup-wal restore-wal %f %p --archive-dir /var/lib/pgbackup/wal'

Settings come from options or from a JSON config file (``--config``, default
/etc/todoapi-pgbackup/wal.json when it exists) with keys archive_dir, compress
(none|zstd), compress_level, recipients (age public keys), identity_file, stream_dirs
(pg_receivewal directories restore-wal searches after the archive). Options win.

Exit status: 0 done; 1 failed (archive-wal: PostgreSQL retries later) or, for restore-wal,
the file is simply not in the archive (quiet: PostgreSQL probes for such files);
255 for restore-wal when the archive is damaged or unreadable, which makes PostgreSQL
abort recovery instead of ending it early at the damaged segment; 2 usage errors.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import sys

from ..physical import wal_archive
from ..core.errors import PgBackupError

PROG = "todoapi-pgbackup-wal"
DEFAULT_CONFIG = "/etc/todoapi-pgbackup/wal.json"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MISSING = 1
EXIT_USAGE = 2
EXIT_ABORT_RECOVERY = 255


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write("%s: error: %s\n" % (self.prog, message))
        raise SystemExit(EXIT_USAGE)


def build_parser():
    parser = _Parser(prog=PROG, description="WAL archive commands of todoapi.pgbackup.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="JSON config file (default %s if present)" % DEFAULT_CONFIG)
    common.add_argument("--archive-dir", help="WAL archive directory")
    sub = parser.add_subparsers(dest="command")
    archive = sub.add_parser("archive-wal", parents=[common], help="archive_command: archive-wal %%p %%f")
    archive.add_argument("wal_path")
    archive.add_argument("wal_name")
    archive.add_argument("--compress", choices=wal_archive.COMPRESSION_CHOICES)
    archive.add_argument("--compress-level", type=int)
    archive.add_argument("--recipient", action="append", dest="recipients", help="age public key (repeatable)")
    restore = sub.add_parser("restore-wal", parents=[common], help="restore_command: restore-wal %%f %%p")
    restore.add_argument("wal_name")
    restore.add_argument("target_path")
    restore.add_argument("--identity", dest="identity_file", help="age identity (private key) file")
    restore.add_argument("--stream-dir", action="append", dest="stream_dirs",
                         help="pg_receivewal directory searched after the archive (repeatable)")
    check = sub.add_parser("check-range", parents=[common], help="report holes in the archive")
    check.add_argument("--timeline", type=int, required=True)
    check.add_argument("--start", required=True, help="segment name or LSN")
    check.add_argument("--end", help="segment name or LSN (default: newest archived)")
    prune = sub.add_parser("prune", parents=[common], help="delete WAL older than a segment")
    prune.add_argument("--oldest-needed", required=True, help="wal_start_segment of the oldest kept base backup")
    prune.add_argument("--dry-run", action="store_true")
    return parser


def load_config(path):
    explicit = path is not None
    path = path or DEFAULT_CONFIG
    if not os.path.exists(path):
        if explicit:
            raise PgBackupError("Config file '%s' does not exist." % path)
        return {}
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise PgBackupError("Cannot read config file '%s': %s." % (path, exc))
    if not isinstance(data, dict):
        raise PgBackupError("Config file '%s' is not a JSON object." % path)
    return data


def _setting(args, config, name, default=None):
    value = getattr(args, name, None)
    if value is None:
        value = config.get(name)
    return default if value is None else value


def _report(error):
    sys.stderr.write("%s: %s\n" % (PROG, error))


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.command:
        build_parser().print_usage(sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(args.config)
        archive_dir = _setting(args, config, "archive_dir")
        if args.command == "archive-wal":
            wal_archive.archive_segment(args.wal_path, args.wal_name, archive_dir,
                                        compress=_setting(args, config, "compress", "none"),
                                        recipients=_setting(args, config, "recipients", []),
                                        level=int(_setting(args, config, "compress_level", 3)))
            return EXIT_OK
        if args.command == "restore-wal":
            try:
                wal_archive.restore_segment(args.wal_name, args.target_path, archive_dir,
                                            identity_file=_setting(args, config, "identity_file"),
                                            stream_dirs=_setting(args, config, "stream_dirs", []))
            except wal_archive.WalSegmentMissing:
                return EXIT_MISSING
            except PgBackupError as exc:
                _report(exc)
                return EXIT_ABORT_RECOVERY
            return EXIT_OK
        if args.command == "check-range":
            result = wal_archive.wal_range_present(archive_dir, args.timeline, args.start, args.end)
            sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
            return EXIT_OK if result["complete"] else EXIT_FAILED
        if args.command == "prune":
            result = wal_archive.prune_wal(archive_dir, args.oldest_needed, dry_run=args.dry_run)
            sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
            return EXIT_OK
    except PgBackupError as exc:
        _report(exc)
        return EXIT_ABORT_RECOVERY if args.command == "restore-wal" else EXIT_FAILED
    except Exception as exc:  # any doubt is a failure, never a success
        _report("unexpected error: %r" % (exc,))
        return EXIT_ABORT_RECOVERY if args.command == "restore-wal" else EXIT_FAILED
    return EXIT_USAGE


WRAPPER_TEMPLATE = """#!%(python)s
# Installed by todoapi.pgbackup: PostgreSQL archive_command/restore_command helper.
import sys
sys.path.insert(0, %(lib_dir)r)
from todoapi_pgbackup_engine.runner.wal import main
sys.exit(main(sys.argv[1:]))
"""


def wrapper_script(lib_dir, python="/usr/bin/python3"):
    """Text of the installed wrapper: ``lib_dir`` holds the package todoapi_pgbackup_engine."""
    return WRAPPER_TEMPLATE % {"python": python, "lib_dir": lib_dir}
