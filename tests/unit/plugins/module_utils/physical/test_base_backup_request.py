# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_request
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import backup_manifest
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError

CPUS = os.cpu_count() or 1


@pytest.mark.parametrize("given, expected", [
    ("server-zstd:level=3,workers=auto", {"method": "zstd", "location": "server", "level": 3, "workers": "auto"}),
    ("server-zstd", {"method": "zstd", "location": "server", "level": None, "workers": "auto"}),
    ("zstd:5", {"method": "zstd", "location": "server", "level": 5, "workers": "auto"}),
    ("server-zstd:level=5,workers=4", {"method": "zstd", "location": "server", "level": 5, "workers": 4}),
    ("server-zstd:workers=0", {"method": "zstd", "location": "server", "level": None, "workers": 0}),
    ("client-zstd:level=1", {"method": "zstd", "location": "client", "level": 1, "workers": "auto"}),
    ("client-gzip:5", {"method": "gzip", "location": "client", "level": 5, "workers": None}),
    ("server-lz4:level=12", {"method": "lz4", "location": "server", "level": 12, "workers": None}),
    ("none", {"method": "none", "location": None, "level": None, "workers": None}),
    (None, {"method": "none", "location": None, "level": None, "workers": None}),
])
def test_parse_compression_accepts_the_detail_form(given, expected):
    assert base_backup_request.parse_compression(given, "tar") == expected


@pytest.mark.parametrize("bad, message", [
    ("server-brotli", "Unknown base backup compression"),
    ("server-gzip:level=5,workers=2", "only zstd compresses with workers"),
    ("server-zstd:workers=many", "workers must be a number or auto"),
    ("server-zstd:level=fast", "level must be a number"),
    ("server-zstd:long", "unknown setting 'long'"),
    ("server-zstd:level=23", "out of range for zstd"),
    ("server-gzip:10", "out of range for gzip"),
    ("none:1", "none takes no level"),
])
def test_parse_compression_rejects_bad_details(bad, message):
    with pytest.raises(PgBackupError, match=message):
        base_backup_request.parse_compression(bad, "tar")


def test_client_compression_is_refused_for_plain_format():
    with pytest.raises(PgBackupError, match="Client-side compression is not possible"):
        base_backup_request.parse_compression("client-zstd", "plain")
    assert base_backup_request.parse_compression("server-zstd", "plain")["location"] == "server"


@pytest.mark.parametrize("given, argument", [
    (base_backup_request.DEFAULT_COMPRESSION, "server-zstd:level=1,workers=%d" % CPUS),
    ("server-zstd", "server-zstd:workers=%d" % CPUS),
    ("server-zstd:level=5,workers=4", "server-zstd:level=5,workers=4"),
    ("server-zstd:level=5,workers=0", "server-zstd:5"),
    ("server-zstd:workers=0", "server-zstd"),
    ("client-gzip:5", "client-gzip:5"),
    ("server-lz4", "server-lz4"),
    ("none", "none"),
])
def test_compression_argument_resolves_auto_workers(given, argument):
    assert base_backup_request.compression_argument(base_backup_request.parse_compression(given, "tar")) == argument


def test_resolve_workers_uses_the_cpu_count(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    compression = base_backup_request.parse_compression(base_backup_request.DEFAULT_COMPRESSION, "tar")
    assert base_backup_request.resolve_workers(compression)["workers"] == 8
    assert compression["workers"] == "auto", "the parsed request is left as it was"
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert base_backup_request.resolve_workers(compression)["workers"] == 1


def test_manifest_checksums_auto_follows_the_crc32c_module(monkeypatch):
    monkeypatch.setattr(backup_manifest, "_crc32c", object())
    assert base_backup_request.manifest_checksum_algorithm("auto") == "CRC32C"
    monkeypatch.setattr(backup_manifest, "_crc32c", None)
    assert base_backup_request.manifest_checksum_algorithm("auto") == "SHA256"
    assert base_backup_request.manifest_checksum_algorithm("crc32c") == "CRC32C"
    assert base_backup_request.manifest_checksum_algorithm("SHA512") == "SHA512"
    with pytest.raises(PgBackupError, match="Unknown manifest checksum algorithm 'MD5'"):
        base_backup_request.manifest_checksum_algorithm("MD5")
