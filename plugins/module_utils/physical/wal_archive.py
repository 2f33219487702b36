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
import re

from ..core import fsutil
from ..core.errors import PgBackupError
from ..core.pipeline import Pipeline, Stage, require_tool
from .wal_archive_contents import prune_wal, wal_range_present
from .wal_archive_layout import CHECKSUM_SUFFIX, TMP_PREFIX, WalArchiveError, existing_files, require_archive_dir
from .wal_names import SEGMENT, is_valid_segment_size

# What callers use from here (runner/wal.py, ops/dr.py, PITR and the tests); prune_wal and
# wal_range_present live in wal_archive_contents, SEGMENT in wal_names.
__all__ = ["COMPRESSION_CHOICES", "SEGMENT", "TMP_PREFIX", "WalArchiveError", "WalSegmentMissing", "archive_segment",
           "check_wal_name", "find_in_stream_dirs", "prune_wal", "restore_segment", "wal_range_present"]

WAL_NAME = re.compile(r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")
COMPRESSION_CHOICES = ("none", "zstd")


class WalSegmentMissing(PgBackupError):
    """The archive is readable and does not hold the requested file."""


# -- names ---------------------------------------------------------------------------------------

def check_wal_name(name):
    if not name or not WAL_NAME.match(name):
        raise WalArchiveError("'%s' is not a WAL file name." % name,
                              hint="PostgreSQL passes names like 000000010000000000000002 or 00000002.history (%f).")
    return name


# -- stages --------------------------------------------------------------------------------------

def _zstd(*args):
    return Stage([require_tool("zstd", "the zstd package"), "-q"] + list(args), name="zstd")


def _encode_stages(compress, level, recipients):
    stages = []
    if compress == "zstd":
        stages.append(_zstd("-%d" % level, "--check", "-c"))
    if recipients:
        argv = [require_tool("age", "the age package")]
        for recipient in recipients:
            argv += ["-r", recipient]
        stages.append(Stage(argv, name="age"))
    return stages


def _decode_stages(path, identity_file, name=None):
    """Stages that turn a stored file back into the WAL; ``name`` (default ``path``) tells the encoding."""
    name = name or path
    stages = []
    if name.endswith(".age"):
        if not identity_file:
            raise WalArchiveError("WAL file '%s' is encrypted and no age identity file was given." % path,
                                  hint="Configure identity_file (restore-wal --identity) with a key of one of its recipients.")
        if not os.path.isfile(identity_file):
            raise WalArchiveError("Identity file '%s' does not exist." % identity_file)
        stages.append(Stage([require_tool("age", "the age package"), "-d", "-i", identity_file], name="age"))
    if name.endswith(".zst") or name.endswith(".zst.age"):
        stages.append(_zstd("-d", "-c"))
    return stages


def _suffix(compress, recipients):
    return (".zst" if compress == "zstd" else "") + (".age" if recipients else "")


def _sha256_of_file(path):
    return fsutil.sha256_file(path)


def _decoded_sha256(path, identity_file=None, name=None):
    """sha256 and size of what PostgreSQL wrote, for a stored (maybe encoded) archive file."""
    name = name or path
    if not (name.endswith(".zst") or name.endswith(".age")):
        return _sha256_of_file(path), os.path.getsize(path)
    if name.endswith(".age") and not identity_file:
        return _read_checksum_sidecar(path), None
    pipeline = Pipeline(_decode_stages(path, identity_file, name), stdin=path, capture_stdout=True).start()
    digest, size = _drain(pipeline)
    try:
        pipeline.wait()
    except PgBackupError as exc:
        raise WalArchiveError("Archived WAL file '%s' cannot be decoded: %s" % (path, exc.message),
                              hint="It is damaged; the WAL it held is lost unless another copy exists.")
    return digest, size


def _drain(pipeline, write=None):
    """(sha256, size) of a started pipeline's output, read to the end (and handed to ``write``);
    the pipeline is killed when reading fails. Its exit status is the caller's to check."""
    try:
        return fsutil.sha256_chunks(pipeline.stdout_chunks(), write)
    except BaseException:
        pipeline.kill()
        raise


def _read_checksum_sidecar(path):
    sidecar = path + CHECKSUM_SUFFIX
    try:
        with open(sidecar) as handle:
            value = handle.read().split()[0]
    except (OSError, IndexError):
        raise WalArchiveError("The checksum file of encrypted WAL file '%s' is missing or unreadable." % path,
                              hint="Without it the archived content cannot be compared; check the archive by hand.")
    if not re.match(r"^[0-9a-f]{64}$", value):
        raise WalArchiveError("The checksum file '%s' is damaged." % sidecar)
    return value


# -- archive ---------------------------------------------------------------------------------

def archive_segment(wal_path, wal_name, archive_dir, compress=None, recipients=None, level=3):
    """Copy one WAL file into the archive durably (archive_command). Returns what happened.

    ``compress``: None/'none' or 'zstd'; ``recipients``: age public keys (encrypts).
    """
    check_wal_name(wal_name)
    compress = compress or "none"
    if compress not in COMPRESSION_CHOICES:
        raise WalArchiveError("Unknown WAL compression '%s'." % compress, hint="Use none or zstd.")
    recipients = [r for r in (recipients or []) if r]
    require_archive_dir(archive_dir)
    if not os.access(archive_dir, os.W_OK):
        raise WalArchiveError("WAL archive directory '%s' is not writable by this user." % archive_dir,
                              hint="It must belong to the user PostgreSQL runs as (postgres).")
    try:
        size = os.path.getsize(wal_path)
    except OSError as exc:
        raise WalArchiveError("Cannot read WAL file '%s': %s." % (wal_path, exc.strerror))
    if SEGMENT.match(wal_name) and not is_valid_segment_size(size):
        raise WalArchiveError("WAL segment '%s' has an impossible size of %d bytes." % (wal_path, size),
                              hint="Refusing to archive a truncated segment; check the disk holding pg_wal.")
    source_sha = _sha256_of_file(wal_path)

    existing = existing_files(archive_dir, wal_name)
    if existing:
        return _already_archived(existing, source_sha, size, wal_name)

    suffix = _suffix(compress, recipients)
    final = os.path.join(archive_dir, wal_name + suffix)
    temp = os.path.join(archive_dir, "%s%s%s.%d" % (TMP_PREFIX, wal_name, suffix, os.getpid()))
    temp_sidecar = temp + CHECKSUM_SUFFIX
    try:
        stages = _encode_stages(compress, level, recipients)
        if stages:
            fsutil.remove_quietly(temp)
            Pipeline(stages, stdin=wal_path, stdout_path=temp).run()
            os.chmod(temp, fsutil.FILE_MODE)
        else:
            _copy_file(wal_path, temp)
        fsutil.fsync_path(temp)
        if compress == "zstd" and not recipients:
            written_sha, written_size = _decoded_sha256(temp, name=final)
            if written_sha != source_sha or written_size != size:
                raise WalArchiveError("The compressed copy of '%s' does not decompress to the original." % wal_name,
                                      hint="Check the zstd installation and the archive disk.")
        if recipients:
            _write_small_file(temp_sidecar, source_sha + "  " + wal_name + "\n")
            _publish(temp_sidecar, final + CHECKSUM_SUFFIX, replace=True)
        if not _publish(temp, final, replace=False):
            fsutil.remove_quietly(temp)
            return _already_archived(existing_files(archive_dir, wal_name), source_sha, size, wal_name)
        fsutil.fsync_path(archive_dir)
    except OSError as exc:
        raise WalArchiveError("Cannot write WAL file '%s' to the archive: %s." % (wal_name, exc.strerror or exc),
                              hint="Check free space and permissions of '%s'; PostgreSQL keeps the segment and "
                                   "retries." % archive_dir)
    except PgBackupError as exc:
        if isinstance(exc, WalArchiveError):
            raise
        raise WalArchiveError("Archiving '%s' failed: %s" % (wal_name, exc.message), hint=exc.hint)
    finally:
        for path in (temp, temp_sidecar):
            try:
                fsutil.remove_quietly(path)
            except OSError:
                pass
    return {"status": "archived", "path": final, "size": size, "sha256": source_sha}


def _already_archived(existing, source_sha, size, wal_name):
    for path in existing:
        stored_sha, stored_size = _decoded_sha256(path)
        if stored_sha != source_sha or (stored_size is not None and stored_size != size):
            raise WalArchiveError("WAL file '%s' is already archived as '%s' with different content; refusing to "
                                  "overwrite it." % (wal_name, path),
                                  hint="Two clusters may be archiving into the same directory, or the archive was "
                                       "restored from elsewhere. Investigate before moving or deleting anything.")
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
        out.flush()
        os.fsync(out.fileno())


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
    temp = "%s.todoapi-restore-%d" % (target_path, os.getpid())
    try:
        digest, size = _decode_to(source, temp, identity_file)
        if SEGMENT.match(wal_name) and not is_valid_segment_size(size):
            raise WalArchiveError("Archived WAL segment '%s' is truncated (%d bytes)." % (source, size),
                                  hint="The archive is damaged; recovery cannot continue past this segment.")
        if source.endswith(".age") and os.path.exists(source + CHECKSUM_SUFFIX):
            if _read_checksum_sidecar(source) != digest:
                raise WalArchiveError("Archived WAL file '%s' does not match its checksum." % source,
                                      hint="The archive is damaged; recovery cannot continue past this segment.")
        os.rename(temp, target_path)
    except OSError as exc:
        raise WalArchiveError("Cannot restore WAL file '%s' to '%s': %s." % (wal_name, target_path, exc.strerror or exc))
    finally:
        try:
            fsutil.remove_quietly(temp)
        except OSError:
            pass
    return {"status": "restored", "source": source, "size": size, "sha256": digest}


def _decode_to(source, destination, identity_file):
    stages = _decode_stages(source, identity_file)
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, fsutil.FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        if not stages:
            return fsutil.sha256_chunks(fsutil.file_chunks(source), out.write)
        pipeline = Pipeline(stages, stdin=source, capture_stdout=True).start()
        digest, size = _drain(pipeline, out.write)
        try:
            pipeline.wait()
        except PgBackupError as exc:
            text = exc.message.lower()
            if "no identity matched" in text:
                raise WalArchiveError("The age identity does not match archived WAL file '%s' (wrong key)." % source,
                                      hint="Use the private key of one of the archive's recipients.")
            raise WalArchiveError("Archived WAL file '%s' is damaged: %s" % (source, exc.message),
                                  hint="Recovery cannot continue past this segment.")
    return digest, size
