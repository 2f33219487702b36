# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Physical base backups of a whole cluster with pg_basebackup, for point-in-time recovery.

Layout in the repository: ``<id>.base/`` (a directory artifact) holding what pg_basebackup
wrote: ``base.tar[.zst|.gz|.lz4]`` and ``pg_wal.tar[...]`` (tar format, the default) or a
plain data directory copy (plain format), plus PostgreSQL's own ``backup_manifest``.

Defaults, as measured in docs/performance.md:

- tar format with server-side zstd at level 3 and ``workers`` = the CPU count of the host the
  engine runs on (``--compress=server-zstd:level=3,workers=N``): the walsender compresses in
  N threads instead of one (raw pg_basebackup 2.9 -> 1.4 s per GiB on 2 cores). When the server
  refuses workers (a libzstd without multithreading) and workers were not asked for explicitly,
  the backup is taken again in one thread and the manifest says so (``workers_refused``).
- ``--manifest-checksums=CRC32C`` (PostgreSQL's default; 0.8 s per GiB cheaper than SHA256 on the
  server) when the Python module ``crc32c`` can check them here, else SHA256 (hashlib). The
  repository manifest's SHA-256 of each artifact file covers the backup end to end either way.
- verification without extraction: every tar is read once as a stream (``zstd -dc`` through a
  checked pipeline into ``backup_manifest.TarReader``) and checked against ``backup_manifest`` as
  pg_verifybackup checks a plain directory (manifest checksum, every file's presence, size and
  checksum, no unexpected files); only the WAL segments the backup needs are written to a
  scratch directory, for ``pg_waldump`` to parse the manifest's WAL ranges. The extra disk is
  those segments, less than ``pg_wal.tar`` itself. Plain-format backups are checked in place
  by pg_verifybackup.

The WAL needed to make the backup consistent is streamed into the backup (``-X stream``),
so every base backup is self-contained even without the WAL archive.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import shutil
import tempfile
import time

from ..core import fsutil
from ..core import manifest as manifests
from . import backup_manifest
from ..core import pgconn
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pgtools import find_tool
from ..core.pipeline import Pipeline, Stage, require_tool

KIND = "physical"
ARTIFACT_SUFFIX = ".base"
FORMATS = ("tar", "plain")
COMPRESSION_METHODS = ("none", "gzip", "lz4", "zstd")
# pg_basebackup 15's validate_compress_specification() ranges (zstd also has negative "fast" levels,
# which the collection does not offer).
LEVEL_RANGES = {"gzip": (1, 9), "lz4": (1, 12), "zstd": (1, 22)}
DEFAULT_COMPRESSION = "server-zstd:level=3,workers=auto"
WORKERS_AUTO = "auto"
WORKERS_REFUSED = r"compression worker count"
MANIFEST_CHECKSUMS = ("auto", "CRC32C", "SHA224", "SHA256", "SHA384", "SHA512")
WAL_METHODS = ("stream", "fetch")
TAR_SUFFIXES = {"none": ".tar", "gzip": ".tar.gz", "lz4": ".tar.lz4", "zstd": ".tar.zst"}
MAX_RATE = re.compile(r"^[0-9]+[kM]?$")
BASEBACKUP_ERROR = r"(?m)^pg_basebackup: error:"
VERIFY_ERROR = r"(?m)^pg_verifybackup: error:"
WALDUMP_ERROR = r"(?m)^pg_waldump: (error|fatal):"
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
DEFAULT_MAJOR = 15
WAL_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
TABLESPACE_TAR = re.compile(r"^([0-9]+)\.tar(\.(gz|zst|lz4))?$")
COMPRESSION_HINT = ("Use none, or [client-|server-]gzip|lz4|zstd[:level] or [:level=N,workers=N|auto] "
                    "(workers with zstd only), e.g. server-zstd:level=3,workers=auto.")


