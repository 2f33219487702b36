# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WAL a base backup needs to be consistent: the segments of its backup_manifest's WAL-Ranges,
picked out of the tar stream while the backup is verified, and parsed with pg_waldump as
pg_verifybackup does.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ..core.errors import PgBackupError
from ..core.pgtools import find_tool
from ..core.pipeline import Pipeline, Stage
from .wal_names import DEFAULT_SEGMENT_SIZE, SEGMENT, is_valid_segment_size, parse_lsn, segment_for_lsn

WALDUMP_ERROR = r"(?m)^pg_waldump: (error|fatal):"


def wal_needed(ranges, segment_size):
    """{segment file name: (timeline, start, end)} of every WAL segment the manifest's WAL-Ranges need."""
    needed = {}
    for timeline, start, end in ranges:
        first = parse_lsn(start) // segment_size
        last = max(parse_lsn(start), parse_lsn(end) - 1) // segment_size
        for segno in range(first, last + 1):
            needed[segment_for_lsn(timeline, segno * segment_size, segment_size)] = (timeline, start, end)
    return needed


def _is_wal_segment_path(path):
    head, slash, name = path.partition("/")
    return head == "pg_wal" and SEGMENT.match(name) is not None


class WalCollector(object):
    """Writes the WAL segments the backup needs (from pg_wal.tar, or pg_wal/ in base.tar) to a scratch
    directory, and nothing else: pg_waldump reads them there."""

    def __init__(self, ranges, directory, segment_size=None):
        self.ranges = ranges
        self.directory = directory
        self.segment_size = segment_size if segment_size and is_valid_segment_size(segment_size) else None
        self.written = []

    def wants(self, path, size):
        if not _is_wal_segment_path(path):
            return False
        name = path.partition("/")[2]
        if self.segment_size is None and is_valid_segment_size(size):
            self.segment_size = size
        if self.segment_size is None:
            return True
        return name in wal_needed(self.ranges, self.segment_size)

    def open(self, path):
        return open(os.path.join(self.directory, path.partition("/")[2]), "wb")

    def done(self, path):
        """A segment counts once all of it was written (not the start of one in a truncated tar)."""
        self.written.append(path.partition("/")[2])

    def missing(self):
        segment_size = self.segment_size or DEFAULT_SEGMENT_SIZE
        needed = wal_needed(self.ranges, segment_size)
        return [(name, needed[name]) for name in sorted(needed) if name not in self.written]


def parse_wal(check, wal, bin_dir, server_major):
    """pg_waldump over each WAL range, as pg_verifybackup runs it; False when pg_waldump is not installed."""
    try:
        waldump = find_tool("pg_waldump", server_major, bin_dir)[0]
    except PgBackupError:
        return False
    for timeline, start, end in wal.ranges:
        argv = [waldump, "--quiet", "--path=%s" % wal.directory, "--timeline=%d" % timeline,
                "--start=%s" % start, "--end=%s" % end]
        try:
            Pipeline([Stage(argv, name="pg_waldump", error_pattern=WALDUMP_ERROR)]).run()
        except PgBackupError as exc:
            check.problem(None, "the WAL the backup needs (timeline %d from %s to %s) does not parse: %s"
                          % (timeline, start, end, exc.message))
    return True
