# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""zstd inside the process, with the Python ``zstandard`` module (Debian: python3-zstandard), for the
WAL archive's compression (``wal_codec.encode_to``) when it is importable: the asynchronous pusher
stores several segments a second, and a ``zstd`` program per segment (start, pipes, a second one to
check) costs as much CPU as the compression. Same format as ``zstd -<level> --check``: one frame with
its content checksum, which any zstd reads. Without the module ``wal_codec`` runs the programs.

The check is the programs' too: the file written is read back and decompressed, and must give exactly
the bytes of the segment (compared, not hashed), end on its frame's end, with nothing after it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os

from ..core import fsutil

try:
    import zstandard
except ImportError:  # the third-party module is optional: wal_codec then runs the zstd program
    zstandard = None

WHOLE_MAX = 64 * 1024 * 1024  # PostgreSQL's default segment is 16 MiB; wal_segment_size goes up to 1 GiB


def available():
    return zstandard is not None


def compress_file(source, destination, level, size, durable=True, digest=False, whole_max=WHOLE_MAX):
    """Write ``source`` (``size`` bytes) compressed to the new private file ``destination`` (fsynced when
    ``durable``), reading it once; returns the sha256 of ``source`` when ``digest``, else None. A segment
    up to ``whole_max`` bytes is compressed in one call (a fifth less CPU than streaming it), a larger one
    a chunk at a time. zstandard.ZstdError (e.g. the file is not ``size`` bytes long) and OSError pass through."""
    hasher = hashlib.sha256() if digest else None
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsutil.FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        if size <= whole_max:
            with open(source, "rb") as handle:
                data = handle.read(size + 1)
            if len(data) != size:
                raise zstandard.ZstdError("'%s' is %d bytes long, not %d" % (source, len(data), size))
            if hasher is not None:
                hasher.update(data)
            out.write(compressor.compress(data))
        else:
            stream = compressor.compressobj(size=size)
            for chunk in fsutil.file_chunks(source):
                if hasher is not None:
                    hasher.update(chunk)
                out.write(stream.compress(chunk))
            out.write(stream.flush())
        if durable:
            out.flush()
            os.fsync(out.fileno())
    return hasher.hexdigest() if hasher is not None else None


def decompresses_to(encoded, source, size):
    """Whether the zstd file ``encoded`` decompresses to exactly the ``size`` bytes of ``source``: one
    complete frame (its checksum verified by the library), nothing after it."""
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    seen = 0
    try:
        with open(source, "rb") as original:
            for chunk in fsutil.file_chunks(encoded):
                if decompressor.eof:
                    return False  # bytes after the frame
                data = decompressor.decompress(chunk)
                if original.read(len(data)) != data:
                    return False
                seen += len(data)
            return decompressor.eof and not decompressor.unused_data and seen == size and not original.read(1)
    except zstandard.ZstdError:
        return False