def _parse_detail(detail, method, value):
    """pg_basebackup's compression detail: '' , '5' (a level) or 'level=5,workers=4' -> (level, workers)."""
    level = workers = None
    if not detail:
        return level, workers
    if detail.isdigit():
        return int(detail), workers
    for item in detail.split(","):
        key, equals, setting = item.strip().partition("=")
        if key == "level" and setting.isdigit():
            level = int(setting)
        elif key == "workers" and method == "zstd" and (setting.isdigit() or setting == WORKERS_AUTO):
            workers = setting if setting == WORKERS_AUTO else int(setting)
        elif key == "workers" and method != "zstd":
            raise PgBackupError("Compression '%s': only zstd compresses with workers." % value, hint=COMPRESSION_HINT)
        elif key in ("level", "workers"):
            raise PgBackupError("Compression '%s': %s must be a number%s." % (
                value, key, " or auto" if key == "workers" else ""), hint=COMPRESSION_HINT)
        else:
            raise PgBackupError("Compression '%s': unknown setting '%s' (PostgreSQL 15 knows level and workers)."
                                % (value, key), hint=COMPRESSION_HINT)
    return level, workers


def parse_compression(value, fmt):
    """'server-zstd:level=3,workers=auto', 'server-zstd:3', 'client-gzip:6', 'zstd' (= server side), 'none'
    -> dict(method, location, level, workers).

    ``workers`` is None (not zstd), 'auto' (the default for zstd: the CPU count, see
    ``resolve_workers``) or a number; 0 compresses in one thread.
    """
    text = (value or "none").strip().lower()
    location = "server"
    if text.startswith("client-") or text.startswith("server-"):
        location, dash, text = text.partition("-")
    method, colon, detail = text.partition(":")
    if method not in COMPRESSION_METHODS:
        raise PgBackupError("Unknown base backup compression '%s'." % value, hint=COMPRESSION_HINT)
    if method == "none":
        if detail:
            raise PgBackupError("Compression '%s': none takes no level or workers." % value, hint=COMPRESSION_HINT)
        return {"method": "none", "location": None, "level": None, "workers": None}
    level, workers = _parse_detail(detail, method, value)
    if level is not None:
        low, high = LEVEL_RANGES[method]
        if not low <= level <= high:
            raise PgBackupError("Compression level %d is out of range for %s." % (level, method),
                                hint="Use %d to %d." % (low, high))
    if method == "zstd" and workers is None:
        workers = WORKERS_AUTO
    if fmt == "plain" and location == "client":
        raise PgBackupError("Client-side compression is not possible with the plain format.",
                            hint="Use format tar, or server-side compression (it then only saves network traffic).")
    return {"method": method, "location": location, "level": level, "workers": workers}


def resolve_workers(compression):
    """The compression with workers 'auto' replaced by the CPU count of this host (the DB host, where the
    backup role and playbooks run the engine)."""
    if compression.get("workers") != WORKERS_AUTO:
        return dict(compression)
    return dict(compression, workers=os.cpu_count() or 1)


def compression_argument(compression):
    """The value of pg_basebackup --compress; workers 'auto' is resolved, workers 0 left out."""
    if compression["method"] == "none":
        return "none"
    compression = resolve_workers(compression)
    text = "%s-%s" % (compression["location"], compression["method"])
    level, workers = compression["level"], compression.get("workers")
    if workers:
        details = (["level=%d" % level] if level is not None else []) + ["workers=%d" % workers]
        text += ":" + ",".join(details)
    elif level is not None:
        text += ":%d" % level
    return text


def manifest_checksum_algorithm(requested):
    """What pg_basebackup --manifest-checksums gets: for 'auto', CRC32C (PostgreSQL's default, cheap on the
    server) when the crc32c module can check it here, else SHA256 (hashlib)."""
    if requested in (None, "", "auto"):
        return "CRC32C" if backup_manifest.crc32c_available() else "SHA256"
    algorithm = str(requested).upper()
    if algorithm not in MANIFEST_CHECKSUMS:
        raise PgBackupError("Unknown manifest checksum algorithm '%s'." % requested,
                            hint="Use one of: %s." % ", ".join(MANIFEST_CHECKSUMS))
    return algorithm


