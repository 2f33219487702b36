# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``validate_foreign_keys: after_swap``: the archive's foreign keys are left out of the load, added
``NOT VALID`` once the data is in (no scan), and validated after the staging database is swapped in.

A NOT VALID foreign key checks every row written from the moment it exists; only the rows already
there wait for ``ALTER TABLE ... VALIDATE CONSTRAINT``, which takes SHARE UPDATE EXCLUSIVE on the
table: the application reads and writes meanwhile. The keys come from pg_restore's table of
contents (``FK CONSTRAINT`` entries, post-data): ``pg_restore -f - -L`` prints their statements,
which get ``NOT VALID`` appended.

Kept in the load as they are, and never validated here: keys the archive already holds NOT VALID
(or NOT ENFORCED): they stay so; and keys of partitioned tables (``ALTER TABLE`` without ``ONLY``),
which PostgreSQL before 18 cannot add NOT VALID.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import os
import re
import tempfile
import time

from . import restore_steps as steps
from ..core import pgconn
from ..core.errors import PgBackupError

DURING, AFTER_SWAP = "during", "after_swap"
CHOICES = (DURING, AFTER_SWAP)
FK_ENTRY = "FK CONSTRAINT "
IDENTIFIER = r'(?:"(?:[^"]|"")*"|[^\s".]+)'
ADD_ON_TABLE = re.compile(r"^ALTER TABLE ONLY (?P<table>%s\.%s)\n\s+ADD CONSTRAINT (?P<name>%s) FOREIGN KEY "
                          % (IDENTIFIER, IDENTIFIER, IDENTIFIER))
UNCHECKED = re.compile(r"\bNOT (VALID|ENFORCED)\b")


class FailedAfterSwap(PgBackupError):
    """The restored database is in place and usable, but work left for after the swap-in failed
    (``event``: what the runner logs)."""

    event = "restore_failed_after_swap"


class ForeignKeysNotValidated(FailedAfterSwap):
    """The restored database is in place and usable, but foreign keys of the backup do not hold."""

    event = "restore_foreign_keys_not_validated"


class ForeignKey(object):
    """One ``FK CONSTRAINT`` entry: its TOC line and the statement pg_restore runs for it."""

    def __init__(self, toc_line, statement):
        self.toc_line = toc_line
        self.statement = statement
        match = ADD_ON_TABLE.match(statement)
        self.table = match.group("table") if match else None
        self.name = match.group("name") if match else None
        # What follows the last ")" are the key's attributes (ON DELETE ..., DEFERRABLE, NOT VALID).
        attributes = statement[statement.rfind(")"):]
        self.deferrable = bool(match) and statement.endswith(";") and not UNCHECKED.search(attributes)

    def add_not_valid(self):
        return self.statement[:-1] + " NOT VALID;"

    def validate(self):
        return "ALTER TABLE ONLY %s VALIDATE CONSTRAINT %s;" % (self.table, self.name)


def foreign_key_lines(listing):
    """The ``FK CONSTRAINT`` lines of a ``pg_restore -l`` listing, in its order."""
    lines = []
    for line in listing.splitlines():
        match = steps.TOC_LINE.match(line)
        if match and match.group(4).startswith(FK_ENTRY):
            lines.append(line)
    return lines


def statements(script):
    """The SQL statements of a pg_restore script, without its comments, settings and psql commands."""
    found, current = [], []
    for line in script.splitlines():
        if not current and (not line.strip() or line.startswith(("--", "\\", "SET ", "SELECT pg_catalog.set_config("))):
            continue
        current.append(line)
        if line.endswith(";"):
            found.append("\n".join(current))
            current = []
    return found


def listing_without(listing, lines):
    """The listing with ``lines`` commented out, for ``pg_restore -L``: everything else, in the same order."""
    left_out = set(lines)
    return "\n".join((";" + line) if line in left_out else line for line in listing.splitlines()) + "\n"


