# -*- coding: utf-8 -*-
"""How a remote WAL archive is opened from the helper's config: which settings it takes, that a secret is only
read from a private credentials file. (Archiving into real S3/Azure/SFTP servers: tests/integration/test_wal_remote.py.)"""

from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_remote

pytest.importorskip("boto3")


def credentials(tmp_path, text, mode=0o600):
    path = tmp_path / "credentials"
    path.write_text(text)
    os.chmod(str(path), mode)
    return str(path)


def test_only_urls_of_the_three_back_ends_are_remote():
    assert [wal_remote.is_remote(x) for x in ("s3://b/p", "AZURE://c/p", "sftp://u@h/p", "/var/wal", "", None)] == [
        True, True, True, False, False, False]
    with pytest.raises(PgBackupError, match="not a remote WAL archive URL"):
        wal_remote.open_remote_archive("gs://bucket/wal")


@pytest.mark.parametrize("key", ["aws_secret_key", "azure_connection_string", "sftp_key_passphrase", "s3_chunk_size"])
def test_secrets_and_unknown_settings_are_refused_in_the_options(key):
    with pytest.raises(PgBackupError, match="Unknown WAL archive storage option.*%s" % key):
        wal_remote.open_remote_archive("s3://bucket/wal", {key: "x"})


def test_a_credentials_file_others_can_read_is_refused(tmp_path):
    path = credentials(tmp_path, "[default]\naws_access_key_id = A\naws_secret_access_key = S\n", mode=0o644)
    with pytest.raises(PgBackupError, match="group or others may read it"):
        wal_remote.open_remote_archive("s3://bucket/wal", {"s3_region": "us-east-1"}, path)


def test_aws_credentials_come_from_the_profiles_section(tmp_path):
    path = credentials(tmp_path, "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n\n"
                                 "[wal]\naws_access_key_id = A2\naws_secret_access_key = S2\naws_session_token = T2\n")
    assert wal_remote._aws_credentials(path, None) == {"access_key": "A1", "secret_key": "S1", "session_token": None}
    assert wal_remote._aws_credentials(path, "wal") == {"access_key": "A2", "secret_key": "S2", "session_token": "T2"}
    with pytest.raises(PgBackupError, match=r"has no \[other\] section"):
        wal_remote._aws_credentials(path, "other")
    archive = wal_remote.open_remote_archive("s3://bucket/wal/db1", {"s3_region": "us-east-1", "s3_profile": "wal"}, path)
    assert archive.url == "s3://bucket/wal/db1" and archive.url_of("00000002.history") == "s3://bucket/wal/db1/00000002.history"
    assert "S2" not in repr(archive)
