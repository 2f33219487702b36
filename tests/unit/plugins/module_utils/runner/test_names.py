# -*- coding: utf-8 -*-
"""Setup names (plugins/module_utils/runner/names.py): the default keeps the paths of earlier
releases, any other name moves every path, and a name that would not make safe paths is refused."""

from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import names


def test_the_default_name_keeps_the_paths_of_earlier_releases():
    assert names.setup_paths() == {
        "config_dir": "/etc/todoapi-pgbackup", "config_file": "/etc/todoapi-pgbackup/config.json",
        "monitoring_file": "/etc/todoapi-pgbackup/monitoring.json", "log_file": "/var/log/todoapi_backup.log",
        "job_name": "todoapi-pgbackup", "lock_file": "/run/lock/todoapi-pgbackup.lock",
        "state_dir": "/var/lib/todoapi-pgbackup", "textfile": "/var/lib/prometheus/node-exporter/todoapi_pgbackup.prom"}


def test_two_names_share_no_path():
    main, other = names.setup_paths("main"), names.setup_paths("pg18")
    assert other["config_file"] == "/etc/todoapi-pgbackup-pg18/config.json"
    assert other["log_file"] == "/var/log/todoapi_backup-pg18.log" and other["job_name"] == "todoapi-pgbackup-pg18"
    assert not set(main.values()) & set(other.values())


@pytest.mark.parametrize("name", ["", "Main", "two words", "../etc", "-x", "a" * 33, None, 7])
def test_unsafe_names_are_refused(name):
    with pytest.raises(names.BadName, match="must be 1 to 32 lower-case letters"):
        names.setup_paths(name)
