# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-table restore into an existing database, in one transaction that rolls back on any error:
tables that still exist get exactly the backup's rows, dropped ones are recreated whole, and
every foreign key touching them and every row count is checked before COMMIT."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import tempfile

from . import restore_steps as steps
from ..core import pgconn
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pipeline import Pipeline, Stage


def pick_tables(manifest, names):
    """Map user-given names ('Todos' or 'public.Todos') to the backup's table keys."""
    keys = list(manifest.get("tables") or {})
    picked, missing = [], []
    for name in names:
        if name in keys:
            picked.append(name)
            continue
        matches = [key for key in keys if pgconn.split_table_key(key)[1] == name]
        if len(matches) == 1:
            picked.append(matches[0])
        elif matches:
            raise PgBackupError("Table name '%s' is ambiguous in backup '%s': %s." % (name, manifest["id"], ", ".join(matches)),
                                hint="Qualify it with its schema.")
        else:
            missing.append(name)
    if missing:
        raise PgBackupError("Backup '%s' holds no table named %s." % (manifest["id"], ", ".join(repr(m) for m in missing)),
                            hint="Names are case-sensitive; the backup's tables are: %s." % ", ".join(sorted(keys)))
    return sorted(set(picked))


def _quoted(name):
    return '"%s"' % name.replace('"', '""')


def _toc_selection(toc_text, manifest, present, missing):
    """The pg_restore list lines to restore: data (and sequence values) of tables that exist
    in the target, everything (definition, data, indexes, constraints, triggers, grants,
    comments, and foreign keys pointing at it) of tables that do not."""
    objects = manifest.get("objects") or {}
    data_oids, all_oids, seq_names, full_names = set(), set(), set(), set()
    for key in present + missing:
        entry = objects.get(key)
        if entry is None:
            raise PgBackupError("Backup '%s' does not record the objects of '%s' (made by an older version)." % (
                manifest["id"], key), hint="Restore the whole backup into a new database instead.")
        schema, table = pgconn.split_table_key(key)
        data_oids.add(entry["oids"][0])
        for seq_schema, seq in entry["sequences"]:
            seq_names.add((seq_schema, seq))
        if key in missing:
            all_oids.update(entry["oids"])
            all_oids.update(ref["oid"] for ref in entry["referenced_by"])
            full_names.add((schema, table))
    selected = []
    for line in toc_text.splitlines():
        match = steps.TOC_LINE.match(line)
        if not match:
            continue
        objid, rest = int(match.group(3)), match.group(4)
        if rest.startswith("TABLE DATA ") and objid in data_oids:
            selected.append(line)
        elif objid and objid in all_oids:
            selected.append(line)
        elif any(rest.startswith("SEQUENCE SET %s %s " % s) for s in seq_names):
            selected.append(line)
        elif any(_is_dependent_entry(rest, schema, table) for schema, table in full_names) or \
                any(_is_sequence_entry(rest, schema, seq) for schema, seq in seq_names
                    if _owner_missing(schema, seq, manifest, missing)):
            selected.append(line)
    return selected


def _owner_missing(seq_schema, seq, manifest, missing):
    for key in missing:
        if [seq_schema, seq] in (manifest["objects"][key]["sequences"]):
            return True
    return False


def _is_dependent_entry(rest, schema, table):
    for form in (table, _quoted(table)):
        for kind in ("COMMENT", "ACL", "SECURITY LABEL"):
            if rest.startswith("%s %s TABLE %s " % (kind, schema, form)) or \
                    rest.startswith("%s %s COLUMN %s." % (kind, schema, form)):
                return True
    return False


def _is_sequence_entry(rest, schema, seq):
    if rest.startswith("SEQUENCE OWNED BY %s %s " % (schema, seq)):
        return True
    for form in (seq, _quoted(seq)):
        for kind in ("COMMENT", "ACL"):
            if rest.startswith("%s %s SEQUENCE %s " % (kind, schema, form)):
                return True
    return False


FK_SQL = """
SELECT c.conname, cn.nspname, cr.relname, pn.nspname, pr.relname,
       ARRAY(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
       ARRAY(SELECT attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
  FROM pg_constraint c
  JOIN pg_class cr ON cr.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cr.relnamespace
  JOIN pg_class pr ON pr.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pr.relnamespace
 WHERE c.contype = 'f'
"""


def _foreign_keys(conn):
    """Every foreign key as (name, child key, parent key, child columns, parent columns)."""
    return [(row[0], pgconn.table_key(row[1], row[2]), pgconn.table_key(row[3], row[4]), row[5], row[6])
            for row in pgconn.query(conn, FK_SQL)]


def _fk_checks(conn, foreign_keys, keys):
    """(probe SQL, message) per foreign key touching ``keys``: the probe finds a violating row."""
    ident, text = pgconn.sql.Identifier, pgconn.sql.SQL
    checks = []
    for name, child, parent, child_cols, parent_cols in foreign_keys:
        if child not in keys and parent not in keys:
            continue
        not_null = text(" AND ").join(text("c.{} IS NOT NULL").format(ident(col)) for col in child_cols)
        join = text(" AND ").join(text("p.{} = c.{}").format(ident(p), ident(c)) for p, c in zip(parent_cols, child_cols))
        probe = text("SELECT 1 FROM ONLY {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM ONLY {} p WHERE {})").format(
            pgconn.qualified(*pgconn.split_table_key(child)), not_null,
            pgconn.qualified(*pgconn.split_table_key(parent)), join).as_string(conn)
        checks.append((probe, "foreign key %s (%s -> %s) would be violated by the restored rows" % (name, child, parent)))
    return checks


