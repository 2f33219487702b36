# -*- coding: utf-8 -*-
"""The runner's database connection (plugins/module_utils/runner/connection.py): the password
only in a private libpq passfile, and every password of it known to the log's masking."""

from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import pgpass
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.config import ConfigError, check_config
from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner.connection import connection_spec, passfile_secrets

SECRET = "pa:ss\\word-7f3a"


def test_passfile_must_be_private(tmp_path, monkeypatch):
    passfile = tmp_path / "pgpass"
    passfile.write_text(pgpass.format_line(SECRET, user="postgres") + "\n")
    os.chmod(str(passfile), 0o644)
    config = check_config({"connection": {"host": "db", "port": 5433, "passfile": str(passfile)}})
    with pytest.raises(ConfigError, match="libpq ignores"):
        connection_spec(config)
    os.chmod(str(passfile), 0o600)
    monkeypatch.setenv("PGPASSWORD", "leaked")
    spec = connection_spec(config)
    assert (spec.host, spec.port, spec.password) == ("db", 5433, None)
    assert os.environ["PGPASSFILE"] == str(passfile) and "PGPASSWORD" not in os.environ
    with pytest.raises(ConfigError, match="cannot be used"):
        connection_spec(check_config({"connection": {"passfile": str(tmp_path / "missing")}}))


def test_every_password_of_the_passfile_is_a_secret(tmp_path):
    passfile = tmp_path / "pgpass"
    passfile.write_text("# a comment:with:five:fields:here\n\n%s\n*:*:*:other:plain\n*:*:*:nopassword:\n"
                        % pgpass.format_line(SECRET, user="postgres"))
    config = check_config({"connection": {"passfile": str(passfile)}})
    assert passfile_secrets(config) == [SECRET, "plain"]
    assert passfile_secrets(check_config({"connection": {"passfile": str(tmp_path / "missing")}})) == []
    assert passfile_secrets(check_config({})) == []
