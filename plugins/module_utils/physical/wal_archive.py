# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WAL archive: PostgreSQL's archive_command and restore_command, range checks and pruning.

Archive layout (one flat directory, mode 0700, owned by postgres)::

    <archive>/000000010000000000000002          a segment as PostgreSQL wrote it, or
    <archive>/000000010000000000000002.zst      zstd-compressed (frame checksum on), and/or
    <archive>/000000010000000000000002.zst.age  age-encrypted, with
    <archive>/000000010000000000000002.zst.age.sha256   the plaintext's sha256 (encrypted files only)
    <archive>/00000002.history                  timeline history files (same encodings)
    <archive>/.tmp-*                            work in progress, never read by restore

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
import time

from ..core import fsutil
from ..core.errors import PgBackupError
from ..core.pipeline import Pipeline, Stage, require_tool
from .wal_names import DEFAULT_SEGMENT_SIZE, SEGMENT, is_valid_segment_size, parse_lsn, parse_segment, segment_file_name

WAL_NAME = re.compile(r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")
# Suffixes in lookup order; a file is stored under exactly one of them.
ENCODINGS = ("", ".zst", ".age", ".zst.age")
CHECKSUM_SUFFIX = ".sha256"
TMP_PREFIX = ".tmp-"
COMPRESSION_CHOICES = ("none", "zstd")
STALE_TMP_SECONDS = 3600


class WalArchiveError(PgBackupError):
    """The archive cannot be trusted for this request (damaged, unreadable, conflicting)."""


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


def existing_files(archive_dir, wal_name):
    """Archive files that store ``wal_name`` (normally zero or one)."""
    return [os.path.join(archive_dir, wal_name + suffix) for suffix in ENCODINGS
            if os.path.isfile(os.path.join(archive_dir, wal_name + suffix))]


def _require_archive_dir(archive_dir):
    if not archive_dir:
        raise WalArchiveError("No WAL archive directory given.", hint="Pass --archive-dir or set archive_dir in the config.")
    if not os.path.isdir(archive_dir):
        raise WalArchiveError("WAL archive directory '%s' does not exist or is not a directory." % archive_dir,
                              hint="Mount/create it (role todoapi.pgbackup.wal_archiving creates it 0700 postgres).")
    if not os.access(archive_dir, os.R_OK | os.X_OK):
        raise WalArchiveError("WAL archive directory '%s' is not readable by this user." % archive_dir,
                              hint="It must belong to the user PostgreSQL runs as (postgres).")


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
    _require_archive_dir(archive_dir)
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
    _require_archive_dir(archive_dir)
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


# -- inspection --------------------------------------------------------------------------

def list_segments(archive_dir, timeline=None, segment_size=DEFAULT_SEGMENT_SIZE, stream_dirs=None):
    """{segment number: name} of the archived segments (of one timeline, when given); with
    ``stream_dirs`` also pg_receivewal's complete and ``.partial`` segments."""
    _require_archive_dir(archive_dir)
    found = {}
    entries = list(os.listdir(archive_dir))
    for directory in stream_dirs or []:
        if os.path.isdir(directory):
            entries += [e[:-len(".partial")] if e.endswith(".partial") else e for e in os.listdir(directory)]
    for entry in entries:
        name = _strip_encoding(entry)
        if name is None or not SEGMENT.match(name):
            continue
        tli, segno = parse_segment(name, segment_size)
        if timeline is None or tli == int(timeline):
            found[segno] = name
    return found


def _strip_encoding(entry):
    if entry.startswith(".") or entry.endswith(CHECKSUM_SUFFIX):
        return None
    for suffix in sorted(ENCODINGS, key=len, reverse=True):
        if suffix and entry.endswith(suffix):
            return entry[:-len(suffix)]
    return entry


def _segno_of(value, timeline, segment_size):
    if isinstance(value, int):
        return value
    if SEGMENT.match(str(value)):
        tli, segno = parse_segment(value, segment_size)
        return segno
    return parse_lsn(value) // segment_size


def wal_range_present(archive_dir, timeline, start, end=None, segment_size=DEFAULT_SEGMENT_SIZE, stream_dirs=None,
                      also_present=None):
    """Check that every segment of ``timeline`` from ``start`` to ``end`` is archived.

    ``start``/``end``: segment names, LSNs ('0/3000060') or segment numbers. Without
    ``end`` the range runs to the newest archived segment of the timeline, so a hole
    anywhere after ``start`` is reported. ``stream_dirs``: pg_receivewal directories that
    count as archive too; ``also_present``: segment numbers known to exist elsewhere. Returns a dict: complete (bool), missing (names,
    at most 20 listed, missing_count the total), first/last (names), last_contiguous
    (newest segment reachable from ``start`` without a hole, or None).
    """
    timeline = int(timeline, 16) if isinstance(timeline, str) else int(timeline)
    present = list_segments(archive_dir, timeline, segment_size, stream_dirs)
    for segno in also_present or ():  # e.g. the segments a base backup carries itself
        present.setdefault(segno, segment_file_name(timeline, segno, segment_size))
    first = _segno_of(start, timeline, segment_size)
    last = _segno_of(end, timeline, segment_size) if end is not None else max([first] + list(present))
    missing = [segno for segno in range(first, last + 1) if segno not in present]
    contiguous = None
    segno = first
    while segno in present:
        contiguous = segno
        segno += 1

    def name(number):
        return segment_file_name(timeline, number, segment_size)

    return {
        "complete": not missing,
        "missing": [name(n) for n in missing[:20]],
        "missing_count": len(missing),
        "first": name(first),
        "last": name(last),
        "last_contiguous": name(contiguous) if contiguous is not None else None,
        "timeline": timeline,
    }


def history_timelines(archive_dir):
    """Timelines that have a history file in the archive (timeline switches after a PITR/failover)."""
    found = []
    for entry in os.listdir(archive_dir):
        name = _strip_encoding(entry)
        if name and re.match(r"^[0-9A-F]{8}\.history$", name):
            found.append(int(name[:8], 16))
    return sorted(found)


# -- retention -------------------------------------------------------------------------------

def prune_wal(archive_dir, oldest_needed_segment, dry_run=False, segment_size=DEFAULT_SEGMENT_SIZE):
    """Delete archived WAL older than ``oldest_needed_segment`` (pg_archivecleanup semantics).

    ``oldest_needed_segment`` is the ``wal_start_segment`` of the oldest base backup that is
    kept. Segments (any timeline) and ``.backup``/``.partial`` files whose position is older
    are removed with their checksum files; timeline history files are always kept. Refuses
    to run when the archive holds nothing at or after that segment (a typo would otherwise
    empty the archive). Returns {"removed": [...], "kept": n, "dry_run": bool}.
    """
    if not SEGMENT.match(oldest_needed_segment or ""):
        raise PgBackupError("'%s' is not a WAL segment name." % oldest_needed_segment,
                            hint="Pass the wal_start_segment of the oldest kept physical backup.")
    _require_archive_dir(archive_dir)
    _tli, oldest = parse_segment(oldest_needed_segment, segment_size)
    entries = os.listdir(archive_dir)
    doomed, kept = [], 0
    for entry in entries:
        if entry.startswith(TMP_PREFIX):
            path = os.path.join(archive_dir, entry)
            try:
                if time.time() - os.path.getmtime(path) > STALE_TMP_SECONDS:
                    doomed.append(entry)
            except OSError:
                pass
            continue
        base = entry[:-len(CHECKSUM_SUFFIX)] if entry.endswith(CHECKSUM_SUFFIX) else entry
        name = _strip_encoding(base)
        if name is None or not re.match(r"^[0-9A-F]{24}", name):
            continue  # history files and anything unknown stay
        _tli, segno = parse_segment(name[:24], segment_size)
        if segno < oldest:
            doomed.append(entry)
        elif SEGMENT.match(name) and not entry.endswith(CHECKSUM_SUFFIX):
            kept += 1
    if not kept:
        raise PgBackupError("The WAL archive '%s' holds no segment at or after %s; refusing to prune."
                            % (archive_dir, oldest_needed_segment),
                            hint="Check the segment name (it should be the oldest kept base backup's wal_start_segment).")
    removed = sorted(doomed)
    if not dry_run:
        for entry in removed:
            fsutil.remove_quietly(os.path.join(archive_dir, entry))
        if removed:
            fsutil.fsync_path(archive_dir)
    return {"removed": removed, "kept": kept, "dry_run": bool(dry_run)}
