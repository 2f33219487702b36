# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import streams
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError


@pytest.mark.parametrize("given, expected", [
    (None, {"method": "zstd", "level": 1}),
    ("zstd", {"method": "zstd", "level": 3}),
    ("zstd:7", {"method": "zstd", "level": 7}),
    ("gzip:9", {"method": "gzip", "level": 9}),
    ("none", {"method": "none", "level": 0}),
    ({"method": "gzip", "level": 1}, {"method": "gzip", "level": 1}),
])
def test_parse_compression(given, expected):
    assert streams.parse_compression(given) == expected


@pytest.mark.parametrize("bad", ["brotli", "zstd:99", "gzip:0", "zstd:fast"])
def test_parse_compression_rejects_bad_input(bad):
    with pytest.raises(PgBackupError):
        streams.parse_compression(bad)


def test_dump_plan_uses_external_zstd_for_custom_and_native_gzip():
    assert streams.dump_plan("custom", {"method": "zstd", "level": 3}, False, 15) == (["-Z", "0"], "zstd", "external")
    assert streams.dump_plan("custom", {"method": "gzip", "level": 9}, False, 15) == (["-Z", "9"], None, "applied_by_pg_dump")
    assert streams.dump_plan("custom", {"method": "gzip", "level": 9}, False, 16)[0] == ["-Z", "gzip:9"]


def test_directory_format_limits_are_explained():
    with pytest.raises(PgBackupError, match="pg_dump 16"):
        streams.dump_plan("directory", {"method": "zstd", "level": 3}, False, 15)
    with pytest.raises(PgBackupError, match="Encryption"):
        streams.dump_plan("directory", {"method": "gzip", "level": 3}, True, 15)


def test_artifact_suffix():
    zstd = {"method": "zstd", "level": 3}
    assert streams.artifact_suffix("custom", zstd, "external", False) == ".dump.zst"
    assert streams.artifact_suffix("custom", zstd, "external", True) == ".dump.zst.age"
    assert streams.artifact_suffix("plain", {"method": "gzip", "level": 6}, "applied_by_pg_dump", False) == ".sql.gz"
    assert streams.artifact_suffix("directory", {"method": "gzip", "level": 6}, "applied_by_pg_dump", False) == ".dir"


def test_recipients_are_validated():
    good = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
    assert streams.validate_recipients([good, " "]) == [good]
    with pytest.raises(PgBackupError, match="Not an age recipient"):
        streams.validate_recipients(["$(rm -rf /)"])


def test_decrypt_without_identity_is_a_clear_error():
    with pytest.raises(PgBackupError, match="no identity"):
        streams.decrypt_stage(None)


def test_globals_restore_keeps_the_connecting_roles_password():
    from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical.restore import keep_own_password
    script = ("CREATE ROLE postgres;\n"
              "ALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:a''b';\n"
              "ALTER ROLE todoapi_app WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:c';\n")
    kept = keep_own_password(script, "postgres")
    assert "ALTER ROLE postgres WITH SUPERUSER LOGIN;" in kept
    assert "todoapi_app WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:c'" in kept
