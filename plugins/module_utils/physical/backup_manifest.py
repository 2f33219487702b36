# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL's own ``backup_manifest``, and checking tar members against it as they stream by.

pg_basebackup writes ``backup_manifest`` next to its tar files. PostgreSQL 15's
pg_verifybackup checks a *plain* data directory against it; this module does the same checks
on the members of the tar files while they are read once, in order, so that a compressed tar
backup is verified without being extracted (see ``base_backup_verify.verify_tar_backup``):

- the manifest's own SHA-256 (its ``Manifest-Checksum`` line), as ``verify_manifest_checksum()``
  in pg_verifybackup's parse_manifest.c computes it: over everything up to and including the
  newline before the last line;
- every file the manifest lists is in the backup, with the listed size and checksum
  (``CRC32C`` - PostgreSQL's default -, ``SHA224``/``SHA256``/``SHA384``/``SHA512`` or ``NONE``);
- no file is in the backup that the manifest does not list;
- pg_verifybackup's ignore list applies to both: ``backup_manifest``, ``pg_wal`` (and everything
  below it), ``postgresql.auto.conf``, ``recovery.signal`` and ``standby.signal`` (pg_basebackup
  ``-R`` rewrites the first and writes the others after the manifest was made).

PostgreSQL writes a CRC32C checksum as the hex of the 4 bytes of the final CRC in the server's
byte order (``memcpy`` of the ``uint32``): little-endian on every platform Debian builds
PostgreSQL for, which is what ``crc32c_hex`` does. Computing CRC32C needs the ``crc32c`` Python
module (Debian ``python3-crc32c``, PyPI ``crc32c``); ``crc32c_available()`` says whether it is
there, and ``base_backup_request`` asks pg_basebackup for SHA-256 checksums when it is not.

The tar reader reads what pg_basebackup writes: ustar headers (parsed by ``tarfile.TarInfo.frombuf``),
data in the blocks that follow, two zero blocks at the end. It hands out the data as memoryviews of
the chunks it was given, so a file is checksummed without being copied.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import struct
import tarfile

from ..core.errors import PgBackupError

try:
    import crc32c as _crc32c
except ImportError:  # pragma: no cover - depends on the host
    _crc32c = None

BLOCK = 512
ZERO_BLOCK = b"\0" * BLOCK
SUPPORTED_VERSIONS = (1, 2)
IGNORED_PATHS = ("backup_manifest", "pg_wal", "postgresql.auto.conf", "recovery.signal", "standby.signal")
HASHLIB_ALGORITHMS = ("SHA224", "SHA256", "SHA384", "SHA512")
CHECKSUM_ALGORITHMS = ("NONE", "CRC32C") + HASHLIB_ALGORITHMS
MAX_PROBLEMS = 1000
SHOWN_PROBLEMS = 10
DAMAGED_HINT = ("Do not restore this backup; take a new one (and check the disk and the copy path that "
                "held it). An older backup that verifies, plus the WAL archive, still covers the time since.")


class ManifestError(PgBackupError):
    """backup_manifest itself is unreadable or altered."""


class TarDamaged(PgBackupError):
    """A tar stream that is not what pg_basebackup writes (truncated, bad header, garbage)."""


def crc32c_available():
    return _crc32c is not None


def crc32c_hex(value):
    """PostgreSQL's text form of a CRC32C: the 4 bytes of the final CRC, little-endian, in hex."""
    return "".join("%02x" % byte for byte in bytearray(struct.pack("<I", value & 0xFFFFFFFF)))


class Crc32c(object):
    """hashlib-like CRC32C (needs the crc32c module)."""

    name = "crc32c"

    def __init__(self):
        if _crc32c is None:
            raise PgBackupError("Checking CRC32C checksums needs the Python module 'crc32c', which is not installed.",
                                hint="Install python3-crc32c (Debian) or crc32c (pip) for the Python that runs the "
                                     "engine.")
        self.value = 0

    def update(self, data):
        self.value = _crc32c.crc32c(data, self.value)

    def hexdigest(self):
        return crc32c_hex(self.value)