def _dollar_quote(text):
    tag = "chk"
    while "$%s$" % tag in text:
        tag += "x"
    return "$%s$%s$%s$" % (tag, text, tag)


def restore_tables(request, manifest, major):
    keys = pick_tables(manifest, request.tables)
    conn = pgconn.connect(request.connection, request.database)
    try:
        existing = set(pgconn.table_key(*t) for t in pgconn.user_tables(conn))
        present = [k for k in keys if k in existing]
        missing = [k for k in keys if k not in existing]
        prologue, epilogue = _table_restore_wrapping(conn, manifest, keys, present)
    finally:
        conn.close()
    with pgconn.libpq_environment(request.connection) as env:
        toc = steps.list_archive(request, manifest, major, env)
        selection = _toc_selection(toc, manifest, present, missing)
        handle, listfile = tempfile.mkstemp(prefix="pgbackup-toc-", suffix=".list")
        try:
            with os.fdopen(handle, "w") as out:
                out.write("\n".join(selection) + "\n")
            _stream_script(request, manifest, major, steps.with_settings(env, request.session_settings), listfile,
                           prologue, epilogue)
        finally:
            os.unlink(listfile)
    conn = pgconn.connect(request.connection, request.database)
    try:
        counts = pgconn.count_rows(conn, [pgconn.split_table_key(k) for k in keys])
    finally:
        conn.close()
    return {"mode": "tables", "tables": counts, "restored_tables": keys, "recreated_tables": missing, "changed": True}


def _table_restore_wrapping(conn, manifest, keys, present):
    """SQL around pg_restore's output: empty the present tables first; afterwards check
    every foreign key touching them and each table's row count, then COMMIT."""
    def quoted(key):
        return pgconn.qualified(*pgconn.split_table_key(key)).as_string(conn)

    foreign_keys = _foreign_keys(conn)
    prologue = ["BEGIN;"]
    if present:
        # Replace rows without firing FK triggers; the checks below prove integrity instead.
        # TRUNCATE refuses a table that other (not restored) tables reference: DELETE those.
        referenced = set(fk[2] for fk in foreign_keys if fk[1] not in present)
        prologue.append("SET LOCAL session_replication_role = replica;")
        truncatable = [quoted(key) for key in present if key not in referenced]
        if truncatable:  # one statement: tables referencing each other must be truncated together
            prologue.append("TRUNCATE ONLY " + ", ".join(truncatable) + ";")
        for key in present:
            if key in referenced:
                prologue.append("DELETE FROM ONLY " + quoted(key) + ";")
    epilogue = ["SET LOCAL session_replication_role = origin;"]
    for probe, message in _fk_checks(conn, foreign_keys, set(present)):
        body = "BEGIN IF EXISTS (" + probe + ") THEN RAISE EXCEPTION '%', " + _sql_literal(message) + "; END IF; END"
        epilogue.append("DO " + _dollar_quote(body) + ";")
    for key in keys:
        expected = int(manifest["tables"][key])
        body = ("DECLARE n bigint; BEGIN SELECT count(*) INTO n FROM ONLY " + quoted(key) + "; IF n <> " + str(expected)
                + " THEN RAISE EXCEPTION 'row count mismatch for %: % rows restored, backup has " + str(expected)
                + "', " + _sql_literal(key) + ", n; END IF; END")
        epilogue.append("DO " + _dollar_quote(body) + ";")
    epilogue.append("COMMIT;")
    return prologue, epilogue


def _sql_literal(text):
    return "'%s'" % text.replace("'", "''")


def _stream_script(request, manifest, major, env, listfile, prologue, epilogue):
    """psql runs prologue + pg_restore's script for the selected entries + epilogue as one
    transaction. The epilogue (with COMMIT) is sent only if pg_restore and its decoders
    succeeded; otherwise psql sees end of input inside the transaction and rolls back."""
    stages, path = steps.decoded_input(request, manifest)
    pg_restore = steps.pg_restore_path(request, major)
    argv = [pg_restore, "-f", "-", "-L", listfile]
    if request.no_owner:
        argv.append("--no-owner")
    if manifest.get("format") == "directory" or not stages:
        producer = Pipeline([Stage(argv + [path], name="pg_restore", error_pattern=steps.PG_RESTORE_ERROR)], env=env,
                            capture_stdout=True)
    else:
        producer = Pipeline(stages + [Stage(argv, name="pg_restore", error_pattern=steps.PG_RESTORE_ERROR)], env=env,
                            stdin=path, capture_stdout=True, tolerate_sigpipe=True)

    def script():
        yield ("\n".join(prologue) + "\n").encode("utf-8")
        yield from producer.stdout_chunks()
        producer.wait()
        yield ("\n" + "\n".join(epilogue) + "\n").encode("utf-8")

    consumer = Pipeline([Stage(steps.psql_argv(request, major, request.database), name="psql",
                               error_pattern=steps.PSQL_ERROR)], env=env, stdin=script())
    producer.start()
    try:
        consumer.run()
    except PgBackupError as exc:
        producer.kill()
        producer.wait_quietly()
        raise streams.explain_decrypt_failure(exc)
