# -*- coding: utf-8 -*-
"""The parallel whole-database restore (plugins/module_utils/logical/parallel_restore.py): COPY rows
cut into chunks that several connections load at once, straight from the compressed stream.

Rows that look like the COPY end marker, escaped newlines and tabs, rows larger than a chunk,
NULLs, sequences, large objects (which take the serial path) and a connection that dies
mid-load all go through a real server and real pg_dump/pg_restore."""

from __future__ import absolute_import, division, print_function

import hashlib
import os
import subprocess
import threading
import time

import pytest

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import restore as logical_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import parallel_restore
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core import pgconn
from ansible_collections.todoapi.pgbackup.plugins.module_utils.core.errors import PgBackupError
from ansible_collections.todoapi.pgbackup.plugins.module_utils.storage.local import LocalRepository
from tests.integration.faults.faultlib import rewrite_manifest, spec_of, take_backup
from tests.lib.dbcompare import assert_same_data, index_and_constraint_defs
from tests.lib.scratchdb import scratch_database

TRICKY_SCHEMA = r"""
CREATE TABLE parent (id bigserial PRIMARY KEY, label text NOT NULL);
CREATE TABLE notes (
    id bigserial PRIMARY KEY,
    parent_id bigint REFERENCES parent (id),
    body text,
    raw bytea,
    created timestamptz DEFAULT now()
);
CREATE INDEX notes_parent ON notes (parent_id);
INSERT INTO parent (label) SELECT 'p' || g FROM generate_series(1, 50) g;
INSERT INTO notes (parent_id, body, raw)
SELECT 1 + g % 50,
       CASE g % 9
           WHEN 0 THEN E'\\.'                        -- a value that reads like the end marker
           WHEN 1 THEN E'line one\nline two\n\\.\n'  -- newlines and the marker inside a value
           WHEN 2 THEN E'tab\there\\back\\slash'
           WHEN 3 THEN NULL
           WHEN 4 THEN ''
           WHEN 5 THEN 'ünïcødé ✓ ' || g
           WHEN 6 THEN repeat('x', 5000)
           ELSE md5(g::text)
       END,
       CASE WHEN g % 4 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END
FROM generate_series(1, 20000) g;
INSERT INTO notes (parent_id, body) VALUES (1, repeat('big row ', 200000));  -- ~1.6 MB, larger than a chunk
SELECT setval('notes_id_seq', 123456);
"""


@pytest.fixture
def tricky_db(pg):
    with scratch_database(pg, "parallel_src_%d" % os.getpid(), TRICKY_SCHEMA) as name:
        yield name


@pytest.fixture
def target_name(pg):
    with scratch_database(pg, "parallel_dst_%d" % os.getpid()) as name:
        yield name


def restore(pg, repo, source, target, jobs, **options):
    return logical_restore.restore(logical_restore.LogicalRestoreRequest(
        LocalRepository(repo), spec_of(pg), database=target, source_database=source, jobs=jobs, **options))


def databases(pg):
    return sorted(row[0] for row in pg.sql("SELECT datname FROM pg_database"))


@pytest.mark.parametrize("chunk_bytes", [4096, None], ids=["4k-chunks", "default-chunks"])
def test_tricky_rows_round_trip_across_chunk_boundaries(pg, tricky_db, target_name, tmp_repo, tmp_path,
                                                        monkeypatch, chunk_bytes):
    take_backup(pg, tricky_db, tmp_repo)
    if chunk_bytes:
        monkeypatch.setattr(parallel_restore, "CHUNK_BYTES", chunk_bytes)
    chunks = []
    original = parallel_restore.load_data_section

    def counting(*args, **kwargs):
        stats = original(*args, **kwargs)
        chunks.append(stats)
        return stats
    monkeypatch.setattr(parallel_restore, "load_data_section", counting)

    result = restore(pg, tmp_repo, tricky_db, target_name, jobs=3, work_dir=str(tmp_path))

    assert result["tables"] == {"public.notes": 20001, "public.parent": 50}
    assert result["connections"] == 3
    assert chunks and chunks[0]["copy_statements"] == 2
    if chunk_bytes:
        assert chunks[0]["chunks"] > 100, "small chunks: the big table was spread over many COPYs"
    assert_same_data((pg, tricky_db), (pg, target_name))
    for table in ("notes", "parent"):
        assert index_and_constraint_defs(pg, target_name, table) == index_and_constraint_defs(pg, tricky_db, table)
    assert pg.scalar("SELECT last_value FROM notes_id_seq", dbname=target_name) == 123456
    assert os.listdir(str(tmp_path)) == [], "the table-of-contents file was removed"


