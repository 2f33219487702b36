# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical.pitr_request import PitrRequest

SERVER = {"cluster_version": 15, "cluster_name": "restored"}


@pytest.mark.parametrize("options, message", [
    (dict(target_time="2024-03-01T10:00:00Z", target_xid="740"), "Give only one recovery target"),
    (dict(target="immediate", target_lsn="0/3000060"), "cannot be combined with target_lsn"),
    (dict(target="yesterday"), "Unknown target 'yesterday'"),
    (dict(target_xid="two"), "is not a transaction id"),
    (dict(target_xid="2"), "not a normal transaction id"),
    (dict(target_lsn="3000060"), "is not a WAL location"),
    (dict(target_name="x" * 64), "at most 63 bytes"),
])
def test_bad_targets_are_refused(options, message):
    with pytest.raises(PgBackupError, match=message):
        PitrRequest(None, "/srv/wal", **dict(SERVER, **options))


def test_the_target_server_is_a_cluster_or_a_data_directory():
    with pytest.raises(PgBackupError, match="either cluster_version"):
        PitrRequest(None, "/srv/wal", data_dir="/srv/data", port=5433, **SERVER)
    with pytest.raises(PgBackupError, match="data_dir needs 'port'"):
        PitrRequest(None, "/srv/wal", data_dir="/srv/data")
    with pytest.raises(PgBackupError, match="No WAL archive directory"):
        PitrRequest(None, "", **SERVER)


def test_targets_are_normalised():
    assert PitrRequest(None, "/srv/wal", target_lsn="0/3000a60", **SERVER).describe_target() == "lsn 0/3000A60"
    assert PitrRequest(None, "/srv/wal", target_xid="740", **SERVER).target_value == 740
    request = PitrRequest(None, "/srv/wal", **SERVER)
    assert (request.kind, request.mode, request.describe_target()) == ("latest", "debian", "latest")