def new_checksum(algorithm):
    """A fresh checksum object for a manifest ``Checksum-Algorithm``; None for NONE."""
    algorithm = (algorithm or "NONE").upper()
    if algorithm == "NONE":
        return None
    if algorithm == "CRC32C":
        return Crc32c()
    if algorithm in HASHLIB_ALGORITHMS:
        return hashlib.new(algorithm.lower())
    raise ManifestError("backup_manifest uses the unknown checksum algorithm '%s'." % algorithm,
                        hint="Verify this backup with pg_verifybackup of the PostgreSQL version that took it.")


def manifest_checksum(raw):
    """(recorded, computed) SHA-256 of a backup_manifest's bytes, the way pg_verifybackup computes it."""
    if not raw.endswith(b"\n"):
        raise ManifestError("backup_manifest does not end with a newline: it is truncated.", hint=DAMAGED_HINT)
    last_line_start = raw.rfind(b"\n", 0, len(raw) - 1) + 1
    if last_line_start == 0:
        raise ManifestError("backup_manifest has fewer than 2 lines: it is not a manifest.", hint=DAMAGED_HINT)
    last_line = raw[last_line_start:].decode("utf-8", "replace")
    marker = '"Manifest-Checksum": "'
    begin = last_line.find(marker)
    end = last_line.find('"', begin + len(marker)) if begin >= 0 else -1
    if begin < 0 or end < 0:
        raise ManifestError("backup_manifest has no Manifest-Checksum line: it is truncated or was edited.",
                            hint=DAMAGED_HINT)
    recorded = last_line[begin + len(marker):end].lower()
    return recorded, hashlib.sha256(raw[:last_line_start]).hexdigest()


def decode_path(entry):
    """A manifest file entry's path: ``Path``, or ``Encoded-Path`` (hex of the bytes, for non-UTF-8 names)."""
    if "Path" in entry:
        return entry["Path"]
    if "Encoded-Path" in entry:
        try:
            return bytes(bytearray.fromhex(entry["Encoded-Path"])).decode("utf-8", "surrogateescape")
        except ValueError:
            raise ManifestError("backup_manifest has an Encoded-Path that is not hex: %r." % entry["Encoded-Path"],
                                hint=DAMAGED_HINT)
    raise ManifestError("backup_manifest has a file entry without a path: %r." % (entry,), hint=DAMAGED_HINT)


def is_ignored(path):
    """pg_verifybackup's should_ignore_relpath() with its default ignore list."""
    for ignored in IGNORED_PATHS:
        if path == ignored or path.startswith(ignored + "/"):
            return True
    return False


class FileEntry(object):
    __slots__ = ("path", "size", "algorithm", "checksum")

    def __init__(self, path, size, algorithm, checksum):
        self.path = path
        self.size = size
        self.algorithm = algorithm
        self.checksum = checksum


