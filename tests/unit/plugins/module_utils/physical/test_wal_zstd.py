# -*- coding: utf-8 -*-
"""zstd in the process (python zstandard) for archived WAL: the zstd program reads what it writes, it
reads what the program writes, and its check refuses every copy that does not decompress to the segment."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import subprocess

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_archive
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_codec
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_zstd

SEG = "000000010000000000000002"
MB = 1024 * 1024


@pytest.fixture
def segment(tmp_path):
    """A 2 MiB WAL-like file: compressible runs and random pages, so it spans several read chunks."""
    path = tmp_path / SEG
    path.write_bytes((b"\0" * 6144 + os.urandom(2048)) * (2 * MB // 8192))
    return str(path)


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("whole_max", [wal_zstd.WHOLE_MAX, 0], ids=["in one call", "a chunk at a time"])
def test_the_zstd_program_reads_it_and_the_digest_is_the_segments(segment, tmp_path, whole_max):
    encoded = str(tmp_path / "seg.zst")
    digest = wal_zstd.compress_file(segment, encoded, 3, 2 * MB, digest=True, whole_max=whole_max)
    assert digest == hashlib.sha256(read(segment)).hexdigest()
    assert os.stat(encoded).st_mode & 0o777 == 0o600 and os.path.getsize(encoded) < MB
    assert subprocess.run(["zstd", "-q", "-d", "-c", encoded], capture_output=True, check=True).stdout == read(segment)
    assert subprocess.run(["zstd", "-q", "-t", encoded], check=False).returncode == 0  # content checksum present
    assert wal_zstd.decompresses_to(encoded, segment, 2 * MB)
    assert wal_zstd.compress_file(segment, str(tmp_path / "again.zst"), 1, 2 * MB) is None


def test_it_accepts_what_the_zstd_program_writes(segment, tmp_path):
    encoded = str(tmp_path / "program.zst")
    subprocess.run(["zstd", "-q", "-3", "--check", "-f", segment, "-o", encoded], check=True)
    assert wal_zstd.decompresses_to(encoded, segment, 2 * MB)


@pytest.mark.parametrize("damage", ["flipped byte", "checksum cut off", "bytes appended", "second frame", "other segment"])
def test_a_damaged_copy_is_refused(segment, tmp_path, damage):
    encoded = str(tmp_path / "seg.zst")
    wal_zstd.compress_file(segment, encoded, 3, 2 * MB)
    data = bytearray(read(encoded))
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x40
    elif damage == "checksum cut off":
        del data[-4:]
    elif damage == "bytes appended":
        data += b"\0" * 16
    elif damage == "second frame":
        data += bytes(data)
    with open(encoded, "wb") as handle:
        handle.write(bytes(data))
    if damage == "other segment":
        with open(segment, "r+b") as handle:
            handle.seek(MB + 100)
            handle.write(b"X")
    assert not wal_zstd.decompresses_to(encoded, segment, 2 * MB)


@pytest.mark.parametrize("size", [4 * MB, MB])
def test_a_segment_that_is_not_its_size_is_not_compressed(segment, tmp_path, size):
    with pytest.raises(wal_archive.WalArchiveError, match="Compressing"):
        wal_codec.encode_to(segment, str(tmp_path / "out.zst"), SEG + ".zst", "zstd", 3, [], size)
    with pytest.raises(wal_zstd.zstandard.ZstdError):
        wal_zstd.compress_file(segment, str(tmp_path / "chunked.zst"), 3, size, whole_max=0)


def test_the_archive_stores_with_either_codec_the_same_content(segment, tmp_path, monkeypatch):
    """In the process when zstandard is there, with the zstd program when it is not: restore-wal reads both."""
    for codec in ("module", "program"):
        if codec == "program":
            monkeypatch.setattr(wal_zstd, "zstandard", None)
        archive = tmp_path / codec
        archive.mkdir()
        result = wal_archive.archive_segment(segment, SEG, str(archive), compress="zstd")
        assert result["path"].endswith(".zst")
        target = str(tmp_path / ("restored-" + codec))
        wal_archive.restore_segment(SEG, target, str(archive))
        assert read(target) == read(segment)


def test_a_copy_that_cannot_be_written_is_a_clear_failure(segment, tmp_path):
    with pytest.raises(wal_archive.WalArchiveError, match="Cannot write the compressed copy"):
        wal_codec.encode_to(segment, str(tmp_path / "missing-dir" / "out.zst"), SEG + ".zst", "zstd", 3, [], 2 * MB)
