# -*- coding: utf-8 -*-
"""The todoapi.pgbackup.pgpass_line and pgpass_entries filters (plugins/filter/pgpass.py), as the
backup role and playbooks/rotate_backup_credentials.yml use them."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.todoapi.pgbackup.plugins.filter.pgpass import FilterModule

FILTERS = FilterModule().filters()


def test_a_line_and_back():
    line = FILTERS["pgpass_line"]({"user": "back:up", "password": "se:cr\\et"})
    assert line == "*:*:*:back\\:up:se\\:cr\\\\et"
    assert FILTERS["pgpass_entries"]("# old\n" + line + "\n") == [
        {"host": "*", "port": "*", "database": "*", "user": "back:up", "password": "se:cr\\et"}]


def test_host_port_and_database():
    assert FILTERS["pgpass_line"]({"host": "db1", "port": 5432, "database": "TodoDb", "user": "u", "password": "p"}) \
        == "db1:5432:TodoDb:u:p"


@pytest.mark.parametrize("entry, message", [
    ({"user": "u"}, "non-empty 'password'"),
    ({"user": "u", "password": ""}, "non-empty 'password'"),
    ("*:*:*:u:p", "needs a dict"),
    ({"user": "u", "password": "p", "dbname": "x"}, "unknown key(s) dbname"),
    ({"user": "u", "password": "two\nlines"}, "line break"),
])
def test_pgpass_line_refuses(entry, message):
    with pytest.raises(AnsibleFilterError, match="pgpass_line") as failure:
        FILTERS["pgpass_line"](entry)
    assert message in str(failure.value)


def test_pgpass_entries_needs_text():
    with pytest.raises(AnsibleFilterError, match="text of a passfile"):
        FILTERS["pgpass_entries"](None)
