# -*- coding: utf-8 -*-
"""Reading the foreign keys out of pg_restore's listing and script (validate_foreign_keys: after_swap).

The script below is what ``pg_restore -f - -L <FK lines>`` printed for a PostgreSQL 15 archive
(tests/integration/test_restore_time_to_usable.py restores such archives for real)."""

from __future__ import absolute_import, division, print_function

from ansible_collections.todoapi.pgbackup.plugins.module_utils.logical import deferred_foreign_keys as fks

LISTING = """;
; Archive created at 2026-12-07 11:51:31 UTC
;     Format: CUSTOM
;
215; 1259 16390 TABLE public Child Table postgres
3365; 0 16390 TABLE DATA public Child Table postgres
3218; 2606 16394 CONSTRAINT public Child Table Child Table_pkey postgres
3219; 2606 16395 FK CONSTRAINT public Child Table FK weird FOREIGN KEY x postgres
3220; 2606 16403 FK CONSTRAINT public nv nv_fk postgres
3221; 2606 16411 FK CONSTRAINT public pt pt_pid_fkey postgres
3222; 2606 16412 FK CONSTRAINT public nulls nulls_fk postgres
"""

SCRIPT = r"""--
-- PostgreSQL database dump
--

\restrict hXefWjJ4BquvNZG6fRZ5UkvGjdGo8cvqb7hHZRQ0bk6gJrUSs7KreVTsXUle6cq

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: Child Table FK weird FOREIGN KEY x; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public."Child Table"
    ADD CONSTRAINT "FK weird FOREIGN KEY x" FOREIGN KEY (pid) REFERENCES public.parent(id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;


--
-- Name: nv nv_fk; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.nv
    ADD CONSTRAINT nv_fk FOREIGN KEY (pid) REFERENCES public.parent(id) NOT VALID;


--
-- Name: pt pt_pid_fkey; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE public.pt
    ADD CONSTRAINT pt_pid_fkey FOREIGN KEY (pid) REFERENCES public.parent(id);


--
-- Name: nulls nulls_fk; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.nulls
    ADD CONSTRAINT nulls_fk FOREIGN KEY (a, b) REFERENCES public.parent(a, b) ON DELETE SET NULL (b);


--
-- PostgreSQL database dump complete
--

\unrestrict hXefWjJ4BquvNZG6fRZ5UkvGjdGo8cvqb7hHZRQ0bk6gJrUSs7KreVTsXUle6cq
"""


def keys():
    return [fks.ForeignKey(line, statement) for line, statement in
            zip(fks.foreign_key_lines(LISTING), fks.statements(SCRIPT))]


def test_foreign_key_lines_and_statements_pair_up_in_order():
    lines = fks.foreign_key_lines(LISTING)
    assert [line.split(";")[0] for line in lines] == ["3219", "3220", "3221", "3222"]
    assert len(fks.statements(SCRIPT)) == 4
    assert [key.name for key in keys()] == ['"FK weird FOREIGN KEY x"', "nv_fk", None, "nulls_fk"]


def test_only_validated_keys_of_plain_tables_are_deferred():
    weird, not_valid, partitioned, set_null = keys()
    assert weird.deferrable and set_null.deferrable
    assert not not_valid.deferrable, "a key the backup holds NOT VALID stays so"
    assert not partitioned.deferrable, "ALTER TABLE without ONLY: a partitioned table"
    assert weird.add_not_valid().endswith("ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED NOT VALID;")
    assert weird.validate() == 'ALTER TABLE ONLY public."Child Table" VALIDATE CONSTRAINT "FK weird FOREIGN KEY x";'
    assert set_null.add_not_valid().endswith("ON DELETE SET NULL (b) NOT VALID;")


def test_not_enforced_keys_are_left_alone():
    key = fks.ForeignKey("1; 2606 1 FK CONSTRAINT public t t_fk postgres",
                         "ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_fk FOREIGN KEY (a) REFERENCES public.p(a) NOT ENFORCED;")
    assert key.table == "public.t" and not key.deferrable


def test_listing_without_comments_out_exactly_the_deferred_lines():
    weird = keys()[0]
    rest = fks.listing_without(LISTING, [weird.toc_line])
    assert ";" + weird.toc_line in rest.splitlines()
    assert [line for line in rest.splitlines() if not line.startswith(";")] == [
        line for line in LISTING.splitlines() if not line.startswith(";") and line != weird.toc_line]


def test_nothing_deferred_means_no_pg_restore_option_and_no_work():
    assert fks.NONE.restore_options() == []
    assert fks.NONE.validate(None) == ([], [])
    fks.NONE.add_not_valid(None)
