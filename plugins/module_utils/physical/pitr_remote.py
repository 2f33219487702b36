# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point-in-time recovery from a remote WAL archive (``s3://``, ``azure://``, ``sftp://``).

Before anything is checked, the WAL the recovery can need is downloaded into a private local
directory (``WalDownload``): every timeline history file, and every segment, of any timeline, from
the start of the oldest base backup that can be restored into the target server on. Each file goes
through ``wal_remote.restore_segment``: streamed to a temporary name, decoded, its sha256 compared
with the one stored with it, and only then renamed into place, so the directory holds only complete,
verified WAL as PostgreSQL wrote it. From there on the recovery is the one of a directory archive:
the same hole and target checks (pg_waldump reads the same files) and a ``restore_command`` that
reads the directory (``todoapi-pgbackup-wal restore-wal --archive-dir``), which needs neither the
storage's credentials nor its client library in the server's environment and is not slowed down or
stopped by the network while PostgreSQL replays. The directory (owned by the server's OS user, mode
0700) is removed when the recovery is over, whatever happened.

A ``pg_receivewal`` directory on another host (``stream_dirs`` given as a URL, typically ``sftp://`` to the backup
host) is downloaded the same way by ``StreamDownload``: its segments from the oldest base backup's start on and its
newest ``.partial`` (the WAL received last, all a synchronous stream had when the primary was lost), each checked
to be a whole segment and renamed into place only once complete; the recovery searches it after the archive.

The cost is local disk for that WAL (what retention keeps for the oldest kept base backup) and its
download before the server starts.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import shutil
import tempfile

from ..core import fsutil
from ..core.errors import PgBackupError
from .pitr_wal_scan import segment_size_of
from .wal_archive import WalSegmentMissing
from .wal_archive_layout import strip_encoding
from .wal_names import DEFAULT_SEGMENT_SIZE, SEGMENT, parse_segment
from .wal_remote import restore_segment
from ..storage.working_copy import private_directory

TEMP_PREFIX = "pgbackup-wal-"
HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")


def wanted_names(entries, backups):
    """The WAL files among a remote archive's ``entries`` that a recovery from ``backups`` may read:
    history files, and segments from the oldest backup's start on."""
    if backups:
        oldest = min(backups, key=lambda m: parse_segment(m["wal_start_segment"], segment_size_of(m))[1])
        size, first = segment_size_of(oldest), parse_segment(oldest["wal_start_segment"], segment_size_of(oldest))[1]
    else:
        size, first = None, None
    names = set()
    for entry in entries:
        name = strip_encoding(entry)
        if name is None:
            continue
        if HISTORY.match(name) or (first is not None and SEGMENT.match(name) and parse_segment(name, size)[1] >= first):
            names.add(name)
    return sorted(names)


def refuse_unreachable(directory, owner, ids):
    """Raise unless OS user ``owner`` (``ids``: uid, gid) may enter every directory above ``directory``: the
    recovering server's restore_command reads the WAL there (checked by mode bits, before anything changes)."""
    parent = os.path.dirname(os.path.abspath(directory))
    while True:
        info = os.stat(parent)
        bit = 0o100 if info.st_uid == ids[0] else 0o010 if info.st_gid == ids[1] else 0o001
        if not info.st_mode & bit and ids[0] != 0:
            raise PgBackupError("OS user '%s', which PostgreSQL runs as, cannot enter '%s' (mode %04o), so the "
                                "recovering server could not read the WAL downloaded below it." % (
                                    owner, parent, info.st_mode & 0o7777),
                                hint="Set work_dir to a directory it can reach (for example /var/tmp, or a directory "
                                     "of its own). Nothing was changed.")
        if os.path.dirname(parent) == parent:
            return
        parent = os.path.dirname(parent)


class _Download(object):
    """A remote location made a private local directory (owned by the server's OS user ``owner``, mode 0700) the
    recovery reads; subclasses say what to download (``_download_all``) and what it is (``what``, ``hint``)."""

    prefix = TEMP_PREFIX
    what = "the WAL archive"
    room = "with room for the WAL since the oldest base backup"
    hint = "check the connection to the storage and its credentials, then retry."

    def __init__(self, url, work_dir=None, owner=None):
        self.url = url
        self.work_dir = work_dir
        self.owner = owner
        self.directory = None
        self.files = None

    def fetch(self, backups):
        """The local directory holding the WAL a recovery from ``backups`` can need (downloaded once)."""
        if self.directory is not None:
            return self.directory
        ids = fsutil.resolve_owner(self.owner)
        self.directory = private_directory(self.prefix, self.work_dir, "a directory for %s '%s'" % (self.what, self.url),
                                           self.room)
        try:
            if ids:
                refuse_unreachable(self.directory, self.owner, ids)
            fetched = self._download_all(backups)
            if ids:
                for path in [self.directory] + [os.path.join(self.directory, n) for n in fetched]:
                    os.chown(path, ids[0], ids[1])
        except PgBackupError as exc:
            self.close()
            raise PgBackupError("Download of %s '%s' failed: %s" % (self.what, self.url, exc.message),
                                hint="Nothing of it is used and nothing was changed on this host; %s %s" % (
                                    self.hint, exc.hint or ""))
        except OSError as exc:
            self.close()
            raise fsutil.describe_os_error(exc, self.work_dir or tempfile.gettempdir())
        self.files = fetched
        return self.directory

    def describe(self):
        return {"url": self.url, "files": len(self.files or []), "directory": self.directory}

    def close(self):
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