def test_uncompressed_archive_restores_in_parallel_without_a_copy(pg, tricky_db, target_name, tmp_repo, tmp_path):
    manifest = take_backup(pg, tricky_db, tmp_repo, compression="none")
    assert manifest["compression"]["method"] == "none"
    restore(pg, tmp_repo, tricky_db, target_name, jobs=2, work_dir=str(tmp_path))
    assert_same_data((pg, tricky_db), (pg, target_name))
    assert os.listdir(str(tmp_path)) == []


def test_large_objects_take_the_serial_path(pg, tricky_db, target_name, tmp_repo, monkeypatch):
    pg.sql("SELECT lo_from_bytea(424242, 'large object payload')", dbname=tricky_db)
    take_backup(pg, tricky_db, tmp_repo)
    monkeypatch.setattr(parallel_restore, "load_data_section",
                        lambda *args, **kwargs: pytest.fail("the parallel loader must not run"))

    result = restore(pg, tmp_repo, tricky_db, target_name, jobs=2)

    assert result["connections"] == 1
    assert_same_data((pg, tricky_db), (pg, target_name))
    assert bytes(pg.scalar("SELECT lo_get(424242)", dbname=target_name)) == b"large object payload"


def test_jobs_zero_means_one_per_cpu():
    request = logical_restore.LogicalRestoreRequest(None, None, database="x", jobs=0)
    assert request.jobs == max(1, min(os.cpu_count(), logical_restore.MAX_AUTO_JOBS))
    assert logical_restore.LogicalRestoreRequest(None, None, database="x", jobs=3).jobs == 3


def test_a_loader_connection_killed_mid_copy_fails_cleanly(pg, tricky_db, target_name, tmp_repo, monkeypatch):
    """A backend of the parallel load is terminated: the restore fails naming the COPY, and
    neither the staging database nor the target is left behind."""
    take_backup(pg, tricky_db, tmp_repo)
    monkeypatch.setattr(parallel_restore, "CHUNK_BYTES", 4096)
    before = databases(pg)
    killed = []

    def kill_a_copy():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            rows = pg.sql("SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY public.notes%%' "
                          "AND state = 'active'")
            if rows:
                killed.append(pg.scalar("SELECT pg_terminate_backend(%s)", (rows[0][0],)))
            time.sleep(0.005)
    killer = threading.Thread(target=kill_a_copy)
    killer.start()
    try:
        with pytest.raises(PgBackupError) as failure:
            restore(pg, tmp_repo, tricky_db, target_name, jobs=2)
    finally:
        killed.append("stop")
        killer.join()

    assert killed[0] is True, "the test did not catch a COPY in flight"
    assert "COPY public.notes failed" in failure.value.message
    assert databases(pg) == before


