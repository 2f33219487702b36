# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a custom-format archive into an empty database with several connections,
straight from the (compressed, encrypted) stream, with no decoded copy on disk.

``pg_restore -j`` parallelises per table and needs a seekable archive. A typical
application database has one big table, so it gains little, and the engine's archives are
compressed outside pg_dump, so it first needs a decoded copy as large as the data. Here:

1. the start of the archive (header and table of contents: the first megabyte or so) is
   copied to a private file, enough for ``pg_restore --section=pre-data`` and
   ``--section=post-data -j N``, which read no table data;
2. the data section streams ``decode | pg_restore --section=data -f -`` into this process,
   which cuts every table's COPY rows (one row per line in COPY text) into chunks that N
   connections load at once, so even one big table loads on every core;
3. indexes, constraints and the rest are built by ``pg_restore -j N`` from the small file,
   with ``maintenance_work_mem`` raised for those sessions.

Autovacuum is kept off the tables from the load to the end of post-data (each table's own
``autovacuum_enabled`` is put back after): on a table that is still being loaded it would only
burn CPU, and an index build waits ``deadlock_timeout`` (1 s) to cancel it.

Archives with large objects take the serial path (their data section is not COPY).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import io
import os
import re
import tempfile
import threading
import time

try:
    import queue
except ImportError:  # Python 2 (sanity's compile test only)
    import Queue as queue

from .deferred_foreign_keys import IDENTIFIER
from ..core import pgconn
from ..core.errors import PgBackupError
from ..core.pipeline import Pipeline, Stage

CHUNK_BYTES = 1024 * 1024  # per COPY; jobs x 2 of them in memory at most
COPY_END = b"\n\\.\n"
# psql meta-commands pg_restore writes around a script since PostgreSQL 15.14/16.10/17.6.
IGNORED_META = (b"\\restrict", b"\\unrestrict")
WORKER_SETTINGS = "SET synchronous_commit = off;"
COPY_TARGET = re.compile(r"^COPY (%s)\.(%s)[ ;]" % (IDENTIFIER, IDENTIFIER))


class StreamEndedEarly(PgBackupError):
    """The script stopped mid-COPY: the process that wrote it has exited and says why."""


def write_toc_prefix(decode_stages, artifact, env, pg_restore, work_dir):
    """Decode the start of the archive into a private file until ``pg_restore -l`` has read the
    whole table of contents. Returns (path, listing); the caller removes the file."""
    handle, prefix_path = tempfile.mkstemp(prefix="pgbackup-toc-", suffix=".dump", dir=work_dir)
    prefix_file = os.fdopen(handle, "wb")
    source = Pipeline(decode_stages, env=env, stdin=artifact, capture_stdout=True)
    try:
        try:
            source.start()
            lister = Pipeline([Stage([pg_restore, "-l"], name="pg_restore -l")], env=env,
                              stdin=_copied_to(prefix_file.write, source.stdout_chunks()), capture_stdout=True).start()
            listing = b"".join(lister.stdout_chunks()).decode("utf-8", "replace")
            try:
                lister.wait()
            except PgBackupError:
                _raise_if_failed_by_itself(source)  # e.g. a wrong key: pg_restore only saw no input
                raise
        finally:
            source.kill()  # it has written all pg_restore needed; the rest is not wanted here
            source.wait_quietly()
            prefix_file.close()
        return prefix_path, listing
    except OSError as exc:
        os.unlink(prefix_path)
        raise PgBackupError("Cannot write the archive's table of contents under '%s': %s."
                            % (work_dir or tempfile.gettempdir(), exc.strerror or exc),
                            hint="Free some space there or point work_dir at another directory.")
    except BaseException:
        os.unlink(prefix_path)
        raise


def _raise_if_failed_by_itself(pipeline, grace_seconds=5):
    deadline = time.monotonic() + grace_seconds
    while any(proc.poll() is None for proc in pipeline.processes):
        if time.monotonic() > deadline:
            return  # still running: it did not cause the failure
        time.sleep(0.05)
    pipeline.wait()


def _copied_to(write, chunks):
    for chunk in chunks:
        write(chunk)
        yield chunk


# The tables of the (new) database whose autovacuum the restore may switch off: all it owns.
RESTORED_TABLES = """
SELECT c.oid::regclass::text, c.reloptions, t.reloptions
FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid
WHERE c.relkind = 'r'
  AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
ORDER BY 1
"""
ALTERS_PER_TRANSACTION = 200  # each locks a table: stay well inside max_locks_per_transaction


