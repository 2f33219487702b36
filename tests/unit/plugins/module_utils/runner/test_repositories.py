# -*- coding: utf-8 -*-
"""The repositories of a config (plugins/module_utils/runner/repositories.py): picked by name or
position, opened through storage/factory with the secrets of their own 0600 credentials file."""

from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import repositories
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.config import ConfigError, check_config
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository

ACCESS_KEY, SECRET_KEY = "AKIAEXAMPLEONLY12345", "only-in-the-credentials-file"


def entries(*extra):
    return check_config({"repositories": ["/srv/first"] + list(extra)})["repositories"]


def test_a_repository_is_picked_by_name_or_by_position_from_one():
    found = entries({"name": "offsite", "location": "/mnt/offsite"})
    assert repositories.choose(found)["location"] == "/srv/first"
    assert repositories.choose(found, "offsite") is repositories.choose(found, "2") is found[1]
    assert repositories.choose(found, "repo1") is found[0]
    with pytest.raises(PgBackupError) as missing:
        repositories.choose(found, "3")
    assert "No repository '3'" in str(missing.value) and "1=repo1, 2=offsite" in str(missing.value)


def test_a_local_repository_is_a_directory(tmp_path):
    opened = repositories.open_entry(entries()[0])
    assert isinstance(opened, LocalRepository) and opened.path == "/srv/first"


def write_secret(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_s3_credentials_come_from_the_repositorys_own_file_only_while_it_is_opened(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nowhere/else")
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    credentials = write_secret(tmp_path / "s3.credentials",
                               "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (ACCESS_KEY, SECRET_KEY))
    entry = entries({"location": "s3://bucket/db01", "credentials_file": credentials,
                     "options": {"endpoint_url": "http://127.0.0.1:9", "region": "eu-west-1"}})[1]
    opened = repositories.open_entry(entry)
    assert opened.client.meta.region_name == "eu-west-1"
    assert opened.client._request_signer._credentials.get_frozen_credentials().access_key == ACCESS_KEY
    assert os.environ["AWS_SHARED_CREDENTIALS_FILE"] == "/nowhere/else", "another repository must not see the file"
    assert SECRET_KEY not in repr(opened)


def test_a_credentials_file_others_may_read_is_refused(tmp_path):
    credentials = write_secret(tmp_path / "azure.credentials", "DefaultEndpointsProtocol=http;AccountName=x;AccountKey=eA==",
                               mode=0o644)
    entry = entries({"name": "blob", "location": "azure://backups/db01", "credentials_file": credentials})[1]
    with pytest.raises(PgBackupError) as refused:
        repositories.open_entry(entry)
    assert "Credentials file of repository 'blob'" in str(refused.value) and "0644" in str(refused.value)


def test_azure_and_sftp_get_their_credentials_file_as_their_own_option(tmp_path):
    connection_string = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=eA==;"
                         "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;")
    azure = entries({"location": "azure://backups/db01", "options": {"max_concurrency": 2},
                     "credentials_file": write_secret(tmp_path / "azure.credentials", connection_string)})[1]
    opened = repositories.open_entry(azure)
    assert opened.client.account_name == "devstoreaccount1"
    key = write_secret(tmp_path / "id_ed25519", "not parsed before the first connection\n")
    sftp = entries({"location": "sftp://backup@127.0.0.1:2222/srv/backups", "credentials_file": key,
                    "options": {"timeout": 5}})[1]
    opened = repositories.open_entry(sftp)
    assert (opened.key_file, opened.port, opened.timeout) == (key, 2222, 5)


@pytest.mark.parametrize("entry, key, message", [
    ({"location": "s3://b/p", "options": {"aws_secret_access_key": "x"}}, "repositories[1].options",
     "holds secrets (aws_secret_access_key)"),
    ({"location": "azure://backups", "options": {"sas_token": "x"}}, "repositories[1].options", "holds secrets (sas_token)"),
    ({"location": "sftp://u@h/p", "options": {"key_passphrase": "x"}}, "repositories[1].options", "holds secrets"),
    ({"location": "s3://b/p", "options": {"bucket": "x"}}, "repositories[1].options",
     "has setting(s) a s3 repository does not know: bucket."),
    ({"location": "/mnt/x", "credentials_file": "/etc/x"}, "repositories[1].credentials_file",
     "is for a remote repository's secrets"),
    ({"location": "/mnt/x", "name": "2"}, "repositories[1].name", "must start with a letter"),
    ({"location": "/mnt/x", "retention": {"keep_last": -1}}, "repositories[1].retention", "is not valid"),
    ({"location": ""}, "repositories[1].location", "must be a directory or a URL"),
    ({"location": "/mnt/x", "path": "/y"}, "repositories[1]", "has unknown key(s): path."),
    ({"location": "/mnt/x", "wal_archive": "s3://b/wal"}, "repositories[1].wal_archive",
     "is a s3 URL but the repository is local"),
    ({"location": "/mnt/x", "wal_archive": 5}, "repositories[1].wal_archive", "must be a directory or a URL"),
])
def test_a_bad_entry_is_refused_naming_it(entry, key, message):
    with pytest.raises(ConfigError) as failure:
        entries(entry)
    assert failure.value.key == key and message in str(failure.value)
