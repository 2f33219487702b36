# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WAL archive's commands: PostgreSQL's archive_command and restore_command, one WAL file at a
time. How the archive stores files is in ``wal_archive_layout``; range checks and pruning are in
``wal_archive_contents``.

Contract with PostgreSQL (see docs/pitr.md):

* ``archive_segment`` returns only when the segment is durably in the archive (temp file,
  fsync, link/rename, fsync of the directory). A segment that is already archived with the
  same content is success (PostgreSQL re-archives after a crash); different content is a
  failure and is never overwritten. Any doubt is a failure: PostgreSQL keeps the segment in
  pg_wal and retries.
* ``restore_segment`` raises ``WalSegmentMissing`` (CLI exit 1, quiet) only when the archive
  is readable and simply has no such file; PostgreSQL probes for files that do not exist.
  A damaged file, an unreadable or missing archive directory, or a wrong key raises
  ``WalArchiveError`` (CLI exit 255): an exit status above 125 makes PostgreSQL abort
  recovery instead of taking the failure for "end of archive" and promoting early, which
  would silently lose every transaction after that point.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os

from ..core import fsutil
from ..core.errors import PgBackupError
from .wal_archive_contents import prune_wal, wal_range_present
from .wal_archive_layout import CHECKSUM_SUFFIX, TMP_PREFIX, WalArchiveError, check_wal_name, existing_files
from .wal_archive_layout import require_archive_dir
from .wal_codec import COMPRESSION_CHOICES, check_compression, decode_to, decoded_sha256, encode_to, read_checksum_sidecar
from .wal_codec import suffix_for
from .wal_names import SEGMENT, is_valid_segment_size

# What callers use from here (runner/wal.py, ops/dr.py, PITR and the tests); prune_wal and
# wal_range_present live in wal_archive_contents, SEGMENT in wal_names.
__all__ = ["COMPRESSION_CHOICES", "SEGMENT", "TMP_PREFIX", "WalArchiveError", "WalSegmentMissing", "archive_segment",
           "check_wal_name", "find_in_stream_dirs", "prune_wal", "restore_segment", "wal_range_present"]


class WalSegmentMissing(PgBackupError):
    """The archive is readable and does not hold the requested file."""


# -- archive ---------------------------------------------------------------------------------

def check_source_size(wal_path, wal_name):
    """The size of the WAL file PostgreSQL asks to archive; refuses bad names and truncated segments."""
    check_wal_name(wal_name)
    try:
        size = os.path.getsize(wal_path)
    except OSError as exc:
        raise WalArchiveError("Cannot read WAL file '%s': %s." % (wal_path, exc.strerror))
    if SEGMENT.match(wal_name) and not is_valid_segment_size(size):
        raise WalArchiveError("WAL segment '%s' has an impossible size of %d bytes." % (wal_path, size),
                              hint="Refusing to archive a truncated segment; check the disk holding pg_wal.")
    return size


def archive_segment(wal_path, wal_name, archive_dir, compress=None, recipients=None, level=3):
    """Copy one WAL file into the archive durably (archive_command). Returns what happened.

    ``compress``: None/'none' or 'zstd'; ``recipients``: age public keys (encrypts).
    """
    check_wal_name(wal_name)
    compress = check_compression(compress)
    recipients = [r for r in (recipients or []) if r]
    check_writable_archive_dir(archive_dir)
    size = check_source_size(wal_path, wal_name)
    # The segment's sha256 only where it is needed (a comparison, the sidecar of an encrypted file): hashing
    # 16 MB is a good part of the work, and a zstd copy is checked against the segment's bytes anyway.
    source_sha = fsutil.sha256_file(wal_path) if recipients else None

    existing = existing_files(archive_dir, wal_name)
    if existing:
        return _already_archived(existing, source_sha or fsutil.sha256_file(wal_path), size, wal_name)

    suffix = suffix_for(compress, recipients)
    final = os.path.join(archive_dir, wal_name + suffix)
    temp = os.path.join(archive_dir, "%s%s%s.%d" % (TMP_PREFIX, wal_name, suffix, os.getpid()))
    temp_sidecar = temp + CHECKSUM_SUFFIX
    try:
        if not encode_to(wal_path, temp, final, compress, level, recipients, size)[0]:
            _copy_file(wal_path, temp)
            fsutil.fsync_path(temp)
        if recipients:
            _write_small_file(temp_sidecar, source_sha + "  " + wal_name + "\n")
            _publish(temp_sidecar, final + CHECKSUM_SUFFIX, replace=True)
        if not _publish(temp, final, replace=False):
            fsutil.remove_quietly(temp)
            return _already_archived(existing_files(archive_dir, wal_name), source_sha or fsutil.sha256_file(wal_path),
                                     size, wal_name)
        fsutil.fsync_path(archive_dir)
    except OSError as exc:
        raise WalArchiveError("Cannot write WAL file '%s' to the archive: %s." % (wal_name, exc.strerror or exc),
                              hint="Check free space and permissions of '%s'; PostgreSQL keeps the segment and "
                                   "retries." % archive_dir)
    except PgBackupError as exc:
        raise as_archive_error(exc, wal_name)
    finally:
        for path in (temp, temp_sidecar):
            try:
                fsutil.remove_quietly(path)
            except OSError:
                pass
    return {"status": "archived", "path": final, "size": size, "sha256": source_sha}


