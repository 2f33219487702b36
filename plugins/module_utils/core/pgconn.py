# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections to PostgreSQL: libpq environment for the pg tools, psycopg2 for SQL.

Passwords never go on a command line: the pg tools get a private temporary passfile
(PGPASSFILE), psycopg2 gets the password in-process.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import os
import shutil
import tempfile
import traceback

from . import pgpass
from .errors import PgBackupError

try:
    import psycopg2
    import psycopg2.extensions
    from psycopg2 import sql
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the callers
    psycopg2 = None
    sql = None
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

# Tables whose data pg_dump writes: ordinary tables outside the system schemas that do
# not belong to an extension.
USER_TABLES_SQL = """
SELECT n.nspname, c.relname
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%%'
   AND n.nspname NOT LIKE 'pg\\_temp%%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2
"""


class ConnectionSpec(object):
    """Where and as whom to connect. ``database`` is the maintenance/default database."""

    def __init__(self, host=None, port=None, user=None, password=None, database=None, sslmode=None,
                 connect_timeout=10):
        self.host = host or None
        self.port = int(port) if port else None
        self.user = user or None
        self.password = password or None
        self.database = database or None
        self.sslmode = sslmode or None
        self.connect_timeout = connect_timeout
        # Without a host, where the first connection went (see ``where``): psycopg2's libpq and a program
        # of another build have different default socket directories (/var/run/postgresql, /tmp).
        self.socket_dir = None

    @classmethod
    def from_params(cls, params):
        return cls(host=params.get("host"), port=params.get("port"), user=params.get("user"),
                   password=params.get("password"), sslmode=params.get("sslmode"))

    def where(self):
        """The host every connection and program of one operation uses: ``host``, else the socket directory
        the first psycopg2 connection reached (None before that)."""
        return self.host or self.socket_dir

    def describe(self):
        where = self.host or ("local socket %s" % self.socket_dir if self.socket_dir else "local socket")
        if self.port:
            where += ":%s" % self.port
        return "%s as %s" % (where, self.user or "the OS user")


@contextlib.contextmanager
def libpq_environment(spec, base_env=None):
    """Yield an environment for pg_dump & co. with a private passfile when a password is set."""
    env = dict(os.environ if base_env is None else base_env)
    for key in ("PGPASSWORD", "PGSERVICE"):
        env.pop(key, None)
    settings = {"PGHOST": reached_host(spec), "PGPORT": spec.port, "PGUSER": spec.user,
                "PGSSLMODE": spec.sslmode, "PGCONNECT_TIMEOUT": spec.connect_timeout}
    for key, value in settings.items():
        if value:
            env[key] = str(value)
    env.setdefault("PGAPPNAME", "todoapi-pgbackup")
    tmpdir = None
    try:
        if spec.password:
            tmpdir = tempfile.mkdtemp(prefix="pgbackup-pass-")
            passfile = os.path.join(tmpdir, "pgpass")
            fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(pgpass.format_line(spec.password, user=spec.user) + "\n")
            env["PGPASSFILE"] = passfile
        yield env
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def require_psycopg2():
    if psycopg2 is None:
        raise PgBackupError("The Python library psycopg2 is required on the host that runs this.",
                            hint="Install python3-psycopg2 (Debian) or psycopg2-binary (pip).")


def connect(spec, dbname=None, autocommit=True):
    """Open a psycopg2 connection; turn libpq failures into a clear PgBackupError."""
    require_psycopg2()
    kwargs = {"dbname": dbname or spec.database or "postgres", "connect_timeout": spec.connect_timeout,
              "application_name": "todoapi-pgbackup"}
    for key in ("port", "user", "password", "sslmode"):
        value = getattr(spec, key)
        if value:
            kwargs[key] = value
    if spec.where():
        kwargs["host"] = spec.where()
    try:
        conn = psycopg2.connect(**kwargs)
    except psycopg2.OperationalError as exc:
        raise classify_connection_error(str(exc), spec, kwargs["dbname"])
    if not spec.where():
        spec.socket_dir = conn.info.host  # libpq's default (or PGHOST): every later connection goes there too
    conn.autocommit = autocommit
    return conn


def reached_host(spec):
    """``spec.where()``, connecting once to learn it when no connection was made yet."""
    if not spec.where():
        connect(spec).close()
    return spec.where()


def classify_connection_error(text, spec, dbname):
    """Map libpq's connection error text to one message that names the cause."""
    first = " ".join(line.strip() for line in text.strip().splitlines())
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return PgBackupError("Authentication failed for %s." % spec.describe(),
                             hint="Check 'user' and 'password' (or the passfile) for this server.")
    if "does not exist" in lowered and "database" in lowered:
        return PgBackupError("Database '%s' does not exist on %s." % (dbname, spec.describe()),
                             hint="Check the database name (names are case-sensitive, e.g. TodoDb).")
    if "connection refused" in lowered or "could not connect" in lowered or "timeout expired" in lowered \
            or "could not translate host name" in lowered or "no such file or directory" in lowered:
        return PgBackupError("Cannot reach PostgreSQL at %s: %s" % (spec.describe(), first.strip()),
                             hint="Check that the server is running and 'host'/'port' are right." + (
                                 "" if spec.host else " Without 'host', the socket directory is libpq's default (see "
                                 "above); a server with other unix_socket_directories needs 'host' set to one."))
    return PgBackupError("Cannot connect to PostgreSQL at %s: %s" % (spec.describe(), first.strip()))


