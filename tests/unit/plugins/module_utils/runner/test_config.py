# -*- coding: utf-8 -*-
"""The runner's config (plugins/module_utils/runner/config.py): defaults, the normal form of every
value, and a clear error naming the setting for every value the runner would refuse."""

from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import config as runner_config
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.config import ConfigError, check_config, load_config


def test_defaults_and_aliases(write_config):
    config = load_config(write_config(databases=None, database="TodoDb"))
    assert config["databases"] == ["TodoDb"]
    assert config["format"] == "custom" and config["compression"] == "zstd:1" and config["lock_wait_seconds"] == 5
    assert check_config({}) == dict(
        runner_config.DEFAULTS, cluster_name="main", log_file="/var/log/todoapi_backup.log", lock_file="/run/lock/todoapi-pgbackup.lock",
        state_dir="/var/lib/todoapi-pgbackup", repositories=[{"name": "repo1", "location": "/var/backups/todoapi",
                                                              "options": {}, "credentials_file": None, "retention": None,
                                                              "wal_archive": None}])
    assert check_config({"databases": "One"})["databases"] == ["One"]


def test_installed_defaults_are_a_valid_config():
    assert check_config(runner_config.INSTALLED_DEFAULTS) == runner_config.INSTALLED_DEFAULTS


def test_empty_values_mean_not_set():
    config = check_config({"identity_file": "", "pg_bin_dir": "", "max_age_hours": 0, "retention": {},
                           "connection": {"host": "", "port": 5432, "sslmode": None, "user": "backup"}})
    assert (config["identity_file"], config["pg_bin_dir"], config["max_age_hours"], config["retention"]) == (None,) * 4
    assert config["connection"] == {"port": 5432, "user": "backup"}


def test_values_in_their_normal_form():
    """What a playbook's extra vars (strings) or the role's types give, the runner reads as it means."""
    config = check_config({"jobs": "4", "format": "directory", "lock_wait_seconds": "2.5", "globals": "no",
                           "max_age_hours": "26", "connection": {"port": "5433", "connect_timeout": 10.0},
                           "encrypt_recipients": [" age1" + "q" * 58 + " "]})
    assert (config["jobs"], config["lock_wait_seconds"], config["globals"], config["max_age_hours"]) == (4, 2.5, False, 26)
    assert config["connection"] == {"port": 5433, "connect_timeout": 10}
    assert config["encrypt_recipients"] == ["age1" + "q" * 58]


@pytest.mark.parametrize("raw, key, message", [
    ({"databses": ["x"]}, None, "config has unknown key(s): databses."),
    ({"database": "a", "databases": ["b"]}, "databases", "sets both 'database' and 'databases'"),
    ({"connection": {"password": "x"}}, "connection", "'connection' in config holds a password; the runner refuses it."),
    ({"connection": {"hots": "x"}}, "connection", "'connection' in config has unknown key(s): hots."),
    ({"connection": {"port": 0}}, "connection.port", "'connection.port' in config must be a whole number from 1 to 65535, not 0."),
    ({"databases": []}, "databases", "must be a non-empty list of database names"),
    ({"repository": ""}, "repository", "'repository' in config must be a non-empty path or name, not ''."),
    ({"lock_file": None}, "lock_file", "'lock_file' in config must be a non-empty path or name"),
    ({"lock_wait_seconds": "soon"}, "lock_wait_seconds", "must be a number, not 'soon'."),
    ({"lock_wait_seconds": -1}, "lock_wait_seconds", "must be a number from 0 up, not -1."),
    ({"jobs": 2.5}, "jobs", "must be a whole number, not 2.5."),
    ({"jobs": 4}, "jobs", "'jobs' in config is not valid: Parallel dump (jobs > 1) needs the directory format."),
    ({"globals": "sometimes"}, "globals", "must be true or false, not 'sometimes'."),
    ({"format": "zip"}, "format", "must be one of custom, directory, plain, tar, not 'zip'."),
    ({"compression": "brotli"}, "compression", "is not valid: Unknown compression method 'brotli'."),
    ({"encrypt_recipients": ["not-a-key"]}, "encrypt_recipients", "is not valid: Not an age recipient"),
    ({"schemas": "public"}, "schemas", "must be a list of strings, not 'public'."),
    ({"retention": [30]}, "retention", "must be an object (the retention policy)"),
    ({"retention": {"daily": 30}}, "retention", "is not valid: Unknown retention setting(s): daily."),
    ({"verify_level": "full"}, "verify_level", "must be one of checksum, structure, restore, not 'full'."),
    ({"max_age_hours": "a day"}, "max_age_hours", "must be a number, not 'a day'."),
    ({"s3": {"secret_key": "x"}}, "s3", "holds S3 credentials (secret_key); the runner refuses them."),
    ({"s3": {"bucket": "x"}}, "s3", "has unknown key(s): bucket."),
    ([], None, "config must hold a JSON object."),
])
def test_bad_config_is_refused_naming_the_setting(raw, key, message):
    with pytest.raises(ConfigError) as failure:
        check_config(raw)
    assert message in str(failure.value)
    assert failure.value.key == key


def test_missing_or_unreadable_config(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(str(tmp_path / "bad.json"))