def check_writable_archive_dir(archive_dir):
    require_archive_dir(archive_dir)
    if not os.access(archive_dir, os.W_OK):
        raise WalArchiveError("WAL archive directory '%s' is not writable by this user." % archive_dir,
                              hint="It must belong to the user PostgreSQL runs as (postgres).")


def as_archive_error(exc, wal_name):
    """A WalArchiveError for any PgBackupError raised while archiving ``wal_name``."""
    if isinstance(exc, WalArchiveError):
        return exc
    return WalArchiveError("Archiving '%s' failed: %s" % (wal_name, exc.message), hint=exc.hint)


def refuse_different(wal_name, stored):
    return WalArchiveError("WAL file '%s' is already archived as '%s' with different content; refusing to "
                           "overwrite it." % (wal_name, stored),
                           hint="Two clusters may be archiving into the same archive, or the archive was "
                                "restored from elsewhere. Investigate before moving or deleting anything.")


def _already_archived(existing, source_sha, size, wal_name):
    for path in existing:
        stored_sha, stored_size = decoded_sha256(path)
        if stored_sha != source_sha or (stored_size is not None and stored_size != size):
            raise refuse_different(wal_name, path)
    # Same content: maybe an earlier attempt crashed before its fsyncs. Make it durable now.
    for path in existing:
        fsutil.fsync_path(path)
    fsutil.fsync_path(os.path.dirname(existing[0]))
    return {"status": "already_archived", "path": existing[0], "size": size, "sha256": source_sha}


def _copy_file(source, destination):
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, fsutil.FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        for chunk in fsutil.file_chunks(source):
            out.write(chunk)


def _write_small_file(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, fsutil.FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _publish(temp, final, replace):
    """Move ``temp`` to ``final``. Without ``replace`` an existing ``final`` is never overwritten:
    returns False when it appeared meanwhile (another archiver won the race)."""
    if replace:
        os.rename(temp, final)
        return True
    try:
        os.link(temp, final)  # fails with EEXIST instead of silently replacing
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.exists(final):  # file system without hard links: check, then rename
            return False
        os.rename(temp, final)
        return True
    os.unlink(temp)
    return True


# -- restore ---------------------------------------------------------------------------------

def find_in_stream_dirs(wal_name, stream_dirs):
    """A file pg_receivewal wrote: the complete segment, else its ``.partial`` (the newest WAL
    when the primary is gone; PostgreSQL must get it under the complete name)."""
    for directory in stream_dirs or []:
        if not os.path.isdir(directory):
            raise WalArchiveError("WAL stream directory '%s' does not exist." % directory,
                                  hint="Check the mount, or leave the stream directory out.")
        for candidate in (wal_name, wal_name + ".partial" if SEGMENT.match(wal_name) else None):
            if candidate and os.path.isfile(os.path.join(directory, candidate)):
                return os.path.join(directory, candidate)
    return None


def restore_segment(wal_name, target_path, archive_dir, identity_file=None, stream_dirs=None):
    """Copy one WAL file from the archive (then from pg_receivewal's ``stream_dirs``) to
    ``target_path`` (restore_command)."""
    check_wal_name(wal_name)
    require_archive_dir(archive_dir)
    found = existing_files(archive_dir, wal_name)
    if not found:
        streamed = find_in_stream_dirs(wal_name, stream_dirs)
        if not streamed:
            raise WalSegmentMissing("WAL file '%s' is not in the archive." % wal_name)
        found = [streamed]
    source = found[0]
    expected = None
    if source.endswith(".age") and os.path.exists(source + CHECKSUM_SUFFIX):
        expected = read_checksum_sidecar(source)
    return install_wal_file(source, wal_name, target_path, identity_file, expected)


def install_wal_file(source, wal_name, target_path, identity_file=None, expected_sha256=None, stored_name=None):
    """Decode the local file ``source`` (stored as ``stored_name``, default ``source``) to ``target_path``:
    through a temp file beside it, renamed into place only once its size is possible and its sha256
    is ``expected_sha256`` (when known). PostgreSQL never sees a partial or damaged file there."""
    stored_name = stored_name or source
    temp = "%s.todoapi-restore-%d" % (target_path, os.getpid())
    try:
        digest, size = decode_to(source, temp, identity_file, stored_name)
        if SEGMENT.match(wal_name) and not is_valid_segment_size(size):
            raise WalArchiveError("Archived WAL segment '%s' is truncated (%d bytes)." % (stored_name, size),
                                  hint="The archive is damaged; recovery cannot continue past this segment.")
        if expected_sha256 and expected_sha256 != digest:
            raise WalArchiveError("Archived WAL file '%s' does not match its checksum." % stored_name,
                                  hint="The archive is damaged; recovery cannot continue past this segment.")
        os.rename(temp, target_path)
    except OSError as exc:
        raise WalArchiveError("Cannot restore WAL file '%s' to '%s': %s." % (wal_name, target_path, exc.strerror or exc))
    finally:
        try:
            fsutil.remove_quietly(temp)
        except OSError:
            pass
    return {"status": "restored", "source": stored_name, "size": size, "sha256": digest}
