# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading ``base.tar`` while pg_basebackup writes it, so that the check of a new backup needs no second read.

With server-side compression (the default) or none, pg_basebackup writes each archive the server sends to its
file from the first byte to the last and never goes back (its plain writer only appends). ``follow_base_tar``
reads that file as it grows, through the decompressor and ``backup_manifest.TarReader``, and records each
member: its path, kind, size and its checksum computed with the algorithm the backup asked pg_basebackup for,
plus the sha256 of the file's bytes. backup_manifest does not exist yet (pg_basebackup writes it last), so
nothing is compared here: ``base_backup_verify.verify_tar_backup`` replays the records into the same
``ManifestCheck`` as the members of a tar it reads itself, once the manifest is there.

The records are used only when they provably cover the complete file: the reader followed the file until
pg_basebackup had exited and then read it to its end, and the file is still the one that was read (same inode)
with exactly the bytes read. Anything else (a damaged stream, a decompressor that failed, a data file under
``pg_wal/``, a backup_manifest whose algorithm differs, pg_basebackup retried or failing) leaves
``EarlyRead.usable`` false and the check reads ``base.tar`` again after the backup, as without this module: the
early read can save the second read, never pass a backup that the normal check would fail.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import time

from . import backup_manifest
from .base_backup_tar import BASE_TAR, TarStream
from ..core.errors import PgBackupError
from ..core.fsutil import CHUNK_SIZE

POLL_SECONDS = 0.05


def growing_chunks(path, writer_running, state, poll=POLL_SECONDS):
    """The bytes of a file another process appends to, as they come, until ``writer_running()`` is false; then the
    rest, to the end. ``state`` gets ``read`` (bytes), ``inode`` and ``complete`` (True once the end was read after
    the writer had exited)."""
    with open(path, "rb") as handle:
        state["inode"] = os.fstat(handle.fileno()).st_ino
        state["read"] = 0
        finishing = False
        while True:
            chunk = handle.read(CHUNK_SIZE)
            if chunk:
                state["read"] += len(chunk)
                yield chunk
            elif finishing:
                state["complete"] = True
                return
            elif writer_running():
                time.sleep(poll)
            else:
                finishing = True  # exited: what it wrote is all there, read on to the end


class EarlyRead(object):
    """What ``follow_base_tar`` learnt about one base.tar: ``members`` [(name, path, kind, size, digest)],
    ``backup_label``, ``sha256``; ``usable`` says whether the check may rely on it (see the module's text)."""

    def __init__(self, directory, name, algorithm):
        self.directory = directory
        self.name = name
        self.algorithm = algorithm
        self.members = []
        self.backup_label = None
        self.sha256 = None
        self.state = {}
        self.failure = None

    @property
    def path(self):
        return os.path.join(self.directory, self.name)

    @property
    def usable(self):
        if self.failure or self.sha256 is None or not self.state.get("complete"):
            return False
        try:
            status = os.stat(self.path)
        except OSError:
            return False
        return status.st_ino == self.state.get("inode") and status.st_size == self.state.get("read")

    def matches(self, manifest):
        """Whether every file backup_manifest lists was checksummed here with its algorithm."""
        return all(entry.algorithm in (self.algorithm, "NONE") for entry in manifest.files.values())

    def replay(self, check, source):
        """Feed the recorded members to ``check`` (a ManifestCheck), as ``_check_tar`` feeds a tar it reads."""
        for name, path, kind, size, digest in self.members:
            if path is None:
                check.problem(source, "'%s' has a path outside the data directory" % name)
                continue
            file_check = check.member(source, path, kind, size)
            if file_check is not None:
                file_check.done(digest)


def _wait_for_base_tar(directory, writer_running, poll=POLL_SECONDS):
    """The name of base.tar[.*] once pg_basebackup has created it; None when it exited without."""
    while True:
        names = [name for name in os.listdir(directory) if BASE_TAR.match(name)]
        if len(names) == 1:
            return names[0]
        if not writer_running():
            return None
        time.sleep(poll)


def follow_base_tar(directory, writer_running, algorithm):
    """Read base.tar in ``directory`` while pg_basebackup (``writer_running()`` true while it runs) writes it;
    returns an EarlyRead (None when pg_basebackup exited without writing one). Never raises for what it reads:
    a problem only makes the EarlyRead unusable."""
    name = _wait_for_base_tar(directory, writer_running)
    if name is None:
        return None
    early = EarlyRead(directory, name, algorithm)
    digests = {}
    stream = None
    try:
        chunks = _hashed(growing_chunks(early.path, writer_running, early.state), digests)
        stream = TarStream(early.path, chunks=chunks)
        _record_members(early, backup_manifest.TarReader(stream.chunks, name))
        stream.finish()
        early.sha256 = digests.get("sha256")
    except (PgBackupError, OSError, ValueError) as exc:
        early.failure = str(getattr(exc, "message", exc))
    finally:
        if stream is not None:
            stream.abort()
    return early


def _hashed(chunks, digests):
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    digests["sha256"] = digest.hexdigest()


class _Unusable(PgBackupError):
    pass


def _record_members(early, reader):
    for info, path, kind in _all_members(reader):
        digest = None
        if path is not None and kind == "file":
            if path.startswith("pg_wal/"):
                raise _Unusable("'%s': WAL inside base.tar (wal_method fetch) is collected by the check" % path)
            hasher = backup_manifest.new_checksum(early.algorithm)
            label = [] if path == "backup_label" else None
            for piece in reader.data():
                if hasher is not None:
                    hasher.update(piece)
                if label is not None:
                    label.append(piece.tobytes())
            digest = hasher.hexdigest() if hasher is not None else None
            if label is not None:
                early.backup_label = b"".join(label).decode("utf-8", "replace")
        early.members.append((info.name, path, kind, info.size, digest))


def _all_members(reader):
    """Every member as (TarInfo, path or None when outside the data directory, kind); '' paths are left out."""
    for info in reader:
        path = backup_manifest.member_path(info.name, "")
        if path is None:
            yield info, None, None
        elif path:
            yield info, path, backup_manifest.member_kind(info)