class PhysicalBackupRequest(object):
    """A base backup request, validated before anything is written."""

    def __init__(self, repository, connection, fmt="tar", compression=DEFAULT_COMPRESSION, wal_method="stream",
                 max_rate=None, checkpoint="fast", verify=True, label=None, pg_bin_dir=None, cluster_name=None,
                 manifest_checksums="auto"):
        if fmt not in FORMATS:
            raise PgBackupError("Unknown base backup format '%s'." % fmt, hint="Use tar or plain.")
        if wal_method not in WAL_METHODS:
            raise PgBackupError("Unknown WAL method '%s'." % wal_method,
                                hint="Use stream (default) or fetch; both make the backup self-contained.")
        if checkpoint not in ("fast", "spread"):
            raise PgBackupError("Unknown checkpoint mode '%s'." % checkpoint, hint="Use fast or spread.")
        if max_rate and not MAX_RATE.match(str(max_rate)):
            raise PgBackupError("max_rate '%s' is not a transfer rate." % max_rate,
                                hint="Give kB/s as a number, or a number followed by k or M (e.g. 50M).")
        self.repository = repository
        self.connection = connection
        self.format = fmt
        self.compression = parse_compression(compression, fmt)
        self.wal_method = wal_method
        self.max_rate = str(max_rate) if max_rate else None
        self.checkpoint = checkpoint
        self.verify = bool(verify)
        self.label = label
        self.pg_bin_dir = pg_bin_dir
        self.cluster_name = cluster_name
        self.manifest_checksums = manifest_checksum_algorithm(manifest_checksums)


def _cluster_facts(conn):
    info = pgconn.server_info(conn)
    rows = pgconn.query(conn, "SELECT current_setting('cluster_name'), current_setting('wal_level'), "
                              "current_setting('archive_mode'), current_setting('wal_segment_size'), "
                              # A login with only REPLICATION may read neither: both are informational.
                              "CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') "
                              "THEN (SELECT system_identifier FROM pg_control_system())::text END, "
                              "CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE') "
                              "THEN current_setting('data_directory') END")
    cluster_name, wal_level, archive_mode, segment_size, system_identifier, data_directory = rows[0]
    info.update({"cluster_name": cluster_name or "", "wal_level": wal_level, "archive_mode": archive_mode,
                 "wal_segment_size": _size_in_bytes(segment_size), "system_identifier": system_identifier,
                 "data_directory": data_directory})
    return info


def _size_in_bytes(text):
    match = re.match(r"^(\d+)\s*(B|kB|MB|GB)?$", str(text).strip())
    if not match:
        return DEFAULT_SEGMENT_SIZE
    factor = {"B": 1, None: 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}[match.group(2)]
    return int(match.group(1)) * factor


def _next_xid(conn):
    return int(pgconn.scalar(conn, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))


def parse_lsn(text):
    high, slash, low = str(text).partition("/")
    try:
        return (int(high, 16) << 32) + int(low, 16)
    except ValueError:
        raise PgBackupError("'%s' is not a WAL location (LSN)." % text, hint="Write it like 0/3000060.")


