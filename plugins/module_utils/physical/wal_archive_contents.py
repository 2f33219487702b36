# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the WAL archive holds as a whole: which segments of a timeline are there and where the first
hole is (before a PITR, and ``todoapi-pgbackup-wal check-range``), which timelines have history
files, and pruning what the oldest kept base backup no longer needs.

``archive`` is a directory path or a remote archive (``wal_remote.open_remote_archive``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time

from ..core import fsutil
from ..core.errors import PgBackupError
from .wal_archive_layout import TMP_PREFIX, archive_entries, described_by, strip_encoding
from .wal_names import DEFAULT_SEGMENT_SIZE, SEGMENT, parse_lsn, parse_segment, segment_file_name

STALE_TMP_SECONDS = 3600


def list_segments(archive, timeline=None, segment_size=DEFAULT_SEGMENT_SIZE, stream_dirs=None):
    """{segment number: name} of the archived segments (of one timeline, when given); with
    ``stream_dirs`` also pg_receivewal's complete and ``.partial`` segments."""
    found = {}
    entries = archive_entries(archive)
    for directory in stream_dirs or []:
        if os.path.isdir(directory):
            entries += [e[:-len(".partial")] if e.endswith(".partial") else e for e in os.listdir(directory)]
    for entry in entries:
        name = strip_encoding(entry)
        if name is None or not SEGMENT.match(name):
            continue
        tli, segno = parse_segment(name, segment_size)
        if timeline is None or tli == int(timeline):
            found[segno] = name
    return found


def _segno_of(value, timeline, segment_size):
    if isinstance(value, int):
        return value
    if SEGMENT.match(str(value)):
        tli, segno = parse_segment(value, segment_size)
        return segno
    return parse_lsn(value) // segment_size


def wal_range_present(archive, timeline, start, end=None, segment_size=DEFAULT_SEGMENT_SIZE, stream_dirs=None,
                      also_present=None):
    """Check that every segment of ``timeline`` from ``start`` to ``end`` is archived.

    ``start``/``end``: segment names, LSNs ('0/3000060') or segment numbers. Without
    ``end`` the range runs to the newest archived segment of the timeline, so a hole
    anywhere after ``start`` is reported. ``stream_dirs``: pg_receivewal directories that
    count as archive too; ``also_present``: segment numbers known to exist elsewhere. Returns a dict: complete (bool), missing (names,
    at most 20 listed, missing_count the total), first/last (names), last_contiguous
    (newest segment reachable from ``start`` without a hole, or None).
    """
    timeline = int(timeline, 16) if isinstance(timeline, str) else int(timeline)
    present = list_segments(archive, timeline, segment_size, stream_dirs)
    for segno in also_present or ():  # e.g. the segments a base backup carries itself
        present.setdefault(segno, segment_file_name(timeline, segno, segment_size))
    first = _segno_of(start, timeline, segment_size)
    last = _segno_of(end, timeline, segment_size) if end is not None else max([first] + list(present))
    missing = [segno for segno in range(first, last + 1) if segno not in present]
    contiguous = None
    segno = first
    while segno in present:
        contiguous = segno
        segno += 1

    def name(number):
        return segment_file_name(timeline, number, segment_size)

    return {
        "complete": not missing,
        "missing": [name(n) for n in missing[:20]],
        "missing_count": len(missing),
        "first": name(first),
        "last": name(last),
        "last_contiguous": name(contiguous) if contiguous is not None else None,
        "timeline": timeline,
    }


def history_timelines(archive):
    """Timelines that have a history file in the archive (timeline switches after a PITR/failover)."""
    found = []
    for entry in archive_entries(archive):
        name = strip_encoding(entry)
        if name and re.match(r"^[0-9A-F]{8}\.history$", name):
            found.append(int(name[:8], 16))
    return sorted(found)


def prune_wal(archive, oldest_needed_segment, dry_run=False, segment_size=DEFAULT_SEGMENT_SIZE):
    """Delete archived WAL older than ``oldest_needed_segment`` (pg_archivecleanup semantics).

    ``oldest_needed_segment`` is the ``wal_start_segment`` of the oldest base backup that is
    kept. Segments (any timeline) and ``.backup``/``.partial`` files whose position is older
    are removed with their sidecar files; timeline history files are always kept. Refuses
    to run when the archive holds nothing at or after that segment (a typo would otherwise
    empty the archive). Returns {"removed": [...], "kept": n, "dry_run": bool}.
    """
    if not SEGMENT.match(oldest_needed_segment or ""):
        raise PgBackupError("'%s' is not a WAL segment name." % oldest_needed_segment,
                            hint="Pass the wal_start_segment of the oldest kept physical backup.")
    _tli, oldest = parse_segment(oldest_needed_segment, segment_size)
    doomed, kept = [], 0
    for entry in archive_entries(archive):
        if entry.startswith(TMP_PREFIX):
            if _stale_local_work_file(archive, entry):
                doomed.append(entry)
            continue
        name = strip_encoding(described_by(entry) or entry)
        if name is None or not re.match(r"^[0-9A-F]{24}", name):
            continue  # history files and anything unknown stay
        _tli, segno = parse_segment(name[:24], segment_size)
        if segno < oldest:
            doomed.append(entry)
        elif SEGMENT.match(name) and described_by(entry) is None:
            kept += 1
    if not kept:
        raise PgBackupError("The WAL archive '%s' holds no segment at or after %s; refusing to prune."
                            % (getattr(archive, "url", archive), oldest_needed_segment),
                            hint="Check the segment name (it should be the oldest kept base backup's wal_start_segment).")
    removed = sorted(doomed)
    if not dry_run and removed:
        _remove(archive, removed)
    return {"removed": removed, "kept": kept, "dry_run": bool(dry_run)}


def _stale_local_work_file(archive, entry):
    """A directory archive's work file left by a crash (a remote archive's are left alone: no age is known)."""
    if hasattr(archive, "entries"):
        return False
    try:
        return time.time() - os.path.getmtime(os.path.join(archive, entry)) > STALE_TMP_SECONDS
    except OSError:
        return False


def _remove(archive, entries):
    if hasattr(archive, "remove"):
        archive.remove(entries)
        return
    for entry in entries:
        fsutil.remove_quietly(os.path.join(archive, entry))
    fsutil.fsync_path(archive)
