# -*- coding: utf-8 -*-
"""The libpq passfile (plugins/module_utils/core/pgpass.py): written and read as libpq does.
libpq itself reading what format_line writes is proven in tests/integration (the runner and the
backup role log in with it)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import pgpass
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError


def test_format_line_escapes_colons_and_backslashes():
    assert pgpass.format_line("pa:ss\\word", user="back:up") == "*:*:*:back\\:up:pa\\:ss\\\\word"
    assert pgpass.format_line("x", user="u", host="db", port=5433, database="TodoDb") == "db:5433:TodoDb:u:x"
    assert pgpass.format_line("x") == "*:*:*:*:x", "a field not given matches anything"


@pytest.mark.parametrize("password", ["plain", "pa:ss", "back\\slash", "\\", ":", "a\\:b", "ends with \\", "*", " sp ace "])
def test_split_line_reads_what_format_line_writes(password):
    line = pgpass.format_line(password, user="us:er\\x", host="h", port=5432, database="d:b")
    assert pgpass.split_line(line) == ["h", "5432", "d:b", "us:er\\x", password]
    assert pgpass.entries(line + "\n") == [{"host": "h", "port": "5432", "database": "d:b", "user": "us:er\\x",
                                            "password": password}]


def test_split_line_follows_libpq():
    assert pgpass.split_line("*:*:*:u:p\\") == ["*", "*", "*", "u", "p\\"], "libpq keeps a trailing lone backslash"
    assert pgpass.split_line("*:*:*:u:p\r\n") == ["*", "*", "*", "u", "p"]
    assert pgpass.split_line("h:p:d:u:pw:extra") == ["h", "p", "d", "u", "pw", "extra"]


def test_entries_skip_what_libpq_skips():
    text = "# *:*:*:commented:out\n\n*:*:*:short\n *:*:*:leading:space\n*:*:*:u:p\n"
    assert [entry["user"] for entry in pgpass.entries(text)] == ["leading", "u"]


def test_a_line_break_cannot_be_written():
    with pytest.raises(PgBackupError, match="line break"):
        pgpass.format_line("two\nlines", user="u")
