# -*- coding: utf-8 -*-
"""The todoapi.pgbackup.runner_config filter (plugins/filter/runner_config.py): the backup role's
variables to the runner's config, with the runner's own checks, failing with the variable's name."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display

from ansible_collections.todoapi.pgbackup.plugins.filter.runner_config import ROLE_VARIABLES, FilterModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import config

runner_config = FilterModule().filters()["runner_config"]


def test_variables_become_config_keys():
    built = runner_config({"pgbackup_repository": "/srv/backups", "pgbackup_os_user": "backup", "pgbackup_db_host": "",
                           "pgbackup_db_port": "5433", "pgbackup_db_user": "todo_backup", "pgbackup_sslmode": "require",
                           "pgbackup_max_age_hours": 0, "pgbackup_retention": {}, "pgbackup_globals": "false"},
                          passfile="/etc/todoapi-pgbackup/pgpass")
    assert built == dict(config.check_config({}), owner="backup", globals=False, connection={
        "port": 5433, "user": "todo_backup", "sslmode": "require", "passfile": "/etc/todoapi-pgbackup/pgpass"},
        repositories=[{"name": "repo1", "location": "/srv/backups", "options": {}, "credentials_file": None,
                       "retention": None, "wal_archive": None}])


def test_the_name_moves_every_path_and_repositories_keep_their_own_retention():
    built = runner_config({"pgbackup_name": "pg18", "pgbackup_retention": {"daily_days": 7},
                           "pgbackup_repositories": [{"location": "/srv/pg18"},
                                                     {"name": "s3", "location": "s3://bucket/pg18",
                                                      "options": {"region": "eu-west-1"},
                                                      "credentials_file": "/etc/todoapi-pgbackup-pg18/s3.credentials",
                                                      "retention": {"daily_days": 0, "monthly_months": 12},
                                                      "wal_archive": "s3://bucket/pg18-wal"}]})
    assert (built["name"], built["log_file"], built["lock_file"], built["state_dir"]) == (
        "pg18", "/var/log/todoapi_backup-pg18.log", "/run/lock/todoapi-pgbackup-pg18.lock", "/var/lib/todoapi-pgbackup-pg18")
    assert [(r["name"], r["retention"]) for r in built["repositories"]] == [
        ("repo1", {"daily_days": 7}), ("s3", {"daily_days": 0, "monthly_months": 12})]
    assert [r["wal_archive"] for r in built["repositories"]] == [None, "s3://bucket/pg18-wal"]


def test_every_variable_maps_to_a_config_key():
    for name, key in ROLE_VARIABLES.items():
        section, _dot, inner = key.rpartition(".")
        assert (inner in config.CONNECTION_KEYS) if section == "connection" else (
            key in config.DEFAULTS or key in config.LEGACY_DEFAULTS), name
    assert set(key for key in ROLE_VARIABLES.values() if "." not in key) == \
        (set(config.DEFAULTS) | set(config.LEGACY_DEFAULTS)) - {"connection"}


def test_copy_to_warns_that_it_is_deprecated(monkeypatch):
    said = []
    monkeypatch.setattr(Display, "deprecated", lambda self, message, **kwargs: said.append((message, kwargs)))
    built = runner_config({"pgbackup_copy_to": ["/mnt/nfs"]})
    assert [r["location"] for r in built["repositories"]] == ["/var/backups/todoapi", "/mnt/nfs"]
    assert said and said[0][0].startswith("pgbackup_copy_to (with pgbackup_s3) is deprecated")
    assert said[0][1]["collection_name"] == "todoapi.pgbackup"
    said[:] = []
    runner_config({"pgbackup_copy_to": []})
    assert said == []


@pytest.mark.parametrize("variables, message", [
    ({"pgbackup_jobs": 4}, "pgbackup_jobs is not valid: Parallel dump (jobs > 1) needs the directory format. "
                           "Set format: directory, or jobs: 1."),
    ({"pgbackup_db_port": 0}, "pgbackup_db_port must be a whole number from 1 to 65535, not 0."),
    ({"pgbackup_databases": []}, "pgbackup_databases must be a non-empty list of database names, not []."),
    ({"pgbackup_compression": "lz4"}, "pgbackup_compression is not valid: Unknown compression method 'lz4'."),
    ({"pgbackup_s3": {"aws_secret_access_key": "x"}}, "pgbackup_s3 holds S3 credentials (aws_secret_access_key)"),
    ({"pgbackup_retention": {"keep_last": -1}}, "pgbackup_retention is not valid: Retention setting keep_last=-1"),
    ({"pgbackup_lock_file": ""}, "pgbackup_lock_file must be a non-empty path or name, not ''."),
    ({"pgbackup_verify_level": "deep"}, "pgbackup_verify_level must be one of checksum, structure, restore, not 'deep'."),
    ({"pgbackup_password": "x"}, "runner_config does not know the variable(s) pgbackup_password."),
    ({"pgbackup_name": "Two Words"}, "pgbackup_name must be 1 to 32 lower-case letters"),
    ({"pgbackup_repositories": [{"location": "s3://b", "options": {"secret_key": "x"}}]},
     "pgbackup_repositories[0].options holds secrets (secret_key); the runner refuses them."),
    ({"pgbackup_repositories": [{"location": "ftp://h/x"}]}, "pgbackup_repositories[0] uses an unsupported URL scheme"),
    ({"pgbackup_repositories": [{"location": "/a", "retention": {"daily": 1}}]},
     "pgbackup_repositories[0].retention is not valid: Unknown retention setting(s): daily."),
    ({"pgbackup_repositories": [{"location": "/a"}, {"location": "/b", "name": "repo1"}]},
     "pgbackup_repositories names the repository 'repo1' twice."),
])
def test_a_bad_value_names_the_variable(variables, message):
    with pytest.raises(AnsibleFilterError) as failure:
        runner_config(variables)
    assert message in str(failure.value)
