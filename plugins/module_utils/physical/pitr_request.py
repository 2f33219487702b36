# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inputs of a point-in-time recovery, checked before anything is read: one target (latest,
immediate, a time, an xid, an LSN or a restore point name), the WAL archive, and the server to
recover into (a Debian cluster, or a data directory and port).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ..core import manifest as manifests
from ..core.errors import PgBackupError
from .pitr_config import checked_server_settings
from .wal_names import parse_lsn

TARGET_KINDS = ("latest", "immediate", "time", "xid", "lsn", "name")
DEFAULT_WAL_COMMAND = "/usr/local/bin/todoapi-pgbackup-wal"


class PitrRequest(object):
    """Validated inputs of a point-in-time recovery."""

    def __init__(self, repository, archive_dir, target="latest", target_time=None, target_xid=None, target_lsn=None,
                 target_name=None, target_inclusive=True, backup=None, cluster_version=None, cluster_name=None,
                 data_dir=None, port=None, owner="postgres", wal_command=DEFAULT_WAL_COMMAND, restore_command=None,
                 identity_file=None, stream_dirs=None, stop_server=False, archive_after_recovery=False,
                 timeout=3600, pg_bin_dir=None, wal_download=None, stream_downloads=None, server_settings=None):
        candidates = (("time", target_time), ("xid", target_xid), ("lsn", target_lsn), ("name", target_name))
        given = [(kind, value) for kind, value in candidates if value not in (None, "")]
        if len(given) > 1:
            raise PgBackupError("Give only one recovery target (got %s)." % ", ".join("target_" + pair[0] for pair in given),
                                hint="PostgreSQL stops at one target: a time, an xid, an LSN or a restore point name.")
        if given and target not in (None, "", "latest"):
            raise PgBackupError("target '%s' cannot be combined with target_%s." % (target, given[0][0]))
        if given:
            self.kind, value = given[0]
        else:
            self.kind, value = (target or "latest"), None
            if self.kind not in ("latest", "immediate"):
                raise PgBackupError("Unknown target '%s'." % target, hint="Use latest or immediate, or a target_* option.")
        self.target_value = self._parse_target(self.kind, value)
        self.target_inclusive = bool(target_inclusive)
        if not archive_dir:
            raise PgBackupError("No WAL archive directory given.", hint="Set 'archive_dir' to the WAL archive.")
        self.repository = repository
        # a URL (s3://, azure://, sftp://) is read through ``wal_download`` (pitr_remote.WalDownload), which
        # replaces archive_dir with the local directory it downloads the WAL into (pitr.plan)
        self.archive_location = archive_dir if "://" in str(archive_dir) else os.path.abspath(archive_dir)
        self.archive_dir = self.archive_location
        self.wal_download = wal_download
        if "://" in self.archive_location and wal_download is None:
            raise PgBackupError("The WAL archive '%s' is a URL, which is read through a download." % archive_dir,
                                hint="Pass a pitr_remote.WalDownload of it (module pitr_recovery does).")
        self.stream_dirs = [os.path.abspath(d) for d in (stream_dirs or []) if d]
        # pg_receivewal directories on another host (pitr_remote.StreamDownload): pitr.plan downloads them and
        # adds their local directories to stream_dirs
        self.stream_downloads = list(stream_downloads or [])
        self.backup = backup if backup not in (None, "", "auto") else None
        if cluster_name and data_dir:
            raise PgBackupError("Give either cluster_version+cluster_name (Debian cluster) or data_dir+port, not both.")
        if cluster_name:
            self.mode = "debian"
            if not cluster_version:
                raise PgBackupError("cluster_name needs cluster_version (e.g. 15).")
        elif data_dir:
            self.mode = "plain"
            if not port:
                raise PgBackupError("data_dir needs 'port' for the recovered server.")
        else:
            raise PgBackupError("No target server given.",
                                hint="Set cluster_version+cluster_name (Debian) or data_dir+port.")
        self.cluster_version = str(cluster_version) if cluster_version else None
        self.cluster_name = cluster_name
        self.data_dir = os.path.abspath(data_dir) if data_dir else None
        self.port = int(port) if port else None
        self.owner = owner or "postgres"
        self.wal_command = wal_command or DEFAULT_WAL_COMMAND
        self.restore_command = restore_command
        self.identity_file = identity_file
        self.stop_server = bool(stop_server)
        self.archive_after_recovery = bool(archive_after_recovery)
        self.timeout = int(timeout or 3600)
        self.pg_bin_dir = pg_bin_dir
        self.server_settings = checked_server_settings(server_settings)

    @staticmethod
    def _parse_target(kind, value):
        if kind == "time":
            return manifests.parse_time(value)
        if kind == "xid":
            try:
                number = int(str(value))
            except ValueError:
                raise PgBackupError("target_xid '%s' is not a transaction id." % value, hint="Give a number like 7421.")
            if number < 3:
                raise PgBackupError("target_xid %d is not a normal transaction id." % number)
            return number
        if kind == "lsn":
            parse_lsn(value)
            return str(value).upper()
        if kind == "name":
            if len(str(value)) > 63:
                raise PgBackupError("Restore point names are at most 63 bytes long.")
            return str(value)
        return None

    def describe_target(self):
        if self.kind == "time":
            return "time %s" % manifests.isoformat(self.target_value)
        if self.kind in ("xid", "lsn", "name"):
            return "%s %s" % (self.kind, self.target_value)
        return self.kind
