# -*- coding: utf-8 -*-
"""The todoapi.pgbackup.runner_config filter (plugins/filter/runner_config.py): the backup role's
variables to the runner's config, with the runner's own checks, failing with the variable's name."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.todoapi.pgbackup.plugins.filter.runner_config import ROLE_VARIABLES, FilterModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import config

runner_config = FilterModule().filters()["runner_config"]


def test_variables_become_config_keys():
    built = runner_config({"pgbackup_repository": "/srv/backups", "pgbackup_os_user": "backup", "pgbackup_db_host": "",
                           "pgbackup_db_port": "5433", "pgbackup_db_user": "todo_backup", "pgbackup_sslmode": "require",
                           "pgbackup_max_age_hours": 0, "pgbackup_retention": {}, "pgbackup_globals": "false"},
                          passfile="/etc/todoapi-pgbackup/pgpass")
    assert built == dict(config.DEFAULTS, repository="/srv/backups", owner="backup", globals=False, connection={
        "port": 5433, "user": "todo_backup", "sslmode": "require", "passfile": "/etc/todoapi-pgbackup/pgpass"})


def test_every_variable_maps_to_a_config_key():
    for name, key in ROLE_VARIABLES.items():
        section, _dot, inner = key.rpartition(".")
        assert (inner in config.CONNECTION_KEYS) if section == "connection" else (key in config.DEFAULTS), name
    assert set(key for key in ROLE_VARIABLES.values() if "." not in key) == set(config.DEFAULTS) - {"connection"}


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
])
def test_a_bad_value_names_the_variable(variables, message):
    with pytest.raises(AnsibleFilterError) as failure:
        runner_config(variables)
    assert message in str(failure.value)
