# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import wal_names


def test_lsn_round_trip():
    assert wal_names.parse_lsn("0/3000060") == 0x3000060
    assert wal_names.parse_lsn("1/FF000000") == (1 << 32) + 0xFF000000
    assert wal_names.format_lsn(wal_names.parse_lsn("16/B374D848")) == "16/B374D848"
    with pytest.raises(PgBackupError, match="is not a WAL location"):
        wal_names.parse_lsn("latest")


def test_segment_names_and_numbers():
    assert wal_names.segment_for_lsn(1, "1/FF000000") == "0000000100000001000000FF"
    assert wal_names.segment_for_lsn(2, 0x3000060) == "000000020000000000000003"
    assert wal_names.parse_segment("0000000100000001000000FF") == (1, 511)
    assert wal_names.segment_file_name(1, 511) == "0000000100000001000000FF"
    one_gib = 1024 ** 3
    assert wal_names.segment_file_name(3, 9, one_gib) == "000000030000000200000001"
    assert wal_names.parse_segment("000000030000000200000001", one_gib) == (3, 9)
    with pytest.raises(PgBackupError, match="not a WAL segment name"):
        wal_names.parse_segment("00000002.history")


@pytest.mark.parametrize("size, valid", [
    (16 * 1024 * 1024, True), (1024 * 1024, True), (1024 ** 3, True),
    (512 * 1024, False), (2 * 1024 ** 3, False), (24 * 1024 * 1024, False), (0, False),
])
def test_segment_size_is_a_power_of_two_from_1_mib_to_1_gib(size, valid):
    assert wal_names.is_valid_segment_size(size) is valid
