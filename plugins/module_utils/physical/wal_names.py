# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WAL positions and file names: LSNs ('0/3000060'), segment numbers and 24-digit segment names.

Shared by base backups (the WAL range a backup needs), the WAL archive and PITR, so the arithmetic
lives here once.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ..core.errors import PgBackupError

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
# Any file PostgreSQL hands to archive_command: a segment, a partial one, a backup history or a timeline history file.
WAL_NAME = re.compile(r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")


def parse_lsn(text):
    """'0/3000060' -> the WAL location as an int."""
    high, slash, low = str(text).partition("/")
    try:
        return (int(high, 16) << 32) + int(low, 16)
    except ValueError:
        raise PgBackupError("'%s' is not a WAL location (LSN)." % text, hint="Write it like 0/3000060.")


def format_lsn(value):
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def segments_per_xlogid(segment_size=DEFAULT_SEGMENT_SIZE):
    return 0x100000000 // segment_size


def is_valid_segment_size(size):
    """PostgreSQL's wal_segment_size: a power of two from 1 MiB to 1 GiB."""
    return 1024 * 1024 <= size <= 1024 ** 3 and size & (size - 1) == 0


def parse_segment(name, segment_size=DEFAULT_SEGMENT_SIZE):
    """(timeline, segment number) of a 24-character segment name."""
    match = SEGMENT.match(name or "")
    if not match:
        raise PgBackupError("'%s' is not a WAL segment name." % name,
                            hint="Segment names are 24 hexadecimal digits, e.g. 000000010000000000000002.")
    timeline, log, seg = (int(part, 16) for part in match.groups())
    return timeline, log * segments_per_xlogid(segment_size) + seg


def segment_file_name(timeline, segno, segment_size=DEFAULT_SEGMENT_SIZE):
    per = segments_per_xlogid(segment_size)
    return "%08X%08X%08X" % (timeline, segno // per, segno % per)


def segment_for_lsn(timeline, lsn, segment_size=DEFAULT_SEGMENT_SIZE):
    """The WAL file name holding ``lsn`` (an int or 'X/Y') on ``timeline``."""
    value = lsn if isinstance(lsn, int) else parse_lsn(lsn)
    return segment_file_name(timeline, value // segment_size, segment_size)
