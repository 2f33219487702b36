# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import io
import json
import tarfile

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import backup_manifest

needs_crc32c = pytest.mark.skipif(not backup_manifest.crc32c_available(), reason="the crc32c Python module is not installed")


def crc32c_of(data):
    check = backup_manifest.Crc32c()
    check.update(data)
    return check.hexdigest()


def make_manifest(files, wal_ranges=None, tamper=None):
    """A backup_manifest laid out as pg_basebackup 15 writes it, with its SHA-256 line."""
    lines = ['{ "PostgreSQL-Backup-Manifest-Version": 1,', '"Files": [']
    entries = []
    for path, data, algorithm in files:
        entry = {"Path": path, "Size": len(data), "Last-Modified": "2024-01-06 02:00:00 GMT"}
        if algorithm == "CRC32C":
            entry.update({"Checksum-Algorithm": "CRC32C", "Checksum": crc32c_of(data)})
        elif algorithm != "NONE":
            entry.update({"Checksum-Algorithm": algorithm, "Checksum": hashlib.new(algorithm.lower(), data).hexdigest()})
        entries.append(json.dumps(entry))
    lines.append(",\n".join(entries))
    lines += ["],", '"WAL-Ranges": [']
    lines.append(",\n".join('{ "Timeline": %d, "Start-LSN": "%s", "End-LSN": "%s" }' % r
                            for r in (wal_ranges or [(1, "0/2000028", "0/2000100")])))
    lines.append("],")
    body = ("\n".join(lines) + "\n").encode("utf-8")
    if tamper:
        body = tamper(body)
    return body + ('"Manifest-Checksum": "%s"}\n' % hashlib.sha256(body).hexdigest()).encode("utf-8")


def make_tar(members, end=True):
    buffer = io.BytesIO()
    tar = tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT)
    for name, data in members:
        if data is None:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        else:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    if end:
        tar.close()
        return buffer.getvalue()
    return buffer.getvalue()  # no end-of-archive blocks


def chunked(raw, size):
    return [raw[i:i + size] for i in range(0, len(raw), size)]


# CRC32C in PostgreSQL's form


def test_crc32c_hex_is_the_little_endian_bytes_of_the_final_crc():
    # CRC-32C("123456789") = 0xE3069283 (RFC 3720's check value); PostgreSQL prints its bytes in memory order.
    assert backup_manifest.crc32c_hex(0xE3069283) == "839206e3"
    assert backup_manifest.crc32c_hex(0) == "00000000"


@needs_crc32c
def test_crc32c_matches_values_from_a_real_backup_manifest():
    assert crc32c_of(b"123456789") == "839206e3"
    # pg_basebackup 15 wrote these for PG_VERSION ("15\n") and an empty tablespace_map.
    assert crc32c_of(b"15\n") == "8a744722"
    assert crc32c_of(b"") == "00000000"
    check = backup_manifest.Crc32c()
    for piece in (b"1", b"2345", memoryview(b"6789")):
        check.update(piece)
    assert check.hexdigest() == "839206e3"


def test_crc32c_without_the_module_says_what_to_install(monkeypatch):
    monkeypatch.setattr(backup_manifest, "_crc32c", None)
    assert not backup_manifest.crc32c_available()
    with pytest.raises(backup_manifest.PgBackupError, match="crc32c") as failure:
        backup_manifest.new_checksum("CRC32C")
    assert "python3-crc32c" in failure.value.hint


def test_new_checksum_knows_postgresql_algorithms():
    assert backup_manifest.new_checksum("NONE") is None
    assert backup_manifest.new_checksum("SHA256").name == "sha256"
    assert backup_manifest.new_checksum("sha512").name == "sha512"
    with pytest.raises(backup_manifest.ManifestError, match="unknown checksum algorithm 'MD5'"):
        backup_manifest.new_checksum("MD5")


# Parsing backup_manifest


