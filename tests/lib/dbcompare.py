# -*- coding: utf-8 -*-
"""Prove that a restored database holds the same data, structure and grants as its source.

    from tests.lib.dbcompare import table_fingerprints, assert_same_data, run_pg_amcheck

    before = table_fingerprints(cluster, "TodoDb")
    ...  # backup, destroy, restore
    assert_same_data(before, (cluster, "TodoDb"))

Targets are a PgCluster or a conn_params dict (host, port, user, password, database).
"""

from __future__ import absolute_import, division, print_function

import os
import subprocess

from psycopg2 import sql as pgsql

from tests.lib.pgcluster import DEFAULT_VERSION, bindir_for, connect_to, params_of

# Make row text independent of the server's and client's locale settings.
STABLE_SESSION_SQL = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; " \
                     "SET extra_float_digits = 3; SET bytea_output = 'hex'"

USER_TABLES_SQL = """
SELECT n.nspname, c.relname, c.oid
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""

PRIMARY_KEY_COLUMNS_SQL = """
SELECT a.attname
FROM pg_index i
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON TRUE
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY k.position
"""


def table_key(schema, table):
    return "%s.%s" % (schema, table)


def primary_key_columns(cursor, table_oid):
    cursor.execute(PRIMARY_KEY_COLUMNS_SQL, (table_oid,))
    return [row[0] for row in cursor.fetchall()]


def fingerprint_query(schema, table, key_columns):
    """count(*) and an md5 over per-row md5s, ordered by primary key (or by the row hashes without one)."""
    relation = pgsql.Identifier(schema, table)
    if key_columns:
        order = pgsql.SQL(", ").join(pgsql.SQL("t.{}").format(pgsql.Identifier(c)) for c in key_columns)
        aggregate = pgsql.SQL("string_agg(md5(t::text), '' ORDER BY {})").format(order)
    else:
        aggregate = pgsql.SQL("string_agg(md5(t::text), '' ORDER BY md5(t::text))")
    return pgsql.SQL("SELECT count(*), md5(coalesce({}, '')) FROM {} AS t").format(aggregate, relation)


def table_fingerprints(target, dbname=None):
    """{"schema.table": {"rows": n, "hash": md5}} for every user table of dbname."""
    connection = connect_to(target, dbname)
    fingerprints = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute(STABLE_SESSION_SQL)
            cursor.execute(USER_TABLES_SQL)
            for schema, table, oid in cursor.fetchall():
                cursor.execute(fingerprint_query(schema, table, primary_key_columns(cursor, oid)))
                rows, digest = cursor.fetchone()
                fingerprints[table_key(schema, table)] = {"rows": rows, "hash": digest}
    finally:
        connection.close()
    return fingerprints


def as_fingerprints(side):
    """Accept a fingerprint dict or a (target, dbname) pair."""
    if isinstance(side, tuple):
        return table_fingerprints(*side)
    return side


def fingerprint_differences(src, dst, tables=None):
    """Readable lines describing how dst differs from src (empty list when identical)."""
    names = sorted(tables if tables is not None else set(src) | set(dst))
    problems = []
    for name in names:
        if name not in dst:
            problems.append("%s: missing in destination (source has %s rows)" % (name, src.get(name, {}).get("rows")))
        elif name not in src:
            problems.append("%s: only in destination (%s rows)" % (name, dst[name]["rows"]))
        elif src[name]["rows"] != dst[name]["rows"]:
            problems.append("%s: row count %s in source, %s in destination" % (name, src[name]["rows"], dst[name]["rows"]))
        elif src[name]["hash"] != dst[name]["hash"]:
            problems.append("%s: same row count (%s) but contents differ" % (name, src[name]["rows"]))
    return problems


def assert_same_data(src, dst, tables=None):
    """Raise AssertionError listing every table whose rows differ between src and dst.

    src/dst: fingerprint dicts from table_fingerprints() or (target, dbname) pairs.
    tables: optional iterable of "schema.table" names to restrict the comparison to.
    """
    problems = fingerprint_differences(as_fingerprints(src), as_fingerprints(dst), tables)
    if problems:
        raise AssertionError("databases differ:\n  " + "\n  ".join(problems))


def amcheck_installed(target, dbname):
    connection = connect_to(target, dbname)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'")
            return cursor.fetchone()[0] > 0
    finally:
        connection.close()


def drop_amcheck(target, dbname):
    connection = connect_to(target, dbname)
    try:
        with connection.cursor() as cursor:
            cursor.execute("DROP EXTENSION IF EXISTS amcheck")
    finally:
        connection.close()


def pg_amcheck_command(target, dbname):
    version = getattr(target, "version", DEFAULT_VERSION)
    params = params_of(target, dbname)
    argv = [os.path.join(bindir_for(version), "pg_amcheck"), "-h", params["host"], "-p", str(params["port"]),
            "-U", params["user"], "--no-password", "--heapallindexed", "--install-missing", params["database"]]
    env = dict(os.environ, PGPASSWORD=params.get("password") or "")
    return argv, env


def run_pg_amcheck(target, dbname=None, keep_extension=False):
    """Check heap and btree indexes of dbname with pg_amcheck; raise AssertionError with its output on problems.

    amcheck is installed when missing and dropped again afterwards unless keep_extension,
    so the checked database keeps its original set of extensions.
    """
    dbname = dbname or params_of(target)["database"]
    had_amcheck = amcheck_installed(target, dbname)
    argv, env = pg_amcheck_command(target, dbname)
    try:
        completed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    finally:
        if not (had_amcheck or keep_extension):
            drop_amcheck(target, dbname)
    if completed.returncode != 0 or completed.stdout.strip():
        raise AssertionError("pg_amcheck found problems in %s (rc=%s):\n%s\n%s"
                             % (dbname, completed.returncode, completed.stdout, completed.stderr))
    return completed.stdout


def split_table_name(table):
    """'Todos' -> ('public', 'Todos'); 'app.Todos' -> ('app', 'Todos')."""
    if "." in table:
        schema, name = table.split(".", 1)
        return schema, name
    return "public", table


def fetch_column(cursor, query, params):
    cursor.execute(query, params)
    return sorted(row[0] for row in cursor.fetchall())


INDEXES_SQL = "SELECT indexname || ': ' || indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s"
CONSTRAINTS_SQL = """
SELECT con.conname || ': ' || pg_get_constraintdef(con.oid)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""
GRANTS_SQL = """
SELECT grantee || ': ' || privilege_type || CASE WHEN is_grantable = 'YES' THEN ' WITH GRANT OPTION' ELSE '' END
FROM information_schema.role_table_grants
WHERE table_schema = %s AND table_name = %s
"""


def index_and_constraint_defs(target, dbname, table):
    """Sorted index definitions, constraint definitions and grants of one table.

    table is 'Todos' (schema public) or 'schema.Table'. Returns
    {"indexes": [...], "constraints": [...], "grants": [...]}, each entry "name: definition".
    """
    identity = split_table_name(table)
    connection = connect_to(target, dbname)
    try:
        with connection.cursor() as cursor:
            return {"indexes": fetch_column(cursor, INDEXES_SQL, identity),
                    "constraints": fetch_column(cursor, CONSTRAINTS_SQL, identity),
                    "grants": fetch_column(cursor, GRANTS_SQL, identity)}
    finally:
        connection.close()
