# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``todoapi-pgbackup-wal``: PostgreSQL's archive_command / restore_command, and archive checks.

    archive_command = '/usr/local/bin/todoapi-pgbackup-wal archive-wal %p %f --archive-dir /var/lib/pgbackup/wal'
    restore_command = '/usr/local/bin/todoapi-pgbackup-wal restore-wal %f %p --archive-dir /var/lib/pgbackup/wal'
    archive_command = '/usr/local/bin/todoapi-pgbackup-wal archive-wal %p %f --config /etc/todoapi-pgbackup/wal-15-main.json'

Settings come from options or from a JSON config file (``--config``, default
/etc/todoapi-pgbackup/wal.json when it exists) with keys archive_dir, or archive_url (s3://,
azure://, sftp://) with storage_options (non-secret settings named like backup_copy's options,
see physical/wal_remote.py) and credentials_file (0600: the secret); compress (none|zstd),
compress_level, recipients (age public keys), identity_file, stream_dirs (pg_receivewal
directories restore-wal searches after the archive), and for archive-wal async (store ahead in a
background pusher, see physical/wal_push_async.py), spool_dir, process_max. Options win.

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

from ..core.errors import PgBackupError
from ..physical import wal_spool
from ..physical.wal_archive_layout import COMPRESSION_CHOICES

# PostgreSQL starts this program once per WAL file, one after the other, and in asynchronous mode that
# start is most of the work: the installed wrapper enters through ``wal_fast``, which answers a segment the
# pusher already stored without importing this module; the archive engines (``wal_archive``, ``wal_remote``
# and the back-ends' libraries, ``wal_push_async``) are imported by the commands that use them, not here.

PROG = "todoapi-pgbackup-wal"
DEFAULT_CONFIG = "/etc/todoapi-pgbackup/wal.json"  # wal_fast reads it too (it must not import this module)
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MISSING = 1
EXIT_USAGE = 2
EXIT_ABORT_RECOVERY = 255
DEFAULT_PROCESS_MAX = 4
ASYNC_WAIT_SECONDS = 60
PUSHER_IDLE_SECONDS = 10


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
    common.add_argument("--archive-url", help="remote WAL archive: s3://, azure:// or sftp:// URL (settings in --config)")
    pushing = argparse.ArgumentParser(add_help=False)
    pushing.add_argument("--compress", choices=COMPRESSION_CHOICES)
    pushing.add_argument("--compress-level", type=int)
    pushing.add_argument("--recipient", action="append", dest="recipients", help="age public key (repeatable)")
    pushing.add_argument("--spool-dir", help="local directory of the asynchronous mode's acknowledgements")
    pushing.add_argument("--process-max", type=int, help="files stored at a time in asynchronous mode (default %d)"
                         % DEFAULT_PROCESS_MAX)
    sub = parser.add_subparsers(dest="command")
    archive = sub.add_parser("archive-wal", parents=[common, pushing], help="archive_command: archive-wal %%p %%f")
    archive.add_argument("wal_path")
    archive.add_argument("wal_name")
    archive.add_argument("--async", action="store_true", default=None, dest="async_push",
                         help="let a background pusher store ready files ahead, in parallel")
    push = sub.add_parser("push-queue", parents=[common, pushing], help="the asynchronous mode's background pusher")
    push.add_argument("pg_wal", help="PostgreSQL's pg_wal directory")
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
    sub.add_parser("check", parents=[common], help="check that the archive can be reached (settings, credentials)")
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


def _location(args, config):
    """The archive's directory or URL; an option replaces the config's choice of either."""
    if args.archive_dir or args.archive_url:
        directory, url = args.archive_dir, args.archive_url
    else:
        directory, url = config.get("archive_dir"), config.get("archive_url")
    if directory and url:
        raise PgBackupError("Both archive_dir and archive_url are set.", hint="A WAL archive is one or the other.")
    return url or directory


def open_archive(args, config):
    """A directory path, or a RemoteWalArchive for a URL."""
    location = _location(args, config)
    if "://" not in (location or ""):
        return location
    from ..physical import wal_remote
    return wal_remote.open_remote_archive(location, config.get("storage_options") or {}, config.get("credentials_file"))


def _store(args, config):
    """store(wal_path, wal_name) for the archive of these settings: what the synchronous mode does."""
    archive = open_archive(args, config)
    options = dict(compress=_setting(args, config, "compress", "none"), recipients=_setting(args, config, "recipients", []),
                   level=int(_setting(args, config, "compress_level", 3)))
    if isinstance(archive, str) or archive is None:
        from ..physical import wal_archive
        return lambda wal_path, wal_name: wal_archive.archive_segment(wal_path, wal_name, archive, **options)
    from ..physical import wal_remote
    work_dir = _setting(args, config, "spool_dir")
    return lambda wal_path, wal_name: wal_remote.archive_segment(wal_path, wal_name, archive, work_dir=work_dir, **options)


