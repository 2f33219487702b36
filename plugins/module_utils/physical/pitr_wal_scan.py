# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What pg_waldump finds in the archived WAL after a base backup: commits, aborts (with their time)
and restore points. PITR uses it to check a target before the server is touched.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os
import re
import shutil
import subprocess
import tempfile

from . import wal_archive
from .wal_names import DEFAULT_SEGMENT_SIZE, SEGMENT, parse_segment, segment_file_name

WALDUMP_RECORD = re.compile(r"tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: (\S+)(?: (.*))?$")
WALDUMP_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ?(\S*)")


def segment_size_of(manifest):
    """The WAL segment size a base backup's manifest records."""
    return int(manifest.get("wal_segment_size") or DEFAULT_SEGMENT_SIZE)


def segno_of(name, manifest):
    """The segment number of WAL file ``name`` with that backup's segment size."""
    return parse_segment(name, segment_size_of(manifest))[1]


def _decode_segments(request, names, into):
    for name in names:
        try:
            wal_archive.restore_segment(name, os.path.join(into, name), request.archive_dir,
                                        identity_file=request.identity_file, stream_dirs=request.stream_dirs)
        except wal_archive.WalSegmentMissing:
            break


def scan_wal(request, manifest, first, last, waldump):
    """Commits, aborts and restore points that pg_waldump finds in segments first..last."""
    size = segment_size_of(manifest)
    timeline = int(manifest["timeline"])
    names = [segment_file_name(timeline, segno, size) for segno in range(first, last + 1)]
    work = tempfile.mkdtemp(prefix=".tmp-walscan-", dir=request.repository.path
                            if os.path.isdir(request.repository.path) else None)
    try:
        _decode_segments(request, names, work)
        present = sorted(n for n in os.listdir(work) if SEGMENT.match(n))
        if not present:
            return []
        env = dict(os.environ, TZ="UTC", LC_ALL="C")
        completed = subprocess.run([waldump, "-p", work, present[0], present[-1]], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, check=False)
        # pg_waldump exits non-zero at the end of the written WAL (zero pages); the records before count.
        return parse_waldump(completed.stdout.decode("utf-8", "replace"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parse_waldump(text):
    """pg_waldump's text output -> [{type: commit|abort|commit_prepared|abort_prepared, xid, lsn, time} or
    {type: restore_point, name, lsn}], in WAL order."""
    events = []
    for line in text.splitlines():
        match = WALDUMP_RECORD.search(line)
        if not match:
            continue
        xid, lsn, what, rest = int(match.group(1)), match.group(2), match.group(3), match.group(4) or ""
        if what in ("COMMIT", "ABORT", "COMMIT_PREPARED", "ABORT_PREPARED"):
            stamp = WALDUMP_TIME.match(rest)
            moment = None
            if stamp:
                moment = datetime.datetime.strptime(stamp.group(1).split(".")[0], "%Y-%m-%d %H:%M:%S")
                fraction = stamp.group(1).partition(".")[2]
                moment = moment.replace(microsecond=int((fraction + "000000")[:6]) if fraction else 0,
                                        tzinfo=datetime.timezone.utc)
            events.append({"type": what.lower(), "xid": xid, "lsn": lsn, "time": moment})
        elif what == "RESTORE_POINT":
            events.append({"type": "restore_point", "name": rest.strip(), "lsn": lsn})
    return events
