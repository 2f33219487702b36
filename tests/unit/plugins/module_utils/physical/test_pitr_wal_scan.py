# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime

from ansible_collections.todoapi.pgbackup.plugins.module_utils.physical import pitr_wal_scan

# pg_waldump 15 output (TZ=UTC), shortened to the records that matter and one that does not.
WALDUMP = """\
rmgr: Heap        len (rec/tot):     59/    59, tx:        735, lsn: 0/03000150, prev 0/03000118, desc: INSERT off 3 flags 0x00
rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/030001A8, prev 0/03000150, desc: COMMIT 2024-03-01 10:15:42.123456 UTC
rmgr: XLOG        len (rec/tot):     98/    98, tx:          0, lsn: 0/030001D0, prev 0/030001A8, desc: RESTORE_POINT before-mistake
rmgr: Transaction len (rec/tot):     34/    34, tx:        736, lsn: 0/03000238, prev 0/030001D0, desc: ABORT 2024-03-01 10:15:43.5 UTC
"""


def test_parse_waldump_finds_commits_aborts_and_restore_points():
    utc = datetime.timezone.utc
    assert pitr_wal_scan.parse_waldump(WALDUMP) == [
        {"type": "commit", "xid": 735, "lsn": "0/030001A8", "time": datetime.datetime(2024, 3, 1, 10, 15, 42, 123456, utc)},
        {"type": "restore_point", "name": "before-mistake", "lsn": "0/030001D0"},
        {"type": "abort", "xid": 736, "lsn": "0/03000238", "time": datetime.datetime(2024, 3, 1, 10, 15, 43, 500000, utc)},
    ]
    assert pitr_wal_scan.parse_waldump("pg_waldump: error: could not find a valid record after 0/3000238\n") == []


def test_segment_numbers_use_the_backups_segment_size():
    assert pitr_wal_scan.segno_of("000000010000000100000002", {}) == 258
    assert pitr_wal_scan.segno_of("000000010000000100000002", {"wal_segment_size": 64 * 1024 * 1024}) == 66
