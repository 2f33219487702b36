# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point-in-time recovery: base backup + WAL archive -> a server promoted at the target.

Order of work (nothing on the target host changes until step 4):

1. pick the base backup: the newest of the target server's major version whose end lies
   before the target, checksum verified (with every backup of its chain);
2. check the WAL: every segment from the backup's start on is archived without a hole up to
   the target (a hole, or a target after the archive's end / before the oldest backup, is
   an error naming the cause);
3. decide where the server's data directory is (Debian cluster: version+name and
   pg_ctlcluster; otherwise a data directory + port and pg_ctl) and that it is stopped;
4. move an existing data directory aside to ``<datadir>.pre-pitr-<UTC time>`` (never
   deleted), extract the backup (a chain of incremental backups: combine it with
   pg_combinebackup, ``base_backup_restore``), check it with pg_verifybackup;
5. write restore_command (the installed ``todoapi-pgbackup-wal restore-wal``), the target
   and ``recovery_target_action = 'promote'`` into postgresql.auto.conf, create
   recovery.signal (without it PostgreSQL does crash recovery only and ignores every
   recovery setting: the seed's mistake);
6. start the server, wait until it left recovery (promoted), report timeline and the last
   replayed transaction, and reset the recovery target settings.

This module runs those steps (``plan``, ``recover``) and is the entry point callers import; the
parts live in files of their own: ``pitr_request`` (the inputs), ``pitr_checks`` (steps 1-2 and
the target), ``pitr_wal_scan`` (what pg_waldump finds in the archive), ``pitr_config`` (step 5)
and ``pitr_server`` (steps 3 and 6: the server, its start and the wait for promotion).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ..core import fsutil
from ..core import manifest as manifests
from .base_backup_restore import backup_major, restore_into
from ..core.errors import PgBackupError
from ..core.pgtools import find_tool, program_major
from .pitr_checks import backups_for_target, check_target_in_archive, check_wal, choose_backup, locate_target
from .pitr_config import ensure_plain_config, recovery_settings, reset_recovery_targets, restore_command_for, \
    write_recovery_config
from .pitr_request import DEFAULT_WAL_COMMAND, PitrRequest
from .pitr_server import TargetServer, wait_for_promotion

# What callers use from here (the pitr_recovery module and the tests).
__all__ = ["DEFAULT_WAL_COMMAND", "PitrRequest", "plan", "public_plan", "recover"]


def _owner_ids(owner):
    return fsutil.resolve_owner(owner)


def _chown_tree(path, ids):
    if not ids:
        return
    for root, dirs, files in os.walk(path):
        os.lchown(root, ids[0], ids[1])
        for name in dirs + files:
            os.lchown(os.path.join(root, name), ids[0], ids[1])


def _target_major(request):
    """Major version of the server to recover into, when the request says it (None: the backup's)."""
    if request.mode == "debian":
        return int(request.cluster_version.split(".")[0]), "Debian cluster %s/%s" % (
            request.cluster_version, request.cluster_name)
    if request.pg_bin_dir:
        return program_major(os.path.join(request.pg_bin_dir, "pg_ctl")), "pg_ctl in %s" % request.pg_bin_dir
    return None, None


def plan(request):
    """Everything decided and checked before the target host is touched (check mode stops here)."""
    repo = request.repository
    target_major, target = _target_major(request)
    backups = backups_for_target(repo.list(kind="physical"), target_major, target)
    if request.wal_download is not None:  # a remote archive: its WAL downloaded into a local directory, verified
        request.archive_dir = request.wal_download.fetch(backups)
    for stream in request.stream_downloads:  # a remote pg_receivewal directory: downloaded, verified, searched last
        directory = stream.fetch(backups)
        if directory not in request.stream_dirs:
            request.stream_dirs.append(directory)
    major = backup_major(backups[-1]) if backups else (target_major or 15)
    waldump = find_tool("pg_waldump", major, request.pg_bin_dir)[0]
    name_lsn = locate_target(request, backups, waldump)
    chain, skipped = choose_backup(request, backups, name_lsn, target_major, target)
    manifest = chain[-1]
    report = check_wal(request, manifest)
    archive_info = check_target_in_archive(request, manifest, report, waldump)
    bin_dir = request.pg_bin_dir or os.path.dirname(find_tool("pg_ctl", backup_major(manifest), None)[0])
    server = TargetServer(request, bin_dir)
    return {
        "backup": manifest, "chain": chain, "skipped_backups": skipped, "wal": report, "archive": archive_info,
        "target": {"kind": request.kind, "value": request.target_value if request.kind != "time"
                   else manifests.isoformat(request.target_value), "inclusive": request.target_inclusive,
                   "restore_point_lsn": name_lsn},
        "server": server, "data_dir": server.data_dir, "port": server.port,
        "restore_command": restore_command_for(request),
        "wal_download": request.wal_download.describe() if request.wal_download is not None else None,
        "stream_downloads": [stream.describe() for stream in request.stream_downloads],
    }


def public_plan(details):
    result = dict(details)
    server = result.pop("server")
    result["backup_id"] = result.pop("backup")["id"]
    result["chain"] = [member["id"] for member in result["chain"]]
    result["server_running"] = server.is_running()
    result["data_dir_exists"] = os.path.isdir(details["data_dir"]) and bool(os.listdir(details["data_dir"]))
    return result


def recover(request):
    details = plan(request)
    server = details["server"]
    manifest = details["backup"]
    if server.is_running():
        if not request.stop_server:
            raise PgBackupError("The %s is running." % server.describe(),
                                hint="Stop it first, or set stop_server: true (its data directory is then moved aside, "
                                     "not deleted).")
        server.stop()
    ids = _owner_ids(request.owner)
    data_dir = server.data_dir
    stamp = manifests.utcnow().strftime("%Y%m%dT%H%M%SZ")
    moved_to = None
    started = False
    try:
        if os.path.exists(data_dir) and (not os.path.isdir(data_dir) or os.listdir(data_dir)):
            moved_to = "%s.pre-pitr-%s" % (data_dir.rstrip("/"), stamp)
            os.rename(data_dir, moved_to)
        if not os.path.isdir(data_dir):
            os.makedirs(data_dir, fsutil.DIR_MODE)
        os.chmod(data_dir, fsutil.DIR_MODE)
        restored = restore_into(request.repository, details["chain"], data_dir, server.bin_dir)
        for leftover in ("postmaster.pid", "postmaster.opts", "standby.signal"):
            fsutil.remove_quietly(os.path.join(data_dir, leftover))
        if request.mode == "plain":
            ensure_plain_config(data_dir, server.port)
        write_recovery_config(data_dir, recovery_settings(request, server))
        _chown_tree(data_dir, ids)
        fsutil.sync_filesystem(data_dir)  # one syncfs, not an fsync per file (fsync_tree where there is none)
        log_offset = server.log_size()
        started = True
        server.start()
        result = wait_for_promotion(request, server, log_offset)
    except BaseException as exc:
        if not started:
            _roll_back(data_dir, moved_to, stamp)
            if isinstance(exc, PgBackupError) and moved_to:
                exc.hint = (exc.hint or "") + " The previous data directory was put back in place."
        elif isinstance(exc, PgBackupError) and moved_to:
            exc.hint = (exc.hint or "") + " The previous data directory is kept at %s." % moved_to
        if isinstance(exc, OSError):
            raise fsutil.describe_os_error(exc, data_dir)
        raise
    reset_recovery_targets(server)
    result.update({"backup_id": manifest["id"], "chain": restored["chain"], "restored_by": restored["method"],
                   "backup_end_lsn": manifest["end_lsn"], "data_dir": data_dir,
                   "previous_data_dir": moved_to, "port": server.port, "wal": details["wal"],
                   "archive": details["archive"], "target": details["target"],
                   "skipped_backups": details["skipped_backups"], "restore_command": details["restore_command"],
                   "wal_download": details["wal_download"], "stream_downloads": details["stream_downloads"]})
    return result


def _roll_back(data_dir, moved_to, stamp):
    if not moved_to:
        return
    try:
        if os.path.exists(data_dir):
            os.rename(data_dir, "%s.failed-pitr-%s" % (data_dir.rstrip("/"), stamp))
        os.rename(moved_to, data_dir)
    except OSError:
        pass