def test_archive_cut_short_fails_naming_the_cause_and_leaves_nothing(pg, tricky_db, target_name, tmp_repo, tmp_path):
    """An artifact that matches its manifest but holds only half of the dump (written so by a
    broken storage layer): the error names pg_restore's complaint, nothing is left behind."""
    manifest = take_backup(pg, tricky_db, tmp_repo)
    artifact = LocalRepository(tmp_repo).artifact_path(manifest)
    dump = subprocess.run(["zstd", "-dc", artifact], check=True, stdout=subprocess.PIPE).stdout
    half = subprocess.run(["zstd", "-q", "-c"], input=dump[:len(dump) // 2], check=True, stdout=subprocess.PIPE).stdout
    with open(artifact, "wb") as handle:
        handle.write(half)
    rewrite_manifest(tmp_repo, manifest["id"], size=len(half), sha256=hashlib.sha256(half).hexdigest())
    before = databases(pg)

    with pytest.raises(PgBackupError) as failure:
        restore(pg, tmp_repo, tricky_db, target_name, jobs=2, work_dir=str(tmp_path))

    assert "pg_restore (data)" in failure.value.message, failure.value.message
    assert databases(pg) == before
    assert os.listdir(str(tmp_path)) == []


def test_maintenance_work_mem_reaches_the_post_data_sessions_and_bad_values_fail_early(pg, tricky_db, target_name,
                                                                                       tmp_repo):
    take_backup(pg, tricky_db, tmp_repo)
    before = databases(pg)
    for bad in ("1GB -c work_mem=1", "lots"):
        with pytest.raises(PgBackupError, match="is not a PostgreSQL memory setting"):
            restore(pg, tmp_repo, tricky_db, target_name, jobs=2, maintenance_work_mem=bad)
    with pytest.raises(PgBackupError, match="jobs must be 0"):
        restore(pg, tmp_repo, tricky_db, target_name, jobs=-1)
    # Below PostgreSQL's minimum (1MB): the post-data sessions refuse it, so it did reach them.
    with pytest.raises(PgBackupError, match="maintenance_work_mem"):
        restore(pg, tmp_repo, tricky_db, target_name, jobs=2, maintenance_work_mem="64kB")
    assert databases(pg) == before

    restore(pg, tmp_repo, tricky_db, target_name, jobs=2, maintenance_work_mem="")
    assert_same_data((pg, tricky_db), (pg, target_name))


RELOPTIONS = """
SELECT c.relname, c.reloptions, t.reloptions FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
WHERE c.relname IN ('notes', 'parent') ORDER BY 1
"""


def test_autovacuum_is_off_during_the_load_and_each_table_gets_its_own_options_back(
        pg, tricky_db, target_name, tmp_repo, monkeypatch):
    pg.sql("ALTER TABLE parent SET (autovacuum_enabled = off, toast.autovacuum_enabled = 'false', fillfactor = 90)",
           dbname=tricky_db)
    pg.sql("ALTER TABLE notes SET (toast.autovacuum_enabled = true)", dbname=tricky_db)
    take_backup(pg, tricky_db, tmp_repo)
    during_load = []
    original = parallel_restore.load_data_section

    def observing(script_chunks, connect, *args, **kwargs):
        conn = connect()
        try:
            with conn.cursor() as cur:
                cur.execute(RELOPTIONS)
                during_load[:] = cur.fetchall()
        finally:
            conn.close()
        return original(script_chunks, connect, *args, **kwargs)
    monkeypatch.setattr(parallel_restore, "load_data_section", observing)

    restore(pg, tmp_repo, tricky_db, target_name, jobs=2)

    assert [(name, sorted(options), sorted(toast)) for name, options, toast in during_load] == [
        ("notes", ["autovacuum_enabled=false"], ["autovacuum_enabled=false"]),
        ("parent", ["autovacuum_enabled=false", "fillfactor=90"], ["autovacuum_enabled=false"]),
    ]

    def options_of(dbname):
        return [(name, sorted(options or []), sorted(toast or []))
                for name, options, toast in pg.sql(RELOPTIONS, dbname=dbname)]
    assert options_of(target_name) == options_of(tricky_db) == [
        ("notes", [], ["autovacuum_enabled=true"]),
        ("parent", ["autovacuum_enabled=off", "fillfactor=90"], ["autovacuum_enabled=false"]),
    ]
    assert_same_data((pg, tricky_db), (pg, target_name))


COMPRESSION_OF = """
SELECT pg_column_compression(body), pg_column_compression(pinned), count(*) FROM compressed GROUP BY 1, 2
"""


@pytest.fixture
def compressible_db(pg):
    with scratch_database(pg, "toast_src_%d" % os.getpid(), """
        CREATE TABLE compressed (id int PRIMARY KEY, body text, pinned text COMPRESSION pglz);
        INSERT INTO compressed SELECT g, repeat('compressible ' || g, 500), repeat('pinned ' || g, 500)
        FROM generate_series(1, 300) g;
    """) as name:
        yield name


@pytest.mark.parametrize("jobs", [2, 1], ids=["parallel", "serial"])
def test_toast_compression_defaults_to_lz4_and_columns_with_their_own_method_keep_it(
        pg, compressible_db, target_name, tmp_repo, jobs):
    assert pg.scalar("SHOW default_toast_compression") == "pglz"
    assert pg.sql(COMPRESSION_OF, dbname=compressible_db) == [("pglz", "pglz", 300)]
    take_backup(pg, compressible_db, tmp_repo)

    restore(pg, tmp_repo, compressible_db, target_name, jobs=jobs)
    assert pg.sql(COMPRESSION_OF, dbname=target_name) == [("lz4", "pglz", 300)]
    assert_same_data((pg, compressible_db), (pg, target_name))

    for choice in ("pglz", "server"):
        restore(pg, tmp_repo, compressible_db, target_name, jobs=jobs, toast_compression=choice, force=True,
                clean=True)
        assert pg.sql(COMPRESSION_OF, dbname=target_name) == [("pglz", "pglz", 300)]


def test_toast_compression_refuses_what_the_server_cannot_do_before_touching_anything(
        pg, compressible_db, target_name, tmp_repo, monkeypatch):
    take_backup(pg, compressible_db, tmp_repo)
    before = databases(pg)
    with pytest.raises(PgBackupError, match="toast_compression must be one of auto, lz4, pglz, server"):
        restore(pg, tmp_repo, compressible_db, target_name, jobs=2, toast_compression="zstd")
    # A server built without lz4 offers only pglz in pg_settings.enumvals.
    real_scalar = pgconn.scalar

    def without_lz4(conn, statement, params=None):
        value = real_scalar(conn, statement, params)
        return ["pglz"] if "default_toast_compression" in statement else value
    monkeypatch.setattr(pgconn, "scalar", without_lz4)
    with pytest.raises(PgBackupError, match="cannot compress TOAST values with lz4"):
        restore(pg, tmp_repo, compressible_db, target_name, jobs=2, toast_compression="lz4")
    assert databases(pg) == before

    restore(pg, tmp_repo, compressible_db, target_name, jobs=2)  # auto falls back to the server's setting
    assert pg.sql(COMPRESSION_OF, dbname=target_name) == [("pglz", "pglz", 300)]


def test_row_counts_come_from_the_load_and_a_wrong_count_is_still_refused(pg, tricky_db, target_name, tmp_repo,
                                                                          monkeypatch):
    """The rows the server reports for the parallel load's COPY statements prove the counts: no table is
    scanned with count(*) before the swap-in. When they differ from the manifest, count(*) decides: the
    restore is refused and the target keeps what it had."""
    manifest = take_backup(pg, tricky_db, tmp_repo)
    scans = []
    count_rows = pgconn.count_rows

    def counting(conn, tables):
        scans.append(list(tables))
        return count_rows(conn, tables)
    monkeypatch.setattr(pgconn, "count_rows", counting)

    result = restore(pg, tmp_repo, tricky_db, target_name, jobs=2)
    assert result["tables"] == {"public.notes": 20001, "public.parent": 50}
    assert scans == [], "the counts came from the load"

    tables = dict(manifest["tables"], **{"public.notes": 20002})
    rewrite_manifest(tmp_repo, manifest["id"], tables=tables)
    with pytest.raises(PgBackupError, match=r"Row counts after restore do not match the backup: "
                                            r"public\.notes: 20001 rows, backup has 20002"):
        restore(pg, tmp_repo, tricky_db, target_name, jobs=2, force=True, clean=True)
    assert len(scans) == 1, "a count that differs is checked by count(*)"
    assert pg.scalar("SELECT count(*) FROM notes", dbname=target_name) == 20001
    assert not [name for name in databases(pg) if "__restore_" in name]