@contextlib.contextmanager
def autovacuum_paused(connect):
    """Switch autovacuum off for every table of the database while the block runs, then put
    back exactly the autovacuum_enabled options the tables had (the archive's). Not put back
    when the block fails: the caller drops the half-restored database."""
    conn = connect()
    try:
        tables = pgconn.query(conn, RESTORED_TABLES)
        _alter_in_batches(conn, ["ALTER TABLE %s SET (autovacuum_enabled = false, toast.autovacuum_enabled = false);"
                                 % name for name, _options, _toast_options in tables])
    finally:
        conn.close()
    yield
    conn = connect()
    try:
        _alter_in_batches(conn, ["ALTER TABLE %s %s, %s;" % (name, _restoring("autovacuum_enabled", options),
                                                             _restoring("toast.autovacuum_enabled", toast_options))
                                 for name, options, toast_options in tables])
    finally:
        conn.close()


def _restoring(option, options):
    prefix = option.split(".")[-1] + "="
    for entry in options or ():
        if entry.startswith(prefix):
            return "SET (%s = '%s')" % (option, entry[len(prefix):].replace("'", "''"))
    return "RESET (%s)" % option


def _alter_in_batches(conn, statements):
    for start in range(0, len(statements), ALTERS_PER_TRANSACTION):
        pgconn.query(conn, "\n".join(statements[start:start + ALTERS_PER_TRANSACTION]))


def load_data_section(script_chunks, connect, jobs, chunk_bytes=None, settings=None):
    """Run the data section of a pg_restore script (an iterable of bytes) over ``jobs``
    connections whose sessions also SET ``settings`` ({name: value}); returns
    {"copy_statements": n, "chunks": n, "rows": {table key: rows}}, ``rows`` being what the server
    reported (the command tag) for the committed COPY statements into each table."""
    loader = _ParallelCopy(connect, jobs, chunk_bytes or CHUNK_BYTES, settings)
    try:
        loader.feed(script_chunks)
    except BaseException:
        loader.stop_workers(aborting=True)
        raise
    loader.stop_workers()
    loader.run_other_statements()
    rows = {}
    for copy_sql, count in loader.rows_by_copy.items():
        key = copy_table_key(copy_sql)
        rows[key] = rows.get(key, 0) + count
    return dict(loader.stats, rows=rows)


def copy_table_key(copy_sql):
    """'schema.table' (unquoted, as manifests name tables) of a ``COPY schema.table (...) FROM stdin``."""
    match = COPY_TARGET.match(copy_sql)
    if not match:
        return copy_sql  # matches no manifest key: the row counts are then checked by counting
    return "%s.%s" % tuple(_unquoted(name) for name in match.groups())


def _unquoted(identifier):
    return identifier[1:-1].replace('""', '"') if identifier.startswith('"') else identifier


def _head(pending, size):
    """The first ``size`` bytes of a bytearray, copied once (a slice of it would copy twice)."""
    with memoryview(pending) as view, view[:size] as head:
        return head.tobytes()


