# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of a live (restored) database shared by backup verification and disaster recovery:
pg_amcheck and smoke queries. ``subject`` names the database in messages ("the restored copy",
"database 'TodoDb'"), ``hint`` says what a failure means where it is used."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ..core import pgconn
from ..core.errors import PgBackupError
from ..core.pgtools import tool_path
from ..core.pipeline import Pipeline, Stage
from ..logical.restore import default_jobs


def exact_pattern(name):
    """A psql-style pattern that matches exactly ``name`` (double quotes disable wildcards)."""
    return '"%s"' % name.replace('"', '""')


def conninfo(dbname):
    """A libpq connection string naming only the database (host/user come from the env)."""
    return "dbname='%s'" % dbname.replace("\\", "\\\\").replace("'", "\\'")


def run_pg_amcheck(connection, database, major, pg_bin_dir, subject, hint, jobs=0):
    """``pg_amcheck --heapallindexed`` on one database; raises with its report on any finding. ``jobs``
    connections check relations at once (0: one per CPU, at most 8, as a restore's); every table and B-tree
    index is checked either way, the Todo API's big table and its indexes on all cores."""
    argv = [tool_path("pg_amcheck", major, pg_bin_dir), "--heapallindexed", "--install-missing", "--no-password",
            "--jobs", str(jobs or default_jobs()),
            "--maintenance-db", conninfo(database), "--database", exact_pattern(database)]
    with pgconn.libpq_environment(connection) as env:
        pipeline = Pipeline([Stage(argv, name="pg_amcheck")], env=env, capture_stdout=True)
        pipeline.start()
        report = b"".join(pipeline.stdout_chunks()).decode("utf-8", "replace").strip()
        try:
            pipeline.wait()
        except PgBackupError as exc:
            raise PgBackupError("pg_amcheck found problems in %s: %s" % (subject, report[-2000:] or exc.message), hint=hint)
    if report:
        raise PgBackupError("pg_amcheck found problems in %s: %s" % (subject, report[-2000:]), hint=hint)
    return "ok"


def run_smoke_queries(conn, queries, where, hint):
    """Each query must run and return at least one row; ``where`` ends the messages (" on the restored copy")."""
    results = []
    for number, query in enumerate([q for q in queries or [] if q and str(q).strip()], 1):
        try:
            rows = pgconn.query(conn, query)
        except pgconn.psycopg2.Error as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise PgBackupError("Smoke query %d (%s) failed%s: %s" % (number, short_sql(query), where, first_line), hint=hint)
        if not rows:
            raise PgBackupError("Smoke query %d (%s) returned no rows%s." % (number, short_sql(query), where),
                                hint="A smoke query must return at least one row.")
        results.append({"sql": query, "rows": len(rows), "first_row": [plain_value(v) for v in rows[0]]})
    return results


def short_sql(query, limit=120):
    text = " ".join(str(query).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def plain_value(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