def query(conn, statement, params=None):
    with conn.cursor() as cur:
        cur.execute(statement, params)
        if cur.description is None:
            return []
        return cur.fetchall()


def scalar(conn, statement, params=None):
    rows = query(conn, statement, params)
    return rows[0][0] if rows else None


def qualified(schema, table):
    """A psycopg2.sql Composable for schema.table, quoted."""
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def table_key(schema, table):
    """How manifests name a table: schema.table, unquoted."""
    return "%s.%s" % (schema, table)


def split_table_key(key):
    schema, table = key.split(".", 1)
    return schema, table


def server_info(conn):
    return {"server_version": scalar(conn, "SHOW server_version").split()[0],
            "server_version_num": int(scalar(conn, "SHOW server_version_num"))}


def database_exists(conn, name):
    return bool(scalar(conn, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


def database_properties(conn, name):
    rows = query(conn, """
        SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, r.rolname
          FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = %s""", (name,))
    if not rows:
        return None
    encoding, collate, ctype, owner = rows[0]
    return {"encoding": encoding, "lc_collate": collate, "lc_ctype": ctype, "owner": owner}


def user_tables(conn):
    """All (schema, table) pairs whose data a full pg_dump would contain."""
    return [(row[0], row[1]) for row in query(conn, USER_TABLES_SQL)]


def count_rows(conn, tables):
    """Exact row count per table, keyed 'schema.table'."""
    counts = {}
    for schema, table in tables:
        statement = sql.SQL("SELECT count(*) FROM ONLY {}").format(qualified(schema, table))
        counts[table_key(schema, table)] = int(scalar(conn, statement))
    return counts


def resolve_tables(conn, names):
    """Resolve user-given table names to existing (schema, table) pairs.

    'schema.table' is taken as qualified when that schema exists, otherwise the whole
    string is a table name found through search_path (like pg_dump -t / psql \\d).
    """
    resolved = []
    missing = []
    for name in names:
        found = None
        schema, dot, table = name.partition(".")
        if dot and scalar(conn, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)):
            rows = query(conn, """
                SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')""", (schema, table))
            found = rows[0] if rows else None
        if found is None:
            rows = query(conn, """
                SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.oid = to_regclass(quote_ident(%s)) AND c.relkind IN ('r', 'p')""", (name,))
            found = rows[0] if rows else None
        if found is None:
            missing.append(name)
        else:
            resolved.append((found[0], found[1]))
    if missing:
        raise PgBackupError("Table(s) not found: %s." % ", ".join(repr(m) for m in missing),
                            hint="Use the exact (case-sensitive) name, optionally qualified as schema.table.")
    return resolved


def existing_schemas(conn, names):
    rows = query(conn, "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(names),))
    found = set(row[0] for row in rows)
    missing = [name for name in names if name not in found]
    if missing:
        raise PgBackupError("Schema(s) not found: %s." % ", ".join(repr(m) for m in missing),
                            hint="Use the exact (case-sensitive) schema name.")
    return list(names)


def dump_pattern(*parts):
    """A pg_dump -t/-n pattern that matches exactly these names (quotes disable wildcards)."""
    return ".".join('"%s"' % part.replace('"', '""') for part in parts)


TABLE_OBJECTS_SQL = """
SELECT 'own', x.oid, NULL, NULL FROM (
        SELECT %(t)s::oid AS oid
        UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid = %(t)s
        UNION ALL SELECT oid FROM pg_constraint WHERE conrelid = %(t)s
        UNION ALL SELECT oid FROM pg_attrdef WHERE adrelid = %(t)s
        UNION ALL SELECT oid FROM pg_trigger WHERE tgrelid = %(t)s AND NOT tgisinternal
        UNION ALL SELECT oid FROM pg_rewrite WHERE ev_class = %(t)s
        UNION ALL SELECT oid FROM pg_policy WHERE polrelid = %(t)s) x
UNION ALL
SELECT 'sequence', s.oid, n.nspname, s.relname
  FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_namespace n ON n.oid = s.relnamespace
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
   AND d.refobjid = %(t)s AND d.deptype IN ('a', 'i')
UNION ALL
SELECT 'referenced_by', c.oid, n.nspname || '.' || r.relname, c.conname
  FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE c.confrelid = %(t)s AND c.conrelid <> %(t)s AND c.contype = 'f'
"""


def table_objects(conn, tables):
    """Catalog OIDs of each table and of what belongs to it (indexes, constraints, defaults,
    triggers, rules, policies, owned sequences) plus foreign keys of other tables that point
    at it. pg_restore's list names entries by these OIDs, so a restore can pick a table with
    everything that hangs on it."""
    objects = {}
    for schema, table in tables:
        oid = scalar(conn, "SELECT %s::regclass::oid", (qualified(schema, table).as_string(conn),))
        entry = {"oids": [], "sequences": [], "referenced_by": []}
        for kind, obj_oid, first, second in query(conn, TABLE_OBJECTS_SQL, {"t": oid}):
            if kind == "own":
                entry["oids"].append(int(obj_oid))
            elif kind == "sequence":
                entry["oids"].append(int(obj_oid))
                entry["sequences"].append([first, second])
            else:
                entry["referenced_by"].append({"oid": int(obj_oid), "table": first, "constraint": second})
        objects[table_key(schema, table)] = entry
    return objects