class _ParallelCopy(object):
    def __init__(self, connect, jobs, chunk_bytes, settings=None):
        self.connect = connect
        self.jobs = max(1, int(jobs))
        self.chunk_bytes = chunk_bytes
        self.queue = queue.Queue(maxsize=self.jobs)
        self.workers = []
        self.errors = []
        self.session_sql = [WORKER_SETTINGS] + ["SET %s = '%s';" % item for item in sorted((settings or {}).items())]
        self.other_sql = []
        self.copy_sql = None
        self.stats = {"copy_statements": 0, "chunks": 0}
        self.rows_by_copy = {}  # {COPY statement: rows the server loaded with it}
        self.rows_lock = threading.Lock()

    # -- parsing the script ------------------------------------------------------------------

    def feed(self, script_chunks):
        pending = bytearray()
        for block in script_chunks:
            pending += block
            self._consume(pending, len(block), final=False)
            self._raise_worker_error()
        self._consume(pending, 0, final=True)
        if self.copy_sql is not None or pending.strip():
            raise StreamEndedEarly("The archive's data section ended inside a COPY block.",
                                   hint="The backup is truncated or corrupt: run backup_verify on it.")

    def _consume(self, pending, new_bytes, final):
        # Only the newly appended bytes (and the few before them) can hold a new end marker.
        search_from = max(0, len(pending) - new_bytes - len(COPY_END))
        while pending:
            if self.copy_sql is None:
                end = pending.find(b"\n")
                if end < 0:
                    if not final:
                        return
                    end = len(pending)
                line = bytes(pending[:end])
                del pending[:end + 1]
                self._statement_line(line)
                search_from = 0
                continue
            if pending.startswith(COPY_END[1:]):
                del pending[:len(COPY_END) - 1]
                self.copy_sql = None
                continue
            end = pending.find(COPY_END, search_from)
            if end >= 0:
                self._send(_head(pending, end + 1))
                del pending[:end + len(COPY_END)]
                self.copy_sql = None
                search_from = 0
                continue
            if len(pending) < self.chunk_bytes and not final:
                return
            # Rows are lines (COPY text escapes newlines in values): cut after the last whole row
            # of the chunk, or after the first row when one row is longer than a chunk.
            cut = pending.rfind(b"\n", 0, self.chunk_bytes) + 1 or pending.find(b"\n", self.chunk_bytes) + 1
            if cut <= 0:
                return  # wait for the end of the row
            self._send(_head(pending, cut))
            del pending[:cut]
            if final:
                return
            search_from = max(0, len(pending) - len(COPY_END))

    def _statement_line(self, line):
        if line.startswith(b"COPY ") and line.endswith(b" FROM stdin;"):
            self.copy_sql = line[:-1].decode("utf-8")
            self.stats["copy_statements"] += 1
            return
        if line.startswith(IGNORED_META) or line.startswith(b"--") or not line.strip():
            return
        if line.startswith(b"\\"):
            raise PgBackupError("Unexpected psql command in the archive's data section: %s"
                                % line[:60].decode("utf-8", "replace"),
                                hint="Restore this backup with jobs: 1.")
        text = line.decode("utf-8")
        if not self.workers and (text.startswith("SET ") or text.startswith("SELECT pg_catalog.set_config(")):
            self.session_sql.append(text)  # the session state every connection needs (encoding ...)
        else:
            self.other_sql.append(text)  # sequence values and the like, run once at the end

    # -- loading -----------------------------------------------------------------------------

    def _send(self, rows):
        if not self.workers:
            self._start_workers()
        self.stats["chunks"] += 1
        while True:
            self._raise_worker_error()
            try:
                self.queue.put((self.copy_sql, rows), timeout=0.5)
                return
            except queue.Full:
                continue

    def _start_workers(self):
        for number in range(self.jobs):
            conn = self.connect()
            try:
                pgconn.query(conn, "\n".join(self.session_sql))
            except BaseException:
                conn.close()
                raise
            worker = threading.Thread(target=self._work, args=(conn,), name="copy-%d" % number)
            worker.daemon = True
            worker.start()
            self.workers.append(worker)

    def _work(self, conn):
        cursor = conn.cursor()
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                if self.errors:
                    continue  # drain the queue so the reader is never blocked
                copy_sql, rows = item
                try:
                    cursor.copy_expert(copy_sql, io.BytesIO(rows), size=len(rows))
                except Exception as exc:  # pylint: disable=broad-except
                    self.errors.append(PgBackupError("%s failed: %s" % (copy_sql.split(" (")[0], str(exc).strip())))
                    continue
                with self.rows_lock:
                    self.rows_by_copy[copy_sql] = self.rows_by_copy.get(copy_sql, 0) + cursor.rowcount
        finally:
            conn.close()

    def _raise_worker_error(self):
        if self.errors:
            raise self.errors[0]

    def stop_workers(self, aborting=False):
        """Let the workers finish the queued chunks (or, when aborting, drop them) and exit."""
        if aborting and not self.errors:
            self.errors.append(PgBackupError("aborted"))
        for _worker in self.workers:
            self.queue.put(None)
        for worker in self.workers:
            worker.join()
        if not aborting:
            self._raise_worker_error()

    def run_other_statements(self):
        """What the data section holds besides COPY (sequence values ...), once, in order."""
        if not self.other_sql:
            return
        conn = self.connect()
        try:
            pgconn.query(conn, "\n".join(self.session_sql + self.other_sql))
        except pgconn.psycopg2.Error as exc:
            raise PgBackupError("Restoring the data section failed: %s" % str(exc).strip())
        finally:
            conn.close()
