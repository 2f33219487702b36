# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-database restore: into a staging database that is swapped in only after its row counts
match the manifest, or (force without clean) in place in one transaction."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import os
import time

from . import deferred_foreign_keys
from . import deferred_indexes
from . import parallel_restore
from . import restore_steps as steps
from . import staging
from . import staging_owner
from ..core import pgconn
from ..core import streams
from ..core.errors import PgBackupError
from ..core.pipeline import Pipeline, Stage


def restore_via_staging(request, manifest, major, target_exists, started):
    """Restore into a new database, check it, then put it in place of the target (and there, with
    build_indexes: after_swap, build its plain indexes, then with validate_foreign_keys: after_swap,
    validate its foreign keys: the indexes first, as the application's queries need them, while a
    validation scans the whole table and probes only the referenced key, which is in before the swap-in)."""
    name = staging.staging_name(request.database)
    admin = pgconn.connect(request.connection, request.maintenance_db)
    try:
        staging.create_database(admin, name, manifest)
        try:
            staging_owner.record_owner(admin, name, request.database)  # admin stays open until the swap-in
            connections, deferred, indexes, loaded = load_archive(request, manifest, major, name)
            conn = pgconn.connect(request.connection, name)
            try:
                deferred.add_not_valid(conn)
                counts = steps.verify_counts(conn, manifest["tables"], loaded)
            finally:
                conn.close()
            checked = _since(started)
            usable = round(staging.swap_in(admin, name, request.database, target_exists, request.force) - started, 3)
        except BaseException:
            staging.drop_database(admin, name, force=True)
            raise
    finally:
        admin.close()

    def connect():
        return pgconn.connect(request.connection, request.database)
    built, failed = indexes.build(connect, request.jobs, request.maintenance_work_mem)
    validated, failed_keys = deferred.validate(connect)
    failure = deferred_indexes.after_swap_failure(request.database, manifest["id"], usable, built, failed, validated,
                                                  failed_keys)
    if failure:
        raise failure
    return {"mode": "full", "tables": counts, "restored_tables": sorted(counts), "changed": True,
            "connections": connections, "usable_after_seconds": usable,
            "checks_finished_after_seconds": _since(started) if validated or built else checked,
            "validated_foreign_keys": validated, "built_indexes": built}


def restore_over_existing(request, manifest, major, started):
    """force without clean: replace the backup's objects in place, in one transaction."""
    connections, _deferred, _indexes, _loaded = load_archive(request, manifest, major, request.database,
                                                             ["--clean", "--if-exists", "--single-transaction"])
    usable = _since(started)  # the transaction has committed
    conn = pgconn.connect(request.connection, request.database)
    try:
        counts = steps.verify_counts(conn, manifest["tables"])
    finally:
        conn.close()
    return {"mode": "full", "tables": counts, "restored_tables": sorted(counts), "changed": True,
            "connections": connections, "usable_after_seconds": usable,
            "checks_finished_after_seconds": _since(started), "validated_foreign_keys": [], "built_indexes": []}


def _since(started):
    return round(time.monotonic() - started, 3)


def load_archive(request, manifest, major, dbname, extra=()):
    """Restore the archive into ``dbname``; returns (connections that loaded it, the foreign keys
    left out of the load: deferred_foreign_keys.NONE unless validate_foreign_keys is after_swap, the
    indexes left out of it: deferred_indexes.NONE unless build_indexes is after_swap, the rows the server
    reported loading into each table ({table key: rows}) when the data went through the parallel load, else None)."""
    stages, path = steps.decoded_input(request, manifest)
    fmt = manifest.get("format", "custom")
    # pg_restore refuses -j with --single-transaction: an in-place restore stays one transaction, run serially.
    jobs = 1 if "--single-transaction" in extra else request.jobs
    with pgconn.libpq_environment(request.connection) as env:
        env = steps.with_settings(env, request.session_settings)
        if fmt == "plain":
            steps.run(stages + [Stage(steps.psql_argv(request, major, dbname, ["--single-transaction"]), name="psql",
                                      error_pattern=steps.PSQL_ERROR)], env, stdin=path)
            return 1, deferred_foreign_keys.NONE, deferred_indexes.NONE, None
        parallel = jobs > 1 and fmt == "custom"
        if not parallel and deferred_foreign_keys.AFTER_SWAP not in (request.validate_foreign_keys, request.build_indexes):
            return (_load_whole(request, stages, path, env, major, dbname, fmt, jobs, extra), deferred_foreign_keys.NONE,
                    deferred_indexes.NONE, None)
        with _archive_toc(request, manifest, major, env, stages, path) as (listing, toc_file):
            indexes = deferred_indexes.left_out_of_load(request, listing, toc_file, env, major)
            with deferred_foreign_keys.left_out_of_load(request, listing, toc_file, env, major, indexes.lines) as deferred:
                loaded = None
                if parallel and not steps.holds_large_objects(listing):
                    connections, loaded = _parallel_custom_restore(request, stages, path, env, major, dbname, toc_file,
                                                                   deferred.restore_options())
                else:
                    connections = _load_whole(request, stages, path, env, major, dbname, fmt, jobs,
                                              list(extra) + deferred.restore_options())
        return connections, deferred, indexes, loaded


