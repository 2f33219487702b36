# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import io
import os
import shutil
import tarfile

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.pipeline import Stage
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_tar
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_wal_tar

SEGMENT = "000000010000000000000002"
SEGMENT_SIZE = 16 * 1024 * 1024
needs_lz4 = pytest.mark.skipif(not shutil.which("lz4"), reason="the lz4 program is not installed")


@pytest.fixture(scope="module")
def wal_tar_bytes():
    """pg_wal.tar as pg_basebackup streams it: one 16 MiB segment, records at its start, zeros after them."""
    buffer = io.BytesIO()
    segment = bytes(range(256)) * 64 + b"\0" * (SEGMENT_SIZE - 16384)
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(SEGMENT)
        info.size = len(segment)
        tar.addfile(info, io.BytesIO(segment))
        tar.addfile(tarfile.TarInfo("archive_status"))
    return buffer.getvalue()


def artifact_with(tmp_path, wal_tar_bytes, name="pg_wal.tar"):
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "base.tar").write_bytes(b"")
    (artifact / name).write_bytes(wal_tar_bytes)
    return str(artifact)


def decompressed(path):
    stream = base_backup_tar.TarStream(path)
    try:
        data = b"".join(bytes(chunk) for chunk in stream.chunks)
        stream.finish()
    finally:
        stream.abort()
    return data


@pytest.mark.parametrize("compression, suffix, level", [
    ({"method": "zstd", "location": "server", "level": 3, "workers": 2}, ".zst", 3),
    ({"method": "zstd", "location": "server", "level": 22, "workers": 0}, ".zst", 22),
    ({"method": "gzip", "location": "server", "level": None, "workers": None}, ".gz", 1),
    pytest.param({"method": "lz4", "location": "server", "level": 4, "workers": None}, ".lz4", 4, marks=needs_lz4),
])
def test_wal_tar_is_compressed_checked_and_replaced(tmp_path, wal_tar_bytes, compression, suffix, level):
    artifact = artifact_with(tmp_path, wal_tar_bytes)
    record = base_backup_wal_tar.compress_wal_tar(artifact, compression)

    assert sorted(os.listdir(artifact)) == ["base.tar", "pg_wal.tar" + suffix]
    stored = os.path.join(artifact, "pg_wal.tar" + suffix)
    assert hashlib.sha256(decompressed(stored)).digest() == hashlib.sha256(wal_tar_bytes).digest()
    assert record["file"] == "pg_wal.tar" + suffix and record["applied"] == "engine"
    assert record["method"] == compression["method"] and record["level"] == level
    assert record["bytes_before"] == len(wal_tar_bytes) and record["bytes"] == os.path.getsize(stored)
    assert record["bytes"] < len(wal_tar_bytes) // 50, "a mostly-zero segment compresses to a few percent"
    assert base_backup_tar.tar_members(artifact) == ["base.tar", "pg_wal.tar" + suffix]
    assert base_backup_wal_tar.wal_tar_name(artifact) == "pg_wal.tar" + suffix


def test_extraction_reads_the_compressed_wal_tar(tmp_path, wal_tar_bytes):
    artifact = artifact_with(tmp_path, wal_tar_bytes)
    base_backup_wal_tar.compress_wal_tar(artifact, {"method": "zstd", "level": 3, "workers": 1})
    os.unlink(os.path.join(artifact, "base.tar"))
    with tarfile.open(os.path.join(artifact, "base.tar"), "w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("PG_VERSION")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"18\n"))
    data_dir = tmp_path / "data"
    base_backup_tar.extract_backup(artifact, str(data_dir))
    assert (data_dir / "pg_wal" / SEGMENT).stat().st_size == SEGMENT_SIZE


@pytest.mark.parametrize("name, compression, applied", [
    ("pg_wal.tar", {"method": "none", "location": None, "level": None, "workers": None}, "none"),
    ("pg_wal.tar.gz", {"method": "gzip", "location": "client", "level": 1, "workers": None},
     "applied_by_pg_basebackup"),
])
def test_wal_tar_left_as_it_is(tmp_path, wal_tar_bytes, name, compression, applied):
    artifact = artifact_with(tmp_path, wal_tar_bytes, name)
    assert base_backup_wal_tar.compress_wal_tar(artifact, compression) == {"file": name, "applied": applied}
    assert sorted(os.listdir(artifact)) == ["base.tar", name]
    assert (tmp_path / "artifact" / name).read_bytes() == wal_tar_bytes


def test_no_wal_tar_no_record(tmp_path):
    (tmp_path / "base.tar.zst").write_bytes(b"")
    assert base_backup_wal_tar.compress_wal_tar(str(tmp_path), {"method": "zstd", "level": 3}) is None


@pytest.mark.parametrize("script, match", [
    # valid zstd, but not of this tar
    ("cat > /dev/null; printf other | zstd -q -c", r"does not decompress to the original \(%d bytes, sha256 [0-9a-f]{64}; "
                                                   r"decompressed: 5 bytes, [0-9a-f]{64}\)"),
    # the compressed file cut short, as a full disk or a lost write would leave it
    ("zstd -q -c | head -c 64", r"does not decompress to the original .*decompressed: None bytes, cannot be "
                                r"decompressed: zstd"),
    # one byte of the compressed frame changed
    ("zstd -q -c > \"$TMPDIR/z\"; printf '\\377' | dd of=\"$TMPDIR/z\" bs=1 seek=20 conv=notrunc 2>/dev/null; "
     "cat \"$TMPDIR/z\"", r"does not decompress to the original"),
    ("cat > /dev/null; echo 'zstd: no space left' >&2; exit 1", r"Cannot compress pg_wal.tar of the new base backup: "
                                                                r"damaging-zstd exited with status 1: zstd: no space"),
])
def test_a_bad_compressed_file_fails_and_keeps_the_original(tmp_path, wal_tar_bytes, monkeypatch, script, match):
    artifact = artifact_with(tmp_path, wal_tar_bytes)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(base_backup_wal_tar, "compress_stage",
                        lambda method, level, workers=0: Stage(["sh", "-c", script], name="damaging-zstd"))
    with pytest.raises(PgBackupError, match=match % len(wal_tar_bytes) if "%d" in match else match) as failure:
        base_backup_wal_tar.compress_wal_tar(artifact, {"method": "zstd", "level": 3, "workers": 1})
    assert "not published" in failure.value.hint
    assert sorted(os.listdir(artifact)) == ["base.tar", "pg_wal.tar"]
    assert (tmp_path / "artifact" / "pg_wal.tar").read_bytes() == wal_tar_bytes
