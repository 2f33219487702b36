# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import base_backup_wal

SEG = 16 * 1024 * 1024


def test_wal_needed_covers_each_range():
    assert sorted(base_backup_wal.wal_needed([(1, "0/2000028", "0/2000100")], SEG)) == ["000000010000000000000002"]
    assert sorted(base_backup_wal.wal_needed([(1, "0/2FFFF00", "0/4000100")], SEG)) == [
        "000000010000000000000002", "000000010000000000000003", "000000010000000000000004"]
    # An end exactly on a segment boundary does not need the segment that starts there.
    assert sorted(base_backup_wal.wal_needed([(2, "0/2000028", "0/3000000")], SEG)) == ["000000020000000000000002"]
    assert sorted(base_backup_wal.wal_needed([(1, "0/FF000028", "1/100")], SEG)) == [
        "0000000100000000000000FF", "000000010000000100000000"]


def test_collector_writes_only_the_segments_the_backup_needs(tmp_path):
    ranges = [(1, "0/2000028", "0/3000100")]
    collector = base_backup_wal.WalCollector(ranges, str(tmp_path), SEG)
    assert not collector.wants("base/5/1259", SEG)
    assert not collector.wants("pg_wal/000000010000000000000001", SEG), "before the range"
    assert not collector.wants("pg_wal/archive_status/000000010000000000000002.done", 0)
    assert collector.wants("pg_wal/000000010000000000000002", SEG)
    with collector.open("pg_wal/000000010000000000000002") as handle:
        handle.write(b"wal")
    collector.done("pg_wal/000000010000000000000002")
    assert os.listdir(str(tmp_path)) == ["000000010000000000000002"]
    assert collector.missing() == [("000000010000000000000003", ranges[0])]


def test_collector_learns_the_segment_size_from_the_first_segment(tmp_path):
    one_mib = 1024 * 1024
    collector = base_backup_wal.WalCollector([(1, "0/200028", "0/300100")], str(tmp_path), segment_size=None)
    assert collector.wants("pg_wal/000000010000000000000002", one_mib)
    assert collector.segment_size == one_mib
    assert not collector.wants("pg_wal/000000010000000000000009", one_mib)
    assert [name for name, _range in collector.missing()] == ["000000010000000000000002", "000000010000000000000003"]