class BackupManifest(object):
    """A parsed backup_manifest: ``files`` {path: FileEntry}, ``wal_ranges`` [(timeline, start, end)]."""

    def __init__(self, raw, name="backup_manifest"):
        self.name = name
        recorded, computed = manifest_checksum(raw)
        if recorded != computed:
            raise ManifestError("%s does not match its own checksum (Manifest-Checksum %s, computed %s): it was "
                                "altered or damaged." % (name, recorded, computed), hint=DAMAGED_HINT)
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise ManifestError("%s is not valid JSON: %s." % (name, exc), hint=DAMAGED_HINT)
        self.version = data.get("PostgreSQL-Backup-Manifest-Version")
        if self.version not in SUPPORTED_VERSIONS:
            raise ManifestError("%s has version %r; this collection reads versions %s." % (
                name, self.version, ", ".join(str(v) for v in SUPPORTED_VERSIONS)),
                hint="Verify this backup with pg_verifybackup of the PostgreSQL version that took it.")
        self.system_identifier = data.get("System-Identifier")
        self.files = {}
        for entry in data.get("Files") or []:
            path = decode_path(entry)
            algorithm = str(entry.get("Checksum-Algorithm") or "NONE").upper()
            if algorithm not in CHECKSUM_ALGORITHMS:
                new_checksum(algorithm)  # raises, naming the algorithm
            if path in self.files:
                raise ManifestError("%s lists '%s' twice." % (name, path), hint=DAMAGED_HINT)
            try:
                size = int(entry["Size"])
            except (KeyError, TypeError, ValueError):
                raise ManifestError("%s has no valid size for '%s'." % (name, path), hint=DAMAGED_HINT)
            self.files[path] = FileEntry(path, size, algorithm, str(entry.get("Checksum") or "").lower())
        self.wal_ranges = []
        for item in data.get("WAL-Ranges") or []:
            try:
                self.wal_ranges.append((int(item["Timeline"]), str(item["Start-LSN"]), str(item["End-LSN"])))
            except (KeyError, TypeError, ValueError):
                raise ManifestError("%s has an unreadable WAL range: %r." % (name, item), hint=DAMAGED_HINT)
        if not self.wal_ranges:
            raise ManifestError("%s has no WAL range." % name, hint=DAMAGED_HINT)

    @classmethod
    def load(cls, path):
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except (IOError, OSError) as exc:
            raise ManifestError("backup_manifest '%s' cannot be read: %s." % (path, getattr(exc, "strerror", exc) or exc),
                                hint=DAMAGED_HINT)
        return cls(raw, name="backup_manifest")

    def algorithms(self):
        return sorted(set(entry.algorithm for entry in self.files.values() if not is_ignored(entry.path)))

    def needs_crc32c(self):
        return "CRC32C" in self.algorithms()


class FileCheck(object):
    """The data of one tar member that backup_manifest lists: feed it with ``update``, then ``done``."""

    __slots__ = ("check", "source", "entry", "size", "hasher")

    def __init__(self, check, source, entry, size):
        self.check = check
        self.source = source
        self.entry = entry
        self.size = size
        self.hasher = new_checksum(entry.algorithm)

    def update(self, data):
        if self.hasher is not None:
            self.hasher.update(data)

    def done(self, digest=None):
        """The member's data was all fed; ``digest``: its checksum, computed elsewhere from the same bytes (with
        the entry's algorithm) instead of fed through ``update``."""
        self.check.files_checked += 1
        self.check.bytes_checked += self.size
        if self.hasher is None:
            return
        digest = digest or self.hasher.hexdigest()
        if digest != self.entry.checksum:
            self.check.problem(self.source, "checksum mismatch for '%s' (%s %s, backup_manifest says %s)"
                               % (self.entry.path, self.entry.algorithm, digest, self.entry.checksum))


class ManifestCheck(object):
    """What pg_verifybackup checks, fed one tar member at a time (``member``), then ``finish``."""

    def __init__(self, manifest):
        self.manifest = manifest
        self.seen = set()
        self.problems = []
        self.problem_count = 0
        self.files_checked = 0
        self.bytes_checked = 0

    def problem(self, source, text):
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append("%s: %s" % (source, text) if source else text)

    def member(self, source, path, kind, size):
        """A tar member at backup-relative ``path`` of ``kind`` (file, dir, symlink, other).

        Returns a FileCheck when its data must be read and checked, else None.
        """
        if is_ignored(path):
            return None
        if kind in ("dir", "symlink"):
            # pg_verifybackup checks files only; a tablespace's pg_tblspc/<oid> symlink in base.tar
            # points at what its own <oid>.tar holds.
            return None
        if kind != "file":
            self.problem(source, "'%s' is not a regular file, directory or symbolic link" % path)
            return None
        if path in self.seen:
            self.problem(source, "'%s' is in the backup twice" % path)
            return None
        self.seen.add(path)
        entry = self.manifest.files.get(path)
        if entry is None:
            self.problem(source, "'%s' is in the backup but not in backup_manifest" % path)
            return None
        if size != entry.size:
            self.problem(source, "'%s' has %d bytes, backup_manifest says %d" % (path, size, entry.size))
            return None
        return FileCheck(self, source, entry, size)

    def finish(self):
        """Report what the manifest lists that no tar held."""
        missing = [path for path in sorted(self.manifest.files) if path not in self.seen and not is_ignored(path)]
        if len(missing) > SHOWN_PROBLEMS:  # e.g. the rest of a truncated tar: one line, not hundreds
            self.problem(None, "%d files listed in backup_manifest are not in the backup (%s, ...)"
                         % (len(missing), ", ".join("'%s'" % path for path in missing[:3])))
        else:
            for path in missing:
                self.problem(None, "'%s' is listed in backup_manifest but is not in the backup" % path)
        return self.problems

    def summary(self):
        shown = "; ".join(self.problems[:SHOWN_PROBLEMS])
        more = self.problem_count - min(self.problem_count, SHOWN_PROBLEMS)
        return shown + ("; and %d more" % more if more else "")


