# -*- coding: utf-8 -*-
"""Which indexes build_indexes: after_swap defers, read from pg_restore's verbose listing and script
(plugins/module_utils/logical/deferred_indexes.py); the builds themselves are tested against a real server in
tests/integration/test_restore_deferred_indexes.py."""

from __future__ import absolute_import, division, print_function

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import deferred_indexes as idx

VERBOSE_LISTING = """;
; Selected TOC Entries:
;
215; 1259 16390 TABLE public Todos postgres
3218; 2606 16394 CONSTRAINT public Todos Todos_pkey postgres
;\tdepends on: 215
3220; 1259 16400 INDEX public IX_Todos_UserId postgres
;\tdepends on: 215
3221; 1259 16401 INDEX public ix_commented postgres
;\tdepends on: 215
3400; 0 0 COMMENT public INDEX ix_commented postgres
;\tdepends on: 3221
3222; 1259 16402 INDEX public ix_parted postgres
;\tdepends on: 216
3223; 1259 16403 INDEX public parted_1_v_idx postgres
;\tdepends on: 217
3224; 0 0 INDEX ATTACH public parted_1_v_idx postgres
;\tdepends on: 3222 3223
3225; 1259 16404 INDEX public ix_clustered postgres
;\tdepends on: 215
3226; 1259 16405 INDEX public ux_unique postgres
;\tdepends on: 215
3227; 1259 16406 INDEX archive ix_in_tablespace postgres
;\tdepends on: 218
"""
LISTING = "\n".join(line for line in VERBOSE_LISTING.splitlines() if not line.startswith(";\t")) + "\n"

SCRIPT = """SET default_tablespace = '';

--
-- TOC entry 3220 (class 1259 OID 16400)
-- Dependencies: 215
-- Name: IX_Todos_UserId; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX "IX_Todos_UserId" ON public."Todos" USING btree ("UserId");


--
-- TOC entry 3222 (class 1259 OID 16402)
--

CREATE INDEX ix_parted ON ONLY public.parted USING btree (v);


--
-- TOC entry 3225 (class 1259 OID 16404)
--

CREATE INDEX ix_clustered ON public."Todos" USING btree ("CreatedAt");

ALTER TABLE public."Todos" CLUSTER ON ix_clustered;


--
-- TOC entry 3226 (class 1259 OID 16405)
--

CREATE UNIQUE INDEX ux_unique ON public."Todos" USING btree (lower("Title"));


SET default_tablespace = fast;

--
-- TOC entry 3227 (class 1259 OID 16406)
--

CREATE INDEX ix_in_tablespace ON archive."Old; Todos" USING btree ((("Title" || ' USING ;')));
"""


def test_only_index_entries_nothing_depends_on_are_candidates():
    lines = idx.candidate_lines(VERBOSE_LISTING, LISTING)
    assert [line.split()[0] for line in lines] == ["3220;", "3225;", "3226;", "3227;"]  # not 3221, 3222, 3223


def test_only_one_plain_non_unique_create_index_is_deferred_with_its_tablespace():
    indexes = idx.deferrable(idx.candidate_lines(VERBOSE_LISTING, LISTING), SCRIPT)
    assert [(index.name, index.table, index.tablespace_setting) for index in indexes] == [
        ('"IX_Todos_UserId"', 'public."Todos"', None),
        ("ix_in_tablespace", 'archive."Old; Todos"', "SET default_tablespace = fast;")]
    assert indexes[0].concurrently() == 'CREATE INDEX CONCURRENTLY "IX_Todos_UserId" ON public."Todos" USING btree ("UserId");'
    assert indexes[1].concurrently() == ('CREATE INDEX CONCURRENTLY ix_in_tablespace ON archive."Old; Todos" USING btree '
                                         '((("Title" || \' USING ;\')));')
    assert indexes[1].qualified_name == "archive.ix_in_tablespace"
    assert idx.DeferredIndexes(indexes).lines == [line for line in LISTING.splitlines() if line.startswith(("3220;", "3227;"))]


def test_a_failure_after_the_swap_in_names_what_is_missing_and_how_to_build_it():
    failed = [{"index": "ix_a", "table": "public.t", "error": "division by zero",
               "statement": "CREATE INDEX CONCURRENTLY ix_a ON public.t USING btree ((1 / x));"}]
    error = idx.after_swap_failure("TodoDb", "b1", 3.0, [], failed, [], [])
    assert isinstance(error, idx.IndexesNotBuilt) and error.event == "restore_indexes_not_built"
    assert "Database 'TodoDb' IS in place and usable" in error.message and "ix_a on public.t: division by zero" in error.message
    assert "CREATE INDEX CONCURRENTLY ix_a" in error.hint
    assert error.details["failed_indexes"] == failed and error.details["database_in_place"] is True
    assert idx.after_swap_failure("TodoDb", "b1", 3.0, [], [], [], []) is None
