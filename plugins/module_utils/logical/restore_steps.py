# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The steps every restore mode shares: reading the (decrypted, decompressed) archive, running
pg_restore and psql on it, listing its table of contents and proving the row counts."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ..core import pgconn
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pgtools import tool_path
from ..core.pipeline import Pipeline, Stage

PG_RESTORE_ERROR = r"(?m)^pg_restore: error:"
PSQL_ERROR = r"(?m)^(psql:.*)?ERROR:"
TOC_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
# TOC entries whose data is not a COPY: an archive with them is restored serially by pg_restore.
LARGE_OBJECT_ENTRIES = ("BLOBS ", "BLOB ", "LARGE OBJECT ", "BLOB METADATA ")


def with_settings(env, settings):
    """``env`` whose PGOPTIONS also sets ``settings`` ({name: value}) in the sessions libpq opens."""
    options = " ".join("-c %s=%s" % (name, value) for name, value in sorted(settings.items()) if value)
    if not options:
        return env
    return dict(env, PGOPTIONS=("%s %s" % (env.get("PGOPTIONS", ""), options)).strip())


def decoded_input(request, manifest):
    """(stages, path): the stages that decode the artifact at ``path`` into the archive pg_dump wrote."""
    path = request.repository.artifact_path(manifest)
    stages = streams.read_stages(manifest, request.identity_file)
    return stages, path


def holds_large_objects(toc_text):
    return any(match and match.group(4).startswith(LARGE_OBJECT_ENTRIES)
               for match in map(TOC_LINE.match, toc_text.splitlines()))


def finish(pipeline):
    """Wait for a started pipeline; a failed decryption is explained as such."""
    try:
        pipeline.wait()
    except PgBackupError as exc:
        raise streams.explain_decrypt_failure(exc)


def run(stages, env, stdin=None):
    try:
        return Pipeline(stages, env=env, stdin=stdin).run()
    except PgBackupError as exc:
        raise streams.explain_decrypt_failure(exc)


def psql_argv(request, major, dbname, extra=()):
    psql = tool_path("psql", major, request.pg_bin_dir)
    return [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-d", conninfo(dbname)] + list(extra)


def conninfo(dbname):
    """A libpq connection string naming only the database (host/user come from the env)."""
    return "dbname='%s'" % dbname.replace("\\", "\\\\").replace("'", "\\'")


def pg_restore_path(request, major):
    """pg_restore for a server of ``major`` that can read the archive: at least as new as the pg_dump that
    wrote it (the manifest's ``pg_dump_version``, which select_backup keeps in ``request.written_by``)."""
    return tool_path("pg_restore", major, request.pg_bin_dir, written_by=getattr(request, "written_by", None))


def pg_restore_argv(request, major, dbname, extra=()):
    pg_restore = pg_restore_path(request, major)
    argv = [pg_restore, "--exit-on-error", "-d", conninfo(dbname)]
    if request.no_owner:
        argv += ["--no-owner"]
    return argv + list(extra)


def output(argv, env, name):
    """What one pg_restore that reads no table data (a listing, a script of some entries) prints."""
    pipeline = Pipeline([Stage(argv, name=name, error_pattern=PG_RESTORE_ERROR)], env=env, capture_stdout=True).start()
    text = b"".join(pipeline.stdout_chunks()).decode("utf-8")
    finish(pipeline)
    return text


def list_archive(request, manifest, major, env):
    """The archive's table of contents (``pg_restore -l``)."""
    stages, path = decoded_input(request, manifest)
    pg_restore = pg_restore_path(request, major)
    if manifest.get("format") == "directory" or not stages:
        pipeline = Pipeline([Stage([pg_restore, "-l", path], name="pg_restore")], env=env, capture_stdout=True)
    else:
        pipeline = Pipeline(stages + [Stage([pg_restore, "-l"], name="pg_restore")], env=env, stdin=path,
                            capture_stdout=True, tolerate_sigpipe=True)
    pipeline.start()
    text = b"".join(pipeline.stdout_chunks()).decode("utf-8", "replace")
    finish(pipeline)
    return text


def verify_counts(conn, expected, loaded=None):
    """Each table's row count, which must be the backup's ({table key: rows}). ``loaded``: the rows the
    server reported for the COPY statements of a parallel load ({table key: rows}, None if unknown). When
    they are exactly the backup's for every table, no table is scanned again (the big one's count(*) takes
    seconds per GiB before the swap-in); otherwise count(*) decides and names what differs."""
    if loaded is not None and all(loaded.get(key, 0) == rows for key, rows in expected.items()):
        return dict(expected)
    actual = pgconn.count_rows(conn, [pgconn.split_table_key(key) for key in expected])
    wrong = ["%s: %d rows, backup has %d" % (key, actual[key], expected[key])
             for key in sorted(expected) if actual[key] != expected[key]]
    if wrong:
        raise PgBackupError("Row counts after restore do not match the backup: %s." % "; ".join(wrong),
                            hint="The restored data is incomplete; the target was left as it was.")
    return actual