def member_path(name, prefix=""):
    """Backup-relative path of a tar member ('./pg_wal/x/' -> 'pg_wal/x'); '' for the archive's own
    root entry; None for a name that would escape the backup (absolute, or with '..')."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        return None
    if not parts:
        return ""
    path = "/".join(parts)
    return prefix + "/" + path if prefix else path


def member_kind(info):
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    return "other"


class TarReader(object):
    """Members of an uncompressed tar stream given as an iterable of byte chunks, read once, in order.

    ``for info in reader:`` yields ``tarfile.TarInfo`` headers; ``reader.data()`` yields the current
    member's data as memoryviews (what is not read is skipped before the next header). A stream
    that ends without tar's end-of-archive block, a damaged header, or anything but zeros after the
    end block raises TarDamaged.
    """

    def __init__(self, chunks, name):
        self.name = name
        self._chunks = iter(chunks)
        self._view = memoryview(b"")
        self._remaining = 0
        self._padding = 0
        self.offset = 0
        self.last_member = None

    def _take(self, limit):
        if not len(self._view):
            for chunk in self._chunks:
                if chunk:
                    self._view = memoryview(chunk)
                    break
            else:
                return None
        piece = self._view[:limit]
        self._view = self._view[limit:]
        self.offset += len(piece)
        return piece

    def _read_exact(self, size):
        parts = []
        wanted = size
        while wanted:
            piece = self._take(wanted)
            if piece is None:
                break
            parts.append(piece.tobytes())
            wanted -= len(piece)
        return b"".join(parts)

    def _skip(self, size):
        while size:
            piece = self._take(size)
            if piece is None:
                raise TarDamaged(self._where("ends in the middle of '%s' (truncated)" % self.last_member))
            size -= len(piece)

    def _where(self, text):
        return "%s %s" % (self.name, text)

    def data(self):
        while self._remaining:
            piece = self._take(self._remaining)
            if piece is None:
                raise TarDamaged(self._where("ends in the middle of '%s' (truncated)" % self.last_member))
            self._remaining -= len(piece)
            yield piece

    def __iter__(self):
        while True:
            self._skip(self._remaining + self._padding)
            self._remaining = self._padding = 0
            block = self._read_exact(BLOCK)
            if len(block) < BLOCK:
                after = "after '%s'" % self.last_member if self.last_member else "at its start"
                raise TarDamaged(self._where("ends without tar's end-of-archive block %s (truncated)" % after))
            if block == ZERO_BLOCK:
                self._check_trailer()
                return
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                after = "after '%s'" % self.last_member if self.last_member else "at its start"
                raise TarDamaged(self._where("has a damaged tar header at byte %d %s (%s)"
                                             % (self.offset - BLOCK, after, exc)))
            if info.type not in tarfile.REGULAR_TYPES + (tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                                                         tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
                raise TarDamaged(self._where("holds a tar header of type %r at '%s', which pg_basebackup does not "
                                             "write" % (info.type, info.name)))
            self.last_member = info.name
            self._remaining = info.size if info.type in tarfile.REGULAR_TYPES else 0
            self._padding = (-self._remaining) % BLOCK
            yield info

    def _check_trailer(self):
        """Only zeros may follow the first end-of-archive block (the second one, and record padding)."""
        while True:
            piece = self._take(1024 * 1024)
            if piece is None:
                return
            if piece.tobytes().strip(b"\0"):
                raise TarDamaged(self._where("has data after tar's end-of-archive block (the archive was damaged "
                                             "after '%s')" % self.last_member))