def test_manifest_is_parsed_and_its_checksum_checked():
    raw = make_manifest([("PG_VERSION", b"15\n", "SHA256"), ("global/pg_control", b"\0" * 8192, "SHA224")],
                        wal_ranges=[(1, "0/2000028", "0/2000100"), (2, "0/3000000", "0/3000100")])
    manifest = backup_manifest.BackupManifest(raw)
    assert manifest.version == 1
    assert sorted(manifest.files) == ["PG_VERSION", "global/pg_control"]
    assert manifest.files["PG_VERSION"].size == 3 and manifest.files["PG_VERSION"].algorithm == "SHA256"
    assert manifest.wal_ranges == [(1, "0/2000028", "0/2000100"), (2, "0/3000000", "0/3000100")]
    assert manifest.algorithms() == ["SHA224", "SHA256"] and not manifest.needs_crc32c()


def test_altered_manifest_fails_its_own_checksum():
    raw = make_manifest([("PG_VERSION", b"15\n", "SHA256")])
    altered = raw.replace(b'"Size": 3', b'"Size": 4')
    with pytest.raises(backup_manifest.ManifestError, match="does not match its own checksum"):
        backup_manifest.BackupManifest(altered)
    with pytest.raises(backup_manifest.ManifestError, match="does not end with a newline"):
        backup_manifest.BackupManifest(raw[:-1])
    with pytest.raises(backup_manifest.ManifestError, match="no Manifest-Checksum"):
        backup_manifest.BackupManifest(raw.rsplit(b"\n", 2)[0] + b"\n}\n")


def test_encoded_path_and_version_checks():
    raw = make_manifest([("x", b"", "NONE")], tamper=lambda body: body.replace(
        b'"Path": "x"', b'"Encoded-Path": "%s"' % "b\xe4se".encode("latin-1").hex().encode()))
    manifest = backup_manifest.BackupManifest(raw)
    assert list(manifest.files) == [b"b\xe4se".decode("utf-8", "surrogateescape")]
    newer = make_manifest([("x", b"", "NONE")], tamper=lambda body: body.replace(b"Version\": 1", b"Version\": 9"))
    with pytest.raises(backup_manifest.ManifestError, match="version 9"):
        backup_manifest.BackupManifest(newer)


def test_ignore_list_is_pg_verifybackups():
    for path in ("backup_manifest", "pg_wal", "pg_wal/000000010000000000000002", "pg_wal/archive_status/x.done",
                 "postgresql.auto.conf", "recovery.signal", "standby.signal"):
        assert backup_manifest.is_ignored(path), path
    for path in ("pg_wallet", "base/1/1259", "postgresql.conf", "global/pg_control", "backup_label"):
        assert not backup_manifest.is_ignored(path), path


@pytest.mark.parametrize("name, prefix, expected", [
    ("base/1/1259", "", "base/1/1259"),
    ("./pg_wal/archive_status/", "", "pg_wal/archive_status"),
    ("./", "", ""),
    ("PG_15_202209061/16385/16386", "pg_tblspc/16384", "pg_tblspc/16384/PG_15_202209061/16385/16386"),
    ("000000010000000000000002", "pg_wal", "pg_wal/000000010000000000000002"),
    ("../etc/passwd", "", None),
    ("/etc/passwd", "", None),
])
def test_member_path(name, prefix, expected):
    assert backup_manifest.member_path(name, prefix) == expected


# The check itself


def check_tar(manifest_files, members, source="base.tar"):
    manifest = backup_manifest.BackupManifest(make_manifest(manifest_files))
    check = backup_manifest.ManifestCheck(manifest)
    reader = backup_manifest.TarReader(chunked(make_tar(members), 700), source)
    for info in reader:
        path = backup_manifest.member_path(info.name)
        file_check = check.member(source, path, backup_manifest.member_kind(info), info.size)
        if file_check is not None:
            for piece in reader.data():
                file_check.update(piece)
            file_check.done()
    check.finish()
    return check


