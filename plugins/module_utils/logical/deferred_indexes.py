# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``build_indexes: after_swap``: the archive's plain indexes are left out of the load and built with
``CREATE INDEX CONCURRENTLY`` once the staging database is swapped in, so the database is usable after
its data, primary keys, unique and other constraints are in.

Only an index that nothing else needs is deferred: an ``INDEX`` entry of pg_restore's table of contents
on which no other entry depends (``pg_restore -l -v``: not a comment's, an ``INDEX ATTACH``'s or a
foreign key's that references a unique index), whose whole statement (``pg_restore -v -f - -L``) is
one ``CREATE INDEX name ON schema.table ...``: not UNIQUE (uniqueness is correctness, like a
constraint), not ``ON ONLY`` (a partitioned table's, which CONCURRENTLY cannot build), and with no
``CLUSTER ON``, ``REPLICA IDENTITY`` or statistics target appended. The concurrent statement is that
statement with ``CONCURRENTLY`` put after its fixed ``CREATE INDEX`` prefix, run under the archive's
``default_tablespace`` for the entry: the definition is not rewritten.

``CREATE INDEX CONCURRENTLY`` takes SHARE UPDATE EXCLUSIVE: the application reads and writes meanwhile.
Two builds on one table would wait for each other, so the indexes of a table are built one after the
other, ``jobs`` tables at a time. A build that fails leaves an INVALID index, which is dropped
(``DROP INDEX CONCURRENTLY``) and reported.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import threading
import time

from . import deferred_foreign_keys as fks
from . import restore_steps as steps
from ..core import pgconn

DURING, AFTER_SWAP = fks.DURING, fks.AFTER_SWAP
CHOICES = fks.CHOICES
PREFIX = "CREATE INDEX "
PLAIN_INDEX = re.compile(r"^CREATE INDEX (?P<name>%s) ON (?P<table>(?P<schema>%s)\.%s) USING "
                         % (fks.IDENTIFIER, fks.IDENTIFIER, fks.IDENTIFIER))
DEPENDS_ON = re.compile(r"^;\s*depends on:(?P<ids>[\d ]*)$")
TOC_ENTRY = re.compile(r"^-- TOC entry (\d+) ")
TABLESPACE = re.compile(r"^SET default_tablespace = (.*);$")
STILL_INVALID = "SELECT NOT i.indisvalid FROM pg_catalog.pg_index i WHERE i.indexrelid = pg_catalog.to_regclass(%s)"


class IndexesNotBuilt(fks.FailedAfterSwap):
    """The restored database is in place and usable, but indexes of the backup could not be built."""

    event = "restore_indexes_not_built"


class DeferredIndex(object):
    """One deferred ``INDEX`` entry: its TOC line, its statement and the tablespace it is created in."""

    def __init__(self, toc_line, statement, tablespace_setting):
        match = PLAIN_INDEX.match(statement)
        self.toc_line = toc_line
        self.statement = statement
        self.name = match.group("name")
        self.table = match.group("table")
        self.qualified_name = "%s.%s" % (match.group("schema"), self.name)
        self.tablespace_setting = tablespace_setting

    def concurrently(self):
        return PREFIX + "CONCURRENTLY " + self.statement[len(PREFIX):]


def dependency_graph(verbose_listing):
    """{dump id: TOC line} of every entry, and the set of dump ids another entry depends on."""
    entries, needed, current = {}, set(), None
    for line in verbose_listing.splitlines():
        match = steps.TOC_LINE.match(line)
        if match:
            current = match.group(1)
            entries[current] = line
            continue
        depends = DEPENDS_ON.match(line)
        if depends and current:
            needed.update(dump_id for dump_id in depends.group("ids").split() if dump_id != current)
    return entries, needed


def candidate_lines(verbose_listing, listing):
    """The lines of ``listing`` that are INDEX entries nothing depends on, in its order."""
    entries, needed = dependency_graph(verbose_listing)
    plain = set(listing.splitlines())
    return [line for dump_id, line in entries.items()
            if dump_id not in needed and line in plain and steps.TOC_LINE.match(line).group(4).startswith("INDEX ")
            and not steps.TOC_LINE.match(line).group(4).startswith("INDEX ATTACH ")]


def entries_of_script(script):
    """{dump id: (statements, the default_tablespace SET in effect or None)} of a ``pg_restore -v`` script."""
    found, tablespace, current, text = {}, None, None, []

    def close():
        if current:
            found[current] = (fks.statements("\n".join(text)), tablespace_of_entry)
    tablespace_of_entry = None
    for line in script.splitlines():
        setting = TABLESPACE.match(line)
        if setting:
            tablespace = line if setting.group(1) != "''" else None
        entry = TOC_ENTRY.match(line)
        if entry:
            close()
            current, text, tablespace_of_entry = entry.group(1), [], tablespace
            continue
        if current and not setting:
            text.append(line)
    close()
    return found


def deferrable(lines, script):
    """The DeferredIndex of each line whose entry is exactly one plain, non-unique CREATE INDEX."""
    entries = entries_of_script(script)
    indexes = []
    for line in lines:
        statements, tablespace = entries.get(steps.TOC_LINE.match(line).group(1), ([], None))
        if len(statements) == 1 and PLAIN_INDEX.match(statements[0]) and statements[0].endswith(";"):
            indexes.append(DeferredIndex(line, statements[0], tablespace))
    return indexes


class DeferredIndexes(object):
    """The indexes a restore leaves out of its load; empty with ``during``."""

    def __init__(self, indexes=()):
        self.indexes = list(indexes)

    @property
    def lines(self):
        return [index.toc_line for index in self.indexes]

    def build(self, connect, jobs, maintenance_work_mem=None):
        """Build every index concurrently, the indexes of one table one after the other, ``jobs`` tables
        at a time; returns (built [{index, table, seconds}], failed [{index, table, error, statement}])."""
        pending, by_table = [], {}
        for index in self.indexes:
            if index.table not in by_table:
                by_table[index.table] = []
                pending.append(by_table[index.table])
            by_table[index.table].append(index)
        built, failed, lock = [], [], threading.Lock()

        def work():
            while True:
                with lock:
                    if not pending:
                        return
                    group = pending.pop(0)
                for index in group:
                    outcome = _build_one(connect, index, maintenance_work_mem)
                    with lock:
                        (failed if "error" in outcome else built).append(outcome)
        workers = [threading.Thread(target=work, name="index-%d" % number)
                   for number in range(max(1, min(int(jobs), len(pending))))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        order = dict(((index.table, index.name), number) for number, index in enumerate(self.indexes))

        def in_order(items):
            return sorted(items, key=lambda item: order[(item["table"], item["index"])])
        return in_order(built), in_order(failed)


def _build_one(connect, index, maintenance_work_mem):
    started = time.monotonic()
    try:
        conn = connect()
    except Exception as exc:  # pylint: disable=broad-except
        return {"index": index.name, "table": index.table, "error": str(exc), "statement": index.concurrently()}
    try:
        settings = [index.tablespace_setting] if index.tablespace_setting else []
        if maintenance_work_mem:
            settings.append("SET maintenance_work_mem = '%s';" % maintenance_work_mem)
        for setting in settings:
            pgconn.query(conn, setting)
        pgconn.query(conn, index.concurrently())
        return {"index": index.name, "table": index.table, "seconds": round(time.monotonic() - started, 3)}
    except Exception as exc:  # pylint: disable=broad-except
        error = " ".join(str(exc).split())
        try:
            if pgconn.scalar(conn, STILL_INVALID, (index.qualified_name,)):
                pgconn.query(conn, "DROP INDEX CONCURRENTLY IF EXISTS %s;" % index.qualified_name)
        except pgconn.psycopg2.Error as drop_error:
            error += " (and its INVALID index could not be dropped: %s)" % " ".join(str(drop_error).split())
        return {"index": index.name, "table": index.table, "error": error, "statement": index.concurrently()}
    finally:
        conn.close()


NONE = DeferredIndexes()


def left_out_of_load(request, listing, toc_file, env, major):
    """The archive's indexes to build after the swap-in (``NONE`` unless ``request.build_indexes`` is after_swap)."""
    if getattr(request, "build_indexes", DURING) != AFTER_SWAP:
        return NONE
    pg_restore = steps.pg_restore_path(request, major)
    verbose_listing = steps.output([pg_restore, "-l", "-v", toc_file], env, "pg_restore -l -v")
    lines = candidate_lines(verbose_listing, listing)
    if not lines:
        return NONE
    with fks.list_file(request.work_dir, "\n".join(lines) + "\n") as only_indexes:
        script = steps.output([pg_restore, "-v", "-f", "-", "-L", only_indexes, toc_file], env, "pg_restore (indexes)")
    return DeferredIndexes(deferrable(lines, script))


def after_swap_failure(database, backup_id, usable_after_seconds, built, failed, validated_keys, failed_keys):
    """The error of a restore whose database is in place but whose after-swap work failed (None if none did)."""
    if not failed:
        return fks.not_validated(database, backup_id, usable_after_seconds, failed_keys, validated_keys) \
            if failed_keys else None
    indexes = "; ".join("%s on %s: %s" % (item["index"], item["table"], item["error"]) for item in failed)
    keys = (" Besides, %d foreign key(s) failed their validation: %s (they stay NOT VALID)."
            % (len(failed_keys), "; ".join("%s on %s: %s" % (item["constraint"], item["table"], item["error"])
                                           for item in failed_keys))) if failed_keys else ""
    return IndexesNotBuilt(
        "Database '%s' IS in place and usable (backup %s was swapped in after %.1f s), but %d index(es) left out of "
        "the load could not be built afterwards: %s. Their INVALID leftovers were dropped: queries work, without "
        "these indexes.%s" % (database, backup_id, usable_after_seconds, len(failed), indexes, keys),
        hint="Fix what the error names, then run %s Or restore with build_indexes: during, which builds them before "
             "the database replaces the old one." % " ".join(item["statement"] for item in failed + failed_keys),
        database=database, database_in_place=True, usable_after_seconds=usable_after_seconds,
        failed_indexes=failed, built_indexes=built, failed_foreign_keys=failed_keys,
        validated_foreign_keys=validated_keys)
