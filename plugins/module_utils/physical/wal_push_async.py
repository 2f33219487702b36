# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Asynchronous archive_command, done as pgBackRest's archive-async does it: archive_command still
returns 0 only once *its* segment is stored in the archive; what changes is who stores it and when.

The background pusher (one per spool directory, known by its lock) watches
``pg_wal/archive_status`` for the files PostgreSQL has marked ``.ready`` and stores up to
``process_max`` of them at a time, ahead of PostgreSQL's requests, with the very function the
synchronous mode uses (same checks, same durability), leaving an acknowledgement per file in the
spool. What PostgreSQL runs for each segment, and the spool's format, are in ``wal_spool``. Losing
the spool loses nothing: a file without acknowledgement is stored again, and an archive that holds
the same content answers that with success.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .wal_names import WAL_NAME
from .wal_spool import file_identity

READY_SUFFIX = ".ready"
SCAN_SECONDS = 0.05


def ready_files(pg_wal):
    """The WAL files PostgreSQL waits to see archived, timeline history files first (as it archives them)."""
    names = []
    for entry in os.listdir(os.path.join(pg_wal, "archive_status")):
        name = entry[:-len(READY_SUFFIX)]
        if entry.endswith(READY_SUFFIX) and WAL_NAME.match(name):
            names.append(name)
    return sorted(names, key=lambda name: (not name.endswith(".history"), name))


def run_pusher(pg_wal, spool, make_push, location, process_max=4, idle_seconds=10):
    """The background pusher: stores ``.ready`` files until none came for ``idle_seconds``. ``make_push()``
    returns a ``push(wal_path, wal_name)`` (one per thread: each keeps its own connection) that stores
    one file and returns a dict with its sha256. Returns False when another pusher runs."""
    lock = spool.lock()
    if lock is None:
        return False
    local = threading.local()

    def push(name):
        if getattr(local, "push", None) is None:
            local.push = make_push()
        path = os.path.join(pg_wal, name)
        identity = file_identity(path)  # before reading it: a file changed meanwhile is not acknowledged
        return local.push(path, name)["sha256"], identity

    try:
        with ThreadPoolExecutor(max_workers=max(1, int(process_max))) as pool:
            _push_until_idle(pg_wal, spool, pool, push, location, max(1, int(process_max)), idle_seconds)
    finally:
        os.close(lock)
    return True


def _push_until_idle(pg_wal, spool, pool, push, location, process_max, idle_seconds):
    running = {}
    idle_since = time.monotonic()
    while True:
        ready = ready_files(pg_wal)
        done = spool.acknowledged()
        waiting = [name for name in ready if name not in running and name not in done]
        for name in waiting[:process_max - len(running)]:
            running[name] = pool.submit(push, name)
        for name in [name for name, future in running.items() if future.done()]:
            _acknowledge(spool, name, running.pop(name), location)
        if running or waiting:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > idle_seconds:
            spool.forget_stale(ready)
            return
        if running:
            wait(list(running.values()), timeout=SCAN_SECONDS, return_when=FIRST_COMPLETED)
        else:
            time.sleep(SCAN_SECONDS)


def _acknowledge(spool, name, future, location):
    try:
        sha256, identity = future.result()
    except Exception as exc:  # every failure becomes the foreground's, which reports it to PostgreSQL
        spool.fail(name, str(exc) or type(exc).__name__)
        return
    spool.acknowledge(name, sha256, identity, location)