class WalDownload(_Download):
    """The remote WAL archive ``archive`` (a ``wal_remote.RemoteWalArchive``), made a local directory."""

    hint = ("check the connection to the storage and its credentials (and identity_file for an encrypted archive), "
            "then retry.")

    def __init__(self, archive, work_dir=None, owner=None, identity_file=None):
        super(WalDownload, self).__init__(archive.url, work_dir, owner)
        self.archive = archive
        self.identity_file = identity_file

    def _download_all(self, backups):
        fetched = []
        for name in wanted_names(self.archive.entries(), backups):
            try:
                restore_segment(name, os.path.join(self.directory, name), self.archive, identity_file=self.identity_file)
            except WalSegmentMissing:  # removed since the listing (retention): the hole check reports it
                continue
            fetched.append(name)
        return fetched


STREAM_PREFIX = "pgbackup-stream-"


def stream_names(names, backups):
    """The files of a remote pg_receivewal directory (``names``) a recovery from ``backups`` may read: history
    files, complete segments from the oldest backup's start on, and the newest ``.partial`` (the WAL the stream
    had received when the primary was lost) unless its complete segment is there too."""
    size = segment_size_of(backups[0]) if backups else DEFAULT_SEGMENT_SIZE
    first = min(parse_segment(m["wal_start_segment"], size)[1] for m in backups) if backups else 0
    plain = set(names)
    wanted = [n for n in plain if HISTORY.match(n) or (SEGMENT.match(n) and parse_segment(n, size)[1] >= first)]
    partials = sorted(n for n in plain if n.endswith(".partial") and SEGMENT.match(n[:-len(".partial")])
                      and parse_segment(n[:-len(".partial")], size)[1] >= first and n[:-len(".partial")] not in plain)
    return sorted(wanted) + partials[-1:], size


class StreamDownload(_Download):
    """A pg_receivewal directory on another host (``repository``: the storage at its URL, e.g. ``sftp://``), made
    a local directory the recovery searches after the archive (``stream_dirs``): the segments and the newest
    ``.partial``, each downloaded to a temporary name and renamed into place only once it has the listed size,
    which must be the segment size (pg_receivewal pads its ``.partial`` to it), so a half download is never used.
    Owned by the server's OS user, mode 0700, removed when the recovery is over."""

    prefix = STREAM_PREFIX
    what = "the WAL stream"
    room = "with room for the streamed WAL since the oldest base backup"
    hint = "check the connection to the backup host and the sftp_* options (dr_storage), then retry."

    def __init__(self, repository, work_dir=None, owner=None):
        super(StreamDownload, self).__init__(repository.url, work_dir, owner)
        self.repository = repository

    def _download_all(self, backups):
        self.repository.check_access()
        names, size = stream_names(self.repository.names(), backups)
        sizes = self.repository.existing(names)
        return [self._download(name, sizes[name], size) for name in names if name in sizes]

    def _download(self, name, listed, segment_size):
        """One file, through a temporary name; a segment whose size is not the segment size is refused."""
        is_segment = not HISTORY.match(name)
        if is_segment and listed != segment_size:
            raise PgBackupError("'%s' is %d bytes, not a WAL segment of %d bytes." % (
                self.repository.url_of(name), listed, segment_size),
                hint="A compressed or damaged pg_receivewal file: stream without compression, or leave the stream out.")
        temp = os.path.join(self.directory, ".download-" + name)
        self.repository.fetch(name, temp)
        got = os.path.getsize(temp)
        if got != listed:
            os.unlink(temp)
            raise PgBackupError("'%s' was downloaded with %d bytes instead of %d." % (self.repository.url_of(name), got, listed),
                                hint="The file changed or the connection broke during the download.")
        os.rename(temp, os.path.join(self.directory, name))
        return name

    def describe(self):
        partial = [name for name in self.files or [] if name.endswith(".partial")]
        return dict(super(StreamDownload, self).describe(), partial=partial[0] if partial else None)