FILES = [("PG_VERSION", b"15\n", "SHA256"), ("base/1/1259", b"a" * 9000, "SHA256"),
         ("postgresql.auto.conf", b"# auto\n", "SHA256")]


def test_a_matching_tar_has_no_problems():
    check = check_tar(FILES, [("base", None), ("PG_VERSION", b"15\n"), ("base/1/1259", b"a" * 9000),
                              ("postgresql.auto.conf", b"# changed by -R\n"), ("standby.signal", b""),
                              ("pg_wal/000000010000000000000002", b"w" * 100)])
    assert check.problems == [] and check.files_checked == 2 and check.bytes_checked == 9003


def test_each_kind_of_damage_is_named():
    check = check_tar(FILES, [("PG_VERSION", b"16\n"), ("base/1/1259", b"a" * 9001), ("base/1/9999", b"x")])
    assert check.problems == [
        "base.tar: checksum mismatch for 'PG_VERSION' (SHA256 %s, backup_manifest says %s)"
        % (hashlib.sha256(b"16\n").hexdigest(), hashlib.sha256(b"15\n").hexdigest()),
        "base.tar: 'base/1/1259' has 9001 bytes, backup_manifest says 9000",
        "base.tar: 'base/1/9999' is in the backup but not in backup_manifest",
    ]
    missing = check_tar(FILES, [("PG_VERSION", b"15\n")])
    assert missing.problems == ["'base/1/1259' is listed in backup_manifest but is not in the backup"]
    twice = check_tar(FILES, [("PG_VERSION", b"15\n"), ("PG_VERSION", b"15\n"), ("base/1/1259", b"a" * 9000)])
    assert twice.problems == ["base.tar: 'PG_VERSION' is in the backup twice"]
    assert twice.summary() == twice.problems[0]


@needs_crc32c
def test_crc32c_files_are_checked():
    files = [("PG_VERSION", b"15\n", "CRC32C")]
    assert check_tar(files, [("PG_VERSION", b"15\n")]).problems == []
    assert check_tar(files, [("PG_VERSION", b"14\n")]).problems[0].startswith(
        "base.tar: checksum mismatch for 'PG_VERSION' (CRC32C ")


# Reading tar streams


@pytest.mark.parametrize("chunk", [1, 511, 512, 4096, 1 << 20])
def test_tar_reader_reads_members_whatever_the_chunking(chunk):
    raw = make_tar([("a", b"1" * 513), ("dir", None), ("b", b""), ("c", b"3" * 1024)])
    reader = backup_manifest.TarReader(chunked(raw, chunk), "x.tar")
    seen = []
    for info in reader:
        seen.append((info.name, b"".join(bytes(p) for p in reader.data()) if info.name != "c" else None))
    assert seen == [("a", b"1" * 513), ("dir", b""), ("b", b""), ("c", None)]


def test_tar_reader_detects_truncation_garbage_and_bad_headers():
    raw = make_tar([("a", b"1" * 2000), ("b", b"2" * 10)])
    with pytest.raises(backup_manifest.TarDamaged, match="ends in the middle of 'a'"):
        for info in backup_manifest.TarReader([raw[:1500]], "x.tar"):
            pass
    with pytest.raises(backup_manifest.TarDamaged, match="without tar's end-of-archive block after 'b'"):
        for info in backup_manifest.TarReader([make_tar([("a", b"1"), ("b", b"2")], end=False)], "x.tar"):
            pass
    with pytest.raises(backup_manifest.TarDamaged, match="data after tar's end-of-archive block"):
        for info in backup_manifest.TarReader([raw + b"garbage" + b"\0" * 505], "x.tar"):
            pass
    damaged = bytearray(raw)
    damaged[2560 + 100] ^= 0xFF  # the mode field of b's header: its checksum no longer matches
    with pytest.raises(backup_manifest.TarDamaged, match="damaged tar header at byte 2560 after 'a'"):
        for info in backup_manifest.TarReader([bytes(damaged)], "x.tar"):
            pass