@contextlib.contextmanager
def _archive_toc(request, manifest, major, env, stages, path):
    """(listing, file pg_restore reads the table of contents from): the archive itself when it can be
    read directly, else its decoded start in work_dir (see parallel_restore), removed afterwards."""
    if manifest.get("format") == "directory" or not stages:
        yield steps.list_archive(request, manifest, major, env), path
        return
    pg_restore = steps.pg_restore_path(request, major)
    try:
        prefix, listing = parallel_restore.write_toc_prefix(stages, path, env, pg_restore, request.work_dir)
    except PgBackupError as exc:
        raise streams.explain_decrypt_failure(exc)
    try:
        yield listing, prefix
    finally:
        os.unlink(prefix)


def _load_whole(request, stages, path, env, major, dbname, fmt, jobs, extra):
    """One pg_restore for the whole archive: -j for the directory format, else serially."""
    if fmt == "directory":
        argv = steps.pg_restore_argv(request, major, dbname, ["-j", str(jobs)] + list(extra) + [path])
        steps.run([Stage(argv, name="pg_restore", error_pattern=steps.PG_RESTORE_ERROR)], env)
        return jobs
    _serial_custom_restore(request, stages, path, env, major, dbname, extra)
    return 1


def _serial_custom_restore(request, stages, path, env, major, dbname, extra=()):
    argv = steps.pg_restore_argv(request, major, dbname, extra)
    if not stages:
        steps.run([Stage(argv + [path], name="pg_restore", error_pattern=steps.PG_RESTORE_ERROR)], env)
    else:
        steps.run(stages + [Stage(argv, name="pg_restore", error_pattern=steps.PG_RESTORE_ERROR)], env, stdin=path)


def _parallel_custom_restore(request, stages, path, env, major, dbname, toc_file, post_data_options):
    """Whole restore into an empty database over ``jobs`` connections (see parallel_restore); returns
    (jobs, {table key: rows the server reported loading})."""
    pg_restore = steps.pg_restore_path(request, major)
    steps.run([Stage(steps.pg_restore_argv(request, major, dbname, ["--section=pre-data", toc_file]),
                     name="pg_restore (pre-data)", error_pattern=steps.PG_RESTORE_ERROR)], env)

    def connect():
        return pgconn.connect(request.connection, dbname)

    with parallel_restore.autovacuum_paused(connect):
        loaded = _parallel_data_section(request, stages, path, env, pg_restore, connect)
        post_env = steps.with_settings(env, {"maintenance_work_mem": request.maintenance_work_mem})
        steps.run([Stage(steps.pg_restore_argv(request, major, dbname, ["--section=post-data", "-j", str(request.jobs)]
                                               + list(post_data_options) + [toc_file]),
                         name="pg_restore (post-data)", error_pattern=steps.PG_RESTORE_ERROR)], post_env)
    return request.jobs, loaded


def _parallel_data_section(request, stages, path, env, pg_restore, connect):
    script = Pipeline(stages + [Stage([pg_restore, "--section=data", "-f", "-"] + ([] if stages else [path]),
                                      name="pg_restore (data)", error_pattern=steps.PG_RESTORE_ERROR)],
                      env=env, stdin=path if stages else None, capture_stdout=True).start()
    try:
        stats = parallel_restore.load_data_section(script.stdout_chunks(), connect, request.jobs,
                                                   settings=request.session_settings)
    except parallel_restore.StreamEndedEarly:
        steps.finish(script)  # its processes have exited: their error is the real one
        raise
    except BaseException:
        script.kill()
        script.wait_quietly()
        raise
    steps.finish(script)
    return stats["rows"]