class DeferredForeignKeys(object):
    """The foreign keys a restore leaves out of its load (empty with ``during``), and the pg_restore list
    that leaves them and whatever else is deferred out."""

    def __init__(self, keys=(), restore_list=None):
        self.keys = list(keys)
        self.restore_list = restore_list

    def restore_options(self):
        """pg_restore options that leave these keys (and the other deferred entries) out of the load."""
        return ["-L", self.restore_list] if self.restore_list else []

    def add_not_valid(self, conn):
        if self.keys:
            pgconn.query(conn, "\n".join(key.add_not_valid() for key in self.keys))

    def validate(self, connect):
        """VALIDATE every key, one transaction each; returns (validated [{table, constraint, seconds}],
        failed [{table, constraint, error, statement}]): a key that fails stays NOT VALID."""
        if not self.keys:
            return [], []
        validated, failed = [], []
        conn = connect()
        try:
            for key in self.keys:
                started = time.monotonic()
                try:
                    pgconn.query(conn, key.validate())
                except pgconn.psycopg2.Error as exc:
                    failed.append({"table": key.table, "constraint": key.name, "error": " ".join(str(exc).split()),
                                   "statement": key.validate()})
                    continue
                validated.append({"table": key.table, "constraint": key.name,
                                  "seconds": round(time.monotonic() - started, 3)})
        finally:
            conn.close()
        return validated, failed


NONE = DeferredForeignKeys()


def not_validated(database, backup_id, usable_after_seconds, failed, validated):
    keys = "; ".join("%s on %s: %s" % (item["constraint"], item["table"], item["error"]) for item in failed)
    return ForeignKeysNotValidated(
        "Database '%s' IS in place and usable (backup %s was swapped in after %.1f s), but %d foreign key(s) "
        "added NOT VALID for the load failed their validation afterwards: %s. They stay NOT VALID: every row "
        "written now is checked by them, the backup's rows that break them are not."
        % (database, backup_id, usable_after_seconds, len(failed), keys),
        hint="Fix or delete the rows the error names, then run %s Or restore another backup: with "
             "validate_foreign_keys: during a backup whose rows break a foreign key is refused before it "
             "replaces the database." % " ".join(item["statement"] for item in failed),
        database=database, database_in_place=True, usable_after_seconds=usable_after_seconds,
        failed_foreign_keys=failed, validated_foreign_keys=validated)


@contextlib.contextmanager
def left_out_of_load(request, listing, toc_file, env, major, other_lines=()):
    """The archive's foreign keys to defer (none unless ``request.validate_foreign_keys`` is after_swap),
    with the pg_restore list file that leaves them and ``other_lines`` out while the block runs."""
    keys = _deferrable_keys(request, listing, toc_file, env, major)
    left_out = [key.toc_line for key in keys] + list(other_lines)
    if not left_out:
        yield NONE
        return
    with list_file(request.work_dir, listing_without(listing, left_out)) as restore_list:
        yield DeferredForeignKeys(keys, restore_list)


def _deferrable_keys(request, listing, toc_file, env, major):
    lines = foreign_key_lines(listing) if request.validate_foreign_keys == AFTER_SWAP else []
    if not lines:
        return []
    with list_file(request.work_dir, "\n".join(lines) + "\n") as only_keys:
        script = steps.output([steps.pg_restore_path(request, major), "-f", "-", "-L", only_keys, toc_file], env,
                              "pg_restore (foreign keys)")
    found = statements(script)
    if len(found) != len(lines):
        raise PgBackupError("Cannot tell the foreign keys of this archive apart (%d entries, %d statements)."
                            % (len(lines), len(found)), hint="Restore it with validate_foreign_keys: during.")
    return [key for key in map(ForeignKey, lines, found) if key.deferrable]


@contextlib.contextmanager
def list_file(work_dir, text):
    handle, path = tempfile.mkstemp(prefix="pgbackup-list-", suffix=".txt", dir=work_dir)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        yield path
    finally:
        os.unlink(path)