def cmd_archive(args, config):
    if not _setting(args, config, "async_push", config.get("async")):
        _store(args, config)(args.wal_path, args.wal_name)
        return EXIT_OK
    location = _location(args, config)
    if not location:
        raise PgBackupError("No WAL archive given.", hint="Pass --archive-dir/--archive-url or set them in the config.")
    spool = wal_spool.Spool(_setting(args, config, "spool_dir"))
    pg_wal = os.path.abspath(os.path.dirname(args.wal_path))
    wal_spool.archive_async(args.wal_path, args.wal_name, spool, location, lambda: start_pusher(args, spool, pg_wal),
                            wait_seconds=ASYNC_WAIT_SECONDS)
    return EXIT_OK


def pusher_argv(args, pg_wal):
    """How the foreground starts the background pusher: this very program, with its settings."""
    argv = [sys.executable, os.path.abspath(sys.argv[0]), "push-queue", pg_wal]
    for option, name in (("--config", "config"), ("--archive-dir", "archive_dir"), ("--archive-url", "archive_url"),
                         ("--compress", "compress"), ("--compress-level", "compress_level"),
                         ("--spool-dir", "spool_dir"), ("--process-max", "process_max")):
        if getattr(args, name, None) is not None:
            argv += [option, str(getattr(args, name))]
    for recipient in args.recipients or []:
        argv += ["--recipient", recipient]
    return argv


def start_pusher(args, spool, pg_wal):
    import subprocess
    with open(spool.log_path, "ab") as log:
        return subprocess.Popen(pusher_argv(args, pg_wal), stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                                close_fds=True, start_new_session=True)


def cmd_push_queue(args, config):
    from ..physical import wal_push_async
    spool = wal_spool.Spool(_setting(args, config, "spool_dir"))
    wal_push_async.run_pusher(args.pg_wal, spool, lambda: _store(args, config), _location(args, config),
                              process_max=int(_setting(args, config, "process_max", DEFAULT_PROCESS_MAX)),
                              idle_seconds=PUSHER_IDLE_SECONDS)
    return EXIT_OK


def cmd_restore(args, config):
    from ..physical import wal_archive
    archive = open_archive(args, config)
    identity_file = _setting(args, config, "identity_file")
    stream_dirs = _setting(args, config, "stream_dirs", [])
    try:
        if isinstance(archive, str) or archive is None:
            wal_archive.restore_segment(args.wal_name, args.target_path, archive, identity_file=identity_file,
                                        stream_dirs=stream_dirs)
        else:
            from ..physical import wal_remote
            wal_remote.restore_segment(args.wal_name, args.target_path, archive, identity_file=identity_file,
                                       stream_dirs=stream_dirs)
    except wal_archive.WalSegmentMissing:
        return EXIT_MISSING
    return EXIT_OK


def cmd_check_range(args, config):
    from ..physical import wal_archive
    result = wal_archive.wal_range_present(open_archive(args, config), args.timeline, args.start, args.end)
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return EXIT_OK if result["complete"] else EXIT_FAILED


def cmd_check(args, config):
    from ..physical import wal_archive
    archive = open_archive(args, config)
    if isinstance(archive, str) or archive is None:
        wal_archive.check_writable_archive_dir(archive)
    else:
        archive.check()
    sys.stdout.write(json.dumps({"archive": _location(args, config), "reachable": True}, sort_keys=True) + "\n")
    return EXIT_OK


def cmd_prune(args, config):
    from ..physical import wal_archive
    result = wal_archive.prune_wal(open_archive(args, config), args.oldest_needed, dry_run=args.dry_run)
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return EXIT_OK


COMMANDS = {"archive-wal": cmd_archive, "push-queue": cmd_push_queue, "restore-wal": cmd_restore,
            "check-range": cmd_check_range, "check": cmd_check, "prune": cmd_prune}


def _report(error):
    sys.stderr.write("%s: %s\n" % (PROG, error))


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.command:
        build_parser().print_usage(sys.stderr)
        return EXIT_USAGE
    failed = EXIT_ABORT_RECOVERY if args.command == "restore-wal" else EXIT_FAILED
    try:
        return COMMANDS[args.command](args, load_config(args.config))
    except PgBackupError as exc:
        _report(exc)
        return failed
    except Exception as exc:  # any doubt is a failure, never a success
        _report("unexpected error: %r" % (exc,))
        return failed


WRAPPER_TEMPLATE = """#!%(python)s%(flags)s
# Installed by todoapi.pgbackup: PostgreSQL archive_command/restore_command helper.
import sys
sys.path.insert(0, %(lib_dir)r)
from todoapi_pgbackup_engine.runner.wal_fast import main
sys.exit(main(sys.argv[1:]))
"""


def wrapper_script(lib_dir, python="/usr/bin/python3"):
    """Text of the installed wrapper (what role wal_archiving's template writes): ``lib_dir`` holds the
    package todoapi_pgbackup_engine. Python runs without ``site`` (``-S``; wal_fast adds it back where
    needed) unless ``python`` is a command with arguments, which a ``#!`` line cannot extend."""
    return WRAPPER_TEMPLATE % {"python": python, "flags": "" if " " in python else " -S", "lib_dir": lib_dir}