def format_lsn(value):
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def segment_name(timeline, lsn, segment_size=DEFAULT_SEGMENT_SIZE):
    """The WAL file name holding ``lsn`` (an int or 'X/Y') on ``timeline``."""
    if not isinstance(lsn, int):
        lsn = parse_lsn(lsn)
    segno = lsn // segment_size
    per_xlogid = 0x100000000 // segment_size
    return "%08X%08X%08X" % (timeline, segno // per_xlogid, segno % per_xlogid)


def read_backup_manifest(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise PgBackupError("pg_basebackup's backup_manifest '%s' cannot be read: %s." % (path, exc),
                            hint="The base backup is unusable; take a new one.")
    ranges = data.get("WAL-Ranges") or []
    if not ranges:
        raise PgBackupError("backup_manifest '%s' has no WAL range." % path)
    return data, ranges


def _tar_members(directory):
    return sorted(name for name in os.listdir(directory) if re.match(r"^[^.].*\.tar(\.(gz|zst|lz4))?$", name))


def decompress_stage_for(name):
    if name.endswith(".zst"):
        return streams.decompress_stage("zstd")
    if name.endswith(".gz"):
        return streams.decompress_stage("gzip")
    if name.endswith(".lz4"):
        return Stage([require_tool("lz4", "the lz4 package"), "-q", "-d", "-c"], name="lz4")
    return None


def extract_tar(tar_path, destination):
    """Extract one (possibly compressed) tar of pg_basebackup into ``destination``."""
    if not os.path.isdir(destination):
        os.makedirs(destination, fsutil.DIR_MODE)
    stages = []
    decompress = decompress_stage_for(tar_path)
    if decompress:
        stages.append(decompress)
    tar = require_tool("tar", "the tar package")
    stages.append(Stage([tar, "-x", "-f", "-", "-C", destination, "--no-same-owner"], name="tar"))
    Pipeline(stages, stdin=tar_path).run()


def extract_backup(artifact_dir, destination):
    """Turn a stored base backup (tar or plain) into a data directory at ``destination``."""
    names = os.listdir(artifact_dir)
    tars = _tar_members(artifact_dir)
    if not tars:  # plain format: the artifact is a data directory
        for name in names:
            source = os.path.join(artifact_dir, name)
            target = os.path.join(destination, name)
            if os.path.isdir(source) and not os.path.islink(source):
                shutil.copytree(source, target, symlinks=True)
            else:
                shutil.copy2(source, target, follow_symlinks=False)
        return
    base = [t for t in tars if t.startswith("base.tar")]
    others = [t for t in tars if not t.startswith("base.tar") and not t.startswith("pg_wal.tar")]
    if not base:
        raise PgBackupError("Base backup '%s' has no base.tar." % artifact_dir, hint="The backup is unusable.")
    if others:
        raise PgBackupError("Base backup '%s' contains tablespace archives (%s), which this collection cannot "
                            "restore yet." % (artifact_dir, ", ".join(others)),
                            hint="Extract them by hand next to the data directory and fix pg_tblspc links.")
    extract_tar(os.path.join(artifact_dir, base[0]), destination)
    for name in tars:
        if name.startswith("pg_wal.tar"):
            wal_dir = os.path.join(destination, "pg_wal")
            if not os.path.isdir(wal_dir):
                os.makedirs(wal_dir, 0o700)
            extract_tar(os.path.join(artifact_dir, name), wal_dir)


def verify_data_directory(data_dir, manifest_path, bin_dir):
    """pg_verifybackup on an extracted/plain data directory (checksums of every file, WAL range)."""
    verifier = find_tool("pg_verifybackup", 15, bin_dir)[0]
    argv = [verifier, "-q", "-m", manifest_path]
    wal_dir = os.path.join(data_dir, "pg_wal")
    waldump = os.path.join(os.path.dirname(verifier), "pg_waldump")
    if not os.path.exists(waldump):
        argv.append("--no-parse-wal")
    else:
        argv += ["--wal-directory", wal_dir]
    argv.append(data_dir)
    try:
        Pipeline([Stage(argv, name="pg_verifybackup", error_pattern=VERIFY_ERROR)]).run()
    except PgBackupError as exc:
        raise PgBackupError("pg_verifybackup found the base backup damaged: %s" % exc.message,
                            hint="Do not restore this backup; take a new one.")


def _read_backup_label(data_dir):
    path = os.path.join(data_dir, "backup_label")
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


# Reading tar files as streams


class _TarStream(object):
    """One tar of the artifact as byte chunks: straight from the file, or through its decompressor."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.pipeline = None
        stage = decompress_stage_for(path)
        if stage is None:
            self.chunks = fsutil.file_chunks(path)
        else:
            self.pipeline = Pipeline([stage], stdin=path, capture_stdout=True).start()
            self.chunks = self.pipeline.stdout_chunks()

    def drain(self):
        for chunk in self.chunks:
            pass

    def finish(self):
        """Wait for the decompressor; a PgBackupError says it could not decode the file."""
        if self.pipeline is not None:
            pipeline, self.pipeline = self.pipeline, None
            pipeline.wait()

    def abort(self):
        """Stop reading (what was not read is not needed, or a failure is already being reported)."""
        if self.pipeline is not None:
            pipeline, self.pipeline = self.pipeline, None
            pipeline.kill()
            pipeline.wait_quietly()
        if hasattr(self.chunks, "close"):
            self.chunks.close()  # a file read directly is closed with its generator


def read_backup_label(artifact_dir):
    """backup_label of a tar-format backup: base.tar is read only up to that member (its first one)."""
    base = [t for t in _tar_members(artifact_dir) if t.startswith("base.tar")]
    if not base:
        raise PgBackupError("Base backup '%s' has no base.tar." % artifact_dir, hint="The backup is unusable.")
    stream = _TarStream(os.path.join(artifact_dir, base[0]))
    label = None
    try:
        reader = backup_manifest.TarReader(stream.chunks, stream.name)
        for info in reader:
            if backup_manifest.member_path(info.name) == "backup_label":
                label = b"".join(piece.tobytes() for piece in reader.data()).decode("utf-8", "replace")
                break
    except backup_manifest.TarDamaged:
        label = None
    finally:
        stream.abort()  # stop reading: the rest of base.tar is not needed
    return label


def _wal_segment_info(name, segment_size):
    """(timeline, segment number) of a WAL segment file name."""
    per_xlogid = 0x100000000 // segment_size
    return int(name[:8], 16), int(name[8:16], 16) * per_xlogid + int(name[16:], 16)


def _wal_needed(ranges, segment_size):
    """{segment file name: (timeline, start, end)} of every WAL segment the manifest's WAL-Ranges need."""
    needed = {}
    for timeline, start, end in ranges:
        first = parse_lsn(start) // segment_size
        last = max(parse_lsn(start), parse_lsn(end) - 1) // segment_size
        for segno in range(first, last + 1):
            needed[segment_name(timeline, segno * segment_size, segment_size)] = (timeline, start, end)
    return needed


def _is_wal_segment_path(path):
    head, slash, name = path.partition("/")
    return head == "pg_wal" and WAL_SEGMENT.match(name) is not None


def _valid_segment_size(size):
    return 1024 * 1024 <= size <= 1024 ** 3 and size & (size - 1) == 0


class _WalCollector(object):
    """Writes the WAL segments the backup needs (from pg_wal.tar, or pg_wal/ in base.tar) to a scratch
    directory, and nothing else: pg_waldump reads them there."""

    def __init__(self, ranges, directory, segment_size=None):
        self.ranges = ranges
        self.directory = directory
        self.segment_size = segment_size if segment_size and _valid_segment_size(segment_size) else None
        self.written = []

    def wants(self, path, size):
        if not _is_wal_segment_path(path):
            return False
        name = path.partition("/")[2]
        if self.segment_size is None and _valid_segment_size(size):
            self.segment_size = size
        if self.segment_size is None:
            return True
        return name in _wal_needed(self.ranges, self.segment_size)

    def open(self, path):
        return open(os.path.join(self.directory, path.partition("/")[2]), "wb")

    def done(self, path):
        """A segment counts once all of it was written (not the start of one in a truncated tar)."""
        self.written.append(path.partition("/")[2])

    def missing(self):
        segment_size = self.segment_size or DEFAULT_SEGMENT_SIZE
        needed = _wal_needed(self.ranges, segment_size)
        return [(name, needed[name]) for name in sorted(needed) if name not in self.written]


def _check_tar(stream, prefix, check, wal, label_holder):
    """Feed one tar stream's members to the ManifestCheck (and the WAL collector)."""
    reader = backup_manifest.TarReader(stream.chunks, stream.name)
    for info in reader:
        path = backup_manifest.member_path(info.name, prefix)
        if path is None:
            check.problem(stream.name, "'%s' has a path outside the data directory" % info.name)
            continue
        if not path:
            continue
        kind = backup_manifest.member_kind(info)
        file_check = check.member(stream.name, path, kind, info.size)
        wal_file = wal.open(path) if kind == "file" and wal.wants(path, info.size) else None
        keep_label = path == "backup_label" and kind == "file"
        if file_check is None and wal_file is None and not keep_label:
            continue
        label = []
        try:
            for piece in reader.data():
                if file_check is not None:
                    file_check.update(piece)
                if wal_file is not None:
                    wal_file.write(piece)
                if keep_label:
                    label.append(piece.tobytes())
        finally:
            if wal_file is not None:
                wal_file.close()
        if wal_file is not None:
            wal.done(path)
        if file_check is not None:
            file_check.done()
        if keep_label:
            label_holder.append(b"".join(label).decode("utf-8", "replace"))


def _parse_wal(check, wal, bin_dir, server_major):
    """pg_waldump over each WAL range, as pg_verifybackup runs it; False when pg_waldump is not installed."""
    try:
        waldump = find_tool("pg_waldump", server_major, bin_dir)[0]
    except PgBackupError:
        return False
    for timeline, start, end in wal.ranges:
        argv = [waldump, "--quiet", "--path=%s" % wal.directory, "--timeline=%d" % timeline,
                "--start=%s" % start, "--end=%s" % end]
        try:
            Pipeline([Stage(argv, name="pg_waldump", error_pattern=WALDUMP_ERROR)]).run()
        except PgBackupError as exc:
            check.problem(None, "the WAL the backup needs (timeline %d from %s to %s) does not parse: %s"
                          % (timeline, start, end, exc.message))
    return True


def verify_tar_backup(artifact_dir, work_dir=None, bin_dir=None, server_major=DEFAULT_MAJOR, segment_size=None):
    """Check a tar-format base backup against its backup_manifest without extracting it.

    Each tar is read once as a stream; the manifest's own checksum, every file's presence, size and
    checksum, and unexpected files are checked as pg_verifybackup does; the WAL segments of the
    manifest's WAL-Ranges are written to a scratch directory in ``work_dir`` (None: the system's
    temporary directory) and parsed with pg_waldump. Without the crc32c module a CRC32C manifest is
    checked the old way (extracted into ``work_dir`` and pg_verifybackup).

    Returns {method, checksum_algorithms, files, bytes, tars, wal_segments, wal_parsed, backup_label};
    raises PgBackupError naming every damaged, missing or unexpected file.
    """
    manifest_path = os.path.join(artifact_dir, "backup_manifest")
    manifest = backup_manifest.BackupManifest.load(manifest_path)
    if manifest.needs_crc32c() and not backup_manifest.crc32c_available():
        return _verify_by_extracting(artifact_dir, manifest, work_dir, bin_dir, server_major)
    tars = _tar_members(artifact_dir)
    check = backup_manifest.ManifestCheck(manifest)
    ordered = [t for t in tars if t.startswith("base.tar")] + \
        [t for t in tars if not t.startswith("base.tar") and not t.startswith("pg_wal.tar")] + \
        [t for t in tars if t.startswith("pg_wal.tar")]
    if not any(t.startswith("base.tar") for t in tars):
        check.problem(None, "there is no base.tar in %s" % artifact_dir)
    scratch = tempfile.mkdtemp(prefix="pgbackup-verify-wal-", dir=work_dir)
    label_holder = []
    try:
        wal = _WalCollector(manifest.wal_ranges, scratch, segment_size)
        for name in ordered:
            if name.startswith("base.tar"):
                prefix = ""
            elif name.startswith("pg_wal.tar"):
                prefix = "pg_wal"
            elif TABLESPACE_TAR.match(name):
                prefix = "pg_tblspc/%s" % TABLESPACE_TAR.match(name).group(1)
            else:
                check.problem(name, "this tar is not one pg_basebackup writes (base, pg_wal or a tablespace oid)")
                continue
            _verify_one_tar(os.path.join(artifact_dir, name), prefix, check, wal, label_holder)
        check.finish()
        missing = wal.missing()
        for name, (timeline, start, end) in missing:
            check.problem(None, "WAL segment %s, needed for timeline %d from %s to %s (backup_manifest WAL-Ranges), "
                                "is not in the backup" % (name, timeline, start, end))
        wal_parsed = False if missing else _parse_wal(check, wal, bin_dir, server_major)
        wal_segments = sorted(wal.written)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if check.problem_count:
        raise PgBackupError("The base backup in %s does not match its backup_manifest (%d problem%s): %s." % (
            artifact_dir, check.problem_count, "" if check.problem_count == 1 else "s", check.summary()),
            hint=backup_manifest.DAMAGED_HINT, problems=check.problems)
    return {"method": "stream", "checksum_algorithms": manifest.algorithms(), "files": check.files_checked,
            "bytes": check.bytes_checked, "tars": ordered, "wal_segments": wal_segments, "wal_parsed": wal_parsed,
            "backup_label": label_holder[0] if label_holder else None}


def _verify_one_tar(path, prefix, check, wal, label_holder):
    stream = _TarStream(path)
    try:
        try:
            _check_tar(stream, prefix, check, wal, label_holder)
        except backup_manifest.TarDamaged as exc:
            stream.drain()  # let a decompressor that failed say why, rather than "truncated"
            try:
                stream.finish()
            except PgBackupError as failure:
                check.problem(stream.name, "cannot be decompressed: %s" % failure.message)
            else:
                check.problem(None, exc.message)
            return
        try:
            stream.finish()
        except PgBackupError as failure:
            check.problem(stream.name, "cannot be decompressed: %s" % failure.message)
    finally:
        stream.abort()


def _verify_by_extracting(artifact_dir, manifest, work_dir, bin_dir, server_major):
    """Fallback without the crc32c module: extract into ``work_dir`` and run pg_verifybackup (needs free space
    for the whole cluster there)."""
    scratch = tempfile.mkdtemp(prefix="pgbackup-verify-", dir=work_dir)
    try:
        extract_backup(artifact_dir, scratch)
        verify_data_directory(scratch, os.path.join(artifact_dir, "backup_manifest"), bin_dir)
        label = _read_backup_label(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"method": "extract+pg_verifybackup", "checksum_algorithms": manifest.algorithms(),
            "files": len(manifest.files), "bytes": None, "tars": _tar_members(artifact_dir), "wal_segments": None,
            "wal_parsed": None, "backup_label": label,
            "note": "the Python module crc32c is missing (install python3-crc32c): the backup was extracted into "
                    "%s and checked with pg_verifybackup" % (work_dir or tempfile.gettempdir())}


def plan(request):
    conn = pgconn.connect(request.connection)
    try:
        facts = _cluster_facts(conn)
    finally:
        conn.close()
    tool, version = find_tool("pg_basebackup", facts["server_version_num"] // 10000, request.pg_bin_dir)
    return {"repository": request.repository.path, "format": request.format,
            "compression": resolve_workers(request.compression), "compress": compression_argument(request.compression),
            "manifest_checksums": request.manifest_checksums, "wal_method": request.wal_method,
            "server_version": facts["server_version"], "cluster_name": facts["cluster_name"],
            "archive_mode": facts["archive_mode"], "pg_basebackup": tool, "verify": request.verify,
            "verify_method": _verify_method(request) if request.verify else None}


def _verify_method(request):
    if request.format == "plain":
        return "pg_verifybackup"
    if request.manifest_checksums == "CRC32C" and not backup_manifest.crc32c_available():
        return "extract+pg_verifybackup"
    return "stream"


def _empty_directory(path):
    for name in os.listdir(path):
        fsutil.remove_quietly(os.path.join(path, name))


def _run_basebackup(request, argv, temp_dir, env):
    """Run pg_basebackup with ``argv + --compress=...``; returns the compression actually applied.

    A server whose libzstd cannot compress with workers refuses them ("could not set compression worker
    count"): with workers=auto the backup is taken again in one thread; workers asked for by number fail.
    """
    compression = resolve_workers(request.compression)

    def run(applied):
        Pipeline([Stage(argv + ["--compress=%s" % compression_argument(applied)], name="pg_basebackup",
                        error_pattern=BASEBACKUP_ERROR)], env=env).run()

    try:
        run(compression)
    except PgBackupError as exc:
        if not compression.get("workers") or not re.search(WORKERS_REFUSED, exc.message):
            raise
        if request.compression.get("workers") != WORKERS_AUTO:
            raise PgBackupError("The server refused zstd compression with %d workers: %s" % (
                compression["workers"], exc.message),
                hint="Its libzstd cannot compress in threads (PostgreSQL 15 needs libzstd 1.5 or newer, built with "
                     "threads). Use workers=0, or workers=auto, which falls back to one thread by itself.")
        _empty_directory(temp_dir)
        compression = dict(compression, workers=0, workers_refused=compression["workers"])
        run(compression)
    return compression


def backup(request):
    """Take a base backup into the repository; returns its manifest (published only when complete)."""
    repo = request.repository
    started = manifests.utcnow()
    clock = time.monotonic()
    conn = pgconn.connect(request.connection)
    temp_dir = verify_dir = None
    try:
        facts = _cluster_facts(conn)
        if facts["wal_level"] == "minimal":
            raise PgBackupError("The server runs with wal_level=minimal; base backups need replica or logical.",
                                hint="Set wal_level=replica (role todoapi.pgbackup.wal_archiving) and restart.")
        major = facts["server_version_num"] // 10000
        tool, tool_version = find_tool("pg_basebackup", major, request.pg_bin_dir)
        bin_dir = request.pg_bin_dir or os.path.dirname(tool)
        cluster = request.cluster_name or facts["cluster_name"] or "cluster"
        repo.prepare()
        backup_id = repo.unique_id(KIND, cluster, started)
        temp_dir = repo.temp_path(backup_id, ARTIFACT_SUFFIX)
        os.mkdir(temp_dir, fsutil.DIR_MODE)
        next_xid_start = _next_xid(conn)
        argv = [tool, "-D", temp_dir, "-F", request.format[0], "-X", request.wal_method,
                "--checkpoint=%s" % request.checkpoint, "--label=%s" % (request.label or backup_id),
                "--no-sync", "--no-password", "--manifest-checksums=%s" % request.manifest_checksums]
        if request.max_rate:
            argv.append("--max-rate=%s" % request.max_rate)
        with pgconn.libpq_environment(request.connection) as env:
            compression = _run_basebackup(request, argv, temp_dir, env)
        next_xid_end = _next_xid(conn)
        finished = manifests.utcnow()

        pg_manifest_path = os.path.join(temp_dir, "backup_manifest")
        pg_manifest_data, ranges = read_backup_manifest(pg_manifest_path)
        segment_size = facts["wal_segment_size"]
        start_lsn, end_lsn = ranges[0]["Start-LSN"], ranges[-1]["End-LSN"]
        timeline = int(ranges[-1]["Timeline"])
        verified = None
        if request.format == "plain":
            if request.verify:
                verify_data_directory(temp_dir, pg_manifest_path, bin_dir)
                verified = {"method": "pg_verifybackup", "checksum_algorithms": [request.manifest_checksums]}
            label = _read_backup_label(temp_dir)
        elif request.verify:
            verify_dir = repo.temp_path(backup_id, ".verify")
            os.mkdir(verify_dir, fsutil.DIR_MODE)
            try:
                result = verify_tar_backup(temp_dir, work_dir=verify_dir, bin_dir=bin_dir, server_major=major,
                                           segment_size=segment_size)
            except PgBackupError as exc:
                if not (exc.details.get("problems") or isinstance(exc, backup_manifest.ManifestError)):
                    raise  # not a verdict on the backup (e.g. zstd is not installed): as it is
                raise PgBackupError("The new base backup does not verify, so it was not published: %s" % exc.message,
                                    hint="Take it again; if it fails again, check the disk and memory of this host "
                                         "and the server's log.", **exc.details)
            label = result.pop("backup_label")
            verified = result
            fsutil.remove_quietly(verify_dir)
            verify_dir = None
        else:
            label = read_backup_label(temp_dir)

        manifest = manifests.base_manifest(KIND, cluster, backup_id, started)
        manifest.update({
            "artifact": backup_id + ARTIFACT_SUFFIX,
            "size": fsutil.artifact_size(temp_dir),
            "sha256": fsutil.sha256_tree(temp_dir),
            "finished_at": manifests.isoformat(finished),
            "duration_seconds": round(time.monotonic() - clock, 3),
            "format": request.format,
            "compression": dict(compression, applied="applied_by_pg_basebackup"),
            "encryption": None,
            "wal_method": request.wal_method,
            "server_version": facts["server_version"],
            "server_version_num": facts["server_version_num"],
            "pg_basebackup_version": tool_version,
            "source": {"host": request.connection.host, "port": request.connection.port,
                       "data_directory": facts["data_directory"]},
            "system_identifier": facts["system_identifier"],
            "timeline": timeline,
            "start_lsn": start_lsn,
            "end_lsn": end_lsn,
            "wal_segment_size": segment_size,
            "wal_start_segment": segment_name(int(ranges[0]["Timeline"]), start_lsn, segment_size),
            "wal_end_segment": segment_name(timeline, end_lsn, segment_size),
            "next_xid_at_start": next_xid_start,
            "next_xid_at_end": next_xid_end,
            "backup_label": label,
            "backup_manifest": {"file": "backup_manifest",
                                "version": pg_manifest_data.get("PostgreSQL-Backup-Manifest-Version"),
                                "files": len(pg_manifest_data.get("Files") or []), "wal_ranges": ranges,
                                "checksum_algorithm": request.manifest_checksums},
            "verified": _verified_record(verified),
            "archive_mode": facts["archive_mode"],
            "tables": {},
            "extra_files": {},
        })
        repo.commit(manifest, {temp_dir: manifest["artifact"]})
        temp_dir = None
        return manifest
    except OSError as exc:
        raise fsutil.describe_os_error(exc, repo.path)
    finally:
        for path in (temp_dir, verify_dir):
            if path:
                try:
                    fsutil.remove_quietly(path)
                except OSError:
                    pass
        conn.close()


def _verified_record(result):
    """The manifest's ``verified``: whether (and how) the backup was checked against backup_manifest."""
    if not result:
        return {"backup_manifest": False, "method": None, "at": None}
    record = {"backup_manifest": True, "method": result["method"], "at": manifests.isoformat(manifests.utcnow()),
              "checksum_algorithms": result.get("checksum_algorithms")}
    for key in ("files", "bytes", "tars", "wal_segments", "wal_parsed", "note"):
        if key in result:
            record[key] = result[key]
    return record
